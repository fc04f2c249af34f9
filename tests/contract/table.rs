//! docs/CONTRACT.md's table, "Where each promise is checked", against the test sources: every
//! test it names must exist, so the table cannot drift from the tests.
//!
//! A name in the table's second column is written in backticks as one of:
//! * `binary::module::test` (an integration test under `tests/`: `tests/binary.rs` or
//!   `tests/binary/`, the test found in the module's file, or anywhere in the binary for a
//!   module declared inline), `binary::module::*` for every test of a module file;
//! * `loom::model` (a model in `loom-tests/tests/models.rs`);
//! * `src/path.rs::test` or `src/path.rs` (unit tests of a source file);
//! * `{a,b}` in any of them stands for both names.

use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `a{b,c}d` -> [abd, acd] (one brace group is enough for the table).
fn expand(name: &str) -> Vec<String> {
    let (Some(open), Some(close)) = (name.find('{'), name.find('}')) else {
        return vec![name.to_string()];
    };
    name[open + 1..close]
        .split(',')
        .flat_map(|alt| expand(&format!("{}{alt}{}", &name[..open], &name[close + 1..])))
        .collect()
}

/// The backticked names of the table's second column, with the promise of their row.
fn table_names() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(root().join("docs/CONTRACT.md")).expect("CONTRACT.md");
    let table = text
        .split("## Where each promise is checked")
        .nth(1)
        .expect("the table's heading");
    let mut names = Vec::new();
    for row in table.lines().take_while(|l| !l.starts_with("## ")) {
        let cells: Vec<&str> = row.split('|').collect();
        if cells.len() < 4 || !cells[1].trim().starts_with(|c: char| c.is_ascii_digit()) {
            continue;
        }
        for (i, part) in cells[2].split('`').enumerate() {
            if i % 2 == 1 {
                for name in expand(part) {
                    names.push((cells[1].trim().to_string(), name));
                }
            }
        }
    }
    names
}

/// The Rust files of an integration test binary: `tests/<bin>.rs`, or every file under
/// `tests/<bin>/`.
fn binary_files(bin: &str) -> Vec<PathBuf> {
    let single = root().join("tests").join(format!("{bin}.rs"));
    let mut files = Vec::new();
    if single.is_file() {
        files.push(single);
    }
    let dir = root().join("tests").join(bin);
    if let Ok(entries) = std::fs::read_dir(&dir) {
        files.extend(
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "rs")),
        );
    }
    files
}

fn defines_test(source: &str, test: &str) -> bool {
    source.contains(&format!("fn {test}(")) && source.contains("#[test]")
}

/// Whether the test a table name stands for exists; `Err` says what is missing.
fn check(name: &str) -> Result<(), String> {
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    if let Some(path) = name.strip_prefix("src/") {
        let (file, test) = path.split_once(".rs::").map_or((path, None), |(f, t)| {
            (f.strip_suffix(".rs").unwrap_or(f), Some(t))
        });
        let file = root()
            .join("src")
            .join(format!("{}.rs", file.trim_end_matches(".rs")));
        let source = read(&file);
        return match test {
            _ if source.is_empty() => Err(format!("no file {}", file.display())),
            Some(test) if !defines_test(&source, test.rsplit("::").next().unwrap_or(test)) => {
                Err(format!("no test {test} in {}", file.display()))
            }
            None if !source.contains("#[test]") => Err(format!("no tests in {}", file.display())),
            _ => Ok(()),
        };
    }
    let parts: Vec<&str> = name.split("::").collect();
    if parts.len() < 2 {
        return Err("not `binary::test`, `loom::model` or `src/file.rs`".into());
    }
    let (first, test) = (parts[0], parts[parts.len() - 1]);
    if first == "loom" {
        let models = read(&root().join("loom-tests/tests/models.rs"));
        return defines_test(&models, test)
            .then_some(())
            .ok_or_else(|| format!("no loom model {test}"));
    }
    let files = binary_files(first);
    if files.is_empty() {
        return Err(format!("no test binary tests/{first}.rs or tests/{first}/"));
    }
    // `bin::module::...`: the module's own file when it has one, else the whole binary.
    let in_module: Vec<&PathBuf> = match parts.get(1).filter(|_| parts.len() > 2) {
        Some(module) => files
            .iter()
            .filter(|f| f.file_stem().is_some_and(|s| s == *module))
            .collect(),
        None => Vec::new(),
    };
    let search = if in_module.is_empty() {
        files.iter().collect()
    } else {
        in_module
    };
    let found = search.iter().any(|f| {
        let source = read(f);
        if test == "*" {
            source.contains("#[test]")
        } else {
            defines_test(&source, test)
        }
    });
    found
        .then_some(())
        .ok_or_else(|| format!("no test {test} in tests/{first}"))
}

/// Every test docs/CONTRACT.md names exists (a renamed or removed test fails here, with the
/// promise whose row names it), and every promise's row names at least one.
#[test]
fn every_test_the_contract_table_names_exists() {
    let names = table_names();
    let missing: Vec<String> = names
        .iter()
        .filter_map(|(promise, name)| {
            check(name)
                .err()
                .map(|e| format!("{promise}: `{name}`: {e}"))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "CONTRACT.md names tests that do not exist:\n{}",
        missing.join("\n")
    );
    for promise in 1..=13 {
        assert!(
            names
                .iter()
                .any(|(p, _)| p.starts_with(&format!("{promise}."))),
            "promise {promise} has no test in the table"
        );
    }
}

/// The checker itself: it finds what exists and refuses what does not.
#[test]
fn the_table_checker_tells_found_from_missing() {
    assert!(check("loom::pops_racing_a_flush_are_lifo_and_exactly_once").is_ok());
    assert!(check("loom::no_such_model").is_err());
    assert!(check("token::first_reason_wins_and_never_changes").is_ok());
    assert!(check("token::no_such_test").is_err());
    assert!(check("no_such_binary::x").is_err());
    assert!(check("src/engine/policy.rs").is_ok());
    assert!(
        check("src/engine/policy.rs::tests::backoff_doubles_up_to_an_eighth_of_the_window").is_ok()
    );
    assert!(check("src/engine/no_such_file.rs").is_err());
    assert_eq!(expand("a::{b,c}::d"), vec!["a::b::d", "a::c::d"]);
    // The old table's drifted name is caught.
    assert!(check("batch::callers_released_by_a_write_ride_in_the_next_one").is_err());
}
