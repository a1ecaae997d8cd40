//! In-process readers holding [`VirtualCard`]s and [`VirtualPsam`]s (any [`Chip`]): the
//! [`ReaderBackend`] for fast tests and `medcard read --card-file`, with no pcscd involved.
//! A PSAM in a reader is a card to the backend, as it is to PC/SC: it has an ATR and answers
//! APDUs; telling it apart (READ BINARY of file 0016) is the caller's business.
//!
//! A card that vanishes mid-command behaves as through vpcd: that transmit returns an empty
//! response, the slot is empty from then on and later transmits fail with
//! [`ReaderError::CardRemoved`].
//!
//! Each reader counts its insertions and removals (a vanished card counts as removed), as
//! PC/SC's event counter does. [`SharedVirtualReaders`] is the same thing behind locks, for a
//! reader monitor on another thread and a test that plugs cards in and out meanwhile.

use super::{Chip, VirtualCard, VirtualPsam};
use crate::apdu::{CardChannel, ReaderError};
use crate::reader::pinpad;
use crate::reader::{ReaderBackend, ReaderStatus, choose_reader, wait_for_card_with};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// How often `wait_for_card` looks again.
const POLL: Duration = Duration::from_millis(10);

/// Named reader slots, each maybe holding a card or a PSAM.
#[derive(Debug, Default)]
pub struct VirtualReaders {
    slots: Vec<Slot>,
}

#[derive(Debug)]
struct Slot {
    name: String,
    state: SlotState,
}

/// What one reader holds, and how many insertions and removals it has seen.
#[derive(Debug, Default)]
struct SlotState {
    card: Option<Chip>,
    events: u32,
    /// A simulated PIN pad: the digits the patient will type on it.
    pin_pad: Option<String>,
}

impl SlotState {
    fn insert(&mut self, mut card: Chip) -> Option<Chip> {
        card.insert();
        let old = self.card.replace(card);
        let events = if old.is_some() { 2 } else { 1 };
        self.events = self.events.wrapping_add(events);
        old
    }

    fn remove(&mut self) -> Option<Chip> {
        let old = self.card.take();
        if old.is_some() {
            self.events = self.events.wrapping_add(1);
        }
        old
    }

    fn status(&self, name: &str) -> ReaderStatus {
        ReaderStatus {
            name: name.to_owned(),
            atr: self.card.as_ref().map(|card| card.atr().to_vec()),
            event_count: Some(self.events),
        }
    }

    /// Powers the card on and runs `work` on a channel to it.
    fn run(
        &mut self,
        reader: &str,
        work: &mut dyn FnMut(&mut dyn CardChannel),
    ) -> Result<(), ReaderError> {
        let card = self
            .card
            .as_mut()
            .ok_or_else(|| ReaderError::NoCard(reader.to_owned()))?;
        card.power_on();
        let atr = card.atr().to_vec();
        let mut channel = VirtualChannel {
            slot: &mut self.card,
            atr,
            pin_pad: self.pin_pad.as_deref(),
        };
        work(&mut channel);
        if self.card.is_none() {
            // Vanished during the work: a removal.
            self.events = self.events.wrapping_add(1);
        }
        Ok(())
    }
}

impl VirtualReaders {
    /// No readers at all.
    pub fn new() -> VirtualReaders {
        VirtualReaders::default()
    }

    /// One reader named `name` holding `card` (a [`VirtualCard`], a [`VirtualPsam`], a
    /// [`Chip`] or an image of either).
    pub fn with_card(name: &str, card: impl Into<Chip>) -> VirtualReaders {
        let mut readers = VirtualReaders::new();
        readers.insert(name, card);
        readers
    }

    /// Adds an empty reader (nothing happens if it exists).
    pub fn add_reader(&mut self, name: &str) {
        if self.slot(name).is_none() {
            self.slots.push(Slot {
                name: name.to_owned(),
                state: SlotState::default(),
            });
        }
    }

