//! Reading a social security card: select the application, read the issuer file, choose the
//! profile by 规范版本 (and region), read the rest as the profile says, decode every item.
//!
//! The card layer knows the reading procedure; the layout comes from [`crate::profile`] and
//! the bytes go through [`crate::apdu::Exchanger`].

mod auth;
mod checks;
mod files;
mod ireadcardbas;
mod medical;
mod model;
mod pin;
mod records;

pub use checks::{card_no_check_char, card_no_warning};

/// The card's TLV decoders, for the fuzz targets (`crate::fuzzing`): SIMPLE-TLV records and
/// the BER-TLV of a SELECT's FCI.
#[doc(hidden)]
pub mod tlv {
    pub use super::auth::fci_algorithm;
    pub use super::records::{parse_one, parse_records};
}
pub use ireadcardbas::ireadcardbas_string;
pub use medical::MedicalRead;
pub use model::{Balance, BalanceSource, CardRead, Holder, historical_bytes};
pub use pin::{
    BadPin, Pin, PinEntry, PinState, pin_state, verify_pin, verify_pin_entry, verify_pin_on_pad,
};

use crate::apdu::{ApduError, Command, Exchanger, ReaderError, StatusWord};
use crate::codes::ReaderCode;
use crate::profile::{
    Access, CARD_ID_FIELD, DecodeError, FileSpec, Profile, ProfileError, ProfileSet, VERSION_FIELD,
    decode,
};
use crate::psam::{Authenticator, Psam, PsamError, default_algorithm, diversification_factor};
use crate::reader::{ReaderBackend, with_card};
use files::FileReader;
use records::Records;
use std::collections::BTreeMap;
use std::time::Instant;

/// Everything that can stop a card read, in the operator's terms.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("not a social security card: the SSSE application is missing ({message})")]
    NotSocialSecurityCard { sw: StatusWord, message: String },
    #[error(transparent)]
    Apdu(#[from] ApduError),
    #[error("card file {file} cannot be selected: {message}")]
    FileUnavailable {
        file: String,
        sw: StatusWord,
        message: String,
    },
    #[error("card file {file} needs authentication the reader cannot give ({sw})")]
    AccessDenied { file: String, sw: StatusWord },
    #[error("card file {file} cannot be read: every read method was refused ({refusals})")]
    NoReadStrategy { file: String, refusals: String },
    #[error("card file {file} is malformed: {detail}")]
    Malformed { file: String, detail: String },
    #[error("card field {field} ({label}, file {file} tag {tag:02X}) is unreadable: {source}")]
    Decode {
        file: String,
        field: String,
        label: String,
        tag: u8,
        source: DecodeError,
    },
    #[error("the card lacks {label} (file {file} tag {tag:02X}), which every card must carry")]
    MissingItem {
        file: String,
        label: String,
        tag: u8,
    },
    #[error("unsupported card version {version:?}: no profile in apdu-specs matches it")]
    UnknownVersion { version: String },
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error(transparent)]
    Psam(#[from] PsamError),
    #[error(
        "external authentication failed: {message}; not retried, repeated failures lock the card"
    )]
    ExternalAuth { sw: StatusWord, message: String },
    #[error("internal authentication failed: the card is not genuine (用户卡不合法)")]
    NotGenuine,
    #[error("cannot read the card's key factor: 卡识别码 is missing or too short")]
    NoFactor,
    #[error("no random numbers from the operating system: {0}")]
    Random(#[source] std::io::Error),
    #[error("wrong PIN: {tries_left} tries left (PIN校验失败，剩余{tries_left}次)")]
    PinWrong { tries_left: u8 },
    #[error("the PIN is locked (PIN锁定): the holder must have it reset at the insurer's counter")]
    PinLocked,
    #[error("the reader has no PIN pad (PC/SC part 10 FEATURE_VERIFY_PIN_DIRECT)")]
    NoPinPad,
    #[error("nobody typed the PIN on the pad in time (超时)")]
    PinPadTimeout,
    #[error("the PIN entry was cancelled on the pad (用户取消)")]
    PinPadCancelled,
}

