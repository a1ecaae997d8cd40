//! Masking personal data for logs: an ID number keeps its first and last four characters,
//! a name its first character, a scanned code (a 医保电子凭证 QR code) its first four and
//! its length. Nothing unmasked goes to a log line.

/// `440301199001010036` → `4403**********0036`.
pub fn certno(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 8))
}

/// `王小明` → `王*`.
pub fn name(value: &str) -> String {
    match value.chars().next() {
        Some(first) => format!("{first}*"),
        None => String::new(),
    }
}

/// `ABCDEFGHIJ` → `ABCD…(10)`: a code's first four characters and its length in characters.
pub fn code(value: &str) -> String {
    let head: String = value.chars().take(4).collect();
    format!("{head}…({})", value.chars().count())
}

#[cfg(test)]
mod tests {
    #[test]
    fn masks_id_numbers_and_names() {
        assert_eq!(super::certno("440301199001010036"), "4403**********0036");
        assert_eq!(super::certno("1234"), "****");
        assert_eq!(super::name("王小明"), "王*");
        assert_eq!(super::name(""), "");
        assert_eq!(super::code("ABCDEFGHIJ"), "ABCD…(10)");
        assert_eq!(super::code("医保"), "医保…(2)");
    }
}
