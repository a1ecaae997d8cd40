//! The platform's envelopes (insurer-api.md §1.2, §1.3): building a request around a
//! transaction's `input`, and reading a response into its output or a [`LinkError`].
//! `infcode` arrives as `"0"` or `0`; anything but zero is a business refusal (§1.4).

use super::LinkError;
use super::types::Uncertainty;
use crate::clock::DateTime;
use crate::fields;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::time::Duration;

/// 经办人类别 of a self-service terminal (自助终端) in the envelope's `opter_type`.
pub const SELF_SERVICE_OPTER_TYPE: &str = "2";

/// Where a call is made from, for the envelope's operator fields: the counter's 经办人 (the
/// configured `opter_type`, `opter`, `opter_name`) or a self-service terminal (自助终端,
/// `opter_type` 2, the kiosk's `opter` and `opter_name`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Terminal {
    #[default]
    Counter,
    SelfService,
}

/// The envelope's operator fields for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operator<'a> {
    pub opter_type: &'a str,
    pub opter: &'a str,
    pub opter_name: &'a str,
}

/// What the client needs to know about itself and the link.
#[derive(Debug, Clone)]
pub struct InsurerConfig {
    /// The one POST endpoint, e.g. `http://127.0.0.1:8080/fsi/api/callService`.
    pub url: String,
    /// 定点医药机构编号, 12 characters (letter + 11 digits).
    pub fixmedins_code: String,
    pub fixmedins_name: String,
    /// 就医地医保区划 (the hospital's region, 6 digits).
    pub mdtrtarea_admvs: String,
    /// 1 经办人, 2 自助终端, 3 移动终端.
    pub opter_type: String,
    pub opter: String,
    pub opter_name: String,
    /// 经办人 of the self-service terminals (`opter_type` 2).
    pub kiosk_opter: String,
    pub kiosk_opter_name: String,
    pub recer_sys_code: String,
    pub infver: String,
    /// 9001's `mac` and `ip`.
    pub mac: String,
    pub ip: String,
    /// Per attempt, connect to last byte.
    pub timeout: Duration,
    /// Extra attempts for calls that change nothing.
    pub retries: u32,
    /// First backoff; doubled per retry, plus up to 50 % jitter.
    pub backoff_base: Duration,
    /// Consecutive uncertain outcomes that open the circuit.
    pub breaker_threshold: u32,
    pub breaker_cooldown: Duration,
    /// A sign_no older than this is renewed before the next call.
    pub sign_ttl: Duration,
}

impl Default for InsurerConfig {
    fn default() -> InsurerConfig {
        InsurerConfig {
            url: "http://127.0.0.1:8080/fsi/api/callService".to_string(),
            fixmedins_code: "H50010302473".to_string(),
            fixmedins_name: "medcard测试医院".to_string(),
            mdtrtarea_admvs: "500000".to_string(),
            opter_type: "1".to_string(),
            opter: "0001".to_string(),
            opter_name: "收费员".to_string(),
            kiosk_opter: "kiosk".to_string(),
            kiosk_opter_name: "自助机".to_string(),
            recer_sys_code: "YBXT".to_string(),
            infver: "V1.0".to_string(),
            mac: "00:00:00:00:00:00".to_string(),
            ip: "127.0.0.1".to_string(),
            timeout: Duration::from_secs(5),
            retries: 2,
            backoff_base: Duration::from_millis(100),
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(30),
            sign_ttl: Duration::from_secs(8 * 3600),
        }
    }
}

impl InsurerConfig {
    /// The operator fields a call from `terminal` carries.
    pub fn operator(&self, terminal: Terminal) -> Operator<'_> {
        match terminal {
            Terminal::Counter => Operator {
                opter_type: &self.opter_type,
                opter: &self.opter,
                opter_name: &self.opter_name,
            },
            Terminal::SelfService => Operator {
                opter_type: SELF_SERVICE_OPTER_TYPE,
                opter: &self.kiosk_opter,
                opter_name: &self.kiosk_opter_name,
            },
        }
    }

    /// Shape checks the platform would otherwise refuse every call for: a 12-character
    /// fixmedins_code (so msgids are 30 characters), a 6-digit region, an http(s) URL.
    pub fn check(&self) -> Result<(), ConfigProblem> {
        let code_ok = self.fixmedins_code.len() == 12
            && self
                .fixmedins_code
                .chars()
                .all(|c| c.is_ascii_alphanumeric());
        if !code_ok {
            return Err(ConfigProblem::FixmedinsCode(self.fixmedins_code.clone()));
        }
        let region_ok = self.mdtrtarea_admvs.len() == 6
            && self.mdtrtarea_admvs.chars().all(|c| c.is_ascii_digit());
        if !region_ok {
            return Err(ConfigProblem::Region(self.mdtrtarea_admvs.clone()));
        }
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(ConfigProblem::Url(self.url.clone()));
        }
        self.check_kiosk_operator()
    }

    /// The self-service terminals' operator: present and by the envelope's field rules.
    fn check_kiosk_operator(&self) -> Result<(), ConfigProblem> {
        if self.kiosk_opter.trim().is_empty() {
            return Err(ConfigProblem::KioskOperator("kiosk_opter is empty".into()));
        }
        let checked = fields::OPTER
            .check(&self.kiosk_opter)
            .and_then(|()| fields::OPTER_NAME.check(&self.kiosk_opter_name));
        checked.map_err(|e| ConfigProblem::KioskOperator(e.to_string()))
    }
}

