//! The profile file format (`apdu-specs/*.toml`) and its validation.

use super::{Format, KNOWN_FIELDS, MEDICAL_MODE_FIELD, ProfileError, VERSION_FIELD};
use serde::Deserialize;
use std::path::Path;

/// One card layout: which application, which files, which items.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    pub description: String,
    #[serde(rename = "match")]
    pub matching: MatchSpec,
    pub application: AppSpec,
    pub files: Vec<FileSpec>,
    /// DF04 (医疗保险): the on-card balance of offline-mode cards, behind the PIN.
    #[serde(default)]
    pub medical: Option<MedicalSpec>,
    /// Where the profile came from, for error messages.
    #[serde(skip)]
    pub origin: String,
}

/// Which cards the profile is for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchSpec {
    /// 规范版本, first three characters ("1.0", "2.0", "3.0").
    pub spec_versions: Vec<String>,
    /// Prefixes of the issuing region code (first characters of 卡识别码); empty = any.
    #[serde(default)]
    pub regions: Vec<String>,
}

impl MatchSpec {
    pub fn covers_region(&self, region: &str) -> bool {
        self.regions.is_empty() || self.regions.iter().any(|r| region.starts_with(r.as_str()))
    }

    /// Two specs overlap when some card would match both equally.
    pub fn overlaps(&self, other: &MatchSpec) -> bool {
        let same_version = self
            .spec_versions
            .iter()
            .any(|v| other.spec_versions.contains(v));
        let same_regions = match (self.regions.is_empty(), other.regions.is_empty()) {
            (true, true) => true,
            (false, false) => self.regions.iter().any(|a| {
                other
                    .regions
                    .iter()
                    .any(|b| a.starts_with(b.as_str()) || b.starts_with(a.as_str()))
            }),
            _ => false,
        };
        same_version && same_regions
    }
}

/// The application (DF) to select by name.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppSpec {
    pub label: String,
    /// Check the card is genuine (INTERNAL AUTHENTICATE, verified by the PSAM) before
    /// external authentication.
    #[serde(default)]
    pub internal_auth: bool,
    /// DF name, hex.
    pub df_name: String,
}

impl AppSpec {
    pub fn df_name_bytes(&self) -> Vec<u8> {
        hex::decode(&self.df_name).unwrap_or_default()
    }
}

/// The medical-insurance application (DF04) and where its balance and records are.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MedicalSpec {
    pub label: String,
    /// AID, hex (D15600000503).
    pub df_name: String,
    /// The file holding 医疗保险用卡方式 (an item with field `medical_mode`).
    pub mode_file: FileSpec,
    /// The value of `medical_mode` that means offline (脱网): the balance is on the card.
    pub offline_mode: String,
    pub balance: BalanceSpec,
    pub transactions: TransactionSpec,
}

/// GET BALANCE (`B0 26 00 P2 Le`, card-spec.md §4.1).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalanceSpec {
    pub cla: u8,
    pub ins: u8,
    /// P2 of the personal-account balance (4 bytes, fen).
    pub account_p2: u8,
    /// P2 of the year's self-paid total (4 bytes fen ‖ 2 bytes BCD year).
    pub annual_self_pay_p2: u8,
    /// P2 of the year's pooled-fund total (4 bytes fen ‖ 2 bytes BCD year).
    pub annual_fund_pay_p2: u8,
}

/// The transaction file (医疗交易明细): fixed-length records, record 1 the newest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransactionSpec {
    pub sfi: u8,
    pub record_length: u8,
    pub max_records: u8,
    pub fields: Vec<FixedField>,
}

/// A field at a fixed offset of a fixed-length record.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixedField {
    pub name: String,
    pub offset: u8,
    pub length: u8,
    pub format: Format,
}

/// Who may read a file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Access {
    /// No condition (无).
    Free,
    /// External authentication with the named key (e.g. RKSSSE) held by a PSAM.
    ExternalAuth { key: String, key_id: u8 },
    /// The cardholder's PIN.
    Pin,
}

/// How a file's records may be read, in the order the profile prefers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadStrategy {
    /// READ RECORD "P1 to last" (mode 101): the whole file in one APDU, by SFI when the
    /// file has one, else after SELECT.
    WholeFile,
    /// READ RECORD by record identifier (= tag, mode 000, P2=00) after SELECT.
    ByTag,
    /// READ RECORD by record number (mode 100) after SELECT.
    ByRecord,
    /// READ RECORD by record number addressed by SFI (P2 = SFI<<3 | 4), no SELECT.
    BySfi,
}

/// One elementary file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    pub name: String,
    pub label: String,
    pub fid: u16,
    #[serde(default)]
    pub sfi: Option<u8>,
    pub access: Access,
    /// Holder data: response bytes are redacted in traces.
    #[serde(default)]
    pub personal_data: bool,
    pub read: Vec<ReadStrategy>,
    pub items: Vec<ItemSpec>,
}

