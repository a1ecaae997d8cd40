//! Leaf. The national platform's field rules for text that medcard takes in and sends on
//! (insurer-api.md's field tables): each [`Field`] has its data element and its `C(n)`
//! length; [`Field::check`] refuses a value that is longer, or that holds a character that
//! does not print ([`is_non_printing`]: C0/C1 controls with CR, LF, ESC and NUL, the bidi
//! overrides and isolates, zero-width characters, the BOM); [`certno`] checks an ID number
//! by its document type (`psn_cert_type`): the 18-character resident ID (GB 11643, ISO 7064
//! MOD 11-2 check character), the foreigner's permanent residence ID (new 18-character
//! `9…` or old 15-character), the residence permit of Hong Kong, Macau and Taiwan residents,
//! the travel permits, passports and other documents. [`printable`] escapes what does not
//! print, for text that is shown or printed whatever its source.
//!
//! Lengths are counted in characters: the tables give `C(n)` as 字符型 of length n, and
//! names such as `dept_name` C(100) hold Chinese text. The socket's parameters
//! (`serve::settlement`) and the settlement service (`settle::service`, before a call to the
//! insurer) use the same rules.

use crate::clock::Date;
use std::borrow::Cow;

/// A text field of the platform: its name on medcard's socket, the platform's data element
/// and its length `C(max_chars)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    pub element: &'static str,
    pub max_chars: usize,
}

impl Field {
    const fn c(name: &'static str, element: &'static str, max_chars: usize) -> Field {
        Field {
            name,
            element,
            max_chars,
        }
    }

    /// `value` fits `C(max_chars)` and every character prints.
    pub fn check(&self, value: &str) -> Result<(), FieldError> {
        let mut chars = 0;
        for (position, c) in value.chars().enumerate() {
            if is_non_printing(c) {
                return Err(FieldError::NonPrinting {
                    field: self.name.to_owned(),
                    code_point: format!("U+{:04X}", u32::from(c)),
                    position: position + 1,
                });
            }
            chars += 1;
        }
        if chars > self.max_chars {
            return Err(FieldError::TooLong {
                field: self.name.to_owned(),
                element: self.element,
                max: self.max_chars,
                chars,
            });
        }
        Ok(())
    }
}

/// The envelope's 经办人 (an operator or a terminal).
pub const OPTER: Field = Field::c("opter", "opter", 30);
/// The envelope's 经办人姓名.
pub const OPTER_NAME: Field = Field::c("opter_name", "opter_name", 50);
/// 2201 科室编码.
pub const DEPT_CODE: Field = Field::c("dept_code", "dept_code", 30);
/// 2201 科室名称.
pub const DEPT_NAME: Field = Field::c("dept_name", "dept_name", 100);
/// 2201 医师姓名.
pub const DR_NAME: Field = Field::c("dr_name", "dr_name", 50);
/// 2201 医师编码.
pub const ATDDR_NO: Field = Field::c("atddr_no", "atddr_no", 30);
/// 2201 科别.
pub const CATY: Field = Field::c("caty", "caty", 6);
/// 2203 医疗类别.
pub const MED_TYPE: Field = Field::c("med_type", "med_type", 6);
/// 2201 住院/门诊号 (the hospital's own visit number).
pub const IPT_OTP_NO: Field = Field::c("ipt_otp_no", "ipt_otp_no", 30);
/// 2203 主要病情描述.
pub const MAIN_COND_DSCR: Field = Field::c("main_cond_dscr", "main_cond_dscr", 1000);
/// 2204 医保目录编码, a bill line's `code`.
pub const MED_LIST_CODG: Field = Field::c("code", "med_list_codg", 50);
/// 2204 院内目录编码, a bill line's `medins_code`.
pub const MEDINS_LIST_CODG: Field = Field::c("medins_code", "medins_list_codg", 150);
/// 医药机构目录名称, a bill line's `name`.
pub const MEDINS_LIST_NAME: Field = Field::c("name", "medins_list_name", 200);
/// 就诊ID.
pub const MDTRT_ID: Field = Field::c("mdtrt_id", "mdtrt_id", 30);
/// 结算ID.
pub const SETL_ID: Field = Field::c("setl_id", "setl_id", 30);
/// medcard's preview id: `P` and the 收费批次号 (chrg_bchno C(30)).
pub const PREVIEW_ID: Field = Field::c("preview_id", "chrg_bchno", 31);
/// 1101 证件号码.
pub const CERTNO: Field = Field::c("certno", "certno", 50);
/// 1101 人员证件类型.
pub const PSN_CERT_TYPE: Field = Field::c("psn_cert_type", "psn_cert_type", 6);

