//! `medcard demo`: what `make demo` runs. Starts pcscd if none runs, inserts the built-in
//! virtual cards one by one into vpcd and reads each through the real PC/SC stack, printing
//! what `medcard read` prints — including the failures an operator meets at the counter.

use clap::Args;
use medcard::card::{ireadcardbas_string, read_in_reader};
use medcard::pcscd::{VPCD_PORT, VPCD_READER_0};
use medcard::reader::ReaderBackend;
use medcard::reader::pcsc_reader::PcscReaders;
use medcard::sim::vpcd::CardThread;
use std::process::ExitCode;
use std::time::Duration;

/// Show medcard reading the built-in virtual cards through pcscd + vpcd.
///
/// Starts pcscd when none runs (needs root), inserts each card into vpcd slot 0 and reads
/// it the way `medcard read` does, failures included (a bank-only card, a corrupt record,
/// a card pulled mid-read).
#[derive(Args)]
pub struct DemoArgs {
    /// Cards to show: fixture files or built-in names.
    #[arg(long = "card", default_values_t = ["xiaowang", "long-name", "rare-char", "gen1", "gen3", "quirky", "no-ssse", "corrupt", "vanishing"].map(String::from))]
    cards: Vec<String>,
}

pub fn run(args: DemoArgs) -> ExitCode {
    match demo(&args.cards) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("medcard demo: {message}");
            ExitCode::FAILURE
        }
    }
}

fn demo(cards: &[String]) -> Result<(), String> {
    let profiles = super::load_profiles(None).map_err(|e| e.to_string())?;
    let (_lock, pcscd) = super::real_stack()?;
    println!(
        "pcscd {}; virtual cards go into vpcd slot 0, reader \"{VPCD_READER_0}\".\n",
        if pcscd.owned() {
            "started for the demo"
        } else {
            "already running"
        }
    );
    let mut readers = PcscReaders::new();
    for name in cards {
        let image = super::load_card(name).map_err(|e| e.to_string())?;
        println!("── {name}: {}", image.description);
        let inserted =
            CardThread::spawn(&VPCD_PORT.to_string(), image).map_err(|e| e.to_string())?;
        readers
            .wait_for_card(Some(VPCD_READER_0), Duration::from_secs(10))
            .map_err(|e| e.to_string())?;
        match read_in_reader(&mut readers, VPCD_READER_0, &profiles) {
            Ok(card) => {
                print!("{}", super::read::text_report(&card));
                println!(
                    "iReadCardBas: {}",
                    ireadcardbas_string(&card, "")
                );
            }
            Err(e) => println!("read failed, code {}: {e}", e.reader_code().0),
        }
        drop(inserted);
        readers
            .wait_for_removal(VPCD_READER_0, Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        println!();
    }
    println!("Try it yourself (as root, with pcscd running):");
    println!("  medcard sim --vpcd {VPCD_PORT} fixtures/cards/xiaowang.toml &");
    println!("  medcard read --format text        # or --format json / ireadcardbas");
    Ok(())
}
