//! Hospital-wide reconciliation and the hospital view (docs/hospital.md): two workstations of
//! one institution — two real daemons (`medcard serve --virtual`) with their own cache files
//! and `[hospital] workstation` names, one real `medcard insurer-sim`, one throwaway
//! PostgreSQL they ship their journals to. `medcard reconcile --hospital` balances the
//! institution where each workstation's own reconciliation cannot (and says why); single-sided
//! settlements planted on each side are found through 3201 + the 3202 files and attributed;
//! `medcard hospital` shows the day by workstation, the calls in doubt anywhere and the
//! workstations that have not shipped.

use crate::common;
use crate::settle_reconcile::{
    WANG, call, differences, other_counter_settles, same_institution, the_one,
};

use common::daemon::Daemon;
use common::hospital::{HospitalDb, cache_of, wait_shipped};
use common::rpc::{Client, PATIENCE, Rpc};
use common::settle::{Rig, XIAOWANG, commit_params, one_line, preview, wait_card, wait_catalogue};
use common::temp::TempDir;
use medcard::clock::DateTime;
use medcard::insurer::settlement::{self as tx, ReversalIn, data_input};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

/// One simulator, one PostgreSQL, two workstations' configs (the daemons are started by the
/// tests; `_second` holds the second workstation's cache file).
struct Institution {
    db: HospitalDb,
    rig: Rig,
    second: PathBuf,
    _second_dir: TempDir,
}

const FIRST: &str = "window-1";
const SECOND: &str = "window-2";

impl Institution {
    fn start(tag: &str) -> Institution {
        let db = HospitalDb::start(tag);
        let rig = Rig::start(tag, &db.section(FIRST, 1));
        let dir = TempDir::new(&format!("{tag}-2"));
        let text = std::fs::read_to_string(&rig.config)
            .expect("the first workstation's config")
            .replace(
                &format!("{:?}", cache_of(&rig.config).display().to_string()),
                &format!("{:?}", dir.join("cache.sqlite").display().to_string()),
            )
            .replace(&db.section(FIRST, 1), &db.section(SECOND, 2));
        let second = dir.file("medcard.toml", &text);
        Institution {
            db,
            rig,
            second,
            _second_dir: dir,
        }
    }

    fn config(&self, workstation: &str) -> &Path {
        if workstation == FIRST {
            &self.rig.config
        } else {
            &self.second
        }
    }

    /// `workstation`'s daemon with 小王's card ready.
    fn counter(&self, workstation: &str) -> (Daemon, Client) {
        let daemon = Daemon::start_virtual(self.config(workstation), &[XIAOWANG], &[]);
        let mut client = daemon.client();
        wait_catalogue(&mut client);
        wait_card(&mut client);
        (daemon, client)
    }

    /// `workstation` settles `visits` (amount, request_id), its journal is shipped, and its
    /// daemon stops: the settlements.
    fn settle_at(&self, workstation: &str, visits: &[(&str, &str)]) -> Vec<Value> {
        let (_daemon, mut client) = self.counter(workstation);
        let done = visits
            .iter()
            .map(|(amount, request_id)| settle(&mut client, amount, request_id))
            .collect();
        wait_shipped(&mut client);
        done
    }
}

/// Waits for the clock's next second. The programs outside medcard in these tests (links of
/// the institution's code that know nothing of the hospital's nodes) number msgids from the
/// whole second, as such a program would; the workstations (`[hospital] node`) never collide
/// with each other, but with those they would, so those take seconds of their own.
fn next_second() {
    let now = DateTime::now().compact();
    common::wait_until("the next second", PATIENCE, || {
        DateTime::now().compact() != now
    });
}

