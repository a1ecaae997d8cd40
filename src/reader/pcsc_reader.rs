//! The PC/SC backend: readers and cards through pcscd, with the `pcsc` crate.
//!
//! Connects shared, wraps every read in a transaction, and establishes a new context when
//! pcscd was restarted under it (`NoService` / `CommError` / `InvalidHandle`): the old
//! handle keeps answering `is_valid` but nothing else works (virtual-reader.md §5).

use super::{ReaderBackend, ReaderStatus};
use crate::apdu::{CardChannel, ReaderError};
use pcsc::{
    Context, Disposition, Error as PcscError, Protocols, ReaderState, Scope, ShareMode, State,
};
use std::ffi::CString;
use std::time::Duration;

/// Readers reached through pcscd.
pub struct PcscReaders {
    context: Option<Context>,
}

impl Default for PcscReaders {
    fn default() -> Self {
        PcscReaders::new()
    }
}

impl PcscReaders {
    /// No context is made until the first call, so a missing pcscd is reported where it
    /// matters (and retried there).
    pub fn new() -> PcscReaders {
        PcscReaders { context: None }
    }

    fn context(&mut self) -> Result<&Context, ReaderError> {
        if self.context.is_none() {
            let context = Context::establish(Scope::User).map_err(service_error)?;
            self.context = Some(context);
        }
        self.context
            .as_ref()
            .ok_or_else(|| ReaderError::NoService("no PC/SC context".into()))
    }

    /// Runs `call` on the context; when pcscd went away underneath, establishes a new
    /// context and tries once more. The outer error is a missing service, the inner one
    /// what the call itself answered.
    fn with_context<T>(
        &mut self,
        mut call: impl FnMut(&Context) -> Result<T, PcscError>,
    ) -> Result<Result<T, PcscError>, ReaderError> {
        match call(self.context()?) {
            Err(e) if is_stale_context(e) => {
                tracing::info!(error = %e, "PC/SC context lost; establishing a new one");
                self.context = None;
                Ok(call(self.context()?))
            }
            other => Ok(other),
        }
    }
}

fn is_stale_context(e: PcscError) -> bool {
    matches!(
        e,
        PcscError::NoService
            | PcscError::CommError
            | PcscError::InvalidHandle
            | PcscError::ServiceStopped
    )
}

fn service_error(e: PcscError) -> ReaderError {
    match e {
        PcscError::NoService | PcscError::ServiceStopped | PcscError::CommError => {
            ReaderError::NoService(format!("{e} — is pcscd running?"))
        }
        PcscError::NoReadersAvailable => ReaderError::NoReaders,
        other => ReaderError::Backend(Box::new(other)),
    }
}

fn card_error(reader: &str, e: PcscError) -> ReaderError {
    match e {
        PcscError::NoSmartcard => ReaderError::NoCard(reader.to_owned()),
        // A transaction that vanished under us: the card was removed or reset meanwhile.
        PcscError::RemovedCard | PcscError::ResetCard | PcscError::NotTransacted => {
            ReaderError::CardRemoved
        }
        PcscError::UnknownReader | PcscError::ReaderUnavailable => {
            ReaderError::UnknownReader(reader.to_owned())
        }
        PcscError::UnresponsiveCard | PcscError::UnpoweredCard | PcscError::UnsupportedCard => {
            ReaderError::Unresponsive(e.to_string())
        }
        other => service_error(other),
    }
}

fn reader_cstring(reader: &str) -> Result<CString, ReaderError> {
    CString::new(reader).map_err(|_| ReaderError::UnknownReader(reader.to_owned()))
}

impl ReaderBackend for PcscReaders {
    fn readers(&mut self) -> Result<Vec<ReaderStatus>, ReaderError> {
        Ok(self.current_states(false)?.iter().map(status_of).collect())
    }

