//! Card layouts as data. A profile (`apdu-specs/*.toml`) says which application to select,
//! which files and records to read, how each item is encoded and who may read it. The card
//! layer follows a profile; it holds no layout of its own, so a regional card variant is a
//! new file, not new code.
//!
//! Profiles are validated on load; an error names the file, the item and what is wrong.

mod format;
mod spec;

pub use format::{DecodeError, Format, decode};
pub use spec::{
    Access, AppSpec, BalanceSpec, FileSpec, FixedField, ItemSpec, MatchSpec, MedicalSpec, Profile,
    ReadStrategy, TransactionSpec,
};

use std::path::{Path, PathBuf};

/// The profiles shipped in `apdu-specs/`, compiled in so the binary works on its own.
const BUILT_IN: &[(&str, &str)] = &[
    (
        "ssse-1.0.toml",
        include_str!("../../apdu-specs/ssse-1.0.toml"),
    ),
    (
        "ssse-2.0.toml",
        include_str!("../../apdu-specs/ssse-2.0.toml"),
    ),
    (
        "ssse-3.0.toml",
        include_str!("../../apdu-specs/ssse-3.0.toml"),
    ),
];

/// Field names the card model knows; a profile may add its own under an `x_` prefix.
pub const KNOWN_FIELDS: &[&str] = &[
    "card_id",
    "card_type",
    "spec_version",
    "init_org",
    "issue_date",
    "expiry_date",
    "card_no",
    "certno",
    "psn_name",
    "gend",
    "naty",
    "birthplace",
    "brdy",
    "medical_mode",
];

/// DF04's 医疗保险用卡方式 (tag 8F): '1' online, '2' offline.
pub const MEDICAL_MODE_FIELD: &str = "medical_mode";

/// The field that selects the profile (EF05 tag 03, 规范版本).
pub const VERSION_FIELD: &str = "spec_version";
/// The field whose first six characters give the issuing region (卡识别码).
pub const CARD_ID_FIELD: &str = "card_id";

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("cannot read profile {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("profile {origin}: {message}")]
    Syntax { origin: String, message: String },
    #[error("profile {origin}, file {file}, item {item}: {message}")]
    Item {
        origin: String,
        file: String,
        item: String,
        message: String,
    },
    #[error("profile {origin}, file {file}: {message}")]
    File {
        origin: String,
        file: String,
        message: String,
    },
    #[error("profile {origin}: {message}")]
    Invalid { origin: String, message: String },
    #[error("profiles {first} and {second}: {message}")]
    Conflict {
        first: String,
        second: String,
        message: String,
    },
    #[error("no card profiles loaded")]
    Empty,
}

/// Every profile the reader may choose from.
#[derive(Debug, Clone)]
pub struct ProfileSet {
    profiles: Vec<Profile>,
}

impl ProfileSet {
    /// The profiles compiled into the binary.
    pub fn built_in() -> Result<ProfileSet, ProfileError> {
        let profiles = BUILT_IN
            .iter()
            .map(|(name, text)| Profile::from_toml_str(text, &format!("built-in {name}")))
            .collect::<Result<Vec<_>, _>>()?;
        ProfileSet::new(profiles)
    }

    /// The built-in profiles, plus those of `dir` when one is named (`--profiles DIR`,
    /// `readers.profiles`).
    pub fn load(dir: Option<&Path>) -> Result<ProfileSet, ProfileError> {
        match dir {
            Some(dir) => ProfileSet::built_in_and_dir(dir),
            None => ProfileSet::built_in(),
        }
    }

    /// The built-in profiles plus every `*.toml` in `dir`; a file whose profile name
    /// matches a built-in one replaces it.
    pub fn built_in_and_dir(dir: &Path) -> Result<ProfileSet, ProfileError> {
        let mut profiles = ProfileSet::built_in()?.profiles;
        for profile in load_dir(dir)? {
            profiles.retain(|p| p.name != profile.name);
            profiles.push(profile);
        }
        ProfileSet::new(profiles)
    }

    /// Checks that the profiles agree on where the version lives and do not overlap.
    pub fn new(mut profiles: Vec<Profile>) -> Result<ProfileSet, ProfileError> {
        if profiles.is_empty() {
            return Err(ProfileError::Empty);
        }
        profiles.sort_by(|a, b| a.name.cmp(&b.name));
        let first = &profiles[0];
        for other in &profiles[1..] {
            if other.version_location() != first.version_location() {
                return Err(conflict(
                    first,
                    other,
                    "they disagree on where spec_version is read",
                ));
            }
            if other.name == first.name {
                return Err(conflict(first, other, "two profiles have the same name"));
            }
        }
        for (i, a) in profiles.iter().enumerate() {
            for b in &profiles[i + 1..] {
                if a.matching.overlaps(&b.matching) {
                    return Err(conflict(
                        a,
                        b,
                        "both match the same card version and region",
                    ));
                }
            }
        }
        Ok(ProfileSet { profiles })
    }

