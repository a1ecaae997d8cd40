//! The 医保电子凭证 (medical-insurance e-voucher) in the simulator: the QR codes a phone shows
//! (admin `ec_issue`), their decode into an `ecToken` and the holder's identity (infno
//! `1162`, the simulator's stand-in for the platform SDK's decode call, which a real platform
//! does not offer over its HTTP interface), and the token 1101 takes with `mdtrt_cert_type`
//! 01 (the platform's own use of it).
//!
//! A code is short-lived (`--ec-code-ttl-s`, 5 minutes by default; `ttl_s` on `ec_issue`) and
//! single-use: the first decode marks it used and answers a fresh token, valid for
//! `--ec-token-ttl-s` (2 hours by default). An expired, used or unknown code is refused, each
//! with its own err_msg, as is 1101 with an unknown or expired token. Codes and tokens are
//! kept in the simulator's SQLite (`ec_codes`, `ec_tokens`); times are Unix seconds, compared
//! to the second (valid while now < expires_at).

use super::db::{SimDb, TxError};
use crate::clock::{DateTime, from_unix_seconds, unix_seconds};
use crate::insurer::types::PersonInfo;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime};

/// The tables (created with the rest of the database; `IF NOT EXISTS`, so a database file made
/// by an earlier simulator gains them when opened).
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS ec_codes (
  ec_qrcode TEXT PRIMARY KEY, certno TEXT NOT NULL, issued_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL, used_at INTEGER, ec_token TEXT);
CREATE TABLE IF NOT EXISTS ec_tokens (
  ec_token TEXT PRIMARY KEY, certno TEXT NOT NULL, issued_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL);
";

/// A code's lifetime by default.
pub const DEFAULT_CODE_TTL: Duration = Duration::from_secs(5 * 60);
/// A token's lifetime by default.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(2 * 60 * 60);

/// The characters of a code and of a token.
const CODE_ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const TOKEN_ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
/// A code: the region (6 digits) and 46 of [`CODE_ALPHABET`] — 52 characters.
const CODE_RANDOM_CHARS: usize = 46;
/// A token: the region (6 digits), `ec`, and 32 of [`TOKEN_ALPHABET`] — 40 characters.
const TOKEN_RANDOM_CHARS: usize = 32;

/// The refusals' texts (err_msg), as a region words them.
pub const CODE_EXPIRED: &str = "电子凭证二维码已过期，请刷新后重新出示";
pub const CODE_USED: &str = "电子凭证二维码已使用，请刷新后重新出示";
pub const CODE_UNKNOWN: &str = "电子凭证二维码无效，未查询到电子凭证信息";
pub const TOKEN_UNKNOWN: &str = "医保电子凭证令牌无效";
pub const TOKEN_EXPIRED: &str = "医保电子凭证令牌已过期，请重新出示电子凭证";

/// `count` characters of `alphabet`, drawn with `next` (any source of random u64s).
fn random_text(alphabet: &[u8], count: usize, next: &mut dyn FnMut() -> u64) -> String {
    (0..count)
        .map(|_| {
            let at = (next() % alphabet.len() as u64) as usize;
            char::from(alphabet[at])
        })
        .collect()
}

/// A new code as a phone shows it: the region and 46 characters of `[0-9A-Z]`.
pub fn new_code(region: &str, next: &mut dyn FnMut() -> u64) -> String {
    format!(
        "{region}{}",
        random_text(CODE_ALPHABET, CODE_RANDOM_CHARS, next)
    )
}

/// A new ecToken: the region, `ec` and 32 characters of `[0-9a-z]`.
pub fn new_token(region: &str, next: &mut dyn FnMut() -> u64) -> String {
    format!(
        "{region}ec{}",
        random_text(TOKEN_ALPHABET, TOKEN_RANDOM_CHARS, next)
    )
}

/// `yyyy-MM-dd HH:mm:ss` (Beijing time) of Unix seconds.
fn datetime_text(seconds: i64) -> String {
    DateTime::at(from_unix_seconds(seconds)).datetime()
}

/// `now + ttl` in Unix seconds.
fn expiry(now: SystemTime, ttl: Duration) -> i64 {
    unix_seconds(now).saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX))
}

/// A code issued for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCode {
    pub code: String,
    /// `yyyy-MM-dd HH:mm:ss` (Beijing time).
    pub expires_at: String,
}

/// Admin `ec_issue`: store `code` for the person with `certno` (who must be known), valid
/// for `ttl` from `now`.
pub fn issue(
    db: &SimDb,
    certno: &str,
    code: &str,
    now: SystemTime,
    ttl: Duration,
) -> Result<IssuedCode, TxError> {
    db.person_by_certno(certno)?;
    let expires_at = expiry(now, ttl);
    db.conn().execute(
        "INSERT INTO ec_codes (ec_qrcode, certno, issued_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
        params![code, certno, unix_seconds(now), expires_at],
    )?;
    Ok(IssuedCode {
        code: code.to_owned(),
        expires_at: datetime_text(expires_at),
    })
}

