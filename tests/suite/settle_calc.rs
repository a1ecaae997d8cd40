//! Settlement: the library's split (`medcard::settle`) on hand-computed cases — the seed's
//! examples, band edges, rounding, the cap, the fund cap, accounts and 共济 — property tests of
//! the amount identities over random bills, and the `medcard settle calc` command.
//!
//! Every expected figure is worked out by hand in the comment beside it.

use crate::common::temp::TempDir;
use crate::common::{d, medcard};
use medcard::money::CatalogueTotals;
use medcard::settle::{AccountFunds, BandKind, Policy, RuleKey, Split, YearToDate, settle};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use rust_decimal::Decimal;
use std::process::Output;

/// A bill that is all in scope.
struct Visit<'a> {
    policy: &'a str,
    hosp_lv: &'a str,
    retired: bool,
    ytd_inscp: &'a str,
    ytd_fund_pay: &'a str,
    inscp: &'a str,
    balc: &'a str,
    mulaid: &'a [&'a str],
    acct_used: bool,
}

const SEED: Visit<'static> = Visit {
    policy: "cq-seed",
    hosp_lv: "",
    retired: false,
    ytd_inscp: "0",
    ytd_fund_pay: "0",
    inscp: "0",
    balc: "0",
    mulaid: &[],
    acct_used: true,
};

impl Visit<'_> {
    fn settle(&self) -> Split {
        let policy = Policy::built_in(self.policy).unwrap();
        let key = RuleKey {
            insutype: "310",
            med_type: "11",
            hosp_lv: self.hosp_lv,
            retired: self.retired,
        };
        let rule = policy.rule_for(&key).unwrap();
        let split = settle(
            &policy,
            rule,
            &CatalogueTotals::in_scope_only(d(self.inscp)),
            &YearToDate {
                inscp_scp_amt: d(self.ytd_inscp),
                fund_pay: d(self.ytd_fund_pay),
            },
            &AccountFunds {
                balc: d(self.balc),
                mulaid: self.mulaid.iter().map(|m| d(m)).collect(),
                acct_used: self.acct_used,
            },
        );
        split.check_invariants().unwrap();
        split
    }
}

/// (act_pay_dedc, hifp_pay, psn_part_amt) as strings.
fn fund_and_person(split: &Split) -> [String; 3] {
    [
        split.amounts.act_pay_dedc,
        split.amounts.hifp_pay,
        split.amounts.psn_part_amt,
    ]
    .map(|x| x.to_string())
}

/// (acct_pay, acct_mulaid_pay, psn_cash_pay, balc) as strings.
fn payment(split: &Split) -> [String; 4] {
    [
        split.amounts.acct_pay,
        split.amounts.acct_mulaid_pay,
        split.amounts.psn_cash_pay,
        split.amounts.balc,
    ]
    .map(|x| x.to_string())
}

/// fund_pay of the `kind` rows, in order.
fn band_funds(split: &Split, kind: BandKind) -> Vec<String> {
    split
        .bands
        .iter()
        .filter(|b| b.kind == kind)
        .map(|b| b.fund_pay.to_string())
        .collect()
}

// --- the seed's examples -------------------------------------------------------------------

#[test]
fn the_seed_example_17_20_in_cash() {
    // 230 + 120 = 350 < 400: all 120 is deductible; the account has 332.80 − 230 = 102.80 left,
    // so it pays 102.80 and the cash is 120 − 102.80 = 17.20.
    let split = Visit {
        ytd_inscp: "230.00",
        inscp: "120.00",
        balc: "102.80",
        ..SEED
    }
    .settle();
    assert_eq!(fund_and_person(&split), ["120.00", "0.00", "120.00"]);
    assert_eq!(payment(&split), ["102.80", "0.00", "17.20", "0.00"]);
    assert_eq!(split.ytd_inscp_after.to_string(), "350.00");
    assert_eq!(split.amounts.pool_prop_selfpay, Decimal::ZERO);
}

