//! The medical-insurance application (DF04, 医疗保险) of offline-mode cards: the personal
//! account balance and the year's totals (GET BALANCE), and the transaction records — all
//! behind the holder's PIN (card-spec.md §4). Online-mode cards keep the balance at the
//! insurer; the card then says so and nothing more is read.

use super::files::FileReader;
use super::model::{Balance, BalanceSource};
use super::pin::{PinEntry, PinState, pin_state, verify_pin_entry};
use super::records::Records;
use super::{ReadError, field_value};
use crate::apdu::{Command, StatusWord};
use crate::profile::{MEDICAL_MODE_FIELD, MedicalSpec, decode};
use std::collections::BTreeMap;

/// What DF04 gave: where the balance lives, the balance itself for offline cards, and the
/// transaction records when asked for.
pub struct MedicalRead {
    pub source: BalanceSource,
    pub balance: Option<Balance>,
    pub transactions: Option<Vec<BTreeMap<String, String>>>,
}

/// Selects DF04, verifies the PIN and reads what the card's mode allows.
pub fn read_medical(
    files: &mut FileReader<'_, '_>,
    spec: &MedicalSpec,
    pin: PinEntry<'_>,
    with_records: bool,
) -> Result<MedicalRead, ReadError> {
    let select = Command::select_by_name(&hex::decode(&spec.df_name).unwrap_or_default());
    let response = files.exchanger().exchange(&select)?;
    if !response.is_ok() {
        return Ok(MedicalRead {
            source: BalanceSource::NoMedicalApplication,
            balance: None,
            transactions: None,
        });
    }
    files.application_selected();
    // Ask first (costs no try): a card without a PIN is not sent one, a locked one is not
    // sent a doomed attempt.
    match pin_state(files.exchanger())? {
        PinState::Ok => {}
        PinState::Required { .. } => verify_pin_entry(files.exchanger(), pin)?,
        PinState::Locked => return Err(ReadError::PinLocked),
    }

    let mode_file = &spec.mode_file;
    let mut records = Records::default();
    let items: Vec<_> = mode_file.items.iter().collect();
    files.read(mode_file, &items, &mut records)?;
    let mode = field_value(mode_file, &records, MEDICAL_MODE_FIELD)?;
    if mode.as_deref() != Some(spec.offline_mode.as_str()) {
        return Ok(MedicalRead {
            source: BalanceSource::Insurer,
            balance: None,
            transactions: None,
        });
    }
    let balance = read_balance(files, spec)?;
    let transactions = if with_records {
        Some(read_transactions(files, spec)?)
    } else {
        None
    };
    Ok(MedicalRead {
        source: BalanceSource::Card,
        balance: Some(balance),
        transactions,
    })
}

fn read_balance(files: &mut FileReader<'_, '_>, spec: &MedicalSpec) -> Result<Balance, ReadError> {
    let b = &spec.balance;
    let account = get_balance(files, b.cla, b.ins, b.account_p2, 4)?;
    let self_pay = get_balance(files, b.cla, b.ins, b.annual_self_pay_p2, 6)?;
    let fund_pay = get_balance(files, b.cla, b.ins, b.annual_fund_pay_p2, 6)?;
    let amount = |bytes: &[u8], what: &str| -> Result<String, ReadError> {
        decode(crate::profile::Format::AmountFen, &bytes[..4], false)
            .map_err(|e| malformed(format!("{what}: {e}")))?
            .ok_or_else(|| malformed(format!("{what} is empty")))
    };
    let year = |bytes: &[u8]| hex::encode_upper(&bytes[4..6]);
    if year(&self_pay) != year(&fund_pay) || !year(&self_pay).bytes().all(|c| c.is_ascii_digit()) {
        return Err(malformed(format!(
            "the annual totals name years {} and {}",
            year(&self_pay),
            year(&fund_pay)
        )));
    }
    Ok(Balance {
        balc: amount(&account, "account balance")?,
        annual_self_pay: amount(&self_pay, "annual self-pay")?,
        annual_fund_pay: amount(&fund_pay, "annual fund-pay")?,
        year: year(&self_pay),
        source: BalanceSource::Card,
    })
}

/// GET BALANCE for one P2; the answer must be `length` bytes.
fn get_balance(
    files: &mut FileReader<'_, '_>,
    cla: u8,
    ins: u8,
    p2: u8,
    length: u8,
) -> Result<Vec<u8>, ReadError> {
    let command = Command::new(cla, ins, 0x00, p2).with_le(u16::from(length));
    let data = files.exchanger().expect_ok(&command)?;
    if data.len() != usize::from(length) {
        return Err(malformed(format!(
            "GET BALANCE P2={p2:02X} answered {} bytes, {length} expected",
            data.len()
        )));
    }
    Ok(data)
}

/// Records 1 (newest) onwards until the card says there are no more (DF04 selected, the
/// PIN verified).
pub(super) fn read_transactions(
    files: &mut FileReader<'_, '_>,
    spec: &MedicalSpec,
) -> Result<Vec<BTreeMap<String, String>>, ReadError> {
    let t = &spec.transactions;
    let mut out = Vec::new();
    for number in 1..=t.max_records {
        let command = Command::read_record(number, t.sfi, 0b100, u16::from(t.record_length))
            .redacted(crate::apdu::Redaction::ResponseData);
        let response = files.exchanger().exchange(&command)?;
        match response.sw {
            StatusWord::OK => {}
            StatusWord::RECORD_NOT_FOUND => break,
            sw => return Err(ReadError::Apdu(crate::apdu::status_error(sw, &command))),
        }
        if response.data.len() < usize::from(t.record_length) {
            return Err(malformed(format!(
                "transaction record {number} is {} bytes",
                response.data.len()
            )));
        }
        let mut record = BTreeMap::new();
        for field in &t.fields {
            let start = usize::from(field.offset);
            let bytes = &response.data[start..start + usize::from(field.length)];
            let value = decode(field.format, bytes, false).map_err(|e| {
                malformed(format!("transaction record {number}, {}: {e}", field.name))
            })?;
            record.insert(field.name.clone(), value.unwrap_or_default());
        }
        out.push(record);
    }
    Ok(out)
}

fn malformed(detail: String) -> ReadError {
    ReadError::Malformed {
        file: "DF04".into(),
        detail,
    }
}
