//! Cost-sharing policies as data: a TOML file per policy (`fixtures/policy/*.toml`, format in
//! docs/settlement.md and fixtures/policy/README.md), validated into a [`Policy`].
//!
//! A policy names the region and insurance types it applies to, the personal account's monthly
//! credit and interest rates, and an ordered list of [`Rule`]s; a settlement uses the first rule
//! whose medical type, hospital grade and retiree condition match ([`Policy::rule_for`]). A rule
//! is a deductible (起付线) on the person's calendar-year cumulative in-scope amount, marginal
//! bands with the person's share in each, an optional cap (最高支付限额, above which the person
//! pays everything) and an optional yearly cap on what the pooled fund pays.
//!
//! The two fixtures are compiled in ([`Policy::built_in`]); [`Policy::load`] reads another file.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::str::FromStr;

const CQ_SEED: &str = include_str!("../../fixtures/policy/cq-seed.toml");
const CQ_EMPLOYEE_OUTPATIENT: &str =
    include_str!("../../fixtures/policy/cq-employee-outpatient.toml");

/// The compiled-in policies: (id, file name, text).
const BUILT_INS: [(&str, &str, &str); 2] = [
    ("cq-seed", "cq-seed.toml", CQ_SEED),
    (
        "cq-employee-outpatient",
        "cq-employee-outpatient.toml",
        CQ_EMPLOYEE_OUTPATIENT,
    ),
];

/// Why a policy could not be loaded, or has no rule for a settlement.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    #[error("{file}: cannot read: {message}")]
    Read { file: String, message: String },
    #[error("{file}: not a policy file: {message}")]
    Syntax { file: String, message: String },
    #[error("{file}: {place}: {problem}")]
    Invalid {
        file: String,
        /// `[policy]`, `[account]`, `rule "name"` …
        place: String,
        problem: String,
    },
    #[error("no built-in policy {id:?} (built in: {})", known.join(", "))]
    UnknownId { id: String, known: Vec<String> },
    #[error(
        "policy {policy}: no rule for insutype {insutype}, med_type {}, hosp_lv {}, {}",
        or_none(med_type), or_none(hosp_lv), if *retired { "retired" } else { "not retired" }
    )]
    NoRule {
        policy: String,
        insutype: String,
        med_type: String,
        hosp_lv: String,
        retired: bool,
    },
}

fn or_none(code: &str) -> &str {
    if code.is_empty() { "(not given)" } else { code }
}

/// A validated cost-sharing policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policy {
    pub id: String,
    pub name: String,
    /// insuplc_admdvs prefix the policy applies to ("50", "500000").
    pub region: String,
    /// 险种类型 codes covered ("310").
    pub insutype: Vec<String>,
    pub account: AccountRule,
    pub interest: InterestRule,
    /// In order; the first match wins.
    pub rules: Vec<Rule>,
    /// Where it came from: a path, or `built-in:<id>`.
    pub source: String,
}

/// The personal account's monthly credit, as fractions of the monthly wage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccountRule {
    /// The employee's own contribution rate; all of it goes to the account.
    pub employee_rate: Decimal,
    /// The employer's contribution rate.
    pub employer_rate: Decimal,
    /// The part of the employer's contribution credited to the account (0 since the 2021 reform).
    pub employer_to_account: Decimal,
}

/// Year-end interest rates (annual), month-product method.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InterestRule {
    /// For money credited in the current year (活期).
    pub demand_rate: Decimal,
    /// For money carried over from earlier years (三个月定期).
    pub three_month_rate: Decimal,
}

/// Which persons a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Retired {
    Any,
    Yes,
    No,
}

impl Retired {
    fn matches(self, retired: bool) -> bool {
        match self {
            Retired::Any => true,
            Retired::Yes => retired,
            Retired::No => !retired,
        }
    }
}

/// One band of the pooled part: up to `upto` (cumulative yearly in-scope amount; `None` = to the
/// cap, or without end when there is no cap) the person pays `psn_share` of each yuan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BandRule {
    pub upto: Option<Decimal>,
    pub psn_share: Decimal,
}

/// One cost-sharing rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    pub name: String,
    /// 医疗类别 codes; empty = any.
    pub med_type: Vec<String>,
    /// Hospital grades ("1", "2", "3"); empty = any.
    pub hosp_lv: Vec<String>,
    pub retired: Retired,
    /// 起付线 on the calendar-year cumulative in-scope amount.
    pub deductible: Decimal,
    /// 最高支付限额 on the same cumulative amount (cap = cap_multiple × contribution_base when
    /// given that way); above it the person pays 100 %. `None` = no cap.
    pub cap: Option<Decimal>,
    /// Marginal bands from the deductible upwards; the last has `upto: None`.
    pub bands: Vec<BandRule>,
    /// The most the pooled fund pays in a calendar year; `None` = no limit.
    pub fund_cap: Option<Decimal>,
}

