//! Promise 8, clear errors: `Error` tells `Cancelled`, `DeadlineExceeded`, `Closed` and
//! `Db(source)` apart; each message says what happened and what the caller can do.
//!
//! Here: the messages of every error, sources not repeated, calls after close, FileDb's I/O
//! and foreign-file errors. Deeper: every error opening a path can give, printed and checked
//! (`tests/open_errors.rs`), and an unreachable server (`tests/backends.rs`).

use std::time::Duration;

use lifostore::{
    CancelToken, DbError, Error, FileDb, FileDbError, MemDb, PushBatchError, Storage, TryPushError,
};

use crate::common::{TempDir, item, sorted_ids};

// ---- 8. Clear errors ----------------------------------------------------------------------

/// Bitwise CRC-32C, independent of the crate's table-driven one.
fn crc32c(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
        }
    }
    !c
}

#[test]
fn errors_say_what_happened_and_what_to_do() {
    let cases: Vec<(Error, &str)> = vec![
        (Error::Cancelled, "cancelled"),
        (Error::DeadlineExceeded, "deadline"),
        (Error::Closed, "closed"),
        (Error::Db(DbError::msg("disk on fire")), "disk on fire"),
        (Error::ItemTooLarge { len: 10, max: 5 }, "max_item_len"),
    ];
    for (err, needle) in cases {
        let text = crate::common::error_chain(&err);
        assert!(text.contains(needle), "{text:?} lacks {needle:?}");
    }
    let io: DbError = std::io::Error::other("boom").into();
    let err = Error::from(io);
    assert!(std::error::Error::source(&err).is_some());
    let s = Storage::builder()
        .max_item_len(4)
        .build(MemDb::new())
        .unwrap();
    let t = CancelToken::new();
    assert!(matches!(
        s.push(&t, vec![0; 5]),
        Err(Error::ItemTooLarge { len: 5, max: 4 })
    ));
    s.push(&t, Vec::new()).unwrap();
    assert_eq!(s.pop(&t).unwrap(), Vec::<u8>::new());
    s.close().unwrap();
    assert!(matches!(s.push(&t, vec![1]), Err(Error::Closed)));
    assert!(matches!(s.pop(&t), Err(Error::Closed)));
    assert!(s.close().is_ok(), "close is idempotent");
}

#[test]
fn messages_do_not_repeat_their_source() {
    // The reason at the top: errors that are their cause (Db), or whose cause is the news
    // (a refused item, a failed try_push or batch push).
    let io = || {
        DbError::io(
            "write",
            "/var/q.lifo",
            std::io::Error::other("disk on fire"),
        )
    };
    let at_the_top: Vec<Box<dyn std::error::Error>> = vec![
        Box::new(Error::Db(DbError::msg("disk on fire"))),
        Box::new(Error::DeadLettered(DbError::Rejected {
            reason: "disk on fire".into(),
        })),
        Box::new(TryPushError::Failed {
            item: vec![1],
            error: Error::Db(DbError::msg("disk on fire")),
        }),
        Box::new(PushBatchError {
            stored: 2,
            source: DbError::msg("disk on fire"),
        }),
    ];
    for err in &at_the_top {
        let top = err.to_string();
        assert!(top.contains("disk on fire"), "{top:?} hides its reason");
        let chain = crate::common::error_chain(&**err);
        assert_eq!(chain.matches("disk on fire").count(), 1, "{chain}");
    }
    // The OS's words stay in the source; the top names the operation, the path and a fix.
    let with_os_source: Vec<Box<dyn std::error::Error>> = vec![
        Box::new(Error::Db(io())),
        Box::new(Error::from(std::io::Error::other("disk on fire"))),
        Box::new(TryPushError::Failed {
            item: vec![1],
            error: Error::Db(io()),
        }),
        Box::new(PushBatchError {
            stored: 0,
            source: io(),
        }),
        Box::new(Error::CloseIncomplete {
            unflushed: 3,
            waited: Duration::from_secs(1),
            source: DbError::msg("disk on fire"),
        }),
        Box::new(Error::NotYetDurable {
            why: lifostore::Unconfirmed::DbFailed,
            source: Some(DbError::msg("disk on fire")),
        }),
    ];
    for err in &with_os_source {
        let top = err.to_string();
        assert!(!top.contains("disk on fire"), "{top:?} repeats its source");
        let chain = crate::common::error_chain(&**err);
        assert_eq!(chain.matches("disk on fire").count(), 1, "{chain}");
    }
    let closed = Error::Closed.to_string();
    assert!(
        !closed.contains("database"),
        "{closed:?} claims where leftover items are"
    );
}

