//! The reader monitor (`serve::monitor`): in-process over shared virtual readers (insertion,
//! removal, swaps, errors, refresh, PIN, PSAM, a failing backend), and end to end through
//! pcscd + vpcd with `PcscReaders` (hot-plug, swap, pcscd restarted under the monitor, a
//! card pulled mid-read). The end-to-end test takes the machine-wide stack lock.

use crate::common;

use common::fixture;
use common::stack::{READER_0, READER_1, Sim, Stack};
use medcard::apdu::{CardChannel, ReaderError};
use medcard::card::{Pin, PinState};
use medcard::codes::ReaderCode;
use medcard::profile::ProfileSet;
use medcard::reader::pcsc_reader::PcscReaders;
use medcard::reader::{ReaderBackend, ReaderStatus};
use medcard::serve::{
    CardEvent, CardSession, MonitorConfig, MonitorHandle, PinInput, PsamChoice, ReaderState,
    SessionError, Worker, spawn_monitor,
};
use medcard::sim::card::{Chip, SharedVirtualReaders};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::broadcast::{Receiver, error::TryRecvError};

/// Generous: only a broken monitor waits this long.
const EVENT_WAIT: Duration = Duration::from_secs(20);

fn chip(name: &str) -> Chip {
    Chip::load(&fixture(name)).expect("fixture card")
}

fn psam_chip(name: &str) -> Chip {
    Chip::load(&common::psam(name)).expect("fixture PSAM")
}

fn config(psam: PsamChoice) -> MonitorConfig {
    MonitorConfig {
        psam,
        poll: Duration::from_millis(50),
        ..MonitorConfig::new(ProfileSet::built_in().expect("built-in profiles"))
    }
}

/// A monitor over `readers` (each connection a clone sharing the same slots).
fn monitor(readers: &SharedVirtualReaders, psam: PsamChoice) -> (MonitorHandle, Worker) {
    init_logs();
    let shared = readers.clone();
    spawn_monitor(config(psam), move || Box::new(shared.clone()))
}

/// A monitor on fresh shared virtual readers, and its events from the start.
fn watched(psam: PsamChoice) -> (SharedVirtualReaders, MonitorHandle, Worker, Events) {
    let readers = SharedVirtualReaders::new();
    let (handle, thread) = monitor(&readers, psam);
    let events = Events::of(&handle);
    (readers, handle, thread, events)
}