    /// Puts `card` (a card or a PSAM, as for [`with_card`](Self::with_card)) into reader
    /// `name` (added if missing); returns the chip it held before.
    pub fn insert(&mut self, name: &str, card: impl Into<Chip>) -> Option<Chip> {
        self.add_reader(name);
        self.slot_mut(name)
            .and_then(|slot| slot.state.insert(card.into()))
    }

    /// Gives reader `name` (added if missing) a simulated PIN pad on which the patient will
    /// type `typed`; `None` takes the pad away.
    pub fn set_pin_pad(&mut self, name: &str, typed: Option<&str>) {
        self.add_reader(name);
        if let Some(slot) = self.slot_mut(name) {
            slot.state.pin_pad = typed.map(str::to_owned);
        }
    }

    /// Takes the card (or PSAM) out of reader `name`.
    pub fn remove(&mut self, name: &str) -> Option<Chip> {
        self.slot_mut(name).and_then(|slot| slot.state.remove())
    }

    /// The card in reader `name`, to look at (e.g. how many APDUs it has seen); `None` when
    /// the reader is empty or holds a PSAM.
    pub fn card(&self, name: &str) -> Option<&VirtualCard> {
        self.chip(name).and_then(Chip::as_card)
    }

    /// The PSAM in reader `name`; `None` when the reader is empty or holds a card.
    pub fn psam(&self, name: &str) -> Option<&VirtualPsam> {
        self.chip(name).and_then(Chip::as_psam)
    }

    /// Whatever reader `name` holds.
    pub fn chip(&self, name: &str) -> Option<&Chip> {
        self.slot(name).and_then(|slot| slot.state.card.as_ref())
    }

    fn slot(&self, name: &str) -> Option<&Slot> {
        self.slots.iter().find(|slot| slot.name == name)
    }

    fn slot_mut(&mut self, name: &str) -> Option<&mut Slot> {
        self.slots.iter_mut().find(|slot| slot.name == name)
    }
}

/// What both backends are made of: named readers, each a [`SlotState`]. The
/// [`ReaderBackend`] of both is written once, on this.
trait Slots {
    /// Every reader's status, in the order they were added.
    fn statuses(&self) -> Vec<ReaderStatus>;

    /// Runs `work` on what reader `name` holds; `None` when there is no such reader.
    fn on_slot<T>(&mut self, name: &str, work: impl FnOnce(&mut SlotState) -> T) -> Option<T>;
}

impl Slots for VirtualReaders {
    fn statuses(&self) -> Vec<ReaderStatus> {
        self.slots
            .iter()
            .map(|slot| slot.state.status(&slot.name))
            .collect()
    }

    fn on_slot<T>(&mut self, name: &str, work: impl FnOnce(&mut SlotState) -> T) -> Option<T> {
        self.slot_mut(name).map(|slot| work(&mut slot.state))
    }
}

/// [`VirtualReaders`] for several connections on several threads: clones share the same
/// readers. Each reader has a lock of its own, held while a connection works on its card,
/// so a card and a PSAM in two readers can be used at once (as a PSAM-authenticated read
/// does); plugging a card into a reader in use waits until that work ends.
#[derive(Debug, Clone, Default)]
pub struct SharedVirtualReaders {
    slots: Arc<Mutex<Vec<SharedSlot>>>,
}

