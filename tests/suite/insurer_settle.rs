//! The settlement transactions against a real `medcard insurer-sim` child on loopback, with
//! the real `InsurerClient` (single attempts with our own msgids, after sign-in): 2201–2208,
//! 2601 (including the reply lost after processing), 3201, X302, the per-line split, family
//! mutual aid, the year rollover and year-end interest, and the refusals.
//!
//! Every expected figure is worked out by hand in a comment from the policy files
//! (fixtures/policy/cq-seed.toml, fixtures/insurer/policies/sim-resident-outpatient.toml) and
//! the fixtures (fixtures/insurer/persons.toml, catalogue.toml) — not from medcard's output.

use crate::common;

use common::d;
use common::insurer::InsurerSim;
use medcard::insurer::settlement::{
    self as tx, DayDetailRow, DayTotalsOut, FeeDetailIn, RegisterOut, SettleIn, SettleOut,
    data_input, output_part,
};
use medcard::insurer::{InsurerClient, InsurerConfig, LinkError, wire};
use rust_decimal::Decimal;
use serde_json::{Value, json};

const WANG: &str = "50000000000000012345";
const WANG_CERTNO: &str = "500103199103080319";
const CQ: &str = "500000";
/// 刘秀英: resident (390), no account, bound to 何丽娟's account.
const LIU: &str = "51010000000000058021";
const LIU_CERTNO: &str = "510104195802140261";
const HE_CERTNO: &str = "430104197604182283";
/// 张伟: employee in Shanghai (no policy for 310100: the default cq-seed), balc 210.00.
const ZHANG: &str = "31010000000000072043";
/// 郑国华: suspended (psn_insu_stas 2).
const ZHENG: &str = "37010000000000068100";

/// 阿莫西林胶囊: 甲类, no price cap.
const AMOXICILLIN: &str = "XJ01CAA040A001010100001";

/// A simulator in a directory of its own.
struct Sim {
    sim: InsurerSim,
}

impl Sim {
    fn start(extra: &[&str]) -> Sim {
        Sim {
            sim: InsurerSim::fresh("insurer-settle", extra),
        }
    }

    fn hospital(&self) -> Hospital {
        let config = InsurerConfig {
            retries: 0,
            ..self.sim.config()
        };
        let mut client = InsurerClient::new(config);
        client.sign_in().unwrap();
        Hospital { client, visits: 0 }
    }

    /// The business date the simulator settles on.
    fn today(&self) -> String {
        let date = self.admin(json!({"action": "clock", "date": Value::Null}))["date"].clone();
        date.as_str().unwrap().to_string()
    }
}

impl std::ops::Deref for Sim {
    type Target = InsurerSim;

    fn deref(&self) -> &InsurerSim {
        &self.sim
    }
}

/// The hospital side: the real client, single attempts, our own msgids.
struct Hospital {
    client: InsurerClient,
    visits: u32,
}

/// A successful answer: the msgid it went out with, and the output.
type Answer = Result<(String, Value), LinkError>;

impl Hospital {
    fn send(&mut self, infno: &str, admdvs: &str, input: Value) -> Answer {
        let msgid = self.client.next_msgid();
        let reply = self.client.send(infno, &msgid, Some(admdvs), input)?;
        Ok((msgid, reply.output))
    }

    fn ok(&mut self, infno: &str, admdvs: &str, input: Value) -> (String, Value) {
        self.send(infno, admdvs, input)
            .unwrap_or_else(|e| panic!("{infno}: {e}"))
    }

    /// 2201 for a fresh ipt_otp_no; the mdtrt_id.
    fn register(&mut self, psn_no: &str, insutype: &str, admdvs: &str) -> String {
        self.visits += 1;
        let ipt = format!("OP{}-{}", psn_no, self.visits);
        let out = self
            .ok(tx::REGISTER, admdvs, register_input(psn_no, insutype, &ipt))
            .1;
        let out: RegisterOut = output_part(&out, "data").unwrap();
        assert_eq!(out.ipt_otp_no, ipt);
        assert!(!out.mdtrt_id.is_empty() && out.mdtrt_id.len() <= 30);
        out.mdtrt_id
    }

    /// 2204; the `result` rows.
    fn upload(&mut self, admdvs: &str, lines: Vec<FeeDetailIn>) -> Result<Vec<Value>, LinkError> {
        let (_, out) = self.send(tx::FEE_UPLOAD, admdvs, json!({ "feedetail": lines }))?;
        Ok(out["result"].as_array().cloned().unwrap_or_default())
    }

