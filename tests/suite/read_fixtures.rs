//! Every fixture card read in-process (library, virtual reader): fields, APDU counts, error
//! codes; plus the fallbacks and T=0 handling each fixture was made to exercise.

use crate::common;

use common::expected::{FAILING, Outcome, READABLE, check_card, expected};
use common::temp::TempDir;
use medcard::apdu::Exchanger;
use medcard::card::{CardReader, ReadError, read_in_reader};
use medcard::profile::ProfileSet;
use medcard::reader::with_card;
use medcard::sim::card::VirtualReaders;
use medcard::sim::card::{CardImage, VirtualCard};

const READER: &str = "test reader";

fn reader_with(name: &str) -> VirtualReaders {
    let image = CardImage::load(&common::fixture(name)).expect("fixture loads");
    VirtualReaders::with_card(READER, VirtualCard::new(image))
}

fn read(name: &str) -> Result<medcard::card::CardRead, ReadError> {
    let profiles = ProfileSet::built_in().expect("built-in profiles");
    read_in_reader(&mut reader_with(name), READER, &profiles)
}

/// Reads a fixture in-process and returns every APDU sent, as hex.
fn sent_apdus(name: &str) -> Vec<String> {
    let profiles = ProfileSet::built_in().unwrap();
    let mut readers = reader_with(name);
    let log = with_card(&mut readers, READER, |channel| {
        let mut ex = Exchanger::new(channel).recording();
        CardReader::new(&profiles).read(&mut ex).unwrap();
        ex.take_log()
    })
    .unwrap();
    log.iter().map(hex::encode_upper).collect()
}

