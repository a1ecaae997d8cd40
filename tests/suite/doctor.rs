//! `medcard doctor` and `system.doctor` name the broken part and its fix: pcscd unreachable
//! (the real PC/SC client library pointed at a socket nobody serves), the insurer link down,
//! the insurer's clock skewed (the real `medcard insurer-sim`'s `clock_skew`), a PSAM
//! without RKSSSE; and, where all is well, each part passes. The exit status is 0 / 1 / 2.

use crate::common;

use common::insurer::InsurerSim;
use common::rpc::Rpc;
use common::settle::Rig;
use common::temp::TempDir;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A configuration for `medcard doctor` on the simulator at `url`.
fn doctor_config(dir: &TempDir, url: &str) -> PathBuf {
    let config = dir.join("medcard.toml");
    let text = format!(
        "[socket]\npath = {:?}\n\n[insurer]\nurl = {url:?}\nmdtrtarea_admvs = \"500000\"\n\n\
         [cache]\npath = {:?}\n",
        dir.join("medcard.sock").display().to_string(),
        dir.join("cache.sqlite").display().to_string(),
    );
    std::fs::write(&config, text).expect("write the config");
    config
}

/// `medcard doctor` with pcscd out of reach: (exit status, text, the JSON report).
fn doctor(config: &Path) -> (i32, String, Value) {
    let run = |format: &str| {
        Command::new(common::medcard_bin())
            .args(["doctor", "--config"])
            .arg(config)
            .args(["--format", format])
            .env(
                "PCSCLITE_CSOCK_NAME",
                "/nonexistent/medcard-test-pcscd.comm",
            )
            .output()
            .expect("run medcard doctor")
    };
    let text = run("text");
    let json = run("json");
    assert_eq!(text.status.code(), json.status.code());
    let report = serde_json::from_slice(&json.stdout).expect("the JSON report");
    (
        text.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&text.stdout).into_owned(),
        report,
    )
}

/// The simulator's sign-ins: (made, still valid).
fn sign_ins(dir: &TempDir) -> (i64, i64) {
    let conn = rusqlite::Connection::open_with_flags(
        common::insurer::sim_db(dir),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("the simulator's database");
    conn.query_row(
        "SELECT count(*), coalesce(sum(valid), 0) FROM sign_ins",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .expect("count the sign-ins")
}

/// Whether a check's `part` (`found` or `fix`) says `needle` in `language` (`en`, `zh`).
fn says(check: &Value, part: &str, language: &str, needle: &str) -> bool {
    check[part][language]
        .as_str()
        .is_some_and(|text| text.contains(needle))
}

/// The check `id` of a JSON report.
fn check<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["id"] == id))
        .unwrap_or_else(|| panic!("no {id} check in {report}"))
}

#[test]
fn doctor_names_pcscd_and_the_clock_with_their_fixes_and_passes_the_insurer() {
    let dir = TempDir::new("doctor-cli");
    let sim = InsurerSim::in_dir(&dir);
    let config = doctor_config(&dir, &sim.url());

    let (status, text, report) = doctor(&config);
    assert_eq!(status, 2, "{text}");
    let ids: Vec<&str> = report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        [
            "config", "pcscd", "readers", "psam", "insurer", "sign_in", "clock", "cache",
            "journal", "disk", "socket", "hospital"
        ]
    );
    assert!(text.contains("FAIL  pcscd"), "{text}");
    assert!(text.contains("sudo systemctl start pcscd"), "{text}");
    assert!(text.contains("启动读卡服务"), "{text}");
    for passed in ["config", "insurer", "sign_in", "clock", "disk"] {
        assert_eq!(check(&report, passed)["status"], "pass", "{passed}: {text}");
    }
    assert_eq!(check(&report, "readers")["status"], "skip");
    assert_eq!(check(&report, "socket")["status"], "warn", "no daemon runs");
    // The probe's sign-ins (one per run) are not left behind at the insurer.
    assert_eq!(sign_ins(&dir), (2, 0), "(made, still valid)");

    // The insurer's clock two minutes ahead: a warning; a quarter of an hour behind: a failure.
    sim.admin(json!({"action": "clock_skew", "seconds": 120}));
    let (_, text, report) = doctor(&config);
    let clock = check(&report, "clock");
    assert_eq!(clock["status"], "warn", "{text}");
    let found = clock["found"]["en"].as_str().expect("found");
    assert!(
        ["119 s", "120 s", "121 s"]
            .iter()
            .any(|s| found.contains(s))
            && found.contains("behind"),
        "{found}"
    );
    assert!(text.contains("timedatectl set-ntp true"), "{text}");
    sim.admin(json!({"action": "clock_skew", "seconds": -900}));
    let (_, _, report) = doctor(&config);
    // Beyond the platform's tolerance it refuses the sign-in itself; its refusal still says
    // its time, and the fix is the clock's.
    let sign_in = check(&report, "sign_in");
    assert_eq!(sign_in["status"], "fail", "{sign_in}");
    assert!(says(sign_in, "found", "en", "相差过大"), "{sign_in}");
    assert!(says(sign_in, "fix", "en", "timedatectl"), "{sign_in}");
    let clock = check(&report, "clock");
    assert_eq!(clock["status"], "fail", "{clock}");
    assert!(says(clock, "found", "en", "ahead of"), "{clock}");
    assert!(says(clock, "found", "zh", "快"), "{clock}");
}

