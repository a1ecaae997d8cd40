//! The journal shipped to the hospital's PostgreSQL (docs/hospital.md): real daemons (`medcard
//! serve --virtual`), a real `medcard insurer-sim`, real SQLite files and a throwaway
//! PostgreSQL cluster. Every journal row reaches PostgreSQL once, through an outage of the
//! database and a SIGKILL of the daemon; a workstation the hospital must refuse (a node
//! another holds, a replaced journal) and a password file others can read stop the start;
//! with `ssl_root_cert` the journal goes over TLS only to a server that CA signed.

use crate::common;

use common::daemon::Daemon;
use common::hospital::{
    HospitalDb, cache_of, hospital_info, local_calls, local_settlements, test_certificates,
    wait_shipped,
};
use common::rpc::{Client, Rpc};
use common::settle::{
    Rig, XIAOWANG, commit_params, one_line, preview, refund_params, register, wait_card,
    wait_catalogue,
};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

/// A daemon of `rig` with 小王's card ready.
fn ready(rig: &Rig) -> (Daemon, Client) {
    let daemon = rig.daemon(&[XIAOWANG], &[]);
    let mut client = daemon.client();
    wait_catalogue(&mut client);
    wait_card(&mut client);
    (daemon, client)
}

/// A visit registered, previewed and settled under `request_id`; its setl_id.
fn settle_visit(client: &mut Client, request_id: &str) -> String {
    let mdtrt_id = register(client);
    let p = preview(client, &mdtrt_id, one_line("10.00"));
    let done = client.result("settle.commit", commit_params(&p["preview_id"], request_id));
    assert_eq!(done["state"], "settled", "{done}");
    done["setl_id"].as_str().expect("setl_id").to_owned()
}

/// The hospital holds exactly the local journal: every settlement (with its state, setl_id
/// and the visit's insutype) and every call, and `journal_log` is 1..=n without a gap.
fn assert_hospital_holds_the_journal(db: &HospitalDb, rig: &Rig, workstation: &str) {
    let cache = cache_of(&rig.config);
    let local = local_settlements(&cache);
    assert!(!local.is_empty());
    assert_eq!(db.settlements(workstation), local);
    assert_eq!(db.calls(workstation), local_calls(&cache));
    let seqs = db.log_seqs(workstation);
    let expected: Vec<i64> = (1..=seqs.len() as i64).collect();
    assert_eq!(seqs, expected, "journal_log has gaps or duplicates");
}

#[test]
fn every_journal_row_reaches_the_hospital_once() {
    let db = HospitalDb::start("ship-once");
    let rig = Rig::start("ship-once", &db.section("counter-1", 1));
    let (_daemon, mut client) = ready(&rig);
    let setl_id = settle_visit(&mut client, "once-1");
    settle_visit(&mut client, "once-2");
    let refund = client.result("settle.refund", refund_params(&setl_id, "once-refund"));
    assert_eq!(refund["state"], "settled", "{refund}");
    let info = wait_shipped(&mut client);
    assert_eq!(info["workstation"], "counter-1", "{info}");
    assert_eq!(info["node"], 1, "{info}");
    assert_hospital_holds_the_journal(&db, &rig, "counter-1");
    let states: Vec<(String, String)> = db
        .settlements("counter-1")
        .into_iter()
        .map(|(request_id, state, _, insutype)| {
            assert_eq!(insutype.as_deref(), Some("310"));
            (request_id, state)
        })
        .collect();
    assert!(
        states.contains(&("once-1".to_owned(), "refunded".to_owned())),
        "{states:?}"
    );
    assert!(
        states.contains(&("once-2".to_owned(), "settled".to_owned())),
        "{states:?}"
    );
}

#[test]
fn an_outage_of_the_database_and_a_killed_daemon_lose_nothing() {
    let mut db = HospitalDb::start("ship-outage");
    let rig = Rig::start("ship-outage", &db.section("counter-2", 2));
    let (daemon, mut client) = ready(&rig);
    settle_visit(&mut client, "outage-1");
    wait_shipped(&mut client);
    db.cluster.stop().expect("stop PostgreSQL");
    // The workstation keeps settling: the journal is local first.
    settle_visit(&mut client, "outage-2");
    settle_visit(&mut client, "outage-3");
    common::wait_until("the outage seen", common::rpc::PATIENCE, || {
        hospital_info(&mut client)["state"] == "down"
    });
    let down = hospital_info(&mut client);
    assert!(down["pending_rows"].as_u64().unwrap_or(0) > 0, "{down}");
    assert!(down["last_error"].is_string(), "{down}");
    db.cluster.start().expect("start PostgreSQL again");
    wait_shipped(&mut client);
    assert_hospital_holds_the_journal(&db, &rig, "counter-2");
    // SIGKILL (dropping the daemon kills it), right after settling: the rows not yet
    // shipped are in the outbox, and the next daemon ships them from the hospital's
    // watermark.
    settle_visit(&mut client, "killed-1");
    drop(client);
    drop(daemon);
    let (_daemon, mut client) = ready(&rig);
    settle_visit(&mut client, "after-kill-1");
    wait_shipped(&mut client);
    assert_hospital_holds_the_journal(&db, &rig, "counter-2");
}

