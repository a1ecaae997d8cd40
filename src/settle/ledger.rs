//! The personal account (个人账户) over a year: the monthly credit from contributions and the
//! year-end interest (insurer-api.md §6.1, §6.3). The insurer simulator keeps its accounts
//! with these.
//!
//! - Credit: `round_fen(wage × employee_rate) + round_fen(wage × employer_rate ×
//!   employer_to_account)`, each part rounded half-up on its own.
//! - Interest, month-product method: money credited this year earns the demand rate, money
//!   carried over from earlier years the 3-month rate; interest = Σ(month-end current-year
//!   balance) × demand_rate / 12 + Σ(month-end carried-over balance) × three_month_rate / 12,
//!   rounded half-up to the fen once, at the end.
//! - Spending draws **current-year money first**, then carried-over money. (Regions differ;
//!   this order keeps the older money, which earns the higher 3-month rate, for longest —
//!   the choice most favourable to the person. A spend larger than both is held at both.)

use super::policy::Policy;
use crate::money::{round_fen, zero_fen};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// One month's credit into the account for a monthly wage (contribution base).
pub fn monthly_credit(policy: &Policy, wage: Decimal) -> Decimal {
    let rule = &policy.account;
    let wage = wage.max(Decimal::ZERO);
    let own = round_fen(wage.saturating_mul(rule.employee_rate));
    let employer = round_fen(
        wage.saturating_mul(rule.employer_rate)
            .saturating_mul(rule.employer_to_account),
    );
    own.saturating_add(employer)
}

/// The balance at the end of a month, by where the money came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonthEnd {
    /// Money carried over from earlier years.
    pub carried_over: Decimal,
    /// Money credited this year.
    pub current_year: Decimal,
}

/// A movement on the account in a calendar month (1–12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LedgerEntry {
    Credit { month: u32, amount: Decimal },
    Spend { month: u32, amount: Decimal },
}

impl LedgerEntry {
    fn month(&self) -> u32 {
        match self {
            LedgerEntry::Credit { month, .. } | LedgerEntry::Spend { month, .. } => *month,
        }
    }
}

/// The twelve month-end balances of a year that started with `carried_over`, after `entries`
/// (applied in their order within a month; entries for months outside 1–12 are ignored;
/// negative amounts count as 0).
pub fn month_ends(carried_over: Decimal, entries: &[LedgerEntry]) -> [MonthEnd; 12] {
    let mut balance = MonthEnd {
        carried_over: round_fen(carried_over.max(Decimal::ZERO)),
        current_year: zero_fen(),
    };
    let mut ends = [balance; 12];
    for (index, end) in ends.iter_mut().enumerate() {
        let month = index as u32 + 1;
        for entry in entries.iter().filter(|e| e.month() == month) {
            balance = apply(balance, entry);
        }
        *end = balance;
    }
    ends
}

/// One entry on a balance: a credit adds current-year money; a spend takes current-year money
/// first, then carried-over money.
fn apply(balance: MonthEnd, entry: &LedgerEntry) -> MonthEnd {
    match *entry {
        LedgerEntry::Credit { amount, .. } => MonthEnd {
            current_year: balance
                .current_year
                .saturating_add(round_fen(amount.max(Decimal::ZERO))),
            ..balance
        },
        LedgerEntry::Spend { amount, .. } => {
            let amount = round_fen(amount.max(Decimal::ZERO));
            let from_current = amount.min(balance.current_year);
            let from_carried = (amount - from_current).min(balance.carried_over);
            MonthEnd {
                current_year: balance.current_year - from_current,
                carried_over: balance.carried_over - from_carried,
            }
        }
    }
}

