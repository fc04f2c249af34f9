//! What a user sees when `Storage::open` cannot use a path: the `Display` of each error they
//! can meet, printed (`cargo test --test open_errors -- --nocapture` shows the table) and
//! checked to name the path, the cause and a fix, with every cause once in the `source` chain.
//! Paths that are not regular files (`/dev/null`, a FIFO, a socket, a `/proc` file) are refused
//! before a byte is written.
//!
//! Permission and read-only cases need a process the kernel checks: as root (CI, containers)
//! permission bits do not apply, so those cases run in a child process, one with uid 65534
//! (`nobody`) for permissions and one in a private mount namespace over a read-only tmpfs for
//! the read-only file system. Where the machine allows neither, the case prints why it was
//! skipped; nothing else is ever skipped.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::TempDir;
use lifostore::{DbError, Error, FileDb, FileDbError, Storage};

/// Set in a child process: the path it opens and reports on.
const CHILD_ENV: &str = "LIFOSTORE_OPEN_ERRORS_CHILD";
/// What a child prints before the Display of its error, and before each source.
const DISPLAY: &str = "OPEN-ERROR ";
const SOURCE: &str = "OPEN-SOURCE ";

/// The child half of the cases that need another process: opens the path, prints the error.
#[test]
fn open_errors_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return; // nothing to do unless `in_child` started this process
    };
    match Storage::open(&path) {
        Ok(_) => println!("{DISPLAY}opened without an error"),
        Err(err) => {
            for (i, link) in links(&err).iter().enumerate() {
                println!("{}{link}", if i == 0 { DISPLAY } else { SOURCE });
            }
        }
    }
}

/// An error's message and those of its sources, top first.
fn links(err: &dyn std::error::Error) -> Vec<String> {
    let mut links = vec![err.to_string()];
    let mut cause = err.source();
    while let Some(c) = cause {
        links.push(c.to_string());
        cause = c.source();
    }
    links
}

/// Prints the case and its message, then checks that the top message names `path`, every
/// word of `cause` and `fix`, says nothing of retrying, and that no link repeats another.
fn check(case: &str, path: &Path, links: &[String], cause: &[&str], fix: &str) {
    let top = &links[0];
    println!("| {case} | {top} |");
    let shown = path.to_string_lossy();
    assert!(
        top.contains(&*shown),
        "{case}: {top:?} does not name {shown}"
    );
    for word in cause {
        assert!(top.contains(word), "{case}: {top:?} does not say {word:?}");
    }
    assert!(top.contains(fix), "{case}: {top:?} does not say {fix:?}");
    assert!(
        !top.contains("retry"),
        "{case}: {top:?} advises a retry that cannot help"
    );
    for (i, link) in links.iter().enumerate().skip(1) {
        for earlier in &links[..i] {
            assert!(
                !earlier.contains(link.as_str()),
                "{case}: the chain repeats {link:?}: {links:?}"
            );
        }
    }
}

fn open_err(path: &Path) -> Error {
    match Storage::open(path) {
        Ok(_) => panic!("{} opened", path.display()),
        Err(e) => e,
    }
}

/// Checks that opening `path` gave [`DbError::NotADatabase`] (refused, left untouched) and
/// that its message names `cause` and the fix every such refusal gives.
fn check_refused(case: &str, path: &Path, err: Error, cause: &[&str]) {
    assert!(
        matches!(
            err,
            Error::Db(DbError::File(FileDbError::NotADatabase { .. }))
        ),
        "{case}: {err:?}"
    );
    let mut words = vec!["not a lifostore database", "left untouched"];
    words.extend_from_slice(cause);
    check(
        case,
        path,
        &links(&err),
        &words,
        "pass the path of a lifostore file, or of a new file to create",
    );
}