#[test]
fn the_worked_example_of_insurer_api_6_3() {
    // 8,000 in a year from 0 with 332.80 in the account: deductible 400; 400–5,000: 4,600 →
    // person 25 % 1,150.00, fund 3,450.00; 5,000–8,000: 3,000 → person 600.00, fund 2,400.00.
    // Fund 5,850.00; person 400 + 1,150 + 600 = 2,150.00 = account 332.80 + cash 1,817.20.
    let split = Visit {
        inscp: "8000.00",
        balc: "332.80",
        ..SEED
    }
    .settle();
    assert_eq!(fund_and_person(&split), ["400.00", "5850.00", "2150.00"]);
    assert_eq!(payment(&split), ["332.80", "0.00", "1817.20", "0.00"]);
    assert_eq!(band_funds(&split, BandKind::Pooled), ["3450.00", "2400.00"]);
    // 5,850 / 7,600 = 0.769736… → 0.7697.
    assert_eq!(split.amounts.pool_prop_selfpay, d("0.7697"));
}

// --- band edges (no account: the person's part is all cash) ---------------------------------

/// (act_pay_dedc, hifp_pay, psn_part_amt) for a visit of `inscp` after `ytd` under the seed.
fn seed_edge(ytd: &str, inscp: &str) -> [String; 3] {
    fund_and_person(
        &Visit {
            ytd_inscp: ytd,
            inscp,
            ..SEED
        }
        .settle(),
    )
}

#[test]
fn the_deductible_edge_at_400() {
    assert_eq!(seed_edge("0", "399.99"), ["399.99", "0.00", "399.99"]);
    assert_eq!(seed_edge("0", "400.00"), ["400.00", "0.00", "400.00"]);
    // 0.01 above: 25 % of 0.01 = 0.0025 → 0.00 person, the fund gets the band's 0.01.
    assert_eq!(seed_edge("0", "400.01"), ["400.00", "0.01", "400.00"]);
    // From 399.99: 0.01 deductible, 0.01 in the first band (fund).
    assert_eq!(seed_edge("399.99", "0.02"), ["0.01", "0.01", "0.01"]);
    // Already past the deductible: none of it is consumed again.
    assert_eq!(seed_edge("400.00", "100.00"), ["0.00", "75.00", "25.00"]);
}

#[test]
fn the_band_edge_at_5000() {
    // 400 + 4,600 × 25 % = 400 + 1,150 = 1,550 person; fund 3,450.
    assert_eq!(seed_edge("0", "5000.00"), ["400.00", "3450.00", "1550.00"]);
    // 4,599.99 × 25 % = 1,149.9975 → 1,150.00; fund 4,599.99 − 1,150.00 = 3,449.99.
    assert_eq!(seed_edge("0", "4999.99"), ["400.00", "3449.99", "1550.00"]);
    // + 0.01 at 20 %: 0.002 → 0.00 person, 0.01 fund.
    assert_eq!(seed_edge("0", "5000.01"), ["400.00", "3450.01", "1550.00"]);
}

#[test]
fn the_band_edge_at_10000() {
    // 400 + 1,150 + 5,000 × 20 % = 1,000 → person 2,550; fund 3,450 + 4,000 = 7,450.
    assert_eq!(seed_edge("0", "10000.00"), ["400.00", "7450.00", "2550.00"]);
    // 4,999.99 × 20 % = 999.998 → 1,000.00; fund 3,999.99: 7,449.99.
    assert_eq!(seed_edge("0", "9999.99"), ["400.00", "7449.99", "2550.00"]);
    // + 0.01 at 15 %: 0.0015 → 0.00 person.
    assert_eq!(seed_edge("0", "10000.01"), ["400.00", "7450.01", "2550.00"]);
}

#[test]
fn the_cap_at_120000_and_the_person_pays_all_above_it() {
    // 10,000–120,000 = 110,000 × 15 % = 16,500 person, 93,500 fund.
    // Fund 3,450 + 4,000 + 93,500 = 100,950; person 400 + 1,150 + 1,000 + 16,500 = 19,050.
    assert_eq!(
        seed_edge("0", "120000.00"),
        ["400.00", "100950.00", "19050.00"]
    );
    // 109,999.99 × 15 % = 16,499.9985 → 16,500.00; fund 93,499.99.
    assert_eq!(
        seed_edge("0", "119999.99"),
        ["400.00", "100949.99", "19050.00"]
    );
    // 0.01 above the cap: the person's.
    assert_eq!(
        seed_edge("0", "120000.01"),
        ["400.00", "100950.00", "19050.01"]
    );
    // From 119,000: 1,000 at 15 % (150 / 850), then 1,000 above the cap.
    let split = Visit {
        ytd_inscp: "119000.00",
        inscp: "2000.00",
        ..SEED
    }
    .settle();
    assert_eq!(fund_and_person(&split), ["0.00", "850.00", "1150.00"]);
    let above: Vec<_> = split
        .bands
        .iter()
        .filter(|b| b.kind == BandKind::AboveCap)
        .map(|b| {
            (
                b.from.to_string(),
                b.amount.to_string(),
                b.psn_pay.to_string(),
            )
        })
        .collect();
    assert_eq!(
        above,
        [("120000.00".into(), "1000.00".into(), "1000.00".into())]
    );
}

