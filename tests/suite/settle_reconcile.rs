//! `medcard reconcile` the platform's way, against the real `medcard insurer-sim` over HTTP:
//! 3201 per insutype and clr_type; only when a total does not balance, 3202 through the file
//! round trip (9101 upload of the detail file, 3202, 9102 download of the zipped result).
//! A balanced day makes no 3202 (the simulator's own request counts say so); single-sided
//! settlements planted on each side — one another counter of the same institution made, one
//! the insurer reversed behind the journal's back — and amounts that differ are each found
//! with their setl_id, msgid, request and what to do; and the platform refuses an unknown or
//! expired file_qury_no in its own words.

use crate::common;
use crate::insurer_settle::{fee_line, register_input, settle_input};

use common::d;
use common::daemon::Daemon;
use common::insurer::InsurerSim;
use common::rpc::{Client, Rpc};
use common::settle::{
    CLASS_A, Rig, XIAOWANG, commit_params, one_line, preview, register, wait_card, wait_catalogue,
};
use medcard::clock::{Date, DateTime};
use medcard::insurer::files::{DetailRow, ResultRow, unzip_text, zip_text};
use medcard::insurer::settlement::{
    self as tx, DetailFileInfo, DetailReconcileIn, RegisterOut, ReversalIn, SettleOut,
    StatementTotals, data_input, output_part,
};
use medcard::insurer::{InsurerClient, InsurerConfig, LinkError, Reply, Retry};
use serde_json::{Value, json};

/// 小王's psn_no and region (fixtures/insurer/persons.toml).
pub(crate) const WANG: &str = "50000000000000012345";
const CQ: &str = "500000";

/// The daemon settles a visit of `amount` for the card in the reader under `request_id`:
/// (mdtrt_id, setl_id, the 2207's msgid).
fn settle_here(client: &mut Client, amount: &str, request_id: &str) -> (String, String, String) {
    let mdtrt_id = register(client);
    let p = preview(client, &mdtrt_id, one_line(amount));
    let done = client.result("settle.commit", commit_params(&p["preview_id"], request_id));
    assert_eq!(done["state"], "settled", "{done}");
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    (
        mdtrt_id,
        text(&done["setl_id"]),
        text(&done["calls"][0]["msgid"]),
    )
}

/// A link of another program of the same institution (the daemon's fixmedins_code).
pub(crate) fn same_institution(sim: &InsurerSim) -> InsurerClient {
    InsurerClient::new(sim.config())
}

pub(crate) fn call(link: &mut InsurerClient, infno: &str, input: Value) -> Reply {
    link.call_in(infno, Some(CQ), input, Retry::Never)
        .unwrap_or_else(|e| panic!("{infno}: {e}"))
}

/// Another counter of the institution settles 小王's visit of one 阿莫西林 at `price` straight
/// with the insurer (nothing in this workstation's journal): (setl_id, the 2207's msgid).
pub(crate) fn other_counter_settles(sim: &InsurerSim, price: &str) -> (String, String) {
    let mut link = same_institution(sim);
    let ipt = format!("OTHER{}", DateTime::now().compact());
    let visit = call(&mut link, tx::REGISTER, register_input(WANG, "310", &ipt));
    let visit: RegisterOut = output_part(&visit.output, "data").expect("2201 data");
    let line = fee_line(WANG, &visit.mdtrt_id, "B1", "B1-0", CLASS_A, "1", price);
    call(&mut link, tx::FEE_UPLOAD, json!({ "feedetail": [line] }));
    let bill = settle_input(WANG, "310", &visit.mdtrt_id, "B1", d(price));
    let reply = call(&mut link, tx::SETTLE, data_input(&bill));
    let out: SettleOut = serde_json::from_value(reply.output).expect("2207 output");
    (out.setlinfo.setl_id, reply.msgid)
}

pub(crate) fn differences(report: &Value) -> Vec<Value> {
    report["differences"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

pub(crate) fn the_one<'r>(found: &'r [Value], kind: &str) -> &'r Value {
    let of_kind: Vec<&Value> = found.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(of_kind.len(), 1, "one {kind}: {found:#?}");
    of_kind[0]
}

