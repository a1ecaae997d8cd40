//! `medcard hospital`: the hospital view for the finance office and IT, read from the
//! hospital database every workstation ships its journal to (`[hospital]` of the config):
//! `day` (the day's settlements by workstation and insutype), `unresolved` (calls anywhere
//! whose outcome is still in doubt), `workstations` (when each last shipped; stale ones flagged).

use clap::{Args, Subcommand};
use medcard::clock::DateTime;
use medcard::hospital::view::{self, Day, DayLine, UnresolvedCall, WorkstationLine};
use medcard::money::two_places;
use medcard::serve::config::{Config, DEFAULT_PATH};
use medcard::serve::messages::{HOSPITAL_NOT_CONFIGURED_ZH, hospital_failure_line};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

/// The hospital view: every workstation's settlements, calls in doubt and shipping.
///
/// Reads the hospital database (PostgreSQL) that the workstations ship their journals to,
/// with the `[hospital]` settings of the configuration file (the same the daemon uses:
/// `database`, `password_file`, `ssl_root_cert`). Nothing is written. Exit status: 0 done,
/// 1 `workstations` found a stale one, 2 could not read the hospital database.
#[derive(Args)]
pub struct HospitalArgs {
    #[command(subcommand)]
    action: Action,
    /// The configuration whose [hospital] section names the hospital database.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_PATH, global = true)]
    config: PathBuf,
    /// Output: text (tables, for people) or json.
    #[arg(long, default_value = "text", value_parser = ["text", "json"], global = true)]
    format: String,
}

#[derive(Subcommand)]
enum Action {
    /// The day's settlements by workstation and insutype: count, medfee_sumamt,
    /// fund_pay_sumamt, acct_pay and cash (psn_cash_pay) of those standing, refunded ones
    /// counted apart, with the institution's totals (what 3201 is sent).
    Day {
        /// The day, yyyy-MM-dd (default: today, Beijing time).
        #[arg(long, value_name = "DATE")]
        date: Option<String>,
    },
    /// Calls at any workstation whose outcome at the insurer is not known yet (PENDING or
    /// UNKNOWN), oldest first, with the workstation, msgid, infno, request and age. That
    /// workstation's daemon resolves them (2601); one that stays here needs its daemon started.
    Unresolved,
    /// Every workstation the hospital database knows: its node, rows shipped and when it
    /// last shipped; those the database has not heard from for N minutes (a caught-up
    /// workstation says so at least every minute) are flagged STALE and the exit status is 1
    /// (for monitoring).
    Workstations {
        /// Minutes without a word from a workstation before it is flagged.
        #[arg(long, value_name = "N", default_value_t = 10)]
        stale_minutes: u32,
    },
}

pub fn run(args: HospitalArgs) -> ExitCode {
    match show(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(message) => {
            eprintln!("medcard hospital: {message}");
            ExitCode::from(2)
        }
    }
}

/// The hospital database of the configuration `path`, for reading.
pub fn open(path: &Path, application_name: &str) -> Result<postgres::Client, String> {
    let config = Config::load(path).map_err(|e| e.to_string())?.config;
    open_configured(&config, path, application_name)
}

/// The hospital database of an already loaded configuration (loaded from `path`).
pub fn open_configured(
    config: &Config,
    path: &Path,
    application_name: &str,
) -> Result<postgres::Client, String> {
    if !config.hospital.ships() {
        return Err(format!(
            "no hospital database: set database in the [hospital] section of {} (docs/hospital.md) ({HOSPITAL_NOT_CONFIGURED_ZH})",
            path.display()
        ));
    }
    view::open(&config.hospital.settings(), application_name).map_err(|e| hospital_failure_line(&e))
}

