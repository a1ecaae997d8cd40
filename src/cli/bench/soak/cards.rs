//! The soak's card side: fixture cards swapped into one reader, pulled, put back, and read
//! over the socket (`card.read`; a card whose verdict lets it settle is registered by card and
//! the visit cancelled). Through the real pcscd + vpcd when they can be had (a card thread of
//! this process in vpcd slot 0; pcscd restarted under the daemon during the run), else
//! through in-process virtual readers.

use super::{Shared, error_kind};
use medcard::reader::ReaderBackend;
use medcard::reader::pcsc_reader::PcscReaders;
use medcard::serve::client::Client;
use medcard::sim::card::vpcd::{CardThread, Control};
use medcard::sim::card::{CardImage, Chip, SharedVirtualReaders};
use medcard::sim::pcscd::{Pcscd, StackLock, VPCD_PORT, VPCD_READER_0};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The in-process reader.
const VIRTUAL_READER: &str = "Virtual counter reader";
/// The cards swiped in turn: insured and not, odd names, old COSes, an expired card, a
/// garbage record, and one pulled mid-read.
const SWIPED: [&str; 10] = [
    "xiaowang",
    "resident",
    "long-name",
    "vanishing",
    "rare-char",
    "no-4e",
    "gen1",
    "expired",
    "quirky",
    "corrupt",
];
/// Every this many swipes the card is pulled and the slot read empty.
const PULL_EVERY: usize = 5;
/// Time for the reader monitor to notice a swap (pcscd polls every 400 ms; vpcd keeps a
/// swapped card out for 900 ms).
const PCSCD_NOTICE: Duration = Duration::from_millis(1500);
const VIRTUAL_NOTICE: Duration = Duration::from_millis(300);
/// How long the daemon may take to read the card again after a pcscd restart.
const RESTART_RECOVERY: Duration = Duration::from_secs(30);
/// pcscd restarts: one per this much of the run, at least one.
const RESTART_EVERY: Duration = Duration::from_secs(120);

/// Which readers to use.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Readers {
    /// pcscd + vpcd when they can be had, else virtual.
    Auto,
    /// pcscd + vpcd, or fail.
    Pcscd,
    /// In-process virtual readers (no pcscd restart).
    Virtual,
}

/// Where the cards go.
pub enum CardSide {
    /// A card thread in vpcd slot 0, pcscd, the lock (dropped in that order).
    Pcscd {
        card: CardThread,
        pcscd: Pcscd,
        _lock: StackLock,
        restarts: Vec<Restart>,
    },
    Virtual(SharedVirtualReaders),
    /// The swiper panicked with the side.
    Gone,
}

/// One pcscd restart: how long until the daemon read the card again (`None`: it did not).
pub struct Restart {
    recovered: Option<Duration>,
}

impl CardSide {
    /// The readers `readers` asks for, with 小王's card in the slot.
    pub fn open(readers: Readers) -> Result<CardSide, String> {
        let first = card(SWIPED[0])?;
        match readers {
            Readers::Virtual => Ok(CardSide::virtual_with(first)),
            Readers::Pcscd => CardSide::pcscd_with(first),
            Readers::Auto => CardSide::pcscd_with(first.clone()).or_else(|e| {
                println!("pcscd + vpcd cannot be used ({e}): in-process virtual readers instead, no pcscd restart");
                Ok(CardSide::virtual_with(first))
            }),
        }
    }

    fn pcscd_with(first: CardImage) -> Result<CardSide, String> {
        let (lock, pcscd) = super::super::super::real_stack()?;
        let card = CardThread::spawn(&VPCD_PORT.to_string(), first).map_err(|e| e.to_string())?;
        Ok(CardSide::Pcscd {
            card,
            pcscd,
            _lock: lock,
            restarts: Vec::new(),
        })
    }

    fn virtual_with(first: CardImage) -> CardSide {
        let readers = SharedVirtualReaders::new();
        readers.insert(VIRTUAL_READER, first);
        CardSide::Virtual(readers)
    }