/// Why a field's value is refused; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error(
        "{field} holds {chars} characters; the platform's {element} is C({max}): at most \
         {max} characters"
    )]
    TooLong {
        field: String,
        element: &'static str,
        max: usize,
        chars: usize,
    },
    #[error(
        "{field} holds the non-printing character {code_point} at character {position} \
         (control, bidi and zero-width characters are refused)"
    )]
    NonPrinting {
        field: String,
        code_point: String,
        position: usize,
    },
    #[error("{field} is not {expected}")]
    Format {
        field: String,
        expected: &'static str,
    },
    #[error(
        "{field}: the check character is {found}, the number's digits give {expected} \
         (ISO 7064 MOD 11-2): a digit was mistyped"
    )]
    CheckCharacter {
        field: String,
        found: char,
        expected: char,
    },
    #[error(
        "psn_cert_type {0:?} is not a document type of the national dictionary (01 居民身份证, \
         04/05 港澳, 06 台湾, 07 外国人永久居留证, 08 外国人护照, 16 中国护照, 17 港澳台居民\
         居住证, 02, 03, 90, 99)"
    )]
    UnknownDocumentType(String),
}

impl FieldError {
    /// The same error with the field named inside `parent` (`items[2]` → `items[2].name`).
    pub fn within(self, parent: &str) -> FieldError {
        let inner = |field: String| format!("{parent}.{field}");
        match self {
            FieldError::TooLong {
                field,
                element,
                max,
                chars,
            } => FieldError::TooLong {
                field: inner(field),
                element,
                max,
                chars,
            },
            FieldError::NonPrinting {
                field,
                code_point,
                position,
            } => FieldError::NonPrinting {
                field: inner(field),
                code_point,
                position,
            },
            FieldError::Format { field, expected } => FieldError::Format {
                field: inner(field),
                expected,
            },
            FieldError::CheckCharacter {
                field,
                found,
                expected,
            } => FieldError::CheckCharacter {
                field: inner(field),
                found,
                expected,
            },
            other @ FieldError::UnknownDocumentType(_) => other,
        }
    }
}

/// A character that does not print: C0 and C1 controls (NUL, CR, LF, ESC, DEL …), the
/// zero-width characters and direction marks (U+200B–U+200F), the line and paragraph
/// separators and bidi embeddings and overrides (U+2028–U+202E), the invisible operators
/// and bidi isolates (U+2060–U+206F), the Arabic letter mark (U+061C), the interlinear
/// annotation characters (U+FFF9–U+FFFB) and the byte-order mark (U+FEFF).
pub fn is_non_printing(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
        )
}