#[derive(Debug, Clone)]
struct SharedSlot {
    name: String,
    state: Arc<Mutex<SlotState>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SharedVirtualReaders {
    /// No readers at all.
    pub fn new() -> SharedVirtualReaders {
        SharedVirtualReaders::default()
    }

    /// Adds an empty reader (nothing happens if it exists).
    pub fn add_reader(&self, name: &str) {
        self.slot_or_add(name);
    }

    /// Puts `card` into reader `name` (added if missing); returns what it held before.
    pub fn insert(&self, name: &str, card: impl Into<Chip>) -> Option<Chip> {
        let slot = self.slot_or_add(name);
        lock(&slot).insert(card.into())
    }

    /// Gives reader `name` a PIN pad on which the holder will type `typed` (`None`: no
    /// pad), as [`VirtualReaders::set_pin_pad`].
    pub fn set_pin_pad(&self, name: &str, typed: Option<&str>) {
        let slot = self.slot_or_add(name);
        lock(&slot).pin_pad = typed.map(str::to_owned);
    }

    /// Takes the card (or PSAM) out of reader `name`.
    pub fn remove(&self, name: &str) -> Option<Chip> {
        self.slot(name).and_then(|slot| lock(&slot).remove())
    }

    /// Unplugs reader `name` (with whatever it holds).
    pub fn remove_reader(&self, name: &str) -> Option<Chip> {
        let mut slots = lock(&self.slots);
        let index = slots.iter().position(|slot| slot.name == name)?;
        let slot = slots.remove(index);
        drop(slots);
        lock(&slot.state).card.take()
    }

    /// Runs `look` on whatever reader `name` holds.
    pub fn with_chip<T>(&self, name: &str, look: impl FnOnce(Option<&Chip>) -> T) -> T {
        match self.slot(name) {
            Some(slot) => look(lock(&slot).card.as_ref()),
            None => look(None),
        }
    }

    /// The reader's state, without holding the list lock while it is used.
    fn slot(&self, name: &str) -> Option<Arc<Mutex<SlotState>>> {
        lock(&self.slots)
            .iter()
            .find(|slot| slot.name == name)
            .map(|slot| slot.state.clone())
    }

    fn slot_or_add(&self, name: &str) -> Arc<Mutex<SlotState>> {
        let mut slots = lock(&self.slots);
        if let Some(slot) = slots.iter().find(|slot| slot.name == name) {
            return slot.state.clone();
        }
        let state = Arc::new(Mutex::new(SlotState::default()));
        slots.push(SharedSlot {
            name: name.to_owned(),
            state: state.clone(),
        });
        state
    }
}

impl Slots for SharedVirtualReaders {
    /// Without holding the list lock while each reader's is taken.
    fn statuses(&self) -> Vec<ReaderStatus> {
        let slots: Vec<SharedSlot> = lock(&self.slots).clone();
        slots
            .iter()
            .map(|slot| lock(&slot.state).status(&slot.name))
            .collect()
    }

    /// Holds the reader's own lock (not the list's) while `work` runs.
    fn on_slot<T>(&mut self, name: &str, work: impl FnOnce(&mut SlotState) -> T) -> Option<T> {
        self.slot(name).map(|slot| work(&mut lock(&slot)))
    }
}

impl<S: Slots> ReaderBackend for S {
    fn readers(&mut self) -> Result<Vec<ReaderStatus>, ReaderError> {
        Ok(self.statuses())
    }

    fn with_card(
        &mut self,
        reader: &str,
        work: &mut dyn FnMut(&mut dyn CardChannel),
    ) -> Result<(), ReaderError> {
        self.on_slot(reader, |state| state.run(reader, work))
            .unwrap_or_else(|| Err(ReaderError::UnknownReader(reader.to_owned())))
    }

    /// Looks every [`POLL`] until `wanted` holds a card, or (none named) any reader does —
    /// with several, the first: no ambiguity in a simulation.
    fn wait_for_card(
        &mut self,
        wanted: Option<&str>,
        timeout: Duration,
    ) -> Result<String, ReaderError> {
        wait_for_card_with(
            self,
            wanted,
            timeout,
            POLL,
            |readers, wanted| match choose_reader(readers, wanted) {
                Err(ReaderError::AmbiguousReader(many)) => readers
                    .iter()
                    .find(|r| r.atr.is_some())
                    .map(|first| first.name.clone())
                    .ok_or(ReaderError::AmbiguousReader(many)),
                chosen => chosen,
            },
        )
    }
}

/// A connection to the card (or PSAM) in one slot.
struct VirtualChannel<'s> {
    slot: &'s mut Option<Chip>,
    atr: Vec<u8>,
    pin_pad: Option<&'s str>,
}

