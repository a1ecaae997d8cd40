//! docs/troubleshooting.md kept honest: every error code medcard can give, every insurer
//! refusal class it knows and every check of `medcard doctor` has a row in the handbook, and
//! no row names one that is gone. What must be there is read from the sources, never listed
//! here:
//!
//! - `src/serve/rpc.rs`, module `code`: every `pub const NAME: i32 = N;` → a `| N |` row of
//!   the section "JSON-RPC error codes";
//! - `src/codes.rs`'s `ReaderCode(N)` consts and every `ReaderCode(-N)` the library and the
//!   binary give directly (outside their unit tests) → a `| N |` row of "Reader-interface
//!   codes";
//! - every `class` of `insurer-refusals/national.toml` → a `` | `class` | `` row of "Insurer
//!   refusals";
//! - the id of every `Check::pass/warn/fail/skip("id", …)` in `src/serve/doctor/checks.rs` →
//!   a `` | `id` | `` row of "medcard doctor".
//!
//! A row is a table line whose first cell is the code (written with an ASCII minus, as
//! medcard prints it) or the backticked id.

use std::collections::BTreeSet;
use std::path::Path;

const DOC: &str = "docs/troubleshooting.md";
const READER_SECTION: &str = "Reader-interface codes";
const RPC_SECTION: &str = "JSON-RPC error codes";
const REFUSAL_SECTION: &str = "Insurer refusals";
const DOCTOR_SECTION: &str = "medcard doctor";
const STATUS_WORD_SECTION: &str = "Card status words";

fn read(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// Every `.rs` file under `dir`, as paths relative to the package.
fn rust_files(dir: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(&dir);
        let entries = std::fs::read_dir(&full).unwrap_or_else(|e| panic!("{dir}: {e}"));
        for entry in entries {
            let name = entry.expect("a directory entry").file_name();
            let path = format!("{dir}/{}", name.to_string_lossy());
            if Path::new(env!("CARGO_MANIFEST_DIR")).join(&path).is_dir() {
                pending.push(path);
            } else if path.ends_with(".rs") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// A source file before its unit-test module, whose test data may name any code.
fn without_unit_tests(text: &str) -> &str {
    text.split("#[cfg(test)]\nmod ").next().unwrap_or(text)
}

// ---- what the sources say ---------------------------------------------------------------

/// The values of `src/serve/rpc.rs`'s `pub mod code { pub const NAME: i32 = N; … }`.
fn rpc_codes() -> BTreeSet<String> {
    let rpc = read("src/serve/rpc.rs");
    let module = rpc
        .split("pub mod code {")
        .nth(1)
        .and_then(|rest| rest.split("\n}").next())
        .expect("src/serve/rpc.rs has `pub mod code { … }`");
    module
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("pub const "))
        .map(|line| {
            let value = line
                .split_once(": i32 = ")
                .and_then(|(_, value)| value.strip_suffix(';'))
                .unwrap_or_else(|| panic!("not `pub const NAME: i32 = N;`: {line}"));
            number(value.trim()).unwrap_or_else(|| panic!("not a number: {line}"))
        })
        .collect()
}

/// Every `ReaderCode(N)` with a literal N in the library and the binary, outside their unit
/// tests: the consts of `src/codes.rs` and the codes given directly.
fn reader_codes() -> BTreeSet<String> {
    let mut codes = BTreeSet::new();
    for path in rust_files("src") {
        let text = read(&path);
        for after in without_unit_tests(&text).split("ReaderCode(").skip(1) {
            if let Some(code) = after.split(')').next().and_then(number) {
                codes.insert(code);
            }
        }
    }
    codes
}

/// Every `class` of the built-in refusal rules.
fn refusal_classes() -> BTreeSet<String> {
    let rules: toml::Table =
        toml::from_str(&read("insurer-refusals/national.toml")).expect("national.toml parses");
    rules
        .get("refusal")
        .and_then(toml::Value::as_array)
        .expect("national.toml has [[refusal]] rules")
        .iter()
        .map(|rule| {
            rule.get("class")
                .and_then(toml::Value::as_str)
                .unwrap_or_else(|| panic!("a rule without a class: {rule}"))
                .to_owned()
        })
        .collect()
}

/// The first string argument of every `Check::pass/warn/fail/skip(` in the doctor's checks.
fn doctor_check_ids() -> BTreeSet<String> {
    let checks = read("src/serve/doctor/checks.rs");
    let mut ids = BTreeSet::new();
    for after in checks.split("Check::").skip(1) {
        let Some(args) = ["pass(", "warn(", "fail(", "skip("]
            .iter()
            .find_map(|call| after.strip_prefix(call))
        else {
            continue;
        };
        // `Check::skip(id, …)` in a loop over literal ids: those ids are named elsewhere too.
        if let Some(quoted) = args.trim_start().strip_prefix('"') {
            let id = quoted.split('"').next().unwrap_or_default();
            ids.insert(id.to_owned());
        }
    }
    ids
}

/// An integer as medcard prints it (ASCII minus), canonically.
fn number(text: &str) -> Option<String> {
    text.parse::<i64>().ok().map(|n| n.to_string())
}

// ---- what the handbook says -------------------------------------------------------------

/// The text of the section `## heading`, up to the next `## `.
fn section<'a>(doc: &'a str, heading: &str) -> &'a str {
    let marker = format!("\n## {heading}\n");
    let start = doc
        .find(&marker)
        .unwrap_or_else(|| panic!("{DOC} has no section `## {heading}`"));
    let body = &doc[start + marker.len()..];
    body.find("\n## ").map_or(body, |end| &body[..end])
}

