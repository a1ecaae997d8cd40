//! `medcard doctor`: the workstation's self-check (`serve::doctor`), one line per part with
//! the fix for what is wrong; `--format json` for scripts; exit 0 / 1 / 2 for all well /
//! warnings / failures.

use super::Format;
use clap::Args;
use medcard::reader::pcsc_reader::PcscReaders;
use medcard::serve::config::{Config, DEFAULT_PATH};
use medcard::serve::doctor::Doctor;
use std::path::PathBuf;
use std::process::ExitCode;

/// Check this workstation: configuration, pcscd, readers, PSAM, insurer, sign-in, clock,
/// cache, journal, disk, socket, hospital database.
///
/// Each line is PASS, WARN, FAIL or SKIP with what was found, in English and Chinese, and
/// under a warning or failure what to do. The insurer is asked for a 9001 sign-in (signed
/// out again at once); its reply's refmsg_time gives the clock's skew. Exit status: 0 all
/// well, 1 warnings, 2 failures. The same checks run inside the daemon as `system.doctor`.
/// docs/troubleshooting.md lists every error code with what to do.
#[derive(Args)]
pub struct DoctorArgs {
    /// Configuration file (a missing file means every key has its default).
    #[arg(long, value_name = "FILE", default_value = DEFAULT_PATH)]
    config: PathBuf,
    /// Output: lines for a person, or one JSON object for scripts.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

pub fn run(args: DoctorArgs) -> ExitCode {
    let loaded = match Config::load(&args.config) {
        Ok(loaded) => loaded,
        Err(e) => {
            // Nothing else can be checked without a configuration.
            eprintln!("FAIL  config    {e}");
            eprintln!("                fix: correct it; `medcard config check` explains every key");
            eprintln!(
                "                处理：按提示修改配置文件；`medcard config check` 会逐项说明"
            );
            return ExitCode::from(2);
        }
    };
    let mut readers = PcscReaders::new();
    let report = Doctor {
        config: &loaded.config,
        config_source: if loaded.from_file {
            args.config.display().to_string()
        } else {
            format!(
                "{} does not exist: every key has its default",
                args.config.display()
            )
        },
        readers: Some(&mut readers),
        cache: None,
        in_daemon: false,
        daemon_sign_in: None,
    }
    .run();
    match args.format {
        Format::Text => print!("{}", report.text()),
        Format::Json => match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("medcard doctor: {e}");
                return ExitCode::from(2);
            }
        },
    }
    ExitCode::from(report.exit_code())
}