/// A link configuration the platform would refuse every call for (each carries the value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigProblem {
    #[error("fixmedins_code {0:?} is not 12 letters/digits")]
    FixmedinsCode(String),
    #[error("mdtrtarea_admvs {0:?} is not 6 digits")]
    Region(String),
    #[error("insurer url {0:?} is not http(s)")]
    Url(String),
    /// The self-service terminals' `opter` / `opter_name` (why they are refused).
    #[error("the kiosk's operator: {0}")]
    KioskOperator(String),
}

/// One request's envelope fields beyond the configuration.
#[derive(Debug, Clone)]
pub struct RequestParts<'a> {
    pub infno: &'a str,
    pub msgid: &'a str,
    pub sign_no: Option<&'a str>,
    /// 参保地医保区划: required whenever the input carries psn_no.
    pub insuplc_admdvs: Option<&'a str>,
    /// Where the call is made from (the operator fields).
    pub terminal: Terminal,
    pub input: Value,
}

/// The request envelope (§1.2).
pub fn build_request(cfg: &InsurerConfig, parts: RequestParts<'_>) -> Value {
    let operator = cfg.operator(parts.terminal);
    json!({
        "infno": parts.infno,
        "msgid": parts.msgid,
        "mdtrtarea_admvs": cfg.mdtrtarea_admvs,
        "insuplc_admdvs": parts.insuplc_admdvs.unwrap_or(""),
        "recer_sys_code": cfg.recer_sys_code,
        "dev_no": "",
        "dev_safe_info": "",
        "cainfo": "",
        "signtype": "",
        "infver": cfg.infver,
        "opter_type": operator.opter_type,
        "opter": operator.opter,
        "opter_name": operator.opter_name,
        "inf_time": DateTime::now().datetime(),
        "fixmedins_code": cfg.fixmedins_code,
        "fixmedins_name": cfg.fixmedins_name,
        "sign_no": parts.sign_no.unwrap_or(""),
        "input": parts.input,
    })
}

/// A successful response: the transaction's output and the receiver's id.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The msgid this request went out with.
    pub msgid: String,
    pub inf_refmsgid: Option<String>,
    pub output: Value,
}

