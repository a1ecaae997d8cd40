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
    #[error("reader error: {0}")]
    Other(String),
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
        Err(ReaderError::Other(
            "the reader takes no control commands".into(),
        ))
    }
}