    pub fn gone() -> CardSide {
        CardSide::Gone
    }

    /// For the first line.
    pub fn describe(&self) -> String {
        match self {
            CardSide::Pcscd { pcscd, .. } if pcscd.owned() => {
                format!(
                    "pcscd + vpcd (\"{VPCD_READER_0}\"), pcscd started here and restarted during the run"
                )
            }
            CardSide::Pcscd { .. } => format!(
                "pcscd + vpcd (\"{VPCD_READER_0}\"); pcscd was already running (not ours): no restart"
            ),
            CardSide::Virtual(_) => {
                format!("in-process virtual reader \"{VIRTUAL_READER}\" (no pcscd: no restart)")
            }
            CardSide::Gone => "none".into(),
        }
    }

    /// The reader the cards go into.
    pub fn reader(&self) -> &'static str {
        match self {
            CardSide::Pcscd { .. } => VPCD_READER_0,
            _ => VIRTUAL_READER,
        }
    }

    /// The daemon's reader backends.
    pub fn backends(&self) -> Box<dyn FnMut() -> Box<dyn ReaderBackend + Send> + Send> {
        match self {
            CardSide::Virtual(readers) => {
                let readers = readers.clone();
                Box::new(move || Box::new(readers.clone()) as Box<dyn ReaderBackend + Send>)
            }
            _ => Box::new(|| Box::new(PcscReaders::new()) as Box<dyn ReaderBackend + Send>),
        }
    }

    fn notice(&self) -> Duration {
        match self {
            CardSide::Pcscd { .. } => PCSCD_NOTICE,
            _ => VIRTUAL_NOTICE,
        }
    }

    fn put(&self, card: &CardImage) {
        let chip = Chip::from(card.clone());
        match self {
            CardSide::Pcscd { card, .. } => card.send(Control::Swap(chip)),
            CardSide::Virtual(readers) => {
                readers.insert(VIRTUAL_READER, chip);
            }
            CardSide::Gone => {}
        }
    }

    fn pull(&self) {
        match self {
            CardSide::Pcscd { card, .. } => card.send(Control::Pull),
            CardSide::Virtual(readers) => {
                readers.remove(VIRTUAL_READER);
            }
            CardSide::Gone => {}
        }
    }

    /// Puts `card` in, restarts pcscd when it is ours and waits until the daemon reads the
    /// card again (a new session).
    fn restart(&mut self, shared: &Shared, card: &CardImage) {
        let reader = self.reader();
        self.put(card);
        std::thread::sleep(self.notice());
        let CardSide::Pcscd {
            pcscd, restarts, ..
        } = self
        else {
            return;
        };
        if !pcscd.owned() {
            return;
        }
        let before = session(shared, reader);
        if let Err(e) = pcscd.restart() {
            shared.failed("pcscd restart", &e.to_string());
            restarts.push(Restart { recovered: None });
            return;
        }
        let restarted = Instant::now();
        let recovered = wait_for_new_session(shared, reader, before, restarted);
        match recovered {
            Some(took) => {
                shared.ok("pcscd restart");
                eprintln!(
                    "soak {:>4.0} s: pcscd restarted; the daemon read the card again after {:.1} s",
                    shared.elapsed().as_secs_f64(),
                    took.as_secs_f64()
                );
            }
            None => shared.failed("pcscd restart", "card not read again"),
        }
        restarts.push(Restart { recovered });
    }

    /// What went wrong with the card side: a pcscd restart the daemon did not recover from.
    pub fn problems(&self) -> Vec<String> {
        let CardSide::Pcscd {
            restarts, pcscd, ..
        } = self
        else {
            return Vec::new();
        };
        let mut problems = Vec::new();
        if pcscd.owned() && restarts.is_empty() {
            problems.push("pcscd was never restarted".into());
        }
        for (n, restart) in restarts.iter().enumerate() {
            match restart.recovered {
                Some(took) => println!(
                    "pcscd restart {}: the daemon read the card again after {:.1} s",
                    n + 1,
                    took.as_secs_f64()
                ),
                None => problems.push(format!(
                    "after pcscd restart {} the daemon did not read the card again within {} s",
                    n + 1,
                    RESTART_RECOVERY.as_secs()
                )),
            }
        }
        problems
    }
}

