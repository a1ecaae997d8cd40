//! The simulator's seed data (fixtures/insurer/*.toml): persons with their insurance rows,
//! cards, personal accounts (wage, carried-over money, credited months), earlier visits of the
//! year and family bindings (家庭共济), the card-event history and the catalogue. Compiled-in
//! copies let the simulator run anywhere; `--fixtures DIR` reads a directory instead.

use super::SimError;
use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Clone, Deserialize)]
pub struct InsuFixture {
    pub insutype: String,
    pub psn_type: String,
    pub psn_insu_stas: String,
    /// The opening balance (yuan, two places); absent = 0.00. Ignored for the row that a
    /// person's `account` describes.
    #[serde(default = "zero_yuan")]
    pub balc: String,
    pub insuplc_admdvs: String,
    pub psn_insu_date: Option<String>,
    pub paus_insu_date: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CardFixture {
    pub card_no: String,
    pub card_sn: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PersonFixture {
    pub psn_no: String,
    pub certno: String,
    pub psn_name: String,
    pub gend: String,
    pub naty: String,
    pub brdy: String,
    #[serde(default = "default_cert_type")]
    pub psn_cert_type: String,
    #[serde(default)]
    pub insuinfo: Vec<InsuFixture>,
    #[serde(default)]
    pub cards: Vec<CardFixture>,
    /// The personal account of the first insuinfo row, built from contributions.
    pub account: Option<AccountFixture>,
    /// In-scope amounts (yuan) settled earlier this year, January–March, oldest first.
    #[serde(default)]
    pub prior_visits: Vec<String>,
}

/// A personal account seeded as a carried-over entry plus monthly credits in months
/// 1..=`credited_months` of the business year (the policy's monthly credit for `wage`).
#[derive(Debug, Clone, Deserialize)]
pub struct AccountFixture {
    /// Monthly wage (contribution base), yuan.
    pub wage: String,
    /// Money carried over from earlier years, yuan.
    #[serde(default = "zero_yuan")]
    pub carried_over: String,
    #[serde(default)]
    pub credited_months: u32,
}

/// A family binding (家庭共济): the payer's account may pay the beneficiary's part.
#[derive(Debug, Clone, Deserialize)]
pub struct BindingFixture {
    pub payer_psn_no: String,
    pub beneficiary_psn_no: String,
    /// The payer's account (insutype); default 310.
    #[serde(default = "employee_insutype")]
    pub payer_insutype: String,
}

fn zero_yuan() -> String {
    "0.00".to_string()
}

fn employee_insutype() -> String {
    "310".to_string()
}

fn default_cert_type() -> String {
    "01".to_string()
}

#[derive(Debug, Clone, Deserialize)]
pub struct EventFixture {
    pub card_no: String,
    /// lost | unlocked | replaced | cancelled.
    pub kind: String,
    pub new_card_no: Option<String>,
    pub event_time: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ItemFixture {
    pub hilist_code: String,
    pub hilist_name: String,
    pub chrgitm_lv: String,
    pub selfpay_prop: String,
    pub pric_uplmt_amt: Option<String>,
    #[serde(default = "yes")]
    pub vali_flag: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
struct PersonsFile {
    #[serde(default)]
    person: Vec<PersonFixture>,
    #[serde(default)]
    binding: Vec<BindingFixture>,
}

#[derive(Debug, Deserialize)]
struct EventsFile {
    #[serde(default)]
    event: Vec<EventFixture>,
}

#[derive(Debug, Deserialize)]
struct CatalogueFile {
    #[serde(default)]
    item: Vec<ItemFixture>,
}

/// Everything the database is seeded with.
#[derive(Debug, Clone, Default)]
pub struct Fixtures {
    pub persons: Vec<PersonFixture>,
    /// Family bindings, in binding order.
    pub bindings: Vec<BindingFixture>,
    pub card_events: Vec<EventFixture>,
    pub catalogue: Vec<ItemFixture>,
}

const PERSONS: &str = include_str!("../../../fixtures/insurer/persons.toml");
const CARD_EVENTS: &str = include_str!("../../../fixtures/insurer/card_events.toml");
const CATALOGUE: &str = include_str!("../../../fixtures/insurer/catalogue.toml");

impl Fixtures {
    /// The copies compiled into the binary.
    pub fn built_in() -> Result<Fixtures, SimError> {
        Fixtures::parse(PERSONS, CARD_EVENTS, CATALOGUE)
    }

    /// `persons.toml`, `card_events.toml` and `catalogue.toml` from a directory (a missing
    /// file counts as empty).
    pub fn load_dir(dir: &Path) -> Result<Fixtures, SimError> {
        let read = |name: &str| -> Result<String, SimError> {
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(text) => Ok(text),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
                Err(source) => Err(SimError::FixtureFile { path, source }),
            }
        };
        Fixtures::parse(
            &read("persons.toml")?,
            &read("card_events.toml")?,
            &read("catalogue.toml")?,
        )
    }

    fn parse(persons: &str, events: &str, catalogue: &str) -> Result<Fixtures, SimError> {
        let persons: PersonsFile = read_toml("persons", persons)?;
        let events: EventsFile = read_toml("card_events", events)?;
        let items: CatalogueFile = read_toml("catalogue", catalogue)?;
        Ok(Fixtures {
            persons: persons.person,
            bindings: persons.binding,
            card_events: events.event,
            catalogue: items.item,
        })
    }
}

/// One fixture file's text, `file` naming it in errors.
fn read_toml<T: serde::de::DeserializeOwned>(
    file: &'static str,
    text: &str,
) -> Result<T, SimError> {
    toml::from_str(text).map_err(|source| SimError::FixtureSyntax { file, source })
}

#[cfg(test)]
mod tests {
    use super::Fixtures;

    #[test]
    fn built_in_fixtures_parse_and_hold_xiaowang() {
        let f = Fixtures::built_in().unwrap();
        let wang = f
            .persons
            .iter()
            .find(|p| p.certno == "500103199103080319")
            .unwrap();
        let account = wang.account.as_ref().unwrap();
        assert_eq!(account.wage, "2700.00");
        assert_eq!(account.carried_over, "25.00");
        assert_eq!(account.credited_months, 3);
        let prior: Vec<&str> = wang.prior_visits.iter().map(String::as_str).collect();
        assert_eq!(prior, ["80.00", "100.00", "50.00"]);
        assert!(
            f.bindings
                .iter()
                .any(|b| b.beneficiary_psn_no == "51010000000000058021")
        );
        assert_eq!(wang.cards[0].card_no, "C06123455");
        assert!(f.catalogue.iter().any(|i| i.chrgitm_lv == "03"));
        assert_eq!(f.card_events.len(), 3);
    }

    #[test]
    fn fixture_people_have_valid_check_characters() {
        let f = Fixtures::built_in().unwrap();
        for p in &f.persons {
            let valid = crate::fields::certno(&p.psn_cert_type, &p.certno);
            assert_eq!(valid, Ok(()), "{} ({})", p.certno, p.psn_cert_type);
            for c in &p.cards {
                if c.card_no == "J17350067" {
                    continue; // the quirky card fails its check character on purpose
                }
                assert!(
                    crate::card::card_no_warning(&c.card_no).is_none(),
                    "{}",
                    c.card_no
                );
                assert_eq!(c.card_sn.len(), 32);
            }
        }
    }
}
