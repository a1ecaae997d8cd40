//! Serial scanners in the daemon: `[scanners]` (a list of `[[scanners.serial]]` ports, none
//! by default), one [`Worker`] per scanner running the `reader` layer's line source
//! ([`SerialScanner`]), and each line published as a `credential.scanned` event: `kind`
//! `certno` for an 18-character resident ID number with a valid check character, `qr` for
//! anything else printable of a QR code's plausible length, `unknown` for other printable
//! lines; a line with a non-printing character is dropped. Who gets the code itself is
//! decided per subscriber (`methods::notification_params`). Logs show a code masked.

use super::config::Findings;
use super::handle::MonitorHandle;
use super::types::{CardEvent, ScanKind};
use super::worker::{StopFlag, Worker};
use crate::reader::scanner::{BAUD_RATES, Halt, SerialScanner, Terminator, speed_of};
use crate::{fields, mask};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// The shortest and longest line taken for a QR code, in characters.
pub const QR_CHARS: std::ops::RangeInclusive<usize> = 8..=1024;

/// `[scanners]`: the serial scanners the daemon reads.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ScannersSection {
    pub serial: Vec<SerialScannerConfig>,
}

/// One `[[scanners.serial]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialScannerConfig {
    /// The scanner's name in events and logs; empty: its device path.
    #[serde(default)]
    pub name: String,
    /// The tty, e.g. `/dev/ttyACM0` or a udev symlink under `/dev/serial/by-id/`.
    pub device: PathBuf,
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// `cr` (default), `lf` or `crlf`.
    #[serde(default)]
    pub terminator: Terminator,
}

fn default_baud() -> u32 {
    9600
}

impl SerialScannerConfig {
    /// The name events and logs use.
    pub fn name(&self) -> String {
        if self.name.trim().is_empty() {
            self.device.display().to_string()
        } else {
            self.name.trim().to_owned()
        }
    }

    fn line_source(&self) -> SerialScanner {
        SerialScanner {
            name: self.name(),
            device: self.device.clone(),
            baud: self.baud,
            terminator: self.terminator,
        }
    }
}

impl ScannersSection {
    /// A device that is not an absolute path or a baud rate that is not standard is an
    /// error; two scanners of one name or device too; a device absent now is a warning.
    pub fn check(&self, findings: &mut Findings) {
        for (i, scanner) in self.serial.iter().enumerate() {
            let key = format!("scanners.serial[{i}]");
            if !scanner.device.is_absolute() {
                findings.errors.push(format!(
                    "{key}.device {:?} must be an absolute path like \"/dev/ttyACM0\"",
                    scanner.device
                ));
            } else if !scanner.device.exists() {
                findings.warnings.push(format!(
                    "{key}.device {} does not exist now; the daemon opens it once it does",
                    scanner.device.display()
                ));
            }
            if speed_of(scanner.baud).is_none() {
                let rates: Vec<String> = BAUD_RATES.iter().map(|(r, _)| r.to_string()).collect();
                findings.errors.push(format!(
                    "{key}.baud {} is not a standard rate ({})",
                    scanner.baud,
                    rates.join(", ")
                ));
            }
            let earlier = &self.serial[..i];
            if earlier.iter().any(|other| other.name() == scanner.name()) {
                findings.errors.push(format!(
                    "{key}: another scanner is named {:?}",
                    scanner.name()
                ));
            }
            if earlier.iter().any(|other| other.device == scanner.device) {
                findings.errors.push(format!(
                    "{key}: another scanner reads {}",
                    scanner.device.display()
                ));
            }
        }
    }

    /// `medcard config check`'s lines for `[scanners]`.
    pub fn explain(&self) -> Vec<String> {
        let origin = if self.serial.is_empty() {
            "default"
        } else {
            "set"
        };
        let mut rows = vec![format!(
            "scanners.serial = {} scanners  ({origin})  # serial barcode / QR scanners \
             published as credential.scanned; none by default",
            self.serial.len()
        )];
        rows.extend(self.serial.iter().enumerate().map(|(i, s)| {
            format!(
                "scanners.serial[{i}] = {{name = {:?}, device = {:?}, baud = {}, terminator = \
                 {:?}}}  (set)  # reopened every second while unplugged",
                s.name(),
                s.device.display().to_string(),
                s.baud,
                s.terminator.as_str()
            )
        }));
        rows
    }