#[test]
fn one_visit_crossing_every_band() {
    // [300, 12,300): deductible 100; 4,600 → 1,150 / 3,450; 5,000 → 1,000 / 4,000;
    // 2,300 at 15 % → 345 / 1,955. Fund 9,405; person 2,595; 9,405 / 11,900 = 0.79033… → 0.7903.
    let split = Visit {
        ytd_inscp: "300.00",
        inscp: "12000.00",
        ..SEED
    }
    .settle();
    assert_eq!(fund_and_person(&split), ["100.00", "9405.00", "2595.00"]);
    assert_eq!(
        band_funds(&split, BandKind::Pooled),
        ["3450.00", "4000.00", "1955.00"]
    );
    assert_eq!(split.bands.len(), 4);
    assert_eq!(split.amounts.pool_prop_selfpay, d("0.7903"));
}

#[test]
fn each_bands_share_is_rounded_half_up_on_its_own() {
    // 0.02 at 25 % = 0.005 → 0.01 person, 0.01 fund.
    assert_eq!(seed_edge("400.00", "0.02"), ["0.00", "0.01", "0.01"]);
    // 0.10 at 25 % = 0.025 → 0.03 (half-even would give 0.02); fund 0.07.
    assert_eq!(seed_edge("400.00", "0.10"), ["0.00", "0.07", "0.03"]);
    // From 4,999.98: 0.02 at 25 % = 0.005 → 0.01 and 0.03 at 20 % = 0.006 → 0.01: person
    // 0.02 (rounding the 0.011 total once would give 0.01); fund 0.01 + 0.02 = 0.03.
    assert_eq!(seed_edge("4999.98", "0.05"), ["0.00", "0.03", "0.02"]);
}

// --- accounts -------------------------------------------------------------------------------

#[test]
fn the_account_runs_out_mid_bill_and_cash_pays_the_rest() {
    // 1,000 from 0: 400 + 600 × 25 % = 150 → person 550, fund 450; account 500, cash 50.
    let split = Visit {
        inscp: "1000.00",
        balc: "500.00",
        ..SEED
    }
    .settle();
    assert_eq!(fund_and_person(&split), ["400.00", "450.00", "550.00"]);
    assert_eq!(payment(&split), ["500.00", "0.00", "50.00", "0.00"]);
}

#[test]
fn relatives_accounts_pay_in_binding_order_after_the_own() {
    // Person 550 (as above): own 100, first relative 300 (all of it), second 150 of 400.
    let split = Visit {
        inscp: "1000.00",
        balc: "100.00",
        mulaid: &["300.00", "400.00"],
        ..SEED
    }
    .settle();
    assert_eq!(payment(&split), ["550.00", "450.00", "0.00", "0.00"]);
    assert_eq!(split.mulaid_pay, [d("300.00"), d("150.00")]);
    assert_eq!(split.mulaid_balc, [d("0.00"), d("250.00")]);
    // When the own account suffices the relatives' are not touched: 600 − 550 = 50 left.
    let split = Visit {
        inscp: "1000.00",
        balc: "600.00",
        mulaid: &["300.00", "400.00"],
        ..SEED
    }
    .settle();
    assert_eq!(payment(&split), ["550.00", "0.00", "0.00", "50.00"]);
    assert_eq!(split.mulaid_balc, [d("300.00"), d("400.00")]);
}

#[test]
fn without_the_account_everything_is_cash_and_the_balance_stays() {
    let split = Visit {
        ytd_inscp: "230.00",
        inscp: "120.00",
        balc: "102.80",
        mulaid: &["50.00"],
        acct_used: false,
        ..SEED
    }
    .settle();
    assert_eq!(payment(&split), ["0.00", "0.00", "120.00", "102.80"]);
    assert_eq!(split.mulaid_pay, [d("0.00")]);
    assert_eq!(split.mulaid_balc, [d("50.00")]);
}

