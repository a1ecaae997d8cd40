//! Reader backends: where APDU bytes go. One small trait, [`ReaderBackend`] (which readers
//! there are, which hold a card, a transaction on one), implemented here by [`pcsc_reader`]
//! (the real PC/SC stack through pcscd) and, on the simulators' side of the wire, by
//! `sim::card::virtual_reader` (cards held in-process, for fast tests). A connected card is
//! an [`apdu::CardChannel`](crate::apdu::CardChannel), the transport the APDU layer talks
//! to, and the backends' error is that layer's [`ReaderError`](crate::apdu::ReaderError).
//! Beside the card readers, [`scanner`]: a serial barcode / QR scanner as a line source.
//!
//! The calls here block; the daemon runs them on a thread of their own, never on the async
//! runtime.

pub mod pcsc_reader;
pub mod pinpad;
pub mod scanner;

use crate::apdu::{CardChannel, ReaderError};

use std::time::{Duration, Instant};

/// What a reader currently shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderStatus {
    pub name: String,
    /// The ATR when a card is present.
    pub atr: Option<Vec<u8>>,
    /// How many insertions and removals the reader has seen, where the backend counts them
    /// (PC/SC: the upper 16 bits of `dwEventState`). A card swapped for one with the same
    /// ATR changes it even when the gap between the two was too short to be seen.
    pub event_count: Option<u32>,
}

/// How often the default [`ReaderBackend::wait_for_change`] looks again.
const CHANGE_POLL: Duration = Duration::from_millis(20);

/// A source of readers and cards.
pub trait ReaderBackend {
    /// Every reader and, where a card is present, its ATR.
    fn readers(&mut self) -> Result<Vec<ReaderStatus>, ReaderError>;

    /// Connects (shared) to the card in `reader`, begins a transaction, runs `work` on the
    /// channel, ends the transaction and disconnects, resetting the card so that nothing the
    /// work opened (an external authentication, a verified PIN) outlives it.
    fn with_card(
        &mut self,
        reader: &str,
        work: &mut dyn FnMut(&mut dyn CardChannel),
    ) -> Result<(), ReaderError>;

    /// Waits up to `timeout` for a card to be present in `reader` (or in any reader when
    /// `None`) and returns the reader that holds it.
    fn wait_for_card(
        &mut self,
        reader: Option<&str>,
        timeout: Duration,
    ) -> Result<String, ReaderError>;

    /// Waits up to `timeout` until `reader` holds no card (pcscd notices a removal at its
    /// next poll, up to 400 ms later).
    fn wait_for_removal(&mut self, reader: &str, timeout: Duration) -> Result<(), ReaderError> {
        let deadline = Instant::now() + timeout;
        loop {
            let present = self
                .readers()?
                .iter()
                .any(|r| r.name == reader && r.atr.is_some());
            if !present {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ReaderError::StillInserted {
                    reader: reader.to_owned(),
                    waited: timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `timeout` until the readers differ from `known` (a reader added or gone,
    /// a card inserted, removed or swapped) and returns them as they are then; on timeout
    /// returns them unchanged, without error. May return early with no change. The default
    /// looks at [`readers`](Self::readers) every 20 ms.
    fn wait_for_change(
        &mut self,
        known: &[ReaderStatus],
        timeout: Duration,
    ) -> Result<Vec<ReaderStatus>, ReaderError> {
        let deadline = Instant::now() + timeout;
        loop {
            let current = self.readers()?;
            let now = Instant::now();
            if current.as_slice() != known || now >= deadline {
                return Ok(current);
            }
            std::thread::sleep(CHANGE_POLL.min(deadline - now));
        }
    }
}

/// Runs `work` on the card in `reader` and returns its result.
pub fn with_card<T>(
    backend: &mut dyn ReaderBackend,
    reader: &str,
    work: impl FnOnce(&mut dyn CardChannel) -> T,
) -> Result<T, ReaderError> {
    let mut work = Some(work);
    let mut result = None;
    backend.with_card(reader, &mut |channel| {
        if let Some(work) = work.take() {
            result = Some(work(channel));
        }
    })?;
    result.ok_or(ReaderError::WorkNotRun)
}

/// The body of a [`ReaderBackend::wait_for_card`]: looks for a card with `choose` (such as
/// [`choose_reader`]) until `timeout` passes, and while there is no card (or no reader) waits
/// between looks, up to `slice` at a time, for the readers to change.
pub fn wait_for_card_with<B: ReaderBackend + ?Sized>(
    backend: &mut B,
    reader: Option<&str>,
    timeout: Duration,
    slice: Duration,
    choose: impl Fn(&[ReaderStatus], Option<&str>) -> Result<String, ReaderError>,
) -> Result<String, ReaderError> {
    let deadline = Instant::now() + timeout;
    loop {
        let readers = backend.readers()?;
        match choose(&readers, reader) {
            Ok(name) => return Ok(name),
            Err(ReaderError::NoCard(_) | ReaderError::NoReaders) if Instant::now() < deadline => {
                let left = deadline.saturating_duration_since(Instant::now());
                backend.wait_for_change(&readers, left.min(slice))?;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Picks the reader to use: the named one, or the only reader holding a card.
pub fn choose_reader(
    readers: &[ReaderStatus],
    wanted: Option<&str>,
) -> Result<String, ReaderError> {
    if readers.is_empty() {
        return Err(ReaderError::NoReaders);
    }
    if let Some(name) = wanted {
        return match readers.iter().find(|r| r.name == name) {
            Some(reader) if reader.atr.is_some() => Ok(reader.name.clone()),
            Some(_) => Err(ReaderError::NoCard(name.to_owned())),
            None => Err(ReaderError::UnknownReader(name.to_owned())),
        };
    }
    let holding: Vec<&ReaderStatus> = readers.iter().filter(|r| r.atr.is_some()).collect();
    match holding.as_slice() {
        [] => Err(ReaderError::NoCard(
            readers
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        )),
        [one] => Ok(one.name.clone()),
        many => Err(ReaderError::AmbiguousReader(
            many.iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(name: &str, present: bool) -> ReaderStatus {
        ReaderStatus {
            name: name.into(),
            atr: present.then(|| vec![0x3B]),
            event_count: None,
        }
    }

    #[test]
    fn chooses_the_only_reader_with_a_card() {
        let readers = [status("a", false), status("b", true)];
        assert_eq!(choose_reader(&readers, None).unwrap(), "b");
    }

    #[test]
    fn refuses_to_guess_between_two_cards() {
        let readers = [status("a", true), status("b", true)];
        assert!(matches!(
            choose_reader(&readers, None),
            Err(ReaderError::AmbiguousReader(_))
        ));
        assert_eq!(choose_reader(&readers, Some("a")).unwrap(), "a");
    }

    #[test]
    fn names_missing_readers_and_cards() {
        assert!(matches!(
            choose_reader(&[], None),
            Err(ReaderError::NoReaders)
        ));
        let readers = [status("a", false)];
        assert!(matches!(
            choose_reader(&readers, None),
            Err(ReaderError::NoCard(_))
        ));
        assert!(matches!(
            choose_reader(&readers, Some("a")),
            Err(ReaderError::NoCard(_))
        ));
        assert!(matches!(
            choose_reader(&readers, Some("x")),
            Err(ReaderError::UnknownReader(_))
        ));
    }
}