/// `text` with every non-printing character written as `\u{…}`, so nothing in it can move
/// the cursor, split a line, reorder what follows or reach a printer as a command.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_non_printing) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_non_printing(c) {
            out.push_str(&format!("\\u{{{:X}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `psn_cert_type` when a request names none: 01 居民身份证.
pub const RESIDENT_ID_CARD: &str = "01";

/// Checks `certno` by the rule of its document type `psn_cert_type` (the national
/// dictionary's 人员证件类型): 01 the 18-character resident ID with its check character;
/// 07 the foreigner's permanent residence ID (18 characters starting `9` with the check
/// character, or the old 3 letters + 12 digits); 17 the residence permit of Hong Kong,
/// Macau and Taiwan residents (18 characters starting 81, 82, 83, with the check
/// character); 04 / 05 the Hong Kong / Macau travel permit (`H` / `M` + 8 or 10 digits);
/// 06 the Taiwan travel permit (8 digits, or 10 letters and digits); 08 / 16 passports (5–20
/// letters and digits); 02, 03, 90, 99 any printing text of C(50).
pub fn certno(psn_cert_type: &str, value: &str) -> Result<(), FieldError> {
    CERTNO.check(value)?;
    PSN_CERT_TYPE.check(psn_cert_type)?;
    let format = |expected| {
        Err(FieldError::Format {
            field: CERTNO.name.to_owned(),
            expected,
        })
    };
    match psn_cert_type {
        RESIDENT_ID_CARD => match value.as_bytes().first() {
            Some(b'1'..=b'8') => gb11643(value),
            Some(b'9') => format(
                "a resident ID number (a number starting with 9 is a foreigner's permanent \
                 residence ID: give psn_cert_type 07)",
            ),
            _ => format("a resident ID number: 17 digits and a check character (0–9 or X)"),
        },
        "07" if value.starts_with('9') => gb11643(value),
        "07" if shape(value, &[(3, upper), (12, digit)]) => Ok(()),
        "07" => format(
            "a foreigner's permanent residence ID: 18 characters starting with 9, or 3 \
             letters and 12 digits",
        ),
        "17" if ["81", "82", "83"].iter().any(|p| value.starts_with(p)) => gb11643(value),
        "17" => format(
            "a residence permit number of a Hong Kong, Macau or Taiwan resident (18 \
             characters starting 81, 82 or 83)",
        ),
        "04" | "05" => {
            let letter = if psn_cert_type == "04" { b'H' } else { b'M' };
            let rest = value.strip_prefix(char::from(letter)).unwrap_or("");
            if value.as_bytes().first() == Some(&letter)
                && (shape(rest, &[(8, digit)]) || shape(rest, &[(10, digit)]))
            {
                Ok(())
            } else if letter == b'H' {
                format("a Hong Kong travel permit number: H and 8 or 10 digits")
            } else {
                format("a Macau travel permit number: M and 8 or 10 digits")
            }
        }
        "06" if shape(value, &[(8, digit)]) || shape(value, &[(10, alphanumeric)]) => Ok(()),
        "06" => format("a Taiwan travel permit number: 8 digits, or 10 letters and digits"),
        "08" | "16" if (5..=20).contains(&value.len()) && value.bytes().all(alphanumeric) => Ok(()),
        "08" | "16" => format("a passport number: 5–20 letters and digits"),
        "02" | "03" | "90" | "99" if !value.trim().is_empty() => Ok(()),
        "02" | "03" | "90" | "99" => format("a document number"),
        other => Err(FieldError::UnknownDocumentType(other.to_owned())),
    }
}

fn digit(b: u8) -> bool {
    b.is_ascii_digit()
}

fn upper(b: u8) -> bool {
    b.is_ascii_uppercase()
}

fn alphanumeric(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit()
}

/// A class of ASCII bytes (digits, capitals …).
type ByteClass = fn(u8) -> bool;

/// `value` is runs of `(count, class)` bytes, in order, and nothing else.
fn shape(value: &str, runs: &[(usize, ByteClass)]) -> bool {
    let mut rest = value.as_bytes();
    for &(count, class) in runs {
        let Some((head, tail)) = rest.split_at_checked(count) else {
            return false;
        };
        if !head.iter().all(|b| class(*b)) {
            return false;
        }
        rest = tail;
    }
    rest.is_empty()
}

/// GB 11643 (公民身份号码), which the new foreigner's permanent residence ID and the
/// residence permit of Hong Kong, Macau and Taiwan residents follow: 17 digits (the 7th to
/// 14th the date of birth) and the ISO 7064 MOD 11-2 check character (0–9 or X).
fn gb11643(value: &str) -> Result<(), FieldError> {
    let bad = |expected| FieldError::Format {
        field: CERTNO.name.to_owned(),
        expected,
    };
    let bytes = value.as_bytes();
    if !shape(value, &[(17, digit), (1, |b| digit(b) || b == b'X')]) {
        return Err(bad(
            "an 18-character ID number: 17 digits and a check character (0–9 or X)",
        ));
    }
    if value.get(6..14).and_then(Date::from_card).is_none() {
        return Err(bad(
            "an 18-character ID number: its 7th to 14th digits are not a date of birth",
        ));
    }
    let expected = mod11_2(&bytes[..17]);
    let found = char::from(bytes[17]);
    if found != expected {
        return Err(FieldError::CheckCharacter {
            field: CERTNO.name.to_owned(),
            found,
            expected,
        });
    }
    Ok(())
}

/// The ISO 7064 MOD 11-2 check character of 17 ASCII digits.
fn mod11_2(digits: &[u8]) -> char {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: [char; 11] = ['1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'];
    let sum: u32 = digits
        .iter()
        .zip(WEIGHTS)
        .map(|(d, w)| u32::from(d.saturating_sub(b'0')) * w)
        .sum();
    CHECK[(sum % 11) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_count_characters_and_name_the_field() {
        assert_eq!(DEPT_NAME.check(&"内".repeat(100)), Ok(()));
        let error = DEPT_NAME.check(&"内".repeat(101)).unwrap_err();
        assert!(matches!(error, FieldError::TooLong { chars: 101, .. }));
        assert!(
            error
                .to_string()
                .starts_with("dept_name holds 101 characters")
        );
        assert!(
            MEDINS_LIST_NAME
                .check(&"x".repeat(201))
                .unwrap_err()
                .within("items[3]")
                .to_string()
                .starts_with("items[3].name holds 201")
        );
    }

    #[test]
    fn non_printing_characters_are_refused_and_escaped() {
        for bad in [
            "a\u{1b}[2Jb",
            "a\rb",
            "a\nb",
            "a\0b",
            "a\u{85}b",
            "a\u{202E}b",
            "a\u{2066}b",
            "a\u{200B}b",
            "a\u{200F}b",
            "a\u{FEFF}b",
        ] {
            let error = DR_NAME.check(bad).unwrap_err();
            assert!(
                matches!(error, FieldError::NonPrinting { position: 2, .. }),
                "{bad:?}: {error}"
            );
            assert!(printable(bad).starts_with("a\\u{"), "{bad:?}");
            assert!(!printable(bad).chars().any(is_non_printing));
        }
        assert_eq!(DR_NAME.check("张医生 Dr. Zhang·阿不都"), Ok(()));
        assert_eq!(printable("a\u{1b}b"), "a\\u{1B}b");
        assert!(matches!(printable("内科"), Cow::Borrowed("内科")));
    }

    #[test]
    fn resident_ids_by_their_check_character() {
        assert_eq!(certno("01", "500103199103080319"), Ok(()));
        assert_eq!(certno("01", "11010519491231002X"), Ok(()));
        assert_eq!(
            certno("01", "500103199103080318"),
            Err(FieldError::CheckCharacter {
                field: "certno".into(),
                found: '8',
                expected: '9',
            })
        );
        for bad in [
            "",
            "50010319910308031",
            "5001031991030803190",
            "50010319911308031X",
            "11010519491231002x",
            "５00103199103080319",
        ] {
            assert!(certno("01", bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            certno("01", "500103199103080319\0"),
            Err(FieldError::NonPrinting { .. })
        ));
        assert!(matches!(
            certno("01", &"5".repeat(100_000)),
            Err(FieldError::TooLong { .. })
        ));
    }

    #[test]
    fn other_documents_by_their_own_rules() {
        // The new foreigner's permanent residence ID: 9, the province, the nationality
        // (840), the date of birth, the serial, the check character.
        let permit = "911840198506120015";
        assert_eq!(mod11_2(&permit.as_bytes()[..17]), '5');
        assert_eq!(certno("07", permit), Ok(()));
        assert!(certno("01", permit).unwrap_err().to_string().contains("07"));
        assert_eq!(certno("07", "USA110185061200"), Ok(()));
        assert!(certno("07", "USA11018506120").is_err());
        assert_eq!(certno("17", "810000199408230021"), Ok(()));
        assert!(certno("17", "500103199103080319").is_err());
        assert_eq!(certno("04", "H12345678"), Ok(()));
        assert_eq!(certno("05", "M1234567890"), Ok(()));
        assert!(certno("04", "M12345678").is_err());
        assert_eq!(certno("06", "12345678"), Ok(()));
        assert_eq!(certno("08", "E12345678"), Ok(()));
        assert!(certno("08", "E1234").is_ok() && certno("08", "E123").is_err());
        assert_eq!(certno("99", "南字第123456号"), Ok(()));
        assert!(certno("99", " ").is_err());
        assert_eq!(
            certno("42", "x"),
            Err(FieldError::UnknownDocumentType("42".into()))
        );
    }
}