    /// Starts a worker per scanner, publishing on `handle`.
    pub fn start(&self, handle: &MonitorHandle) -> Vec<Worker> {
        self.serial
            .iter()
            .map(|config| {
                let source = config.line_source();
                let handle = handle.clone();
                Worker::spawn("medcard-scanner", move |stop| {
                    source.run(stop, &mut |line| publish(&handle, &source.name, line));
                })
            })
            .collect()
    }
}

impl Halt for StopFlag {
    fn is_stopped(&self) -> bool {
        StopFlag::is_stopped(self)
    }

    fn sleep(&self, total: Duration) {
        StopFlag::sleep(self, total)
    }
}

/// What `line` is; `None` when it holds a character that does not print.
pub fn classify(line: &str) -> Option<ScanKind> {
    if line.chars().any(fields::is_non_printing) {
        return None;
    }
    if fields::certno(fields::RESIDENT_ID_CARD, line).is_ok() {
        return Some(ScanKind::Certno);
    }
    if QR_CHARS.contains(&line.chars().count()) {
        return Some(ScanKind::Qr);
    }
    Some(ScanKind::Unknown)
}

/// A line as a log shows it.
fn masked(kind: ScanKind, line: &str) -> String {
    match kind {
        ScanKind::Certno => mask::certno(line),
        ScanKind::Qr | ScanKind::Unknown => mask::code(line),
    }
}

/// Publishes `line` from `scanner` as `credential.scanned`, or drops it.
fn publish(handle: &MonitorHandle, scanner: &str, line: String) {
    let Some(kind) = classify(&line) else {
        tracing::warn!(
            scanner,
            chars = line.chars().count(),
            "scanned line holds a character that does not print; dropped"
        );
        return;
    };
    tracing::info!(scanner, ?kind, code = %masked(kind, &line), "scanned");
    handle.publish(CardEvent::CredentialScanned {
        scanner: scanner.to_owned(),
        kind,
        code: Some(line),
        scanned_at: crate::clock::rfc3339(SystemTime::now()),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_told_apart_by_their_shape() {
        assert_eq!(classify("11010519491231002X"), Some(ScanKind::Certno));
        // A wrong check character: not an ID number, printable, so a QR-length code.
        assert_eq!(classify("110105194912310021"), Some(ScanKind::Qr));
        assert_eq!(classify("EC1234567890abcdef"), Some(ScanKind::Qr));
        assert_eq!(classify("1234"), Some(ScanKind::Unknown));
        assert_eq!(classify(&"Q".repeat(2000)), Some(ScanKind::Unknown));
        assert_eq!(classify("EC1234\u{1b}[2J5678"), None);
        assert_eq!(classify("EC1234\u{202e}5678"), None);
    }

    #[test]
    fn the_section_is_checked_and_explained() {
        let section = ScannersSection {
            serial: vec![
                SerialScannerConfig {
                    name: String::new(),
                    device: "ttyACM0".into(),
                    baud: 9601,
                    terminator: Terminator::Cr,
                },
                SerialScannerConfig {
                    name: "counter".into(),
                    device: "/dev/null".into(),
                    baud: 115_200,
                    terminator: Terminator::CrLf,
                },
            ],
        };
        let mut findings = Findings::default();
        section.check(&mut findings);
        assert_eq!(findings.errors.len(), 2, "{findings:?}");
        assert!(findings.errors[0].contains("absolute"), "{findings:?}");
        assert!(findings.errors[1].contains("9601"), "{findings:?}");
        let rows = section.explain();
        assert_eq!(rows.len(), 3);
        assert!(
            rows[2].contains("\"counter\"") && rows[2].contains("crlf"),
            "{rows:?}"
        );
    }
}
