//! The reader monitor: one thread that owns the readers. It waits for reader changes in
//! short slices ([`ReaderBackend::wait_for_change`], at most [`MonitorConfig::poll`] each),
//! answers [`Request`]s between them, and publishes a new [`Snapshot`] and [`CardEvent`]s on
//! every change, in order per reader.
//!
//! - **Readers** are listed anew every turn (with vpcd the PnP pseudo-reader never fires):
//!   `reader.added` / `reader.removed`.
//! - **A card inserted** is read once (profiles, PSAM as configured) into a [`CardSession`]
//!   held until it is removed: `card.inserted`, then `card.ready` (state `present` →
//!   `reading` → `ready`) or `card.error` (state `error`, no session). A present card is
//!   never read again unless asked ([`Request::Refresh`]: a new session).
//! - **A card removed**: `card.removed`, the session dropped, state `empty`. A card swapped
//!   for another (a new ATR, or a new PC/SC event count even with the same ATR) is a removal
//!   and an insertion; a refresh that finds another 卡识别码 is reported the same way.
//! - **The PSAM** ([`PsamChoice`]): with `Auto`, each card inserted is first asked for a PSAM
//!   terminal number; a reader holding a PSAM (or the reader named by `Named`) is listed in
//!   the snapshot with state `present` (`empty` without one) but never gets a session, nor
//!   card events beyond `reader.added` / `reader.removed`. Card reads use the first PSAM
//!   present; without one a 3.0 card reads with `needs_psam` filled in.
//! - **Backend failures** (pcscd stopped or restarted): the backend establishes a new
//!   context by itself; the monitor keeps looping, logs a warning at most every
//!   [`WARN_EVERY`], and after [`FAILURES_BEFORE_GONE`] failures in a row reports every
//!   reader gone. When the service is back, readers and cards come back with their events.
//!
//! - **A PIN verified** ([`Request::VerifyPin`]): in the same card connection the medical
//!   application (DF04) is read with it; the balance and the transaction records join the
//!   session (same id), which is judged again and published with `card.ready`.
//!
//! PINs are never logged nor kept; card numbers and ID numbers only masked.

use super::MonitorHandle;
use super::handle::{MonitorSide, PinInput, Request, Snapshot, channel};
use super::types::{CardEvent, CardSession, ReaderInfo, ReaderState, SessionError};
use super::worker::{StopFlag, Worker};
use crate::apdu::Exchanger;
use crate::apdu::ReaderError;
use crate::card::{
    CardRead, MedicalRead, PinState, PsamSlot, ReadError, ReadExtras, read_in_reader_with,
    read_medical_balance, verify_pin_entry,
};
use crate::codes::ReaderCode;
use crate::mask;
use crate::metrics::Metrics;
use crate::profile::ProfileSet;
use crate::psam::find_psam;
use crate::reader::{ReaderBackend, ReaderStatus, with_card};
use crate::verdict::Assessment;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{broadcast, watch};

/// What DF04 gave after a verified PIN (see [`read_medical_balance`]).
type MedicalBalance = Result<Option<MedicalRead>, ReadError>;

/// Backend failures in a row after which every reader is reported gone.
pub const FAILURES_BEFORE_GONE: u32 = 3;
/// The least time between two warnings about a failing backend.
pub const WARN_EVERY: Duration = Duration::from_secs(30);

/// Session ids, unique for the process's lifetime.
static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// Where the PSAM for 3.0 cards is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PsamChoice {
    /// Any reader whose card answers as a PSAM.
    #[default]
    Auto,
    /// No PSAM: every reader is a card reader.
    None,
    /// This reader holds the PSAM (and never a card session).
    Named(String),
}

impl From<&str> for PsamChoice {
    /// `auto`, `none`, or a reader's name (as `medcard read --psam` takes it).
    fn from(text: &str) -> PsamChoice {
        match text {
            "auto" => PsamChoice::Auto,
            "none" => PsamChoice::None,
            name => PsamChoice::Named(name.to_owned()),
        }
    }
}

/// Judges a freshly read card (the cache, the insurer) before its session is published.
/// Called on the monitor thread: implementations bound their own waits.
pub trait Assessor: Send + Sync + std::fmt::Debug {
    /// The verdict and insurance for `card`; `None` when there is nothing to judge by.
    fn assess(&self, card: &CardRead) -> Option<Assessment>;
}

