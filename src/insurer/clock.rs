//! Local wall-clock time in the platform's formats: `yyyyMMddHHmmss` (msgid),
//! `yyyy-MM-dd HH:mm:ss` (`inf_time`, DT) and the 17-digit `yyyyMMddHHmmssSSS`
//! (`refmsg_time`, `respond_time`). Read through `localtime_r`, so no date crate is needed.

use std::time::{SystemTime, UNIX_EPOCH};

/// A broken-down local time, to the millisecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LocalTime {
    pub year: i32,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub millis: u32,
}

impl LocalTime {
    /// Now, in the machine's time zone.
    pub fn now() -> LocalTime {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let secs = libc::time_t::try_from(since.as_secs()).unwrap_or(0);
        // SAFETY: `tm` is plain data; localtime_r only writes into it.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are valid for the call.
        unsafe { libc::localtime_r(&secs, &mut tm) };
        LocalTime {
            year: tm.tm_year + 1900,
            month: u32::try_from(tm.tm_mon + 1).unwrap_or(1),
            day: u32::try_from(tm.tm_mday).unwrap_or(1),
            hour: u32::try_from(tm.tm_hour).unwrap_or(0),
            minute: u32::try_from(tm.tm_min).unwrap_or(0),
            second: u32::try_from(tm.tm_sec).unwrap_or(0),
            millis: since.subsec_millis(),
        }
    }

    /// `yyyyMMddHHmmss` (14 digits).
    pub fn compact(&self) -> String {
        format!(
            "{:04}{:02}{:02}{:02}{:02}{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// `yyyyMMddHHmmssSSS` (17 digits).
    pub fn compact_millis(&self) -> String {
        format!("{}{:03}", self.compact(), self.millis)
    }

    /// `yyyy-MM-dd HH:mm:ss`.
    pub fn datetime(&self) -> String {
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// `yyyy-MM-dd`.
    pub fn date(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

#[cfg(test)]
mod tests {
    use super::LocalTime;

    #[test]
    fn formats_have_the_platform_lengths() {
        let now = LocalTime::now();
        assert_eq!(now.compact().len(), 14);
        assert_eq!(now.compact_millis().len(), 17);
        assert_eq!(now.datetime().len(), 19);
        assert!(now.year >= 2024);
    }
}