impl From<ReaderError> for ReadError {
    fn from(e: ReaderError) -> ReadError {
        ReadError::Apdu(ApduError::Reader(e))
    }
}

impl ReadError {
    /// The national reader-interface code for this failure.
    pub fn reader_code(&self) -> ReaderCode {
        match self {
            ReadError::NotSocialSecurityCard { .. } | ReadError::UnknownVersion { .. } => {
                ReaderCode::NOT_SOCIAL_SECURITY_CARD
            }
            ReadError::Apdu(e) => apdu_code(e),
            ReadError::FileUnavailable { sw, .. } | ReadError::AccessDenied { sw, .. } => {
                ReaderCode::from_status(*sw)
            }
            ReadError::NoReadStrategy { .. } => ReaderCode(-13),
            ReadError::Malformed { .. } | ReadError::Decode { .. } => ReaderCode::CHECKSUM,
            ReadError::MissingItem { .. } => ReaderCode::CARD_DATA_MISMATCH,
            ReadError::Profile(_) | ReadError::Random(_) => ReaderCode::LOAD_ERROR,
            ReadError::Psam(e) => e.reader_code(),
            ReadError::ExternalAuth { sw, .. } => ReaderCode::from_status(*sw),
            ReadError::NotGenuine => ReaderCode::INTERNAL_AUTH_FAILED,
            ReadError::NoFactor => ReaderCode(-20),
            ReadError::PinWrong { .. } => ReaderCode::PIN_WRONG,
            ReadError::PinLocked => ReaderCode::PIN_LOCKED,
            ReadError::NoPinPad => ReaderCode(-13),
            ReadError::PinPadTimeout => ReaderCode(-32),
            ReadError::PinPadCancelled => ReaderCode(-31),
        }
    }
}

impl ReadError {
    /// What kind of failure this is, as the metrics' `outcome` label (a closed set, no
    /// detail of the card in it).
    pub fn kind(&self) -> &'static str {
        match self {
            ReadError::NotSocialSecurityCard { .. } => "not_social_security_card",
            ReadError::UnknownVersion { .. } => "unknown_version",
            ReadError::Apdu(ApduError::Reader(
                ReaderError::NoCard(_) | ReaderError::CardRemoved | ReaderError::Unresponsive(_),
            ))
            | ReadError::Apdu(ApduError::CardGone(..) | ApduError::EndlessResponse(_)) => {
                "card_gone"
            }
            ReadError::Apdu(ApduError::Reader(_)) => "reader",
            ReadError::Apdu(ApduError::Status { .. })
            | ReadError::FileUnavailable { .. }
            | ReadError::AccessDenied { .. }
            | ReadError::NoReadStrategy { .. } => "card_refused",
            ReadError::Malformed { .. }
            | ReadError::Decode { .. }
            | ReadError::MissingItem { .. } => "malformed",
            ReadError::Profile(_) | ReadError::Random(_) => "load_error",
            ReadError::Psam(_) => "psam",
            ReadError::ExternalAuth { .. } | ReadError::NotGenuine | ReadError::NoFactor => {
                "authentication"
            }
            ReadError::PinWrong { .. }
            | ReadError::PinLocked
            | ReadError::NoPinPad
            | ReadError::PinPadTimeout
            | ReadError::PinPadCancelled => "pin",
        }
    }
}

/// Reader-layer failures mapped to the national codes.
pub fn reader_error_code(e: &ReaderError) -> ReaderCode {
    match e {
        ReaderError::NoCard(_) => ReaderCode::NO_CARD,
        ReaderError::CardRemoved | ReaderError::Unresponsive(_) => ReaderCode::CARD_NOT_RESPONDING,
        _ => ReaderCode::READER_CONNECT,
    }
}