/// How the monitor reads cards.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    pub profiles: ProfileSet,
    pub psam: PsamChoice,
    /// The longest status wait: requests wait at most this long (plus a read in progress).
    pub poll: Duration,
    /// Attaches a verdict to every session before `card.ready` (none: `verdict` is null).
    pub assessor: Option<Arc<dyn Assessor>>,
    /// Where card reads and the verdicts published are counted (the daemon's; off by
    /// default).
    pub metrics: Metrics,
}

impl MonitorConfig {
    pub const DEFAULT_POLL: Duration = Duration::from_millis(250);

    /// `profiles`, the PSAM found automatically, 250 ms status waits.
    pub fn new(profiles: ProfileSet) -> MonitorConfig {
        MonitorConfig {
            profiles,
            psam: PsamChoice::Auto,
            poll: MonitorConfig::DEFAULT_POLL,
            assessor: None,
            metrics: Metrics::off(),
        }
    }
}

/// Starts the monitor on a thread of its own. `backends` makes two connections to the
/// readers: one for the cards, one for the PSAM (whose transaction stays open while a card
/// is read). The thread ends when its [`Worker`] is stopped or dropped, or when every
/// [`MonitorHandle`] is gone.
pub fn spawn_monitor(
    config: MonitorConfig,
    mut backends: impl FnMut() -> Box<dyn ReaderBackend + Send> + Send + 'static,
) -> (MonitorHandle, Worker) {
    let (handle, side) = channel();
    let thread = Worker::spawn("medcard-monitor", move |stop| {
        let cards = backends();
        let psam = backends();
        Monitor::new(config, side, cards, psam).run(stop);
    });
    (handle, thread)
}

/// One reader as the monitor knows it.
struct Tracked {
    /// What the backend showed last (ATR and event count compared for changes).
    status: ReaderStatus,
    info: ReaderInfo,
    /// Holds the PSAM: no session, no card events.
    psam: bool,
}

/// Consecutive backend failures and when one was last logged.
#[derive(Default)]
struct Health {
    failures: u32,
    last_warning: Option<Instant>,
}

struct Monitor {
    config: MonitorConfig,
    snapshot: watch::Sender<Arc<Snapshot>>,
    events: broadcast::Sender<CardEvent>,
    requests: Receiver<Request>,
    cards: Box<dyn ReaderBackend + Send>,
    psam: Box<dyn ReaderBackend + Send>,
    /// The last listing the backend gave, in its order.
    known: Vec<ReaderStatus>,
    readers: Vec<Tracked>,
    sessions: BTreeMap<String, CardSession>,
    health: Health,
}

impl Monitor {
    fn new(
        config: MonitorConfig,
        side: MonitorSide,
        cards: Box<dyn ReaderBackend + Send>,
        psam: Box<dyn ReaderBackend + Send>,
    ) -> Monitor {
        let MonitorSide {
            snapshot,
            events,
            requests,
        } = side;
        Monitor {
            config,
            snapshot,
            events,
            requests: requests
                .into_inner()
                .unwrap_or_else(PoisonError::into_inner),
            cards,
            psam,
            known: Vec::new(),
            readers: Vec::new(),
            sessions: BTreeMap::new(),
            health: Health::default(),
        }
    }

    fn run(mut self, stop: &StopFlag) {
        tracing::info!(poll = ?self.config.poll, psam = ?self.config.psam, "reader monitor started");
        while !stop.is_stopped() {
            if !self.serve_requests() {
                tracing::info!("every monitor handle is gone; stopping the reader monitor");
                break;
            }
            self.turn();
        }
        tracing::info!("reader monitor stopped");
    }