    pub fn profiles(&self) -> &[Profile] {
        &self.profiles
    }

    /// The profile used before the version is known, to locate the version item.
    pub fn detection(&self) -> &Profile {
        &self.profiles[0]
    }

    /// The profile for a card of `version` (its first three characters; empty means 1.0,
    /// card-spec.md §1.4) issued in `region`; a profile naming regions wins over a general one.
    pub fn choose(&self, version: &str, region: Option<&str>) -> Option<&Profile> {
        let version = normalise_version(version);
        let candidates = self
            .profiles
            .iter()
            .filter(|p| p.matching.spec_versions.contains(&version));
        let mut general = None;
        for profile in candidates {
            if profile.matching.regions.is_empty() {
                general = Some(profile);
            } else if region.is_some_and(|r| profile.matching.covers_region(r)) {
                return Some(profile);
            }
        }
        general
    }
}

/// Only the first three characters of 规范版本 count; an empty one is a 1.0 card.
pub fn normalise_version(version: &str) -> String {
    let trimmed: String = version.trim().chars().take(3).collect();
    if trimmed.is_empty() {
        "1.0".to_owned()
    } else {
        trimmed
    }
}

fn conflict(a: &Profile, b: &Profile, message: &str) -> ProfileError {
    ProfileError::Conflict {
        first: a.origin.clone(),
        second: b.origin.clone(),
        message: message.to_owned(),
    }
}

fn load_dir(dir: &Path) -> Result<Vec<Profile>, ProfileError> {
    let io = |source| ProfileError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    paths.sort();
    paths.iter().map(|p| Profile::load(p)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_profiles_load_and_cover_three_generations() {
        let set = ProfileSet::built_in().unwrap();
        assert_eq!(set.choose("1.00", None).unwrap().name, "ssse-1.0");
        assert_eq!(set.choose("2.00", None).unwrap().name, "ssse-2.0");
        assert_eq!(set.choose("2.0\0", None).unwrap().name, "ssse-2.0");
        assert_eq!(set.choose("3.00", Some("440100")).unwrap().name, "ssse-3.0");
        assert_eq!(set.choose("", None).unwrap().name, "ssse-1.0");
        assert!(set.choose("9.00", None).is_none());
    }

    #[test]
    fn version_is_first_three_characters() {
        assert_eq!(normalise_version("2.00"), "2.0");
        assert_eq!(normalise_version("3.0"), "3.0");
        assert_eq!(normalise_version("  "), "1.0");
    }

    #[test]
    fn a_regional_profile_wins_for_its_region_only() {
        let base = ProfileSet::built_in().unwrap().profiles;
        let mut regional = base.iter().find(|p| p.name == "ssse-2.0").unwrap().clone();
        regional.name = "ssse-2.0-chongqing".into();
        regional.matching.regions = vec!["50".into()];
        let mut all = base.clone();
        all.push(regional);
        let set = ProfileSet::new(all).unwrap();
        assert_eq!(
            set.choose("2.00", Some("500000")).unwrap().name,
            "ssse-2.0-chongqing"
        );
        assert_eq!(set.choose("2.00", Some("510100")).unwrap().name, "ssse-2.0");
    }

    #[test]
    fn overlapping_profiles_are_refused_with_both_names() {
        let base = ProfileSet::built_in().unwrap().profiles;
        let mut twin = base.iter().find(|p| p.name == "ssse-2.0").unwrap().clone();
        twin.name = "ssse-2.0-copy".into();
        twin.origin = "copy.toml".into();
        let mut all = base.clone();
        all.push(twin);
        let err = ProfileSet::new(all).unwrap_err().to_string();
        assert!(
            err.contains("copy.toml") && err.contains("same card version"),
            "{err}"
        );
    }

    #[test]
    fn a_directory_profile_replaces_the_built_in_one() {
        let dir = std::env::temp_dir().join(format!("medcard-profiles-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = BUILT_IN[1]
            .1
            .replace("description = \"", "description = \"(local copy) ");
        std::fs::write(dir.join("mine.toml"), text).unwrap();
        let set = ProfileSet::built_in_and_dir(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let p = set.choose("2.00", None).unwrap();
        assert!(
            p.description.starts_with("(local copy)"),
            "{}",
            p.description
        );
        assert_eq!(set.profiles().len(), 3);
    }
}