/// Runs [`open_errors_child`] on `path` through `command` (which execs the given test binary
/// with the given arguments) and returns the links it printed; `Err` (why) only when the child
/// never got to run the test (it could not start, or the command around it failed). A child
/// that ran but reported nothing fails the test.
fn in_child(path: &Path, mut command: Command) -> Result<Vec<String>, String> {
    let out = command
        .env(CHILD_ENV, path)
        .output()
        .map_err(|e| format!("the child could not start: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !stdout.contains("open_errors_child") {
        return Err(format!(
            "the child did not run ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let after = |marker: &str| -> Vec<String> {
        let lines = stdout.lines().filter_map(|l| l.split_once(marker));
        lines.map(|(_, text)| text.to_string()).collect()
    };
    let mut links = after(DISPLAY);
    assert!(
        links.len() == 1 && out.status.success(),
        "the child reported no error ({}): {stdout}",
        out.status
    );
    links.extend(after(SOURCE));
    Ok(links)
}

fn child_args() -> [&'static str; 4] {
    [
        "--exact",
        "open_errors_child",
        "--nocapture",
        "--test-threads=1",
    ]
}

/// The effective uid of this process (the owner of `/proc/self`).
fn euid() -> u32 {
    std::fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid())
}

/// Opens `path` as a process the permission bits apply to: this one, or when it is root a
/// child running as uid/gid 65534.
fn open_unprivileged(path: &Path) -> Result<Vec<String>, String> {
    if euid() != 0 {
        return Ok(links(&open_err(path)));
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut command = Command::new(&exe);
    command.args(child_args()).uid(65534).gid(65534);
    in_child(path, command).map_err(|e| {
        format!("running as root, and a child as uid 65534 could not run {exe:?}: {e}")
    })
}

#[test]
fn each_open_error_names_the_path_the_cause_and_a_fix() {
    let dir = TempDir::new("open-errors");
    println!("| path | Display of the error |\n|---|---|");

    let err = open_err(dir.path());
    assert!(
        matches!(err, Error::Db(DbError::Io { op: "open", .. })),
        "{err:?}"
    );
    check(
        "a directory",
        dir.path(),
        &links(&err),
        &["is a directory"],
        "pass the path of a file",
    );

    let missing = dir.file("missing/sub/q.lifo");
    check(
        "a missing parent directory",
        &missing,
        &links(&open_err(&missing)),
        &["does not exist"],
        "create the directory",
    );

    let notes = dir.file("notes.txt");
    std::fs::write(&notes, b"shopping list\n").unwrap();
    let through = notes.join("q.lifo");
    check(
        "a path through a file",
        &through,
        &links(&open_err(&through)),
        &["not a directory"],
        "fix the path",
    );

    check_refused("a foreign file", &notes, open_err(&notes), &["magic"]);
    assert_eq!(std::fs::read(&notes).unwrap(), b"shopping list\n");
}

#[test]
fn permission_denied_and_read_only_files_name_the_cause_and_a_fix() {
    let dir = TempDir::new("open-errors-perm");
    // A directory the process may not write to (root's 0755 one, for uid 65534).
    let locked = dir.file("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    if euid() != 0 {
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
    }
    let in_locked = locked.join("q.lifo");
    // A lifostore file the process may only read.
    let read_only = dir.file("read-only.lifo");
    drop(FileDb::open(&read_only).unwrap());
    std::fs::set_permissions(&read_only, std::fs::Permissions::from_mode(0o444)).unwrap();
    let before = std::fs::read(&read_only).unwrap();

    let cases = [
        (
            "permission denied (a directory it may not write)",
            &in_locked,
        ),
        ("a read-only file", &read_only),
    ];
    for (case, path) in cases {
        match open_unprivileged(path) {
            Ok(links) => check(
                case,
                path,
                &links,
                &["permission denied"],
                "give this process read and write access",
            ),
            Err(why) => println!("| {case} | SKIPPED: {why} |"),
        }
    }
    assert_eq!(std::fs::read(&read_only).unwrap(), before);
    assert!(!in_locked.exists());
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_read_only_file_system_names_the_cause_and_a_fix() {
    let dir = TempDir::new("open-errors-rofs");
    let mount = dir.file("ro");
    std::fs::create_dir(&mount).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = mount.join("q.lifo");
    let exe = std::env::current_exe().unwrap();
    // A private mount namespace (as root; otherwise a user namespace mapping this user to
    // root in it): the read-only tmpfs exists for the child alone and vanishes with it.
    let script = r#"mount -t tmpfs -o ro tmpfs "$1" && shift && exec "$@""#;
    let mut reasons = Vec::new();
    for userns in [false, true] {
        let mut command = Command::new("unshare");
        if userns {
            command.arg("--map-root-user");
        }
        command
            .args(["--mount", "sh", "-c", script, "sh"])
            .arg(&mount)
            .arg(&exe)
            .args(child_args());
        match in_child(&path, command) {
            Ok(links) => {
                check(
                    "a read-only file system",
                    &path,
                    &links,
                    &["read-only"],
                    "remount it or pick another path",
                );
                assert!(!path.exists(), "the child wrote outside its mount");
                return;
            }
            Err(why) => reasons.push(why),
        }
    }
    println!(
        "| a read-only file system | SKIPPED: no mount namespace to mount a read-only tmpfs \
         in: {reasons:?} |"
    );
}

#[test]
fn paths_that_are_not_regular_files_are_refused_before_a_byte_is_written() {
    let dir = TempDir::new("open-errors-special");

    // A FIFO, held open for reading and writing here, so anything written to it stays in the
    // pipe: after the refused open, the first byte read must be the marker written after it.
    let fifo = dir.file("pipe");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success(), "mkfifo failed");
    let mut pipe = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
    let err = common::within(Duration::from_secs(10), {
        let fifo = fifo.clone();
        move || open_err(&fifo)
    });
    check_refused("a FIFO", &fifo, err, &["a FIFO", "not a regular file"]);
    let salvage = common::within(Duration::from_secs(10), {
        let fifo = fifo.clone();
        move || FileDb::salvage(&fifo)
    });
    assert!(
        matches!(
            salvage,
            Err(DbError::File(FileDbError::NotADatabase { .. }))
        ),
        "{salvage:?}"
    );
    pipe.write_all(b"M").unwrap();
    let mut first = [0u8; 1];
    pipe.read_exact(&mut first).unwrap();
    assert_eq!(
        &first, b"M",
        "something was written to the FIFO before the marker"
    );
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());

    // A socket (std binds one; opening it would fail with ENXIO, a "device" error).
    let socket = dir.file("sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let cause = ["a socket", "not a regular file"];
    check_refused("a socket", &socket, open_err(&socket), &cause);

    // /dev/null takes any write without a trace, so what is checked is that the refusal is
    // the file-type one, made before opening (the FIFO above shows it writes nothing).
    let null = PathBuf::from("/dev/null");
    let cause = ["a character device", "not a regular file"];
    check_refused("/dev/null", &null, open_err(&null), &cause);
    assert!(
        std::fs::metadata(&null)
            .unwrap()
            .file_type()
            .is_char_device()
    );

    // A kernel pseudo-file: "regular", size 0, yet it has content. Only root may open it for
    // writing; anyone else is refused by the kernel first, with its own clear error.
    let proc = PathBuf::from("/proc/version");
    match std::fs::read(&proc) {
        Ok(content) => {
            let err = open_err(&proc);
            if euid() == 0 {
                check_refused("/proc/version", &proc, err, &["pseudo-file"]);
            } else {
                let fix = "give this process read and write access";
                check("/proc/version", &proc, &links(&err), &["permission"], fix);
            }
            assert_eq!(std::fs::read(&proc).unwrap(), content);
        }
        Err(e) => println!("| /proc/version | SKIPPED: no /proc here ({e}) |"),
    }
}

#[test]
fn io_errors_convert_for_question_mark() {
    fn make_dir(path: &Path) -> Result<(), Error> {
        std::fs::create_dir(path)?; // From<std::io::Error> for Error
        Ok(())
    }
    let dir = TempDir::new("open-errors-from-io");
    let err = make_dir(&dir.file("a/b")).unwrap_err();
    assert!(
        matches!(err, Error::Db(DbError::Io { path: None, .. })),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("does not exist"), "{text}");
    assert!(!text.contains("database"), "{text}");
}
