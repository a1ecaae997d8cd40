//! What the socket reports: a request with its journalled calls, a day's list, the visit and
//! lines a receipt needs.

use super::*;

impl Settler {
    /// `settle.status` by request_id or setl_id.
    pub fn status(
        &self,
        request_id: Option<&str>,
        setl_id: Option<&str>,
    ) -> Result<Settlement, SettleError> {
        let found = match (request_id, setl_id) {
            (Some(id), _) => self.journal.request(id)?,
            (None, Some(id)) => self.journal.request_by_setl_id(id)?,
            (None, None) => return Err(InvalidRequest::NoRequestOrSettlement.into()),
        };
        let row = found.ok_or_else(|| {
            SettleError::UnknownSettlement(request_id.or(setl_id).unwrap_or_default().to_owned())
        })?;
        self.report(&row)
    }

    /// `settle.list`: a page of the requests settled on `date`, in the order they got their
    /// day: at most `limit` (1..=[`MAX_LIST_LIMIT`], default [`DEFAULT_LIST_LIMIT`]) after
    /// the request_id `after`, and `next` (the last one's request_id) when more follow.
    pub fn list(
        &self,
        date: &str,
        after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<SettlementPage, SettleError> {
        let limit = limit.unwrap_or(DEFAULT_LIST_LIMIT);
        if !(1..=MAX_LIST_LIMIT).contains(&limit) {
            return Err(InvalidRequest::ListLimit { limit }.into());
        }
        if let Some(after) = after {
            check_request_id(after)?;
        }
        let mut rows = self
            .journal
            .requests_on_page(date, after, limit + 1)?
            .ok_or_else(|| InvalidRequest::UnknownAfter {
                after: after.unwrap_or_default().to_owned(),
                date: date.to_owned(),
            })?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next = more
            .then(|| rows.last().map(|r| r.request_id.clone()))
            .flatten();
        let settlements = rows
            .iter()
            .map(|r| self.report(r))
            .collect::<Result<_, _>>()?;
        Ok(SettlementPage { settlements, next })
    }

    /// A request as the socket shows it.
    pub fn report(&self, row: &RequestRow) -> Result<Settlement, SettleError> {
        let calls = self
            .journal
            .calls(&row.request_id)?
            .into_iter()
            .map(|c| json!({"msgid": c.msgid, "infno": c.infno, "state": c.state, "omsgid": c.omsgid, "err_msg": c.err_msg}))
            .collect();
        Ok(Settlement {
            request_id: row.request_id.clone(),
            kind: row.kind,
            state: row.state,
            mdtrt_id: row.mdtrt_id.clone(),
            chrg_bchno: row.chrg_bchno.clone(),
            setl_id: row.setl_id.clone().filter(|s| !s.is_empty()),
            orig_setl_id: row.orig_setl_id.clone(),
            setl_date: row.setl_date.clone(),
            setlinfo: row
                .setlinfo
                .as_deref()
                .and_then(|s| serde_json::from_str(s).ok()),
            err_msg: row.err_msg.clone(),
            calls,
        })
    }

    /// The visit a settlement belongs to.
    pub fn visit(&self, mdtrt_id: &str) -> Result<VisitRow, SettleError> {
        self.journal
            .visit(mdtrt_id)?
            .ok_or_else(|| SettleError::UnknownVisit(mdtrt_id.to_owned()))
    }

    /// The lines of a settlement's preview.
    pub fn preview_lines(&self, preview_id: &str) -> Result<Vec<FeeLine>, SettleError> {
        let row = self
            .journal
            .preview(preview_id)?
            .ok_or_else(|| SettleError::UnknownPreview(preview_id.to_owned()))?;
        stored_lines(&row)
    }
}