#[test]
fn a_new_year_starts_from_zero_and_the_deductible_again() {
    // Late last year at 5,000 a visit of 120 is at 20 %: person 24, fund 96.
    let december = Visit {
        ytd_inscp: "5000.00",
        inscp: "120.00",
        ..SEED
    }
    .settle();
    assert_eq!(fund_and_person(&december), ["0.00", "96.00", "24.00"]);
    // In January the caller passes this year's cumulative amount, 0: all deductible.
    let january = Visit {
        inscp: "120.00",
        ..SEED
    }
    .settle();
    assert_eq!(fund_and_person(&january), ["120.00", "0.00", "120.00"]);
}

// --- the outpatient policy: grades, retirees, the fund cap -----------------------------------

const OUTPATIENT: Visit<'static> = Visit {
    policy: "cq-employee-outpatient",
    hosp_lv: "3",
    ..SEED
};

#[test]
fn outpatient_ratios_by_grade_and_retirement() {
    let at = |hosp_lv, retired| {
        let split = Visit {
            hosp_lv,
            retired,
            inscp: "1200.00",
            ..OUTPATIENT
        }
        .settle();
        (fund_and_person(&split), split.rule_name)
    };
    // In service: deductible 200; 1,000 left. 三级 50 %: fund 500. 二级 60 %: fund 600.
    assert_eq!(at("3", false).0, ["200.00", "500.00", "700.00"]);
    assert_eq!(at("2", false).0, ["200.00", "600.00", "600.00"]);
    assert_eq!(at("1", false).1, "in service, 二级 and below");
    // Retired: deductible 100; 1,100 left. 三级 60 %: fund 660. 二级 70 %: fund 770.
    assert_eq!(at("3", true).0, ["100.00", "660.00", "540.00"]);
    assert_eq!(at("2", true).0, ["100.00", "770.00", "430.00"]);
}

#[test]
fn the_yearly_fund_cap_moves_the_excess_to_the_person() {
    // 三级 in service, 1,200 from 0: fund would pay 500, but 2,800 of 3,000 is used: 200.
    // Person 200 + 500 + 300 = 1,000.
    let split = Visit {
        inscp: "1200.00",
        ytd_fund_pay: "2800.00",
        ..OUTPATIENT
    }
    .settle();
    assert_eq!(fund_and_person(&split), ["200.00", "200.00", "1000.00"]);
    assert_eq!(split.bands[1].over_fund_cap, d("300.00"));
    assert_eq!(split.ytd_fund_pay_after, d("3000.00"));
    // Cap reached or passed: the fund pays nothing.
    for used in ["3000.00", "3500.00"] {
        let split = Visit {
            inscp: "1200.00",
            ytd_fund_pay: used,
            ..OUTPATIENT
        }
        .settle();
        assert_eq!(fund_and_person(&split), ["200.00", "0.00", "1200.00"]);
    }
    // Retirees' cap is 4,000: with 3,800 used, 200 of the 660 (三级 60 % of 1,100).
    let split = Visit {
        retired: true,
        inscp: "1200.00",
        ytd_fund_pay: "3800.00",
        ..OUTPATIENT
    }
    .settle();
    assert_eq!(fund_and_person(&split), ["100.00", "200.00", "1000.00"]);
}

// --- the line split into a settlement --------------------------------------------------------