/// The rig's daemon with 小王's card judged and the catalogue synced, and a client.
fn counter(rig: &Rig) -> (Daemon, Client) {
    let daemon = rig.daemon(&[XIAOWANG], &[]);
    let mut client = daemon.client();
    wait_catalogue(&mut client);
    wait_card(&mut client);
    (daemon, client)
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

#[test]
fn a_balanced_day_makes_no_3202() {
    let rig = Rig::start("reconcile-balanced", "");
    let (daemon, mut client) = counter(&rig);
    settle_here(&mut client, "5.00", "balanced-1");
    drop(client);
    drop(daemon);

    let (code, report) = rig.reconcile();
    assert_eq!(code, 0, "{report}");
    assert!(report.contains("对平 balanced"), "{report}");
    assert!(report.contains("3202: not needed"), "{report}");
    assert!(rig.sim.requests("3201") >= 1);
    for infno in ["9101", "3202", "9102", "X302"] {
        assert_eq!(rig.sim.requests(infno), 0, "{infno} made: {report}");
    }
}

#[test]
fn a_single_sided_settlement_on_each_side_and_other_amounts_are_found_with_what_to_do() {
    let rig = Rig::start("reconcile-planted", "");
    let (daemon, mut client) = counter(&rig);
    let (_, clean_setl, _) = settle_here(&mut client, "5.00", "rc-clean");
    let (_, tampered, _) = settle_here(&mut client, "5.00", "rc-tampered");
    let (_, reversed, reversed_msgid) = settle_here(&mut client, "5.00", "rc-reversed");
    drop(client);
    drop(daemon);

    // The insurer's books say 6.00 where the journal says 5.00 (数据不一致).
    let books = rusqlite::Connection::open(rig.sim_db()).expect("the simulator's database");
    let changed = books
        .execute(
            "UPDATE settlements SET setlinfo_json = json_set(setlinfo_json, \
             '$.medfee_sumamt', '6.00', '$.acct_pay', '6.00') WHERE setl_id = ?1",
            [&tampered],
        )
        .expect("plant other amounts");
    assert_eq!(changed, 1);
    // 医药机构多: reversed at the insurer behind this journal's back.
    let mut link = same_institution(&rig.sim);
    let reversal = ReversalIn {
        psn_no: WANG.into(),
        omsgid: reversed_msgid.clone(),
        oinfno: tx::SETTLE.into(),
    };
    call(&mut link, tx::REVERSAL, data_input(&reversal));
    // 中心多: another counter of the same institution settled a visit.
    let (theirs, theirs_msgid) = other_counter_settles(&rig.sim, "7.00");

    let (code, report) = rig.reconcile_json(&[]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["scope"], "workstation");
    assert!(
        report["totals"].as_array().is_some_and(|t| t
            .iter()
            .any(|t| t["clr_type"] == "11" && t["stmt_rslt"] != "0")),
        "{report:#}"
    );
    assert!(report["detail"]["uploaded"].is_string(), "{report:#}");
    assert!(
        report["detail"]["result"]["file_qury_no"].is_string(),
        "{report:#}"
    );
    for infno in ["9101", "3202", "9102"] {
        assert_eq!(rig.requests(infno), 1, "{infno}: {report:#}");
    }
    assert_eq!(
        rig.sim.requests("X302"),
        0,
        "no extension on the default path"
    );

    let found = differences(&report);
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(
        found.iter().all(|d| d["setl_id"] != clean_setl.as_str()),
        "{found:#?}"
    );

    let other = the_one(&found, "insurer_only");
    assert_eq!(text(&other["setl_id"]), theirs);
    assert_eq!(text(&other["msgid"]), theirs_msgid);
    assert!(other["request_id"].is_null(), "{other:#}");
    let action = text(&other["action"]);
    assert!(
        action.starts_with("do NOT reverse it from this workstation"),
        "{action}"
    );
    assert!(action.contains(&theirs_msgid), "{action}");

    let ours = the_one(&found, "hospital_only");
    assert_eq!(text(&ours["setl_id"]), reversed);
    assert_eq!(text(&ours["msgid"]), reversed_msgid);
    assert_eq!(ours["request_id"], "rc-reversed");
    assert!(text(&ours["detail"]).contains("已冲正"), "{ours:#}");
    assert!(
        text(&ours["action"]).contains("settle the visit again"),
        "{ours:#}"
    );

    let amounts = the_one(&found, "amounts_differ");
    assert_eq!(text(&amounts["setl_id"]), tampered);
    assert_eq!(amounts["request_id"], "rc-tampered");
    let detail = text(&amounts["detail"]);
    assert!(
        detail.contains("medfee_sumamt 医药机构 5.00 中心 6.00")
            && detail.contains("acct_pay 医药机构 5.00 中心 6.00"),
        "{detail}"
    );

    // The text report says the totals are the institution's; X302, asked for explicitly,
    // finds the same differences without the file round trip.
    let (_, text_report) = rig.reconcile();
    assert!(
        text_report.contains("the whole institution's"),
        "{text_report}"
    );
    let (code, by_x302) = rig.reconcile_json(&["--detail", "x302"]);
    assert_eq!(code, 1);
    assert_eq!(by_x302["detail"]["via"], "X302");
    let kinds = |r: &Value| {
        let mut k: Vec<(String, String)> = differences(r)
            .iter()
            .map(|d| (text(&d["kind"]).to_owned(), text(&d["setl_id"]).to_owned()))
            .collect();
        k.sort();
        k
    };
    assert_eq!(kinds(&by_x302), kinds(&report));
}

/// A link of the same institution, signed in, without retries.
fn file_link(sim: &InsurerSim, fixmedins_code: &str) -> InsurerClient {
    InsurerClient::new(InsurerConfig {
        fixmedins_code: fixmedins_code.into(),
        retries: 0,
        ..sim.config()
    })
}

fn refused<T: std::fmt::Debug>(result: Result<T, LinkError>) -> String {
    match result {
        Err(LinkError::Business { err_msg, .. }) => err_msg,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn detail_reconcile(
    link: &mut InsurerClient,
    file_qury_no: &str,
    count: u64,
) -> Result<Reply, LinkError> {
    let today = DateTime::now().date();
    let input = DetailReconcileIn {
        setl_optins: CQ.into(),
        file_qury_no: file_qury_no.into(),
        totals: StatementTotals {
            stmt_begndate: today.clone(),
            stmt_enddate: today,
            medfee_sumamt: d("0"),
            fund_pay_sumamt: d("0"),
            fixmedins_setl_cnt: count,
        },
        cash_payamt: d("0"),
    };
    link.call(tx::DETAIL_RECONCILE, data_input(&input), Retry::Never)
}

#[test]
fn the_platform_refuses_an_unknown_or_expired_file_in_its_own_words() {
    let sim = InsurerSim::fresh("reconcile-files", &["--no-extensions"]);
    let mut link = file_link(&sim, "H50010302473");

    // 3202 and 9102 naming no file the platform made.
    let unknown = refused(detail_reconcile(&mut link, "F20261203NOSUCHFILE", 0));
    assert_eq!(unknown, "文件查询号[F20261203NOSUCHFILE]不存在");
    let unknown = refused(link.download_file("F20261203NOSUCHFILE", "x.txt.zip"));
    assert_eq!(unknown, "文件查询号[F20261203NOSUCHFILE]不存在");

    // An empty day's detail file, uploaded, reconciled and its result fetched.
    let zipped = zip_text("detail.txt", &DetailRow::file_text(&[])).expect("zip");
    let uploaded = link.upload_file("detail.txt.zip", &zipped).expect("9101");
    assert!(!uploaded.file_qury_no.is_empty() && !uploaded.dld_endtime.is_empty());
    // Totals that are not the file's are refused.
    let short = refused(detail_reconcile(&mut link, &uploaded.file_qury_no, 2));
    assert!(
        short.starts_with("对账明细文件与汇总数据不一致: 结算笔数 文件 0, 报文 2"),
        "{short}"
    );
    let reply = detail_reconcile(&mut link, &uploaded.file_qury_no, 0).expect("3202");
    let fileinfo: DetailFileInfo = output_part(&reply.output, "fileinfo").expect("fileinfo");
    let bytes = link
        .download_file(&fileinfo.file_qury_no, &fileinfo.filename)
        .expect("9102");
    let rows = unzip_text(&bytes).and_then(|t| ResultRow::parse_file(&t));
    assert_eq!(rows.ok(), Some(Vec::new()), "an empty day balances");

    // The wrong name, another institution, and after dld_endtime.
    let wrong_name = refused(link.download_file(&fileinfo.file_qury_no, "other.zip"));
    assert!(wrong_name.contains("与文件查询号"), "{wrong_name}");
    let mut stranger = file_link(&sim, "H50010399999");
    let not_theirs = refused(stranger.download_file(&fileinfo.file_qury_no, &fileinfo.filename));
    assert!(not_theirs.ends_with("不存在"), "{not_theirs}");
    let later = Date::today()
        .next_day()
        .and_then(|d| d.next_day())
        .expect("a date two days on");
    sim.admin(json!({"action": "clock", "date": later.to_string()}));
    let expired = refused(link.download_file(&fileinfo.file_qury_no, &fileinfo.filename));
    assert_eq!(
        expired,
        format!(
            "文件[{}]已超过下载截止时间[{}]，请重新获取",
            fileinfo.file_qury_no, fileinfo.dld_endtime
        )
    );
    let stale = refused(detail_reconcile(&mut link, &uploaded.file_qury_no, 0));
    assert!(stale.contains("已超过下载截止时间"), "{stale}");
}
