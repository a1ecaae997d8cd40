//! The self-check (`medcard doctor`, and `system.doctor` through the socket): the parts a
//! counter needs, checked in the order a hospital IT engineer would check them — the
//! configuration, pcscd, the readers, the PSAM, the insurer and its sign-in, the clock
//! against the insurer's, the cache and the journal, the disk, the socket, the hospital
//! database — each a [`Check`] with `pass`, `warn`, `fail` or `skip`, what was found and,
//! when something is wrong, the fix in the operator's words (English and Chinese).
//! docs/troubleshooting.md lists every error code with its meaning and fix.
//!
//! Blocking (PC/SC, HTTP, SQLite, PostgreSQL): the daemon runs it off the async runtime.

mod checks;

use super::config::Config;
use crate::cache::Cache;
use crate::insurer::SignInReport;
use crate::reader::ReaderBackend;
use serde::Serialize;
use std::sync::Arc;

/// How a check came out, worst last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    /// Not applicable here (not configured, or a part before it failed).
    Skip,
    Warn,
    Fail,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Skip => "SKIP",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// Text in English and Chinese.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Said {
    pub en: String,
    pub zh: String,
}

impl Said {
    pub fn new(en: impl Into<String>, zh: impl Into<String>) -> Said {
        Said {
            en: en.into(),
            zh: zh.into(),
        }
    }
}

/// One part checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable, for scripts: `config`, `pcscd`, `readers`, `psam`, `insurer`, `sign_in`,
    /// `clock`, `cache`, `journal`, `disk`, `socket`, `hospital`.
    pub id: &'static str,
    pub status: Status,
    /// What was found.
    pub found: Said,
    /// What to do (warnings and failures).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<Said>,
}

impl Check {
    pub fn pass(id: &'static str, found: Said) -> Check {
        Check {
            id,
            status: Status::Pass,
            found,
            fix: None,
        }
    }

    pub fn skip(id: &'static str, found: Said) -> Check {
        Check {
            id,
            status: Status::Skip,
            found,
            fix: None,
        }
    }

    pub fn warn(id: &'static str, found: Said, fix: Said) -> Check {
        Check {
            id,
            status: Status::Warn,
            found,
            fix: Some(fix),
        }
    }

    pub fn fail(id: &'static str, found: Said, fix: Said) -> Check {
        Check {
            id,
            status: Status::Fail,
            found,
            fix: Some(fix),
        }
    }
}

/// Every check, and the worst of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub status: Status,
    pub checks: Vec<Check>,
}

impl Report {
    fn of(checks: Vec<Check>) -> Report {
        let status = checks
            .iter()
            .map(|c| c.status)
            .max()
            .unwrap_or(Status::Pass);
        Report { status, checks }
    }

    /// `medcard doctor`'s exit status: 0 all well, 1 warnings, 2 failures.
    pub fn exit_code(&self) -> u8 {
        match self.status {
            Status::Pass | Status::Skip => 0,
            Status::Warn => 1,
            Status::Fail => 2,
        }
    }

    /// One line per check (`PASS  insurer  …`), each finding in English then Chinese, and
    /// under a warning or failure the fix.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for check in &self.checks {
            out.push_str(&format!(
                "{}  {:<8}  {} · {}\n",
                check.status.label(),
                check.id,
                check.found.en,
                check.found.zh
            ));
            if let Some(fix) = &check.fix {
                out.push_str(&format!("{:16}fix: {}\n", "", fix.en));
                out.push_str(&format!("{:16}处理：{}\n", "", fix.zh));
            }
        }
        let summary = match self.status {
            Status::Pass | Status::Skip => Said::new("all well", "一切正常"),
            Status::Warn => Said::new("warnings: see above", "有警告，见上"),
            Status::Fail => Said::new(
                "failures: see the fixes above",
                "有故障，按上面的处理办法排查",
            ),
        };
        out.push_str(&format!(
            "medcard doctor: {} · {}\n",
            summary.en, summary.zh
        ));
        out
    }
}

/// What the checks look at.
pub struct Doctor<'a> {
    pub config: &'a Config,
    /// Where the configuration came from, as the config line names it (a file, or "the
    /// running daemon's").
    pub config_source: String,
    /// The readers as the daemon reaches them (PC/SC, or its virtual readers); `None`:
    /// the reader checks are skipped.
    pub readers: Option<&'a mut dyn ReaderBackend>,
    /// The daemon's open cache; `None`: opened here when the file exists.
    pub cache: Option<Arc<Cache>>,
    /// Run inside the daemon (`system.doctor`): the socket is the one it serves on.
    pub in_daemon: bool,
    /// The daemon's own sign-in, when run inside it (`system.info`'s `insurer.sign_in`).
    pub daemon_sign_in: Option<SignInReport>,
}

impl Doctor<'_> {
    /// Runs every check, in order.
    pub fn run(self) -> Report {
        Report::of(checks::all(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said() -> Said {
        Said::new("x", "甲")
    }

    #[test]
    fn the_worst_check_sets_the_status_and_the_exit_code() {
        let passed = Report::of(vec![
            Check::pass("config", said()),
            Check::skip("psam", said()),
        ]);
        assert_eq!((passed.status, passed.exit_code()), (Status::Skip, 0));
        let warned = Report::of(vec![
            Check::pass("config", said()),
            Check::warn("disk", said(), said()),
        ]);
        assert_eq!(warned.exit_code(), 1);
        let failed = Report::of(vec![
            Check::fail("pcscd", said(), said()),
            Check::warn("disk", said(), said()),
        ]);
        assert_eq!(failed.exit_code(), 2);
        let text = failed.text();
        assert!(text.starts_with("FAIL  pcscd     x · 甲\n"), "{text}");
        assert!(
            text.contains("fix: x\n") && text.contains("处理：甲\n"),
            "{text}"
        );
    }
}