/// The control code the simulated pad gives FEATURE_VERIFY_PIN_DIRECT (as a CCID reader).
const PAD_VERIFY_CODE: u32 = 0x4233_0006;

impl CardChannel for VirtualChannel<'_> {
    fn atr(&self) -> &[u8] {
        &self.atr
    }

    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, ReaderError> {
        let card = self.slot.as_mut().ok_or(ReaderError::CardRemoved)?;
        match card.process(command) {
            Some(response) => Ok(response),
            None => {
                // Gone mid-command: an empty answer now, "removed" from then on.
                *self.slot = None;
                Ok(Vec::new())
            }
        }
    }

    /// A simulated PIN pad: announces FEATURE_VERIFY_PIN_DIRECT and, asked to verify,
    /// fills the typed digits into the VERIFY the structure carries and sends it.
    fn control(&mut self, code: u32, data: &[u8]) -> Result<Vec<u8>, ReaderError> {
        let Some(typed) = self.pin_pad else {
            return Err(ReaderError::NoControl);
        };
        match code {
            pinpad::GET_FEATURE_REQUEST => {
                let mut features = vec![pinpad::FEATURE_VERIFY_PIN_DIRECT, 4];
                features.extend_from_slice(&PAD_VERIFY_CODE.to_be_bytes());
                Ok(features)
            }
            PAD_VERIFY_CODE => match pinpad::fill_verify(data, typed) {
                Some(apdu) => self.transmit(&apdu),
                None => Ok(vec![0x6B, 0x80]),
            },
            _ => Err(ReaderError::ControlUnsupported(code)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::with_card;
    use crate::sim::card::{CardImage, PsamImage};
    use std::time::Instant;

    const SELECT_SSSE: &str = "00A404000F7378312E73682EC9E7BBE1B1A3D5CF";

    fn card(behaviour: &str) -> VirtualCard {
        let text = format!(
            "description = \"t\"\natr = \"3B 6D 00 00 01\"\n[ssse]\n[[ssse.ef05]]\ntag = 3\nan = \"2.00\"\n{behaviour}"
        );
        VirtualCard::new(CardImage::from_toml_str(&text, "t").unwrap())
    }

    /// A PSAM image (terminal number 410100813475).
    fn psam_image() -> PsamImage {
        PsamImage::from_toml_str(
            "description = \"p\"\natr = \"3B 6C 00 00 50 53 41 4D\"\nterminal_no = \"410100813475\"\n",
            "p",
        )
        .unwrap()
    }

    /// Why a connection to `reader` cannot be made (it must fail).
    fn refusal(backend: &mut dyn ReaderBackend, reader: &str) -> ReaderError {
        backend.with_card(reader, &mut |_| {}).unwrap_err()
    }

    fn transmit(channel: &mut dyn CardChannel, apdu: &str) -> Result<String, ReaderError> {
        channel
            .transmit(&hex::decode(apdu).unwrap())
            .map(hex::encode_upper)
    }

    #[test]
    fn lists_readers_with_their_atrs() {
        let mut readers = VirtualReaders::with_card("r0", card(""));
        readers.add_reader("r1");
        let statuses = readers.readers().unwrap();
        assert_eq!(statuses.len(), 2);
        assert_eq!(statuses[0].atr, Some(vec![0x3B, 0x6D, 0x00, 0x00, 0x01]));
        assert_eq!(
            statuses[1],
            ReaderStatus {
                name: "r1".into(),
                atr: None,
                event_count: Some(0),
            }
        );
    }

    #[test]
    fn transmits_to_the_card() {
        let mut readers = VirtualReaders::with_card("r0", card(""));
        let answers = with_card(&mut readers, "r0", |channel| {
            assert_eq!(channel.atr()[0], 0x3B);
            let select = transmit(channel, SELECT_SSSE).unwrap();
            (select, transmit(channel, "00B2012C00").unwrap())
        })
        .unwrap();
        assert!(answers.0.starts_with("6F1C"));
        assert_eq!(answers.1, "0304322E30309000");
        // Each connection powers the card on: the selection is gone.
        let again = with_card(&mut readers, "r0", |c| transmit(c, "00B2012C00").unwrap()).unwrap();
        assert_eq!(again, "6A82");
        assert_eq!(readers.card("r0").unwrap().apdus_seen(), 3);
    }

    #[test]
    fn a_vanishing_card_answers_empty_then_counts_as_removed() {
        let mut readers = VirtualReaders::with_card("r0", card("[behaviour]\nvanish_after = 1"));
        let results = with_card(&mut readers, "r0", |channel| {
            [SELECT_SSSE, "00B2012C00", "00B2012C00"].map(|apdu| transmit(channel, apdu))
        })
        .unwrap();
        assert!(results[0].as_ref().unwrap().ends_with("9000"));
        assert_eq!(results[1].as_ref().unwrap(), "");
        assert!(matches!(results[2], Err(ReaderError::CardRemoved)));
        assert_eq!(readers.readers().unwrap()[0].atr, None);
        let vanished = refusal(&mut readers, "r0");
        assert!(matches!(vanished, ReaderError::NoCard(_)), "{vanished}");
    }

    #[test]
    fn insert_and_remove() {
        let mut readers = VirtualReaders::new();
        readers.add_reader("r0");
        assert!(readers.remove("r0").is_none());
        assert!(readers.insert("r1", card("")).is_none());
        assert!(readers.insert("r1", card("")).is_some());
        assert_eq!(readers.readers().unwrap().len(), 2);
        assert!(readers.remove("r1").is_some());
        assert!(readers.card("r1").is_none());
        let unknown = refusal(&mut readers, "nope");
        assert!(
            matches!(unknown, ReaderError::UnknownReader(_)),
            "{unknown}"
        );
    }

    #[test]
    fn waits_for_a_card() {
        let mut readers = VirtualReaders::new();
        readers.add_reader("empty");
        let started = Instant::now();
        let err = readers
            .wait_for_card(None, Duration::from_millis(30))
            .unwrap_err();
        assert!(matches!(err, ReaderError::NoCard(_)));
        assert!(started.elapsed() >= Duration::from_millis(30));
        readers.insert("full", card(""));
        let found = readers.wait_for_card(None, Duration::from_secs(5)).unwrap();
        assert_eq!(found, "full");
        assert!(matches!(
            readers.wait_for_card(Some("empty"), Duration::ZERO),
            Err(ReaderError::NoCard(name)) if name == "empty"
        ));
        assert!(matches!(
            readers.wait_for_card(Some("nope"), Duration::ZERO),
            Err(ReaderError::UnknownReader(_))
        ));
    }

    #[test]
    fn counts_insertions_and_removals() {
        let mut readers = VirtualReaders::new();
        readers.add_reader("r0");
        let count = |r: &mut VirtualReaders| r.readers().unwrap()[0].event_count;
        assert_eq!(count(&mut readers), Some(0));
        readers.insert("r0", card(""));
        assert_eq!(count(&mut readers), Some(1));
        readers.insert("r0", card(""));
        assert_eq!(
            count(&mut readers),
            Some(3),
            "a swap is a removal and an insertion"
        );
        readers.remove("r0");
        readers.remove("r0");
        assert_eq!(count(&mut readers), Some(4));
        readers.insert("r0", card("[behaviour]\nvanish_after = 1"));
        let _ = with_card(&mut readers, "r0", |c| {
            [SELECT_SSSE, SELECT_SSSE].map(|apdu| transmit(c, apdu))
        });
        assert_eq!(
            count(&mut readers),
            Some(6),
            "vanishing counts as a removal"
        );
    }

    #[test]
    fn shared_readers_are_one_set_of_readers_with_a_lock_each() {
        let readers = SharedVirtualReaders::new();
        let mut first = readers.clone();
        let mut second = readers.clone();
        readers.add_reader("psam");
        assert!(readers.insert("card", card("")).is_none());
        readers.insert("psam", psam_image());
        let statuses = first.readers().unwrap();
        assert_eq!(statuses.len(), 2);
        assert_eq!(statuses[1].event_count, Some(1));
        // Work on the PSAM while the card is used through the other connection.
        let nested = with_card(&mut first, "psam", |psam| {
            let terminal = transmit(psam, "00B0960006").unwrap();
            let select = with_card(&mut second, "card", |c| transmit(c, SELECT_SSSE).unwrap());
            (terminal, select.unwrap())
        })
        .unwrap();
        assert_eq!(nested.0, "4101008134759000");
        assert!(nested.1.ends_with("9000"));
        assert_eq!(
            readers.with_chip("card", |c| c.map(Chip::apdus_seen)),
            Some(1)
        );
        assert!(readers.remove("card").is_some());
        let removed = refusal(&mut first, "card");
        assert!(matches!(removed, ReaderError::NoCard(_)), "{removed}");
        assert!(readers.remove_reader("psam").is_some());
        assert_eq!(second.readers().unwrap().len(), 1);
        assert!(matches!(
            second.wait_for_card(None, Duration::from_millis(20)),
            Err(ReaderError::NoCard(_))
        ));
        readers.insert("card", card(""));
        assert_eq!(second.wait_for_card(None, Duration::ZERO).unwrap(), "card");
    }

    #[test]
    fn the_default_change_wait_returns_on_a_change_or_the_timeout() {
        let readers = SharedVirtualReaders::new();
        readers.add_reader("r0");
        let mut backend = readers.clone();
        let known = backend.readers().unwrap();
        let same = backend
            .wait_for_change(&known, Duration::from_millis(30))
            .unwrap();
        assert_eq!(same, known);
        let inserting = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            readers.insert("r0", card(""));
        });
        let changed = backend
            .wait_for_change(&known, Duration::from_secs(10))
            .unwrap();
        assert!(changed[0].atr.is_some());
        inserting.join().unwrap();
    }

    #[test]
    fn is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<VirtualReaders>();
        assert_send::<SharedVirtualReaders>();
    }

    #[test]
    fn a_psam_in_a_second_reader() {
        let psam = psam_image();
        let mut readers = VirtualReaders::with_card("card", card(""));
        assert!(
            readers
                .insert("psam", VirtualPsam::new(psam.clone()))
                .is_none()
        );
        let statuses = readers.readers().unwrap();
        assert_eq!(
            statuses[1].atr.as_deref().map(|a| &a[4..]),
            Some(&b"PSAM"[..])
        );
        let terminal = with_card(&mut readers, "psam", |c| transmit(c, "00B0960006").unwrap());
        assert_eq!(terminal.unwrap(), "4101008134759000");
        let not_psam = with_card(&mut readers, "card", |c| transmit(c, "00B0960006").unwrap());
        assert_eq!(not_psam.unwrap(), "6D00");
        assert_eq!(readers.psam("psam").unwrap().apdus_seen(), 1);
        assert!(readers.card("psam").is_none() && readers.psam("card").is_none());
        assert!(readers.chip("psam").is_some());
        // Images go in directly too.
        let old = readers.insert("psam", psam);
        assert!(matches!(old, Some(Chip::Psam(_))));
        assert!(matches!(readers.remove("card"), Some(Chip::Card(_))));
    }
}
