//! `medcard reconcile`: the journal's settlements of a day against the insurer's (3201 totals
//! per insutype and clr_type; when one does not balance, 3202 through the 9101/9102 file
//! round trip), every difference with what to do about it. With `--hospital`, the books are
//! every workstation's, read from the hospital database (`hospital::books`).

use clap::Args;
use medcard::cache::Cache;
use medcard::clock::DateTime;
use medcard::hospital::books::institution_books;
use medcard::serve::config::{Config, DEFAULT_PATH};
use medcard::serve::messages::hospital_failure_line;
use medcard::settle::journal::Journal;
use medcard::settle::reconcile::{DetailSource, books_from_journal, reconcile, render};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::hospital::open_configured;

/// What a workstation that ships to a hospital database is told after its own report.
const INSTITUTION_TOTALS: &str = "note: this workstation ships its journal to a hospital \
database: 3201's totals (and 3202's details) are the whole institution's, every workstation \
of this fixmedins_code, so 不平 against this journal alone is expected. Reconcile the \
institution with `medcard reconcile --hospital` (3201 为全院总账，单个工作站不平属正常，请用 \
--hospital 全院对账)";

/// Compare the day's settlements in the journal with the insurer's (对账).
///
/// Sends the day's totals per insutype and clr_type with 3201 (对总账). Only when a total does
/// not balance, reconciles the details the platform's way: uploads the day's settlements as
/// a detail file (9101), asks 3202 (对明细账) to compare it, downloads the zipped result
/// (9102). Lists every settlement only the insurer holds (中心多: the insurer's figures are
/// the whole institution's, so one made by another workstation shows here — find who made it
/// before reversing anything), only this journal holds (医药机构多: the insured part was not
/// paid), or holds with other amounts (数据不一致), and every money-moving call whose outcome
/// is still unknown.
///
/// With --hospital, the books compared are the whole institution's: every workstation's
/// settlements and calls as shipped to the hospital database ([hospital] of the
/// configuration), each difference naming the workstation and request it concerns. Without
/// it on a workstation that ships to a hospital database, the insurer's totals are still the
/// institution's, so 不平 is expected there: the report says so.
///
/// Exit status: 0 clean, 1 differences found, 2 could not reconcile.
#[derive(Args, Debug)]
pub struct ReconcileArgs {
    /// The day, yyyy-MM-dd (default: today).
    #[arg(long, value_name = "DATE")]
    date: Option<String>,
    /// The daemon's configuration (its [cache] path holds the journal, [insurer] the link).
    #[arg(long, value_name = "FILE", default_value = DEFAULT_PATH)]
    config: PathBuf,
    /// The cache file holding the journal (overrides cache.path).
    #[arg(long, value_name = "FILE")]
    db: Option<PathBuf>,
    /// The insurer's URL (overrides insurer.url).
    #[arg(long, value_name = "URL")]
    insurer: Option<String>,
    /// Output: text (for people) or json.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    format: String,
    /// How details are compared when a total does not balance: 3202 (the platform's 9101 /
    /// 3202 / 9102 file round trip) or x302 (medcard's simulator extension; no real platform
    /// offers it).
    #[arg(long, default_value = "3202", value_parser = ["3202", "x302"])]
    detail: String,
    /// Reconcile the whole institution: every workstation's settlements of the day from the
    /// hospital database ([hospital] of the configuration) instead of this journal.
    #[arg(long)]
    hospital: bool,
}

pub fn run(args: ReconcileArgs) -> ExitCode {
    match reconcile_day(&args) {
        Ok(clean) if clean => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(message) => {
            eprintln!("medcard reconcile: {message}");
            ExitCode::from(2)
        }
    }
}

fn reconcile_day(args: &ReconcileArgs) -> Result<bool, String> {
    let mut config = Config::load(&args.config)
        .map_err(|e| e.to_string())?
        .config;
    if let Some(db) = &args.db {
        config.cache.path = db.clone();
    }
    if let Some(url) = &args.insurer {
        config.insurer.url = url.clone();
    }
    if !config.insurer.enabled() {
        return Err("no insurer: set insurer.url in the configuration or pass --insurer".into());
    }
    if !args.hospital && !config.cache.path.exists() {
        return Err(format!(
            "no journal at {}: has this workstation settled anything?",
            config.cache.path.display()
        ));
    }
    let cache = Cache::open(&config.cache.path).map_err(|e| e.to_string())?;
    let link_config = config
        .insurer
        .link_config(Duration::from_millis(config.settle.timeout_ms));
    let fixmedins_code = link_config.fixmedins_code.clone();
    let msgids = medcard::cache::CacheMsgIds::new(
        &fixmedins_code,
        cache.writer().clone(),
        config.partition(),
    );
    let mut link = medcard::insurer::InsurerClient::new(link_config).with_msgids(Box::new(msgids));
    let date = args.date.clone().unwrap_or_else(|| DateTime::now().date());
    let books = if args.hospital {
        let mut client = open_configured(&config, &args.config, "medcard reconcile")?;
        institution_books(&mut client, &date).map_err(|e| hospital_failure_line(&e))?
    } else {
        let journal = Journal::new(cache.writer().clone());
        books_from_journal(&journal, &date).map_err(|e| e.to_string())?
    };
    let detail = match args.detail.as_str() {
        "x302" => DetailSource::X302,
        _ => DetailSource::Platform,
    };
    let report = reconcile(
        &books,
        &mut link,
        &date,
        &config.insurer.mdtrtarea_admvs,
        detail,
    )
    .map_err(|e| e.to_string())?;
    if args.format == "json" {
        let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        println!("{json}");
    } else {
        print!("{}", render(&report));
    }
    if !args.hospital && config.hospital.ships() {
        let note = format!("{INSTITUTION_TOTALS}\n");
        if args.format == "json" {
            eprint!("{note}");
        } else {
            print!("{note}");
        }
    }
    Ok(report.is_clean())
}
