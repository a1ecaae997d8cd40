//! `medcard demo`: what `make demo` runs — a whole counter in-process (the insurer simulator,
//! the cache and journal, the daemon on virtual readers) with a scripted swipe and
//! settlement (see [`daemon`], built on [`counter`]); with `--pcscd`, a tour of the built-in
//! cards through the real PC/SC stack, printing what `medcard read` prints, failures
//! included.

pub mod counter;
mod daemon;

use clap::Args;
use medcard::card::{
    Pin, PinEntry, PsamSlot, ReadExtras, ireadcardbas_string, read_in_reader_with,
};
use medcard::reader::ReaderBackend;
use medcard::reader::pcsc_reader::PcscReaders;
use medcard::sim::card::vpcd::CardThread;
use medcard::sim::pcscd::{VPCD_PORT, VPCD_READER_0, VPCD_READER_1};
use std::process::ExitCode;
use std::time::Duration;

/// The built-in test PSAM the demo puts in the second slot.
const DEMO_PSAM: &str = "test-sm4";

/// Show a newcomer medcard at work: a card swiped and a visit settled, end to end.
///
/// Needs no setup, no root and no pcscd. In this one process it starts the built-in insurer
/// simulator on 127.0.0.1 (a temporary database seeded from the built-in fixtures), the
/// cache and settlement journal in a temporary directory, and `medcard serve` on virtual
/// readers: a counter reader and a PSAM reader holding a test PSAM. It then plays a script,
/// printing every JSON-RPC request, a short answer and every event:
///
/// 小王's card inserted → card.ready with its verdict → visit.register (内科, 张医生) →
/// settle.preview of 120.00 of 阿莫西林胶囊 (account 102.80, cash 17.20, fund 0.00) →
/// settle.commit → settle.receipt → the same commit retried (the same setl_id: settled
/// once) → the card removed; then a 3.0 card read through the PSAM.
///
/// Without --once it then serves until Ctrl-C and prints calls to try, e.g.
/// `medcard call --socket PATH settle.list`. Everything is removed on exit.
///
/// `--pcscd` instead reads the built-in cards one by one through the real pcscd + vpcd stack
/// (starts pcscd when none runs; needs root), failures included.
#[derive(Args)]
pub struct DemoArgs {
    /// Play the script and stop (a few seconds), instead of serving until Ctrl-C.
    #[arg(long)]
    once: bool,
    /// Where to put the socket (default: a fresh directory under /tmp).
    #[arg(long, value_name = "PATH")]
    socket: Option<std::path::PathBuf>,
    /// Read the built-in cards through pcscd + vpcd instead.
    #[arg(long)]
    pcscd: bool,
    /// With --pcscd: the cards to show (fixture files or built-in names).
    #[arg(long = "card", default_values_t = ["xiaowang", "resident", "long-name", "rare-char", "gen1", "gen3", "gen3-des", "quirky", "no-ssse", "corrupt", "vanishing"].map(String::from))]
    cards: Vec<String>,
}

pub fn run(args: DemoArgs) -> ExitCode {
    let outcome = if args.pcscd {
        pcscd_tour(&args.cards)
    } else {
        daemon::run(args.once, args.socket)
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("medcard demo: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `--pcscd`: every card read through the real PC/SC stack, one after another.
fn pcscd_tour(cards: &[String]) -> Result<(), String> {
    let profiles = medcard::profile::ProfileSet::load(None).map_err(|e| e.to_string())?;
    let (_lock, pcscd) = super::real_stack()?;
    println!(
        "pcscd {}; virtual cards go into vpcd slot 0, reader \"{VPCD_READER_0}\".\n",
        if pcscd.owned() {
            "started for the demo"
        } else {
            "already running"
        }
    );
    let psam = super::load_psam(DEMO_PSAM).map_err(|e| e.to_string())?;
    let _psam = CardThread::spawn(&(VPCD_PORT + 1).to_string(), psam).map_err(|e| e.to_string())?;
    let mut readers = PcscReaders::new();
    let mut psam_readers = PcscReaders::new();
    psam_readers
        .wait_for_card(Some(VPCD_READER_1), Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    println!("A test PSAM ({DEMO_PSAM}) sits in \"{VPCD_READER_1}\" for 3.0 cards.\n");
    for name in cards {
        let image = super::load_card(name).map_err(|e| e.to_string())?;
        println!("── {name}: {}", image.description);
        // The demo knows the fixture's test PIN; at a counter it comes from the patient.
        let pin = image.pin.as_ref().and_then(|p| Pin::new(&p.digits).ok());
        if pin.is_some() {
            println!(
                "   (with the card's test PIN, as a patient would type it, to read the balance)"
            );
        }
        let inserted =
            CardThread::spawn(&VPCD_PORT.to_string(), image).map_err(|e| e.to_string())?;
        readers
            .wait_for_card(Some(VPCD_READER_0), Duration::from_secs(10))
            .map_err(|e| e.to_string())?;
        let extras = ReadExtras {
            psam: Some(PsamSlot {
                backend: &mut psam_readers,
                reader: VPCD_READER_1,
            }),
            pin: pin.as_ref().map(PinEntry::Typed),
            records: false,
        };
        match read_in_reader_with(&mut readers, VPCD_READER_0, &profiles, extras) {
            Ok(card) => {
                print!("{}", super::read::text_report(&card));
                println!("iReadCardBas: {}", ireadcardbas_string(&card, ""));
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
    println!(
        "  medcard sim --vpcd {} fixtures/psam/test-sm4.toml &   # a PSAM for 3.0 cards",
        VPCD_PORT + 1
    );
    println!("  medcard read --format text        # or --format json / ireadcardbas");
    println!("  echo 123456 | medcard read --pin-from-stdin --records   # balance behind the PIN");
    Ok(())
}