    /// Answers the requests waiting; `false` when no handle is left to send any.
    fn serve_requests(&mut self) -> bool {
        loop {
            match self.requests.try_recv() {
                Ok(request) => self.serve(request),
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn serve(&mut self, request: Request) {
        match request {
            Request::Refresh { reader, reply } => {
                let result = self.refresh(&reader);
                let _ = reply.send(result);
            }
            Request::Reassess => self.reassess(),
            Request::VerifyPin { reader, pin, reply } => {
                let result = self.verify(&reader, &pin);
                let _ = reply.send(result);
            }
        }
    }

    /// One status wait, and whatever changed.
    fn turn(&mut self) {
        match self.cards.wait_for_change(&self.known, self.config.poll) {
            Ok(current) => {
                self.recovered();
                self.apply(current);
            }
            Err(e) => self.backend_failed(&e),
        }
    }

    // ---- reader list ------------------------------------------------------------------

    fn apply(&mut self, current: Vec<ReaderStatus>) {
        let gone: Vec<String> = self
            .readers
            .iter()
            .map(|t| t.info.name.clone())
            .filter(|name| !current.iter().any(|s| &s.name == name))
            .collect();
        for name in gone {
            self.drop_reader(&name);
        }
        for status in &current {
            if self.tracked(&status.name).is_some() {
                self.update_reader(status);
            } else {
                self.add_reader(status);
            }
        }
        self.known = current;
    }

    fn add_reader(&mut self, status: &ReaderStatus) {
        tracing::info!(reader = %status.name, "reader added");
        self.readers.push(Tracked {
            status: ReaderStatus {
                name: status.name.clone(),
                atr: None,
                event_count: status.event_count,
            },
            info: empty_info(&status.name),
            psam: false,
        });
        self.publish();
        self.emit(CardEvent::ReaderAdded {
            reader: status.name.clone(),
        });
        if status.atr.is_some() {
            self.card_inserted(status);
        }
    }

    fn drop_reader(&mut self, name: &str) {
        if self.tracked(name).is_some_and(|t| t.status.atr.is_some()) {
            self.card_removed(name);
        }
        self.readers.retain(|t| t.info.name != name);
        tracing::info!(reader = name, "reader removed");
        self.publish();
        self.emit(CardEvent::ReaderRemoved {
            reader: name.to_owned(),
        });
    }

    /// A known reader's new status: a card in, out, or swapped.
    fn update_reader(&mut self, status: &ReaderStatus) {
        let Some(old) = self.tracked(&status.name).map(|t| t.status.clone()) else {
            return;
        };
        let swapped = old.atr != status.atr || old.event_count != status.event_count;
        match (&old.atr, &status.atr) {
            (None, None) => {}
            (None, Some(_)) => self.card_inserted(status),
            (Some(_), None) => self.card_removed(&status.name),
            (Some(_), Some(_)) if swapped => {
                self.card_removed(&status.name);
                self.card_inserted(status);
            }
            (Some(_), Some(_)) => {}
        }
        if let Some(tracked) = self.tracked_mut(&status.name) {
            tracked.status = status.clone();
        }
    }

    // ---- cards --------------------------------------------------------------------------

    fn card_inserted(&mut self, status: &ReaderStatus) {
        let name = status.name.clone();
        let atr = hex::encode_upper(status.atr.as_deref().unwrap_or_default());
        let is_psam = self.is_psam_reader(&name);
        let Some(tracked) = self.tracked_mut(&name) else {
            return;
        };
        tracked.status = status.clone();
        tracked.psam = is_psam;
        tracked.info = ReaderInfo {
            state: ReaderState::Present,
            atr: Some(atr.clone()),
            ..empty_info(&name)
        };
        self.publish();
        if is_psam {
            tracing::info!(reader = %name, "PSAM present");
            return;
        }
        tracing::info!(reader = %name, atr = %atr, "card inserted");
        self.emit(CardEvent::CardInserted {
            reader: name.clone(),
            atr,
        });
        // Failures are in the snapshot and a card.error event already.
        let _ = self.read_card(&name);
    }

    fn card_removed(&mut self, name: &str) {
        self.sessions.remove(name);
        let Some(tracked) = self.tracked_mut(name) else {
            return;
        };
        let was_psam = std::mem::take(&mut tracked.psam);
        tracked.status.atr = None;
        tracked.info = empty_info(name);
        self.publish();
        if was_psam {
            tracing::info!(reader = name, "PSAM removed");
            return;
        }
        tracing::info!(reader = name, "card removed");
        self.emit(CardEvent::CardRemoved {
            reader: name.to_owned(),
        });
    }

    /// Whether the card just inserted in `reader` is the PSAM (by configuration, or because
    /// it answers as one).
    fn is_psam_reader(&mut self, reader: &str) -> bool {
        match &self.config.psam {
            PsamChoice::None => false,
            PsamChoice::Named(name) => name == reader,
            PsamChoice::Auto => find_psam(self.cards.as_mut(), &[reader.to_owned()]).is_some(),
        }
    }

    /// The reader holding the PSAM a read of the card in `card_reader` may use.
    fn psam_for(&self, card_reader: &str) -> Option<String> {
        self.readers
            .iter()
            .find(|t| t.psam && t.status.atr.is_some() && t.info.name != card_reader)
            .map(|t| t.info.name.clone())
    }

    /// Reads the card in `reader` into a new session (state `reading`, then `ready` or
    /// `error`, with `card.ready` or `card.error`).
    fn read_card(&mut self, reader: &str) -> Result<CardSession, SessionError> {
        self.set_state(reader, ReaderState::Reading);
        let psam = self.psam_for(reader);
        let extras = ReadExtras {
            psam: psam.as_deref().map(|psam_reader| PsamSlot {
                backend: self.psam.as_mut(),
                reader: psam_reader,
            }),
            ..ReadExtras::default()
        };
        let started = Instant::now();
        let read = read_in_reader_with(self.cards.as_mut(), reader, &self.config.profiles, extras);
        let (profile, outcome) = match &read {
            Ok(card) => (card.profile.as_str(), "ok"),
            Err(e) => ("unknown", e.kind()),
        };
        self.config
            .metrics
            .card_read(profile, outcome, started.elapsed());
        match read {
            Ok(card) => Ok(self.card_ready(reader, card)),
            Err(e) => Err(self.card_failed(reader, &e)),
        }
    }

    /// Judges the session's card with the configured assessor (when there is one): its
    /// verdict and the insured person behind it.
    fn assess(&self, session: &mut CardSession) {
        let assessor = self.config.assessor.as_ref();
        if let Some(assessment) = assessor.and_then(|assessor| assessor.assess(&session.card)) {
            self.count_verdict(&assessment.verdict);
            session.verdict = Some(assessment.verdict);
            session.insured = assessment.insured;
        }
    }

    /// A verdict about to be published with `card.ready`, counted by code and source.
    fn count_verdict(&self, verdict: &crate::verdict::Verdict) {
        let (code, source) = (verdict.code.as_str(), verdict.source.as_str());
        self.config.metrics.verdict("card", code, source);
    }

    fn card_ready(&mut self, reader: &str, card: CardRead) -> CardSession {
        let previous = self
            .sessions
            .get(reader)
            .and_then(|s| s.card.card_id.clone());
        if previous.is_some() && previous != card.card_id {
            // Swapped without the reader showing it (same ATR, no event count).
            tracing::info!(reader, "a different card (卡识别码) is in the reader");
            self.emit(CardEvent::CardRemoved {
                reader: reader.to_owned(),
            });
            self.emit(CardEvent::CardInserted {
                reader: reader.to_owned(),
                atr: card.atr.clone(),
            });
        }
        let mut session = new_session(reader, card);
        self.assess(&mut session);
        log_ready(&session);
        self.sessions.insert(reader.to_owned(), session.clone());
        self.set_state(reader, ReaderState::Ready);
        self.emit(CardEvent::CardReady {
            reader: reader.to_owned(),
            card: Box::new(session.clone()),
        });
        session
    }

    fn card_failed(&mut self, reader: &str, e: &ReadError) -> SessionError {
        let reader_code = e.reader_code();
        let message = e.to_string();
        tracing::warn!(reader, code = reader_code.0, error = %message, "the card could not be read");
        self.sessions.remove(reader);
        if let Some(tracked) = self.tracked_mut(reader) {
            tracked.info.state = ReaderState::Error;
            tracked.info.error = Some(message.clone());
            tracked.info.reader_code = Some(reader_code);
        }
        self.publish();
        self.emit(CardEvent::CardError {
            reader: reader.to_owned(),
            reader_code,
            message: message.clone(),
        });
        SessionError::Unreadable {
            reader: reader.to_owned(),
            reader_code,
            message,
        }
    }

    // ---- requests -------------------------------------------------------------------------

    /// The reader of a request, when it holds a card (not the PSAM).
    fn card_reader(&self, reader: &str) -> Result<(), SessionError> {
        match self.tracked(reader) {
            None => Err(SessionError::UnknownReader(reader.to_owned())),
            Some(t) if t.psam => Err(SessionError::Unreadable {
                reader: reader.to_owned(),
                reader_code: ReaderCode::NOT_SOCIAL_SECURITY_CARD,
                message: "the reader holds the PSAM, not a card".to_owned(),
            }),
            Some(t) if t.status.atr.is_none() => Err(SessionError::NoCard(reader.to_owned())),
            Some(_) => Ok(()),
        }
    }

    fn refresh(&mut self, reader: &str) -> Result<CardSession, SessionError> {
        self.card_reader(reader)?;
        tracing::info!(reader, "reading the card again, as asked");
        self.read_card(reader)
    }

    /// Judges every session again; one whose verdict changed (a card reported lost while
    /// it is in the reader) is published again, same session, with `card.ready`.
    fn reassess(&mut self) {
        let Some(assessor) = self.config.assessor.clone() else {
            return;
        };
        let readers: Vec<String> = self.sessions.keys().cloned().collect();
        for reader in readers {
            let Some(session) = self.sessions.get(&reader) else {
                continue;
            };
            let Some(assessment) = assessor.assess(&session.card) else {
                continue;
            };
            if session.verdict.as_ref().map(verdict_key) == Some(verdict_key(&assessment.verdict)) {
                continue;
            }
            let mut session = session.clone();
            self.count_verdict(&assessment.verdict);
            session.verdict = Some(assessment.verdict);
            session.insured = assessment.insured;
            log_ready(&session);
            self.sessions.insert(reader.clone(), session.clone());
            self.publish();
            self.emit(CardEvent::CardReady {
                reader,
                card: Box::new(session),
            });
        }
    }

    /// VERIFY on the card as it is (no application selected: the PIN is global); when it
    /// holds, in the same connection, the medical application (DF04) with that PIN: the
    /// balance and the transaction records are attached to the session, which is judged
    /// again (`balance_mismatch`) and published again with `card.ready`. The PIN is dropped with the request.
    fn verify(&mut self, reader: &str, pin: &PinInput) -> Result<PinState, SessionError> {
        self.card_reader(reader)?;
        let profile = self.sessions.get(reader).and_then(|session| {
            self.config
                .profiles
                .profiles()
                .iter()
                .find(|p| p.name == session.card.profile)
        });
        let outcome = with_card(self.cards.as_mut(), reader, |channel| {
            let mut ex = Exchanger::new(channel);
            verify_pin_entry(&mut ex, pin.entry())?;
            Ok::<_, ReadError>(
                profile.map(|profile| read_medical_balance(&mut ex, profile, pin.entry())),
            )
        });
        let result = match outcome {
            Ok(Ok(medical)) => {
                if let Some(medical) = medical {
                    self.attach_balance(reader, medical);
                }
                Ok(PinState::Ok)
            }
            Ok(Err(ReadError::PinWrong { tries_left })) => Ok(PinState::Required { tries_left }),
            Ok(Err(ReadError::PinLocked)) => Ok(PinState::Locked),
            Ok(Err(e)) => Err(unreadable(reader, &e)),
            Err(e) => Err(unreadable(reader, &ReadError::from(e))),
        };
        match &result {
            Ok(state) => tracing::info!(reader, outcome = ?state, "PIN verification"),
            Err(e) => tracing::warn!(reader, error = %e, "PIN verification failed"),
        }
        result
    }

    /// The medical application read after a verified PIN, into the reader's session: the
    /// session (same id) judged again and published with `card.ready`.
    fn attach_balance(&mut self, reader: &str, medical: MedicalBalance) {
        let medical = match medical {
            Ok(Some(read)) => read,
            Ok(None) => {
                tracing::debug!(reader, "the card's profile has no medical application");
                return;
            }
            Err(e) => {
                tracing::warn!(reader, error = %e, "PIN verified, but the medical application could not be read");
                return;
            }
        };
        let Some(session) = self.sessions.get(reader) else {
            return;
        };
        let mut session = session.clone();
        let source = medical.source;
        session.card.balance_source = Some(source);
        session.card.balance = medical.balance;
        session.card.transactions = medical.transactions;
        self.assess(&mut session);
        let records = session.card.transactions.as_ref().map(Vec::len);
        tracing::info!(reader, session_id = session.session_id, balance_source = ?source, records, "medical application read with the PIN");
        log_ready(&session);
        self.sessions.insert(reader.to_owned(), session.clone());
        self.publish();
        self.emit(CardEvent::CardReady {
            reader: reader.to_owned(),
            card: Box::new(session),
        });
    }

    // ---- backend health -------------------------------------------------------------------

    fn backend_failed(&mut self, e: &ReaderError) {
        self.health.failures = self.health.failures.saturating_add(1);
        let due = self
            .health
            .last_warning
            .is_none_or(|at| at.elapsed() >= WARN_EVERY);
        if due {
            tracing::warn!(error = %e, failures = self.health.failures, "the readers cannot be listed; retrying");
            self.health.last_warning = Some(Instant::now());
        }
        if self.health.failures >= FAILURES_BEFORE_GONE && !self.readers.is_empty() {
            let names: Vec<String> = self.readers.iter().map(|t| t.info.name.clone()).collect();
            for name in names {
                self.drop_reader(&name);
            }
            self.known.clear();
        }
        std::thread::sleep(self.config.poll);
    }

    fn recovered(&mut self) {
        if self.health.failures > 0 {
            tracing::info!(failures = self.health.failures, "the readers answer again");
            self.health = Health::default();
        }
    }

    // ---- state ----------------------------------------------------------------------------

    fn tracked(&self, name: &str) -> Option<&Tracked> {
        self.readers.iter().find(|t| t.info.name == name)
    }

    fn tracked_mut(&mut self, name: &str) -> Option<&mut Tracked> {
        self.readers.iter_mut().find(|t| t.info.name == name)
    }

    fn set_state(&mut self, reader: &str, state: ReaderState) {
        if let Some(tracked) = self.tracked_mut(reader) {
            tracked.info.state = state;
            tracked.info.error = None;
            tracked.info.reader_code = None;
        }
        self.publish();
    }

    /// Replaces the snapshot when something in it changed.
    fn publish(&self) {
        let snapshot = Snapshot {
            readers: self.readers.iter().map(|t| t.info.clone()).collect(),
            sessions: self.sessions.clone(),
            ..Snapshot::default()
        };
        self.snapshot.send_if_modified(|current| {
            if **current == snapshot {
                return false;
            }
            *current = Arc::new(snapshot);
            true
        });
    }

    /// Sends an event; nobody listening is fine.
    fn emit(&self, event: CardEvent) {
        let _ = self.events.send(event);
    }
}

fn empty_info(name: &str) -> ReaderInfo {
    ReaderInfo {
        name: name.to_owned(),
        state: ReaderState::Empty,
        atr: None,
        error: None,
        reader_code: None,
    }
}

fn new_session(reader: &str, card: CardRead) -> CardSession {
    CardSession {
        session_id: NEXT_SESSION.fetch_add(1, Ordering::Relaxed),
        reader: reader.to_owned(),
        read_at: crate::clock::rfc3339(SystemTime::now()),
        card,
        verdict: None,
        insured: None,
    }
}

fn log_ready(session: &CardSession) {
    let card = &session.card;
    tracing::info!(
        reader = %session.reader,
        session_id = session.session_id,
        profile = %card.profile,
        card_no = %card.card_no.as_deref().map(mask::certno).unwrap_or_default(),
        certno = %card.holder.certno.as_deref().map(mask::certno).unwrap_or_default(),
        elapsed_ms = card.elapsed_ms,
        verdict = ?session.verdict.as_ref().map(|v| v.code),
        source = ?session.verdict.as_ref().map(|v| v.source),
        "card ready"
    );
}

/// What makes two verdicts different for the counter: the codes that hold and the source.
fn verdict_key(
    verdict: &crate::verdict::Verdict,
) -> (Vec<crate::verdict::VerdictCode>, crate::verdict::FactSource) {
    (
        verdict.reasons.iter().map(|r| r.code).collect(),
        verdict.source,
    )
}

fn unreadable(reader: &str, e: &ReadError) -> SessionError {
    SessionError::Unreadable {
        reader: reader.to_owned(),
        reader_code: e.reader_code(),
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psam_choices_parse_as_the_cli_takes_them() {
        assert_eq!(PsamChoice::from("auto"), PsamChoice::Auto);
        assert_eq!(PsamChoice::from("none"), PsamChoice::None);
        assert_eq!(
            PsamChoice::from("Virtual PCD 00 01"),
            PsamChoice::Named("Virtual PCD 00 01".into())
        );
    }

    #[test]
    fn session_ids_increase() {
        let a = new_session("r", CardRead::default());
        let b = new_session("r", CardRead::default());
        assert!(b.session_id > a.session_id);
        assert!(a.read_at.ends_with('Z'));
    }
}