/// A stored code: its holder, its expiry, whether it was used.
struct StoredCode {
    certno: String,
    expires_at: i64,
    used: bool,
}

fn stored_code(conn: &Connection, code: &str) -> Result<Option<StoredCode>, TxError> {
    Ok(conn
        .query_row(
            "SELECT certno, expires_at, used_at IS NOT NULL FROM ec_codes WHERE ec_qrcode = ?1",
            [code],
            |r| {
                Ok(StoredCode {
                    certno: r.get(0)?,
                    expires_at: r.get(1)?,
                    used: r.get(2)?,
                })
            },
        )
        .optional()?)
}

/// 1162: the code → a fresh token (`token`, valid for `token_ttl` from `now`) and the holder;
/// the code is used up. Refused when unknown, used or expired (checked in that order: a used
/// code is "used" even once its time has passed).
pub fn decode(
    db: &SimDb,
    data: &Value,
    token: &str,
    now: SystemTime,
    token_ttl: Duration,
) -> Result<Value, TxError> {
    let code = code_of(data)?;
    let stored = stored_code(db.conn(), &code)?.ok_or_else(|| refused(CODE_UNKNOWN))?;
    if stored.used {
        return Err(refused(CODE_USED));
    }
    if unix_seconds(now) >= stored.expires_at {
        return Err(refused(CODE_EXPIRED));
    }
    let person = db.person_by_certno(&stored.certno)?;
    let token_expires = expiry(now, token_ttl);
    let t = db.conn().unchecked_transaction()?;
    t.execute(
        "UPDATE ec_codes SET used_at = ?2, ec_token = ?3 WHERE ec_qrcode = ?1",
        params![code, unix_seconds(now), token],
    )?;
    t.execute(
        "INSERT INTO ec_tokens (ec_token, certno, issued_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
        params![token, stored.certno, unix_seconds(now), token_expires],
    )?;
    t.commit()?;
    Ok(json!({"data": decode_output(&person, token, token_expires)}))
}

/// The code in 1162's input: `ec_qrcode`, or the SDK's own name `ecQrCode`.
fn code_of(data: &Value) -> Result<String, TxError> {
    ["ec_qrcode", "ecQrCode"]
        .iter()
        .find_map(|key| data.get(key).and_then(Value::as_str))
        .filter(|code| !code.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| refused("输入参数[ec_qrcode]不能为空"))
}

/// 1162's `data`, named as the SDK names them (ecToken, idNo, userName, idType …).
fn decode_output(person: &PersonInfo, token: &str, token_expires: i64) -> Value {
    let b = &person.baseinfo;
    let insu_org = person
        .insuinfo
        .first()
        .map(|i| i.insuplc_admdvs.clone())
        .unwrap_or_default();
    json!({
        "ecToken": token,
        "idNo": b.certno,
        "userName": b.psn_name,
        "idType": b.psn_cert_type,
        "insuOrg": insu_org,
        "ecIndexNo": format!("{:032X}", index_no(&b.certno)),
        "gender": b.gend,
        "birthday": b.brdy,
        "nationality": b.naty,
        "email": Value::Null,
        "expires_at": datetime_text(token_expires),
    })
}

/// A stable invented 电子凭证索引号 for a person (FNV-1a over the certno, widened).
fn index_no(certno: &str) -> u128 {
    let h = certno.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (u128::from(h) << 64) | u128::from(h.rotate_left(29))
}

