//! The `medcard` command line without the PC/SC stack: in-process virtual cards, profile
//! checking, help texts and exit statuses.

use crate::common;

use common::medcard;
use common::temp::TempDir;

fn card_file(name: &str) -> String {
    common::fixture(name).display().to_string()
}

#[test]
fn read_of_a_card_file_prints_the_card_json() {
    let output = medcard(&["read", "--card-file", &card_file("xiaowang")]);
    assert!(output.status.success(), "{output:?}");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    common::expected::check_card("xiaowang", &json);
}

#[test]
fn a_failed_read_is_json_with_the_national_code_and_the_exit_status() {
    let output = medcard(&[
        "read",
        "--card-file",
        &card_file("corrupt"),
        "--format",
        "json",
    ]);
    assert_eq!(output.status.code(), Some(15));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["error"]["code"], -15);
    assert_eq!(json["error"]["message_zh"], "信息校验和出错");
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("出生日期")
    );
}

#[test]
fn text_errors_go_to_stderr_in_the_operators_terms() {
    let output = medcard(&[
        "read",
        "--card-file",
        &card_file("no-ssse"),
        "--format",
        "text",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("not a social security card") && stderr.contains("卡类型不对"),
        "{stderr}"
    );
}

#[test]
fn a_missing_card_file_is_a_load_error_naming_the_file() {
    let output = medcard(&["read", "--card-file", "/nonexistent/card.toml"]);
    assert_eq!(output.status.code(), Some(5));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/card.toml")
    );
}

#[test]
fn profiles_check_names_the_file_the_item_and_the_problem() {
    let dir = TempDir::new("cli-profiles");
    let broken = common::profile_text("ssse-2.0")
        .replace("name = \"ssse-2.0\"", "name = \"broken\"")
        .replace("spec_versions = [\"2.0\"]", "spec_versions = [\"2.1\"]")
        .replacen(
            "format = \"date\"\nlength = 4",
            "format = \"date\"\nlength = 3",
            1,
        );
    let path = dir.file("broken.toml", &broken);
    let output = medcard(&["profiles", "check", &path.display().to_string()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("broken.toml") && stderr.contains("EF05"),
        "{stderr}"
    );
    assert!(
        stderr.contains("05 (发卡日期)") && stderr.contains("date is 4 bytes"),
        "{stderr}"
    );
}

#[test]
fn profiles_list_shows_the_three_generations() {
    let output = medcard(&["profiles", "list"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    for name in ["ssse-1.0", "ssse-2.0", "ssse-3.0", "external auth RKSSSE"] {
        assert!(stdout.contains(name), "{name} missing from {stdout}");
    }
}

#[test]
fn help_explains_formats_and_exit_statuses() {
    let output = medcard(&["read", "--help"]);
    let help = String::from_utf8_lossy(&output.stdout);
    for needle in ["ireadcardbas", "--wait", "Exit status", "--card-file"] {
        assert!(help.contains(needle), "{needle} missing from read --help");
    }
}

#[test]
fn a_pin_pad_reader_takes_the_pin_on_its_keypad() {
    let card = card_file("xiaowang");
    let read_with_keypad_pin = |pin: &str| {
        let args = [
            "read",
            "--card-file",
            &card,
            "--pin-pad",
            "--sim-pin-pad",
            pin,
        ];
        medcard(&args)
    };
    let output = read_with_keypad_pin("123456");
    assert!(output.status.success(), "{output:?}");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["balance"]["balc"], "102.80");
    let output = read_with_keypad_pin("111111");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["error"]["code"], -51, "{json}");
}

#[test]
fn asking_for_a_pin_pad_on_a_reader_without_one_is_a_clear_error() {
    let output = medcard(&["read", "--card-file", &card_file("xiaowang"), "--pin-pad"]);
    assert_eq!(output.status.code(), Some(13));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no PIN pad"),
        "{json}"
    );
}

#[test]
fn the_demo_plays_a_swipe_and_a_settlement_through_the_daemon_and_stops_with_once() {
    let dir = TempDir::new("cli-demo");
    let socket = dir.join("demo.sock");
    let output = medcard(&["demo", "--once", "--socket", &socket.display().to_string()]);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    for needle in [
        "event card.ready",
        "event card.removed",
        "← 王小",
        "verdict ok (may_settle yes",
        "\"method\":\"visit.register\"",
        "account 102.80, cash 17.20, fund 0.00",
        "the patient pays 17.20 in cash",
        "门诊医保结算凭证",
        "psn_cash_pay                 17.20",
        "the same setl_id",
        "黄嘉怡",
        "session 2",
        "/kiosk#token=",
        "bill demo-his-bill-0001 offered, 30.00",
        "event credential.scanned counter",
        "credential session 1 — 王小 5001**********0319, verdict ok",
        "凭证 mdtrt_cert_type 医保电子凭证 01",
    ] {
        assert!(stdout.contains(needle), "{needle} missing from:\n{stdout}");
    }
    // The same setl_id twice: the commit and its retry; then the kiosk's bill, another.
    let setl_ids: Vec<&str> = stdout
        .lines()
        .filter(|line| line.starts_with("  ← "))
        .filter_map(|line| line.split("setl_id ").nth(1))
        .map(|rest| rest.split([',', ' ']).next().unwrap_or(rest))
        .collect();
    // Then the visit paid by QR code, a fourth.
    assert_eq!(setl_ids.len(), 4, "{stdout}");
    assert_eq!(setl_ids[0], setl_ids[1], "{stdout}");
    assert_ne!(setl_ids[1], setl_ids[2], "{stdout}");
    assert_ne!(setl_ids[2], setl_ids[3], "{stdout}");
    assert!(!socket.exists(), "the demo removes its socket");
}
