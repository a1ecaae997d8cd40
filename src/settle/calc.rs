//! The settlement split (2206 门诊预结算 / 2207 门诊结算, insurer-api.md §2.6, §6.3): who pays
//! how much of a bill — the pooled fund (统筹基金), the personal account (个人账户, the patient's
//! own and then bound relatives' via 家庭共济), and cash.
//!
//! Rules as implemented (docs/settlement.md has worked examples):
//!
//! 1. Everything outside the policy scope — 全自费, 超限价, 先行自付 — is the person's.
//! 2. The in-scope amount is laid on the person's **calendar-year cumulative** in-scope amount:
//!    this visit covers `[ytd, ytd + inscp)`, where `ytd` is this year's total before it (the
//!    caller passes 0 in a new year, which resets the deductible). The part below the
//!    deductible is the person's (`act_pay_dedc`); each band above it is applied marginally, the
//!    person's share in a band rounded half-up to the fen on its own and the fund taking the
//!    band's remainder; above the cap the person pays everything.
//! 3. A yearly fund cap (`fund_cap`) limits the fund to `fund_cap − ytd fund pay` (never below
//!    0); the excess goes to the person, taken from the highest bands' fund parts first.
//! 4. The person's part is paid from the own account first, then relatives' accounts in binding
//!    order (`acct_mulaid_pay`), then cash — when the account is used at all.
//!
//! [`settle`] never panics: negative inputs count as 0 and amounts above the national N(16,2)
//! range are held at its maximum. Validating inputs (and telling the operator) is the caller's
//! job; `medcard settle calc` does.

use super::policy::{Policy, Rule};
use crate::money::{
    self, BrokenIdentity, CatalogueTotals, MAX_AMOUNT, SettlementAmounts, round_fen, zero_fen,
};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

/// An input amount as `settle` uses it: at least 0, at most N(16,2)'s maximum, in fen.
fn amount_in(d: Decimal) -> Decimal {
    round_fen(d.clamp(Decimal::ZERO, MAX_AMOUNT))
}

/// What the person has already had this calendar year, before this settlement.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct YearToDate {
    /// Cumulative in-scope amount (符合政策范围金额) this year.
    #[serde(with = "money")]
    pub inscp_scp_amt: Decimal,
    /// What the pooled fund has paid this year (for `fund_cap`).
    #[serde(with = "money")]
    pub fund_pay: Decimal,
}

/// The accounts that may pay the person's part.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AccountFunds {
    /// The patient's own balance.
    #[serde(with = "money")]
    pub balc: Decimal,
    /// Bound relatives' balances (家庭共济), in binding order.
    #[serde(with = "money::vec")]
    pub mulaid: Vec<Decimal>,
    /// acct_used_flag: let the account(s) pay at all.
    pub acct_used: bool,
}

/// What a band row stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BandKind {
    /// Below the deductible (起付线): the person pays all.
    Deductible,
    /// A pooled band of the rule.
    Pooled,
    /// Above the cap (最高支付限额): the person pays all.
    AboveCap,
}

/// One band touched by this settlement: `amount` of the visit's in-scope money fell between
/// `from` and `to` on the year's cumulative scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Band {
    pub kind: BandKind,
    #[serde(with = "money")]
    pub from: Decimal,
    /// `None`: without end.
    #[serde(with = "money::option")]
    pub to: Option<Decimal>,
    #[serde(with = "money")]
    pub amount: Decimal,
    pub psn_share: Decimal,
    #[serde(with = "money")]
    pub psn_pay: Decimal,
    #[serde(with = "money")]
    pub fund_pay: Decimal,
    /// Moved from the fund to the person by the yearly fund cap (included in `psn_pay`).
    #[serde(with = "money")]
    pub over_fund_cap: Decimal,
}

/// A settlement's result, with the national field names of 2206/2207 `setlinfo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Split {
    /// medfee_sumamt … balc, as the insurer's `setlinfo` names them.
    #[serde(flatten)]
    pub amounts: SettlementAmounts,
    /// Per relative, in the order of [`AccountFunds::mulaid`].
    #[serde(with = "money::vec")]
    pub mulaid_pay: Vec<Decimal>,
    /// The relatives' balances after.
    #[serde(with = "money::vec")]
    pub mulaid_balc: Vec<Decimal>,
    pub bands: Vec<Band>,
    /// The year's cumulative in-scope amount after this settlement.
    #[serde(with = "money")]
    pub ytd_inscp_after: Decimal,
    /// The year's fund pay after this settlement.
    #[serde(with = "money")]
    pub ytd_fund_pay_after: Decimal,
    pub policy_id: String,
    pub rule_name: String,
}

