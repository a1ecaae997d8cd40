//! `medcard bench read`: card reads through pcscd + vpcd against a raw replay of the same
//! APDUs (connect, transaction, read, disconnect: one swipe each).

use super::{Summary, ms};
use medcard::apdu::Exchanger;
use medcard::card::{CardReader, PsamSlot, ReadExtras, ReadOptions, read_in_reader_with};
use medcard::profile::ProfileSet;
use medcard::psam::Psam;
use medcard::reader::pcsc_reader::PcscReaders;
use medcard::reader::{ReaderBackend, with_card};
use medcard::sim::card::vpcd::CardThread;
use medcard::sim::pcscd::{VPCD_PORT, VPCD_READER_0, VPCD_READER_1};
use std::time::{Duration, Instant};

/// One card's figures.
struct Figures {
    card_apdus: usize,
    psam_apdus: usize,
    read: Summary,
    replay: Summary,
}

pub fn run(
    count: usize,
    cards: &[String],
    psam: &str,
    dir: Option<&std::path::Path>,
) -> Result<(), String> {
    let profiles = ProfileSet::load(dir).map_err(|e| e.to_string())?;
    let (_lock, _pcscd) = super::super::real_stack()?;
    let psam_image = super::super::load_psam(psam).map_err(|e| e.to_string())?;
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
        let image = super::super::load_card(card).map_err(|e| e.to_string())?;
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

fn expect_status(reply: Result<Vec<u8>, medcard::apdu::ReaderError>) -> Result<(), String> {
    match reply {
        Ok(reply) if reply.len() >= 2 => Ok(()),
        Ok(_) => Err("the card stopped answering during the replay".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}
