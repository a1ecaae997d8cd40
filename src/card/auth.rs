//! Authentication on the user card, driven by an [`Authenticator`] (the PSAM): internal
//! authentication (is the card genuine?) and external authentication with RKSSSE (opens a
//! 3.0 card's holder file). An external authentication is sent once per read and never
//! retried: every failure costs the card a try and enough of them lock it.

use super::ReadError;
use crate::apdu::{Command, Exchanger, Redaction};
use crate::psam::{Authenticator, KeyUsage};
use iso7816_tlv::ber::{Tag, Tlv, Value};

/// The algorithm id in a SELECT answer's FCI: `6F { A5 { 9F0C { 86 01 xx } } }`.
pub fn fci_algorithm(fci: &[u8]) -> Option<u8> {
    let tlv = Tlv::from_bytes(fci).ok()?;
    let issuer_data = tlv.find(&Tag::try_from(0x9F0C_u16).ok()?)?;
    let Value::Primitive(bytes) = issuer_data.value() else {
        return None;
    };
    let inner = Tlv::from_bytes(bytes).ok()?;
    match (inner.tag().to_bytes(), inner.value()) {
        ([0x86], Value::Primitive(id)) if id.len() == 1 => Some(id[0]),
        _ => None,
    }
}

/// Eight bytes from the operating system's random source.
fn random_8() -> Result<[u8; 8], ReadError> {
    use std::io::Read;
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(ReadError::Random)?;
    Ok(bytes)
}

/// INTERNAL AUTHENTICATE `00 88 00 00 10 <factor ‖ random>`: the card encrypts the random
/// with its internal key; the PSAM computes what a genuine card must answer.
pub fn internal_authenticate(
    ex: &mut Exchanger<'_>,
    auth: &mut dyn Authenticator,
    algorithm: u8,
    factor: &[u8; 8],
) -> Result<(), ReadError> {
    let random = random_8()?;
    let mut data = factor.to_vec();
    data.extend_from_slice(&random);
    let command = Command::new(0x00, 0x88, 0x00, 0x00)
        .with_data(data)
        .with_le(8);
    let answer = ex.expect_ok(&command)?;
    let expected = auth.cryptogram(KeyUsage::Internal, algorithm, factor, &random)?;
    if answer != expected {
        return Err(ReadError::NotGenuine);
    }
    Ok(())
}

/// GET CHALLENGE, the PSAM's cryptogram of it, EXTERNAL AUTHENTICATE with key `key_id`.
pub fn external_authenticate(
    ex: &mut Exchanger<'_>,
    auth: &mut dyn Authenticator,
    algorithm: u8,
    factor: &[u8; 8],
    key_id: u8,
) -> Result<(), ReadError> {
    let challenge: [u8; 8] = ex
        .expect_ok(&Command::new(0x00, 0x84, 0x00, 0x00).with_le(8))?
        .try_into()
        .map_err(|bytes: Vec<u8>| ReadError::Malformed {
            file: "GET CHALLENGE".into(),
            detail: format!("{} bytes instead of 8", bytes.len()),
        })?;
    let cryptogram = auth.cryptogram(KeyUsage::Rkssse, algorithm, factor, &challenge)?;
    let mut data = cryptogram.to_vec();
    data.extend_from_slice(&challenge);
    let command = Command::new(0x00, 0x82, 0x00, key_id)
        .with_data(data)
        .redacted(Redaction::CommandData);
    let response = ex.exchange(&command)?;
    if response.is_ok() {
        Ok(())
    } else {
        Err(ReadError::ExternalAuth {
            sw: response.sw,
            message: response.sw.describe(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_from_real_fci() {
        // card-spec.md §1.1: 6F1C 840F <name> A509 8801 1E 9F0C03 860103 → SM4.
        let fci =
            hex::decode("6F1C840F7378312E73682EC9E7BBE1B1A3D5CFA50988011E9F0C03860103").unwrap();
        assert_eq!(fci_algorithm(&fci), Some(0x03));
    }

    #[test]
    fn fci_without_algorithm_or_garbage_gives_none() {
        let fci = hex::decode("6F11840F7378312E73682EC9E7BBE1B1A3D5CF").unwrap();
        assert_eq!(fci_algorithm(&fci), None);
        assert_eq!(fci_algorithm(&[0x6F, 0x05, 0x01]), None);
        assert_eq!(fci_algorithm(&[]), None);
    }
}