/// Monitor logs on the test output when `MEDCARD_LOG` is set (e.g. `MEDCARD_LOG=debug`).
fn init_logs() {
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("MEDCARD_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A subscription read synchronously, with a generous deadline per event.
struct Events(Receiver<CardEvent>);

impl Events {
    fn of(handle: &MonitorHandle) -> Events {
        Events(handle.subscribe())
    }

    fn next(&mut self) -> CardEvent {
        let deadline = Instant::now() + EVENT_WAIT;
        loop {
            match self.0.try_recv() {
                Ok(event) => return event,
                Err(TryRecvError::Empty) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("no event within {EVENT_WAIT:?}: {e:?}"),
            }
        }
    }

    /// The next event of `reader`, skipping other readers'.
    fn next_of(&mut self, reader: &str) -> CardEvent {
        loop {
            let event = self.next();
            if reader_of(&event) == reader {
                return event;
            }
        }
    }

    /// The events of `reader` up to and including the first with `topic`.
    fn until(&mut self, reader: &str, topic: &str) -> Vec<CardEvent> {
        let mut seen = Vec::new();
        loop {
            let event = self.next_of(reader);
            let done = event.topic() == topic;
            seen.push(event);
            if done {
                return seen;
            }
        }
    }

    /// Whatever has arrived so far.
    fn pending(&mut self) -> Vec<CardEvent> {
        std::iter::from_fn(|| self.0.try_recv().ok()).collect()
    }
}

fn reader_of(event: &CardEvent) -> &str {
    event.reader()
}

fn topics(events: &[CardEvent]) -> Vec<&'static str> {
    events.iter().map(CardEvent::topic).collect()
}

fn ready_session(event: CardEvent) -> CardSession {
    match event {
        CardEvent::CardReady { card, .. } => *card,
        other => panic!("expected card.ready, got {other:?}"),
    }
}

/// The session of the last `card.ready` among `events`.
fn last_ready(events: Vec<CardEvent>) -> CardSession {
    ready_session(events.into_iter().last().expect("events"))
}

fn state_of(handle: &MonitorHandle, reader: &str) -> Option<ReaderState> {
    handle
        .readers()
        .into_iter()
        .find(|r| r.name == reader)
        .map(|r| r.state)
}

#[test]
fn a_card_is_read_once_at_insertion_and_held_until_removed() {
    let (readers, handle, _thread, mut events) = watched(PsamChoice::Auto);
    readers.add_reader("r0");
    assert_eq!(
        topics(&events.until("r0", "reader.added")),
        ["reader.added"]
    );

    readers.insert("r0", chip("xiaowang"));
    let seen = events.until("r0", "card.ready");
    assert_eq!(topics(&seen), ["card.inserted", "card.ready"]);
    assert!(
        matches!(&seen[0], CardEvent::CardInserted { atr, .. } if atr.starts_with("3B6D")),
        "{seen:?}"
    );
    let session = last_ready(seen);
    assert_eq!(session.reader, "r0");
    assert_eq!(
        session.card.holder.certno.as_deref(),
        Some("500103199103080319")
    );
    assert!(session.read_at.ends_with('Z') && session.read_at.len() == 24);
    assert_eq!(handle.session(Some("r0")), Ok(session.clone()));
    assert_eq!(handle.session(None), Ok(session.clone()));
    assert_eq!(state_of(&handle, "r0"), Some(ReaderState::Ready));

    // Held, not read again: the card sees no APDU however long it stays.
    let apdus = readers.with_chip("r0", |c| c.map(Chip::apdus_seen));
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(readers.with_chip("r0", |c| c.map(Chip::apdus_seen)), apdus);
    assert!(events.pending().is_empty());

    readers.remove("r0");
    assert_eq!(
        topics(&events.until("r0", "card.removed")),
        ["card.removed"]
    );
    assert_eq!(
        handle.session(Some("r0")),
        Err(SessionError::NoCard("r0".into()))
    );
    assert_eq!(state_of(&handle, "r0"), Some(ReaderState::Empty));

    readers.remove_reader("r0");
    assert_eq!(
        topics(&events.until("r0", "reader.removed")),
        ["reader.removed"]
    );
    assert!(handle.readers().is_empty());
}

#[test]
fn a_swapped_card_is_a_new_session_even_with_the_same_atr() {
    let (readers, handle, _thread, mut events) = watched(PsamChoice::None);
    readers.insert("r0", chip("xiaowang"));
    let first = last_ready(events.until("r0", "card.ready"));

    // Out and another card in.
    readers.remove("r0");
    readers.insert("r0", chip("resident"));
    let seen = events.until("r0", "card.ready");
    assert_eq!(
        topics(&seen),
        ["card.removed", "card.inserted", "card.ready"]
    );
    let second = last_ready(seen);
    assert_ne!(second.session_id, first.session_id);
    assert_eq!(second.card.card_no.as_deref(), Some("D11982761"));

    // The same card again in one step (no empty reader seen): the event count tells.
    readers.insert("r0", chip("resident"));
    let seen = events.until("r0", "card.ready");
    assert_eq!(
        topics(&seen),
        ["card.removed", "card.inserted", "card.ready"]
    );
    let third = last_ready(seen);
    assert!(third.session_id > second.session_id);
    assert_eq!(handle.session(Some("r0")), Ok(third));
}

#[test]
fn a_card_pulled_mid_read_is_an_error_then_a_removal() {
    let (readers, handle, _thread, mut events) = watched(PsamChoice::Auto);
    readers.insert("r0", chip("vanishing"));
    let seen = events.until("r0", "card.removed");
    assert_eq!(
        topics(&seen),
        [
            "reader.added",
            "card.inserted",
            "card.error",
            "card.removed"
        ],
        "{seen:?}"
    );
    match &seen[2] {
        CardEvent::CardError { reader_code, .. } => {
            assert_eq!(*reader_code, ReaderCode::CARD_NOT_RESPONDING)
        }
        other => panic!("{other:?}"),
    }
    assert!(handle.snapshot().sessions.is_empty());
}

#[test]
fn an_unreadable_card_stays_in_error_without_a_session() {
    let (readers, handle, _thread, mut events) = watched(PsamChoice::None);
    readers.insert("r0", chip("no-ssse"));
    let seen = events.until("r0", "card.error");
    assert_eq!(
        topics(&seen),
        ["reader.added", "card.inserted", "card.error"]
    );
    let info = handle.readers().into_iter().find(|r| r.name == "r0");
    let info = info.expect("reader r0 listed");
    assert_eq!(info.state, ReaderState::Error);
    assert_eq!(info.reader_code, Some(ReaderCode::NOT_SOCIAL_SECURITY_CARD));
    assert!(matches!(
        handle.session(Some("r0")),
        Err(SessionError::Unreadable { .. })
    ));
}

#[test]
fn refresh_reads_again_into_a_new_session() {
    let (readers, handle, _thread, mut events) = watched(PsamChoice::Auto);
    readers.add_reader("empty");
    readers.insert("r0", chip("xiaowang"));
    let first = last_ready(events.until("r0", "card.ready"));

    let rt = runtime();
    let again = rt.block_on(handle.refresh("r0")).expect("refresh");
    assert!(again.session_id > first.session_id);
    assert_eq!(again.card.card_no, first.card.card_no);
    let seen = events.until("r0", "card.ready");
    assert_eq!(topics(&seen), ["card.ready"], "no re-insertion");
    assert_eq!(last_ready(seen), again);
    assert_eq!(handle.session(Some("r0")), Ok(again));

    assert_eq!(
        rt.block_on(handle.refresh("empty")),
        Err(SessionError::NoCard("empty".into()))
    );
    assert_eq!(
        rt.block_on(handle.refresh("nope")),
        Err(SessionError::UnknownReader("nope".into()))
    );
}

#[test]
fn verify_pin_answers_tries_left_or_ok() {
    let (readers, handle, _thread, mut events) = watched(PsamChoice::Auto);
    readers.insert("r0", chip("xiaowang"));
    readers.insert("r1", chip("pin-locked"));
    events.until("r0", "card.ready");
    let rt = runtime();
    let verify = |reader: &str, pin: &str| {
        let pin = PinInput::Typed(Pin::new(pin).expect("pin"));
        rt.block_on(handle.verify_pin(reader, pin))
    };
    assert_eq!(
        verify("r0", "654321"),
        Ok(PinState::Required { tries_left: 2 })
    );
    let before = handle.session(Some("r0")).expect("r0's session");
    assert!(before.card.balance.is_none());
    assert_eq!(verify("r0", "123456"), Ok(PinState::Ok));
    // The right PIN reads DF04 into the same session, published again with card.ready.
    let seen = events.until("r0", "card.ready");
    let after = handle.session(Some("r0")).expect("r0's session");
    assert_eq!(after.session_id, before.session_id);
    assert_eq!(
        after.card.balance.as_ref().map(|b| b.balc.as_str()),
        Some("102.80")
    );
    assert_eq!(
        last_ready(seen).card.balance.map(|b| b.balc),
        Some("102.80".to_owned())
    );
    assert_eq!(verify("r1", "123456"), Ok(PinState::Locked));
    assert_eq!(
        verify("r2", "123456"),
        Err(SessionError::UnknownReader("r2".into()))
    );
}

#[test]
fn the_pin_typed_on_the_readers_pad_verifies_and_reads_the_balance() {
    let (readers, handle, _thread, mut events) = watched(PsamChoice::Auto);
    readers.insert("pad", chip("xiaowang"));
    readers.insert("plain", chip("xiaowang"));
    readers.set_pin_pad("pad", Some("654321"));
    events.until("pad", "card.ready");
    events.until("plain", "card.ready");
    let rt = runtime();
    let on_pad = |reader: &str| rt.block_on(handle.verify_pin(reader, PinInput::PinPad));
    assert_eq!(on_pad("pad"), Ok(PinState::Required { tries_left: 2 }));
    readers.set_pin_pad("pad", Some("123456"));
    assert_eq!(on_pad("pad"), Ok(PinState::Ok));
    events.until("pad", "card.ready");
    let session = handle
        .session(Some("pad"))
        .expect("the pad reader's session");
    assert_eq!(
        session.card.balance.map(|b| b.balc),
        Some("102.80".to_owned())
    );
    // A reader without a pad says so; the card is not touched.
    let refused = on_pad("plain");
    assert!(
        matches!(refused, Err(SessionError::Unreadable { .. })),
        "{refused:?}"
    );
}

#[test]
fn a_3_0_card_reads_completely_with_a_psam_in_another_reader() {
    let (readers, handle, _thread, mut events) = watched(PsamChoice::Auto);
    readers.insert("psam", psam_chip("test-sm4"));
    readers.insert("card", chip("gen3"));
    let seen = events.until("card", "card.ready");
    let session = last_ready(seen);
    assert_eq!(
        session.card.holder.certno.as_deref(),
        Some("440106200108170645")
    );
    assert!(session.card.needs_psam.is_empty(), "{:?}", session.card);
    assert_eq!(
        session.card.psam_terminal_no.as_deref(),
        Some("410100813475")
    );
    // The PSAM's reader is listed, holds no session and had no card events.
    assert_eq!(state_of(&handle, "psam"), Some(ReaderState::Present));
    assert_eq!(handle.session(None), Ok(session));
    readers.remove("psam");
    readers.remove_reader("psam");
    let psam_events = events.until("psam", "reader.removed");
    assert!(
        psam_events.iter().all(|e| e.topic().starts_with("reader.")),
        "{psam_events:?}"
    );
}

#[test]
fn without_a_psam_a_3_0_card_reads_what_it_can() {
    let (readers, handle, _thread, mut events) = watched(PsamChoice::None);
    readers.insert("psam", psam_chip("test-sm4"));
    readers.insert("card", chip("gen3"));
    let session = last_ready(events.until("card", "card.ready"));
    assert!(!session.card.needs_psam.is_empty());
    // With PSAM use off, the PSAM is a card like any other: one that does not read.
    assert_eq!(state_of(&handle, "psam"), Some(ReaderState::Error));
}

/// Shared virtual readers whose listing fails while `down` (pcscd stopped), and that count
/// no events when `uncounted` (a backend without PC/SC's event counter).
#[derive(Clone)]
struct Flaky {
    readers: SharedVirtualReaders,
    down: Arc<AtomicBool>,
    uncounted: bool,
}

impl Flaky {
    fn new(uncounted: bool) -> Flaky {
        Flaky {
            readers: SharedVirtualReaders::new(),
            down: Arc::new(AtomicBool::new(false)),
            uncounted,
        }
    }

    fn monitor(&self) -> (MonitorHandle, Worker) {
        init_logs();
        let backend = self.clone();
        spawn_monitor(config(PsamChoice::Auto), move || Box::new(backend.clone()))
    }
}

impl ReaderBackend for Flaky {
    fn readers(&mut self) -> Result<Vec<ReaderStatus>, ReaderError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(ReaderError::NoService("stopped for the test".into()));
        }
        let mut readers = self.readers.readers()?;
        if self.uncounted {
            readers.iter_mut().for_each(|r| r.event_count = None);
        }
        Ok(readers)
    }

    fn with_card(
        &mut self,
        reader: &str,
        work: &mut dyn FnMut(&mut dyn CardChannel),
    ) -> Result<(), ReaderError> {
        self.readers.with_card(reader, work)
    }

    fn wait_for_card(
        &mut self,
        reader: Option<&str>,
        timeout: Duration,
    ) -> Result<String, ReaderError> {
        self.readers.wait_for_card(reader, timeout)
    }
}

