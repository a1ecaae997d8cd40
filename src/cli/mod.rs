//! Command-line front ends. Presentation lives here; the library below knows nothing of it.

pub mod bench;
pub mod cache;
pub mod call;
pub mod config;
pub mod demo;
pub mod doctor;
pub mod generate;
pub mod hospital;
pub mod insurer_sim;
pub mod journal;
pub mod profiles;
pub mod read;
pub mod reconcile;
pub mod serve;
pub mod settle;
pub mod sim;
pub mod sim_scanner;
pub mod sync;

use clap::ValueEnum;
use medcard::sim::card::{self as sim_card, CardImage, Chip, PsamImage, SimError};
use std::path::Path;

/// Output of the commands that print a report: lines for a person, or JSON for scripts.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// A card image named by a fixture file path or a built-in card name (`xiaowang`, `gen3`, …).
pub fn load_card(spec: &str) -> Result<CardImage, SimError> {
    file_or_built_in(spec, CardImage::load, sim_card::built_in_card)
}

/// A PSAM image named by a fixture file path or a built-in name (`test-sm4`, …).
pub fn load_psam(spec: &str) -> Result<PsamImage, SimError> {
    file_or_built_in(spec, PsamImage::load, sim_card::built_in_psam)
}

/// A card or PSAM file (told apart by content), or, when no such file exists, a built-in
/// card or PSAM of that name (`medcard sim`, `medcard serve --virtual`).
pub fn load_chip(path: &Path) -> Result<Chip, SimError> {
    if !path.exists()
        && let Some(name) = path.to_str()
    {
        if sim_card::BUILT_IN_CARDS.iter().any(|(n, _)| *n == name) {
            return sim_card::built_in_card(name).map(Chip::from);
        }
        if sim_card::BUILT_IN_PSAMS.iter().any(|(n, _)| *n == name) {
            return sim_card::built_in_psam(name).map(Chip::from);
        }
    }
    Chip::load(path)
}

/// `spec` loaded as a file when there is one by that path, else the built-in of that name.
fn file_or_built_in<T>(
    spec: &str,
    load: fn(&Path) -> Result<T, SimError>,
    built_in: fn(&str) -> Result<T, SimError>,
) -> Result<T, SimError> {
    let path = Path::new(spec);
    if path.exists() {
        load(path)
    } else {
        built_in(spec)
    }
}

/// pcscd for a command that drives the real stack: the machine-wide lock, then a running
/// pcscd (started here when none runs, stopped again when the guard drops).
pub fn real_stack() -> Result<(medcard::sim::pcscd::StackLock, medcard::sim::pcscd::Pcscd), String>
{
    let lock = medcard::sim::pcscd::StackLock::acquire().map_err(|e| e.to_string())?;
    let pcscd = medcard::sim::pcscd::Pcscd::ensure_running().map_err(|e| e.to_string())?;
    Ok((lock, pcscd))
}
