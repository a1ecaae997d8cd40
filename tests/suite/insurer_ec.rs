//! The 医保电子凭证 (e-voucher QR code) against a real `medcard insurer-sim` child on loopback:
//! admin `ec_issue` gives a code a phone would show, the client's `decode_ec` (1162, the
//! simulator's stand-in for the SDK's decode) turns it into an ecToken and the holder, and
//! `person_by_ec_token` (1101 with mdtrt_cert_type 01) finds the person. A code is
//! single-use and short-lived; an expired, used or unknown code, and a bogus token, are
//! refused, each read by the built-in refusal rules as its own class.

use crate::common;

use common::insurer::InsurerSim;
use medcard::insurer::{
    EcIdentity, InsurerClient, InsurerConfig, LinkError, Refusal, RefusalRules,
};
use serde_json::json;
use std::time::Duration;

const XIAOWANG_CERTNO: &str = "500103199103080319";
const XIAOWANG_NAME: &str = "王小";

/// A simulator of the test's own.
fn sim(extra: &[&str]) -> InsurerSim {
    InsurerSim::fresh("insurer-ec", extra)
}

/// A client to `sim` that would retry a retryable call twice.
fn client(sim: &InsurerSim) -> InsurerClient {
    InsurerClient::new(InsurerConfig {
        retries: 2,
        backoff_base: Duration::from_millis(10),
        ..sim.config()
    })
}

/// A fresh code for `certno`, with `ttl_s` when given.
fn issue(sim: &InsurerSim, certno: &str, ttl_s: Option<u64>) -> String {
    let mut request = json!({"action": "ec_issue", "certno": certno});
    if let Some(ttl) = ttl_s {
        request["ttl_s"] = json!(ttl);
    }
    let issued = sim.admin(request);
    assert!(
        issued["expires_at"].as_str().is_some_and(|t| t.len() == 19),
        "expires_at as yyyy-MM-dd HH:mm:ss: {issued}"
    );
    issued["code"].as_str().expect("a code").to_owned()
}

/// The refusal class (by the built-in rules, as the client reads it) and err_msg of a
/// refused call.
fn refusal<T: std::fmt::Debug>(result: Result<T, LinkError>) -> (Refusal, String) {
    match result {
        Err(LinkError::Business { err_msg, .. }) => {
            (RefusalRules::built_in().classify(&err_msg), err_msg)
        }
        other => panic!("expected a business refusal, got {other:?}"),
    }
}

#[test]
fn an_issued_code_decodes_into_a_token_that_1101_takes() {
    let sim = sim(&[]);
    let code = issue(&sim, XIAOWANG_CERTNO, None);
    assert!(
        code.len() >= 40
            && code
                .chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()),
        "a long alphanumeric code: {code}"
    );
    let mut client = client(&sim);
    let identity: EcIdentity = client.decode_ec(&code).unwrap();
    assert_eq!(identity.certno, XIAOWANG_CERTNO);
    assert_eq!(identity.psn_name, XIAOWANG_NAME);
    assert_eq!(identity.psn_cert_type, "01");
    assert!(!identity.ec_token.is_empty());
    assert_ne!(identity.ec_token, code);

    let person = client.person_by_ec_token(&identity.ec_token).unwrap();
    assert_eq!(person.baseinfo.certno, XIAOWANG_CERTNO);
    assert_eq!(person.baseinfo.psn_name, XIAOWANG_NAME);
    assert!(!person.insuinfo.is_empty());
    // The token is not used up by 1101: the visit's later calls carry it again.
    let again = client.person_by_ec_token(&identity.ec_token).unwrap();
    assert_eq!(again.baseinfo.psn_no, person.baseinfo.psn_no);
}

#[test]
fn a_code_decodes_once() {
    let sim = sim(&[]);
    let code = issue(&sim, XIAOWANG_CERTNO, None);
    let mut client = client(&sim);
    client.decode_ec(&code).unwrap();
    let second = client.decode_ec(&code);
    let (class, err_msg) = refusal(second);
    assert_eq!(class, Refusal::EcCodeUsed, "{err_msg}");
}

#[test]
fn an_expired_code_is_refused() {
    let sim = sim(&[]);
    let code = issue(&sim, XIAOWANG_CERTNO, Some(0));
    let mut client = client(&sim);
    let (class, err_msg) = refusal(client.decode_ec(&code));
    assert_eq!(class, Refusal::EcCodeExpired, "{err_msg}");
    // Refused, not used up: still "expired", not "used".
    let (class, _) = refusal(client.decode_ec(&code));
    assert_eq!(class, Refusal::EcCodeExpired);
}

#[test]
fn the_code_lifetime_is_the_simulators_setting() {
    let sim = sim(&["--ec-code-ttl-s", "0"]);
    let code = issue(&sim, XIAOWANG_CERTNO, None);
    let mut client = client(&sim);
    let (class, err_msg) = refusal(client.decode_ec(&code));
    assert_eq!(class, Refusal::EcCodeExpired, "{err_msg}");
}

#[test]
fn an_unknown_code_is_refused() {
    let sim = sim(&[]);
    let real = issue(&sim, XIAOWANG_CERTNO, None);
    let forged: String = real
        .chars()
        .rev()
        .map(|c| if c == '0' { '1' } else { c })
        .collect();
    let mut client = client(&sim);
    let (class, err_msg) = refusal(client.decode_ec(&forged));
    assert_eq!(class, Refusal::EcCodeUnknown, "{err_msg}");
    // A code for nobody the insurer knows is not issued.
    let nobody = sim.admin_raw(json!({"action": "ec_issue", "certno": "110101199001010011"}));
    assert_eq!(nobody["ok"], false, "{nobody}");
}

#[test]
fn a_bogus_token_is_refused_by_1101() {
    let sim = sim(&[]);
    let mut client = client(&sim);
    let bogus = "500000ec0123456789abcdefghijklmnopqrstuv";
    let (class, err_msg) = refusal(client.person_by_ec_token(bogus));
    assert_eq!(class, Refusal::EcTokenInvalid, "{err_msg}");
    assert!(!class.is_about_the_person());
}

#[test]
fn the_decode_is_sent_once_since_it_uses_the_code_up() {
    let sim = sim(&[]);
    let code = issue(&sim, XIAOWANG_CERTNO, None);
    let mut client = client(&sim);
    client.sign_in().unwrap();
    sim.admin(json!({"action": "faults", "drop_after_processing": 1, "for_infno": "1162"}));
    let lost = client.decode_ec(&code);
    assert!(matches!(lost, Err(LinkError::Uncertain(_))), "{lost:?}");
    assert_eq!(sim.requests("1162"), 1, "not retried");
    // The insurer did decode it: the code is used up.
    let (class, _) = refusal(client.decode_ec(&code));
    assert_eq!(class, Refusal::EcCodeUsed);
}

#[test]
fn a_platform_without_extensions_has_no_1162() {
    let sim = sim(&["--no-extensions"]);
    let code = issue(&sim, XIAOWANG_CERTNO, None);
    let mut client = client(&sim);
    let (class, err_msg) = refusal(client.decode_ec(&code));
    assert_eq!(class, Refusal::Business, "{err_msg}");
    assert!(err_msg.contains("1162"), "{err_msg}");
}
