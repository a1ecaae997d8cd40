//! Transaction codes and the shapes of their `input` / `output`, shared by the client and
//! the simulator so both read and write the same thing. 9001 and 1101 are the platform's
//! (insurer-api.md §2.1, §2.2); `X101` and `X102` are medcard extensions
//! (docs/insurer-extension.md), outside the platform's numeric ranges; `1162` is the
//! simulator's stand-in for the 医保电子凭证 SDK's decode (docs/insurer-extension.md).

use super::types::{CardEventPage, CataloguePage, EcIdentity, InsuInfo, PersonBase, PersonInfo};
use crate::money::{AmountError, from_value};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// 9001 签到.
pub const SIGN_IN: &str = "9001";
/// 9002 签退: the sign-in ends (a clean shutdown).
pub const SIGN_OUT: &str = "9002";
/// 1101 人员信息获取.
pub const PERSON_INFO: &str = "1101";
/// 医保电子凭证 decode: code → ecToken and holder (the simulator's stand-in for the SDK).
pub const EC_DECODE: &str = "1162";
/// medcard extension: the card-status feed by version.
pub const CARD_FEED: &str = "X101";
/// medcard extension: catalogue changes by version.
pub const CATALOGUE: &str = "X102";

/// 1101 input by social security card (mdtrt_cert_type 03).
pub fn person_by_card_input(card_no: &str, card_sn: &str) -> Value {
    json!({"data": {
        "mdtrt_cert_type": "03", "mdtrt_cert_no": card_no, "card_sn": card_sn,
        "begntime": "", "psn_cert_type": "", "certno": "", "psn_name": "",
    }})
}

/// 1101 input by ID number (mdtrt_cert_type 02, psn_cert_type 01 居民身份证).
pub fn person_by_certno_input(certno: &str) -> Value {
    person_by_document_input("01", certno)
}

/// 1101 input by the number of an identity document of type `psn_cert_type`
/// (mdtrt_cert_type 02).
pub fn person_by_document_input(psn_cert_type: &str, certno: &str) -> Value {
    json!({"data": {
        "mdtrt_cert_type": "02", "mdtrt_cert_no": certno, "card_sn": "",
        "begntime": "", "psn_cert_type": psn_cert_type, "certno": certno, "psn_name": "",
    }})
}

/// 1101 input by 医保电子凭证 (mdtrt_cert_type 01, mdtrt_cert_no = the ecToken).
pub fn person_by_ec_token_input(ec_token: &str) -> Value {
    json!({"data": {
        "mdtrt_cert_type": "01", "mdtrt_cert_no": ec_token, "card_sn": "",
        "begntime": "", "psn_cert_type": "", "certno": "", "psn_name": "",
    }})
}

/// 1162 input: the code as scanned.
pub fn ec_decode_input(ec_qrcode: &str) -> Value {
    json!({"data": {"ec_qrcode": ec_qrcode}})
}

/// 1162 output (`data` {ecToken, idNo, userName, idType, …}) → [`EcIdentity`].
pub fn parse_ec_identity(output: &Value) -> Result<EcIdentity, WireError> {
    let d = object(output.get("data").unwrap_or(&Value::Null), "data")?;
    Ok(EcIdentity {
        ec_token: text(d, "ecToken")?,
        certno: text(d, "idNo")?,
        psn_name: text(d, "userName")?,
        psn_cert_type: text(d, "idType").unwrap_or_default(),
    })
}

/// X101 / X102 input.
pub fn versioned_input(since_version: u64, page_size: u32) -> Value {
    json!({"data": {"ver": since_version.to_string(), "page_size": page_size}})
}

/// Why a transaction's `output` (or a part of it) cannot be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WireError {
    #[error("missing field {0}")]
    MissingField(String),
    #[error("{0} is not an object")]
    NotAnObject(&'static str),
    #[error("{0} is not a list")]
    NotAList(&'static str),
    #[error("{field}: {source}")]
    BadAmount {
        field: &'static str,
        #[source]
        source: AmountError,
    },
    /// A part that does not have the transaction's shape (serde's account of it).
    #[error("{part}: {detail}")]
    Shape { part: String, detail: String },
}

impl WireError {
    /// `part` read as a typed value did not fit.
    pub fn shape(part: impl Into<String>, error: &serde_json::Error) -> WireError {
        WireError::Shape {
            part: part.into(),
            detail: error.to_string(),
        }
    }
}

/// A text field that may arrive as a string or a number; missing → error.
fn text(obj: &Map<String, Value>, key: &'static str) -> Result<String, WireError> {
    match obj.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        _ => Err(WireError::MissingField(key.to_owned())),
    }
}

/// An optional text field; empty or null → None.
fn opt_text(obj: &Map<String, Value>, key: &'static str) -> Option<String> {
    text(obj, key).ok().filter(|s| !s.is_empty())
}

fn object<'v>(value: &'v Value, what: &'static str) -> Result<&'v Map<String, Value>, WireError> {
    value.as_object().ok_or(WireError::NotAnObject(what))
}