/// Prints what was asked; false when a stale workstation was found.
fn show(args: &HospitalArgs) -> Result<bool, String> {
    let mut client = open(&args.config, "medcard hospital")?;
    let fail = |e: medcard::hospital::HospitalError| hospital_failure_line(&e);
    let json = args.format == "json";
    match &args.action {
        Action::Day { date } => {
            let date = date.clone().unwrap_or_else(|| DateTime::now().date());
            let day = view::day(&mut client, &date).map_err(fail)?;
            print(json, &day, render_day)?;
            Ok(true)
        }
        Action::Unresolved => {
            let calls = view::unresolved(&mut client, SystemTime::now()).map_err(fail)?;
            print(json, &calls, |c| render_unresolved(c))?;
            Ok(true)
        }
        Action::Workstations { stale_minutes } => {
            let lines = view::workstations(&mut client, *stale_minutes).map_err(fail)?;
            print(json, &lines, |l| render_workstations(l, *stale_minutes))?;
            Ok(!lines.iter().any(|l| l.stale))
        }
    }
}

fn print<T: Serialize + ?Sized>(
    json: bool,
    value: &T,
    text: impl Fn(&T) -> String,
) -> Result<(), String> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", text(value));
    }
    Ok(())
}

/// Columns padded to their widest cell, the first `left` of them left-aligned.
fn table(header: &[&str], rows: &[Vec<String>], left: usize) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, w))| {
                if i < left {
                    format!("{cell:<w$}")
                } else {
                    format!("{cell:>w$}")
                }
            })
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(header.iter().map(|h| (*h).to_owned()).collect());
    rows.iter().for_each(|row| out.push_str(&line(row.clone())));
    out
}

fn day_cells(l: &DayLine) -> Vec<String> {
    vec![
        l.workstation.clone(),
        l.insutype.clone(),
        l.count.to_string(),
        l.refunded.to_string(),
        two_places(l.medfee_sumamt),
        two_places(l.fund_pay_sumamt),
        two_places(l.acct_pay),
        two_places(l.cash),
    ]
}

fn render_day(day: &Day) -> String {
    let mut rows: Vec<Vec<String>> = day.lines.iter().map(day_cells).collect();
    let mut total = day_cells(&day.total);
    total[0] = "TOTAL 合计".to_owned();
    rows.push(total);
    format!(
        "结算 {} — the day's settlements by workstation and insutype (refunded: out of the sums)\n{}",
        day.date,
        table(
            &[
                "workstation",
                "insutype",
                "count",
                "refunded",
                "medfee_sumamt",
                "fund_pay_sumamt",
                "acct_pay",
                "cash",
            ],
            &rows,
            2,
        )
    )
}

fn render_unresolved(calls: &[UnresolvedCall]) -> String {
    if calls.is_empty() {
        return "no call in doubt at any workstation (无未决交易)\n".to_owned();
    }
    let rows: Vec<Vec<String>> = calls
        .iter()
        .map(|c| {
            vec![
                c.workstation.clone(),
                c.msgid.clone(),
                c.infno.clone(),
                c.request_id.clone(),
                c.state.clone(),
                age(c.age_seconds),
            ]
        })
        .collect();
    format!(
        "{} call(s) in doubt (未决交易): each workstation's daemon resolves its own (2601)\n{}",
        calls.len(),
        table(
            &["workstation", "msgid", "infno", "request", "state", "age"],
            &rows,
            5
        )
    )
}

fn render_workstations(lines: &[WorkstationLine], stale_minutes: u32) -> String {
    if lines.is_empty() {
        return "no workstation has registered with the hospital database yet\n".to_owned();
    }
    let rows: Vec<Vec<String>> = lines
        .iter()
        .map(|l| {
            vec![
                l.workstation.clone(),
                l.node.map_or_else(|| "-".to_owned(), |n| n.to_string()),
                l.last_shipped_at
                    .clone()
                    .unwrap_or_else(|| "never".to_owned()),
                l.shipped_rows.to_string(),
                age(l.idle_seconds),
                if l.stale { "STALE 未上传" } else { "ok" }.to_owned(),
            ]
        })
        .collect();
    let stale = lines.iter().filter(|l| l.stale).count();
    format!(
        "{}{} of {} workstation(s) not heard from for {stale_minutes} minute(s) or more\n",
        table(
            &[
                "workstation",
                "node",
                "last shipped",
                "rows shipped",
                "idle",
                "status"
            ],
            &rows,
            3
        ),
        stale,
        lines.len()
    )
}

/// `1h02m`, `3m05s`, `42s`.
fn age(seconds: i64) -> String {
    match seconds {
        s if s >= 3600 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}