impl FileSpec {
    /// The Le of a whole-file read: every record's tag, length and value.
    pub fn whole_file_length(&self) -> usize {
        self.items.iter().map(|i| usize::from(i.length) + 2).sum()
    }

    pub fn item_for_field(&self, field: &str) -> Option<&ItemSpec> {
        self.items.iter().find(|i| i.field == field)
    }
}

/// One data item: a record whose identifier is its tag.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemSpec {
    pub tag: u8,
    /// The output field it fills; several items with the same field are concatenated in
    /// order (姓名 tag 09 ‖ 姓名扩展 tag 4E).
    pub field: String,
    pub label: String,
    pub format: Format,
    /// Defined value length in bytes.
    pub length: u8,
    /// Record number, for reads by record number.
    pub record: u8,
    /// A card without this item is an error rather than a `null`.
    #[serde(default)]
    pub required: bool,
    /// Accept bytes a strict decoder would refuse, as seen on real cards (a non-BCD byte in
    /// 初始化机构编号): rendered as hex instead of failing.
    #[serde(default)]
    pub lenient: bool,
}

impl Profile {
    pub fn load(path: &Path) -> Result<Profile, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Profile::from_toml_str(&text, &path.display().to_string())
    }

    pub fn from_toml_str(text: &str, origin: &str) -> Result<Profile, ProfileError> {
        let mut profile: Profile = toml::from_str(text).map_err(|e| ProfileError::Syntax {
            origin: origin.to_owned(),
            message: e.to_string(),
        })?;
        profile.origin = origin.to_owned();
        profile.validate()?;
        Ok(profile)
    }

    /// The file and item that carry 规范版本.
    pub fn version_location(&self) -> Option<(u16, u8, u8)> {
        self.files.iter().find_map(|f| {
            f.item_for_field(VERSION_FIELD)
                .map(|i| (f.fid, i.tag, i.record))
        })
    }

    pub fn version_file(&self) -> Option<&FileSpec> {
        self.files
            .iter()
            .find(|f| f.item_for_field(VERSION_FIELD).is_some())
    }

    fn invalid(&self, message: impl Into<String>) -> ProfileError {
        ProfileError::Invalid {
            origin: self.origin.clone(),
            message: message.into(),
        }
    }

    fn validate(&self) -> Result<(), ProfileError> {
        if self.name.trim().is_empty() {
            return Err(self.invalid("name is empty"));
        }
        if self.matching.spec_versions.is_empty() {
            return Err(self.invalid("match.spec_versions is empty"));
        }
        if let Some(v) = self.matching.spec_versions.iter().find(|v| v.len() != 3) {
            return Err(self.invalid(format!(
                "match.spec_versions entry {v:?} must be three characters like \"2.0\""
            )));
        }
        match hex::decode(&self.application.df_name) {
            Ok(name) if (1..=16).contains(&name.len()) => {}
            _ => {
                return Err(self.invalid(format!(
                    "application.df_name {:?} must be 1 to 16 bytes of hex",
                    self.application.df_name
                )));
            }
        }
        if self.files.is_empty() {
            return Err(self.invalid("no files to read"));
        }
        self.files.iter().try_for_each(|f| self.validate_file(f))?;
        if let Some(medical) = &self.medical {
            self.validate_medical(medical)?;
        }
        if self.version_location().is_none() {
            return Err(self.invalid(format!("no item fills the field {VERSION_FIELD}")));
        }
        Ok(())
    }

    fn validate_medical(&self, medical: &MedicalSpec) -> Result<(), ProfileError> {
        if hex::decode(&medical.df_name).map_or(true, |n| n.is_empty() || n.len() > 16) {
            return Err(self.invalid(format!(
                "medical.df_name {:?} is not 1 to 16 bytes of hex",
                medical.df_name
            )));
        }
        self.validate_file(&medical.mode_file)?;
        if medical
            .mode_file
            .item_for_field(MEDICAL_MODE_FIELD)
            .is_none()
        {
            return Err(self.invalid(format!(
                "medical.mode_file has no item with field {MEDICAL_MODE_FIELD}"
            )));
        }
        let records = &medical.transactions;
        for field in &records.fields {
            if u16::from(field.offset) + u16::from(field.length) > u16::from(records.record_length)
            {
                return Err(self.invalid(format!(
                    "medical.transactions field {} ends past the {}-byte record",
                    field.name, records.record_length
                )));
            }
        }
        Ok(())
    }

    fn validate_file(&self, file: &FileSpec) -> Result<(), ProfileError> {
        let err = |message: String| ProfileError::File {
            origin: self.origin.clone(),
            file: file.name.clone(),
            message,
        };
        if file.read.is_empty() {
            return Err(err("read lists no strategy".into()));
        }
        if let Some(sfi) = file.sfi
            && !(1..=30).contains(&sfi)
        {
            return Err(err(format!("sfi {sfi} is outside 1..30")));
        }
        if file.sfi.is_none() && file.read.contains(&ReadStrategy::BySfi) {
            return Err(err("read strategy by_sfi needs an sfi".into()));
        }
        if file.items.is_empty() {
            return Err(err("no items".into()));
        }
        for (i, item) in file.items.iter().enumerate() {
            self.validate_item(file, item)?;
            if file.items[..i].iter().any(|o| o.tag == item.tag) {
                return Err(item_error(self, file, item, "tag appears twice".into()));
            }
            if file.items[..i].iter().any(|o| o.record == item.record) {
                return Err(item_error(
                    self,
                    file,
                    item,
                    "record number appears twice".into(),
                ));
            }
        }
        Ok(())
    }

    fn validate_item(&self, file: &FileSpec, item: &ItemSpec) -> Result<(), ProfileError> {
        let fail = |message: String| Err(item_error(self, file, item, message));
        if item.tag == 0x00 || item.tag == 0xFF {
            return fail(format!(
                "tag {:02X} is not a valid record identifier",
                item.tag
            ));
        }
        if item.length == 0 {
            return fail("length is 0".into());
        }
        if item.record == 0 {
            return fail("record number 0 (records count from 1)".into());
        }
        if !KNOWN_FIELDS.contains(&item.field.as_str()) && !item.field.starts_with("x_") {
            return fail(format!(
                "unknown field {:?}; use one of {} or an x_ prefix for a regional extra",
                item.field,
                KNOWN_FIELDS.join(", ")
            ));
        }
        if let Some(expected) = item.format.fixed_length()
            && usize::from(item.length) != expected
        {
            return fail(format!(
                "format {} is {expected} bytes, length says {}",
                item.format.name(),
                item.length
            ));
        }
        Ok(())
    }
}

