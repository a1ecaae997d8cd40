//! The transport the APDU layer talks to: [`CardChannel`], a connected card inside an
//! exclusive transaction (bytes in, bytes out), and [`ReaderError`], what can go wrong on the
//! way. Implemented above, by `reader::pcsc_reader` (pcscd) and the simulators' virtual
//! reader (`sim::card::virtual_reader`); cf. openpgp-card's `CardTransport`.

/// Errors of the transport (and the readers behind it), in the terms of what happened at the counter.
#[derive(Debug, thiserror::Error)]
pub enum ReaderError {
    #[error("PC/SC service (pcscd) is not available: {0}")]
    NoService(String),
    #[error("no card reader found")]
    NoReaders,
    #[error("reader {0:?} not found")]
    UnknownReader(String),
    #[error("several readers hold a card ({0}); name one with --reader")]
    AmbiguousReader(String),
    #[error("no card in reader {0:?}")]
    NoCard(String),
    #[error("the card was removed during the read")]
    CardRemoved,
    #[error("the card does not respond: {0}")]
    Unresponsive(String),
    /// The reader takes no control commands (`SCardControl`): no PIN pad, for one.
    #[error("the reader takes no control commands")]
    NoControl,
    /// The reader does not know this control code.
    #[error("control code {0:#X} not supported")]
    ControlUnsupported(u32),
    /// A card stayed in the reader past the wait for its removal.
    #[error("the card is still in reader {reader:?} after {waited:?}")]
    StillInserted {
        reader: String,
        waited: std::time::Duration,
    },
    /// The backend returned without running the work it was given on the card.
    #[error("reader backend did not run the card work")]
    WorkNotRun,
    /// The reader service failed in a way none of the above names (the backend's own error).
    #[error("reader error: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A connected card inside an exclusive transaction: bytes in, bytes out.
pub trait CardChannel {
    /// The ATR the card answered at power-up.
    fn atr(&self) -> &[u8];
    /// Sends one command APDU and returns the raw response (data ‖ SW1 SW2). A response
    /// shorter than two bytes is passed up unchanged: the APDU layer decides what it means.
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, ReaderError>;

    /// A reader control command (`SCardControl`): PC/SC part 10 features such as PIN-pad
    /// verification (`reader::pinpad`). Readers without control commands refuse.
    fn control(&mut self, code: u32, data: &[u8]) -> Result<Vec<u8>, ReaderError> {
        let _ = (code, data);
        Err(ReaderError::NoControl)
    }
}