#[test]
fn fee_lines_feed_the_four_way_split() {
    use medcard::insurer::{CatalogueItem, ChrgitmLv};
    use medcard::settle::{FeeLine, split_lines};
    let item = |code: &str, lv, prop: &str, cap: Option<&str>| CatalogueItem {
        version: 1,
        hilist_code: code.into(),
        hilist_name: code.into(),
        chrgitm_lv: lv,
        selfpay_prop: d(prop),
        pric_uplmt_amt: cap.map(d),
        vali_flag: true,
    };
    let catalogue = [
        item("A", ChrgitmLv::A, "0", None),
        item("B", ChrgitmLv::B, "0.20", Some("68.00")),
        item("C", ChrgitmLv::C, "0", None),
    ];
    let line = |sn: &str, code: &str, cnt: &str, pric: &str| FeeLine {
        feedetl_sn: sn.into(),
        med_list_codg: code.into(),
        medins_list_codg: code.into(),
        fee_name: code.into(),
        cnt: d(cnt),
        pric: d(pric),
    };
    let lines = [
        line("1", "A", "2", "100.00"),  // 200.00 in scope
        line("2", "B", "2", "75.00"),   // 150.00: 14.00 over, 27.20 先行自付, 108.80 in scope
        line("3", "C", "1", "30.00"),   // 30.00 全自费
        line("4", "ZZZ", "1", "12.00"), // 12.00 全自费 (not in the catalogue)
    ];
    let split = split_lines(&lines, &catalogue).unwrap();
    let totals = CatalogueTotals::from_lines(&split);
    // medfee 200 + 150 + 30 + 12 = 392.00; in scope 200 + 108.80 = 308.80.
    assert_eq!(totals.medfee_sumamt(), d("392.00"));
    assert_eq!(totals.fulamt_ownpay_amt, d("42.00"));
    assert_eq!(totals.overlmt_selfpay, d("14.00"));
    assert_eq!(totals.preselfpay_amt, d("27.20"));
    assert_eq!(totals.inscp_scp_amt, d("308.80"));
    // Seed, from 0: 308.80 all deductible; person 392.00; account 100, cash 292.00.
    let policy = Policy::built_in("cq-seed").unwrap();
    let s = settle(
        &policy,
        &policy.rules[0],
        &totals,
        &YearToDate::default(),
        &AccountFunds {
            balc: d("100"),
            mulaid: vec![],
            acct_used: true,
        },
    );
    s.check_invariants().unwrap();
    assert_eq!(fund_and_person(&s), ["308.80", "0.00", "392.00"]);
    assert_eq!(payment(&s), ["100.00", "0.00", "292.00", "0.00"]);
}

// --- properties ------------------------------------------------------------------------------

/// An amount in fen up to `max_yuan`.
fn fen(max_yuan: i64) -> impl Strategy<Value = Decimal> {
    (0..=max_yuan * 100).prop_map(|f| Decimal::new(f, 2))
}

/// 2000 cases a property; failures are kept beside this file (`settle_calc.proptest-regressions`):
/// proptest's default would put them in `tests/proptest-regressions/` now that `main.rs` is here.
fn property_config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::with_cases(2000)
    }
}

