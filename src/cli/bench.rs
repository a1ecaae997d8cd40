//! `medcard bench`: figures, printed, for the targets the issues set. Timed tests are not
//! used anywhere; this is where speed is measured.
//!
//! - `bench read`: card reads through pcscd + vpcd against a raw replay of the same APDUs.
//! - `bench serve`: `card.read` answered from a session by a `medcard serve` child process,
//!   at several numbers of concurrent clients, with the daemon's memory.

use clap::{Args, Subcommand};
use medcard::apdu::Exchanger;
use medcard::card::{CardReader, PsamSlot, ReadExtras, ReadOptions, read_in_reader_with};
use medcard::pcscd::{VPCD_PORT, VPCD_READER_0, VPCD_READER_1};
use medcard::profile::ProfileSet;
use medcard::psam::Psam;
use medcard::reader::pcsc_reader::PcscReaders;
use medcard::reader::{ReaderBackend, with_card};
use medcard::sim::vpcd::CardThread;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Measure medcard: `bench read` times card reads through pcscd + vpcd; `bench serve` the
/// daemon's `card.read` throughput and latency.
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
    /// no decoding. A PSAM (slot 1) authenticates 3.0 cards; its APDUs are replayed too, and
    /// the replay sends GET CHALLENGE where the read sent EXTERNAL AUTHENTICATE (a replayed
    /// cryptogram would only cost the card a try). Prints APDUs per read (card + PSAM),
    /// median and p99 per read, and the ratio of the medians (target ≤ 1.10).
    Read {
        /// Reads per card.
        #[arg(long, default_value_t = 1000)]
        count: usize,
        /// Cards to read: fixture files or built-in names.
        #[arg(long = "card", default_values_t = ["xiaowang".to_owned(), "gen1".to_owned(), "no-4e".to_owned(), "gen3".to_owned()])]
        cards: Vec<String>,
        /// The PSAM in vpcd slot 1: a fixture file or a built-in name.
        #[arg(long, default_value = "test-sm4")]
        psam: String,
        /// Extra card profiles.
        #[arg(long, value_name = "DIR")]
        profiles: Option<PathBuf>,
    },
    /// Requests per second and latency of `card.read` answered by `medcard serve`.
    ///
    /// Starts `medcard serve --virtual CARD` (this binary) on a socket in a temporary
    /// directory, waits until it answers, then for each number of --clients runs that many
    /// connections at once, each sending `card.read` one after another: a warm-up, then
    /// --seconds measured. Prints requests/s, p50 and p99 latency, and the daemon's RSS
    /// (VmRSS, and its peak VmHWM) after each level; then compares the largest level with
    /// the targets (≥ 20,000 req/s, p99 ≤ 2 ms, RSS ≤ 30 MB). A miss is reported, not an
    /// error. The daemon is stopped with SIGTERM at the end.
    Serve {
        /// Measured seconds per level.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Warm-up seconds per level (requests sent, not counted).
        #[arg(long, default_value_t = 1.0)]
        warm_up: f64,
        /// Concurrent clients per level.
        #[arg(long, value_delimiter = ',', default_values_t = [1usize, 16, 64])]
        clients: Vec<usize>,
        /// The card the daemon serves: a fixture file or a built-in name.
        #[arg(long, default_value = "xiaowang")]
        card: String,
    },
}

pub fn run(args: BenchArgs) -> ExitCode {
    let outcome = match args.what {
        What::Read {
            count,
            cards,
            psam,
            profiles,
        } => bench_read(count.max(1), &cards, &psam, profiles.as_deref()),
        What::Serve {
            seconds,
            warm_up,
            clients,
            card,
        } => serve_bench::run(&serve_bench::Plan {
            seconds: seconds.max(0.1),
            warm_up: warm_up.max(0.0),
            clients: clients.into_iter().map(|n| n.max(1)).collect(),
            card,
        }),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("medcard bench: {message}");
            ExitCode::FAILURE
        }
    }
}

/// One card's figures.
struct Figures {
    card_apdus: usize,
    psam_apdus: usize,
    read: Summary,
    replay: Summary,
}