#[test]
fn a_failing_backend_drops_the_readers_and_they_come_back() {
    let flaky = Flaky::new(false);
    let (handle, thread) = flaky.monitor();
    let mut events = Events::of(&handle);
    flaky.readers.insert("r0", chip("xiaowang"));
    let first = last_ready(events.until("r0", "card.ready"));

    flaky.down.store(true, Ordering::SeqCst);
    let seen = events.until("r0", "reader.removed");
    assert_eq!(topics(&seen), ["card.removed", "reader.removed"]);
    assert!(handle.readers().is_empty());
    assert!(thread.is_running());

    flaky.down.store(false, Ordering::SeqCst);
    let seen = events.until("r0", "card.ready");
    assert_eq!(
        topics(&seen),
        ["reader.added", "card.inserted", "card.ready"]
    );
    assert!(last_ready(seen).session_id > first.session_id);
}

#[test]
fn a_refresh_that_finds_another_card_id_reports_a_swap() {
    let flaky = Flaky::new(true);
    let (handle, _thread) = flaky.monitor();
    let mut events = Events::of(&handle);
    flaky.readers.insert("r0", chip("xiaowang"));
    let first = last_ready(events.until("r0", "card.ready"));

    // Another card with the same ATR, swapped unseen (no event counter).
    let text = std::fs::read_to_string(fixture("xiaowang")).expect("fixture");
    let other = text.replace(
        "500000D15600000512345678ABCDEF01",
        "500000D15600000512345678ABCDEF02",
    );
    flaky
        .readers
        .insert("r0", Chip::from_toml_str(&other, "other").expect("card"));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(handle.session(Some("r0")), Ok(first.clone()), "unseen");

    let again = runtime().block_on(handle.refresh("r0")).expect("refresh");
    assert_eq!(
        again.card.card_id.as_deref(),
        Some("500000D15600000512345678ABCDEF02")
    );
    let seen = events.until("r0", "card.ready");
    assert_eq!(
        topics(&seen),
        ["card.removed", "card.inserted", "card.ready"]
    );
    assert!(again.session_id > first.session_id);
}

