//! The platform's file transactions and the files 3202 对明细账 exchanges through them
//! (insurer-api.md §2.10, §2.11), shared by the client and the simulator:
//!
//! - 9101 文件上传: `fsUploadIn` {`in` (the file's bytes: a base64 string, as the platform's
//!   Java side takes a byte array in JSON; a list of byte values is taken too), filename,
//!   fixmedins_code} → output {file_qury_no, filename, fixmedins_code, dld_endtime}.
//! - 9102 文件下载: `fsDownloadIn` {file_qury_no, filename, fixmedins_code} → the file's bytes
//!   as the HTTP body (a JSON envelope only when refused).
//! - The hospital's detail file ([`DetailRow`], one settlement a line: setl_id, mdtrt_id,
//!   psn_no, medfee_sumamt, fund_pay_sumamt, acct_pay, refd_setl_flag) and the platform's
//!   result file ([`ResultRow`]: psn_no, mdtrt_id, setl_id, msgid, stmt_rslt, refd_setl_flag,
//!   memo): UTF-8 text, tab-separated, empty cells written `null`, each zipped as one `.txt`
//!   entry (deflate) — the shapes public HIS code reads and writes.

use super::client::{InsurerClient, Retry};
use super::types::{LinkError, Uncertainty};
use super::wire::WireError;
use crate::money::two_places;
use base64::Engine;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::str::FromStr;

/// 9101 文件上传.
pub const FILE_UPLOAD: &str = "9101";
/// 9102 文件下载.
pub const FILE_DOWNLOAD: &str = "9102";

/// The largest file text read out of a zip (a guard against a zip bomb): 256 MiB.
const MAX_TEXT_BYTES: u64 = 256 * 1024 * 1024;

/// Why a file could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("zip: {0}")]
    Zip(#[from] zip::result::ZipError),
    #[error("zip: {0}")]
    Io(#[from] std::io::Error),
    #[error("the zip holds no file")]
    Empty,
    #[error("the file is larger than {MAX_TEXT_BYTES} bytes unpacked")]
    TooLarge,
    #[error("the file is not UTF-8 text")]
    NotText,
    #[error("the file's bytes are neither base64 nor a list of byte values")]
    NotBytes,
    #[error("line {line}: {why}")]
    Line { line: usize, why: String },
}

/// 9101 input `fsUploadIn`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FsUploadIn {
    /// 文件数据: base64 (or, as some clients send it, a list of byte values).
    #[serde(rename = "in")]
    pub file: Value,
    pub filename: String,
    pub fixmedins_code: String,
}

impl FsUploadIn {
    /// An upload of `bytes`, base64 in `in`.
    pub fn new(bytes: &[u8], filename: &str, fixmedins_code: &str) -> FsUploadIn {
        FsUploadIn {
            file: Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)),
            filename: filename.to_owned(),
            fixmedins_code: fixmedins_code.to_owned(),
        }
    }

    /// The file's bytes, from base64 or a list of byte values (−128…255, Java's signed bytes
    /// included).
    pub fn bytes(&self) -> Result<Vec<u8>, FileError> {
        match &self.file {
            Value::String(text) => base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|_| FileError::NotBytes),
            Value::Array(items) => items
                .iter()
                .map(|v| {
                    v.as_i64()
                        .filter(|n| (-128..=255).contains(n))
                        .map(|n| n as u8)
                        .ok_or(FileError::NotBytes)
                })
                .collect(),
            _ => Err(FileError::NotBytes),
        }
    }
}

/// 9101 output (at the output's root).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FsUploadOut {
    /// 文件查询号: what 3202 names the file by.
    pub file_qury_no: String,
    pub filename: String,
    #[serde(default)]
    pub fixmedins_code: String,
    /// 截止时间 `yyyy-MM-dd HH:mm:ss`.
    #[serde(default)]
    pub dld_endtime: String,
}

/// 9102 input `fsDownloadIn`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FsDownloadIn {
    pub file_qury_no: String,
    pub filename: String,
    pub fixmedins_code: String,
}

/// Text as a zip holding one deflated entry named `entry`.
pub fn zip_text(entry: &str, text: &str) -> Result<Vec<u8>, FileError> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zip.start_file(entry, options)?;
    zip.write_all(text.as_bytes())?;
    Ok(zip.finish()?.into_inner())
}