proptest! {
    #![proptest_config(property_config())]

    #[test]
    fn every_split_adds_up(
        policy_index in 0usize..2,
        rule_index in 0usize..8,
        ytd_inscp in fen(200_000),
        ytd_fund in fen(6_000),
        fulamt in fen(3_000),
        overlmt in fen(500),
        preself in fen(500),
        inscp in prop_oneof![fen(1_000), fen(150_000)],
        balc in fen(10_000),
        mulaid in proptest::collection::vec(fen(3_000), 0..3),
        acct_used in any::<bool>(),
    ) {
        let policies = Policy::built_ins().unwrap();
        let policy = &policies[policy_index];
        let rule = &policy.rules[rule_index % policy.rules.len()];
        let totals = CatalogueTotals {
            fulamt_ownpay_amt: fulamt,
            overlmt_selfpay: overlmt,
            preselfpay_amt: preself,
            inscp_scp_amt: inscp,
        };
        let ytd = YearToDate { inscp_scp_amt: ytd_inscp, fund_pay: ytd_fund };
        let funds = AccountFunds { balc, mulaid: mulaid.clone(), acct_used };
        let split = settle(policy, rule, &totals, &ytd, &funds);
        prop_assert_eq!(split.check_invariants(), Ok(()));
        prop_assert!(split.amounts.act_pay_dedc <= rule.deductible);
        prop_assert_eq!(split.amounts.medfee_sumamt, fulamt + overlmt + preself + inscp);
        prop_assert_eq!(split.ytd_inscp_after, ytd_inscp + inscp);
        if let Some(cap) = rule.fund_cap {
            prop_assert!(split.amounts.hifp_pay <= (cap - ytd_fund).max(Decimal::ZERO));
        }
        // Money only moves out of accounts: own + relatives' before = after + acct_pay.
        let before: Decimal = balc + mulaid.iter().sum::<Decimal>();
        let after: Decimal = split.amounts.balc + split.mulaid_balc.iter().sum::<Decimal>();
        prop_assert_eq!(before, after + split.amounts.acct_pay);
        if !acct_used {
            prop_assert_eq!(split.amounts.psn_cash_pay, split.amounts.psn_part_amt);
        }
        // Cash is only due when every account is empty.
        if split.amounts.psn_cash_pay > Decimal::ZERO && acct_used {
            prop_assert!(split.amounts.balc.is_zero());
            prop_assert!(split.mulaid_balc.iter().all(|b| b.is_zero()));
        }
    }

    #[test]
    fn splitting_a_visit_in_two_moves_at_most_a_fen_per_band(
        ytd in fen(130_000),
        first in fen(20_000),
        second in fen(20_000),
    ) {
        // Cumulative thresholds: two visits pay the fund what one visit of both would, up to
        // the per-band rounding (at most 0.01 per band row, 5 rows at most on each side).
        let policy = Policy::built_in("cq-seed").unwrap();
        let rule = &policy.rules[0];
        let run = |ytd: Decimal, inscp: Decimal| {
            settle(&policy, rule, &CatalogueTotals::in_scope_only(inscp),
                &YearToDate { inscp_scp_amt: ytd, fund_pay: Decimal::ZERO },
                &AccountFunds::default())
        };
        let a = run(ytd, first);
        let b = run(ytd + first, second);
        let both = run(ytd, first + second);
        let diff = (a.amounts.hifp_pay + b.amounts.hifp_pay - both.amounts.hifp_pay).abs();
        prop_assert!(diff <= d("0.10"), "{} + {} vs {}", a.amounts.hifp_pay, b.amounts.hifp_pay, both.amounts.hifp_pay);
        prop_assert_eq!(a.amounts.act_pay_dedc + b.amounts.act_pay_dedc, both.amounts.act_pay_dedc);
    }

    #[test]
    fn settle_never_panics_on_any_decimal(
        parts in proptest::collection::vec((any::<u32>(), any::<u32>(), any::<u32>(), any::<bool>(), 0u32..=28), 8),
        acct_used in any::<bool>(),
    ) {
        let decimals: Vec<Decimal> = parts
            .iter()
            .map(|&(lo, mid, hi, neg, scale)| Decimal::from_parts(lo, mid, hi, neg, scale))
            .collect();
        let policy = Policy::built_in("cq-employee-outpatient").unwrap();
        let split = settle(
            &policy,
            &policy.rules[0],
            &CatalogueTotals {
                fulamt_ownpay_amt: decimals[0],
                overlmt_selfpay: decimals[1],
                preselfpay_amt: decimals[2],
                inscp_scp_amt: decimals[3],
            },
            &YearToDate { inscp_scp_amt: decimals[4], fund_pay: decimals[5] },
            &AccountFunds { balc: decimals[6], mulaid: vec![decimals[7]], acct_used },
        );
        prop_assert_eq!(split.check_invariants(), Ok(()));
    }
}

// --- medcard settle calc ---------------------------------------------------------------------

fn json(output: &Output) -> serde_json::Value {
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).unwrap()
}

