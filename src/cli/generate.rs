//! `medcard generate man|completions --out DIR` (hidden from `medcard --help`): the man pages
//! (`clap_mangen`) and the shell completions (`clap_complete`) made from medcard's own command
//! line, so they always say what the binary does. packaging/build-deb runs both for the
//! Debian package (docs/packaging.md).

use clap::{Args, Subcommand, ValueEnum};
use clap_complete::Shell;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Write the man pages or the shell completions of this medcard, for packagers.
///
/// packaging/build-deb runs both. The files are made from the command line itself, so they
/// change with it.
#[derive(Args)]
pub struct GenerateArgs {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// The man pages (troff): medcard.1 and one page per command (medcard-serve.1, …).
    Man {
        /// The directory to write them into (created when missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Shell completion scripts: medcard.bash, _medcard (zsh), medcard.fish.
    Completions {
        /// The directory to write them into (created when missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The shells, comma-separated.
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "bash,zsh,fish"
        )]
        shell: Vec<CompletionShell>,
    },
}

/// The shells the package carries completions for.
#[derive(Clone, Copy, ValueEnum)]
enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

impl From<CompletionShell> for Shell {
    fn from(shell: CompletionShell) -> Shell {
        match shell {
            CompletionShell::Bash => Shell::Bash,
            CompletionShell::Zsh => Shell::Zsh,
            CompletionShell::Fish => Shell::Fish,
        }
    }
}

/// Runs `generate` for `command`, medcard's whole command line (`Cli::command()`).
pub fn run(args: GenerateArgs, command: clap::Command) -> ExitCode {
    let (out, written) = match args.what {
        What::Man { out } => {
            let written = std::fs::create_dir_all(&out)
                .and_then(|()| clap_mangen::generate_to(command, &out));
            (out, written)
        }
        What::Completions { out, shell } => {
            let written =
                std::fs::create_dir_all(&out).and_then(|()| completions(command, &shell, &out));
            (out, written)
        }
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("medcard generate: cannot write into {}: {e}", out.display());
            ExitCode::FAILURE
        }
    }
}

/// One completion script per shell, named as `clap_complete` names them.
fn completions(
    mut command: clap::Command,
    shells: &[CompletionShell],
    out: &Path,
) -> std::io::Result<()> {
    for &shell in shells {
        clap_complete::generate_to(Shell::from(shell), &mut command, "medcard", out)?;
    }
    Ok(())
}
