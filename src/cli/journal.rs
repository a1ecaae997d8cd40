//! `medcard journal`: looking after the settlement journal (it lives in the cache file).
//! `backup --to FILE` copies the file with SQLite's online backup while the daemon runs;
//! restoring is a copy back with the daemon stopped (docs/operations.md).

use clap::{Args, Subcommand};
use medcard::serve::config::{Config, DEFAULT_PATH};
use std::path::PathBuf;
use std::process::ExitCode;

/// Back up the settlement journal (the cache file), safely while the daemon runs.
#[derive(Args)]
pub struct JournalArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand)]
enum Action {
    /// Copy the cache file (journal included) to FILE with SQLite's online backup; the copy
    /// is checked with `PRAGMA quick_check`. Exit status 0 done, 2 failed.
    Backup {
        /// Where the copy goes (must not exist yet; created with mode 0600).
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
        /// The daemon's configuration (its [cache] path is the file backed up).
        #[arg(long, value_name = "FILE", default_value = DEFAULT_PATH)]
        config: PathBuf,
        /// The cache file (overrides the configuration's cache.path).
        #[arg(long, value_name = "FILE")]
        db: Option<PathBuf>,
    },
}

pub fn run(args: JournalArgs) -> ExitCode {
    match args.action {
        Action::Backup { to, config, db } => match backup(&to, &config, db) {
            Ok(from) => {
                println!("backed up {} to {}", from.display(), to.display());
                ExitCode::SUCCESS
            }
            Err(message) => {
                eprintln!("medcard journal backup: {message}");
                ExitCode::from(2)
            }
        },
    }
}

/// The file backed up, or why it was not.
fn backup(
    to: &std::path::Path,
    config: &std::path::Path,
    db: Option<PathBuf>,
) -> Result<PathBuf, String> {
    let from = match db {
        Some(db) => db,
        None => {
            Config::load(config)
                .map_err(|e| e.to_string())?
                .config
                .cache
                .path
        }
    };
    if from.as_os_str().is_empty() {
        return Err("no cache file: set cache.path in the configuration or pass --db".into());
    }
    medcard::cache::backup(&from, to).map_err(|e| e.to_string())?;
    Ok(from)
}
