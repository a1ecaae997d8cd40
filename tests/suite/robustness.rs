//! Bad input gets a clear error, never a panic: random APDUs at the virtual card and PSAM,
//! random and truncated responses at the card reader, random bytes at the decoders.

use crate::common;

use medcard::apdu::Exchanger;
use medcard::apdu::{CardChannel, ReaderError};
use medcard::card::CardReader;
use medcard::profile::{Format, ProfileSet, decode};
use medcard::sim::card::Chip;

/// xorshift64*: deterministic, so a failure can be replayed.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn bytes(&mut self, max_len: usize) -> Vec<u8> {
        let len = (self.next() % (max_len as u64 + 1)) as usize;
        (0..len).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn the_virtual_card_and_psam_answer_any_apdu_without_panicking() {
    let mut random = Random(0x9E37_79B9_7F4A_7C15);
    for name in ["xiaowang", "gen3", "no-4e", "gen1"] {
        let mut chip = Chip::load(&common::fixture(name)).unwrap();
        for _ in 0..20_000 {
            let mut apdu = random.bytes(40);
            // Half the time a plausible header, to get past CLA/INS checks.
            if apdu.len() >= 4 && random.next().is_multiple_of(2) {
                apdu[0] = [0x00, 0x80, 0xB0][(random.next() % 3) as usize];
                apdu[1] =
                    [0xA4, 0xB2, 0xC0, 0x20, 0x84, 0x82, 0x88, 0x26][(random.next() % 8) as usize];
            }
            if let Some(reply) = chip.process(&apdu) {
                assert!(
                    reply.len() >= 2,
                    "{name}: reply without a status word to {apdu:02X?}"
                );
            }
        }
    }
    let psam =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/psam/test-sm4.toml");
    let mut chip = Chip::load(&psam).unwrap();
    for _ in 0..20_000 {
        let mut apdu = random.bytes(30);
        if apdu.len() >= 4 {
            apdu[0] = 0x80;
            apdu[1] = [0x1A, 0xFA, 0xB0][(random.next() % 3) as usize];
        }
        if let Some(reply) = chip.process(&apdu) {
            assert!(reply.len() >= 2);
        }
    }
}

/// A card that answers every command with random bytes.
struct NoiseCard(Random);

impl CardChannel for NoiseCard {
    fn atr(&self) -> &[u8] {
        &[0x3B, 0x6D, 0x00, 0x00]
    }
    fn transmit(&mut self, _command: &[u8]) -> Result<Vec<u8>, ReaderError> {
        let mut reply = self.0.bytes(80);
        // Often end in a real status word so the reader gets further into the card.
        if !self.0.next().is_multiple_of(3) {
            let sw = [
                [0x90, 0x00],
                [0x61, 0x05],
                [0x6C, 0x10],
                [0x6A, 0x83],
                [0x6A, 0x86],
            ][(self.0.next() % 5) as usize];
            reply.extend_from_slice(&sw);
        }
        Ok(reply)
    }
}

#[test]
fn the_card_reader_turns_garbage_responses_into_errors() {
    let profiles = ProfileSet::built_in().unwrap();
    let reader = CardReader::new(&profiles);
    let mut outcomes = (0, 0);
    for seed in 1..3_000u64 {
        let mut card = NoiseCard(Random(seed));
        match reader.read(&mut Exchanger::new(&mut card)) {
            Ok(_) => outcomes.0 += 1,
            Err(e) => {
                assert!(e.reader_code().0 < 0, "an error with code 0: {e}");
                assert!(!e.to_string().is_empty());
                outcomes.1 += 1;
            }
        }
    }
    assert!(outcomes.1 > 0, "noise must produce errors: {outcomes:?}");
}

/// A real card image whose replies get cut short at a random point.
struct TruncatingCard {
    chip: Chip,
    random: Random,
}

impl CardChannel for TruncatingCard {
    fn atr(&self) -> &[u8] {
        self.chip.atr()
    }
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, ReaderError> {
        let mut reply = self.chip.process(command).unwrap_or_default();
        if self.random.next().is_multiple_of(4) {
            let keep = (self.random.next() as usize) % (reply.len() + 1);
            reply.truncate(keep);
        }
        Ok(reply)
    }
}

#[test]
fn truncated_responses_from_a_real_card_image_are_errors_not_panics() {
    let profiles = ProfileSet::built_in().unwrap();
    for seed in 1..2_000u64 {
        let mut card = TruncatingCard {
            chip: Chip::load(&common::fixture("long-name")).unwrap(),
            random: Random(seed),
        };
        if let Ok(read) = CardReader::new(&profiles).read(&mut Exchanger::new(&mut card)) {
            // Whatever got through intact must be the card's own data.
            if let Some(name) = read.holder.psn_name {
                assert!(
                    "阿不都热合曼·买买提艾力·吐尔逊托合提".starts_with(&name),
                    "{name}"
                );
            }
        }
    }
}

#[test]
fn decoders_accept_or_refuse_any_bytes_without_panicking() {
    let mut random = Random(42);
    let formats = [
        Format::Cn,
        Format::An,
        Format::Gbk,
        Format::B,
        Format::Date,
        Format::AmountFen,
        Format::Uint,
    ];
    for _ in 0..50_000 {
        let bytes = random.bytes(24);
        for format in formats {
            let _ = decode(format, &bytes, random.next().is_multiple_of(2));
        }
    }
}
