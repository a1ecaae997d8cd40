//! End to end through pcscd + vpcd with a virtual PSAM in the second slot: 3.0 cards read
//! completely, every PSAM and external-authentication failure gives its code without
//! locking the card, and offline cards give their balance behind the PIN.

use crate::common;

use common::stack::{READER_0, READER_1, Sim, Stack, scriptor};
use common::{json_of, psam};
use serde_json::{Value, json};
use std::io::Write;
use std::process::{Command, Output, Stdio};

/// `medcard read` on slot 0 with `args`, `stdin` fed to it, trace logging on.
fn read(args: &[&str], stdin: &str) -> (Value, Option<i32>, String) {
    let mut child = Command::new(common::medcard_bin())
        .args(["read", "--reader", READER_0, "--format", "json"])
        .args(args)
        .env("MEDCARD_LOG", "trace")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("medcard read");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let output: Output = child.wait_with_output().expect("medcard read output");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (json_of(&output), output.status.code(), stderr)
}

fn error_code(json: &Value) -> i64 {
    json["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("no error in {json}"))
}

#[test]
fn a_3_0_card_reads_completely_with_the_psam() {
    let stack = Stack::start();
    let _psam = Sim::insert(&stack, 1, &psam("test-sm4"));
    let _card = Sim::insert(&stack, 0, &common::fixture("gen3"));
    let (json, status, stderr) = read(&[], "");
    assert_eq!(status, Some(0), "{json} {stderr}");
    common::expected::check_gen3_opened_by_the_psam(&json);
    // Personal data never appears unmasked in the trace log.
    assert!(!stderr.contains("440106200108170645"), "certno in the log");
    assert!(
        stderr.contains("4401**********0645"),
        "masked certno expected in the debug line"
    );
}

#[test]
fn the_ireadcardbas_string_carries_the_psam_terminal_number() {
    let stack = Stack::start();
    let _psam = Sim::insert(&stack, 1, &psam("test-sm4"));
    let _card = Sim::insert(&stack, 0, &common::fixture("gen3"));
    let output = Command::new(common::medcard_bin())
        .args([
            "read",
            "--reader",
            READER_0,
            "--format",
            "ireadcardbas",
            "--psam",
            READER_1,
        ])
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&output.stdout);
    let fields: Vec<&str> = line.trim_end().split('|').collect();
    assert_eq!(fields[1], "440106200108170645", "{line}");
    assert_eq!(fields[4], "黄嘉怡");
    assert_eq!(fields[9], "410100813475");
}

#[test]
fn a_des_card_of_a_33_region_reads_with_the_same_psam() {
    let stack = Stack::start();
    let _psam = Sim::insert(&stack, 1, &psam("test-sm4"));
    let _card = Sim::insert(&stack, 0, &common::fixture("gen3-des"));
    let (json, status, _) = read(&[], "");
    assert_eq!(status, Some(0), "{json}");
    assert!(
        json["holder"]["certno"]
            .as_str()
            .is_some_and(|c| c.len() == 18),
        "{json}"
    );
    assert!(json["card_id"].as_str().unwrap().starts_with("33"));
}

#[test]
fn psam_failures_have_their_codes() {
    let stack = Stack::start();
    let _card = Sim::insert(&stack, 0, &common::fixture("gen3"));
    let psam_sim = Sim::insert(&stack, 1, &psam("test-des-only"));
    assert_eq!(
        error_code(&read(&[], "").0),
        -2202,
        "SM4 card, DES-only PSAM"
    );
    psam_sim.swap(&stack, &psam("no-rkssse"));
    let (json, _, _) = read(&["--psam", READER_1], "");
    assert_eq!(error_code(&json), -2203, "{json}");
    let (json, status, _) = read(&["--psam", "none"], "");
    assert_eq!(status, Some(0));
    assert_eq!(json["holder"]["certno"], Value::Null);
    assert!(
        json["needs_psam"].as_array().is_some_and(|f| f.len() == 6),
        "{json}"
    );
}

#[test]
fn a_named_reader_without_a_psam_is_code_minus_2201() {
    let stack = Stack::start();
    let _card = Sim::insert(&stack, 0, &common::fixture("gen3"));
    let _other = Sim::insert(&stack, 1, &common::fixture("resident"));
    let (json, status, _) = read(&["--psam", READER_1], "");
    assert_eq!(error_code(&json), -2201, "{json}");
    assert_eq!(status, Some(100), "codes beyond 99 exit 100");
}

#[test]
fn a_wrong_key_fails_once_per_read_and_never_locks_the_card_by_retrying() {
    let stack = Stack::start();
    let _card = Sim::insert(&stack, 0, &common::fixture("gen3"));
    let psam_sim = Sim::insert(&stack, 1, &psam("wrong-key"));
    // 63C2 then 63C1: exactly one external authentication per read, no blind retry.
    assert_eq!(error_code(&read(&[], "").0), -0x63C2);
    assert_eq!(error_code(&read(&[], "").0), -0x63C1);
    psam_sim.swap(&stack, &psam("test-sm4"));
    let (json, status, _) = read(&[], "");
    assert_eq!(
        status,
        Some(0),
        "the right PSAM still opens the card: {json}"
    );
    assert_eq!(json["holder"]["psn_name"], "黄嘉怡");
}

