//! What each fixture card must read as, written from the fixture files' contents and the
//! card specification, independently of medcard's decoder. Both the in-process tests and the
//! end-to-end tests through pcscd compare medcard's JSON with these.

use serde_json::{Value, json};

/// The outcome a read of a fixture must have.
pub enum Outcome {
    /// The card reads; every listed JSON field must be equal, every other one present.
    Card {
        fields: Value,
        /// Most APDUs an efficient read may take.
        max_apdus: u64,
        /// A warning that must be present (substring), if any.
        warning: Option<&'static str>,
    },
    /// The read fails with this reader-interface code.
    Error(i64),
}

pub const READABLE: &[&str] = &[
    "xiaowang",
    "resident",
    "long-name",
    "rare-char",
    "gen1",
    "gen3",
    "expired",
    "no-4e",
    "quirky",
    "gen3-des",
    "gen3-locked",
    "pin-locked",
    "pin-2-left",
];
pub const FAILING: &[&str] = &["no-ssse", "corrupt", "vanishing"];

#[allow(clippy::too_many_arguments)]
fn card(
    card_id: &str,
    card_type: &str,
    version: &str,
    init_org: &str,
    dates: (&str, &str),
    card_no: &str,
    atr: &str,
    profile: &str,
    holder: Value,
) -> Value {
    json!({
        "card_no": card_no,
        "card_id": card_id,
        "card_type": card_type,
        "spec_version": version,
        "issuer_admdvs": &card_id[..6],
        "init_org": init_org,
        "issue_date": dates.0,
        "expiry_date": dates.1,
        "atr": atr,
        "profile": profile,
        "holder": holder,
    })
}

fn holder(certno: &str, name: &str, gend: &str, naty: &str, birthplace: &str, brdy: &str) -> Value {
    json!({"certno": certno, "psn_name": name, "gend": gend, "naty": naty, "birthplace": birthplace, "brdy": brdy})
}

const NO_HOLDER: fn() -> Value = || json!({"certno": null, "psn_name": null, "gend": null, "naty": null, "birthplace": null, "brdy": null});