/// `medcard serve` with `config` that must not start: whether it was still running after
/// 20 s (then killed), and its output.
fn refused_start(config: &std::path::Path) -> (bool, String) {
    let socket = config.with_file_name("refused.sock");
    let log = config.with_file_name("refused.log");
    let mut child = Command::new(common::medcard_bin())
        .args(["serve", "--config"])
        .arg(config)
        .arg("--socket")
        .arg(&socket)
        .arg("--virtual")
        .arg(common::fixture(XIAOWANG))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("a log file"))
        .spawn()
        .expect("run medcard serve");
    let mut started = true;
    common::wait_until(
        "medcard serve's end",
        std::time::Duration::from_secs(30),
        || {
            started = socket.exists();
            started || !matches!(child.try_wait(), Ok(None))
        },
    );
    let _ = child.kill();
    let _ = child.wait();
    (started, std::fs::read_to_string(&log).unwrap_or_default())
}

#[test]
fn a_second_workstation_on_a_held_node_or_with_another_journal_is_refused() {
    let db = HospitalDb::start("ship-node");
    let first = Rig::start("ship-node-1", &db.section("counter-3", 3));
    let (_daemon, mut client) = ready(&first);
    wait_shipped(&mut client);
    let second = Rig::start("ship-node-2", &db.section("counter-4", 3));
    let (ok, log) = refused_start(&second.config);
    assert!(!ok, "a second workstation on node 3 started: {log}");
    assert!(
        log.contains("hospital.node 3 is already held by workstation \"counter-3\""),
        "{log}"
    );
    assert!(
        log.contains("医院数据库拒绝本工作站"),
        "in Chinese too: {log}"
    );
    // The same name with another cache file (a replaced journal) is refused too.
    let replaced = Rig::start("ship-node-3", &db.section("counter-3", 3));
    let (ok, log) = refused_start(&replaced.config);
    assert!(!ok, "a replaced journal started shipping: {log}");
    assert!(log.contains("with another journal"), "{log}");
}

#[test]
fn a_password_file_other_users_can_read_is_refused() {
    let db = HospitalDb::start("ship-pw");
    std::fs::set_permissions(&db.password_file, std::fs::Permissions::from_mode(0o644))
        .expect("chmod the password file");
    let rig = Rig::start("ship-pw", &db.section("counter-5", 5));
    let (ok, log) = refused_start(&rig.config);
    assert!(!ok, "started with a readable password file: {log}");
    assert!(log.contains("can be read by other users"), "{log}");
    assert!(log.contains("chmod 600"), "{log}");
}

/// With `ssl_root_cert` the journal goes over TLS: to a server whose certificate the
/// hospital's CA signed it ships (and PostgreSQL sees the medcard role's connection as TLS);
/// to a server the CA did not sign nothing is shipped, the daemon still settles, and
/// `system.info` says why.
#[test]
fn tls_to_a_server_the_hospitals_ca_signed_ships_and_to_another_nothing_is_shipped() {
    let db = HospitalDb::start("ship-tls");
    let certs = common::temp::TempDir::new("ship-tls-certs");
    let (hospital_ca, cert, key) = test_certificates(&certs, "hospital");
    let (other_ca, ..) = test_certificates(&certs, "other");
    db.cluster
        .enable_tls(&cert, &key)
        .expect("TLS on the cluster");
    let over_tls = |name: &str, node: u32, ca: &std::path::Path| {
        format!(
            "{}ssl_root_cert = {:?}\n",
            db.section(name, node),
            ca.display().to_string()
        )
    };

    let trusted = Rig::start("ship-tls-1", &over_tls("counter-tls-1", 1, &hospital_ca));
    let (_daemon, mut client) = ready(&trusted);
    settle_visit(&mut client, "tls-1");
    wait_shipped(&mut client);
    assert_hospital_holds_the_journal(&db, &trusted, "counter-tls-1");
    let over_tls_now: i64 = db
        .client()
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a ON a.pid = s.pid \
             WHERE a.usename = 'medcard' AND s.ssl",
            &[],
        )
        .expect("pg_stat_ssl")
        .get(0);
    assert!(over_tls_now >= 1, "the shipper's connection is not TLS");

    let untrusted = Rig::start("ship-tls-2", &over_tls("counter-tls-2", 2, &other_ca));
    let (_other, mut client) = ready(&untrusted);
    let mut info = serde_json::Value::Null;
    common::wait_until(
        "the untrusted server's refusal",
        common::rpc::PATIENCE,
        || {
            info = hospital_info(&mut client);
            info["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("certificate"))
        },
    );
    assert_eq!(info["state"], "down", "{info}");
    settle_visit(&mut client, "tls-2");
    assert!(
        db.settlements("counter-tls-2").is_empty(),
        "nothing shipped to a server the CA did not sign"
    );
}
