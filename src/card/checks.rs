//! Soft checks on decoded values: a failing check is a warning for the operator, never a
//! refused card (real cards in circulation fail them, card-spec.md §2.2).

/// 卡号's check character (V2.0 Appendix A): C9 = 11 − (Σ Ci·Wi mod 11) over the first
/// eight characters with W = 3 7 9 10 5 8 4 2, letters A=10, B=11, …; 10 → 'X', 11 → '0'.
pub fn card_no_check_char(body: &str) -> Option<char> {
    const WEIGHTS: [u32; 8] = [3, 7, 9, 10, 5, 8, 4, 2];
    let chars: Vec<char> = body.chars().collect();
    if chars.len() < 8 {
        return None;
    }
    let mut sum = 0;
    for (c, w) in chars.iter().take(8).zip(WEIGHTS) {
        let value = match c {
            '0'..='9' => c.to_digit(10)?,
            'A'..='Z' => u32::from(*c) - u32::from('A') + 10,
            _ => return None,
        };
        sum += value * w;
    }
    match 11 - sum % 11 {
        10 => Some('X'),
        11 => Some('0'),
        n => char::from_digit(n, 10),
    }
}

/// A warning when 卡号 fails its check character.
pub fn card_no_warning(card_no: &str) -> Option<String> {
    let expected = card_no_check_char(card_no);
    let actual = card_no.chars().nth(8);
    match (expected, actual) {
        (Some(e), Some(a)) if e == a => None,
        (Some(e), Some(a)) => Some(format!(
            "卡号 {card_no}: check character is {a}, expected {e} (card number may be mistyped or non-standard)"
        )),
        _ => Some(format!(
            "卡号 {card_no:?} is not 9 characters of digits and capital letters"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_card_numbers_from_the_spec() {
        // card-spec.md §2.2: valid for HA1046924, X00000019, 183760642, D2143569X.
        for no in ["HA1046924", "X00000019", "183760642", "D2143569X"] {
            assert_eq!(card_no_warning(no), None, "{no}");
        }
    }

    #[test]
    fn real_cards_that_fail_the_check_get_a_warning() {
        for no in ["A21472424", "AI666666X"] {
            let warning = card_no_warning(no).unwrap();
            assert!(warning.contains(no), "{warning}");
        }
        assert!(card_no_warning("A12").unwrap().contains("not 9 characters"));
    }
}