fn stderr(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs `medcard settle calc FLAGS… MORE…`: `flags` split at white space, then `more` as they
/// are (paths, which may hold spaces).
fn calc(flags: &str, more: &[&str]) -> Output {
    let mut args = vec!["settle", "calc"];
    args.extend(flags.split_whitespace());
    args.extend_from_slice(more);
    medcard(&args)
}

#[test]
fn calc_prints_the_seed_example() {
    let out = calc(
        "--policy cq-seed --ytd-inscp 230 --balc 102.80 --inscp 120",
        &[],
    );
    let v = json(&out);
    assert_eq!(v["acct_pay"], "102.80");
    assert_eq!(v["psn_cash_pay"], "17.20");
    assert_eq!(v["hifp_pay"], "0.00");
    assert_eq!(v["balc"], "0.00");
    assert_eq!(v["act_pay_dedc"], "120.00");
    assert_eq!(v["bands"][0]["kind"], "deductible");
    assert_eq!(v["bands"][0]["to"], "400.00");
    assert!(v.get("lines").is_none());
}

#[test]
fn calc_with_relatives_and_without_the_account() {
    // 1,000 from 0 under the seed: person 550; own 100, relatives 300 + 150.
    let out = calc(
        "--ytd-inscp 0 --balc 100 --mulaid 300 --mulaid 400 --inscp 1000",
        &[],
    );
    let v = json(&out);
    assert_eq!(v["acct_pay"], "550.00");
    assert_eq!(v["acct_mulaid_pay"], "450.00");
    assert_eq!(v["mulaid_pay"], serde_json::json!(["300.00", "150.00"]));
    assert_eq!(v["mulaid_balc"], serde_json::json!(["0.00", "250.00"]));
    let out = calc("--ytd-inscp 0 --balc 100 --acct-used no --inscp 1000", &[]);
    let v = json(&out);
    assert_eq!(v["psn_cash_pay"], "550.00");
    assert_eq!(v["balc"], "100.00");
}

#[test]
fn calc_text_is_a_receipt_with_the_bands() {
    let out = calc(
        "--ytd-inscp 0 --balc 332.80 --inscp 8000 --format text",
        &[],
    );
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "统筹基金",
        "hifp_pay",
        "5850.00",
        "现金",
        "psn_cash_pay",
        "1817.20",
        "余额",
        "起付线",
        "25%",
    ] {
        assert!(text.contains(needle), "{needle} missing in\n{text}");
    }
    let cash = text.lines().find(|l| l.contains("psn_cash_pay")).unwrap();
    assert!(cash.ends_with("1817.20"), "{cash}");
}

#[test]
fn calc_with_fee_lines_against_the_built_in_catalogue() {
    // 阿莫西林 (甲类) 2 × 12.50 = 25.00 in scope; 头孢克洛 (乙类 10 %) 1 × 33.35 → 3.335 → 3.34
    // 先行自付, 30.01 in scope; 维生素C (丙类) 1 × 9.90 全自费; an unknown code 5.00 全自费.
    // medfee 73.25; in scope 55.01 (all deductible from 0); person 73.25, all cash (balc 0).
    let dir = TempDir::new("settle-calc-items");
    let items = dir.file(
        "bill.json",
        r#"[
          {"code": "XJ01CAA040A001010100001", "name": "阿莫西林胶囊", "qty": "2", "price": "12.50"},
          {"med_list_codg": "XJ01DCA041A010010100003", "fee_name": "头孢克洛缓释片", "cnt": 1, "pric": "33.35"},
          {"code": "XA11GAA001A001010100005", "name": "维生素C咀嚼片", "qty": 1, "price": 9.9},
          {"code": "NOT-IN-CATALOGUE", "name": "自制", "qty": "1", "price": "5"}
        ]"#,
    );
    let out = calc(
        "--ytd-inscp 0 --balc 0",
        &["--items", items.to_str().unwrap()],
    );
    let v = json(&out);
    assert_eq!(v["medfee_sumamt"], "73.25");
    assert_eq!(v["inscp_scp_amt"], "55.01");
    assert_eq!(v["preselfpay_amt"], "3.34");
    assert_eq!(v["fulamt_ownpay_amt"], "14.90");
    assert_eq!(v["psn_cash_pay"], "73.25");
    assert_eq!(v["lines"].as_array().unwrap().len(), 4);
    assert_eq!(v["lines"][1]["chrgitm_lv"], "02");
    assert_eq!(v["lines"][3]["chrgitm_lv"], serde_json::Value::Null);
    assert_eq!(v["lines"][0]["feedetl_sn"], "1");
}

