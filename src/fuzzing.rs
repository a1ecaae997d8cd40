//! The entry points of the fuzz targets (`fuzz/`, docs/fuzzing.md): one function a parser
//! that input reaches, taking the fuzzer's bytes and driving the library's own code the way
//! the daemon does. A finding is a panic, an overflow, a hang or a runaway allocation here;
//! an `Err` is the right answer to bad input. The regression replay
//! (`tests/suite/fuzz_regressions.rs`) runs the corpus seeds and every input a fuzzer ever
//! crashed through the same functions, so a fixed finding stays fixed.
//!
//! Beside the layers, like `sim`: it may use any layer and no layer uses it.

use crate::apdu::{CardChannel, Exchanger, ReaderError};
use crate::card::{CardReader, Pin, PinEntry, ReadOptions, tlv};
use crate::insurer::envelope::parse_response;
use crate::insurer::settlement::{DayDetailRow, DayTotalsOut, RegisterOut, SettleOut, output_part};
use crate::insurer::wire;
use crate::profile::{Profile, ProfileSet};
use crate::psam::Psam;
use crate::serve::config::Config;
use crate::serve::rpc::parse_call;
use crate::sim::card::Chip;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::Path;
use std::rc::Rc;
use std::sync::OnceLock;

/// A fuzz target's entry point: the fuzzer's bytes in, a panic the only finding.
pub type Target = fn(&[u8]);

/// The fuzz targets by name, each with its entry point: `fuzz/fuzz_targets/NAME.rs` calls
/// it, and the regression replay runs `fuzz/corpus/NAME/` and `fuzz/regressions/NAME/`.
pub const TARGETS: [(&str, Target); 7] = [
    ("apdu_response", apdu_response),
    ("tlv", tlv),
    ("profile", profile),
    ("card_image", card_image),
    ("jsonrpc_line", jsonrpc_line),
    ("insurer_reply", insurer_reply),
    ("config", config),
];

/// The built-in profiles, parsed once (not on every execution).
fn built_in() -> Option<&'static ProfileSet> {
    static PROFILES: OnceLock<Option<ProfileSet>> = OnceLock::new();
    PROFILES
        .get_or_init(|| ProfileSet::built_in().ok())
        .as_ref()
}

/// The responses of a card (and its PSAM) as the fuzzer scripts them: one length byte, then
/// that many bytes (fewer at the end of the input), in the order the reader sends commands.
/// When the script runs out the card is gone.
#[derive(Clone)]
struct Script(Rc<RefCell<VecDeque<Vec<u8>>>>);

impl Script {
    fn new(mut data: &[u8]) -> Script {
        let mut replies = VecDeque::new();
        while let Some((&len, rest)) = data.split_first() {
            let (reply, rest) = rest.split_at(usize::from(len).min(rest.len()));
            replies.push_back(reply.to_vec());
            data = rest;
        }
        Script(Rc::new(RefCell::new(replies)))
    }
}

impl CardChannel for Script {
    fn atr(&self) -> &[u8] {
        &[0x3B, 0x6D, 0x00, 0x00]
    }

    fn transmit(&mut self, _command: &[u8]) -> Result<Vec<u8>, ReaderError> {
        self.0
            .borrow_mut()
            .pop_front()
            .ok_or(ReaderError::CardRemoved)
    }
}

/// A whole card read (SELECT, the issuer file, the profile's files, authentication through a
/// PSAM, the PIN and the medical application) against a card whose every response is the
/// fuzzer's. The first byte chooses the options: bit 0 a PSAM (its replies come from the same
/// script, interleaved), bit 1 a typed PIN, bit 2 the DF04 records.
pub fn apdu_response(data: &[u8]) {
    let Some((&options, script)) = data.split_first() else {
        return;
    };
    let Some(profiles) = built_in() else {
        return;
    };
    let mut card = Script::new(script);
    let mut psam_channel = card.clone();
    let mut psam_exchanger = Exchanger::new(&mut psam_channel);
    let mut psam = match options & 1 {
        1 => Psam::open(&mut psam_exchanger, "fuzz").ok(),
        _ => None,
    };
    let Ok(pin) = Pin::new("123456") else {
        return;
    };
    let read = ReadOptions {
        authenticator: psam.as_mut().map(|p| p as _),
        pin: (options & 2 != 0).then_some(PinEntry::Typed(&pin)),
        records: options & 4 != 0,
    };
    let _ = CardReader::new(profiles).read_with(&mut Exchanger::new(&mut card), read);
}

/// The card's TLV decoders: the records of a READ RECORD or a whole-file read (SIMPLE-TLV)
/// and the algorithm in a SELECT's FCI (BER-TLV).
pub fn tlv(data: &[u8]) {
    let _ = tlv::parse_records(data);
    if let Some((&tag, rest)) = data.split_first() {
        let _ = tlv::parse_one(rest, tag);
    }
    let _ = tlv::fci_algorithm(data);
}

/// A card profile (apdu-specs/*.toml), checked alone and against the built-in ones.
pub fn profile(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(profile) = Profile::from_toml_str(text, "fuzz.toml") else {
        return;
    };
    let Some(built_in) = built_in() else {
        return;
    };
    let mut profiles = built_in.profiles().to_vec();
    profiles.push(profile);
    if let Ok(set) = ProfileSet::new(profiles) {
        let _ = set.choose("3.00", Some("500000"));
    }
}

/// A card or PSAM image (fixtures/cards/*.toml, fixtures/psam/*.toml, `medcard sim`).
pub fn card_image(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Chip::from_toml_str(text, "fuzz.toml");
    }
}

/// One JSON-RPC request line from a client of the socket.
pub fn jsonrpc_line(data: &[u8]) {
    let _ = parse_call(data);
}

/// An HTTP 200 body from the insurer: the envelope, then the output as each transaction's
/// decoder reads it.
pub fn insurer_reply(data: &[u8]) {
    // A 9102 answer is a zipped result file, not an envelope.
    let _ = crate::insurer::files::unzip_text(data)
        .map(|text| crate::insurer::files::ResultRow::parse_file(&text));
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(reply) = parse_response("fuzz", body) else {
        return;
    };
    let output = &reply.output;
    let _ = wire::parse_person(output);
    let _ = wire::parse_card_events(output);
    let _ = wire::parse_catalogue(output);
    let _ = output_part::<RegisterOut>(output, "data");
    let _ = output_part::<DayTotalsOut>(output, "stmtinfo");
    let _ = output_part::<Vec<DayDetailRow>>(output, "detail");
    let _ = output_part::<crate::insurer::settlement::DetailFileInfo>(output, "fileinfo");
    let _ = serde_json::from_value::<crate::insurer::files::FsUploadOut>(output.clone());
    if let Ok(settled) = serde_json::from_value::<SettleOut>(output.clone()) {
        let amounts = &settled.setlinfo.amounts;
        let _ = amounts.broken_identities();
        let _ = amounts.differences(amounts);
    }
}

/// The daemon's configuration file (/etc/medcard/medcard.toml).
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = Config::parse(text) {
        let _ = config.check();
        let _ = config.explain();
        let _ = config.validated(Path::new("fuzz.toml"));
    }
}
