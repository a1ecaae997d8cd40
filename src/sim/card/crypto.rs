//! The simulator's cryptography: key diversification and 8-byte cryptograms, shared by the
//! virtual card ([`super::VirtualCard`]) and the virtual PSAM ([`super::VirtualPsam`]), so the
//! two agree by construction. medcard's reader never computes any of this: it asks the PSAM.
//!
//! The protocol (also in `fixtures/psam/README.md`):
//!
//! - **Diversification factor** F (8 bytes) from the 卡识别码 (card-spec.md §1.4): with
//!   `region` = the first 6 characters of the card id's hex string, F = ASCII(`region[0..4]`) ‖
//!   `"00"` ‖ `"sx"` when `region` starts with `"33"`, else ASCII(`region`) ‖ `"sx"`.
//!   (`440100…` → `"440100sx"`; `330782…` → `"330700sx"`.)
//! - **Algorithms** (the FCI's `9F0C`/`86` id): `0x01` = 2-key 3DES (TDEA EDE, K1 K2 K1,
//!   16-byte keys), `0x03` = SM4 (16-byte keys). SSF33 (`0x02`) is not implemented.
//! - **Diversified key** from a 16-byte master M: 3DES: Kd = E_M(F) ‖ E_M(F ⊕ FF×8);
//!   SM4: Kd = E_M(F ‖ (F ⊕ FF×8)) (one block).
//! - **Cryptogram** of 8 bytes D under Kd: 3DES: E_Kd(D); SM4: the first 8 bytes of
//!   E_Kd(D ‖ 00×8).
//!
//! Keys live in [`SecretKey`]s, which never print and are wiped on drop. Every key in this
//! project's fixtures is a TEST key.

use des::TdesEde2;
use des::cipher::{BlockCipherEncrypt, KeyInit};
use sm4::Sm4;
use zeroize::Zeroize;

/// Key and block size of both algorithms' keys: 16 bytes.
pub const KEY_LEN: usize = 16;

/// A card's cryptographic algorithm, by the id in its FCI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// `0x01`: 2-key triple DES (EDE, K1 K2 K1).
    Des,
    /// `0x03`: SM4 (GB/T 32907).
    Sm4,
}

impl Algorithm {
    /// The id in the FCI and in P2 of the PSAM's `80 1A`.
    pub const fn id(self) -> u8 {
        match self {
            Algorithm::Des => 0x01,
            Algorithm::Sm4 => 0x03,
        }
    }

    /// The algorithm with FCI id `id`; `None` for SSF33 (`0x02`) and unknown ids.
    pub const fn from_id(id: u8) -> Option<Algorithm> {
        match id {
            0x01 => Some(Algorithm::Des),
            0x03 => Some(Algorithm::Sm4),
            _ => None,
        }
    }

    /// The name used in PSAM files: `"des"` or `"sm4"`.
    pub const fn name(self) -> &'static str {
        match self {
            Algorithm::Des => "des",
            Algorithm::Sm4 => "sm4",
        }
    }

    /// The algorithm named `name` in a PSAM file (`"des"`, `"sm4"`, any case).
    pub fn from_name(name: &str) -> Option<Algorithm> {
        match name.to_ascii_lowercase().as_str() {
            "des" | "3des" => Some(Algorithm::Des),
            "sm4" => Some(Algorithm::Sm4),
            _ => None,
        }
    }
}

/// A 16-byte key: compared by value, never printed, wiped when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey([u8; KEY_LEN]);

impl SecretKey {
    pub fn new(bytes: [u8; KEY_LEN]) -> SecretKey {
        SecretKey(bytes)
    }

    /// A key written as 32 hex digits (spaces allowed between them).
    pub fn from_hex(text: &str) -> Result<SecretKey, KeyError> {
        let compact: String = text.split_whitespace().collect();
        let mut bytes = hex::decode(&compact).map_err(KeyError::BadHex)?;
        let key =
            <[u8; KEY_LEN]>::try_from(bytes.as_slice()).map_err(|_| KeyError::Length(bytes.len()));
        bytes.zeroize();
        key.map(SecretKey)
    }