#[test]
fn calc_with_a_catalogue_file_and_a_policy_file() {
    // Catalogue: one 乙类 item, 50 % 先行自付, cap 10.00. 3 × 12.00 = 36.00: 6.00 over the cap,
    // 15.00 先行自付, 15.00 in scope.
    let dir = TempDir::new("settle-calc-files");
    let catalogue = dir.file(
        "catalogue.toml",
        "[[item]]\nhilist_code = \"Q1\"\nhilist_name = \"q\"\nchrgitm_lv = \"02\"\n\
         selfpay_prop = \"0.50\"\npric_uplmt_amt = \"10.00\"\n",
    );
    let items = dir.file(
        "bill.json",
        r#"[{"code": "Q1", "name": "q", "qty": 3, "price": "12.00"}]"#,
    );
    // Policy: no deductible, person 10 % to 100, then 50 % without a cap.
    // In scope 15.00 → person 1.50, fund 13.50; person total 6 + 15 + 1.50 = 22.50.
    let policy = dir.file(
        "flat.toml",
        "[policy]\nid = \"flat\"\nname = \"flat\"\nregion = \"11\"\ninsutype = [\"390\"]\n\
         [account]\nemployee_rate = \"0\"\nemployer_rate = \"0\"\nemployer_to_account = \"0\"\n\
         [interest]\ndemand_rate = \"0\"\nthree_month_rate = \"0\"\n\
         [[rule]]\nname = \"all\"\ndeductible = \"0\"\n\
         bands = [{ upto = \"100\", psn_share = \"0.10\" }, { psn_share = \"0.5\" }]\n",
    );
    let out = calc(
        "--insutype 390 --ytd-inscp 0 --balc 0",
        &[
            "--policy",
            policy.to_str().unwrap(),
            "--items",
            items.to_str().unwrap(),
            "--catalogue",
            catalogue.to_str().unwrap(),
        ],
    );
    let v = json(&out);
    assert_eq!(v["overlmt_selfpay"], "6.00");
    assert_eq!(v["preselfpay_amt"], "15.00");
    assert_eq!(v["inscp_scp_amt"], "15.00");
    assert_eq!(v["hifp_pay"], "13.50");
    assert_eq!(v["psn_part_amt"], "22.50");
    assert_eq!(v["policy_id"], "flat");
}

#[test]
fn calc_errors_are_in_the_operators_terms() {
    let run = |flags: &str, more: &[&str]| stderr(&calc(&format!("--ytd-inscp 0 {flags}"), more));
    let e = run("--balc 12.3x --inscp 1", &[]);
    assert!(
        e.contains("--balc: '12.3x' is not an amount in yuan"),
        "{e}"
    );
    let e = run("--balc -5 --inscp 1", &[]);
    assert!(e.contains("--balc: '-5' is negative"), "{e}");
    let e = run("--balc 1 --inscp 1.005", &[]);
    assert!(e.contains("--inscp: '1.005' has fractions of a fen"), "{e}");
    let e = run("--balc 1 --inscp 1 --policy beijing", &[]);
    assert!(e.contains("no built-in policy \"beijing\""), "{e}");
    assert!(e.contains("cq-seed, cq-employee-outpatient"), "{e}");
    let e = run("--balc 1 --inscp 1 --policy cq-employee-outpatient", &[]);
    assert!(
        e.contains("no rule for insutype 310, med_type 11, hosp_lv (not given)"),
        "{e}"
    );
    assert!(e.contains("--hosp-lv"), "{e}");
    let dir = TempDir::new("settle-calc-errors");
    let bad = dir.file("bad.toml", "[policy]\nid = \"x\"\n");
    let e = run("--balc 1 --inscp 1", &["--policy", bad.to_str().unwrap()]);
    assert!(e.contains("bad.toml: not a policy file"), "{e}");
    let missing = dir.file("bill.json", "{}");
    let e = run("--balc 1", &["--items", missing.to_str().unwrap()]);
    assert!(e.contains("is not a JSON array"), "{e}");
    let zero = dir.file("zero.json", r#"[{"code": "X", "qty": 0, "price": 1}]"#);
    let e = run("--balc 1", &["--items", zero.to_str().unwrap()]);
    assert!(e.contains("quantity 0 is not above 0"), "{e}");
}

#[test]
fn calc_needs_exactly_one_bill_and_documents_every_flag() {
    let out = calc("--ytd-inscp 0 --balc 0", &[]);
    assert!(!out.status.success());
    let out = calc("--ytd-inscp 0 --balc 0 --inscp 1 --items x.json", &[]);
    assert!(!out.status.success());
    let out = calc("--help", &[]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--policy",
        "--ytd-inscp",
        "--balc",
        "--ytd-fund-pay",
        "--mulaid",
        "--acct-used",
        "--insutype",
        "--med-type",
        "--hosp-lv",
        "--retired",
        "--inscp",
        "--items",
        "--catalogue",
        "--format",
        "cq-employee-outpatient",
    ] {
        assert!(help.contains(flag), "{flag} missing in\n{help}");
    }
}