/// The text of a zip's first file.
pub fn unzip_text(bytes: &[u8]) -> Result<String, FileError> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))?;
    for index in 0..archive.len() {
        let file = archive.by_index(index)?;
        if !file.is_file() {
            continue;
        }
        let mut text = Vec::new();
        file.take(MAX_TEXT_BYTES + 1).read_to_end(&mut text)?;
        if text.len() as u64 > MAX_TEXT_BYTES {
            return Err(FileError::TooLarge);
        }
        return String::from_utf8(text).map_err(|_| FileError::NotText);
    }
    Err(FileError::Empty)
}

/// One line's cells (`null` read as empty); `count` of them, or the line is refused.
fn cells(line: &str, number: usize, count: usize) -> Result<Vec<String>, FileError> {
    let cells: Vec<String> = line
        .trim_end_matches('\r')
        .split('\t')
        .map(|c| if c == "null" { "" } else { c }.to_owned())
        .collect();
    if cells.len() < count {
        return Err(FileError::Line {
            line: number,
            why: format!("{} columns, {count} expected", cells.len()),
        });
    }
    Ok(cells)
}

/// A line of cells, empty ones written `null`.
fn line(cells: &[&str]) -> String {
    let written: Vec<&str> = cells
        .iter()
        .map(|c| if c.is_empty() { "null" } else { c })
        .collect();
    written.join("\t")
}

fn amount(text: &str, number: usize, field: &str) -> Result<Decimal, FileError> {
    Decimal::from_str(if text.is_empty() { "0" } else { text }).map_err(|_| FileError::Line {
        line: number,
        why: format!("{field} {text:?} is not an amount"),
    })
}

/// The non-empty lines of a file with their 1-based numbers.
fn numbered(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim().is_empty())
}

/// One line of the hospital's 3202 detail file: a settlement as the hospital holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetailRow {
    pub setl_id: String,
    pub mdtrt_id: String,
    pub psn_no: String,
    pub medfee_sumamt: Decimal,
    pub fund_pay_sumamt: Decimal,
    pub acct_pay: Decimal,
    /// 退费结算标志: "1" refunded, "0" not.
    pub refd_setl_flag: String,
}

impl DetailRow {
    /// The file's text: one line per row.
    pub fn file_text(rows: &[DetailRow]) -> String {
        rows.iter().map(|r| r.line() + "\n").collect()
    }

    fn line(&self) -> String {
        line(&[
            &self.setl_id,
            &self.mdtrt_id,
            &self.psn_no,
            &two_places(self.medfee_sumamt),
            &two_places(self.fund_pay_sumamt),
            &two_places(self.acct_pay),
            &self.refd_setl_flag,
        ])
    }

    /// The rows of a detail file's text.
    pub fn parse_file(text: &str) -> Result<Vec<DetailRow>, FileError> {
        numbered(text)
            .map(|(n, l)| {
                let c = cells(l, n, 7)?;
                Ok(DetailRow {
                    setl_id: c[0].clone(),
                    mdtrt_id: c[1].clone(),
                    psn_no: c[2].clone(),
                    medfee_sumamt: amount(&c[3], n, "medfee_sumamt")?,
                    fund_pay_sumamt: amount(&c[4], n, "fund_pay_sumamt")?,
                    acct_pay: amount(&c[5], n, "acct_pay")?,
                    refd_setl_flag: c[6].clone(),
                })
            })
            .collect()
    }
}

/// 3202 detail result (对账结果, insurer-api.md §2.10): 0 对平, 1 中心多, 2 医药机构多,
/// 3 数据不一致.
pub mod stmt_rslt {
    pub const BALANCED: &str = "0";
    pub const INSURER_ONLY: &str = "1";
    pub const HOSPITAL_ONLY: &str = "2";
    pub const DIFFERENT: &str = "3";
}

/// One line of the platform's 3202 result file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultRow {
    pub psn_no: String,
    pub mdtrt_id: String,
    pub setl_id: String,
    /// The msgid of the 2207 that made the settlement (use it as 2601's omsgid).
    pub msgid: String,
    /// [`stmt_rslt`].
    pub stmt_rslt: String,
    pub refd_setl_flag: String,
    pub memo: String,
}