    fn settle(
        &mut self,
        infno: &str,
        admdvs: &str,
        input: &SettleIn,
    ) -> Result<(String, SettleOut), LinkError> {
        let (msgid, out) = self.send(infno, admdvs, data_input(input))?;
        let out: SettleOut = serde_json::from_value(out).unwrap();
        assert_eq!(out.setlinfo.amounts.check_identities(), Ok(()));
        Ok((msgid, out))
    }

    fn reverse(&mut self, psn_no: &str, admdvs: &str, omsgid: &str, oinfno: &str) -> Answer {
        let input = data_input(&tx::ReversalIn {
            psn_no: psn_no.into(),
            omsgid: omsgid.into(),
            oinfno: oinfno.into(),
        });
        self.send(tx::REVERSAL, admdvs, input)
    }

    fn refund(
        &mut self,
        psn_no: &str,
        mdtrt_id: &str,
        setl_id: &str,
    ) -> Result<(String, SettleOut), LinkError> {
        let input = data_input(&tx::RefundIn {
            setl_id: setl_id.into(),
            mdtrt_id: mdtrt_id.into(),
            psn_no: psn_no.into(),
        });
        let (msgid, out) = self.send(tx::REFUND, CQ, input)?;
        Ok((msgid, serde_json::from_value(out).unwrap()))
    }

    /// 1101 by certno: the balc of the first insurance row.
    fn balc(&mut self, certno: &str) -> Decimal {
        let input = json!({"data": {"mdtrt_cert_type": "02", "mdtrt_cert_no": certno,
            "psn_cert_type": "01", "certno": certno}});
        let (_, out) = self.ok(wire::PERSON_INFO, CQ, input);
        let balc = &out["insuinfo"][0]["balc"];
        d(&balc
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| balc.to_string()))
    }

    /// One batch for a visit, uploaded; the 2206/2207 input for it.
    fn bill(
        &mut self,
        psn_no: &str,
        insutype: &str,
        admdvs: &str,
        mdtrt_id: &str,
        batch: &str,
        lines: &[(&str, &str, &str)],
    ) -> SettleIn {
        let fee: Vec<FeeDetailIn> = lines
            .iter()
            .enumerate()
            .map(|(i, (code, cnt, pric))| {
                fee_line(
                    psn_no,
                    mdtrt_id,
                    batch,
                    &format!("{batch}-{i}"),
                    code,
                    cnt,
                    pric,
                )
            })
            .collect();
        let total: Decimal = fee.iter().map(|l| l.det_item_fee_sumamt).sum();
        self.upload(admdvs, fee).unwrap();
        settle_input(psn_no, insutype, mdtrt_id, batch, total)
    }

    /// 小王 registered in Chongqing (310) with one batch "B1" of one 阿莫西林 at `price`:
    /// the mdtrt_id and the 2206/2207 input.
    fn wang_amoxicillin(&mut self, price: &str) -> (String, SettleIn) {
        let visit = self.register(WANG, "310", CQ);
        let bill = self.bill(WANG, "310", CQ, &visit, "B1", &[(AMOXICILLIN, "1", price)]);
        (visit, bill)
    }
}

pub(crate) fn register_input(psn_no: &str, insutype: &str, ipt: &str) -> Value {
    data_input(&tx::RegisterIn {
        psn_no: psn_no.into(),
        insutype: insutype.into(),
        begntime: "2026-11-23 09:00:00".into(),
        mdtrt_cert_type: "02".into(),
        mdtrt_cert_no: String::new(),
        ipt_otp_no: ipt.into(),
        atddr_no: "D001".into(),
        dr_name: "李医生".into(),
        dept_code: "A03".into(),
        dept_name: "内科".into(),
        caty: "A03".into(),
    })
}

