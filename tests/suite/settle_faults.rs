//! The exactly-once fault matrix: the daemon killed with SIGKILL at every step of a 2207
//! (commit) and a 2208 (refund) — before the call is sent, while it is out, after the
//! insurer processed it but its reply was lost, after a good reply, after the outcome was
//! recorded — and the insurer's reply dropped without a crash. After a restart the cashier's
//! program retries with the same request_id; in every case the insurer holds exactly the
//! settlements the journal says, the patient's account moved exactly once, and
//! `medcard reconcile` finds no difference. The matrix is printed as a table
//! (`cargo test --features fault-injection --test suite settle_faults -- --nocapture`, or
//! `make fault-matrix`).
//!
//! Real parts: `medcard serve` (a child, killed by its own crash point, restarted on the same
//! journal), `medcard insurer-sim` on loopback, the real socket, the real SQLite files.
//!
//! The crash points exist only with `--features fault-injection` (`make test`); without it
//! this file is empty.
#![cfg(feature = "fault-injection")]

use crate::common;

use common::rpc::{Rpc, call_once};
use common::settle::{
    Rig, XIAOWANG, commit_params, one_line, preview, register, wait_card, wait_catalogue,
};
use serde_json::{Value, json};
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

const XIAOWANG_CERTNO: &str = "500103199103080319";
/// 小王's balance at the insurer before any of these visits (seed 000: 332.80 − 230.00).
const OPENING_FEN: i64 = 10_280;
/// Each visit: 5.00, paid wholly from the account (far below the deductible).
const VISIT_FEN: i64 = 500;

/// How the insurer misbehaves and where the daemon dies.
#[derive(Clone, Copy)]
struct Case {
    name: &'static str,
    /// `MEDCARD_CRASH_AT` point, or none.
    crash: Option<&'static str>,
    /// The simulator's fault for the call: "drop" (process, lose the reply), "slow", "500" and
    /// "garbage" (not processed).
    fault: Option<&'static str>,
}

const CASES: [Case; 9] = [
    Case {
        name: "before send",
        crash: Some("before_send"),
        fault: None,
    },
    Case {
        name: "after send, reply pending",
        crash: Some("after_send"),
        fault: Some("slow"),
    },
    Case {
        name: "insurer processed, reply lost",
        crash: Some("after_reply"),
        fault: Some("drop"),
    },
    Case {
        name: "after the reply",
        crash: Some("after_reply"),
        fault: None,
    },
    Case {
        name: "after the local commit",
        crash: Some("after_commit"),
        fault: None,
    },
    Case {
        name: "HTTP 500 (not processed)",
        crash: None,
        fault: Some("500"),
    },
    Case {
        name: "garbage reply (not processed)",
        crash: None,
        fault: Some("garbage"),
    },
    Case {
        name: "reply and first 2601 reply lost",
        crash: None,
        fault: Some("drop2601"),
    },
    Case {
        name: "reply dropped (no crash)",
        crash: None,
        fault: Some("drop"),
    },
];

fn set_fault(rig: &Rig, fault: Option<&str>, infno: &str) {
    let plan = match fault {
        Some("drop") => json!({"action": "faults", "drop_after_processing": 1, "for_infno": infno}),
        Some("slow") => json!({"action": "faults", "latency_ms": 600, "for_infno": infno}),
        Some("drop2601") => json!({
            "action": "faults",
            "drop_after_processing": 2,
            "for_infno": format!("{infno},2601"),
        }),
        Some("500") => json!({"action": "faults", "http_500": 1, "for_infno": infno}),
        Some("garbage") => json!({"action": "faults", "garbage": 1, "for_infno": infno}),
        _ => json!({"action": "faults"}),
    };
    rig.sim.admin(plan);
}

fn yuan(fen: i64) -> String {
    format!("{}.{:02}", fen / 100, fen % 100)
}