fn apdu_code(e: &ApduError) -> ReaderCode {
    match e {
        ApduError::Reader(r) => reader_error_code(r),
        ApduError::CardGone(..) | ApduError::EndlessResponse(_) => ReaderCode::CARD_NOT_RESPONDING,
        ApduError::Status { sw, .. } => ReaderCode::from_status(*sw),
    }
}

/// What a read may use beyond the card itself.
#[derive(Default)]
pub struct ReadOptions<'a> {
    /// Computes cryptograms for 3.0 cards (a PSAM); without one their holder file is
    /// reported in `needs_psam`.
    pub authenticator: Option<&'a mut dyn Authenticator>,
    /// The holder's PIN: with it the medical application (DF04) is read.
    pub pin: Option<PinEntry<'a>>,
    /// Also read the DF04 transaction records.
    pub records: bool,
}

/// Reads cards by a set of profiles.
pub struct CardReader<'p> {
    profiles: &'p ProfileSet,
}

impl<'p> CardReader<'p> {
    pub fn new(profiles: &'p ProfileSet) -> CardReader<'p> {
        CardReader { profiles }
    }

    /// Reads and decodes the card behind `ex`.
    pub fn read(&self, ex: &mut Exchanger<'_>) -> Result<CardRead, ReadError> {
        self.read_with(ex, ReadOptions::default())
    }

    /// Reads and decodes the card behind `ex`, authenticating where the profile asks and
    /// `options` allow.
    pub fn read_with(
        &self,
        ex: &mut Exchanger<'_>,
        mut options: ReadOptions<'_>,
    ) -> Result<CardRead, ReadError> {
        let started = Instant::now();
        let atr = hex::encode_upper(ex.atr());
        let mut files = FileReader::new(ex);
        let detection = self.profiles.detection();
        let fci = select_application(&mut files, detection)?;

        let (profile, mut records) = self.identify(&mut files, detection)?;
        let mut card = CardRead {
            atr,
            profile: profile.name.clone(),
            ..CardRead::default()
        };
        let card_id = field_value_of(profile, &records, CARD_ID_FIELD)?;
        let mut authenticated = false;
        for file in &profile.files {
            let file_records = records.entry(file.fid).or_default();
            match (&file.access, options.authenticator.as_deref_mut()) {
                (Access::Free, _) => {}
                (Access::ExternalAuth { key_id, .. }, Some(auth)) => {
                    if !authenticated {
                        let card_id = card_id.as_deref().ok_or(ReadError::NoFactor)?;
                        let factor = diversification_factor(card_id).ok_or(ReadError::NoFactor)?;
                        let algorithm =
                            auth::fci_algorithm(&fci).unwrap_or_else(|| default_algorithm(card_id));
                        let ex = files.exchanger();
                        if profile.application.internal_auth {
                            auth::internal_authenticate(ex, auth, algorithm, &factor)?;
                        }
                        auth::external_authenticate(ex, auth, algorithm, &factor, *key_id)?;
                        authenticated = true;
                    }
                }
                (Access::ExternalAuth { .. }, None) => {
                    card.needs_psam.extend(locked_fields(file));
                    continue;
                }
                (Access::Pin, _) => continue,
            }
            let items: Vec<_> = file.items.iter().collect();
            files.read(file, &items, file_records)?;
            decode_file(file, file_records, &mut card)?;
        }
        if let (Some(pin), Some(spec)) = (options.pin, &profile.medical) {
            let medical = medical::read_medical(&mut files, spec, pin, options.records)?;
            card.balance = medical.balance;
            card.balance_source = Some(medical.source);
            card.transactions = medical.transactions;
        }
        card.psam_terminal_no = options
            .authenticator
            .as_deref()
            .and_then(|auth| auth.terminal_no())
            .map(str::to_owned);
        finish(&mut card);
        card.apdus = files.exchanger().apdu_count();
        card.elapsed_ms = (started.elapsed().as_secs_f64() * 1e6).round() / 1e3;
        tracing::debug!(
            profile = %card.profile,
            card_no = %card.card_no.as_deref().map(crate::mask::certno).unwrap_or_default(),
            certno = %card.holder.certno.as_deref().map(crate::mask::certno).unwrap_or_default(),
            apdus = card.apdus,
            "card read"
        );
        Ok(card)
    }

    /// Reads the version (and card id, for regional profiles) and picks the profile.
    fn identify(
        &self,
        files: &mut FileReader<'_, '_>,
        detection: &Profile,
    ) -> Result<(&'p Profile, BTreeMap<u16, Records>), ReadError> {
        let Some(version_file) = detection.version_file() else {
            return Err(ReadError::UnknownVersion {
                version: String::new(),
            });
        };
        let wanted: Vec<_> = [VERSION_FIELD, CARD_ID_FIELD]
            .iter()
            .filter_map(|field| version_file.item_for_field(field))
            .collect();
        let mut records = Records::default();
        files.read(version_file, &wanted, &mut records)?;
        let version = field_value(version_file, &records, VERSION_FIELD)?.unwrap_or_default();
        let card_id = field_value(version_file, &records, CARD_ID_FIELD)?;
        let region = card_id.as_deref().and_then(|id| id.get(..6));
        let profile = self
            .profiles
            .choose(&version, region)
            .ok_or(ReadError::UnknownVersion { version })?;
        Ok((profile, BTreeMap::from([(version_file.fid, records)])))
    }
}

/// The medical application alone (DF04), for a card already read without the PIN by
/// `profile`: SELECT SSSE, then DF04 with `pin` (card-spec.md §4). `None` when the profile
/// knows no medical application; otherwise where the balance lives and, for an offline card,
/// the on-card balance and its transaction records (医疗交易明细, newest first). Records
/// that cannot be read leave `transactions` empty (`None`, logged) and the balance as read.
pub fn read_medical_balance(
    ex: &mut Exchanger<'_>,
    profile: &Profile,
    pin: PinEntry<'_>,
) -> Result<Option<MedicalRead>, ReadError> {
    let Some(spec) = &profile.medical else {
        return Ok(None);
    };
    let mut files = FileReader::new(ex);
    select_application(&mut files, profile)?;
    let mut medical = medical::read_medical(&mut files, spec, pin, false)?;
    if medical.source == BalanceSource::Card {
        medical.transactions = medical::read_transactions(&mut files, spec)
            .inspect_err(
                |e| tracing::warn!(error = %e, "DF04's transaction records could not be read"),
            )
            .ok();
    }
    Ok(Some(medical))
}

/// Selects the application and returns its FCI.
fn select_application(
    files: &mut FileReader<'_, '_>,
    profile: &Profile,
) -> Result<Vec<u8>, ReadError> {
    let command = Command::select_by_name(&profile.application.df_name_bytes());
    let response = files.exchanger().exchange(&command)?;
    if !response.is_ok() {
        return Err(ReadError::NotSocialSecurityCard {
            sw: response.sw,
            message: response.sw.describe(),
        });
    }
    files.application_selected();
    Ok(response.data)
}

/// A field's value from whichever file of `profile` holds it, as far as read so far.
fn field_value_of(
    profile: &Profile,
    records: &BTreeMap<u16, Records>,
    field: &str,
) -> Result<Option<String>, ReadError> {
    for file in &profile.files {
        if file.item_for_field(field).is_some() {
            let empty = Records::default();
            return field_value(file, records.get(&file.fid).unwrap_or(&empty), field);
        }
    }
    Ok(None)
}

/// The decoded value of one field of a file (all its items concatenated).
fn field_value(
    file: &FileSpec,
    records: &Records,
    field: &str,
) -> Result<Option<String>, ReadError> {
    let items: Vec<_> = file.items.iter().filter(|i| i.field == field).collect();
    let Some(first) = items.first() else {
        return Ok(None);
    };
    let mut joined = Vec::new();
    for item in &items {
        if let Some(value) = records.get(item.tag) {
            joined.extend(item.format.strip_padding(value));
        }
    }
    let present = items.iter().any(|i| records.get(i.tag).is_some());
    if !present {
        return match items.iter().find(|i| i.required) {
            Some(item) => Err(ReadError::MissingItem {
                file: file.name.clone(),
                label: item.label.clone(),
                tag: item.tag,
            }),
            None => Ok(None),
        };
    }
    decode(first.format, &joined, first.lenient).map_err(|source| ReadError::Decode {
        file: file.name.clone(),
        field: field.to_owned(),
        label: first.label.clone(),
        tag: first.tag,
        source,
    })
}

fn decode_file(file: &FileSpec, records: &Records, card: &mut CardRead) -> Result<(), ReadError> {
    let mut seen = Vec::new();
    for item in &file.items {
        if seen.contains(&item.field.as_str()) {
            continue;
        }
        seen.push(item.field.as_str());
        let value = field_value(file, records, &item.field)?;
        card.set_field(&item.field, value);
    }
    Ok(())
}

/// The fields of a file that cannot be read without a PSAM or PIN.
fn locked_fields(file: &FileSpec) -> Vec<String> {
    let mut fields: Vec<String> = Vec::new();
    for item in &file.items {
        if !fields.contains(&item.field) {
            fields.push(item.field.clone());
        }
    }
    fields
}

/// Derived fields and soft checks.
fn finish(card: &mut CardRead) {
    card.issuer_admdvs = card
        .card_id
        .as_deref()
        .and_then(|id| id.get(..6))
        .map(str::to_owned);
    if let Some(warning) = card.card_no.as_deref().and_then(card_no_warning) {
        card.warnings.push(warning);
    }
    if !card.needs_psam.is_empty() {
        card.warnings.push(format!(
            "持卡人信息需PSAM外部认证 / the holder's {} need a PSAM (RKSSSE external authentication) to read",
            card.needs_psam.join(", ")
        ));
    }
}

/// A PSAM in a reader; `backend` may be a second connection to the same readers.
pub struct PsamSlot<'a> {
    pub backend: &'a mut dyn ReaderBackend,
    pub reader: &'a str,
}