pub(crate) fn fee_line(
    psn_no: &str,
    mdtrt_id: &str,
    batch: &str,
    sn: &str,
    code: &str,
    cnt: &str,
    pric: &str,
) -> FeeDetailIn {
    let amount = medcard::money::round_fen(d(cnt) * d(pric));
    FeeDetailIn {
        feedetl_sn: sn.into(),
        mdtrt_id: mdtrt_id.into(),
        psn_no: psn_no.into(),
        chrg_bchno: batch.into(),
        rx_circ_flag: "0".into(),
        fee_ocur_time: "2026-11-23 09:10:00".into(),
        med_list_codg: code.into(),
        medins_list_codg: format!("HIS-{code}"),
        fee_name: String::new(),
        det_item_fee_sumamt: amount,
        cnt: d(cnt),
        pric: d(pric),
        bilg_dept_codg: "A03".into(),
        bilg_dept_name: "内科".into(),
        bilg_dr_codg: "D001".into(),
        bilg_dr_name: "李医生".into(),
        hosp_appr_flag: "0".into(),
    }
}

pub(crate) fn settle_input(
    psn_no: &str,
    insutype: &str,
    mdtrt_id: &str,
    batch: &str,
    total: Decimal,
) -> SettleIn {
    SettleIn {
        psn_no: psn_no.into(),
        mdtrt_cert_type: "02".into(),
        mdtrt_cert_no: String::new(),
        med_type: "11".into(),
        medfee_sumamt: total,
        psn_setlway: "01".into(),
        mdtrt_id: mdtrt_id.into(),
        chrg_bchno: batch.into(),
        insutype: insutype.into(),
        acct_used_flag: "1".into(),
        invono: String::new(),
    }
}

