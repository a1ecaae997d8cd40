//! The simulator's files (insurer-api.md §2.10, §2.11): 9101 takes a file from an institution
//! and answers its file_qury_no; 3202 makes its result file here; 9102 gives a file back to
//! the institution it belongs to, as the HTTP body, until its dld_endtime (the end of the
//! business day after it was made). Refusals as a platform words them: 文件查询号不存在,
//! 已超过下载截止时间, 文件名不符.

use super::books::new_id;
use super::context::{Ctx, input_part, to_value};
use super::db::{SimDb, TxError};
use crate::insurer::files::{FsDownloadIn, FsUploadIn, FsUploadOut};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

/// The table (created with the rest of the database).
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS files (
  file_qury_no TEXT PRIMARY KEY, filename TEXT NOT NULL, fixmedins_code TEXT NOT NULL,
  kind TEXT NOT NULL, bytes BLOB NOT NULL, dld_endtime TEXT NOT NULL);
";

/// What a stored file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Uploaded by an institution with 9101.
    Upload,
    /// Made by 3202 for an institution.
    Result,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Upload => "upload",
            Kind::Result => "result",
        }
    }
}

/// A stored file.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFile {
    pub file_qury_no: String,
    pub filename: String,
    pub bytes: Vec<u8>,
    pub dld_endtime: String,
}

/// Store a file of `ctx`'s institution; its file_qury_no and dld_endtime.
pub fn store(
    conn: &Connection,
    ctx: &Ctx<'_>,
    kind: Kind,
    filename: &str,
    bytes: &[u8],
) -> Result<FsUploadOut, TxError> {
    let file_qury_no = new_id(conn, "F", &ctx.today.compact())?;
    let last_day = ctx.today.next_day().unwrap_or(ctx.today);
    let dld_endtime = format!("{last_day} 23:59:59");
    conn.execute(
        "INSERT INTO files (file_qury_no, filename, fixmedins_code, kind, bytes, dld_endtime) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            file_qury_no,
            filename,
            ctx.fixmedins_code,
            kind.as_str(),
            bytes,
            dld_endtime
        ],
    )?;
    Ok(FsUploadOut {
        file_qury_no,
        filename: filename.to_owned(),
        fixmedins_code: ctx.fixmedins_code.to_owned(),
        dld_endtime,
    })
}

/// A file of `kind` that `ctx`'s institution may still use.
pub fn usable(
    conn: &Connection,
    ctx: &Ctx<'_>,
    kind: Kind,
    file_qury_no: &str,
) -> Result<StoredFile, TxError> {
    let found: Option<(StoredFile, String)> = conn
        .query_row(
            "SELECT file_qury_no, filename, bytes, dld_endtime, fixmedins_code FROM files \
             WHERE file_qury_no = ?1 AND kind = ?2",
            params![file_qury_no, kind.as_str()],
            |r| {
                Ok((
                    StoredFile {
                        file_qury_no: r.get(0)?,
                        filename: r.get(1)?,
                        bytes: r.get(2)?,
                        dld_endtime: r.get(3)?,
                    },
                    r.get(4)?,
                ))
            },
        )
        .optional()?;
    let (file, _) = found
        .filter(|(_, owner)| !file_qury_no.is_empty() && owner == ctx.fixmedins_code)
        .ok_or_else(|| TxError::Refused(format!("文件查询号[{file_qury_no}]不存在")))?;
    if ctx.today.datetime_now() > file.dld_endtime {
        return Err(TxError::Refused(format!(
            "文件[{file_qury_no}]已超过下载截止时间[{}]，请重新获取",
            file.dld_endtime
        )));
    }
    Ok(file)
}

/// 9101: store the institution's file.
pub fn upload(db: &mut SimDb, ctx: &Ctx<'_>, input: &Value) -> Result<Value, TxError> {
    let req: FsUploadIn = input_part(input, "fsUploadIn")?;
    if req.filename.trim().is_empty() {
        return Err(TxError::Refused("文件名[filename]不能为空".into()));
    }
    if req.fixmedins_code != ctx.fixmedins_code {
        return Err(TxError::Refused(format!(
            "医药机构编号[{}]与报文医药机构编号不一致",
            req.fixmedins_code
        )));
    }
    let bytes = req
        .bytes()
        .map_err(|_| TxError::Refused("文件数据[in]格式错误".into()))?;
    if bytes.is_empty() {
        return Err(TxError::Refused("文件数据[in]不能为空".into()));
    }
    to_value(&store(db.conn(), ctx, Kind::Upload, &req.filename, &bytes)?)
}

/// 9102: a result file the institution may download — its name and bytes.
pub fn download(db: &SimDb, ctx: &Ctx<'_>, input: &Value) -> Result<StoredFile, TxError> {
    let req: FsDownloadIn = input_part(input, "fsDownloadIn")?;
    let file = usable(db.conn(), ctx, Kind::Result, &req.file_qury_no)?;
    if req.filename != file.filename {
        return Err(TxError::Refused(format!(
            "文件名[{}]与文件查询号[{}]不符",
            req.filename, req.file_qury_no
        )));
    }
    Ok(file)
}