/// What a read may use beyond the card: a PSAM, the holder's PIN, records wanted.
#[derive(Default)]
pub struct ReadExtras<'a> {
    pub psam: Option<PsamSlot<'a>>,
    pub pin: Option<PinEntry<'a>>,
    pub records: bool,
}

/// Connects to the card in `reader`, reads it within one transaction and disconnects.
pub fn read_in_reader(
    backend: &mut dyn ReaderBackend,
    reader: &str,
    profiles: &ProfileSet,
) -> Result<CardRead, ReadError> {
    read_in_reader_with(backend, reader, profiles, ReadExtras::default())
}

/// Like [`read_in_reader`], with a PSAM authenticating 3.0 cards (its transaction held for
/// the whole read) and the PIN opening the medical application.
pub fn read_in_reader_with(
    backend: &mut dyn ReaderBackend,
    reader: &str,
    profiles: &ProfileSet,
    extras: ReadExtras<'_>,
) -> Result<CardRead, ReadError> {
    let ReadExtras { psam, pin, records } = extras;
    let Some(slot) = psam else {
        let options = ReadOptions {
            authenticator: None,
            pin,
            records,
        };
        return read_once(backend, reader, profiles, options);
    };
    with_card(slot.backend, slot.reader, |psam_channel| {
        let mut psam_ex = Exchanger::new(psam_channel);
        let mut psam = Psam::open(&mut psam_ex, slot.reader)?;
        let options = ReadOptions {
            authenticator: Some(&mut psam),
            pin,
            records,
        };
        read_once(backend, reader, profiles, options)
    })?
}

fn read_once(
    backend: &mut dyn ReaderBackend,
    reader: &str,
    profiles: &ProfileSet,
    options: ReadOptions<'_>,
) -> Result<CardRead, ReadError> {
    with_card(backend, reader, |channel| {
        CardReader::new(profiles).read_with(&mut Exchanger::new(channel), options)
    })?
}