fn parse_base(value: &Value) -> Result<PersonBase, WireError> {
    let b = object(value, "baseinfo")?;
    Ok(PersonBase {
        psn_no: text(b, "psn_no")?,
        psn_cert_type: text(b, "psn_cert_type").unwrap_or_default(),
        certno: text(b, "certno")?,
        psn_name: text(b, "psn_name")?,
        gend: text(b, "gend").unwrap_or_default(),
        naty: text(b, "naty").unwrap_or_default(),
        brdy: text(b, "brdy").unwrap_or_default(),
    })
}

fn parse_insu(value: &Value) -> Result<InsuInfo, WireError> {
    let i = object(value, "insuinfo row")?;
    Ok(InsuInfo {
        balc: from_value(i.get("balc").unwrap_or(&Value::Null)).map_err(|source| {
            WireError::BadAmount {
                field: "balc",
                source,
            }
        })?,
        insutype: text(i, "insutype")?,
        psn_type: text(i, "psn_type")?,
        psn_insu_stas: text(i, "psn_insu_stas")?,
        insuplc_admdvs: text(i, "insuplc_admdvs")?,
        psn_insu_date: opt_text(i, "psn_insu_date"),
        paus_insu_date: opt_text(i, "paus_insu_date"),
    })
}

/// 1101 output → [`PersonInfo`].
pub fn parse_person(output: &Value) -> Result<PersonInfo, WireError> {
    let baseinfo = parse_base(output.get("baseinfo").unwrap_or(&Value::Null))?;
    let rows = output
        .get("insuinfo")
        .and_then(Value::as_array)
        .ok_or(WireError::NotAList("insuinfo"))?;
    let insuinfo = rows.iter().map(parse_insu).collect::<Result<_, _>>()?;
    Ok(PersonInfo { baseinfo, insuinfo })
}

/// [`PersonInfo`] → 1101 output, as the platform writes it (balc a number).
pub fn person_output(person: &PersonInfo, age: Option<u32>) -> Value {
    let b = &person.baseinfo;
    let insuinfo: Vec<Value> = person
        .insuinfo
        .iter()
        .map(|i| {
            let balc: f64 = i.balc.to_string().parse().unwrap_or(0.0);
            json!({
                "balc": balc, "insutype": i.insutype, "psn_type": i.psn_type,
                "psn_insu_stas": i.psn_insu_stas, "insuplc_admdvs": i.insuplc_admdvs,
                "psn_insu_date": i.psn_insu_date.clone().unwrap_or_default(),
                "paus_insu_date": i.paus_insu_date.clone().unwrap_or_default(),
                "cvlserv_flag": "0", "emp_name": "",
            })
        })
        .collect();
    json!({
        "baseinfo": {
            "psn_no": b.psn_no, "psn_cert_type": b.psn_cert_type, "certno": b.certno,
            "psn_name": b.psn_name, "gend": b.gend, "naty": b.naty, "brdy": b.brdy,
            "age": age.unwrap_or(0),
        },
        "insuinfo": insuinfo,
        "idetinfo": [],
    })
}

/// X101 output → [`CardEventPage`].
pub fn parse_card_events(output: &Value) -> Result<CardEventPage, WireError> {
    CardEventPage::deserialize(output).map_err(|e| WireError::shape("the feed page", &e))
}

/// X102 output → [`CataloguePage`].
pub fn parse_catalogue(output: &Value) -> Result<CataloguePage, WireError> {
    CataloguePage::deserialize(output).map_err(|e| WireError::shape("the catalogue page", &e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

    #[test]
    fn money_from_numbers_and_strings() {
        assert_eq!(
            from_value(&json!(332.8)).map(|d| d.to_string()),
            Ok("332.80".into())
        );
        assert_eq!(
            from_value(&json!("0")).map(|d| d.to_string()),
            Ok("0.00".into())
        );
        assert!(from_value(&json!(null)).is_err());
    }

    #[test]
    fn an_ec_identity_reads_the_sdk_names() {
        let output = json!({"data": {
            "ecToken": "500000ecabc", "idNo": "500103199103080319", "userName": "王小",
            "idType": "01", "insuOrg": "500000", "email": null,
        }});
        let identity = parse_ec_identity(&output).unwrap();
        assert_eq!(identity.ec_token, "500000ecabc");
        assert_eq!(identity.certno, "500103199103080319");
        assert_eq!(identity.psn_name, "王小");
        assert_eq!(identity.psn_cert_type, "01");
        let no_token = json!({"data": {"idNo": "1", "userName": "x"}});
        assert_eq!(
            parse_ec_identity(&no_token),
            Err(WireError::MissingField("ecToken".into()))
        );
        assert!(parse_ec_identity(&json!({})).is_err());
    }

    #[test]
    fn person_round_trips_through_the_platform_shape() {
        let person = PersonInfo {
            baseinfo: PersonBase {
                psn_no: "1".into(),
                psn_cert_type: "01".into(),
                certno: "500103199103080319".into(),
                psn_name: "王小".into(),
                gend: "1".into(),
                naty: "01".into(),
                brdy: "1991-03-08".into(),
            },
            insuinfo: vec![InsuInfo {
                balc: Decimal::new(33280, 2),
                insutype: "310".into(),
                psn_type: "11".into(),
                psn_insu_stas: "1".into(),
                insuplc_admdvs: "500000".into(),
                psn_insu_date: None,
                paus_insu_date: None,
            }],
        };
        let out = person_output(&person, Some(35));
        assert_eq!(parse_person(&out), Ok(person));
    }
}
