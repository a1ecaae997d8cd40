//! Numbers across the hospital (issue 13, item 1): two workstations of one hospital — two
//! `medcard serve` with their own cache files, nodes 1 and 2 of `[hospital]`, one
//! `medcard insurer-sim` (which refuses a msgid it saw before with 发送方报文ID重复) —
//! register and settle at the same time, in the same seconds: the insurer refuses nothing,
//! every msgid it received is unique and of its workstation's partition, and the visit and
//! batch numbers (ipt_otp_no, chrg_bchno) carry the node. A 2207 refused as a duplicate
//! msgid is journalled FAIL with the insurer's words, and the next attempt numbers from a
//! later second; a 1101 refused so goes again from a later second, and is never a verdict
//! about the person.

use crate::common;

use common::daemon::Daemon;
use common::rpc::{Client, Rpc};
use common::settle::{
    Rig, XIAOWANG, commit_params, one_line, preview, register, wait_card, wait_catalogue,
};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};

/// Visits each workstation registers and settles.
const VISITS: usize = 12;
/// `hospital.node_count` by default: 100 sequence numbers a second each.
const BUDGET: u32 = 100;

/// A configuration like the rig's for workstation `node` (its own cache file); `None`: a
/// standalone workstation.
fn workstation_config(rig: &Rig, name: &str, node: Option<u16>) -> PathBuf {
    let text = std::fs::read_to_string(&rig.config).expect("read the rig's config");
    let mut text = text.replace("cache.sqlite", &format!("{name}.sqlite"));
    if let Some(node) = node {
        text.push_str(&format!("\n[hospital]\nnode = {node}\n"));
    }
    let path = rig.config.with_file_name(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write the workstation's config");
    path
}

/// A daemon with 小王's card judged and the catalogue synced.
fn ready(config: &Path) -> (Daemon, Client) {
    let daemon = Daemon::start_virtual(config, &[XIAOWANG], &[]);
    let mut client = daemon.client();
    wait_catalogue(&mut client);
    wait_card(&mut client);
    (daemon, client)
}

/// What one visit made: (ipt_otp_no, chrg_bchno, the settlement's calls).
type Visit = (String, String, Vec<Value>);

/// Registers, previews and settles one visit.
fn visit(client: &mut Client, request_id: &str) -> Visit {
    let registered = client.result(
        "visit.register",
        json!({"dept_code": "A03", "dept_name": "内科", "dr_name": "张医生"}),
    );
    let mdtrt_id = registered["mdtrt_id"].as_str().expect("mdtrt_id");
    let ipt_otp_no = registered["ipt_otp_no"].as_str().expect("ipt_otp_no");
    let p = preview(client, mdtrt_id, one_line("3.00"));
    let preview_id = p["preview_id"].as_str().expect("preview_id");
    let done = client.result("settle.commit", commit_params(preview_id, request_id));
    assert_eq!(done["state"], "settled", "{done}");
    let calls = done["calls"].as_array().expect("calls").clone();
    (
        ipt_otp_no.to_owned(),
        preview_id.trim_start_matches('P').to_owned(),
        calls,
    )
}

/// The two workstations' visits, made at the same time (the same seconds).
fn at_the_same_time(clients: Vec<Client>) -> Vec<Vec<Visit>> {
    let start = Arc::new(Barrier::new(clients.len()));
    let threads: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(k, mut client)| {
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                (0..VISITS)
                    .map(|n| visit(&mut client, &format!("ws{k}-{n:03}")))
                    .collect::<Vec<Visit>>()
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("a workstation's visits"))
        .collect()
}

/// The sequence number (last 4 digits) of a msgid.
fn seq(msgid: &str) -> u32 {
    msgid[26..].parse().expect("a 4-digit sequence")
}

#[test]
fn two_workstations_of_one_hospital_never_share_a_number() {
    let rig = Rig::start("hospital-numbers", "");
    let nodes = [1u16, 2];
    let configs: Vec<PathBuf> = nodes
        .iter()
        .map(|&node| workstation_config(&rig, &format!("ws{node}"), Some(node)))
        .collect();
    let (_daemons, clients): (Vec<Daemon>, Vec<Client>) = configs.iter().map(|c| ready(c)).unzip();
    let visits = at_the_same_time(clients);

    let log = rig.msg_log();
    let refused: Vec<_> = log.iter().filter(|r| r.2 != "processed").collect();
    assert!(refused.is_empty(), "the insurer refused: {refused:?}");
    let msgids: HashSet<&str> = log.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(msgids.len(), log.len(), "a msgid was sent twice");
    let hospital = u32::from(nodes[0]) * BUDGET..(u32::from(nodes[1]) + 1) * BUDGET;
    for (msgid, ..) in &log {
        assert!(hospital.contains(&seq(msgid)), "{msgid} is no node's");
    }

    let mut ipt_otp_nos = HashSet::new();
    for (node, made) in nodes.iter().zip(&visits) {
        let own = u32::from(*node) * BUDGET..(u32::from(*node) + 1) * BUDGET;
        for (ipt_otp_no, chrg_bchno, calls) in made {
            assert!(ipt_otp_nos.insert(ipt_otp_no.clone()), "{ipt_otp_no} twice");
            // MZ yyyyMMdd node serial(6); B yyMMdd node serial(6).
            assert_eq!(ipt_otp_no.len(), 2 + 8 + 3 + 6, "{ipt_otp_no}");
            assert_eq!(ipt_otp_no[10..13], format!("{node:03}"), "{ipt_otp_no}");
            assert_eq!(chrg_bchno.len(), 1 + 6 + 3 + 6, "{chrg_bchno}");
            assert_eq!(chrg_bchno[7..10], format!("{node:03}"), "{chrg_bchno}");
            for call in calls {
                let msgid = call["msgid"].as_str().expect("msgid");
                assert!(own.contains(&seq(msgid)), "node {node} sent {msgid}");
            }
        }
    }
    assert_eq!(ipt_otp_nos.len(), nodes.len() * VISITS);
}

#[test]
fn a_2207_refused_as_a_duplicate_msgid_is_a_fail_and_the_next_attempt_is_of_a_later_second() {
    let rig = Rig::start("hospital-duplicate-2207", "");
    let config = workstation_config(&rig, "ws3", Some(3));
    let (_daemon, mut client) = ready(&config);
    let mdtrt_id = register(&mut client);
    let p = preview(&mut client, &mdtrt_id, one_line("3.00"));
    rig.sim
        .admin(json!({"action": "faults", "duplicate_msgid": 1, "for_infno": "2207"}));
    let done = client.result("settle.commit", commit_params(&p["preview_id"], "dup-2207"));
    assert_eq!(done["state"], "settled", "{done}");
    let calls = done["calls"].as_array().expect("calls");
    assert_eq!(calls.len(), 2, "{done}");
    let (refused, settled) = (&calls[0], &calls[1]);
    assert_eq!(refused["state"], "FAIL", "{done}");
    assert!(
        refused["err_msg"].as_str().unwrap_or("").contains("重复"),
        "{done}"
    );
    assert_eq!(settled["state"], "SUCCESS", "{done}");
    let second = |call: &Value| call["msgid"].as_str().expect("msgid")[12..26].to_owned();
    assert!(
        second(settled) > second(refused),
        "the next attempt numbered in the refused msgid's second: {done}"
    );
    assert_eq!(rig.standing(&mdtrt_id).len(), 1, "settled once");
}

/// The second (`yyyyMMddHHmmss`) of a msgid.
fn second_of(msgid: &str) -> &str {
    &msgid[12..26]
}

#[test]
fn a_1101_refused_as_a_duplicate_msgid_goes_again_from_a_later_second_and_judges_nothing() {
    let rig = Rig::start("hospital-duplicate-1101", "");
    let config = workstation_config(&rig, "ws4", Some(4));
    let (_daemon, mut client) = ready(&config);
    let swipe = |client: &mut Client| {
        client.result(
            "card.refresh",
            json!({"reader": "medcard virtual reader 0"}),
        )
    };

    rig.sim
        .admin(json!({"action": "faults", "duplicate_msgid": 1, "for_infno": "1101"}));
    let card = swipe(&mut client);
    assert_eq!(card["verdict"]["code"], "ok", "{card}");
    assert_eq!(card["verdict"]["source"], "insurer", "{card}");
    let log = rig.msg_log();
    let swipes: Vec<_> = log.iter().filter(|r| r.1 == "1101").collect();
    // The refused one and the next 1101 (the monitor may judge the card again after it).
    let refused_at = swipes
        .iter()
        .position(|r| r.2 == "fault_duplicate_msgid")
        .unwrap_or_else(|| panic!("no 1101 refused: {swipes:?}"));
    let refused = swipes[refused_at];
    let answered = swipes
        .get(refused_at + 1)
        .unwrap_or_else(|| panic!("not sent again: {swipes:?}"));
    assert_eq!(answered.2, "processed", "{swipes:?}");
    assert!(
        second_of(&answered.0) > second_of(&refused.0),
        "sent again in the refused msgid's second: {swipes:?}"
    );

    // Refused on every attempt: no verdict about the person from it.
    rig.sim
        .admin(json!({"action": "faults", "duplicate_msgid": 2, "for_infno": "1101"}));
    let card = swipe(&mut client);
    assert_ne!(card["verdict"]["code"], "unknown_person", "{card}");
    assert_eq!(card["verdict"]["source"], "cache", "{card}");
}

/// `medcard sync` on a workstation's cache file, by hand and without `--node`, numbers from
/// the node the daemon recorded there (its `[hospital] node`), not from the whole second; a
/// `--node` other than the daemon's is refused before anything is sent.
#[test]
fn medcard_sync_numbers_from_the_node_the_daemon_recorded() {
    let rig = Rig::start("numbers-sync", "");
    let config = workstation_config(&rig, "ws7", Some(7));
    let (mut daemon, _client) = ready(&config);
    daemon.terminate();
    let cache = config.with_file_name("ws7.sqlite");
    let sync = |extra: &[&str]| {
        std::process::Command::new(common::medcard_bin())
            .args(["sync", "--insurer", &rig.sim.url(), "--db"])
            .arg(&cache)
            .args(extra)
            .output()
            .expect("run medcard sync")
    };
    let before = rig.msg_log().len();
    let refused = sync(&["--node", "3"]);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{said}");
    assert!(said.contains("node 7 of 100"), "{said}");
    assert_eq!(rig.msg_log().len(), before, "a refused sync sent nothing");
    let synced = sync(&[]);
    assert!(
        synced.status.success(),
        "{}",
        String::from_utf8_lossy(&synced.stderr)
    );
    let sent: Vec<_> = rig.msg_log().into_iter().skip(before).collect();
    assert!(!sent.is_empty(), "the sync sent nothing");
    let own = 7 * BUDGET..8 * BUDGET;
    for (msgid, infno, ..) in &sent {
        assert!(
            own.contains(&seq(msgid)),
            "sync sent {infno} as {msgid}, not node 7's"
        );
    }
}