pub fn expected(name: &str) -> Outcome {
    let ok = |fields: Value, max_apdus: u64| Outcome::Card {
        fields,
        max_apdus,
        warning: None,
    };
    match name {
        "xiaowang" => ok(
            card(
                "500000D15600000512345678ABCDEF01",
                "3",
                "2.00",
                "915600000250000050000001",
                ("2021-03-15", "2031-03-15"),
                "C06123455",
                "3B6D000000814A444686605000000001AC",
                "ssse-2.0",
                holder(
                    "500103199103080319",
                    "王小",
                    "1",
                    "01",
                    "500103",
                    "1991-03-08",
                ),
            ),
            3,
        ),
        "resident" => ok(
            card(
                "510100D1560000057C11C05DFF7B9C8F",
                "4",
                "2.00",
                "915600000251010051010001",
                ("2020-09-01", "2030-09-01"),
                "D11982761",
                "3B6D000000814A4446866051017C11C05D",
                "ssse-2.0",
                holder(
                    "510104195802140261",
                    "刘秀英",
                    "2",
                    "01",
                    "510104",
                    "1958-02-14",
                ),
            ),
            3,
        ),
        "long-name" => ok(
            card(
                "650100D1560000059A4CBD787F6C813E",
                "3",
                "2.00",
                "915600000265010065010001",
                ("2020-06-10", "2030-06-10"),
                "K20355189",
                "3B6D000000814A4446866065019A4CBD78",
                "ssse-2.0",
                holder(
                    "650102198511030574",
                    "阿不都热合曼·买买提艾力·吐尔逊托合提",
                    "1",
                    "05",
                    "650102",
                    "1985-11-03",
                ),
            ),
            3,
        ),
        "rare-char" => ok(
            card(
                "440300D156000005BE559C854D6E2AAD",
                "3",
                "2.00",
                "915600000244030044030001",
                ("2022-01-18", "2032-01-18"),
                "S33019473",
                "3B6D000000814A444686604403BE559C85",
                "ssse-2.0",
                holder(
                    "440304199906210480",
                    "李𠮷堃",
                    "2",
                    "01",
                    "440304",
                    "1999-06-21",
                ),
            ),
            3,
        ),
        // Older COS: no whole-file or by-tag reads; everything by record number.
        "gen1" => ok(
            card(
                "330100D1560000054EBBD0C6D548D393",
                "3",
                "1.00",
                "915600000233010033010001",
                ("2010-04-20", "2030-04-20"),
                "B07412630",
                "3B6D000000814A4446866033014EBBD0C6",
                "ssse-1.0",
                holder(
                    "330106196509250131",
                    "陈建国",
                    "1",
                    "01",
                    "330106",
                    "1965-09-25",
                ),
            ),
            17,
        ),
        "gen3" => Outcome::Card {
            fields: card(
                "440100D156000005C5F96E75C454FA23",
                "3",
                "3.00",
                "915600000244010044010001",
                ("2023-08-08", "2033-08-08"),
                "G44803215",
                "3B6D000000814A444686604401C5F96E75",
                "ssse-3.0",
                NO_HOLDER(),
            ),
            max_apdus: 2,
            warning: Some("PSAM"),
        },
        "expired" => ok(
            card(
                "310100D156000005D827923C76E6B5D1",
                "3",
                "2.00",
                "915600000231010031010001",
                ("2009-06-30", "2019-06-30"),
                "E09177349",
                "3B6D000000814A444686603101D827923C",
                "ssse-2.0",
                holder(
                    "310104197204300191",
                    "张伟",
                    "1",
                    "01",
                    "310104",
                    "1972-04-30",
                ),
            ),
            3,
        ),
        // T=0 style: SELECT answers 61xx (+ GET RESPONSE), exact Le (6Cxx on EF06, no 4E).
        "no-4e" => ok(
            card(
                "420100D1560000057FA2DD80F7A7E06D",
                "3",
                "2.00",
                "915600000242010042010001",
                ("2020-03-05", "2030-03-05"),
                "H22098655",
                "3B6D000000814A4446866042017FA2DD80",
                "ssse-2.0",
                holder(
                    "420106198801120829",
                    "周敏",
                    "2",
                    "01",
                    "420106",
                    "1988-01-12",
                ),
            ),
            5,
        ),
        "quirky" => Outcome::Card {
            fields: card(
                "320500D1560000059F51F7F7C0FA6316",
                "3",
                "2.0",
                "9156000002320500320500DB",
                ("2020-04-03", "2030-04-03"),
                "J17350067",
                "3B6D000000814A4446866032059F51F7F7",
                "ssse-2.0",
                holder(
                    "320508199503020446",
                    "吴婷",
                    "2",
                    "01",
                    "320508",
                    "1995-03-02",
                ),
            ),
            max_apdus: 3,
            warning: Some("check character is 7, expected 4"),
        },
        // Without a PSAM a 3.0 card shows its issuer file only.
        "gen3-des" => Outcome::Card {
            fields: card(
                "330782D156000005793CF4220C917B85",
                "3",
                "3.00",
                "915600000233078233078201",
                ("2024-05-20", "2034-05-20"),
                "Z20418388",
                "3B6D000000814A444686603307793CF422",
                "ssse-3.0",
                NO_HOLDER(),
            ),
            max_apdus: 2,
            warning: Some("PSAM"),
        },
        "gen3-locked" => Outcome::Card {
            fields: card(
                "320100D1560000053860886599B2AC75",
                "3",
                "3.00",
                "915600000232010032010001",
                ("2023-11-02", "2033-11-02"),
                "N0937265X",
                "3B6D000000814A44468660320138608865",
                "ssse-3.0",
                NO_HOLDER(),
            ),
            max_apdus: 2,
            warning: Some("PSAM"),
        },
        // Without the PIN the medical application is not touched: a locked PIN does not matter.
        "pin-locked" => ok(
            card(
                "370100D1560000057F8290996DD9DE57",
                "3",
                "2.00",
                "915600000237010037010001",
                ("2019-07-15", "2029-07-15"),
                "L15820418",
                "3B6D000000814A4446866037017F829099",
                "ssse-2.0",
                holder(
                    "370102196810091311",
                    "郑国华",
                    "1",
                    "01",
                    "370102",
                    "1968-10-09",
                ),
            ),
            3,
        ),
        "pin-2-left" => ok(
            card(
                "430100D15600000598121E8FA462D6E8",
                "3",
                "2.00",
                "915600000243010043010001",
                ("2021-12-01", "2031-12-01"),
                "P28165933",
                "3B6D000000814A44468660430198121E8F",
                "ssse-2.0",
                holder(
                    "430104197604182283",
                    "何丽娟",
                    "2",
                    "01",
                    "430104",
                    "1976-04-18",
                ),
            ),
            3,
        ),
        "no-ssse" => Outcome::Error(-1),
        "corrupt" => Outcome::Error(-15),
        "vanishing" => Outcome::Error(-4),
        other => panic!("no expectation for fixture {other}"),
    }
}

/// The 3.0 card `gen3` read completely with the test PSAM (`test-sm4`): the holder behind
/// the authentication, nothing left for a PSAM, the PSAM's terminal number.
pub fn check_gen3_opened_by_the_psam(actual: &Value) {
    assert_eq!(
        actual["holder"],
        json!({"certno": "440106200108170645", "psn_name": "黄嘉怡", "gend": "2", "naty": "01",
               "birthplace": "440106", "brdy": "2001-08-17"})
    );
    assert_eq!(actual["needs_psam"], json!([]));
    assert_eq!(actual["psam_terminal_no"], "410100813475");
    assert_eq!(actual["profile"], "ssse-3.0");
}

/// Compares a read's JSON with the expectation; panics naming the card and the field.
pub fn check_card(name: &str, actual: &Value) {
    let Outcome::Card {
        fields,
        max_apdus,
        warning,
    } = expected(name)
    else {
        panic!("{name} is expected to fail, but read as {actual}");
    };
    compare(name, "", &fields, actual);
    let apdus = actual["apdus"].as_u64().unwrap_or(u64::MAX);
    assert!(
        apdus <= max_apdus,
        "{name}: {apdus} APDUs, at most {max_apdus} expected"
    );
    let warnings = actual["warnings"].to_string();
    match warning {
        Some(text) => assert!(
            warnings.contains(text),
            "{name}: warnings {warnings} lack {text:?}"
        ),
        None => assert_eq!(actual["warnings"], json!([]), "{name}: unexpected warnings"),
    }
    assert!(
        actual["elapsed_ms"].is_number(),
        "{name}: elapsed_ms missing"
    );
}

fn compare(name: &str, path: &str, expected: &Value, actual: &Value) {
    match expected {
        Value::Object(fields) => {
            for (key, value) in fields {
                compare(name, &format!("{path}.{key}"), value, &actual[key]);
            }
        }
        _ => assert_eq!(actual, expected, "{name}: field {path}"),
    }
}