#[test]
fn every_readable_fixture_decodes_to_its_expected_fields() {
    for name in READABLE {
        let card = read(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        check_card(name, &serde_json::to_value(&card).expect("card serialises"));
    }
}

#[test]
fn every_failing_fixture_fails_with_its_reader_code() {
    for name in FAILING {
        let Outcome::Error(code) = expected(name) else {
            unreachable!()
        };
        let err = read(name).expect_err(name);
        assert_eq!(i64::from(err.reader_code().0), code, "{name}: {err}");
    }
}

#[test]
fn corrupt_record_error_names_the_field() {
    let err = read("corrupt").unwrap_err().to_string();
    assert!(
        err.contains("brdy") && err.contains("出生日期") && err.contains("0D"),
        "{err}"
    );
}

#[test]
fn a_2_0_card_reads_in_three_apdus_select_and_two_whole_file_reads() {
    let sent = sent_apdus("xiaowang");
    assert_eq!(
        sent,
        [
            "00A404000F7378312E73682EC9E7BBE1B1A3D5CF00",
            "00B2012D40", // EF05, SFI 5, records 1 to last, Le = 64
            "00B201355B", // EF06, SFI 6, records 1 to last, Le = 91
        ]
    );
}

#[test]
fn an_old_cos_falls_back_to_record_numbers_and_remembers_it() {
    let sent = sent_apdus("gen1");
    // Whole-file and by-tag are each tried once (on EF05), never again on EF06.
    assert_eq!(sent.iter().filter(|c| c.starts_with("00B2012D")).count(), 1);
    assert!(!sent.iter().any(|c| c.starts_with("00B20135")), "{sent:?}");
    let by_tag = sent
        .iter()
        .filter(|c| c.starts_with("00B2") && &c[6..8] == "00")
        .count();
    assert_eq!(by_tag, 1, "by-tag read tried once: {sent:?}");
    // EF06 records 1..6 read by SFI 6 (P2 = 0x34), the 1.0 numbering.
    for record in 1..=6 {
        let prefix = format!("00B20{record}34");
        assert!(
            sent.iter().any(|c| c.starts_with(&prefix)),
            "{prefix} missing in {sent:?}"
        );
    }
}

#[test]
fn t0_quirks_are_handled_below_the_card_layer() {
    let sent = sent_apdus("no-4e");
    assert_eq!(sent[1], "00C000001E", "GET RESPONSE after 611E: {sent:?}");
    assert_eq!(
        sent.last().map(String::as_str),
        Some("00B2013545"),
        "resent with Le from 6C45: {sent:?}"
    );
}

#[test]
fn a_regional_profile_is_a_new_file_not_new_code() {
    let dir = TempDir::new("regional");
    let regional = common::profile_text("ssse-2.0")
        .replace("name = \"ssse-2.0\"", "name = \"ssse-2.0-chongqing\"")
        .replace(
            "spec_versions = [\"2.0\"]",
            "spec_versions = [\"2.0\"]\nregions = [\"50\"]",
        )
        .replace("field = \"init_org\"", "field = \"x_init_org\"");
    dir.file("chongqing.toml", &regional);
    let profiles = ProfileSet::built_in_and_dir(&dir).unwrap();
    drop(dir);

    let card = read_in_reader(&mut reader_with("xiaowang"), READER, &profiles).unwrap();
    assert_eq!(card.profile, "ssse-2.0-chongqing");
    assert_eq!(card.init_org, None);
    assert_eq!(card.extra["x_init_org"], "915600000250000050000001");
    let other = read_in_reader(&mut reader_with("resident"), READER, &profiles).unwrap();
    assert_eq!(other.profile, "ssse-2.0");
}

/// Reads `card` with the PSAM image `psam` in a second in-process reader; returns the result
/// and the card-side APDUs as hex.
fn with_psam(
    card: &str,
    psam: &str,
    pin: Option<&str>,
) -> (Result<medcard::card::CardRead, ReadError>, Vec<String>) {
    use medcard::card::{Pin, ReadOptions};
    use medcard::psam::Psam;
    let profiles = ProfileSet::built_in().unwrap();
    let chip = medcard::sim::card::Chip::load(&common::psam(psam)).unwrap();
    let mut psam_readers = VirtualReaders::with_card("psam", chip);
    let mut card_readers = reader_with(card);
    let pin = pin.map(|p| Pin::new(p).unwrap());
    with_card(&mut psam_readers, "psam", |psam_channel| {
        let mut psam_ex = Exchanger::new(psam_channel);
        let mut psam = Psam::open(&mut psam_ex, "psam").unwrap();
        with_card(&mut card_readers, READER, |channel| {
            let mut ex = Exchanger::new(channel).recording();
            let options = ReadOptions {
                authenticator: Some(&mut psam),
                pin: pin.as_ref().map(medcard::card::PinEntry::Typed),
                records: true,
            };
            let card = CardReader::new(&profiles).read_with(&mut ex, options);
            (card, ex.take_log().iter().map(hex::encode_upper).collect())
        })
        .unwrap()
    })
    .unwrap()
}

#[test]
fn a_3_0_card_opens_with_internal_then_external_authentication() {
    let (card, sent) = with_psam("gen3", "test-sm4", None);
    let card = card.unwrap();
    assert_eq!(card.holder.certno.as_deref(), Some("440106200108170645"));
    assert!(card.needs_psam.is_empty());
    assert_eq!(card.psam_terminal_no.as_deref(), Some("410100813475"));
    let ins: Vec<&str> = sent.iter().map(|c| &c[2..4]).collect();
    // SELECT, EF05, INTERNAL AUTHENTICATE, GET CHALLENGE, EXTERNAL AUTHENTICATE, EF06.
    assert_eq!(ins, ["A4", "B2", "88", "84", "82", "B2"], "{sent:?}");
    assert!(
        sent[4].starts_with("0082000A10"),
        "RKSSSE key id 0A: {}",
        sent[4]
    );
    // Internal authentication carries the factor "440100sx".
    let factor = hex::encode_upper("440100sx");
    assert!(
        sent[2].starts_with(&format!("0088000010{factor}")),
        "{}",
        sent[2]
    );
}

#[test]
fn a_33_region_card_uses_the_four_digit_factor() {
    let (card, sent) = with_psam("gen3-des", "test-sm4", None);
    assert_eq!(
        card.unwrap().holder.certno.as_deref(),
        Some("330782197912050571")
    );
    let factor = hex::encode_upper("330700sx");
    assert!(
        sent[2].starts_with(&format!("0088000010{factor}")),
        "{}",
        sent[2]
    );
}

#[test]
fn a_wrong_key_is_one_external_authentication_and_an_error() {
    let (card, sent) = with_psam("gen3", "wrong-key", None);
    let err = card.unwrap_err();
    assert_eq!(err.reader_code().0, -0x63C2, "{err}");
    assert_eq!(sent.iter().filter(|c| c.starts_with("0082")).count(), 1);
}

#[test]
fn the_pin_opens_the_balance_to_the_fen() {
    let (card, sent) = with_psam("xiaowang", "test-sm4", Some("123456"));
    let card = card.unwrap();
    let balance = card.balance.expect("offline card balance");
    assert_eq!(
        (balance.balc.as_str(), balance.annual_self_pay.as_str()),
        ("102.80", "230.00")
    );
    assert_eq!(card.transactions.map(|t| t.len()), Some(3));
    // The PIN query costs no try and comes before the PIN itself.
    let verify: Vec<&String> = sent.iter().filter(|c| c.starts_with("0020")).collect();
    assert_eq!(verify, ["00200000", "0020000003123456"]);
}
