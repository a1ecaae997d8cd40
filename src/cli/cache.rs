//! `medcard cache`: look into the local cache (SQLite). `stats` prints counts per table, the
//! feeds' watermarks, last success and last error, and the file's size.

use super::Format;
use clap::{Args, Subcommand};
use medcard::cache::{CacheReader, CacheStats, FeedState};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The cache's default location (the daemon's state directory).
pub const DEFAULT_DB: &str = "/var/lib/medcard/cache.sqlite";

/// Inspect the local cache of insurer answers, card statuses and the catalogue.
#[derive(Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand)]
enum Action {
    /// Counts per table, feed versions, last success and last error, file size.
    Stats {
        /// The cache file.
        #[arg(long, default_value = DEFAULT_DB)]
        db: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

pub fn run(args: CacheArgs) -> ExitCode {
    match args.action {
        Action::Stats { db, format } => stats(&db, format),
    }
}

fn stats(db: &Path, format: Format) -> ExitCode {
    if !db.exists() {
        return fail(&format!("no cache at {}", db.display()));
    }
    let stats = match CacheReader::open(db).and_then(|reader| reader.stats()) {
        Ok(stats) => stats,
        Err(e) => return fail(&e.to_string()),
    };
    match format {
        Format::Json => match serde_json::to_string_pretty(&stats) {
            Ok(json) => println!("{json}"),
            Err(e) => return fail(&format!("cannot format the stats as JSON: {e}")),
        },
        Format::Text => print!("{}", text_report(&stats)),
    }
    ExitCode::SUCCESS
}

fn text_report(stats: &CacheStats) -> String {
    let mut out = String::new();
    let mut line = |label: &str, value: String| out.push_str(&format!("{label:<16} {value}\n"));
    line("file", stats.path.display().to_string());
    line("size", format!("{} bytes", stats.file_bytes));
    line("schema", format!("version {}", stats.schema_version));
    line("persons", stats.persons.to_string());
    line("insuinfo", stats.insuinfo.to_string());
    line("cards", stats.cards.to_string());
    line("card_events", stats.card_events.to_string());
    line("catalogue", stats.catalogue.to_string());
    for feed in &stats.feeds {
        line(&format!("feed {}", feed.feed), feed_summary(feed));
    }
    out
}

fn feed_summary(feed: &FeedState) -> String {
    let mut summary = format!(
        "version {} of {} (behind {}), last ok {}",
        feed.version,
        feed.latest_version,
        feed.latest_version.saturating_sub(feed.version),
        feed.last_ok.map(utc_time).unwrap_or_else(|| "never".into())
    );
    if let Some(error) = &feed.last_error {
        let at = feed.last_error_at.map(utc_time).unwrap_or_default();
        summary.push_str(&format!("; last error {at}: {error}"));
    }
    summary
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC`.
fn utc_time(seconds: i64) -> String {
    medcard::clock::utc(medcard::clock::from_unix_seconds(seconds))
}

fn fail(message: &str) -> ExitCode {
    eprintln!("medcard: {message}");
    ExitCode::from(2)
}