#[test]
fn doctor_says_the_insurer_does_not_answer_and_what_to_check() {
    let dir = TempDir::new("doctor-link-down");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let config = doctor_config(
        &dir,
        &format!("http://127.0.0.1:{port}/fsi/api/callService"),
    );
    let (status, text, report) = doctor(&config);
    assert_eq!(status, 2);
    let insurer = check(&report, "insurer");
    assert_eq!(insurer["status"], "fail", "{text}");
    assert!(says(insurer, "fix", "en", "front-end processor"));
    assert!(says(insurer, "fix", "zh", "前置机"));
    assert_eq!(check(&report, "sign_in")["status"], "skip");
    assert_eq!(check(&report, "clock")["status"], "skip");
}

/// `system.doctor` of a daemon on virtual readers holding 小王's card and `psam`.
fn system_doctor(rig: &Rig, psam: &str) -> Value {
    let psam = common::psam(psam).display().to_string();
    let daemon = rig.daemon(&["xiaowang", &psam], &[]);
    let mut client = daemon.client();
    client.result("system.doctor", json!({}))
}

#[test]
fn system_doctor_sees_the_daemons_readers_and_psam() {
    let rig = Rig::start("doctor-daemon", "");
    let report = system_doctor(&rig, "test-sm4");
    for passed in [
        "config", "pcscd", "readers", "psam", "insurer", "sign_in", "clock", "socket",
    ] {
        assert_eq!(
            check(&report, passed)["status"],
            "pass",
            "{passed}: {report}"
        );
    }
    let readers = check(&report, "readers")["found"]["en"]
        .as_str()
        .expect("found");
    assert!(
        readers.contains("(card)") && readers.contains("(PSAM)"),
        "{readers}"
    );
    let psam = check(&report, "psam")["found"]["en"]
        .as_str()
        .expect("found");
    assert!(psam.contains("holds RKSSSE"), "{psam}");

    // A PSAM without the key that opens 3.0 cards: the failure and whom to ask.
    let report = system_doctor(&rig, "no-rkssse");
    let psam = check(&report, "psam");
    assert_eq!(psam["status"], "fail", "{psam}");
    assert!(says(psam, "fix", "zh", "RKSSSE"), "{psam}");
    assert_eq!(report["status"], "fail");
}

#[test]
fn system_doctor_names_the_daemons_sign_in_renewed_after_the_platform_ended_it() {
    let rig = Rig::start("doctor-sign-in", "");
    let daemon = rig.daemon(&["xiaowang"], &[]);
    let mut client = daemon.client();
    let sign_in = |client: &mut common::rpc::Client| {
        client.result("system.info", json!({}))["insurer"]["sign_in"].clone()
    };
    common::wait_until("signed in", common::rpc::PATIENCE, || {
        sign_in(&mut client)["state"] == "signed_in"
    });
    // The platform ends every sign-in; the daemon's next call hears of it and signs in again.
    rig.sim.admin(json!({"action": "expire_signins"}));
    common::wait_until("signed in again", common::rpc::PATIENCE, || {
        sign_in(&mut client)["sign_ins"] == 2
    });
    let sign_no = sign_in(&mut client)["sign_no"]
        .as_str()
        .expect("a sign_no")
        .to_owned();
    let report = client.result("system.doctor", json!({}));
    let check = check(&report, "sign_in");
    assert_eq!(check["status"], "pass", "{check}");
    let found = check["found"]["en"].as_str().expect("found");
    assert!(
        found.contains(&format!("the daemon's sign-in {sign_no} (2 since start)")),
        "{found}"
    );
}