/// Settle a bill under `rule` of `policy` (module doc: the rules).
pub fn settle(
    policy: &Policy,
    rule: &Rule,
    totals: &CatalogueTotals,
    ytd: &YearToDate,
    funds: &AccountFunds,
) -> Split {
    let totals = CatalogueTotals {
        fulamt_ownpay_amt: amount_in(totals.fulamt_ownpay_amt),
        overlmt_selfpay: amount_in(totals.overlmt_selfpay),
        preselfpay_amt: amount_in(totals.preselfpay_amt),
        inscp_scp_amt: amount_in(totals.inscp_scp_amt),
    };
    let ytd = YearToDate {
        inscp_scp_amt: amount_in(ytd.inscp_scp_amt),
        fund_pay: amount_in(ytd.fund_pay),
    };
    let mut bands = lay_bands(rule, ytd.inscp_scp_amt, totals.inscp_scp_amt);
    apply_fund_cap(rule.fund_cap, ytd.fund_pay, &mut bands);

    let act_pay_dedc = sum(bands
        .iter()
        .filter(|b| b.kind == BandKind::Deductible)
        .map(|b| b.amount));
    let hifp_pay = sum(bands.iter().map(|b| b.fund_pay));
    let psn_inscp = sum(bands.iter().map(|b| b.psn_pay));
    let psn_part_amt =
        totals.fulamt_ownpay_amt + totals.overlmt_selfpay + totals.preselfpay_amt + psn_inscp;
    let paid = pay_from_accounts(psn_part_amt, funds);
    let acct_mulaid_pay = sum(paid.mulaid_pay.iter().copied());
    let acct_pay = paid.own + acct_mulaid_pay;

    let inscp = totals.inscp_scp_amt;
    Split {
        amounts: SettlementAmounts {
            medfee_sumamt: totals.medfee_sumamt(),
            catalogue: totals,
            act_pay_dedc,
            hifp_pay,
            pool_prop_selfpay: pool_ratio(hifp_pay, inscp - act_pay_dedc),
            fund_pay_sumamt: hifp_pay,
            psn_part_amt,
            acct_pay,
            acct_mulaid_pay,
            psn_cash_pay: psn_part_amt - acct_pay,
            hosp_part_amt: zero_fen(),
            balc: paid.balc_after,
        },
        mulaid_pay: paid.mulaid_pay,
        mulaid_balc: paid.mulaid_balc,
        bands,
        ytd_inscp_after: ytd.inscp_scp_amt + inscp,
        ytd_fund_pay_after: ytd.fund_pay + hifp_pay,
        policy_id: policy.id.clone(),
        rule_name: rule.name.clone(),
    }
}

/// A sum in fen (0.00 when empty).
fn sum(amounts: impl Iterator<Item = Decimal>) -> Decimal {
    amounts.fold(zero_fen(), |total, d| total + d)
}

/// `fund / base` to 4 places, half-up; 0 without a base.
fn pool_ratio(fund: Decimal, base: Decimal) -> Decimal {
    if base <= Decimal::ZERO {
        return Decimal::ZERO;
    }
    fund.checked_div(base)
        .map(|r| {
            r.round_dp_with_strategy(4, RoundingStrategy::MidpointAwayFromZero)
                .normalize()
        })
        .unwrap_or(Decimal::ZERO)
}

/// A stretch of the year's cumulative in-scope scale with the person's share in it.
struct Segment {
    kind: BandKind,
    from: Decimal,
    to: Option<Decimal>,
    psn_share: Decimal,
}

/// The rule's stretches in order: deductible, bands, above the cap.
fn segments(rule: &Rule) -> Vec<Segment> {
    let mut out = vec![Segment {
        kind: BandKind::Deductible,
        from: Decimal::ZERO,
        to: Some(rule.deductible),
        psn_share: Decimal::ONE,
    }];
    let mut from = rule.deductible;
    for band in &rule.bands {
        let to = band.upto.or(rule.cap);
        out.push(Segment {
            kind: BandKind::Pooled,
            from,
            to,
            psn_share: band.psn_share.clamp(Decimal::ZERO, Decimal::ONE),
        });
        from = to.unwrap_or(from);
    }
    if let Some(cap) = rule.cap {
        out.push(Segment {
            kind: BandKind::AboveCap,
            from: cap,
            to: None,
            psn_share: Decimal::ONE,
        });
    }
    out
}