/// Year-end interest by the month-product method (module doc), rounded once.
pub fn year_end_interest(policy: &Policy, months: &[MonthEnd; 12]) -> Decimal {
    let rates = &policy.interest;
    let current: Decimal = months
        .iter()
        .fold(Decimal::ZERO, |s, m| s.saturating_add(m.current_year));
    let carried: Decimal = months
        .iter()
        .fold(Decimal::ZERO, |s, m| s.saturating_add(m.carried_over));
    let product = current
        .saturating_mul(rates.demand_rate)
        .saturating_add(carried.saturating_mul(rates.three_month_rate));
    round_fen(product / Decimal::from(12))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn seed() -> Policy {
        Policy::built_in("cq-seed").unwrap()
    }

    /// 小王's year: credits Jan–Mar, 230.00 spent in March, 25.00 carried over.
    fn xiaowang_entries(april_spend: Option<&str>) -> Vec<LedgerEntry> {
        let credit = monthly_credit(&seed(), d("2700"));
        let mut entries: Vec<LedgerEntry> = (1..=3)
            .map(|month| LedgerEntry::Credit {
                month,
                amount: credit,
            })
            .collect();
        entries.push(LedgerEntry::Spend {
            month: 3,
            amount: d("230.00"),
        });
        if let Some(spend) = april_spend {
            entries.push(LedgerEntry::Spend {
                month: 4,
                amount: d(spend),
            });
        }
        entries
    }

    #[test]
    fn the_seed_credit_is_2_percent_plus_30_percent_of_6_percent() {
        // 2700 × 0.02 = 54.00; 2700 × 0.06 × 0.30 = 48.60; 54.00 + 48.60 = 102.60.
        assert_eq!(monthly_credit(&seed(), d("2700")).to_string(), "102.60");
        // Post-2021: only the employee's 2 %: 2700 × 0.02 = 54.00.
        let outpatient = Policy::built_in("cq-employee-outpatient").unwrap();
        assert_eq!(monthly_credit(&outpatient, d("2700")).to_string(), "54.00");
        // Each part rounded on its own: 3333.33 × 0.02 = 66.6666 → 66.67;
        // 3333.33 × 0.06 × 0.30 = 59.99994 → 60.00; total 126.67.
        assert_eq!(monthly_credit(&seed(), d("3333.33")).to_string(), "126.67");
    }

    #[test]
    fn xiaowang_has_332_80_before_the_visit_and_102_80_after_230_spent() {
        let ends = month_ends(d("25.00"), &xiaowang_entries(None));
        // Before March's spending: 3 × 102.60 = 307.80 + 25.00 = 332.80; after: 102.80.
        // March: current 307.80 − 230.00 = 77.80, carried 25.00 untouched.
        assert_eq!(
            ends[2],
            MonthEnd {
                carried_over: d("25.00"),
                current_year: d("77.80")
            }
        );
        assert_eq!(ends[0].current_year, d("102.60"));
        assert_eq!(ends[1].current_year, d("205.20"));
        assert_eq!(ends[11], ends[2]);
    }

    #[test]
    fn spending_takes_current_year_money_first_then_carried_over() {
        // April: 102.80 spent = 77.80 current + 25.00 carried: both 0.
        let ends = month_ends(d("25.00"), &xiaowang_entries(Some("102.80")));
        assert_eq!(ends[3].current_year, d("0"));
        assert_eq!(ends[3].carried_over, d("0"));
        // 80.00 only: all from the 77.80 current-year money, then 2.20 carried over.
        let ends = month_ends(d("25.00"), &xiaowang_entries(Some("80.00")));
        assert_eq!(ends[3].current_year, d("0"));
        assert_eq!(ends[3].carried_over, d("22.80"));
    }

    #[test]
    fn xiaowang_year_end_interest_by_the_month_product_method() {
        // Month-ends (current / carried): Jan 102.60/25, Feb 205.20/25, Mar–Dec 77.80/25.
        // Σ current = 102.60 + 205.20 + 10 × 77.80 = 1085.80; Σ carried = 12 × 25 = 300.00.
        // (1085.80 × 0.0035 + 300.00 × 0.0110) / 12 = (3.8003 + 3.3) / 12 = 0.59169… → 0.59.
        let ends = month_ends(d("25.00"), &xiaowang_entries(None));
        assert_eq!(year_end_interest(&seed(), &ends).to_string(), "0.59");
        // With the April visit's 102.80 from the account: Σ current = 102.60 + 205.20 + 77.80
        // = 385.60, Σ carried = 3 × 25 = 75.00: (1.3496 + 0.825) / 12 = 0.18121… → 0.18.
        let ends = month_ends(d("25.00"), &xiaowang_entries(Some("102.80")));
        assert_eq!(year_end_interest(&seed(), &ends).to_string(), "0.18");
    }

    #[test]
    fn interest_is_rounded_once_at_the_end() {
        // 1.00 carried over all year: 12 × 1.00 × 0.0110 / 12 = 0.011 → 0.01; month by month
        // each month's 0.000916… would round to 0.00 and give 0.00.
        let ends = month_ends(d("1.00"), &[]);
        assert_eq!(year_end_interest(&seed(), &ends).to_string(), "0.01");
        // 100 carried over: 100 × 0.0110 = 1.10.
        let ends = month_ends(d("100"), &[]);
        assert_eq!(year_end_interest(&seed(), &ends).to_string(), "1.10");
    }

    #[test]
    fn entries_outside_the_calendar_are_ignored() {
        let entries = [
            LedgerEntry::Credit {
                month: 0,
                amount: d("5"),
            },
            LedgerEntry::Credit {
                month: 13,
                amount: d("5"),
            },
        ];
        let ends = month_ends(d("0"), &entries);
        assert!(ends.iter().all(|m| m.current_year.is_zero()));
    }
}
