//! The meeting point of the reader monitor (a thread that owns the readers) and the socket
//! side (async tasks): a [`MonitorHandle`] for the socket side to read state, wait, ask and
//! subscribe; a [`MonitorSide`] for the monitor to publish state and events and take requests.

use super::types::{CardEvent, CardSession, ReaderInfo, SessionError};
use crate::card::{Pin, PinState};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::{broadcast, oneshot, watch};

/// How many events a subscriber may fall behind before it is dropped.
pub const EVENT_BACKLOG: usize = 256;

/// What the monitor knows, replaced as a whole on every change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub readers: Vec<ReaderInfo>,
    /// The session of each reader holding a card that was read.
    pub sessions: BTreeMap<String, CardSession>,
    /// The sessions as JSON, made on first use (a snapshot is not changed once published).
    pub rendered: Rendered,
}

impl Snapshot {
    /// The session of `reader` as its JSON text, serialised once per snapshot: `card.read`
    /// answers every request of a session with the same bytes.
    pub fn rendered_session(&self, reader: &str) -> Option<Arc<str>> {
        self.rendered
            .0
            .get_or_init(|| {
                self.sessions
                    .iter()
                    .filter_map(|(name, session)| {
                        let json = serde_json::to_string(session).ok()?;
                        Some((name.clone(), Arc::from(json)))
                    })
                    .collect()
            })
            .get(reader)
            .cloned()
    }
}

/// A cache of [`Snapshot::sessions`] as JSON. Never compared (always equal) nor cloned (a
/// clone starts empty, as the clone's sessions may be changed).
#[derive(Default)]
pub struct Rendered(OnceLock<BTreeMap<String, Arc<str>>>);

impl Clone for Rendered {
    fn clone(&self) -> Rendered {
        Rendered::default()
    }
}

impl PartialEq for Rendered {
    fn eq(&self, _: &Rendered) -> bool {
        true
    }
}

impl std::fmt::Debug for Rendered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rendered")
    }
}

/// Requests that need the card itself, answered by the monitor thread.
pub enum Request {
    /// Read the card in `reader` again (a new session).
    Refresh {
        reader: String,
        reply: oneshot::Sender<Result<CardSession, SessionError>>,
    },
    /// Judge the cards in the readers again (the card-status feed brought news); a session
    /// whose verdict changes is published again with `card.ready`.
    Reassess,
    /// VERIFY the PIN on the card in `reader`.
    VerifyPin {
        reader: String,
        pin: PinInput,
        reply: oneshot::Sender<Result<PinState, SessionError>>,
    },
}

/// How the PIN reaches the card: typed on the workstation (the caller's, dropped with the
/// request) or on the reader's own PIN pad (it never reaches the workstation).
#[derive(Debug)]
pub enum PinInput {
    Typed(Pin),
    PinPad,
}

impl PinInput {
    /// The card layer's view of it.
    pub fn entry(&self) -> crate::card::PinEntry<'_> {
        match self {
            PinInput::Typed(pin) => crate::card::PinEntry::Typed(pin),
            PinInput::PinPad => crate::card::PinEntry::PinPad,
        }
    }
}

/// The socket side's view of the monitor. Cheap to clone.
#[derive(Clone)]
pub struct MonitorHandle {
    snapshot: watch::Receiver<Arc<Snapshot>>,
    events: broadcast::Sender<CardEvent>,
    requests: std::sync::mpsc::Sender<Request>,
}

/// The monitor thread's end.
pub struct MonitorSide {
    pub snapshot: watch::Sender<Arc<Snapshot>>,
    pub events: broadcast::Sender<CardEvent>,
    pub requests: Mutex<std::sync::mpsc::Receiver<Request>>,
}

/// A connected pair.
pub fn channel() -> (MonitorHandle, MonitorSide) {
    let (snapshot_tx, snapshot_rx) = watch::channel(Arc::new(Snapshot::default()));
    let (events, _) = broadcast::channel(EVENT_BACKLOG);
    let (requests_tx, requests_rx) = std::sync::mpsc::channel();
    (
        MonitorHandle {
            snapshot: snapshot_rx,
            events: events.clone(),
            requests: requests_tx,
        },
        MonitorSide {
            snapshot: snapshot_tx,
            events,
            requests: Mutex::new(requests_rx),
        },
    )
}

