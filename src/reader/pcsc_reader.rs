//! The PC/SC backend: readers and cards through pcscd, with the `pcsc` crate.
//!
//! Connects shared, wraps every read in a transaction, and establishes a new context when
//! pcscd was restarted under it (`NoService` / `CommError` / `InvalidHandle`): the old
//! handle keeps answering `is_valid` but nothing else works (virtual-reader.md §5).

use super::{CardChannel, ReaderBackend, ReaderError, ReaderStatus};
use pcsc::{
    Context, Disposition, Error as PcscError, Protocols, ReaderState, Scope, ShareMode, State,
};
use std::ffi::CString;
use std::time::{Duration, Instant};

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
        other => ReaderError::Other(other.to_string()),
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
        let names = match self.with_context(|c| c.list_readers_owned())? {
            Err(PcscError::NoReadersAvailable) => return Ok(Vec::new()),
            other => other.map_err(service_error)?,
        };
        let mut states: Vec<ReaderState> = names
            .into_iter()
            .map(|name| ReaderState::new(name, State::UNAWARE))
            .collect();
        self.with_context(|c| c.get_status_change(Duration::ZERO, &mut states))?
            .map_err(service_error)?;
        Ok(states
            .iter()
            .map(|s| ReaderStatus {
                name: s.name().to_string_lossy().into_owned(),
                atr: s
                    .event_state()
                    .contains(State::PRESENT)
                    .then(|| s.atr().to_vec()),
            })
            .collect())
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
        {
            let transaction = card.transaction().map_err(|e| card_error(reader, e))?;
            let mut channel = PcscChannel {
                card: &transaction,
                atr,
                reader,
            };
            work(&mut channel);
            if let Err((_, e)) = transaction.end(Disposition::LeaveCard) {
                tracing::debug!(reader, error = %e, "ending the PC/SC transaction failed");
            }
        }
        if let Err((_, e)) = card.disconnect(Disposition::LeaveCard) {
            tracing::debug!(reader, error = %e, "disconnect failed");
        }
        Ok(())
    }

    fn wait_for_card(
        &mut self,
        reader: Option<&str>,
        timeout: Duration,
    ) -> Result<String, ReaderError> {
        let deadline = Instant::now() + timeout;
        loop {
            let readers = self.readers()?;
            match super::choose_reader(&readers, reader) {
                Ok(name) => return Ok(name),
                Err(ReaderError::NoCard(_) | ReaderError::NoReaders)
                    if Instant::now() < deadline =>
                {
                    self.wait_for_change(&readers, deadline)?;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl PcscReaders {
    /// Blocks until some reader's state changes, or the deadline.
    fn wait_for_change(
        &mut self,
        readers: &[ReaderStatus],
        deadline: Instant,
    ) -> Result<(), ReaderError> {
        // Short slices: with vpcd, readers appear without a PnP notification.
        let slice = deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(250));
        if readers.is_empty() {
            std::thread::sleep(slice);
            return Ok(());
        }
        let mut states: Vec<ReaderState> = readers
            .iter()
            .filter_map(|r| CString::new(r.name.as_str()).ok())
            .map(|name| ReaderState::new(name, State::UNAWARE))
            .collect();
        self.with_context(|c| c.get_status_change(Duration::ZERO, &mut states))?
            .map_err(service_error)?;
        for state in &mut states {
            state.sync_current_state();
        }
        match self.with_context(|c| c.get_status_change(slice, &mut states))? {
            Ok(()) | Err(PcscError::Timeout) => Ok(()),
            Err(e) => Err(service_error(e)),
        }
    }
}

/// A connected card inside a PC/SC transaction.
struct PcscChannel<'t> {
    card: &'t pcsc::Card,
    atr: Vec<u8>,
    reader: &'t str,
}

impl CardChannel for PcscChannel<'_> {
    fn atr(&self) -> &[u8] {
        &self.atr
    }

    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, ReaderError> {
        let mut buffer = [0u8; pcsc::MAX_BUFFER_SIZE_EXTENDED];
        self.card
            .transmit(command, &mut buffer)
            .map(<[u8]>::to_vec)
            .map_err(|e| card_error(self.reader, e))
    }
}