fn card(name: &str) -> Result<CardImage, String> {
    crate::cli::load_card(name).map_err(|e| format!("card {name}: {e}"))
}

/// The swiper: a swipe every moment until the run is over, pcscd restarted at even intervals;
/// gives the card side back.
pub fn swipe(mut side: CardSide, shared: &Shared) -> CardSide {
    let cards: Vec<CardImage> = match SWIPED.iter().map(|name| card(name)).collect() {
        Ok(cards) => cards,
        Err(e) => {
            shared.failed("swipe", &e);
            shared.stop();
            return side;
        }
    };
    let restarts = restart_times(shared);
    let mut client = None;
    let mut step = 0usize;
    while !shared.over() {
        if restarts
            .get(side_restarts(&side))
            .is_some_and(|at| shared.elapsed() >= *at)
        {
            side.restart(shared, &cards[0]);
        }
        step += 1;
        if step.is_multiple_of(PULL_EVERY) {
            side.pull();
        } else {
            side.put(&cards[step % cards.len()]);
        }
        shared.ok("swipe");
        std::thread::sleep(side.notice());
        if client.is_none() {
            client = shared.connect("card.read");
        }
        if let Some(connection) = client.as_mut()
            && !read_and_register(connection, shared, side.reader())
        {
            client = None;
        }
    }
    side
}

/// When pcscd is restarted: evenly through the run, one per two minutes, at least one.
fn restart_times(shared: &Shared) -> Vec<Duration> {
    let length = shared.length();
    let count = (length.as_secs_f64() / RESTART_EVERY.as_secs_f64())
        .ceil()
        .max(1.0) as u32;
    (1..=count).map(|k| length * k / (count + 1)).collect()
}

fn side_restarts(side: &CardSide) -> usize {
    match side {
        CardSide::Pcscd { restarts, .. } => restarts.len(),
        _ => usize::MAX,
    }
}

/// `card.read`; a card that may settle is registered by card and the visit cancelled. False
/// when the connection is no good any more.
fn read_and_register(client: &mut Client, shared: &Shared, reader: &str) -> bool {
    let card = match client.call("card.read", json!({"reader": reader})) {
        Ok(card) => card,
        Err(e) => {
            shared.failed("card.read", &error_kind(&e));
            return e.rpc_error().is_some();
        }
    };
    shared.ok("card.read");
    if card["verdict"]["may_settle"] != "yes" {
        return true;
    }
    let visit = client.call(
        "visit.register",
        json!({"reader": reader, "card_session": card["session_id"], "dept_code": "A03",
               "dept_name": "内科", "dr_name": "张医生"}),
    );
    let visit = match visit {
        Ok(visit) => visit,
        Err(e) => {
            shared.failed("visit.register (card)", &error_kind(&e));
            return e.rpc_error().is_some();
        }
    };
    shared.ok("visit.register (card)");
    match client.call("visit.cancel", json!({"mdtrt_id": visit["mdtrt_id"]})) {
        Ok(_) => shared.ok("visit.cancel"),
        Err(e) => {
            shared.failed("visit.cancel", &error_kind(&e));
            return e.rpc_error().is_some();
        }
    }
    true
}

/// The session in `reader` now, if any.
fn session(shared: &Shared, reader: &str) -> Option<Value> {
    let mut client = shared.connect("card.read")?;
    client
        .call("card.read", json!({"reader": reader}))
        .ok()
        .map(|card| card["session_id"].clone())
}

/// Waits until `reader` holds a session other than `before`: the time since `restarted`.
fn wait_for_new_session(
    shared: &Shared,
    reader: &str,
    before: Option<Value>,
    restarted: Instant,
) -> Option<Duration> {
    while restarted.elapsed() < RESTART_RECOVERY {
        let now = session(shared, reader);
        if now.is_some() && now != before {
            return Some(restarted.elapsed());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}