impl ResultRow {
    /// The file's text: one line per row.
    pub fn file_text(rows: &[ResultRow]) -> String {
        rows.iter()
            .map(|r| {
                line(&[
                    &r.psn_no,
                    &r.mdtrt_id,
                    &r.setl_id,
                    &r.msgid,
                    &r.stmt_rslt,
                    &r.refd_setl_flag,
                    &r.memo,
                ]) + "\n"
            })
            .collect()
    }

    /// The rows of a result file's text (a missing memo is empty).
    pub fn parse_file(text: &str) -> Result<Vec<ResultRow>, FileError> {
        numbered(text)
            .map(|(n, l)| {
                let c = cells(l, n, 6)?;
                Ok(ResultRow {
                    psn_no: c[0].clone(),
                    mdtrt_id: c[1].clone(),
                    setl_id: c[2].clone(),
                    msgid: c[3].clone(),
                    stmt_rslt: c[4].clone(),
                    refd_setl_flag: c[5].clone(),
                    memo: c.get(6).cloned().unwrap_or_default(),
                })
            })
            .collect()
    }
}

/// How the platform holds a settlement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Settled,
    /// Refunded by 2208.
    Refunded,
    /// Reversed by 2601: as if never made.
    Reversed,
}

/// A settlement in the platform's books, as 3202 compares it.
#[derive(Debug, Clone, PartialEq)]
pub struct BookEntry {
    pub setl_id: String,
    pub mdtrt_id: String,
    pub psn_no: String,
    /// The msgid of the 2207 that made it.
    pub msgid: String,
    pub medfee_sumamt: Decimal,
    pub fund_pay_sumamt: Decimal,
    pub acct_pay: Decimal,
    pub standing: Standing,
}

impl BookEntry {
    fn result(&self, stmt_rslt: &str, memo: &str) -> ResultRow {
        ResultRow {
            psn_no: self.psn_no.clone(),
            mdtrt_id: self.mdtrt_id.clone(),
            setl_id: self.setl_id.clone(),
            msgid: self.msgid.clone(),
            stmt_rslt: stmt_rslt.to_owned(),
            refd_setl_flag: if self.standing == Standing::Refunded {
                "1"
            } else {
                "0"
            }
            .to_owned(),
            memo: memo.to_owned(),
        }
    }
}

/// 3202 as the platform does it: each row of the hospital's detail file against the books of
/// the period, then the books' standing settlements the file lacks (中心多). Only the rows
/// that do not balance are returned. A settlement refunded at the insurer that the hospital
/// does not list moved no money: it is not reported.
pub fn compare_details(rows: &[DetailRow], books: &[BookEntry]) -> Vec<ResultRow> {
    let by_id: HashMap<&str, &BookEntry> = books.iter().map(|b| (b.setl_id.as_str(), b)).collect();
    let listed: HashSet<&str> = rows.iter().map(|r| r.setl_id.as_str()).collect();
    let mut out: Vec<ResultRow> = rows
        .iter()
        .filter_map(|row| compare_row(row, by_id.get(row.setl_id.as_str()).copied()))
        .collect();
    out.extend(
        books
            .iter()
            .filter(|b| b.standing == Standing::Settled && !listed.contains(b.setl_id.as_str()))
            .map(|b| b.result(stmt_rslt::INSURER_ONLY, "医药机构无此结算记录")),
    );
    out
}