/// A visit registered under `request_id` as its own 门诊号 (hospital-unique), previewed and
/// settled: the settlement.
fn settle(client: &mut Client, amount: &str, request_id: &str) -> Value {
    let visit = client.result(
        "visit.register",
        json!({"dept_code": "A03", "dept_name": "内科", "dr_name": "张医生",
               "ipt_otp_no": format!("MZ-{request_id}")}),
    );
    let p = preview(client, &text(&visit["mdtrt_id"]), one_line(amount));
    let done = client.result("settle.commit", commit_params(&p["preview_id"], request_id));
    assert_eq!(done["state"], "settled", "{done}");
    done
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// `medcard ARGS…` with `--config config`: (exit status, stdout, stderr).
fn medcard(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(common::medcard_bin())
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run medcard");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `medcard ARGS… --format json`: (exit status, the document).
fn medcard_json(config: &Path, args: &[&str]) -> (i32, Value) {
    let mut all = args.to_vec();
    all.extend(["--format", "json"]);
    let (code, stdout, stderr) = medcard(config, &all);
    let value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    (code, value)
}

/// What one workstation settled, as `hospital day` should add it up: (count, medfee_sumamt,
/// fund_pay_sumamt, acct_pay, psn_cash_pay), each summed over the settlements' setlinfo.
fn sums(settled: &[&Value]) -> (u64, [String; 4]) {
    let add = |field: &str| {
        let total: rust_decimal::Decimal = settled
            .iter()
            .map(|s| common::d(&text(&s["setlinfo"][field])))
            .sum();
        format!("{total:.2}")
    };
    (
        settled.len() as u64,
        [
            add("medfee_sumamt"),
            add("fund_pay_sumamt"),
            add("acct_pay"),
            add("psn_cash_pay"),
        ],
    )
}

fn line_sums(line: &Value) -> (u64, [String; 4]) {
    (
        line["count"].as_u64().unwrap_or_default(),
        ["medfee_sumamt", "fund_pay_sumamt", "acct_pay", "cash"].map(|f| text(&line[f])),
    )
}

#[test]
fn two_workstations_balance_as_one_institution_and_the_view_shows_each() {
    let hospital = Institution::start("hview-balanced");
    let ours = hospital.settle_at(FIRST, &[("5.00", "w1-a"), ("7.00", "w1-b")]);
    let theirs = hospital.settle_at(SECOND, &[("3.00", "w2-a")]);

    // The institution balances through 3201 alone: no detail file is made.
    let config = &hospital.rig.config;
    let (code, report) = medcard_json(config, &["reconcile", "--hospital"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["scope"], "institution");
    assert!(report["detail"].is_null(), "{report:#}");
    assert!(
        report["totals"]
            .as_array()
            .is_some_and(|t| !t.is_empty() && t.iter().all(|t| t["stmt_rslt"] == "0")),
        "{report:#}"
    );
    for infno in ["9101", "3202", "9102"] {
        assert_eq!(hospital.rig.requests(infno), 0, "{infno}: {report:#}");
    }

    // Each workstation alone is 不平 against the institution's totals, and is told why.
    for workstation in [config, &hospital.second] {
        let (code, stdout, _) = medcard(workstation, &["reconcile"]);
        assert_eq!(code, 1, "{stdout}");
        assert!(stdout.contains("不平 NOT balanced"), "{stdout}");
        assert!(
            stdout.contains("3201's totals (and 3202's details) are the whole institution's"),
            "{stdout}"
        );
        assert!(stdout.contains("medcard reconcile --hospital"), "{stdout}");
    }

    // The day by workstation and insutype, as each settled it; the total is both.
    let (code, day) = medcard_json(config, &["hospital", "day"]);
    assert_eq!(code, 0, "{day:#}");
    let lines = day["lines"].as_array().cloned().unwrap_or_default();
    assert_eq!(lines.len(), 2, "{day:#}");
    for (line, (workstation, settled)) in lines.iter().zip([
        (FIRST, ours.iter().collect::<Vec<_>>()),
        (SECOND, theirs.iter().collect()),
    ]) {
        assert_eq!(line["workstation"], workstation, "{day:#}");
        assert_eq!(line["insutype"], text(&settled[0]["setlinfo"]["insutype"]));
        assert_eq!(line_sums(line), sums(&settled), "{day:#}");
    }
    let all: Vec<&Value> = ours.iter().chain(&theirs).collect();
    assert_eq!(line_sums(&day["total"]), sums(&all), "{day:#}");
    let (_, table, _) = medcard(config, &["hospital", "day"]);
    assert!(table.contains(FIRST) && table.contains(SECOND), "{table}");
    assert!(table.contains("TOTAL"), "{table}");

    // Both shipped within the last 10 minutes; with 0 minutes every one is stale (exit 1).
    let (code, stdout, _) = medcard(config, &["hospital", "workstations"]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("0 of 2 workstation(s)"), "{stdout}");
    let (code, listed) = medcard_json(
        config,
        &["hospital", "workstations", "--stale-minutes", "0"],
    );
    assert_eq!(code, 1, "{listed:#}");
    let names: Vec<(String, bool, i64)> = listed
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| {
            (
                text(&w["workstation"]),
                w["stale"] == true,
                w["shipped_rows"].as_i64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(names.len(), 2, "{listed:#}");
    assert!(
        names
            .iter()
            .zip([FIRST, SECOND])
            .all(|((name, stale, rows), expected)| name == expected && *stale && *rows > 0),
        "{listed:#}"
    );
}

#[test]
fn single_sided_settlements_are_attributed_and_calls_in_doubt_listed_with_their_workstation() {
    let hospital = Institution::start("hview-planted");
    hospital.settle_at(FIRST, &[("5.00", "p1-clean")]);
    let settled = hospital.settle_at(SECOND, &[("4.00", "p2-clean"), ("6.00", "p2-reversed")]);
    let reversed = &settled[1];

    // 医药机构多: window-2's settlement reversed at the insurer behind its journal's back.
    let mut link = same_institution(&hospital.rig.sim);
    let reversal = ReversalIn {
        psn_no: WANG.into(),
        omsgid: text(&reversed["calls"][0]["msgid"]),
        oinfno: tx::SETTLE.into(),
    };
    call(&mut link, tx::REVERSAL, data_input(&reversal));
    // 中心多: a program outside medcard with the institution's fixmedins_code settled a visit.
    let (nobodys, nobodys_msgid) = other_counter_settles(&hospital.rig.sim, "8.00");
    next_second();

    let config = &hospital.rig.config;
    let (code, report) = medcard_json(config, &["reconcile", "--hospital"]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["scope"], "institution");
    assert!(report["detail"]["uploaded"].is_string(), "{report:#}");
    for infno in ["9101", "3202", "9102"] {
        assert_eq!(hospital.rig.requests(infno), 1, "{infno}: {report:#}");
    }
    let found = differences(&report);
    assert_eq!(found.len(), 2, "{found:#?}");
    let of_kind = |kind: &str| the_one(&found, kind);
    let unknown = of_kind("hospital_only");
    assert_eq!(unknown["setl_id"], reversed["setl_id"]);
    assert_eq!(unknown["workstation"], SECOND);
    assert_eq!(unknown["request_id"], "p2-reversed");
    assert_eq!(unknown["msgid"], reversed["calls"][0]["msgid"]);
    assert!(
        text(&unknown["action"]).contains("settle the visit again"),
        "{unknown:#}"
    );
    let outside = of_kind("insurer_only");
    assert_eq!(text(&outside["setl_id"]), nobodys);
    assert_eq!(text(&outside["msgid"]), nobodys_msgid);
    assert!(outside["workstation"].is_null() && outside["request_id"].is_null());
    assert!(
        text(&outside["detail"]).contains("no workstation of the institution"),
        "{outside:#}"
    );
    assert!(
        text(&outside["action"]).starts_with("医保单边"),
        "{outside:#}"
    );
    let (_, stdout, _) = medcard(config, &["reconcile", "--hospital"]);
    assert!(
        stdout.contains(&format!("(workstation {SECOND}, request p2-reversed)")),
        "{stdout}"
    );

    let (_daemon, mut first) = hospital.counter(FIRST);
    // A 2207 whose answer is lost, and every 2601 the resolver sends for it too: the call
    // stays in doubt at window-1, and the hospital view lists it once shipped.
    hospital.rig.sim.admin(json!({
        "action": "faults", "drop_after_processing": 1000, "for_infno": "2207,2601"
    }));
    let visit = first.result(
        "visit.register",
        json!({"dept_code": "A03", "dept_name": "内科", "dr_name": "张医生", "ipt_otp_no": "MZ-p1-doubt"}),
    );
    let p = preview(&mut first, &text(&visit["mdtrt_id"]), one_line("9.00"));
    let _ = first.call("settle.commit", commit_params(&p["preview_id"], "p1-doubt"));
    let mut listed = Value::Null;
    common::wait_until("the call in doubt listed", PATIENCE, || {
        listed = medcard_json(config, &["hospital", "unresolved"]).1;
        listed
            .as_array()
            .is_some_and(|calls| calls.iter().any(|c| c["request_id"] == "p1-doubt"))
    });
    let doubt: Vec<&Value> = listed
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["request_id"] == "p1-doubt")
        .collect();
    assert!(
        doubt.iter().all(|c| c["workstation"] == FIRST
            && ["2207", "2601"].contains(&c["infno"].as_str().unwrap_or(""))),
        "{listed:#}"
    );
    let (code, table, _) = medcard(config, &["hospital", "unresolved"]);
    assert_eq!(code, 0);
    assert!(
        table.contains(FIRST) && table.contains("p1-doubt"),
        "{table}"
    );

    // The insurer answers again: the resolver's next 2601 is told 已冲正 (one of the 2601s
    // whose answers were lost reversed it), so the 2207 and every 2601 sent for it are in
    // doubt no more, at the workstation and in the hospital's view.
    hospital
        .rig
        .sim
        .admin(json!({"action": "faults", "drop_after_processing": 0}));
    // The resolver's next pass may first wait out the backoff of the 2601s in progress.
    common::wait_until(
        "the call in doubt resolved, its 2601s too",
        PATIENCE * 6,
        || {
            let (_, listed) = medcard_json(config, &["hospital", "unresolved"]);
            listed
                .as_array()
                .is_some_and(|calls| calls.iter().all(|c| c["request_id"] != "p1-doubt"))
        },
    );
}

#[test]
fn the_operator_is_told_when_no_hospital_database_is_configured_or_it_is_unreachable() {
    let dir = TempDir::new("hview-errors");
    let cache = format!(
        "[cache]\npath = {:?}\n",
        dir.join("cache.sqlite").display().to_string()
    );
    let alone = dir.file("alone.toml", &cache);
    let (code, _, stderr) = medcard(&alone, &["hospital", "day"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no hospital database"), "{stderr}");
    assert!(stderr.contains("未配置医院数据库"), "{stderr}");

    // A port nothing listens on (bound, then let go).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let down = dir.file(
        "down.toml",
        &format!(
            "{cache}\n[hospital]\nworkstation = \"w\"\nnode = 9\n\
             database = \"host=127.0.0.1 port={port} user=medcard dbname=medcard\"\n"
        ),
    );
    for args in [
        &["hospital", "workstations"][..],
        &["hospital", "unresolved"],
    ] {
        let (code, _, stderr) = medcard(&down, args);
        assert_eq!(code, 2, "{stderr}");
        assert!(
            stderr.contains("the hospital database is unreachable"),
            "{stderr}"
        );
        assert!(stderr.contains("医院数据库无法连接"), "{stderr}");
    }
}

/// Whether `workstation` is flagged stale by `hospital workstations --stale-minutes 10`.
fn stale(config: &Path, workstation: &str) -> bool {
    let (_, lines) = medcard_json(
        config,
        &["hospital", "workstations", "--stale-minutes", "10"],
    );
    let line = lines
        .as_array()
        .and_then(|lines| lines.iter().find(|l| l["workstation"] == workstation))
        .unwrap_or_else(|| panic!("{workstation} is not listed: {lines}"));
    line["stale"] == true
}

/// A workstation with nothing to ship is still heard from (its heartbeat), so it is not
/// stale; once its daemon stops, nothing speaks for it and it is.
#[test]
fn a_quiet_workstation_is_heard_from_and_a_stopped_one_goes_stale() {
    let hospital = Institution::start("hview-heartbeat");
    let config = hospital.config(FIRST);
    let twenty_minutes_ago = |db: &HospitalDb| {
        db.client()
            .execute(
                "UPDATE workstations SET last_seen_at = now() - interval '20 minutes'",
                &[],
            )
            .expect("move last_seen_at back");
    };
    let (mut daemon, mut client) = hospital.counter(FIRST);
    wait_shipped(&mut client);
    twenty_minutes_ago(&hospital.db);
    assert!(stale(config, FIRST), "not heard from for 20 minutes");
    common::wait_until("the quiet workstation's heartbeat", PATIENCE, || {
        !stale(config, FIRST)
    });
    daemon.terminate();
    twenty_minutes_ago(&hospital.db);
    assert!(stale(config, FIRST), "a stopped workstation is stale");
}