    /// The key bytes.
    pub fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

/// Why text is not a key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KeyError {
    #[error("bad hex: {0}")]
    BadHex(#[source] hex::FromHexError),
    #[error("a key is {KEY_LEN} bytes (32 hex digits), not {0}")]
    Length(usize),
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(…)")
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// The card's factor F: the same rule the reader side uses (card-spec.md §1.4).
pub use crate::psam::diversification_factor;

/// The card key Kd diversified from `master` with factor F.
pub fn diversify(algorithm: Algorithm, master: &SecretKey, factor: &[u8; 8]) -> SecretKey {
    let mut inverted = *factor;
    inverted.iter_mut().for_each(|b| *b ^= 0xFF);
    let mut key = [0u8; KEY_LEN];
    match algorithm {
        Algorithm::Des => {
            let cipher = TdesEde2::new(&(*master.bytes()).into());
            key[..8].copy_from_slice(&encrypt_des(&cipher, factor));
            key[8..].copy_from_slice(&encrypt_des(&cipher, &inverted));
        }
        Algorithm::Sm4 => {
            let mut block = [0u8; KEY_LEN];
            block[..8].copy_from_slice(factor);
            block[8..].copy_from_slice(&inverted);
            key = encrypt_sm4(master, &block);
            block.zeroize();
        }
    }
    inverted.zeroize();
    let secret = SecretKey(key);
    key.zeroize();
    secret
}

/// The 8-byte cryptogram of `data` under the card key `key`.
pub fn cryptogram(algorithm: Algorithm, key: &SecretKey, data: &[u8; 8]) -> [u8; 8] {
    match algorithm {
        Algorithm::Des => encrypt_des(&TdesEde2::new(&(*key.bytes()).into()), data),
        Algorithm::Sm4 => {
            let mut block = [0u8; KEY_LEN];
            block[..8].copy_from_slice(data);
            let mut out = encrypt_sm4(key, &block);
            let mut cryptogram = [0u8; 8];
            cryptogram.copy_from_slice(&out[..8]);
            out.zeroize();
            cryptogram
        }
    }
}

fn encrypt_des(cipher: &TdesEde2, block: &[u8; 8]) -> [u8; 8] {
    let mut block = (*block).into();
    cipher.encrypt_block(&mut block);
    block.into()
}

fn encrypt_sm4(key: &SecretKey, block: &[u8; KEY_LEN]) -> [u8; KEY_LEN] {
    let cipher = Sm4::new(&(*key.bytes()).into());
    let mut block = (*block).into();
    cipher.encrypt_block(&mut block);
    block.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(hex: &str) -> SecretKey {
        SecretKey::from_hex(hex).unwrap()
    }

    fn bytes8(text: &str) -> [u8; 8] {
        hex::decode(text).unwrap().try_into().unwrap()
    }

    fn hex16(key: &SecretKey) -> String {
        hex::encode_upper(key.bytes())
    }

    #[test]
    fn sm4_matches_the_gb_t_32907_vector() {
        // GB/T 32907-2016 appendix A: key = plaintext = 0123456789ABCDEFFEDCBA9876543210.
        let k = key("0123456789ABCDEFFEDCBA9876543210");
        let out = encrypt_sm4(&k, k.bytes());
        assert_eq!(hex::encode_upper(out), "681EDF34D206965E86B3E94F536E4246");
        // The cryptogram is that block's first half when D ‖ 00×8 is the plaintext.
        let d = bytes8("0123456789ABCDEF");
        assert_ne!(cryptogram(Algorithm::Sm4, &k, &d), [0u8; 8]);
    }

    #[test]
    fn des_matches_the_fips_vector_and_openssl() {
        // FIPS 81 / the classic "Now is t" vector: single DES = 3DES with K1 = K2.
        let single = key("0123456789ABCDEF0123456789ABCDEF");
        assert_eq!(
            cryptogram(Algorithm::Des, &single, &bytes8("4E6F772069732074")),
            bytes8("3FA40E8A984D4815")
        );
        // 2-key EDE, checked with `openssl enc -des-ede-ecb -nopad`.
        let two = key("0123456789ABCDEFFEDCBA9876543210");
        assert_eq!(
            cryptogram(Algorithm::Des, &two, &bytes8("4E6F772069732074")),
            bytes8("D80A0D8B2BAE5E4E")
        );
    }

    #[test]
    fn factor_follows_the_region_rule() {
        // "33" regions: the first four digits ‖ "00" (a county-level code maps to its city).
        let expected: [(&str, Option<&[u8; 8]>); 5] = [
            ("440100D156000005C5F96E75C454FA23", Some(b"440100sx")),
            ("330782D156000005", Some(b"330700sx")),
            ("330100", Some(b"330100sx")),
            ("44010", None),
            ("4401é0", None),
        ];
        for (card_id, factor) in expected {
            assert_eq!(
                diversification_factor(card_id).as_ref(),
                factor,
                "{card_id}"
            );
        }
    }

    // Expected values computed independently with Python `cryptography` (OpenSSL) and
    // cross-checked with `openssl enc -sm4-ecb / -des-ede-ecb -nopad`.
    /// Diversifies `master` for `card_id`, checks Kd, then the cryptogram of `data` under it.
    fn assert_diversifies(
        algorithm: Algorithm,
        (card_id, master): (&str, &str),
        kd_hex: &str,
        (data, expected): (&str, &str),
    ) {
        let f = diversification_factor(card_id).unwrap();
        let kd = diversify(algorithm, &key(master), &f);
        assert_eq!(hex16(&kd), kd_hex);
        assert_eq!(cryptogram(algorithm, &kd, &bytes8(data)), bytes8(expected));
    }

    #[test]
    fn sm4_diversification_and_cryptogram() {
        assert_diversifies(
            Algorithm::Sm4,
            (
                "440100D156000005C5F96E75C454FA23",
                "11223344556677888877665544332211",
            ),
            "D435E86019F9376DAFC46DFADF02CA36",
            ("0102030405060708", "91D11EA3853F193C"),
        );
    }

    #[test]
    fn des_diversification_and_cryptogram() {
        assert_diversifies(
            Algorithm::Des,
            (
                "330782D156000005AAAAAAAAAAAAAAAA",
                "0123456789ABCDEFFEDCBA9876543210",
            ),
            "69249A15CCF3493900F02832F9F66C01",
            ("0102030405060708", "7B0DF88575A9E9AD"),
        );
    }

    #[test]
    fn algorithm_ids_and_names() {
        assert_eq!(Algorithm::from_id(0x01), Some(Algorithm::Des));
        assert_eq!(Algorithm::from_id(0x03), Some(Algorithm::Sm4));
        assert_eq!(Algorithm::from_id(0x02), None);
        assert_eq!(Algorithm::from_name("SM4"), Some(Algorithm::Sm4));
        assert_eq!(Algorithm::from_name("ssf33"), None);
        for a in [Algorithm::Des, Algorithm::Sm4] {
            assert_eq!(Algorithm::from_id(a.id()), Some(a));
            assert_eq!(Algorithm::from_name(a.name()), Some(a));
        }
    }

    #[test]
    fn keys_parse_and_never_print() {
        let k = key("00112233 44556677 8899AABB CCDDEEFF");
        assert_eq!(k.bytes()[15], 0xFF);
        assert_eq!(format!("{k:?}"), "SecretKey(…)");
        let short = SecretKey::from_hex("0011").unwrap_err();
        assert!(short.to_string().contains("16 bytes"), "{short}");
        let bad = SecretKey::from_hex("zz").unwrap_err();
        assert!(bad.to_string().contains("bad hex"), "{bad}");
    }
}