fn bench_read(
    count: usize,
    cards: &[String],
    psam: &str,
    dir: Option<&std::path::Path>,
) -> Result<(), String> {
    let profiles = super::load_profiles(dir).map_err(|e| e.to_string())?;
    let (_lock, _pcscd) = super::real_stack()?;
    let psam_image = super::load_psam(psam).map_err(|e| e.to_string())?;
    let _psam =
        CardThread::spawn(&(VPCD_PORT + 1).to_string(), psam_image).map_err(|e| e.to_string())?;
    let mut psam_readers = PcscReaders::new();
    psam_readers
        .wait_for_card(Some(VPCD_READER_1), Duration::from_secs(10))
        .map_err(|e| format!("the PSAM did not appear in {VPCD_READER_1}: {e}"))?;
    println!(
        "medcard bench read: {count} reads per card through pcscd + vpcd (card in {VPCD_READER_0}, PSAM {psam} in {VPCD_READER_1})"
    );
    println!(
        "{:<10} {:<9} {:>10} {:>10} {:>10} {:>10} {:>11} {:>11} {:>6}",
        "card",
        "profile",
        "card APDUs",
        "PSAM APDUs",
        "read p50",
        "read p99",
        "replay p50",
        "replay p99",
        "ratio"
    );
    for card in cards {
        let image = super::load_card(card).map_err(|e| e.to_string())?;
        let inserted =
            CardThread::spawn(&VPCD_PORT.to_string(), image).map_err(|e| e.to_string())?;
        let mut readers = PcscReaders::new();
        readers
            .wait_for_card(Some(VPCD_READER_0), Duration::from_secs(10))
            .map_err(|e| format!("card {card} did not appear in {VPCD_READER_0}: {e}"))?;
        let mut stack = Stack {
            cards: &mut readers,
            psam: &mut psam_readers,
            profiles: &profiles,
        };
        let (profile, figures) = measure(&mut stack, count)?;
        drop(inserted);
        readers
            .wait_for_removal(VPCD_READER_0, Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        println!(
            "{:<10} {:<9} {:>10} {:>10} {:>10} {:>10} {:>11} {:>11} {:>6.3}",
            card,
            profile,
            figures.card_apdus,
            figures.psam_apdus,
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

/// The two connections a read uses.
struct Stack<'a> {
    cards: &'a mut PcscReaders,
    psam: &'a mut PcscReaders,
    profiles: &'a ProfileSet,
}

/// What one read sent, card side and PSAM side.
struct Recording {
    profile: String,
    card: Vec<Vec<u8>>,
    psam: Vec<Vec<u8>>,
}

fn measure(stack: &mut Stack<'_>, count: usize) -> Result<(String, Figures), String> {
    let recording = record_one_read(stack)?;
    let warm_up = count.min(50);
    let mut read = Vec::with_capacity(count);
    let mut replay = Vec::with_capacity(count);
    for round in 0..warm_up + count {
        let started = Instant::now();
        let extras = ReadExtras {
            psam: Some(PsamSlot {
                backend: &mut *stack.psam,
                reader: VPCD_READER_1,
            }),
            ..ReadExtras::default()
        };
        read_in_reader_with(&mut *stack.cards, VPCD_READER_0, stack.profiles, extras)
            .map_err(|e| e.to_string())?;
        let read_time = started.elapsed();
        let started = Instant::now();
        replay_once(stack, &recording)?;
        let replay_time = started.elapsed();
        if round >= warm_up {
            read.push(read_time);
            replay.push(replay_time);
        }
    }
    Ok((
        recording.profile,
        Figures {
            card_apdus: recording.card.len(),
            psam_apdus: recording.psam.len(),
            read: Summary::of(read),
            replay: Summary::of(replay),
        },
    ))
}

/// Reads once with the PSAM, keeping the exact bytes sent on both sides.
fn record_one_read(stack: &mut Stack<'_>) -> Result<Recording, String> {
    let (cards, profiles) = (&mut *stack.cards, stack.profiles);
    with_card(&mut *stack.psam, VPCD_READER_1, |psam_channel| {
        let mut psam_ex = Exchanger::new(psam_channel).recording();
        let mut psam = Psam::open(&mut psam_ex, VPCD_READER_1).map_err(|e| e.to_string())?;
        let (card, card_log) = with_card(cards, VPCD_READER_0, |channel| {
            let mut ex = Exchanger::new(channel).recording();
            let options = ReadOptions {
                authenticator: Some(&mut psam),
                ..ReadOptions::default()
            };
            let card = CardReader::new(profiles).read_with(&mut ex, options);
            (card, ex.take_log())
        })
        .map_err(|e| e.to_string())?;
        let profile = card.map_err(|e| e.to_string())?.profile;
        Ok(Recording {
            profile,
            card: card_log,
            psam: psam_ex.take_log(),
        })
    })
    .map_err(|e| e.to_string())?
}

/// Sends the recorded APDUs on both connections, checking only that each gets a status word.
fn replay_once(stack: &mut Stack<'_>, recording: &Recording) -> Result<(), String> {
    const EXTERNAL_AUTHENTICATE: u8 = 0x82;
    let get_challenge = [0x00, 0x84, 0x00, 0x00, 0x08];
    let cards = &mut *stack.cards;
    with_card(&mut *stack.psam, VPCD_READER_1, |psam_channel| {
        with_card(cards, VPCD_READER_0, |channel| {
            for command in &recording.card {
                let command: &[u8] = match command.get(1) {
                    Some(&EXTERNAL_AUTHENTICATE) => &get_challenge,
                    _ => command,
                };
                expect_status(channel.transmit(command))?;
            }
            Ok::<(), String>(())
        })
        .map_err(|e| e.to_string())??;
        for command in &recording.psam {
            expect_status(psam_channel.transmit(command))?;
        }
        Ok(())
    })
    .map_err(|e| e.to_string())?
}

fn expect_status(reply: Result<Vec<u8>, medcard::reader::ReaderError>) -> Result<(), String> {
    match reply {
        Ok(reply) if reply.len() >= 2 => Ok(()),
        Ok(_) => Err("the card stopped answering during the replay".to_owned()),
        Err(e) => Err(e.to_string()),
    }
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