/// The err_msg of a business refusal (panics on anything else).
fn refusal<T: std::fmt::Debug>(result: Result<T, LinkError>) -> String {
    match result {
        Err(LinkError::Business { infcode, err_msg }) => {
            assert_eq!(infcode, -1);
            err_msg
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn money(v: &Value) -> Decimal {
    d(&v.as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string()))
}

#[test]
fn xiaowang_settles_refunds_and_reverses_a_lost_reply() {
    let sim = Sim::start(&[]);
    let mut h = sim.hospital();
    // Fixture: 332.80 credited (25.00 + 3 × 102.60), 230.00 spent in three earlier visits.
    assert_eq!(h.balc(WANG_CERTNO), d("102.80"));

    let (visit, bill) = h.wang_amoxicillin("120.00");
    // ytd 230.00 + 120.00 = 350.00 < the 400 deductible: all 120.00 is the person's
    // (act_pay_dedc 120.00, fund 0.00); the account pays 102.80, cash 17.20, balc 0.00.
    let (_, pre) = h.settle(tx::PRE_SETTLE, CQ, &bill).unwrap();
    let s = &pre.setlinfo;
    assert_eq!(s.setl_id, "");
    assert_eq!(
        (
            s.amounts.medfee_sumamt,
            s.amounts.catalogue.inscp_scp_amt,
            s.amounts.act_pay_dedc
        ),
        (d("120.00"), d("120.00"), d("120.00"))
    );
    assert_eq!(
        (
            s.amounts.hifp_pay,
            s.amounts.acct_pay,
            s.amounts.psn_cash_pay,
            s.amounts.balc
        ),
        (d("0.00"), d("102.80"), d("17.20"), d("0.00"))
    );
    assert_eq!(h.balc(WANG_CERTNO), d("102.80"), "2206 changes nothing");

    let (msgid, done) = h.settle(tx::SETTLE, CQ, &bill).unwrap();
    let s = &done.setlinfo;
    assert_eq!(
        (
            s.amounts.acct_pay,
            s.amounts.psn_cash_pay,
            s.amounts.hifp_pay,
            s.amounts.balc
        ),
        (d("102.80"), d("17.20"), d("0.00"), d("0.00"))
    );
    assert_eq!(s.medins_setl_id, msgid);
    assert!(!s.setl_id.is_empty());
    assert_eq!(s.clr_type, "11");
    let own: Vec<_> = done
        .setldetail
        .iter()
        .map(|r| (r.fund_pay_type.as_str(), r.fund_payamt))
        .collect();
    assert_eq!(own, [("310200", d("102.80"))]);
    let again = refusal(h.settle(tx::SETTLE, CQ, &bill));
    assert!(again.contains("该批次已结算"), "{again}");
    assert_eq!(h.balc(WANG_CERTNO), d("0.00"));

    // 2208: a new setl_id for the refund, the original's amounts, the account back to 102.80.
    let (refund_msgid, refund) = h.refund(WANG, &visit, &s.setl_id).unwrap();
    assert_ne!(refund.setlinfo.setl_id, s.setl_id);
    assert_eq!(refund.setlinfo.amounts.acct_pay, d("102.80"));
    assert_eq!(refund.setlinfo.amounts.balc, d("102.80"));
    assert_eq!(refund.setlinfo.medins_setl_id, refund_msgid);
    assert_eq!(h.balc(WANG_CERTNO), d("102.80"));
    let twice = refusal(h.refund(WANG, &visit, &s.setl_id));
    assert!(twice.contains("已撤销"), "{twice}");
    // The refunded batch stays closed.
    assert!(refusal(h.settle(tx::SETTLE, CQ, &bill)).contains("该批次已结算"));

    // A 2207 whose reply is lost after the insurer processed it: uncertain for us.
    let bill2 = h.bill(
        WANG,
        "310",
        CQ,
        &visit,
        "B2",
        &[(AMOXICILLIN, "1", "120.00")],
    );
    sim.admin(json!({"action": "faults", "drop_after_processing": 1, "for_infno": "2207"}));
    let lost = h.settle(tx::SETTLE, CQ, &bill2);
    assert!(matches!(lost, Err(LinkError::Uncertain(_))), "{lost:?}");
    // Find its msgid the way the hospital would: the msgid it journalled is the one just
    // used; the insurer's X302 lists it too.
    let today = sim.today();
    let detail = h
        .ok(
            tx::DAY_DETAIL,
            CQ,
            data_input(&tx::DayDetailIn {
                stmt_date: today.clone(),
            }),
        )
        .1;
    let rows: Vec<DayDetailRow> = output_part(&detail, "detail").unwrap();
    let lost_row = rows
        .iter()
        .find(|r| r.revs_flag == "0" && r.refd_setl_flag == "0")
        .unwrap()
        .clone();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        rows.iter()
            .any(|r| r.msgid == msgid && r.refd_setl_flag == "1")
    );
    assert_eq!(h.balc(WANG_CERTNO), d("0.00"), "the lost 2207 was booked");

    h.reverse(WANG, CQ, &lost_row.msgid, tx::SETTLE).unwrap();
    assert_eq!(
        h.balc(WANG_CERTNO),
        d("102.80"),
        "reversal gives the money back"
    );
    let second = refusal(h.reverse(WANG, CQ, &lost_row.msgid, tx::SETTLE));
    assert!(second.contains("原交易已冲正"), "{second}");
    let unknown = refusal(h.reverse(WANG, CQ, "H50010302473202611230000009999", tx::SETTLE));
    assert!(unknown.contains("原交易不存在"), "{unknown}");
    let wrong_kind = refusal(h.reverse(WANG, CQ, &lost_row.msgid, tx::REGISTER));
    assert!(wrong_kind.contains("不允许冲正"), "{wrong_kind}");

    // The batch is free again: a fresh 2207 (new msgid) settles it.
    let (msgid3, third) = h.settle(tx::SETTLE, CQ, &bill2).unwrap();
    assert_eq!(
        (third.setlinfo.amounts.acct_pay, third.setlinfo.amounts.balc),
        (d("102.80"), d("0.00"))
    );
    assert_eq!(third.setlinfo.medins_setl_id, msgid3);

    // 3201 for today, 310 / 11: only the third settlement is active (the first refunded,
    // the second reversed): medfee 120.00, fund 0.00, account 102.80, 1 settlement.
    let totals = |medfee: &str, count: u64| {
        data_input(&tx::DayTotalsIn {
            insutype: "310".into(),
            clr_type: "11".into(),
            setl_optins: CQ.into(),
            totals: tx::StatementTotals {
                stmt_begndate: today.clone(),
                stmt_enddate: today.clone(),
                medfee_sumamt: d(medfee),
                fund_pay_sumamt: d("0.00"),
                fixmedins_setl_cnt: count,
            },
            acct_pay: d("102.80"),
        })
    };
    let out = h.ok(tx::DAY_TOTALS, CQ, totals("120.00", 1)).1;
    let balanced: DayTotalsOut = output_part(&out, "stmtinfo").unwrap();
    assert_eq!(balanced.stmt_rslt, "0", "{balanced:?}");
    let out = h.ok(tx::DAY_TOTALS, CQ, totals("240.00", 2)).1;
    let unbalanced: DayTotalsOut = output_part(&out, "stmtinfo").unwrap();
    assert_eq!(unbalanced.stmt_rslt, "1");
    let why = &unbalanced.stmt_rslt_dscr;
    assert!(
        why.contains("医疗费总额") && why.contains("240.00") && why.contains("120.00"),
        "{why}"
    );
    assert!(why.contains("结算笔数"), "{why}");
    assert!(!why.contains("个人账户"), "account totals agree: {why}");

    // 2601 of the 2208 refund: the first settlement is settled again (account debited again).
    sim.admin(
        json!({"action": "set_balc", "certno": WANG_CERTNO, "insutype": "310", "balc": "200.00"}),
    );
    h.reverse(WANG, CQ, &refund_msgid, tx::REFUND).unwrap();
    // 200.00 − the first settlement's 102.80 account part = 97.20.
    assert_eq!(h.balc(WANG_CERTNO), d("97.20"));
}

#[test]
fn lines_are_split_by_catalogue_class_and_totals_must_match() {
    let sim = Sim::start(&[]);
    let mut h = sim.hospital();
    let visit = h.register(ZHANG, "310", "310100");
    let lines = vec![
        // 乙类 头孢克洛 selfpay 10 %: 2 × 25.00 = 50.00 → 先行自付 5.00, in scope 45.00.
        fee_line(
            ZHANG,
            &visit,
            "B1",
            "1",
            "XJ01DCA041A010010100003",
            "2",
            "25.00",
        ),
        // 乙类 布地奈德 cap 68.00, 20 %: 80.00 → 超限价 12.00; 68.00 × 20 % = 13.60 先行自付;
        // in scope 54.40.
        fee_line(
            ZHANG,
            &visit,
            "B1",
            "2",
            "XR01ADB045B002010100004",
            "1",
            "80.00",
        ),
        // 丙类 维生素C: 3 × 10.00 = 30.00 全自费.
        fee_line(
            ZHANG,
            &visit,
            "B1",
            "3",
            "XA11GAA001A001010100005",
            "3",
            "10.00",
        ),
        // 甲类 诊查费 cap 10.00: 12.00 → 超限价 2.00, in scope 10.00.
        fee_line(ZHANG, &visit, "B1", "4", "001102000010000", "1", "12.00"),
        // Not in the catalogue: 5.00 全自费.
        fee_line(ZHANG, &visit, "B1", "5", "NOT-IN-CATALOGUE", "1", "5.00"),
    ];
    let result = h.upload("310100", lines.clone()).unwrap();
    let split: Vec<[Decimal; 4]> = result
        .iter()
        .map(|r| {
            [
                "fulamt_ownpay_amt",
                "overlmt_amt",
                "preselfpay_amt",
                "inscp_scp_amt",
            ]
            .map(|k| money(&r[k]))
        })
        .collect();
    assert_eq!(split[0], [d("0"), d("0"), d("5.00"), d("45.00")]);
    assert_eq!(split[1], [d("0"), d("12.00"), d("13.60"), d("54.40")]);
    assert_eq!(split[2], [d("30.00"), d("0"), d("0"), d("0")]);
    assert_eq!(split[3], [d("0"), d("2.00"), d("0"), d("10.00")]);
    assert_eq!(split[4], [d("5.00"), d("0"), d("0"), d("0")]);
    assert_eq!(result[0]["chrgitm_lv"], "02");
    assert_eq!(result[2]["chrgitm_lv"], "03");
    assert_eq!(money(&result[0]["selfpay_prop"]), d("0.10"));

    // The same line again: the same answer; changed content: refused.
    let again = h.upload("310100", vec![lines[0].clone()]).unwrap();
    assert_eq!(again[0], result[0]);
    let mut changed = lines[0].clone();
    changed.cnt = d("3");
    changed.det_item_fee_sumamt = d("75.00");
    let msg = refusal(h.upload("310100", vec![changed]));
    assert!(msg.contains("已存在"), "{msg}");

    // Total 50 + 80 + 30 + 12 + 5 = 177.00; a wrong total is refused.
    let mut bill = settle_input(ZHANG, "310", &visit, "B1", d("170.00"));
    let msg = refusal(h.settle(tx::PRE_SETTLE, "310100", &bill));
    assert!(msg.contains("费用总额与明细不符"), "{msg}");
    // Totals: 全自费 35.00, 超限价 14.00, 先行自付 18.60, in scope 45 + 54.40 + 10 = 109.40.
    // 109.40 < 400 (cq-seed, the default policy for region 310100): all the person's; the
    // account (210.00) pays all 177.00, balc 33.00.
    bill.medfee_sumamt = d("177.00");
    let (_, out) = h.settle(tx::PRE_SETTLE, "310100", &bill).unwrap();
    let s = out.setlinfo;
    assert_eq!(
        [
            s.amounts.catalogue.fulamt_ownpay_amt,
            s.amounts.catalogue.overlmt_selfpay,
            s.amounts.catalogue.preselfpay_amt,
            s.amounts.catalogue.inscp_scp_amt
        ],
        [d("35.00"), d("14.00"), d("18.60"), d("109.40")]
    );
    assert_eq!(
        (
            s.amounts.act_pay_dedc,
            s.amounts.hifp_pay,
            s.amounts.acct_pay,
            s.amounts.psn_cash_pay,
            s.amounts.balc
        ),
        (d("109.40"), d("0"), d("177.00"), d("0"), d("33.00"))
    );

    // 2205 deletes the unsettled batch; 2206 then finds nothing.
    let cancel = data_input(&tx::FeeCancelIn {
        mdtrt_id: visit.clone(),
        chrg_bchno: "B1".into(),
        psn_no: ZHANG.into(),
    });
    h.ok(tx::FEE_CANCEL, "310100", cancel);
    assert!(refusal(h.settle(tx::PRE_SETTLE, "310100", &bill)).contains("不存在费用明细"));
}

#[test]
fn family_mutual_aid_pays_the_residents_part_from_the_payers_account() {
    let sim = Sim::start(&[]);
    let mut h = sim.hospital();
    assert_eq!(h.balc(HE_CERTNO), d("1500.00"));
    let visit = h.register(LIU, "390", "510100");
    let bill = h.bill(
        LIU,
        "390",
        "510100",
        &visit,
        "B1",
        &[(AMOXICILLIN, "1", "100.00")],
    );
    // sim-resident-outpatient: no deductible, the person pays 50 %: fund 50.00, person 50.00.
    // 刘秀英 has no account: 何丽娟's account pays the 50.00 as 共济.
    let (_, out) = h.settle(tx::SETTLE, "510100", &bill).unwrap();
    let s = &out.setlinfo;
    assert_eq!(
        (s.amounts.hifp_pay, s.amounts.psn_part_amt),
        (d("50.00"), d("50.00"))
    );
    assert_eq!(
        (
            s.amounts.acct_pay,
            s.amounts.acct_mulaid_pay,
            s.amounts.psn_cash_pay,
            s.amounts.balc
        ),
        (d("50.00"), d("50.00"), d("0"), d("0"))
    );
    let rows: Vec<_> = out
        .setldetail
        .iter()
        .map(|r| (r.fund_pay_type.as_str(), r.fund_payamt))
        .collect();
    assert_eq!(rows, [("390100", d("50.00")), ("310200", d("50.00"))]);
    assert!(out.setldetail[1].fund_pay_type_name.contains("共济"));
    assert_eq!(h.balc(HE_CERTNO), d("1450.00"));
    assert_eq!(h.balc(LIU_CERTNO), d("0.00"));
    // A refund gives it back to the payer.
    h.refund(LIU, &visit, &s.setl_id).unwrap();
    assert_eq!(h.balc(HE_CERTNO), d("1500.00"));
}

#[test]
fn a_new_year_resets_the_deductible_and_year_end_pays_interest() {
    let sim = Sim::start(&[]);
    let mut h = sim.hospital();
    let today = sim.today();
    let year: i32 = today[..4].parse().unwrap();
    let (_, bill) = h.wang_amoxicillin("300.00");
    // This year: ytd 230.00; 230 → 530: 170.00 to the 400 deductible, then 130.00 in the
    // 25 % band: person 32.50, fund 97.50.
    let (_, out) = h.settle(tx::PRE_SETTLE, CQ, &bill).unwrap();
    assert_eq!(
        (
            out.setlinfo.amounts.act_pay_dedc,
            out.setlinfo.amounts.hifp_pay
        ),
        (d("170.00"), d("97.50"))
    );
    // Next year: ytd 0: all 300.00 under the deductible, the fund pays nothing.
    sim.admin(json!({"action": "clock", "date": format!("{}-01-05", year + 1)}));
    let (_, out) = h.settle(tx::PRE_SETTLE, CQ, &bill).unwrap();
    assert_eq!(
        (
            out.setlinfo.amounts.act_pay_dedc,
            out.setlinfo.amounts.hifp_pay
        ),
        (d("300.00"), d("0.00"))
    );

    // Interest for the year (cq-seed: demand 0.35 %, 3-month 1.10 %, month-product method).
    // 小王's year: 25.00 carried over; credits of 102.60 on Jan 1, Feb 1, Mar 1; visits 80.00
    // (Jan), 100.00 (Feb), 50.00 (Mar), spending current-year money first. Month-ends of
    // current-year money: Jan 102.60 − 80 = 22.60, Feb 22.60 + 102.60 − 100 = 25.20, Mar
    // 25.20 + 102.60 − 50 = 77.80, and 77.80 to December; carried over 25.00 every month.
    // Σ current = 22.60 + 25.20 + 10 × 77.80 = 825.80; Σ carried = 12 × 25.00 = 300.00.
    // (825.80 × 0.0035 + 300.00 × 0.0110) / 12 = (2.8903 + 3.3) / 12 = 0.51585… → 0.52.
    let closed = sim.admin(json!({"action": "year_end", "year": year}));
    let wang = closed["interest"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["psn_no"] == WANG)
        .unwrap()
        .clone();
    assert_eq!(wang["amount"], "0.52", "{closed}");
    assert_eq!(h.balc(WANG_CERTNO), d("103.32"));
    let again = sim
        .sim
        .admin_raw(json!({"action": "year_end", "year": year}));
    assert_eq!(again["ok"], false, "{again}");
    // A monthly credit in the new year: 2700 × 2 % + 2700 × 6 % × 30 % = 102.60.
    sim.admin(json!({"action": "credit_month", "month": 1}));
    assert_eq!(h.balc(WANG_CERTNO), d("205.92"));
}

#[test]
fn registration_refusals_and_repeats() {
    let sim = Sim::start(&[]);
    let mut h = sim.hospital();
    let suspended = refusal(h.send(
        tx::REGISTER,
        "370100",
        register_input(ZHENG, "310", "OP-Z-1"),
    ));
    assert!(suspended.contains("人员参保状态异常"), "{suspended}");
    let unknown = refusal(h.send(
        tx::REGISTER,
        CQ,
        register_input("99999999999999999999", "310", "OP-X-1"),
    ));
    assert!(unknown.contains("未查询到人员信息"), "{unknown}");

    // The same ipt_otp_no for the same person: the same mdtrt_id (idempotent); another
    // person: refused.
    let first = h
        .ok(tx::REGISTER, CQ, register_input(WANG, "310", "OP-W-1"))
        .1;
    let again = h
        .ok(tx::REGISTER, CQ, register_input(WANG, "310", "OP-W-1"))
        .1;
    assert_eq!(first["data"]["mdtrt_id"], again["data"]["mdtrt_id"]);
    let other = refusal(h.send(
        tx::REGISTER,
        "310100",
        register_input(ZHANG, "310", "OP-W-1"),
    ));
    assert!(other.contains("已存在"), "{other}");

    // 2203 stores the visit's med_type; 2202 cancels; then the visit is closed.
    let mdtrt_id = first["data"]["mdtrt_id"].as_str().unwrap().to_string();
    let info = json!({"mdtrtinfo": tx::VisitInfoIn {
        mdtrt_id: mdtrt_id.clone(), psn_no: WANG.into(), med_type: "11".into(),
        begntime: "2026-11-23 09:00:00".into(), main_cond_dscr: String::new(),
        dise_codg: String::new(), dise_name: String::new(),
    }, "diseinfo": []});
    h.ok(tx::VISIT_INFO, CQ, info);
    let cancel = data_input(&tx::CancelRegisterIn {
        psn_no: WANG.into(),
        mdtrt_id: mdtrt_id.clone(),
        ipt_otp_no: "OP-W-1".into(),
    });
    h.ok(tx::CANCEL_REGISTER, CQ, cancel);
    let closed = refusal(h.upload(
        CQ,
        vec![fee_line(
            WANG,
            &mdtrt_id,
            "B1",
            "1",
            AMOXICILLIN,
            "1",
            "1.00",
        )],
    ));
    assert!(closed.contains("已撤销"), "{closed}");
    let missing = refusal(h.upload(
        CQ,
        vec![fee_line(
            WANG,
            "M-NONE",
            "B1",
            "1",
            AMOXICILLIN,
            "1",
            "1.00",
        )],
    ));
    assert!(missing.contains("就诊ID"), "{missing}");
}