impl MonitorHandle {
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }

    pub fn readers(&self) -> Vec<ReaderInfo> {
        self.snapshot().readers.clone()
    }

    /// The session of the named reader, or of the only reader holding a read card.
    pub fn session(&self, reader: Option<&str>) -> Result<CardSession, SessionError> {
        pick_session(&self.snapshot(), reader)
    }

    /// Like [`session`](Self::session), waiting up to `timeout` for a card to be read.
    pub async fn wait_session(
        &self,
        reader: Option<&str>,
        timeout: Duration,
    ) -> Result<CardSession, SessionError> {
        let mut changes = self.snapshot.clone();
        let wait = async {
            loop {
                match pick_session(&changes.borrow_and_update(), reader) {
                    Err(SessionError::NoCard(_)) => {}
                    Err(SessionError::Unreadable { .. }) => {}
                    other => return other,
                }
                if changes.changed().await.is_err() {
                    return Err(SessionError::MonitorStopped);
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(result) => result,
            Err(_) => pick_session(&self.snapshot(), reader).map_err(|e| match e {
                SessionError::NoCard(_) => SessionError::Timeout,
                other => other,
            }),
        }
    }

    /// Re-reads the card in `reader`.
    pub async fn refresh(&self, reader: &str) -> Result<CardSession, SessionError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Refresh {
            reader: reader.to_owned(),
            reply,
        })?;
        answer.await.map_err(|_| SessionError::MonitorStopped)?
    }

    /// VERIFY `pin` on the card in `reader`.
    pub async fn verify_pin(&self, reader: &str, pin: PinInput) -> Result<PinState, SessionError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::VerifyPin {
            reader: reader.to_owned(),
            pin,
            reply,
        })?;
        answer.await.map_err(|_| SessionError::MonitorStopped)?
    }

    /// Asks the monitor to judge the cards in the readers again (see [`Request::Reassess`]).
    pub fn reassess(&self) -> Result<(), SessionError> {
        self.send(Request::Reassess)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<CardEvent> {
        self.events.subscribe()
    }

    /// Sends an event from outside the monitor (a scanned line); nobody listening is fine.
    pub fn publish(&self, event: CardEvent) {
        let _ = self.events.send(event);
    }

    fn send(&self, request: Request) -> Result<(), SessionError> {
        self.requests
            .send(request)
            .map_err(|_| SessionError::MonitorStopped)
    }
}

/// The named reader's session, or the only one.
pub fn pick_session(
    snapshot: &Snapshot,
    reader: Option<&str>,
) -> Result<CardSession, SessionError> {
    pick_session_ref(snapshot, reader).map(|(_, session)| session.clone())
}

/// Like [`pick_session`], borrowing the session (and its key in
/// [`Snapshot::sessions`]) from the snapshot.
pub fn pick_session_ref<'a>(
    snapshot: &'a Snapshot,
    reader: Option<&str>,
) -> Result<(&'a str, &'a CardSession), SessionError> {
    if let Some(name) = reader {
        if let Some((key, session)) = snapshot.sessions.get_key_value(name) {
            return Ok((key, session));
        }
        return match snapshot.readers.iter().find(|r| r.name == name) {
            None => Err(SessionError::UnknownReader(name.to_owned())),
            Some(info) => Err(unread(info)),
        };
    }
    let mut sessions = snapshot.sessions.iter();
    match (sessions.next(), sessions.next()) {
        (Some((key, one)), None) => Ok((key, one)),
        (Some(_), Some(_)) => Err(SessionError::AmbiguousReader(
            snapshot
                .sessions
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
        )),
        (None, _) => match snapshot.readers.iter().find(|r| r.error.is_some()) {
            Some(info) => Err(unread(info)),
            None => Err(SessionError::NoCard("any reader".to_owned())),
        },
    }
}

/// Why a reader without a session has none.
fn unread(info: &ReaderInfo) -> SessionError {
    match &info.error {
        Some(message) => SessionError::Unreadable {
            reader: info.name.clone(),
            reader_code: info
                .reader_code
                .unwrap_or(crate::codes::ReaderCode::CARD_NOT_RESPONDING),
            message: message.clone(),
        },
        None => SessionError::NoCard(info.name.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::CardRead;

    fn with_session(reader: &str, id: u64) -> Snapshot {
        let mut snapshot = Snapshot::default();
        let session = CardSession {
            session_id: id,
            reader: reader.to_owned(),
            read_at: "2026-11-23T13:00:00.000Z".to_owned(),
            card: CardRead::default(),
            verdict: None,
            insured: None,
        };
        snapshot.sessions.insert(reader.to_owned(), session);
        snapshot
    }

    #[test]
    fn a_rendered_session_is_the_session_as_json_and_a_clone_renders_afresh() {
        let snapshot = with_session("r", 1);
        let text = snapshot.rendered_session("r").unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value,
            serde_json::to_value(&snapshot.sessions["r"]).unwrap()
        );
        assert!(snapshot.rendered_session("other").is_none());
        // The cache is neither compared nor carried into a clone that may be changed.
        let mut changed = snapshot.clone();
        assert_eq!(changed, snapshot);
        changed.sessions = with_session("r", 2).sessions;
        let text = changed.rendered_session("r").unwrap();
        assert!(text.contains(r#""session_id":2"#), "{text}");
        let (key, session) = pick_session_ref(&changed, None).unwrap();
        assert_eq!((key, session.session_id), ("r", 2));
    }
}
