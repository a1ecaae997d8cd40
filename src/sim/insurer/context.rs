//! What the settlement transactions share: the request's context (policies, msgid, business
//! date), reading an input node, and the insured person a transaction is about — refused as
//! the platform words it (未查询到人员信息, 人员参保状态异常 …).

use super::db::TxError;
use super::policies::SimPolicies;
use crate::clock::Date;
use rusqlite::{Connection, OptionalExtension};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// One request's context.
pub struct Ctx<'a> {
    pub policies: &'a SimPolicies,
    /// The request's msgid (2207: medins_setl_id; 2208: the refund's msgid).
    pub msgid: &'a str,
    /// The envelope's fixmedins_code: the institution asking (its books, its files).
    pub fixmedins_code: &'a str,
    /// The business date (admin `clock`).
    pub today: Date,
}

/// `input[key]` as `T`; a missing or malformed node is refused.
pub fn input_part<T: DeserializeOwned>(input: &Value, key: &str) -> Result<T, TxError> {
    let node = input
        .get(key)
        .filter(|v| !v.is_null())
        .ok_or_else(|| TxError::Refused(format!("输入参数[{key}]不能为空")))?;
    serde_json::from_value(node.clone())
        .map_err(|e| TxError::Refused(format!("输入参数[{key}]格式错误: {e}")))
}

/// An output part as JSON (a failure is the simulator's own: internal).
pub fn to_value<T: serde::Serialize>(value: &T) -> Result<Value, TxError> {
    Ok(serde_json::to_value(value)?)
}

/// An insured person under one insutype.
#[derive(Debug, Clone, PartialEq)]
pub struct Insured {
    pub psn_no: String,
    pub psn_name: String,
    pub psn_cert_type: String,
    pub certno: String,
    pub insutype: String,
    pub psn_type: String,
    pub psn_insu_stas: String,
    pub insuplc_admdvs: String,
}

/// The person and insurance row, whatever their status.
pub fn person(conn: &Connection, psn_no: &str, insutype: &str) -> Result<Insured, TxError> {
    let known: Option<String> = conn
        .query_row(
            "SELECT certno FROM persons WHERE psn_no = ?1",
            [psn_no],
            |r| r.get(0),
        )
        .optional()?;
    if known.is_none() {
        return Err(TxError::Refused(format!(
            "人员编号[{psn_no}]未查询到人员信息"
        )));
    }
    conn.query_row(
        "SELECT p.psn_no, p.psn_name, p.psn_cert_type, p.certno, i.insutype, i.psn_type, \
         i.psn_insu_stas, i.insuplc_admdvs FROM persons p JOIN insuinfo i ON i.certno = p.certno \
         WHERE p.psn_no = ?1 AND i.insutype = ?2",
        [psn_no, insutype],
        |r| {
            Ok(Insured {
                psn_no: r.get(0)?,
                psn_name: r.get(1)?,
                psn_cert_type: r.get(2)?,
                certno: r.get(3)?,
                insutype: r.get(4)?,
                psn_type: r.get(5)?,
                psn_insu_stas: r.get(6)?,
                insuplc_admdvs: r.get(7)?,
            })
        },
    )
    .optional()?
    .ok_or_else(|| TxError::Refused(format!("人员未参加该险种[{insutype}]")))
}

/// The person, who must be insured normally (psn_insu_stas 1) under `insutype`.
pub fn insured(conn: &Connection, psn_no: &str, insutype: &str) -> Result<Insured, TxError> {
    let person = person(conn, psn_no, insutype)?;
    if person.psn_insu_stas != "1" {
        return Err(TxError::Refused(format!(
            "人员参保状态异常(参保状态[{}])，不能享受待遇",
            person.psn_insu_stas
        )));
    }
    Ok(person)
}
