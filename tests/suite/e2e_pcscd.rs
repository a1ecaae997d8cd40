//! End to end through the real PC/SC stack: pcscd, vsmartcard's vpcd driver, `medcard sim`
//! as the card and `medcard read` as the client — the code path of a real reader. Needs
//! root, pcscd and vsmartcard-vpcd (`make deps`); the tests serialise on a machine-wide lock.

use crate::common;

use common::expected::{FAILING, Outcome, READABLE, check_card, expected};
use common::fixture;
use common::json_of;
use common::stack::{READER_0, READER_1, Sim, Stack, medcard_read, scriptor};
use medcard::profile::ProfileSet;
use medcard::reader::pcsc_reader::PcscReaders;
use std::process::Command;
use std::time::Duration;

fn read_json(reader: &str) -> (serde_json::Value, Option<i32>) {
    let output = medcard_read(&["--reader", reader, "--format", "json"]);
    (json_of(&output), output.status.code())
}

#[test]
fn every_fixture_reads_through_pcscd_with_its_fields_or_its_error() {
    let stack = Stack::start();
    for (i, name) in READABLE.iter().chain(FAILING).enumerate() {
        // Alternate the two vpcd slots so one card's removal overlaps the next insertion.
        let slot = (i % 2) as u16;
        let sim = Sim::insert(&stack, slot, &fixture(name));
        let (json, status) = read_json(sim.reader);
        match expected(name) {
            Outcome::Card { .. } => {
                assert_eq!(status, Some(0), "{name}: {json}");
                check_card(name, &json);
            }
            Outcome::Error(code) => {
                assert_eq!(json["error"]["code"], code, "{name}: {json}");
                assert_eq!(
                    status,
                    Some(code.unsigned_abs() as i32),
                    "{name}: exit status"
                );
                assert!(json["error"]["message_zh"].is_string(), "{name}: {json}");
            }
        }
        drop(sim);
        stack.wait_for_reader_state(if slot == 0 { READER_0 } else { READER_1 }, false);
    }
}

#[test]
fn ireadcardbas_string_is_exactly_the_national_format() {
    let stack = Stack::start();
    let _sim = Sim::insert(&stack, 0, &fixture("xiaowang"));
    let output = medcard_read(&["--reader", READER_0, "--format", "ireadcardbas"]);
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim_end(),
        "500000|500103199103080319|C06123455|500000D15600000512345678ABCDEF01|王小|\
         00814A444686605000000001AC|2.00|20210315|20310315|000000000000||"
    );
}

#[test]
fn text_format_is_for_people() {
    let stack = Stack::start();
    let _sim = Sim::insert(&stack, 1, &fixture("long-name"));
    let output = medcard_read(&["--reader", READER_1, "--format", "text"]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("阿不都热合曼·买买提艾力·吐尔逊托合提"),
        "{text}"
    );
    assert!(
        text.contains("男 (1)") && text.contains("2030-06-10"),
        "{text}"
    );
}

#[test]
fn an_independent_pcsc_client_gets_the_bytes_the_card_image_defines() {
    let stack = Stack::start();
    let _sim = Sim::insert(&stack, 0, &fixture("xiaowang"));
    let script = "00A404000F7378312E73682EC9E7BBE1B1A3D5CF00\n\
                  00A4020002EF06\n\
                  00B2090020\n\
                  00B2072C0B\n";
    let replies = scriptor(READER_0, script);
    // FCI: 6F { 84 DF name, A5 { 88 01 1E, 9F0C 03 86 01 01 } } (DES).
    assert_eq!(
        replies[0],
        "6F1C840F7378312E73682EC9E7BBE1B1A3D5CFA50988011E9F0C038601019000"
    );
    assert_eq!(replies[1], "9000");
    // 姓名 王小 in GBK (CDF5 D0A1), padded with 00 to 30 bytes.
    assert_eq!(replies[2], format!("091ECDF5D0A1{}9000", "00".repeat(26)));
    // 卡号 by SFI 5 record 7: 07 09 "C06123455".
    assert_eq!(
        replies[3],
        format!("0709{}9000", hex::encode_upper("C06123455"))
    );
}

#[test]
fn a_card_pulled_mid_read_is_code_minus_4_then_no_card_is_minus_2() {
    let stack = Stack::start();
    let sim = Sim::insert(&stack, 0, &fixture("vanishing"));
    let (json, status) = read_json(READER_0);
    assert_eq!(json["error"]["code"], -4, "{json}");
    assert_eq!(status, Some(4));
    stack.wait_for_reader_state(READER_0, false);
    let (json, status) = read_json(READER_0);
    assert_eq!(json["error"]["code"], -2, "{json}");
    assert_eq!(status, Some(2));
    // Reinserted, the same card reads until it vanishes again: nothing was left half-done.
    assert_eq!(sim.control("insert"), "ok");
    stack.wait_for_reader_state(READER_0, true);
    assert_eq!(read_json(READER_0).0["error"]["code"], -4);
}

#[test]
fn a_swapped_card_is_read_as_the_new_card() {
    let stack = Stack::start();
    let sim = Sim::insert(&stack, 0, &fixture("xiaowang"));
    assert_eq!(read_json(READER_0).0["card_no"], "C06123455");
    sim.swap(&stack, &fixture("resident"));
    let (json, _) = read_json(READER_0);
    check_card("resident", &json);
}

#[test]
fn with_two_cards_the_reader_must_be_named() {
    let stack = Stack::start();
    let _first = Sim::insert(&stack, 0, &fixture("xiaowang"));
    let _second = Sim::insert(&stack, 1, &fixture("gen1"));
    let output = medcard_read(&["--format", "json"]);
    let json = json_of(&output);
    assert_eq!(json["error"]["code"], -11, "{json}");
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("several readers"),
        "{json}"
    );
    assert_eq!(read_json(READER_1).0["card_no"], "B07412630");
}

#[test]
fn read_waits_for_a_card_to_be_inserted() {
    let stack = Stack::start();
    let waiting = Command::new(common::medcard_bin())
        .args([
            "read", "--reader", READER_0, "--wait", "15", "--format", "json",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("medcard read --wait");
    std::thread::sleep(Duration::from_millis(700));
    let _sim = Sim::insert(&stack, 0, &fixture("rare-char"));
    let output = waiting.wait_with_output().expect("read finished");
    assert!(output.status.success(), "{output:?}");
    check_card("rare-char", &json_of(&output));
}

#[test]
fn the_reader_backend_survives_a_pcscd_restart() {
    let mut stack = Stack::start();
    if !stack.pcscd.owned() {
        eprintln!("pcscd was already running and is not ours to restart; run under `make test`");
        return;
    }
    let profiles = ProfileSet::built_in().unwrap();
    let mut readers = PcscReaders::new();
    let sim = Sim::insert(&stack, 0, &fixture("xiaowang"));
    let before = medcard::card::read_in_reader(&mut readers, READER_0, &profiles).unwrap();
    stack.pcscd.restart().expect("pcscd restarts");
    // The card process reconnects to the new pcscd by itself.
    stack.wait_for_reader_state(READER_0, true);
    let after = medcard::card::read_in_reader(&mut readers, READER_0, &profiles)
        .expect("same PcscReaders reads after the restart");
    assert_eq!(before.card_no, after.card_no);
    drop(sim);
}