/// The first cell of every table row of `section`.
fn first_cells(section: &str) -> Vec<&str> {
    section
        .lines()
        .filter_map(|line| line.trim().strip_prefix('|'))
        .filter_map(|rest| rest.split('|').next())
        .map(str::trim)
        .collect()
}

/// The codes of the rows whose first cell is a number.
fn numbered_rows(section: &str) -> BTreeSet<String> {
    first_cells(section)
        .into_iter()
        .filter_map(number)
        .collect()
}

/// The ids of the rows whose first cell is one backticked word.
fn backticked_rows(section: &str) -> BTreeSet<String> {
    first_cells(section)
        .into_iter()
        .filter_map(|cell| cell.strip_prefix('`')?.strip_suffix('`'))
        .filter(|id| !id.is_empty() && !id.contains('`'))
        .map(str::to_owned)
        .collect()
}

/// What the handbook lacks, and the rows it has for what the sources do not.
#[derive(Debug, PartialEq, Eq)]
struct Drift {
    missing: Vec<String>,
    stale: Vec<String>,
}

impl Drift {
    fn between(expected: &BTreeSet<String>, rows: &BTreeSet<String>) -> Drift {
        Drift {
            missing: expected.difference(rows).cloned().collect(),
            stale: rows.difference(expected).cloned().collect(),
        }
    }

    fn assert_none(&self, what: &str) {
        assert!(
            self.missing.is_empty() && self.stale.is_empty(),
            "{DOC}, {what}: no row for {:?}; rows for what the sources no longer have: {:?}",
            self.missing,
            self.stale
        );
    }
}

fn sanity(found: &BTreeSet<String>, anchor: &str, from: &str) {
    assert!(
        found.contains(anchor),
        "reading {from} found {found:?}, not even {anchor}: the parsing here is broken"
    );
}

// ---- the tests ----------------------------------------------------------------------------

#[test]
fn every_json_rpc_code_has_a_row() {
    let codes = rpc_codes();
    sanity(&codes, "-32700", "src/serve/rpc.rs");
    sanity(&codes, "1001", "src/serve/rpc.rs");
    let doc = read(DOC);
    Drift::between(&codes, &numbered_rows(section(&doc, RPC_SECTION))).assert_none(RPC_SECTION);
}

#[test]
fn every_reader_code_has_a_row() {
    let codes = reader_codes();
    sanity(&codes, "-1", "src/codes.rs");
    sanity(&codes, "-2201", "src/codes.rs");
    let doc = read(DOC);
    Drift::between(&codes, &numbered_rows(section(&doc, READER_SECTION)))
        .assert_none(READER_SECTION);
}

#[test]
fn every_refusal_class_has_a_row() {
    let classes = refusal_classes();
    sanity(
        &classes,
        "duplicate_msgid",
        "insurer-refusals/national.toml",
    );
    let doc = read(DOC);
    Drift::between(&classes, &backticked_rows(section(&doc, REFUSAL_SECTION)))
        .assert_none(REFUSAL_SECTION);
}

#[test]
fn every_doctor_check_has_a_row() {
    let ids = doctor_check_ids();
    sanity(&ids, "config", "src/serve/doctor/checks.rs");
    let doc = read(DOC);
    Drift::between(&ids, &backticked_rows(section(&doc, DOCTOR_SECTION)))
        .assert_none(DOCTOR_SECTION);
}

/// A status word's row gives −(SW1SW2) in decimal, as `StatusWord::reader_code` makes it.
#[test]
fn status_word_rows_give_their_codes() {
    let doc = read(DOC);
    let mut checked = 0;
    for line in section(&doc, STATUS_WORD_SECTION).lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let [_, sw, code, ..] = cells.as_slice() else {
            continue;
        };
        let Ok(sw) = u16::from_str_radix(sw, 16) else {
            continue; // the header, the separator, a range (63Cx)
        };
        assert_eq!(
            code.parse::<i32>().ok(),
            Some(-i32::from(sw)),
            "{DOC}: status word {sw:04X} is code {}, not {code}",
            -i32::from(sw)
        );
        checked += 1;
    }
    assert!(checked > 0, "{DOC}: no status-word rows read");
}

/// The checks above can fail: a row taken out is missing, a row for a code the sources do
/// not have is stale.
#[test]
fn a_row_taken_out_or_made_up_is_caught() {
    let doc = read(DOC);
    let codes = rpc_codes();
    let taken = codes.iter().next().expect("at least one code").clone();
    let without: String = doc
        .lines()
        .filter(|line| !line.starts_with(&format!("| {taken} |")))
        .map(|line| format!("{line}\n"))
        .collect();
    assert_ne!(without, doc, "no `| {taken} |` row to take out");
    let drift = Drift::between(&codes, &numbered_rows(section(&without, RPC_SECTION)));
    assert_eq!(drift.missing, vec![taken]);

    let made_up = section(&doc, RPC_SECTION).replace("| 1001 |", "| 9999 |");
    let drift = Drift::between(&codes, &numbered_rows(&made_up));
    assert_eq!(
        (drift.missing, drift.stale),
        (vec!["1001".to_owned()], vec!["9999".to_owned()])
    );

    let unicode_minus = section(&doc, READER_SECTION).replace("| -2 |", "| −2 |");
    let drift = Drift::between(&reader_codes(), &numbered_rows(&unicode_minus));
    assert_eq!(drift.missing, vec!["-2".to_owned()]);
}
