//! `medcard bench`: figures, printed, for the targets the issues set. Timed tests are not
//! used anywhere; this is where speed is measured.

use clap::{Args, Subcommand};
use medcard::apdu::Exchanger;
use medcard::card::{CardReader, read_in_reader};
use medcard::pcscd::{VPCD_PORT, VPCD_READER_0};
use medcard::profile::ProfileSet;
use medcard::reader::pcsc_reader::PcscReaders;
use medcard::reader::{ReaderBackend, with_card};
use medcard::sim::vpcd::CardThread;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Measure medcard: `bench read` times card reads through pcscd + vpcd.
#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// Read fixture cards through pcscd + vpcd and compare with a raw replay of the same APDUs.
    ///
    /// Starts pcscd if none runs (root), inserts each card into vpcd slot 0 from this
    /// process, reads it --count times (connect, transaction, read, disconnect: one swipe
    /// each), then replays the exact APDU sequence of one read the same number of times with
    /// no decoding. Prints APDUs per read, median and p99 per read, and the ratio of the
    /// medians (target ≤ 1.10).
    Read {
        /// Reads per card.
        #[arg(long, default_value_t = 1000)]
        count: usize,
        /// Cards to read: fixture files or built-in names.
        #[arg(long = "card", default_values_t = ["xiaowang".to_owned(), "gen1".to_owned(), "no-4e".to_owned(), "gen3".to_owned()])]
        cards: Vec<String>,
        /// Extra card profiles.
        #[arg(long, value_name = "DIR")]
        profiles: Option<PathBuf>,
    },
}

pub fn run(args: BenchArgs) -> ExitCode {
    let What::Read {
        count,
        cards,
        profiles,
    } = args.what;
    match bench_read(count.max(1), &cards, profiles.as_deref()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("medcard bench: {message}");
            ExitCode::FAILURE
        }
    }
}

/// One card's figures.
struct Figures {
    apdus: usize,
    read: Summary,
    replay: Summary,
}

fn bench_read(count: usize, cards: &[String], dir: Option<&std::path::Path>) -> Result<(), String> {
    let profiles = super::load_profiles(dir).map_err(|e| e.to_string())?;
    let (_lock, _pcscd) = super::real_stack()?;
    println!("medcard bench read: {count} reads per card through pcscd + vpcd ({VPCD_READER_0})");
    println!(
        "{:<10} {:<9} {:>5} {:>10} {:>10} {:>11} {:>11} {:>6}",
        "card", "profile", "APDUs", "read p50", "read p99", "replay p50", "replay p99", "ratio"
    );
    for card in cards {
        let image = super::load_card(card).map_err(|e| e.to_string())?;
        let inserted =
            CardThread::spawn(&VPCD_PORT.to_string(), image).map_err(|e| e.to_string())?;
        let mut readers = PcscReaders::new();
        readers
            .wait_for_card(Some(VPCD_READER_0), Duration::from_secs(10))
            .map_err(|e| format!("card {card} did not appear in {VPCD_READER_0}: {e}"))?;
        let (profile, figures) = measure(&mut readers, &profiles, count)?;
        drop(inserted);
        readers
            .wait_for_removal(VPCD_READER_0, Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        println!(
            "{:<10} {:<9} {:>5} {:>10} {:>10} {:>11} {:>11} {:>6.3}",
            card,
            profile,
            figures.apdus,
            ms(figures.read.median),
            ms(figures.read.p99),
            ms(figures.replay.median),
            ms(figures.replay.p99),
            figures.read.median.as_secs_f64() / figures.replay.median.as_secs_f64(),
        );
    }
    println!(
        "(times per read in ms; a read and a replay each connect, open a transaction and disconnect)"
    );
    Ok(())
}

fn measure(
    readers: &mut PcscReaders,
    profiles: &ProfileSet,
    count: usize,
) -> Result<(String, Figures), String> {
    let (profile, log) = record_one_read(readers, profiles)?;
    let warm_up = count.min(50);
    let mut read = Vec::with_capacity(count);
    let mut replay = Vec::with_capacity(count);
    for round in 0..warm_up + count {
        let started = Instant::now();
        read_in_reader(readers, VPCD_READER_0, profiles).map_err(|e| e.to_string())?;
        let read_time = started.elapsed();
        let started = Instant::now();
        replay_once(readers, &log)?;
        let replay_time = started.elapsed();
        if round >= warm_up {
            read.push(read_time);
            replay.push(replay_time);
        }
    }
    Ok((
        profile,
        Figures {
            apdus: log.len(),
            read: Summary::of(read),
            replay: Summary::of(replay),
        },
    ))
}

/// Reads once, keeping the exact bytes sent.
fn record_one_read(
    readers: &mut PcscReaders,
    profiles: &ProfileSet,
) -> Result<(String, Vec<Vec<u8>>), String> {
    with_card(readers, VPCD_READER_0, |channel| {
        let mut ex = Exchanger::new(channel).recording();
        let card = CardReader::new(profiles).read(&mut ex);
        (card, ex.take_log())
    })
    .map_err(|e| e.to_string())
    .and_then(|(card, log)| Ok((card.map_err(|e| e.to_string())?.profile, log)))
}

/// Sends the recorded APDUs, checking only that each gets a status word.
fn replay_once(readers: &mut PcscReaders, log: &[Vec<u8>]) -> Result<(), String> {
    with_card(readers, VPCD_READER_0, |channel| {
        for command in log {
            let reply = channel.transmit(command).map_err(|e| e.to_string())?;
            if reply.len() < 2 {
                return Err("the card stopped answering during the replay".to_owned());
            }
        }
        Ok(())
    })
    .map_err(|e| e.to_string())?
}

struct Summary {
    median: Duration,
    p99: Duration,
}

impl Summary {
    fn of(mut samples: Vec<Duration>) -> Summary {
        samples.sort();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Summary {
            median: at(0.5),
            p99: at(0.99),
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}