#[test]
fn a_stopped_monitor_says_so() {
    let readers = SharedVirtualReaders::new();
    let (handle, thread) = monitor(&readers, PsamChoice::Auto);
    assert!(thread.is_running());
    thread.stop();
    assert_eq!(
        runtime().block_on(handle.refresh("r0")),
        Err(SessionError::MonitorStopped)
    );
}

// ---- end to end: pcscd + vpcd ---------------------------------------------------------------

fn card_no(session: &CardSession) -> &str {
    session.card.card_no.as_deref().unwrap_or_default()
}

#[test]
fn through_pcscd_cards_come_and_go_and_survive_a_pcscd_restart() {
    init_logs();
    let mut stack = Stack::start();
    let (handle, _thread) = spawn_monitor(
        MonitorConfig::new(ProfileSet::built_in().expect("profiles")),
        || Box::new(PcscReaders::new()),
    );
    let mut events = Events::of(&handle);

    let sim = Sim::insert(&stack, 0, &fixture("xiaowang"));
    let seen = events.until(READER_0, "card.ready");
    assert!(topics(&seen).contains(&"card.inserted"), "{seen:?}");
    let first = last_ready(seen);
    assert_eq!(card_no(&first), "C06123455");
    // Held: our own connections to the card are no insertions.
    std::thread::sleep(Duration::from_millis(1500));
    let later = events.pending();
    assert!(later.is_empty(), "{later:?}");

    sim.swap(&stack, &fixture("resident"));
    let seen = events.until(READER_0, "card.ready");
    let order = topics(&seen);
    assert_eq!(
        order[order.len() - 3..],
        ["card.removed", "card.inserted", "card.ready"],
        "{seen:?}"
    );
    let second = last_ready(seen);
    assert_eq!(card_no(&second), "D11982761");
    assert!(second.session_id > first.session_id);

    if stack.pcscd.owned() {
        stack.pcscd.restart().expect("restart pcscd");
        let seen = events.until(READER_0, "card.ready");
        eprintln!("after the pcscd restart: {:?}", topics(&seen));
        assert!(topics(&seen).contains(&"card.removed"), "{seen:?}");
        let back = last_ready(seen);
        assert_eq!(card_no(&back), "D11982761");
        assert!(back.session_id > second.session_id);
        assert_eq!(handle.session(Some(READER_0)), Ok(back));
    } else {
        eprintln!("pcscd is not ours: the restart part is skipped");
    }

    let _pulled = Sim::insert(&stack, 1, &fixture("vanishing"));
    let seen = events.until(READER_1, "card.error");
    match seen.last() {
        Some(CardEvent::CardError { reader_code, .. }) => {
            assert_eq!(*reader_code, ReaderCode::CARD_NOT_RESPONDING)
        }
        other => panic!("{other:?}"),
    }
    events.until(READER_1, "card.removed");
}