/// What a settlement asks [`Policy::rule_for`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleKey<'a> {
    pub insutype: &'a str,
    pub med_type: &'a str,
    /// "" = not known: only rules for any grade match.
    pub hosp_lv: &'a str,
    pub retired: bool,
}

/// Retirees by 人员类别: 12 退休, 13 离休, and their 4-digit refinements (1201…, 1300).
pub fn is_retired(psn_type: &str) -> bool {
    let all_digits = psn_type.bytes().all(|b| b.is_ascii_digit());
    let len_ok = psn_type.len() == 2 || psn_type.len() == 4;
    all_digits && len_ok && (psn_type.starts_with("12") || psn_type.starts_with("13"))
}

impl Policy {
    /// A compiled-in policy by id (`cq-seed`, `cq-employee-outpatient`).
    pub fn built_in(id: &str) -> Result<Policy, PolicyError> {
        let Some((_, file, text)) = BUILT_INS.iter().find(|(known, _, _)| *known == id) else {
            return Err(PolicyError::UnknownId {
                id: id.to_string(),
                known: Policy::built_in_ids()
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            });
        };
        let mut policy = Policy::parse_named(text, file)?;
        policy.source = format!("built-in:{id}");
        Ok(policy)
    }

    /// The ids of the compiled-in policies.
    pub fn built_in_ids() -> Vec<&'static str> {
        BUILT_INS.iter().map(|(id, _, _)| *id).collect()
    }

    /// Every compiled-in policy.
    pub fn built_ins() -> Result<Vec<Policy>, PolicyError> {
        BUILT_INS
            .iter()
            .map(|(id, _, _)| Policy::built_in(id))
            .collect()
    }

    /// A policy file.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| PolicyError::Read {
            file: file.clone(),
            message: e.to_string(),
        })?;
        Policy::parse_named(&text, &file)
    }

    /// Policy text (errors name it "policy").
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        Policy::parse_named(text, "policy")
    }

    /// Policy text; errors name `file`.
    pub fn parse_named(text: &str, file: &str) -> Result<Policy, PolicyError> {
        let raw: raw::PolicyFile = toml::from_str(text).map_err(|e| PolicyError::Syntax {
            file: file.to_string(),
            message: e.to_string(),
        })?;
        raw.validate(file)
    }

    /// The first rule matching `key`.
    pub fn rule_for(&self, key: &RuleKey<'_>) -> Result<&Rule, PolicyError> {
        let covered = self.insutype.iter().any(|t| t == key.insutype);
        let rule = covered
            .then(|| self.rules.iter().find(|rule| rule.matches(key)))
            .flatten();
        rule.ok_or_else(|| PolicyError::NoRule {
            policy: self.id.clone(),
            insutype: key.insutype.to_string(),
            med_type: key.med_type.to_string(),
            hosp_lv: key.hosp_lv.to_string(),
            retired: key.retired,
        })
    }

    /// Whether the policy applies to an insured region (insuplc_admdvs): `region`'s trailing
    /// "00" pairs are wildcards, so "500000" covers 500103 and "50" does too.
    pub fn applies_to_region(&self, insuplc_admdvs: &str) -> bool {
        let mut prefix = self.region.as_str();
        while let Some(shorter) = prefix.strip_suffix("00") {
            prefix = shorter;
        }
        insuplc_admdvs.starts_with(prefix)
    }
}

impl Rule {
    fn matches(&self, key: &RuleKey<'_>) -> bool {
        let listed =
            |codes: &[String], code: &str| codes.is_empty() || codes.iter().any(|c| c == code);
        listed(&self.med_type, key.med_type)
            && listed(&self.hosp_lv, key.hosp_lv)
            && self.retired.matches(key.retired)
    }

    /// The upper bound of the last band with an explicit `upto` (the deductible if none).
    fn last_bound(&self) -> Decimal {
        self.bands
            .iter()
            .filter_map(|b| b.upto)
            .next_back()
            .unwrap_or(self.deductible)
    }
}

