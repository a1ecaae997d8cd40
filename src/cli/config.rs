//! `medcard config check`: validate a configuration file and explain every key.

use clap::{Args, Subcommand};
use medcard::serve::config::{Config, DEFAULT_PATH};
use std::path::PathBuf;
use std::process::ExitCode;

/// Work with the configuration file.
#[derive(Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file and explain every key (exit 1 on errors).
    Check {
        /// The file (default /etc/medcard/medcard.toml).
        #[arg(default_value = DEFAULT_PATH)]
        file: PathBuf,
    },
}

pub fn run(args: ConfigArgs) -> ExitCode {
    match args.command {
        ConfigCommand::Check { file } => check_config(&file),
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "medcard config check: {} does not exist (medcard serve would run with every \
                 default; see systemd/medcard.toml)",
                file.display()
            );
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("medcard config check: cannot read {}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let config = match Config::parse(&text) {
        Ok(config) => config,
        Err(message) => {
            println!("{}: error: {message}", file.display());
            return ExitCode::FAILURE;
        }
    };
    let findings = config.check();
    println!("{}", config.explain());
    for warning in &findings.warnings {
        println!("{}: warning: {warning}", file.display());
    }
    for error in &findings.errors {
        println!("{}: error: {error}", file.display());
    }
    if findings.errors.is_empty() {
        println!("{}: OK", file.display());
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
