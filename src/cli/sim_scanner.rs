//! `medcard sim --scanner LINK`: the virtual serial scanner ([`medcard::sim::scanner`]) driven
//! from stdin — each line a scanned code, `:unplug` / `:replug` / `:quit` commands — for
//! trying `[scanners]` by hand.

use medcard::reader::scanner::Terminator;
use medcard::sim::scanner::VirtualScanner;
use std::io::BufRead;
use std::path::Path;
use std::process::ExitCode;

/// `--terminator`'s value.
pub fn terminator(text: &str) -> Result<Terminator, String> {
    [Terminator::Cr, Terminator::Lf, Terminator::CrLf]
        .into_iter()
        .find(|t| t.as_str() == text)
        .ok_or_else(|| format!("{text:?} is not cr, lf or crlf"))
}

/// Plugs the scanner in behind `link` and sends what stdin says until `:quit` or its end.
pub fn run(link: &Path, terminator: Terminator) -> ExitCode {
    let mut scanner = match VirtualScanner::plug(link, terminator) {
        Ok(scanner) => scanner,
        Err(e) => {
            eprintln!("medcard sim: {e}");
            return ExitCode::from(2);
        }
    };
    announce(&scanner);
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let outcome = match line.trim() {
            ":quit" => break,
            ":unplug" => {
                scanner.unplug();
                eprintln!("scanner unplugged");
                Ok(())
            }
            ":replug" => scanner.replug().map(|()| announce(&scanner)),
            code => scanner.scan(code),
        };
        if let Err(e) = outcome {
            eprintln!("medcard sim: {e}");
        }
    }
    ExitCode::SUCCESS
}

/// The device to configure, on stdout; the pty behind it on stderr.
fn announce(scanner: &VirtualScanner) {
    println!("{}", scanner.device().display());
    if let Some(slave) = scanner.slave() {
        eprintln!(
            "scanner plugged in: {} -> {}",
            scanner.device().display(),
            slave.display()
        );
    }
}