    fn with_card(
        &mut self,
        reader: &str,
        work: &mut dyn FnMut(&mut dyn CardChannel),
    ) -> Result<(), ReaderError> {
        let name = reader_cstring(reader)?;
        let mut card = self
            .with_context(|c| c.connect(&name, ShareMode::Shared, Protocols::ANY))?
            .map_err(|e| card_error(reader, e))?;
        let atr = card
            .status2_owned()
            .map_err(|e| card_error(reader, e))?
            .atr()
            .to_vec();
        let card_gone = {
            let transaction = card.transaction().map_err(|e| card_error(reader, e))?;
            let mut channel = PcscChannel {
                card: &transaction,
                atr,
                reader,
                gone: false,
            };
            work(&mut channel);
            let gone = channel.gone;
            if let Err((_, e)) = transaction.end(Disposition::LeaveCard) {
                tracing::debug!(reader, error = %e, "ending the PC/SC transaction failed");
            }
            gone
        };
        // Reset on the way out: what this connection opened (external authentication, a
        // verified PIN) must not stay open for the next program that connects. A card that
        // went away mid-read is left alone: there is nothing to reset.
        let disposition = if card_gone {
            Disposition::LeaveCard
        } else {
            Disposition::ResetCard
        };
        if let Err((_, e)) = card.disconnect(disposition) {
            tracing::debug!(reader, error = %e, "disconnect failed");
        }
        Ok(())
    }

    fn wait_for_card(
        &mut self,
        reader: Option<&str>,
        timeout: Duration,
    ) -> Result<String, ReaderError> {
        super::wait_for_card_with(self, reader, timeout, WAIT_SLICE, super::choose_reader)
    }

    /// `get_status_change` on every reader and the PnP pseudo-reader. The reader list is
    /// taken afresh every call: with vpcd the PnP notification never fires.
    fn wait_for_change(
        &mut self,
        known: &[ReaderStatus],
        timeout: Duration,
    ) -> Result<Vec<ReaderStatus>, ReaderError> {
        let mut states = self.current_states(true)?;
        let current: Vec<ReaderStatus> = states
            .iter()
            .filter(|s| s.name() != pcsc::PNP_NOTIFICATION())
            .map(status_of)
            .collect();
        if current.as_slice() != known {
            return Ok(current);
        }
        for state in &mut states {
            state.sync_current_state();
        }
        match self.with_context(|c| c.get_status_change(timeout, &mut states))? {
            Ok(()) | Err(PcscError::Timeout) => {}
            Err(e) => return Err(service_error(e)),
        }
        self.readers()
    }
}

/// How long one status wait of `wait_for_card` lasts before the reader list is taken again.
const WAIT_SLICE: Duration = Duration::from_millis(250);

impl PcscReaders {
    /// Every reader's state now (and the PnP pseudo-reader's, when asked for).
    fn current_states(&mut self, with_pnp: bool) -> Result<Vec<ReaderState>, ReaderError> {
        let names = match self.with_context(|c| c.list_readers_owned())? {
            Err(PcscError::NoReadersAvailable) => Vec::new(),
            other => other.map_err(service_error)?,
        };
        let mut states: Vec<ReaderState> = names
            .into_iter()
            .map(|name| ReaderState::new(name, State::UNAWARE))
            .collect();
        if with_pnp {
            states.push(ReaderState::new(pcsc::PNP_NOTIFICATION(), State::UNAWARE));
        }
        if !states.is_empty() {
            self.with_context(|c| c.get_status_change(Duration::ZERO, &mut states))?
                .map_err(service_error)?;
        }
        Ok(states)
    }
}

/// A reader's state as the reader layer reports it.
fn status_of(state: &ReaderState) -> ReaderStatus {
    ReaderStatus {
        name: state.name().to_string_lossy().into_owned(),
        atr: state
            .event_state()
            .contains(State::PRESENT)
            .then(|| state.atr().to_vec()),
        event_count: Some(state.event_count()),
    }
}

/// A connected card inside a PC/SC transaction.
struct PcscChannel<'t> {
    card: &'t pcsc::Card,
    atr: Vec<u8>,
    reader: &'t str,
    /// The card stopped answering or was removed during the work.
    gone: bool,
}

impl CardChannel for PcscChannel<'_> {
    fn atr(&self) -> &[u8] {
        &self.atr
    }

    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, ReaderError> {
        let mut buffer = [0u8; pcsc::MAX_BUFFER_SIZE_EXTENDED];
        let reply = self
            .card
            .transmit(command, &mut buffer)
            .map(<[u8]>::to_vec)
            .map_err(|e| card_error(self.reader, e));
        self.gone |= !matches!(&reply, Ok(bytes) if bytes.len() >= 2);
        reply
    }

    fn control(&mut self, code: u32, data: &[u8]) -> Result<Vec<u8>, ReaderError> {
        let mut buffer = [0u8; pcsc::MAX_BUFFER_SIZE_EXTENDED];
        self.card
            .control(code.into(), data, &mut buffer)
            .map(<[u8]>::to_vec)
            .map_err(|e| card_error(self.reader, e))
    }
}