fn compare_row(row: &DetailRow, held: Option<&BookEntry>) -> Option<ResultRow> {
    let Some(book) = held.filter(|b| b.standing != Standing::Reversed) else {
        let memo = match held {
            Some(_) => "中心该结算已冲正(2601)",
            None => "中心无此结算记录",
        };
        return Some(ResultRow {
            psn_no: row.psn_no.clone(),
            mdtrt_id: row.mdtrt_id.clone(),
            setl_id: row.setl_id.clone(),
            msgid: held.map(|b| b.msgid.clone()).unwrap_or_default(),
            stmt_rslt: stmt_rslt::HOSPITAL_ONLY.into(),
            refd_setl_flag: row.refd_setl_flag.clone(),
            memo: memo.into(),
        });
    };
    let insurer_refunded = book.standing == Standing::Refunded;
    if (row.refd_setl_flag == "1") != insurer_refunded {
        let memo = if insurer_refunded {
            "退费状态不一致: 中心已退费(2208)，医药机构未退费"
        } else {
            "退费状态不一致: 医药机构已退费，中心未退费"
        };
        return Some(book.result(stmt_rslt::DIFFERENT, memo));
    }
    let differ: Vec<String> = [
        ("medfee_sumamt", row.medfee_sumamt, book.medfee_sumamt),
        ("fund_pay_sumamt", row.fund_pay_sumamt, book.fund_pay_sumamt),
        ("acct_pay", row.acct_pay, book.acct_pay),
    ]
    .into_iter()
    .filter(|(_, his, ours)| his != ours)
    .map(|(name, his, ours)| {
        format!(
            "{name} 医药机构 {} 中心 {}",
            two_places(his),
            two_places(ours)
        )
    })
    .collect();
    (!differ.is_empty()).then(|| {
        book.result(
            stmt_rslt::DIFFERENT,
            &format!("金额不一致: {}", differ.join("; ")),
        )
    })
}

impl InsurerClient {
    /// 9101: upload `bytes` as `filename` for this institution; the platform's file_qury_no.
    pub fn upload_file(&mut self, filename: &str, bytes: &[u8]) -> Result<FsUploadOut, LinkError> {
        let upload = FsUploadIn::new(bytes, filename, &self.config().fixmedins_code);
        let reply = self.call(
            FILE_UPLOAD,
            json!({ "fsUploadIn": upload }),
            Retry::Idempotent,
        )?;
        serde_json::from_value(reply.output.clone())
            .map_err(|e| Uncertainty::output(FILE_UPLOAD, WireError::shape("output", &e)))
    }

    /// 9102: the bytes of a file the platform made for this institution.
    pub fn download_file(
        &mut self,
        file_qury_no: &str,
        filename: &str,
    ) -> Result<Vec<u8>, LinkError> {
        let download = FsDownloadIn {
            file_qury_no: file_qury_no.to_owned(),
            filename: filename.to_owned(),
            fixmedins_code: self.config().fixmedins_code.clone(),
        };
        self.fetch(FILE_DOWNLOAD, json!({ "fsDownloadIn": download }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detail(setl_id: &str) -> DetailRow {
        DetailRow {
            setl_id: setl_id.into(),
            mdtrt_id: "M1".into(),
            psn_no: String::new(),
            medfee_sumamt: Decimal::new(12000, 2),
            fund_pay_sumamt: Decimal::ZERO,
            acct_pay: Decimal::new(10280, 2),
            refd_setl_flag: "0".into(),
        }
    }

    #[test]
    fn a_detail_file_round_trips_through_its_zip() {
        let rows = [detail("S1"), detail("S2")];
        let text = DetailRow::file_text(&rows);
        assert_eq!(
            text.lines().next(),
            Some("S1\tM1\tnull\t120.00\t0.00\t102.80\t0")
        );
        let zipped = zip_text("detail.txt", &text).unwrap_or_default();
        assert_eq!(zipped.get(..2), Some(&b"PK"[..]));
        let back = unzip_text(&zipped).map(|t| DetailRow::parse_file(&t).ok());
        assert_eq!(back.ok().flatten(), Some(rows.to_vec()));
    }

    #[test]
    fn a_short_line_is_named() {
        let err = ResultRow::parse_file("P1\tM1\tS1\n")
            .err()
            .map(|e| e.to_string());
        assert_eq!(err.as_deref(), Some("line 1: 3 columns, 6 expected"));
    }

    #[test]
    fn bytes_come_as_base64_or_as_java_bytes() {
        let up = FsUploadIn::new(&[0x50, 0xff], "f.zip", "H1");
        assert_eq!(up.bytes().ok(), Some(vec![0x50, 0xff]));
        let java = FsUploadIn {
            file: json!([80, -1]),
            ..up
        };
        assert_eq!(java.bytes().ok(), Some(vec![0x50, 0xff]));
    }
}