#[test]
fn a_locked_card_reports_6983() {
    let stack = Stack::start();
    let _psam = Sim::insert(&stack, 1, &psam("test-sm4"));
    let _card = Sim::insert(&stack, 0, &common::fixture("gen3-locked"));
    let (json, _, _) = read(&[], "");
    assert_eq!(error_code(&json), -0x6983, "{json}");
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not retried"),
        "{json}"
    );
}

#[test]
fn an_offline_card_gives_its_balance_behind_the_pin_to_the_fen() {
    let stack = Stack::start();
    let _card = Sim::insert(&stack, 0, &common::fixture("xiaowang"));
    let (json, status, stderr) = read(&["--pin-from-stdin", "--records"], "123456\n");
    assert_eq!(status, Some(0), "{json}");
    assert_eq!(
        json["balance"],
        json!({"balc": "102.80", "annual_self_pay": "230.00", "annual_fund_pay": "0.00",
               "year": "2026", "source": "card"})
    );
    assert_eq!(json["balance_source"], "card");
    let records = json["transactions"].as_array().expect("transactions");
    assert_eq!(records.len(), 3, "{json}");
    let paid: rust_decimal::Decimal = records
        .iter()
        .map(|r| {
            r["acct_pay"]
                .as_str()
                .unwrap()
                .parse::<rust_decimal::Decimal>()
                .unwrap()
        })
        .sum();
    assert_eq!(paid.to_string(), "230.00");
    // The card id holds "12345678"; the PIN may appear nowhere else, in text or BCD.
    assert_eq!(
        stderr.matches("123456").count(),
        stderr.matches("12345678").count(),
        "the PIN reached the log"
    );
    assert!(
        stderr.contains("secret bytes"),
        "the VERIFY trace is redacted"
    );
}

#[test]
fn wrong_and_locked_pins_have_their_codes_and_tries_left() {
    let stack = Stack::start();
    let card = Sim::insert(&stack, 0, &common::fixture("pin-2-left"));
    let (json, status, _) = read(&["--pin-from-stdin"], "111111\n");
    assert_eq!(error_code(&json), -51);
    assert_eq!(status, Some(51));
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1 tries left"),
        "{json}"
    );
    let (json, status, _) = read(&["--pin-from-stdin"], "654321\n");
    assert_eq!(status, Some(0), "the right PIN still works: {json}");
    card.swap(&stack, &common::fixture("pin-locked"));
    let (json, _, _) = read(&["--pin-from-stdin"], "123456\n");
    assert_eq!(error_code(&json), -52, "{json}");
    let (json, _, _) = read(&["--pin-from-stdin"], "12\n");
    assert_eq!(error_code(&json), -33, "PIN too short: {json}");
}

#[test]
fn an_online_card_leaves_the_balance_to_the_insurer() {
    let stack = Stack::start();
    let _card = Sim::insert(&stack, 0, &common::fixture("resident"));
    let (json, status, _) = read(&["--pin-from-stdin"], "123456\n");
    assert_eq!(status, Some(0), "{json}");
    assert_eq!(json["balance"], Value::Null);
    assert_eq!(json["balance_source"], "insurer");
}

#[test]
fn a_card_failing_internal_authentication_is_not_genuine() {
    let stack = Stack::start();
    let _psam = Sim::insert(&stack, 1, &psam("wrong-internal"));
    let _card = Sim::insert(&stack, 0, &common::fixture("gen3"));
    let (json, status, _) = read(&[], "");
    assert_eq!(error_code(&json), -21, "{json}");
    assert_eq!(status, Some(21));
}

#[test]
fn what_a_read_opened_is_closed_when_medcard_lets_go_of_the_card() {
    let stack = Stack::start();
    let _psam = Sim::insert(&stack, 1, &psam("test-sm4"));
    let _card = Sim::insert(&stack, 0, &common::fixture("gen3"));
    let (json, status, _) = read(&[], "");
    assert_eq!(status, Some(0), "{json}");
    // Another program connecting next finds EF06 locked again: medcard reset the card.
    let replies = scriptor(
        READER_0,
        "00A404000F7378312E73682EC9E7BBE1B1A3D5CF00\n00B201355B\n",
    );
    assert!(replies[0].ends_with("9000"), "{replies:?}");
    assert_eq!(replies[1], "6982", "EF06 must need authentication again");
}

#[test]
fn vpcd_has_no_pin_pad_and_says_so() {
    let stack = Stack::start();
    let _card = Sim::insert(&stack, 0, &common::fixture("xiaowang"));
    let (json, status, _) = read(&["--pin-pad"], "");
    assert_eq!(error_code(&json), -13, "{json}");
    assert_eq!(status, Some(13));
}