fn item_error(
    profile: &Profile,
    file: &FileSpec,
    item: &ItemSpec,
    message: String,
) -> ProfileError {
    ProfileError::Item {
        origin: profile.origin.clone(),
        file: file.name.clone(),
        item: format!("{:02X} ({})", item.tag, item.label),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
name = "t"
description = "test"
[match]
spec_versions = ["2.0"]
[application]
label = "SSSE"
df_name = "7378312E73682EC9E7BBE1B1A3D5CF"
[[files]]
name = "EF05"
label = "发卡机构数据文件"
fid = 0xEF05
sfi = 5
access = "free"
read = ["whole_file", "by_tag"]
[[files.items]]
tag = 0x03
field = "spec_version"
label = "规范版本"
format = "an"
length = 4
record = 3
"#;

    fn with(replace: &str, by: &str) -> Result<Profile, ProfileError> {
        assert!(MINIMAL.contains(replace), "test text lacks {replace}");
        Profile::from_toml_str(&MINIMAL.replace(replace, by), "test.toml")
    }

    #[test]
    fn minimal_profile_loads() {
        let p = Profile::from_toml_str(MINIMAL, "test.toml").unwrap();
        assert_eq!(p.version_location(), Some((0xEF05, 0x03, 3)));
        assert_eq!(p.files[0].whole_file_length(), 6);
    }

    #[test]
    fn errors_name_file_item_and_problem() {
        let err = with(
            "format = \"an\"\nlength = 4",
            "format = \"date\"\nlength = 2",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("test.toml") && err.contains("EF05"), "{err}");
        assert!(
            err.contains("03 (规范版本)") && err.contains("date is 4 bytes"),
            "{err}"
        );

        let err = with("field = \"spec_version\"", "field = \"nonsense\"").unwrap_err();
        assert!(
            err.to_string().contains("unknown field \"nonsense\""),
            "{err}"
        );

        let err = with("record = 3", "record = 0").unwrap_err().to_string();
        assert!(err.contains("record number 0"), "{err}");

        let err = with("format = \"an\"", "format = \"ebcdic\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("test.toml") && err.contains("ebcdic"), "{err}");
    }

    #[test]
    fn file_level_mistakes_are_refused() {
        let no_sfi_but_by_sfi = MINIMAL
            .replace("sfi = 5\n", "")
            .replace("\"by_tag\"]", "\"by_sfi\"]");
        let err = Profile::from_toml_str(&no_sfi_but_by_sfi, "t.toml").unwrap_err();
        assert!(err.to_string().contains("by_sfi needs an sfi"), "{err}");
        let err = with("sfi = 5\n", "sfi = 40\n").unwrap_err().to_string();
        assert!(err.contains("sfi 40"), "{err}");
        let err = with("df_name = \"7378", "df_name = \"zz78")
            .unwrap_err()
            .to_string();
        assert!(err.contains("df_name"), "{err}");
        let err = with("spec_versions = [\"2.0\"]", "spec_versions = [\"2\"]")
            .unwrap_err()
            .to_string();
        assert!(err.contains("three characters"), "{err}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = with("sfi = 5", "sfi = 5\ncolour = 1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("colour"), "{err}");
    }
}