/// 1101 with mdtrt_cert_type 01: the token's holder, unless the token is unknown or expired.
pub fn person_by_token(db: &SimDb, token: &str, now: SystemTime) -> Result<PersonInfo, TxError> {
    let stored: Option<(String, i64)> = db
        .conn()
        .query_row(
            "SELECT certno, expires_at FROM ec_tokens WHERE ec_token = ?1",
            [token],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let (certno, expires_at) = stored.ok_or_else(|| refused(TOKEN_UNKNOWN))?;
    if unix_seconds(now) >= expires_at {
        return Err(refused(TOKEN_EXPIRED));
    }
    db.person_by_certno(&certno)
}

/// 2201 with mdtrt_cert_type 01: the token must be live and its holder's psn_no `psn_no`.
pub fn check_token_holder(db: &SimDb, token: &str, psn_no: &str) -> Result<(), TxError> {
    let person = person_by_token(db, token, SystemTime::now())?;
    if person.baseinfo.psn_no != psn_no {
        return Err(refused(&format!(
            "医保电子凭证令牌与人员编号[{psn_no}]不符"
        )));
    }
    Ok(())
}

fn refused(text: &str) -> TxError {
    TxError::Refused(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::insurer::Fixtures;
    use crate::sim::insurer::policies::SimPolicies;

    const XIAOWANG: &str = "500103199103080319";

    struct TempDb {
        db: SimDb,
        path: std::path::PathBuf,
    }

    impl Drop for TempDb {
        fn drop(&mut self) {
            crate::sim::insurer::remove_db(&self.path);
        }
    }

    fn seeded(tag: &str) -> TempDb {
        let path =
            std::env::temp_dir().join(format!("medcard-ec-{tag}-{}.sqlite", std::process::id()));
        crate::sim::insurer::remove_db(&path);
        let mut db = SimDb::open(&path).expect("open");
        let policies = SimPolicies::new(None, "cq-seed", "3").expect("policies");
        db.seed(&Fixtures::built_in().expect("fixtures"), &policies)
            .expect("seed");
        TempDb { db, path }
    }

    fn counter() -> impl FnMut() -> u64 {
        let mut n = 0u64;
        move || {
            n = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
            n
        }
    }

    fn input(code: &str) -> Value {
        json!({"ec_qrcode": code})
    }

    fn message(result: Result<impl std::fmt::Debug, TxError>) -> String {
        match result {
            Err(TxError::Refused(msg)) => msg,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn the_refusals_are_read_as_their_classes() {
        use crate::insurer::{Refusal, RefusalRules};
        let rules = RefusalRules::built_in();
        for (text, class) in [
            (CODE_EXPIRED, Refusal::EcCodeExpired),
            (CODE_USED, Refusal::EcCodeUsed),
            (CODE_UNKNOWN, Refusal::EcCodeUnknown),
            (TOKEN_UNKNOWN, Refusal::EcTokenInvalid),
            (TOKEN_EXPIRED, Refusal::EcTokenInvalid),
        ] {
            assert_eq!(rules.classify(text), class, "{text}");
        }
    }

    #[test]
    fn codes_and_tokens_have_their_shapes() {
        let mut next = counter();
        let code = new_code("500000", &mut next);
        assert_eq!(code.len(), 52);
        assert!(code.starts_with("500000"));
        assert!(code.bytes().all(|b| CODE_ALPHABET.contains(&b)));
        let token = new_token("500000", &mut next);
        assert_eq!(token.len(), 40);
        assert!(token.starts_with("500000ec"));
        assert_ne!(new_code("500000", &mut next), code);
    }

    #[test]
    fn a_code_decodes_once_into_a_token_that_finds_the_person() {
        let t = seeded("once");
        let now = SystemTime::now();
        let issued = issue(&t.db, XIAOWANG, "CODE1", now, DEFAULT_CODE_TTL).unwrap();
        assert_eq!(issued.code, "CODE1");
        let out = decode(&t.db, &input("CODE1"), "TOKEN1", now, DEFAULT_TOKEN_TTL).unwrap();
        assert_eq!(out["data"]["ecToken"], "TOKEN1");
        assert_eq!(out["data"]["idNo"], XIAOWANG);
        assert_eq!(out["data"]["userName"], "王小");
        assert_eq!(out["data"]["idType"], "01");
        let person = person_by_token(&t.db, "TOKEN1", now).unwrap();
        assert_eq!(person.baseinfo.certno, XIAOWANG);
        let again = decode(&t.db, &input("CODE1"), "TOKEN2", now, DEFAULT_TOKEN_TTL);
        assert_eq!(message(again), CODE_USED);
        assert_eq!(
            message(person_by_token(&t.db, "TOKEN2", now)),
            TOKEN_UNKNOWN
        );
    }

    #[test]
    fn codes_and_tokens_expire() {
        let t = seeded("expire");
        let now = SystemTime::now();
        let ttl = Duration::from_secs(60);
        issue(&t.db, XIAOWANG, "CODE1", now, ttl).unwrap();
        issue(&t.db, XIAOWANG, "CODE2", now, ttl).unwrap();
        let late = now + ttl;
        let expired = decode(&t.db, &input("CODE1"), "T1", late, ttl);
        assert_eq!(message(expired), CODE_EXPIRED);
        let just_in_time = now + ttl - Duration::from_secs(1);
        decode(&t.db, &input("CODE2"), "T2", just_in_time, ttl).unwrap();
        assert!(person_by_token(&t.db, "T2", just_in_time).is_ok());
        let after = just_in_time + ttl;
        assert_eq!(message(person_by_token(&t.db, "T2", after)), TOKEN_EXPIRED);
    }

    #[test]
    fn unknown_codes_and_persons_are_refused() {
        let t = seeded("unknown");
        let now = SystemTime::now();
        let unknown = decode(&t.db, &input("NOSUCHCODE"), "T", now, DEFAULT_TOKEN_TTL);
        assert_eq!(message(unknown), CODE_UNKNOWN);
        let empty = decode(&t.db, &json!({}), "T", now, DEFAULT_TOKEN_TTL);
        assert!(message(empty).contains("ec_qrcode"));
        let sdk_name = decode(
            &t.db,
            &json!({"ecQrCode": "X"}),
            "T",
            now,
            DEFAULT_TOKEN_TTL,
        );
        assert_eq!(message(sdk_name), CODE_UNKNOWN);
        let nobody = issue(&t.db, "110101199001010011", "C", now, DEFAULT_CODE_TTL);
        assert_eq!(message(nobody), "未查询到人员信息");
    }
}