#[test]
fn a_foreign_error_chain_is_spelled_out_once_in_other() {
    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("redis: connecting to redis://127.0.0.1:1/")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
    let err = Error::Db(DbError::other(Outer(refused)));
    assert_eq!(
        crate::common::error_chain(&err),
        "the database failed: redis: connecting to redis://127.0.0.1:1/: refused"
    );
    // A foreign error that prints its source and returns it too: shown once.
    #[derive(Debug)]
    struct Loud(std::io::Error);
    impl std::fmt::Display for Loud {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "connecting: {}", self.0)
        }
    }
    impl std::error::Error for Loud {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    let err = Error::Db(DbError::other(Loud(std::io::Error::other("refused"))));
    assert_eq!(err.to_string(), "the database failed: connecting: refused");
}

#[test]
fn calls_after_close_return_closed_and_close_is_idempotent() {
    let storage = Storage::new(MemDb::new()).unwrap();
    let t = CancelToken::new();
    storage.push(&t, item(1)).unwrap();
    storage.close().unwrap();
    storage.close().unwrap();
    assert!(matches!(storage.push(&t, item(2)), Err(Error::Closed)));
    assert!(matches!(storage.pop(&t), Err(Error::Closed)));
    assert!(matches!(storage.try_pop(), Err(Error::Closed)));
    assert!(matches!(storage.flush(&t), Err(Error::Closed)));
    storage.close().unwrap();
    assert_eq!(
        sorted_ids(storage.db()),
        vec![1],
        "close lost or duplicated"
    );
    // Each error says what happened and what to do (promise 8).
    let closed = Error::Closed.to_string();
    assert!(closed.contains("closed") && closed.contains("open a new storage"));
    assert!(Error::Cancelled.to_string().contains("cancelled"));
    assert!(Error::DeadlineExceeded.to_string().contains("deadline"));
    let db = crate::common::error_chain(&Error::Db(DbError::msg("disk on fire")));
    assert!(
        db.contains("database") && db.contains("disk on fire"),
        "{db}"
    );
}

#[test]
fn io_errors_name_the_path_and_the_operation_with_advice_that_fits() {
    let dir = TempDir::new("io-errors");
    let cases = [
        (dir.path().to_path_buf(), "directory"),
        (dir.file("missing/sub/q.lifo"), "does not exist"),
    ];
    for (path, advice) in cases {
        let err = FileDb::open(&path).unwrap_err();
        assert!(matches!(err, DbError::Io { op: "open", .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(&*path.to_string_lossy()), "{text}");
        assert!(text.contains(advice), "{text}");
        assert!(
            !text.contains("os error"),
            "the source is not repeated: {text}"
        );
    }
}

#[test]
fn foreign_and_newer_files_are_refused_with_the_path_named() {
    let dir = TempDir::new("foreign");
    let path = dir.file("notes.txt");
    std::fs::write(&path, vec![b'x'; 5000]).unwrap();
    let err = FileDb::open(&path).unwrap_err();
    assert!(
        matches!(err, DbError::File(FileDbError::NotADatabase { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("notes.txt"), "{err}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        vec![b'x'; 5000],
        "a foreign file must be left alone"
    );

    // A valid header claiming version 4 (this build writes 3, and reads and upgrades 1 and 2).
    let newer = dir.file("newer.lifo");
    drop(FileDb::open(&newer).unwrap());
    let mut bytes = std::fs::read(&newer).unwrap();
    bytes[8..12].copy_from_slice(&4u32.to_le_bytes());
    let crc = crc32c(&bytes[0..12]);
    bytes[12..16].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&newer, &bytes).unwrap();
    match FileDb::open(&newer) {
        Err(DbError::File(FileDbError::UnsupportedVersion {
            found: 4,
            supported: 3,
            ..
        })) => {}
        other => panic!("{other:?}"),
    }
}
