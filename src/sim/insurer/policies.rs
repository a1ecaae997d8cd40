//! Which cost-sharing policy the simulator settles a person under, and its hospital grade.
//!
//! The candidates, in order: the files of `--policy-dir DIR` (`*.toml`, by file name), the
//! simulator's own fixture policy for residents (`fixtures/insurer/policies/`), then medcard's
//! built-in policies (`cq-seed`, `cq-employee-outpatient`). A person is settled under the
//! **first candidate whose region is a prefix of the person's insuplc_admdvs and whose
//! insutype list holds the settlement's insutype**; when none matches, under the default
//! policy (`--policy ID`, default `cq-seed`), which then must have a rule for them or the
//! settlement is refused. The rule inside the policy is chosen by insutype, the visit's
//! med_type, the simulator's hospital grade (`--hosp-lv`, default "3") and whether the person
//! is retired (psn_type 12xx / 13xx).

use super::SimError;
use crate::settle::policy::{Policy, PolicyError, Rule, RuleKey, is_retired};
use std::path::Path;

const SIM_RESIDENT: &str =
    include_str!("../../../fixtures/insurer/policies/sim-resident-outpatient.toml");

/// The policies the simulator knows, the default, and its hospital grade.
#[derive(Debug, Clone)]
pub struct SimPolicies {
    candidates: Vec<Policy>,
    default: Policy,
    hosp_lv: String,
}

/// `*.toml` files of a directory, by file name.
fn load_dir(dir: &Path) -> Result<Vec<Policy>, SimError> {
    let entries = std::fs::read_dir(dir).map_err(|source| SimError::FixtureFile {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut paths: Vec<_> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    paths.sort();
    paths.iter().map(|p| Ok(Policy::load(p)?)).collect()
}

impl SimPolicies {
    /// The candidates (module doc) and the default policy by id.
    pub fn new(
        dir: Option<&Path>,
        default_id: &str,
        hosp_lv: &str,
    ) -> Result<SimPolicies, SimError> {
        let mut candidates = match dir {
            Some(dir) => load_dir(dir)?,
            None => Vec::new(),
        };
        let mut resident = Policy::parse_named(SIM_RESIDENT, "sim-resident-outpatient.toml")?;
        resident.source = "built-in:sim-resident-outpatient".into();
        candidates.push(resident);
        candidates.extend(Policy::built_ins()?);
        let default = candidates
            .iter()
            .find(|p| p.id == default_id)
            .cloned()
            .ok_or_else(|| {
                let known: Vec<&str> = candidates.iter().map(|p| p.id.as_str()).collect();
                SimError::UnknownPolicy {
                    id: default_id.to_owned(),
                    known: known.join(", "),
                }
            })?;
        Ok(SimPolicies {
            candidates,
            default,
            hosp_lv: hosp_lv.to_string(),
        })
    }

    /// The policy for a person's region and a settlement's insutype (module doc).
    pub fn for_person(&self, insuplc_admdvs: &str, insutype: &str) -> &Policy {
        self.candidates
            .iter()
            .find(|p| {
                p.applies_to_region(insuplc_admdvs) && p.insutype.iter().any(|t| t == insutype)
            })
            .unwrap_or(&self.default)
    }

    /// The rule a settlement uses.
    pub fn rule<'p>(
        &self,
        policy: &'p Policy,
        insutype: &str,
        med_type: &str,
        psn_type: &str,
    ) -> Result<&'p Rule, PolicyError> {
        policy.rule_for(&RuleKey {
            insutype,
            med_type,
            hosp_lv: &self.hosp_lv,
            retired: is_retired(psn_type),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn people_get_their_regions_policy_or_the_default() {
        let p = SimPolicies::new(None, "cq-seed", "3").unwrap();
        assert_eq!(p.for_person("500000", "310").id, "cq-seed");
        assert_eq!(p.for_person("510100", "390").id, "sim-resident-outpatient");
        assert_eq!(p.for_person("440100", "310").id, "cq-seed");
        let outpatient = SimPolicies::new(None, "cq-employee-outpatient", "3").unwrap();
        assert_eq!(
            outpatient.for_person("440100", "310").id,
            "cq-employee-outpatient"
        );
        assert!(SimPolicies::new(None, "nonesuch", "3").is_err());
    }

    #[test]
    fn rules_follow_grade_and_retirement() {
        let p = SimPolicies::new(None, "cq-employee-outpatient", "3").unwrap();
        let policy = Policy::built_in("cq-employee-outpatient").unwrap();
        assert_eq!(
            p.rule(&policy, "310", "11", "11").unwrap().name,
            "in service, 三级"
        );
        assert_eq!(
            p.rule(&policy, "310", "11", "1201").unwrap().name,
            "retired, 三级"
        );
        assert!(p.rule(&policy, "390", "11", "11").is_err());
    }
}