/// The visit's in-scope amount `[ytd, ytd + inscp)` cut by the rule's stretches; one row per
/// stretch touched.
fn lay_bands(rule: &Rule, ytd: Decimal, inscp: Decimal) -> Vec<Band> {
    let end = ytd + inscp;
    segments(rule)
        .into_iter()
        .filter_map(|seg| {
            let lo = ytd.max(seg.from);
            let hi = seg.to.map_or(end, |to| end.min(to));
            let amount = round_fen(hi - lo);
            (amount > Decimal::ZERO).then(|| {
                let psn_pay = round_fen(amount * seg.psn_share);
                Band {
                    kind: seg.kind,
                    from: round_fen(seg.from),
                    to: seg.to.map(round_fen),
                    amount,
                    psn_share: seg.psn_share,
                    psn_pay,
                    fund_pay: amount - psn_pay,
                    over_fund_cap: zero_fen(),
                }
            })
        })
        .collect()
}

/// Hold the fund to `fund_cap − ytd_fund` (at least 0): the lower bands keep their fund part
/// first (they come first in the year), the excess becomes the person's.
fn apply_fund_cap(fund_cap: Option<Decimal>, ytd_fund: Decimal, bands: &mut [Band]) {
    let Some(fund_cap) = fund_cap else {
        return;
    };
    let mut left = round_fen((fund_cap - ytd_fund).max(Decimal::ZERO));
    for band in bands {
        let fund = band.fund_pay.min(left);
        band.over_fund_cap = band.fund_pay - fund;
        band.psn_pay += band.over_fund_cap;
        band.fund_pay = fund;
        left -= fund;
    }
}

/// How the person's part was paid from accounts.
struct AccountPayment {
    own: Decimal,
    balc_after: Decimal,
    mulaid_pay: Vec<Decimal>,
    mulaid_balc: Vec<Decimal>,
}

/// Own account first, then relatives' in order, each as far as its balance goes.
fn pay_from_accounts(due: Decimal, funds: &AccountFunds) -> AccountPayment {
    let balc = amount_in(funds.balc);
    let relatives: Vec<Decimal> = funds.mulaid.iter().copied().map(amount_in).collect();
    if !funds.acct_used {
        return AccountPayment {
            own: zero_fen(),
            balc_after: balc,
            mulaid_pay: relatives.iter().map(|_| zero_fen()).collect(),
            mulaid_balc: relatives,
        };
    }
    let own = balc.min(due);
    let mut left = due - own;
    let mut mulaid_pay = Vec::with_capacity(relatives.len());
    let mut mulaid_balc = Vec::with_capacity(relatives.len());
    for relative in relatives {
        let pay = relative.min(left);
        left -= pay;
        mulaid_pay.push(pay);
        mulaid_balc.push(relative - pay);
    }
    AccountPayment {
        own,
        balc_after: balc - own,
        mulaid_pay,
        mulaid_balc,
    }
}

/// A split that does not add up: every problem [`Split::check_invariants`] found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct BrokenSplit {
    pub problems: Vec<SplitProblem>,
}

/// One way a split can fail to add up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitProblem {
    /// An amount identity of insurer-api.md §2.6.
    #[error(transparent)]
    Identity(BrokenIdentity),
    #[error("Σ mulaid_pay ≠ acct_mulaid_pay")]
    MulaidSum,
    #[error("mulaid_pay and mulaid_balc differ in length")]
    MulaidLengths,
    #[error("an amount is negative or not in fen")]
    NotFen,
    #[error("Σ band amounts ≠ inscp_scp_amt")]
    BandAmounts,
    #[error("Σ band fund_pay ≠ hifp_pay")]
    BandFundPay,
    #[error("fund_pay_sumamt ≠ hifp_pay")]
    FundPaySum,
    #[error("a band does not split its amount or overflows its stretch")]
    BandInconsistent,
    #[error("act_pay_dedc ≠ the deductible row")]
    Deductible,
}

impl Split {
    /// The amount identities (insurer-api.md §2.6) and this module's own: the four-way split
    /// and the fund/person split both add up to medfee_sumamt; psn_part_amt = acct_pay +
    /// psn_cash_pay; acct_mulaid_pay ≤ acct_pay and = Σ mulaid_pay; every amount ≥ 0 with two
    /// places; the bands add up to inscp_scp_amt and hifp_pay, each band fits its stretch and
    /// splits its amount exactly (so act_pay_dedc ≤ the deductible). All problems, joined.
    pub fn check_invariants(&self) -> Result<(), BrokenSplit> {
        let a = &self.amounts;
        let mut problems: Vec<SplitProblem> = a
            .broken_identities()
            .into_iter()
            .map(SplitProblem::Identity)
            .collect();
        let mut check = |ok: bool, problem: SplitProblem| {
            if !ok {
                problems.push(problem);
            }
        };
        check(
            sum(self.mulaid_pay.iter().copied()) == a.acct_mulaid_pay,
            SplitProblem::MulaidSum,
        );
        check(
            self.mulaid_pay.len() == self.mulaid_balc.len(),
            SplitProblem::MulaidLengths,
        );
        check(
            self.money().iter().all(|d| is_fen(*d)),
            SplitProblem::NotFen,
        );
        check(
            sum(self.bands.iter().map(|b| b.amount)) == a.catalogue.inscp_scp_amt,
            SplitProblem::BandAmounts,
        );
        check(
            sum(self.bands.iter().map(|b| b.fund_pay)) == a.hifp_pay,
            SplitProblem::BandFundPay,
        );
        check(a.fund_pay_sumamt == a.hifp_pay, SplitProblem::FundPaySum);
        check(
            self.bands.iter().all(Band::is_consistent),
            SplitProblem::BandInconsistent,
        );
        let deductible_rows = self.bands.iter().filter(|b| b.kind == BandKind::Deductible);
        check(
            sum(deductible_rows.map(|b| b.amount)) == a.act_pay_dedc,
            SplitProblem::Deductible,
        );
        if problems.is_empty() {
            Ok(())
        } else {
            Err(BrokenSplit { problems })
        }
    }