/// The file as written, before validation (amounts are strings, parsed with field names).
mod raw {
    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct PolicyFile {
        policy: Header,
        account: Account,
        interest: Interest,
        #[serde(default)]
        rule: Vec<RawRule>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Header {
        id: String,
        name: String,
        region: String,
        insutype: Vec<String>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Account {
        employee_rate: String,
        employer_rate: String,
        employer_to_account: String,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Interest {
        demand_rate: String,
        three_month_rate: String,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawRule {
        name: String,
        #[serde(default)]
        med_type: Vec<String>,
        #[serde(default)]
        hosp_lv: Vec<String>,
        #[serde(default = "any")]
        retired: Retired,
        deductible: String,
        contribution_base: Option<String>,
        cap_multiple: Option<String>,
        cap: Option<String>,
        bands: Vec<RawBand>,
        fund_cap: Option<String>,
    }

    fn any() -> Retired {
        Retired::Any
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawBand {
        upto: Option<String>,
        psn_share: String,
    }

    /// Errors of one place in one file.
    struct At<'a> {
        file: &'a str,
        place: String,
    }

    impl At<'_> {
        fn err(&self, problem: impl Into<String>) -> PolicyError {
            PolicyError::Invalid {
                file: self.file.to_string(),
                place: self.place.clone(),
                problem: problem.into(),
            }
        }

        fn number(&self, field: &str, text: &str) -> Result<Decimal, PolicyError> {
            Decimal::from_str(text.trim())
                .map_err(|_| self.err(format!("{field}: {text:?} is not a decimal number")))
        }

        fn amount(&self, field: &str, text: &str) -> Result<Decimal, PolicyError> {
            let d = self.number(field, text)?;
            if d.is_sign_negative() && !d.is_zero() {
                return Err(self.err(format!("{field}: {text} is negative")));
            }
            if !crate::money::is_whole_fen(d) {
                return Err(self.err(format!("{field}: {text} has fractions of a fen")));
            }
            Ok(d)
        }

        fn fraction(&self, field: &str, text: &str) -> Result<Decimal, PolicyError> {
            let d = self.number(field, text)?;
            if d < Decimal::ZERO || d > Decimal::ONE {
                return Err(self.err(format!("{field}: {text} is not between 0 and 1")));
            }
            Ok(d)
        }

        fn opt_amount(
            &self,
            field: &str,
            text: &Option<String>,
        ) -> Result<Option<Decimal>, PolicyError> {
            text.as_deref().map(|t| self.amount(field, t)).transpose()
        }
    }

    impl PolicyFile {
        pub(super) fn validate(self, file: &str) -> Result<Policy, PolicyError> {
            let at = |place: &str| At {
                file,
                place: place.to_string(),
            };
            let header = at("[policy]");
            for (field, value) in [("id", &self.policy.id), ("region", &self.policy.region)] {
                if value.trim().is_empty() {
                    return Err(header.err(format!("{field} is empty")));
                }
            }
            if self.policy.insutype.is_empty() {
                return Err(header.err("insutype lists no insurance type"));
            }
            let account = at("[account]");
            let interest = at("[interest]");
            if self.rule.is_empty() {
                return Err(header.err("no [[rule]]"));
            }
            let rules = self
                .rule
                .into_iter()
                .map(|rule| rule.validate(file))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Policy {
                id: self.policy.id,
                name: self.policy.name,
                region: self.policy.region,
                insutype: self.policy.insutype,
                account: AccountRule {
                    employee_rate: account
                        .fraction("employee_rate", &self.account.employee_rate)?,
                    employer_rate: account
                        .fraction("employer_rate", &self.account.employer_rate)?,
                    employer_to_account: account
                        .fraction("employer_to_account", &self.account.employer_to_account)?,
                },
                interest: InterestRule {
                    demand_rate: interest.fraction("demand_rate", &self.interest.demand_rate)?,
                    three_month_rate: interest
                        .fraction("three_month_rate", &self.interest.three_month_rate)?,
                },
                rules,
                source: file.to_string(),
            })
        }
    }

    impl RawRule {
        fn validate(self, file: &str) -> Result<Rule, PolicyError> {
            let at = At {
                file,
                place: format!("rule {:?}", self.name),
            };
            let deductible = at.amount("deductible", &self.deductible)?;
            let cap = self.cap(&at)?;
            let bands = self
                .bands
                .iter()
                .enumerate()
                .map(|(i, band)| {
                    Ok(BandRule {
                        upto: at.opt_amount(&format!("bands[{i}].upto"), &band.upto)?,
                        psn_share: at
                            .fraction(&format!("bands[{i}].psn_share"), &band.psn_share)?,
                    })
                })
                .collect::<Result<Vec<_>, PolicyError>>()?;
            let rule = Rule {
                name: self.name,
                med_type: self.med_type,
                hosp_lv: self.hosp_lv,
                retired: self.retired,
                deductible,
                cap,
                bands,
                fund_cap: at.opt_amount("fund_cap", &self.fund_cap)?,
            };
            check_bands(&at, &rule)?;
            Ok(rule)
        }

        /// `cap`, or `cap_multiple × contribution_base`, or none.
        fn cap(&self, at: &At<'_>) -> Result<Option<Decimal>, PolicyError> {
            match (&self.cap, &self.contribution_base, &self.cap_multiple) {
                (None, None, None) => Ok(None),
                (Some(cap), None, None) => Ok(Some(at.amount("cap", cap)?)),
                (None, Some(base), Some(multiple)) => {
                    let base = at.amount("contribution_base", base)?;
                    let multiple = at.number("cap_multiple", multiple)?;
                    if multiple <= Decimal::ZERO {
                        return Err(at.err("cap_multiple must be above 0"));
                    }
                    let cap = base
                        .checked_mul(multiple)
                        .ok_or_else(|| at.err("cap_multiple × contribution_base is too large"))?;
                    Ok(Some(crate::money::round_fen(cap)))
                }
                (Some(_), _, _) => {
                    Err(at.err("give either cap or contribution_base with cap_multiple, not both"))
                }
                (None, _, _) => Err(at.err("contribution_base and cap_multiple go together")),
            }
        }
    }

    /// Bands: at least one; every band but the last has `upto`, the last has none; bounds
    /// strictly increasing and above the deductible; the cap above the last bound.
    fn check_bands(at: &At<'_>, rule: &Rule) -> Result<(), PolicyError> {
        let Some((last, rest)) = rule.bands.split_last() else {
            return Err(at.err("bands is empty"));
        };
        if last.upto.is_some() {
            return Err(
                at.err("the last band must not have upto: it runs to the cap (or without end)")
            );
        }
        let mut below = rule.deductible;
        for (i, band) in rest.iter().enumerate() {
            let Some(upto) = band.upto else {
                return Err(at.err(format!(
                    "bands[{i}] needs upto (only the last band has none)"
                )));
            };
            if upto <= below {
                return Err(at.err(format!(
                    "bands[{i}].upto {upto} is not above {below} (the deductible or the band before)"
                )));
            }
            below = upto;
        }
        if let Some(cap) = rule.cap
            && cap <= rule.last_bound()
        {
            return Err(at.err(format!(
                "cap {cap} is not above the last band bound {}",
                rule.last_bound()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key<'a>(med_type: &'a str, hosp_lv: &'a str, retired: bool) -> RuleKey<'a> {
        RuleKey {
            insutype: "310",
            med_type,
            hosp_lv,
            retired,
        }
    }

    #[test]
    fn both_built_ins_parse_and_the_seed_cap_is_4_times_30000() {
        let all = Policy::built_ins().unwrap();
        assert_eq!(all.len(), 2);
        let seed = Policy::built_in("cq-seed").unwrap();
        let rule = &seed.rules[0];
        assert_eq!(rule.cap, Some(Decimal::new(12_000_000, 2)));
        assert_eq!(rule.deductible, Decimal::new(40_000, 2));
        assert_eq!(rule.bands.len(), 3);
        assert_eq!(seed.source, "built-in:cq-seed");
        assert!(seed.applies_to_region("500103"));
        assert!(!seed.applies_to_region("110000"));
    }

    #[test]
    fn an_unknown_id_lists_the_built_ins() {
        let err = Policy::built_in("bj-2001").unwrap_err().to_string();
        assert!(
            err.contains("cq-seed") && err.contains("cq-employee-outpatient"),
            "{err}"
        );
    }

    #[test]
    fn the_outpatient_rules_are_chosen_by_grade_and_retirement() {
        let p = Policy::built_in("cq-employee-outpatient").unwrap();
        let name = |k: RuleKey<'_>| p.rule_for(&k).map(|r| r.name.clone());
        assert_eq!(
            name(key("11", "1", false)).unwrap(),
            "in service, 二级 and below"
        );
        assert_eq!(
            name(key("11", "2", false)).unwrap(),
            "in service, 二级 and below"
        );
        assert_eq!(name(key("11", "3", false)).unwrap(), "in service, 三级");
        assert_eq!(
            name(key("11", "2", true)).unwrap(),
            "retired, 二级 and below"
        );
        assert_eq!(name(key("11", "3", true)).unwrap(), "retired, 三级");
        let err = name(key("21", "3", false)).unwrap_err().to_string();
        assert!(err.contains("med_type 21"), "{err}");
        let err = name(key("11", "", false)).unwrap_err().to_string();
        assert!(err.contains("hosp_lv (not given)"), "{err}");
        let resident = RuleKey {
            insutype: "390",
            ..key("11", "3", false)
        };
        assert!(matches!(
            p.rule_for(&resident),
            Err(PolicyError::NoRule { .. })
        ));
    }

    #[test]
    fn retirees_are_12_and_13_and_their_refinements() {
        for yes in ["12", "13", "1201", "1300"] {
            assert!(is_retired(yes), "{yes}");
        }
        for no in ["11", "1101", "14", "1560", "", "12x", "120", "1"] {
            assert!(!is_retired(no), "{no}");
        }
    }

    /// A one-rule policy with `rule` as the rule's body.
    fn with_rule(rule: &str) -> Result<Policy, PolicyError> {
        let text = format!(
            "[policy]\nid = \"t\"\nname = \"t\"\nregion = \"50\"\ninsutype = [\"310\"]\n\
             [account]\nemployee_rate = \"0.02\"\nemployer_rate = \"0.06\"\n\
             employer_to_account = \"0\"\n[interest]\ndemand_rate = \"0.0035\"\n\
             three_month_rate = \"0.011\"\n[[rule]]\nname = \"r\"\n{rule}\n"
        );
        Policy::parse_named(&text, "t.toml")
    }

    fn problem(rule: &str) -> String {
        with_rule(rule).unwrap_err().to_string()
    }

    #[test]
    fn validation_names_the_file_the_rule_and_the_problem() {
        let ok = "deductible = \"100\"\nbands = [{ upto = \"500\", psn_share = \"0.2\" }, { psn_share = \"0.1\" }]";
        assert!(with_rule(ok).is_ok());
        let e = problem("deductible = \"-1\"\nbands = [{ psn_share = \"0.2\" }]");
        assert!(e.starts_with("t.toml: rule \"r\": deductible"), "{e}");
        let e = problem("deductible = \"100\"\nbands = [{ psn_share = \"1.2\" }]");
        assert!(
            e.contains("bands[0].psn_share: 1.2 is not between 0 and 1"),
            "{e}"
        );
        let e = problem(
            "deductible = \"100\"\nbands = [{ upto = \"100\", psn_share = \"0.2\" }, { psn_share = \"0.1\" }]",
        );
        assert!(e.contains("bands[0].upto 100 is not above 100"), "{e}");
        let e = problem(
            "deductible = \"0\"\nbands = [{ upto = \"500\", psn_share = \"0.2\" }, { upto = \"400\", psn_share = \"0.1\" }, { psn_share = \"0\" }]",
        );
        assert!(e.contains("bands[1].upto 400 is not above 500"), "{e}");
        let e = problem(
            "deductible = \"0\"\ncap = \"500\"\nbands = [{ upto = \"500\", psn_share = \"0.2\" }, { psn_share = \"0.1\" }]",
        );
        assert!(
            e.contains("cap 500 is not above the last band bound 500"),
            "{e}"
        );
        let e = problem("deductible = \"0\"\nbands = [{ upto = \"500\", psn_share = \"0.2\" }]");
        assert!(e.contains("last band must not have upto"), "{e}");
        let e = problem("deductible = \"0\"\nbands = []");
        assert!(e.contains("bands is empty"), "{e}");
        let e = problem(
            "deductible = \"0\"\ncap = \"9\"\ncontribution_base = \"1\"\ncap_multiple = \"4\"\nbands = [{ psn_share = \"0.1\" }]",
        );
        assert!(e.contains("not both"), "{e}");
        let e = problem(
            "deductible = \"0\"\ncontribution_base = \"1\"\nbands = [{ psn_share = \"0.1\" }]",
        );
        assert!(e.contains("go together"), "{e}");
        let e = problem("deductible = \"4oo\"\nbands = [{ psn_share = \"0.1\" }]");
        assert!(e.contains("\"4oo\" is not a decimal number"), "{e}");
        let e = problem("deductible = \"1.005\"\nbands = [{ psn_share = \"0.1\" }]");
        assert!(e.contains("fractions of a fen"), "{e}");
        let e = problem("deductible = \"0\"\nbands = [{ psn_share = \"0.1\" }]\ncolour = \"red\"");
        assert!(e.starts_with("t.toml: not a policy file"), "{e}");
    }
}