/// `infcode` as a number, from `0`, `"0"`, `-1` or `"-1"`.
pub fn parse_infcode(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// When the platform received the message, as an answer's envelope says
/// (`"refmsg_time": "yyyyMMddHHmmssSSS"`, Beijing time), refusals included; found by a scan
/// of the text, so that a large answer is not parsed twice.
pub fn refmsg_time(body: &str) -> Option<&str> {
    let after = &body[body.find("\"refmsg_time\"")? + "\"refmsg_time\"".len()..];
    let value = after
        .trim_start()
        .strip_prefix(':')?
        .trim_start()
        .strip_prefix('"')?;
    let digits = value.get(..17)?;
    (digits.bytes().all(|b| b.is_ascii_digit()) && value[17..].starts_with('"')).then_some(digits)
}

/// Read a response body (HTTP 200) into the output, a business refusal, or — when it is not
/// an envelope at all — an uncertain outcome.
pub fn parse_response(msgid: &str, body: &str) -> Result<Reply, LinkError> {
    let mut value: Value = serde_json::from_str(body)
        .map_err(|e| LinkError::Uncertain(Uncertainty::NotJson(e.to_string())))?;
    let infcode = value
        .get("infcode")
        .and_then(parse_infcode)
        .ok_or(LinkError::Uncertain(Uncertainty::NoInfcode))?;
    if infcode != 0 {
        let err_msg = value
            .get("err_msg")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        return Err(LinkError::Business { infcode, err_msg });
    }
    Ok(Reply {
        msgid: msgid.to_string(),
        inf_refmsgid: value
            .get("inf_refmsgid")
            .and_then(Value::as_str)
            .map(str::to_string),
        // Taken, not cloned: a feed page's output is thousands of entries.
        output: value
            .get_mut("output")
            .map(Value::take)
            .unwrap_or(Value::Null),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_checks_its_shapes() {
        assert_eq!(InsurerConfig::default().check(), Ok(()));
        let short = InsurerConfig {
            fixmedins_code: "H5001".into(),
            ..InsurerConfig::default()
        };
        assert!(matches!(
            short.check(),
            Err(ConfigProblem::FixmedinsCode(_))
        ));
        let region = InsurerConfig {
            mdtrtarea_admvs: "50".into(),
            ..InsurerConfig::default()
        };
        assert!(matches!(region.check(), Err(ConfigProblem::Region(_))));
        for (opter, name) in [("", "自助机"), ("K", "自\u{0}助机"), (&*"K".repeat(31), "")] {
            let kiosk = InsurerConfig {
                kiosk_opter: opter.into(),
                kiosk_opter_name: name.into(),
                ..InsurerConfig::default()
            };
            assert!(
                matches!(kiosk.check(), Err(ConfigProblem::KioskOperator(_))),
                "{opter:?} {name:?}"
            );
        }
    }

    #[test]
    fn refmsg_time_is_found_in_answers_and_refusals_alike() {
        let refused = r#"{"infcode":-1,"refmsg_time" : "20261204081500123","err_msg":"x"}"#;
        assert_eq!(refmsg_time(refused), Some("20261204081500123"));
        assert_eq!(refmsg_time(r#"{"refmsg_time":"2026120408150012"}"#), None);
        assert_eq!(refmsg_time(r#"{"refmsg_time":null}"#), None);
        assert_eq!(refmsg_time("not json"), None);
    }

    #[test]
    fn infcode_as_string_or_number() {
        assert_eq!(parse_infcode(&json!(0)), Some(0));
        assert_eq!(parse_infcode(&json!("0")), Some(0));
        assert_eq!(parse_infcode(&json!("-1")), Some(-1));
        assert_eq!(parse_infcode(&json!(null)), None);
    }

    #[test]
    fn responses_sort_into_output_refusal_and_uncertain() {
        let ok = parse_response(
            "m",
            r#"{"infcode":"0","output":{"a":1},"inf_refmsgid":"r"}"#,
        );
        assert_eq!(ok.map(|r| r.output), Ok(json!({"a": 1})));
        let refused = parse_response("m", r#"{"infcode":-1,"err_msg":"未查询到人员信息"}"#);
        assert!(matches!(
            refused,
            Err(LinkError::Business { infcode: -1, .. })
        ));
        assert!(matches!(
            parse_response("m", "<html>"),
            Err(LinkError::Uncertain(Uncertainty::NotJson(_)))
        ));
        assert!(matches!(
            parse_response("m", "{}"),
            Err(LinkError::Uncertain(Uncertainty::NoInfcode))
        ));
    }

    #[test]
    fn request_carries_the_envelope_fields() {
        let cfg = InsurerConfig::default();
        let v = build_request(
            &cfg,
            RequestParts {
                infno: "1101",
                msgid: "x",
                sign_no: Some("s"),
                insuplc_admdvs: None,
                terminal: Terminal::Counter,
                input: json!({"data": {}}),
            },
        );
        assert_eq!(v["infno"], "1101");
        assert_eq!(v["sign_no"], "s");
        assert_eq!(v["fixmedins_code"], cfg.fixmedins_code);
        assert_eq!(v["inf_time"].as_str().map(str::len), Some(19));
        assert_eq!(v["opter_type"], "1");
        assert_eq!(v["opter"], cfg.opter);
    }

    #[test]
    fn a_self_service_terminal_is_opter_type_2_with_the_kiosk_operator() {
        let cfg = InsurerConfig {
            opter_type: "1".into(),
            kiosk_opter: "K01".into(),
            kiosk_opter_name: "门诊自助机1".into(),
            ..InsurerConfig::default()
        };
        let v = build_request(
            &cfg,
            RequestParts {
                infno: "2201",
                msgid: "x",
                sign_no: None,
                insuplc_admdvs: Some("500000"),
                terminal: Terminal::SelfService,
                input: json!({"data": {}}),
            },
        );
        assert_eq!(v["opter_type"], "2");
        assert_eq!(v["opter"], "K01");
        assert_eq!(v["opter_name"], "门诊自助机1");
    }
}