    /// Every money field, the lists and the bands' amounts.
    fn money(&self) -> Vec<Decimal> {
        let mut all: Vec<Decimal> = self.amounts.money().collect();
        all.extend([self.ytd_inscp_after, self.ytd_fund_pay_after]);
        all.extend(&self.mulaid_pay);
        all.extend(&self.mulaid_balc);
        for band in &self.bands {
            all.extend([band.amount, band.psn_pay, band.fund_pay, band.over_fund_cap]);
        }
        all
    }
}

impl Band {
    fn is_consistent(&self) -> bool {
        let fits = self.to.is_none_or(|to| self.amount <= to - self.from);
        fits && self.psn_pay + self.fund_pay == self.amount && self.over_fund_cap <= self.psn_pay
    }
}

/// At least 0 and exactly two places.
fn is_fen(d: Decimal) -> bool {
    d >= Decimal::ZERO && d.scale() == 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn the_seed_visit_takes_the_last_102_80_from_the_account_and_17_20_in_cash() {
        let policy = Policy::built_in("cq-seed").unwrap();
        let split = settle(
            &policy,
            &policy.rules[0],
            &CatalogueTotals::in_scope_only(d("120.00")),
            &YearToDate {
                inscp_scp_amt: d("230.00"),
                fund_pay: Decimal::ZERO,
            },
            &AccountFunds {
                balc: d("102.80"),
                mulaid: vec![],
                acct_used: true,
            },
        );
        // 230 + 120 = 350 < 400: all of it is deductible; 102.80 from the account, 17.20 cash.
        assert_eq!(split.amounts.act_pay_dedc.to_string(), "120.00");
        assert_eq!(split.amounts.hifp_pay.to_string(), "0.00");
        assert_eq!(split.amounts.acct_pay.to_string(), "102.80");
        assert_eq!(split.amounts.psn_cash_pay.to_string(), "17.20");
        assert_eq!(split.amounts.balc.to_string(), "0.00");
        split.check_invariants().unwrap();
    }

    #[test]
    fn negative_and_huge_inputs_do_not_panic_and_still_add_up() {
        let policy = Policy::built_in("cq-seed").unwrap();
        let split = settle(
            &policy,
            &policy.rules[0],
            &CatalogueTotals {
                fulamt_ownpay_amt: Decimal::MAX,
                overlmt_selfpay: Decimal::MIN,
                preselfpay_amt: d("0.001"),
                inscp_scp_amt: Decimal::MAX,
            },
            &YearToDate {
                inscp_scp_amt: Decimal::MAX,
                fund_pay: d("-5"),
            },
            &AccountFunds {
                balc: d("-3"),
                mulaid: vec![Decimal::MAX, Decimal::MIN],
                acct_used: true,
            },
        );
        split.check_invariants().unwrap();
        assert_eq!(split.amounts.balc.to_string(), "0.00");
    }

    #[test]
    fn a_broken_split_is_named() {
        let policy = Policy::built_in("cq-seed").unwrap();
        let mut split = settle(
            &policy,
            &policy.rules[0],
            &CatalogueTotals::in_scope_only(d("1000")),
            &YearToDate::default(),
            &AccountFunds::default(),
        );
        split.amounts.psn_cash_pay += d("0.01");
        split.amounts.acct_mulaid_pay = d("-1.00");
        let broken = split.check_invariants().unwrap_err();
        assert!(broken.problems.contains(&SplitProblem::NotFen), "{broken}");
        let err = broken.to_string();
        assert!(
            err.contains("acct_pay + psn_cash_pay ≠ psn_part_amt"),
            "{err}"
        );
        assert!(err.contains("negative"), "{err}");
    }
}