/// The journal's calls of a request as `infno:STATE` words.
fn calls(settlement: &Value) -> String {
    settlement["calls"]
        .as_array()
        .map(|calls| {
            calls
                .iter()
                .map(|c| {
                    format!(
                        "{}:{}",
                        c["infno"].as_str().unwrap_or("?"),
                        c["state"].as_str().unwrap_or("?")
                    )
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

struct Row {
    op: &'static str,
    case: &'static str,
    died: String,
    journal: String,
    standing: usize,
    balc: String,
    reconcile: &'static str,
}

/// Runs `method` with a crash plan: the daemon must die (or, without a crash point, answer);
/// then a fresh daemon answers the same request. Returns (how the first run ended, the
/// final answer).
fn crash_and_retry(
    rig: &Rig,
    case: Case,
    infno: &str,
    method: &str,
    params: Value,
) -> (String, Value) {
    let env: Vec<(&str, String)> = case
        .crash
        .map(|point| vec![("MEDCARD_CRASH_AT", format!("{point}:{infno}"))])
        .unwrap_or_default();
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut first = rig.daemon(&[XIAOWANG], &env_refs);
    wait_card(&mut first.client());
    set_fault(rig, case.fault, infno);
    let answer = call_once(
        &first.socket,
        method,
        params.clone(),
        Duration::from_secs(20),
    );
    let died = match case.crash {
        Some(_) => {
            let status = first.wait_exit(Duration::from_secs(15)).unwrap_or_else(|| {
                panic!(
                    "{}: the daemon did not die at its crash point: {}",
                    case.name,
                    first.log_text()
                )
            });
            assert_eq!(
                status.signal(),
                Some(libc::SIGKILL),
                "{}: {status}",
                case.name
            );
            assert!(
                answer.is_none(),
                "{}: answered before dying: {answer:?}",
                case.name
            );
            "SIGKILL".to_owned()
        }
        None => format!(
            "answered {}",
            answer
                .as_ref()
                .map(|a| a["result"]["state"].to_string())
                .unwrap_or_default()
        ),
    };
    drop(first);
    set_fault(rig, None, infno);
    let second = rig.daemon(&[XIAOWANG], &[]);
    let mut client = second.client();
    let done = client.result(method, params);
    (died, done)
}

/// `medcard reconcile` after a case: every 3201 total balances, so no 3202 is needed.
fn check_reconcile(rig: &Rig, label: &str) -> &'static str {
    let (code, report) = rig.reconcile();
    assert_eq!(code, 0, "{label}: reconcile found differences:\n{report}");
    assert!(
        report.contains("3202: not needed"),
        "{label}: a 3201 total did not balance:\n{report}"
    );
    "3201 对平"
}

#[test]
fn every_crash_and_lost_reply_settles_exactly_once() {
    let rig = Rig::start("settle-faults", "");
    let mut expected_fen = OPENING_FEN;
    let mut rows = Vec::new();
    {
        // The catalogue in the cache first, so previews are local + insurer.
        let warm = rig.daemon(&[XIAOWANG], &[]);
        wait_catalogue(&mut warm.client());
    }
    for case in CASES {
        // Commit: a new visit, a 5.00 bill, 2207 under the crash plan.
        let daemon = rig.daemon(&[XIAOWANG], &[]);
        let mut client = daemon.client();
        wait_card(&mut client);
        let mdtrt_id = register(&mut client);
        let p = preview(&mut client, &mdtrt_id, one_line(&yuan(VISIT_FEN)));
        drop(client);
        drop(daemon);
        let request_id = format!("commit-{}", case.name.replace(' ', "-"));
        let params = json!({"preview_id": p["preview_id"], "request_id": request_id});
        let (died, done) = crash_and_retry(&rig, case, "2207", "settle.commit", params);
        assert_eq!(done["state"], "settled", "commit / {}: {done}", case.name);
        expected_fen -= VISIT_FEN;
        let standing = rig.standing(&mdtrt_id);
        assert_eq!(standing.len(), 1, "commit / {}: {standing:?}", case.name);
        assert_eq!(
            Some(standing[0].setl_id.as_str()),
            done["setl_id"].as_str(),
            "commit / {}",
            case.name
        );
        assert_eq!(
            rig.balc(XIAOWANG_CERTNO),
            yuan(expected_fen),
            "commit / {}: charged once",
            case.name
        );
        rows.push(Row {
            op: "commit 2207",
            case: case.name,
            died,
            journal: calls(&done),
            standing: standing.len(),
            balc: yuan(expected_fen),
            reconcile: check_reconcile(&rig, case.name),
        });

        // Refund the settlement just made, 2208 under the same plan.
        let setl_id = done["setl_id"].as_str().expect("setl_id").to_owned();
        let params = json!({"setl_id": setl_id, "request_id": format!("refund-{}", case.name.replace(' ', "-"))});
        let (died, refunded) = crash_and_retry(&rig, case, "2208", "settle.refund", params);
        assert_eq!(
            refunded["state"], "settled",
            "refund / {}: {refunded}",
            case.name
        );
        expected_fen += VISIT_FEN;
        let standing = rig.standing(&mdtrt_id);
        assert!(standing.is_empty(), "refund / {}: {standing:?}", case.name);
        assert_eq!(
            rig.balc(XIAOWANG_CERTNO),
            yuan(expected_fen),
            "refund / {}: refunded once",
            case.name
        );
        rows.push(Row {
            op: "refund 2208",
            case: case.name,
            died,
            journal: calls(&refunded),
            standing: standing.len(),
            balc: yuan(expected_fen),
            reconcile: check_reconcile(&rig, case.name),
        });
    }
    print_matrix(&rows);
}

fn print_matrix(rows: &[Row]) {
    println!(
        "\nexactly-once fault matrix (each row: fault, restart, retry with the same request_id)"
    );
    println!(
        "{:<12} {:<34} {:<18} {:<44} {:>8} {:>8} {:<9}",
        "operation",
        "fault",
        "first daemon",
        "journal after the retry",
        "standing",
        "balc",
        "reconcile"
    );
    for r in rows {
        println!(
            "{:<12} {:<34} {:<18} {:<44} {:>8} {:>8} {:<9}",
            r.op, r.case, r.died, r.journal, r.standing, r.balc, r.reconcile
        );
    }
}

#[test]
fn a_crash_point_is_inert_without_the_variable() {
    // The same flow with no plan: nothing dies, one 2207.
    let rig = Rig::start("settle-nofault", "");
    let daemon = rig.daemon(&[XIAOWANG], &[]);
    let mut client = daemon.client();
    wait_catalogue(&mut client);
    wait_card(&mut client);
    let mdtrt_id = register(&mut client);
    let p = preview(&mut client, &mdtrt_id, one_line("5.00"));
    let started = Instant::now();
    let done = client.result("settle.commit", commit_params(&p["preview_id"], "plain"));
    assert_eq!(done["state"], "settled");
    assert_eq!(calls(&done), "2207:SUCCESS");
    assert!(started.elapsed() < Duration::from_secs(10));
}
