//! Many counters, one hospital, under fire (issue 13, item 5): twenty workstations — twenty
//! `medcard serve` children, each with its own SQLite cache and journal, `[hospital]
//! workstation = "counter-NN"` on node NN, all of the same `fixmedins_code` — one `medcard
//! insurer-sim` and one throwaway PostgreSQL. Each counter has a client thread of its own that
//! registers patients by ID number, previews, settles (`settle.commit`) and refunds some
//! (`settle.refund`), each under request_ids of its own.
//!
//! While they work, a seeded script (replay a failure with `MEDCARD_CHAOS_SEED=<seed>`, which
//! every failure message names) SIGKILLs workstations at random moments, has some of them kill
//! themselves exactly mid-commit or mid-refund (the `fault-injection` crash points,
//! `MEDCARD_CRASH_AT`), has the insurer lose some replies after processing them (the
//! simulator's `drop_after_processing`), and stops PostgreSQL for a while. A killed workstation
//! is started again on the same cache and configuration and its cashier retries the very call
//! that went unanswered, with the same request_id.
//!
//! Afterwards, every daemon running and quiet: no call is left pending or unknown in any
//! journal (the resolver settled every unanswered one); PostgreSQL holds every workstation's
//! settlements and calls exactly as its journal does, with `journal_log` 1..=n per
//! workstation; the insurer saw no msgid twice and refused none as a duplicate; and every
//! settlement stands at the insurer exactly once (its 2207s net of 2601 reversals), refunded
//! exactly where the journal says so. Last, [`assert_the_hospital_reconciles`]: `medcard
//! reconcile --hospital` is 对平 through 3201, and a 单边 planted on each side is found through
//! the 3202 files and attributed to its workstation (or to none).
#![cfg(feature = "fault-injection")]

use crate::common;

use crate::settle_reconcile::{
    call, differences, other_counter_settles, same_institution, the_one,
};
use common::daemon::Daemon;
use common::hospital::{HospitalDb, hospital_info, local_calls, local_settlements};
use common::rpc::{Client, call_once};
use common::settle::{CLASS_A, Rig, XIAOWANG, wait_catalogue};
use medcard::insurer::settlement::{self as tx, ReversalIn, data_input};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Workstations, each on node = its number.
const COUNTERS: usize = 20;
/// Settlements each counter makes.
const SETTLEMENTS: usize = 10;
/// Of every hundred settlements, how many the cashier refunds afterwards.
const REFUND_PERCENT: u64 = 30;
/// Of every hundred steps, how many the script disturbs (a kill, a crash point, a lost reply).
const FAULT_PERCENT: u64 = 22;
/// How long PostgreSQL stays down.
const OUTAGE: Duration = Duration::from_millis(2500);
/// The longest a cashier keeps asking about one request before the test fails.
const REQUEST_PATIENCE: Duration = Duration::from_secs(60);
/// The longest one call may go unanswered (the daemon alive) before the test fails.
const CALL_PATIENCE: Duration = Duration::from_secs(30);
/// The longest the hospital may take to become quiet and shipped after the run.
const QUIET_PATIENCE: Duration = Duration::from_secs(60);

/// Insured, active fixture persons (fixtures/insurer/persons.toml), registered by ID number.
const PERSONS: [&str; 5] = [
    "500103199103080319",
    "510104195802140261",
    "440106200108170645",
    "330782197912050571",
    "650102198511030574",
];

/// SplitMix64: a small, seeded, replayable source of choices.
#[derive(Clone)]
struct Chaos(u64);

impl Chaos {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// The generator of counter `k`: its script depends on the seed and its number only.
    fn for_counter(seed: u64, k: usize) -> Chaos {
        let mut mixed = Chaos(seed ^ (k as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
        mixed.next();
        mixed
    }
}

/// The run's seed: `MEDCARD_CHAOS_SEED`, or one from the clock (printed, to replay it).
fn seed() -> u64 {
    std::env::var("MEDCARD_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(13, |d| d.as_secs())
        })
}

/// What disturbs one step of a counter.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    None,
    /// SIGKILL from outside, this long after the step began.
    Kill(Duration),
    /// The daemon kills itself at this crash point of its next call of this infno.
    Crash(&'static str, &'static str),
    /// The insurer processes the next call of this infno (anyone's) and loses the reply.
    LostReply(&'static str),
}

const CRASH_POINTS: [&str; 4] = ["before_send", "after_send", "after_reply", "after_commit"];

/// One step's fault for a call of `infno`.
fn fault(chaos: &mut Chaos, infno: &'static str) -> Fault {
    if chaos.below(100) >= FAULT_PERCENT {
        return Fault::None;
    }
    match chaos.below(4) {
        0 | 1 => Fault::Kill(Duration::from_millis(chaos.below(250))),
        2 => Fault::Crash(CRASH_POINTS[chaos.below(4) as usize], infno),
        _ => Fault::LostReply(infno),
    }
}

/// A workstation: its daemon (started again after every death), its configuration, its
/// journal.
struct Workstation {
    name: String,
    config: PathBuf,
    cache: PathBuf,
    daemon: Daemon,
    /// How many times it was started again after a death.
    restarts: usize,
}

impl Workstation {
    fn start(name: String, config: PathBuf, cache: PathBuf) -> Workstation {
        let daemon = Daemon::start_virtual(&config, &[XIAOWANG], &[]);
        wait_catalogue(&mut daemon.client());
        Workstation {
            name,
            config,
            cache,
            daemon,
            restarts: 0,
        }
    }

    /// The same cache and configuration, with `env` (a crash plan, or nothing).
    fn restart_with(&mut self, env: &[(&str, &str)]) {
        self.daemon = Daemon::start_virtual(&self.config, &[XIAOWANG], env);
    }

    /// After a call went unanswered: the daemon must be dead (or dying); start it again.
    fn revive(&mut self, what: &str) {
        if self.daemon.wait_exit(Duration::from_secs(15)).is_none() {
            panic!(
                "{}: {what} went unanswered but the daemon is alive: {}",
                self.name,
                self.daemon.log_text()
            );
        }
        self.restarts += 1;
        self.restart_with(&[]);
    }

    /// One call as a cashier makes it: unanswered (the daemon died), start the workstation
    /// again and send the same call.
    fn call(&mut self, method: &str, params: &Value) -> Value {
        loop {
            match call_once(&self.daemon.socket, method, params.clone(), CALL_PATIENCE) {
                Some(response) => return response,
                None => self.revive(method),
            }
        }
    }

    /// A call that must succeed.
    fn result(&mut self, method: &str, params: &Value) -> Value {
        let response = self.call(method, params);
        assert!(
            response.get("error").is_none(),
            "{}: {method} {params}: {response}",
            self.name
        );
        response["result"].clone()
    }

    /// `settle.commit` / `settle.refund` under one request_id until it is final, as the
    /// protocol tells the cashier: 1016 / 1017 or a request in `retry`, `pending` or
    /// `unknown` is asked again with the same request_id.
    fn until_final(&mut self, method: &str, params: &Value) -> Value {
        let deadline = Instant::now() + REQUEST_PATIENCE;
        loop {
            let response = self.call(method, params);
            let state = response["result"]["state"].as_str().unwrap_or("");
            let code = response["error"]["code"].as_i64().unwrap_or(0);
            if matches!(state, "settled" | "refused") {
                return response["result"].clone();
            }
            assert!(
                matches!(state, "retry" | "pending" | "unknown") || matches!(code, 1016 | 1017),
                "{}: {method} {params}: {response}",
                self.name
            );
            assert!(
                Instant::now() < deadline,
                "{}: {method} {params} not final after {REQUEST_PATIENCE:?}: {response}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// What a counter's cashier was told: request_id → the final answer.
type Answers = Vec<(String, Value)>;

/// One counter's run: its script of settlements and refunds, with their faults.
fn counter(
    ws: &mut Workstation,
    sim: &Rig,
    mut chaos: Chaos,
    k: usize,
    done: &AtomicUsize,
) -> Answers {
    let mut answers = Answers::new();
    for n in 0..SETTLEMENTS {
        let certno = PERSONS[(k + n) % PERSONS.len()];
        let commit_fault = fault(&mut chaos, "2207");
        let refund = chaos.below(100) < REFUND_PERCENT;
        let refund_fault = fault(&mut chaos, "2208");
        let request_id = format!("c{k:02}-s{n}");
        let settled = disturbed(ws, sim, commit_fault, |ws| {
            let visit = ws.result(
                "visit.register",
                &json!({"certno": certno, "dept_code": "A03", "dept_name": "内科", "dr_name": "张医生"}),
            );
            let items =
                json!([{"code": CLASS_A, "name": "阿莫西林胶囊", "qty": "1", "price": "4.00"}]);
            let preview = ws.result(
                "settle.preview",
                &json!({"mdtrt_id": visit["mdtrt_id"], "items": items, "acct_used": false}),
            );
            let params = json!({"preview_id": preview["preview_id"], "request_id": request_id});
            ws.until_final("settle.commit", &params)
        });
        answers.push((request_id.clone(), settled.clone()));
        done.fetch_add(1, Ordering::Relaxed);
        if !(refund && settled["state"] == "settled") {
            continue;
        }
        let refund_id = format!("c{k:02}-r{n}");
        let params = json!({"setl_id": settled["setl_id"], "request_id": refund_id});
        let refunded = disturbed(ws, sim, refund_fault, |ws| {
            ws.until_final("settle.refund", &params)
        });
        answers.push((refund_id, refunded));
    }
    answers
}

/// Runs `step` under `fault`.
fn disturbed(
    ws: &mut Workstation,
    sim: &Rig,
    fault: Fault,
    step: impl FnOnce(&mut Workstation) -> Value,
) -> Value {
    match fault {
        Fault::None => step(ws),
        Fault::LostReply(infno) => {
            sim.sim
                .admin(json!({"action": "faults", "drop_after_processing": 1, "for_infno": infno}));
            step(ws)
        }
        Fault::Crash(point, infno) => {
            ws.daemon.terminate();
            ws.restart_with(&[("MEDCARD_CRASH_AT", &format!("{point}:{infno}"))]);
            let answer = step(ws);
            // A plan that has not fired yet (`after_send` dies a moment after the reply)
            // must not linger into the next step: the workstation goes on without one.
            if !ws.daemon.is_running() {
                ws.restarts += 1;
            }
            ws.daemon.terminate();
            ws.restart_with(&[]);
            answer
        }
        Fault::Kill(after) => {
            let pid = ws.daemon.pid() as i32;
            let killer = std::thread::spawn(move || {
                std::thread::sleep(after);
                // SAFETY: kill(2) on the daemon this counter started: a step under this
                // fault has no crash point, so the daemon dies of this signal only, and
                // it is reaped (`revive`, or below) only after the signal was sent.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            });
            let answer = step(ws);
            killer.join().expect("the killer thread");
            if ws.daemon.pid() as i32 == pid {
                // Killed after the last answer (the signal is sent; the death may not be
                // seen yet): the next step finds the workstation up again.
                ws.revive("the end of a step");
            }
            answer
        }
    }
}

/// A workstation's configuration: the rig's, its own cache file, `[hospital]` on node `k`.
fn workstation_config(rig: &Rig, db: &HospitalDb, k: usize) -> (String, PathBuf, PathBuf) {
    let name = format!("counter-{k:02}");
    let text = std::fs::read_to_string(&rig.config).expect("read the rig's config");
    let cache = rig.config.with_file_name(format!("{name}.sqlite"));
    let text = text.replace(
        &rig.config
            .with_file_name("cache.sqlite")
            .display()
            .to_string(),
        &cache.display().to_string(),
    );
    let text = format!("{text}{}", db.section(&name, k as u32));
    let config = rig.config.with_file_name(format!("{name}.toml"));
    std::fs::write(&config, text).expect("write the workstation's config");
    (name, config, cache)
}

#[test]
fn twenty_workstations_killed_and_cut_off_settle_everything_exactly_once() {
    let seed = seed();
    println!("hospital_workstations: seed {seed} (replay with MEDCARD_CHAOS_SEED={seed})");
    let replay = format!("seed {seed}; replay with MEDCARD_CHAOS_SEED={seed}");
    let mut db = HospitalDb::start("hospital-workstations");
    let rig = Rig::start("hospital-workstations", "");
    let started = Instant::now();
    let stations: Vec<Workstation> = std::thread::scope(|scope| {
        let starting: Vec<_> = (1..=COUNTERS)
            .map(|k| {
                let (name, config, cache) = workstation_config(&rig, &db, k);
                scope.spawn(move || Workstation::start(name, config, cache))
            })
            .collect();
        starting
            .into_iter()
            .map(|t| t.join().expect("a workstation started"))
            .collect()
    });
    println!(
        "{COUNTERS} workstations up in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let done = AtomicUsize::new(0);
    let go = Barrier::new(COUNTERS + 1);
    let (stations, answers): (Vec<Workstation>, Vec<Answers>) = std::thread::scope(|scope| {
        let threads: Vec<_> = stations
            .into_iter()
            .enumerate()
            .map(|(index, mut ws)| {
                let (rig, done, go) = (&rig, &done, &go);
                scope.spawn(move || {
                    go.wait();
                    let k = index + 1;
                    let answers = counter(&mut ws, rig, Chaos::for_counter(seed, k), k, done);
                    (ws, answers)
                })
            })
            .collect();
        go.wait();
        postgres_outage(&mut db, &done, &replay);
        threads
            .into_iter()
            .enumerate()
            .map(|(index, t)| {
                t.join()
                    .unwrap_or_else(|_| panic!("counter {} failed ({replay})", index + 1))
            })
            .unzip()
    });
    let restarts: usize = stations.iter().map(|ws| ws.restarts).sum();
    println!(
        "{} requests answered, {restarts} restarts after a death, in {:.1} s",
        answers.iter().map(Vec::len).sum::<usize>(),
        started.elapsed().as_secs_f64()
    );

    let mut stations = stations;
    for ws in &mut stations {
        wait_quiet_and_shipped(ws, &replay);
    }
    for (ws, answers) in stations.iter().zip(&answers) {
        assert_the_journal_holds_the_answers(ws, answers, &replay);
        assert_the_hospital_holds_the_journal(&db, ws, &replay);
    }
    assert_the_insurer_saw_each_msgid_once(&rig, &replay);
    assert_each_settlement_stands_once(&rig, &stations, &replay);
    assert_the_hospital_reconciles(&rig, &db, &stations[0].config);
    println!(
        "hospital_workstations: done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Stops PostgreSQL once a third of the settlements are done, for [`OUTAGE`], then starts it
/// again: the workstations keep settling meanwhile.
fn postgres_outage(db: &mut HospitalDb, done: &AtomicUsize, replay: &str) {
    let deadline = Instant::now() + REQUEST_PATIENCE;
    while done.load(Ordering::Relaxed) < COUNTERS * SETTLEMENTS / 3 {
        assert!(
            Instant::now() < deadline,
            "a third of the settlements not done within {REQUEST_PATIENCE:?} ({replay})"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    db.cluster.stop().expect("stop PostgreSQL");
    let stopped_at = done.load(Ordering::Relaxed);
    std::thread::sleep(OUTAGE);
    db.cluster.start().expect("start PostgreSQL again");
    println!(
        "PostgreSQL down for {OUTAGE:?}: {} settlements made meanwhile",
        done.load(Ordering::Relaxed) - stopped_at
    );
}

/// The journal's money-moving calls (2207, 2208, 2601) and requests still open (pending,
/// unknown; a request in retry): `infno:state:request_id` / `request_id:state` words, none
/// when all are resolved. (A registration whose 2201 answer died with the daemon stays a
/// PENDING 2201 entry: the resolver leaves those alone by design, docs/exactly-once.md —
/// nothing was charged under it.)
fn open_in_journal(cache: &Path) -> Vec<String> {
    let conn =
        rusqlite::Connection::open_with_flags(cache, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the journal read-only");
    let words = |sql: &str| -> Vec<String> {
        let mut stmt = conn.prepare(sql).expect(sql);
        stmt.query_map([], |r| r.get(0))
            .expect(sql)
            .collect::<Result<_, _>>()
            .expect(sql)
    };
    let mut open = words(
        "SELECT infno || ':' || state || ':' || request_id || ':' || COALESCE(err_msg, '') \
         FROM settle_journal WHERE state IN ('PENDING', 'UNKNOWN') \
         AND infno IN ('2207', '2208', '2601')",
    );
    open.extend(words(
        "SELECT request_id || ':' || state FROM settlements \
         WHERE state IN ('pending', 'unknown', 'retry')",
    ));
    open
}

/// Waits until the workstation's resolver has settled every open call and the shipper has
/// sent everything to the hospital.
fn wait_quiet_and_shipped(ws: &mut Workstation, replay: &str) {
    assert!(
        ws.daemon.is_running(),
        "{} is not running at the end ({replay}): {}",
        ws.name,
        ws.daemon.log_text()
    );
    let deadline = Instant::now() + QUIET_PATIENCE;
    let mut client: Client = ws.daemon.client();
    loop {
        let open = open_in_journal(&ws.cache);
        let info = hospital_info(&mut client);
        if open.is_empty() && info["state"] == "shipping" && info["pending_rows"] == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} not quiet after {QUIET_PATIENCE:?} ({replay}): open calls and requests \
             {open:?}, hospital {info}, log:\n{}",
            ws.name,
            ws.daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The journal says what the cashier was told: each final answer's state and setl_id (a
/// settlement refunded later reads `refunded`).
fn assert_the_journal_holds_the_answers(ws: &Workstation, answers: &Answers, replay: &str) {
    let journal: HashMap<String, (String, Option<String>)> = local_settlements(&ws.cache)
        .into_iter()
        .map(|(request_id, state, setl_id, _)| (request_id, (state, setl_id)))
        .collect();
    let refunded: HashSet<&str> = answers
        .iter()
        .filter(|(_, a)| a["kind"] == "refund" && a["state"] == "settled")
        .filter_map(|(_, a)| a["orig_setl_id"].as_str())
        .collect();
    for (request_id, answer) in answers {
        let (state, setl_id) = journal.get(request_id).unwrap_or_else(|| {
            panic!("{}: {request_id} is not in the journal ({replay})", ws.name)
        });
        let told = answer["state"].as_str().unwrap_or("");
        let expected = match answer["setl_id"].as_str() {
            Some(id) if answer["kind"] == "settle" && refunded.contains(id) => "refunded",
            _ => told,
        };
        assert_eq!(
            (state.as_str(), setl_id.as_deref()),
            (expected, answer["setl_id"].as_str()),
            "{}: {request_id} ({replay})",
            ws.name
        );
    }
}

/// PostgreSQL holds the workstation's journal exactly: its settlements and calls as the
/// SQLite journal has them, and `journal_log` numbered 1..=n without a gap or a repeat.
fn assert_the_hospital_holds_the_journal(db: &HospitalDb, ws: &Workstation, replay: &str) {
    assert_eq!(
        db.settlements(&ws.name),
        local_settlements(&ws.cache),
        "{}: hospital_settlements ≠ the journal ({replay})",
        ws.name
    );
    assert_eq!(
        db.calls(&ws.name),
        local_calls(&ws.cache),
        "{}: hospital_calls ≠ the journal ({replay})",
        ws.name
    );
    let seqs = db.log_seqs(&ws.name);
    let expected: Vec<i64> = (1..=seqs.len() as i64).collect();
    assert_eq!(
        seqs, expected,
        "{}: journal_log has gaps or duplicates ({replay})",
        ws.name
    );
}

/// The insurer's msg_log: no msgid received twice, none refused as a duplicate.
fn assert_the_insurer_saw_each_msgid_once(rig: &Rig, replay: &str) {
    let log = rig.msg_log();
    let duplicates: Vec<_> = log
        .iter()
        .filter(|(_, _, _, err_msg)| err_msg.as_deref().is_some_and(|m| m.contains("重复")))
        .collect();
    assert!(
        duplicates.is_empty(),
        "msgids refused as duplicates ({replay}): {duplicates:?}"
    );
    let mut seen = HashSet::new();
    let twice: Vec<&str> = log
        .iter()
        .map(|(msgid, ..)| msgid.as_str())
        .filter(|msgid| !seen.insert(*msgid))
        .collect();
    assert!(twice.is_empty(), "msgids sent twice ({replay}): {twice:?}");
    println!("the insurer received {} msgids, each once", log.len());
}

/// Every settle request stands at the insurer exactly as its journal says: a settled or
/// refunded one exactly once (its 2207s net of 2601 reversals), with the journal's setl_id,
/// refunded there exactly when it is refunded here; any other none.
fn assert_each_settlement_stands_once(rig: &Rig, stations: &[Workstation], replay: &str) {
    let books = rig.sim_books();
    let mut checked = 0;
    for ws in stations {
        for (request_id, kind, state, setl_id, batch) in settle_requests(&ws.cache) {
            if kind != "settle" {
                continue;
            }
            let standing: Vec<&(String, String, String)> = books
                .iter()
                .filter(|(_, chrg_bchno, status)| *chrg_bchno == batch && status != "reversed")
                .collect();
            let expected = match state.as_str() {
                "settled" => vec![(setl_id.clone(), "settled")],
                "refunded" => vec![(setl_id.clone(), "refunded")],
                _ => vec![],
            };
            let found: Vec<(Option<String>, &str)> = standing
                .iter()
                .map(|(id, _, status)| (Some(id.clone()), status.as_str()))
                .collect();
            assert_eq!(
                found, expected,
                "{}: {request_id} ({state}) at the insurer ({replay})",
                ws.name
            );
            checked += 1;
        }
    }
    println!("{checked} settle requests stand at the insurer exactly as journalled");
}

/// The journal's requests: (request_id, kind, state, setl_id, chrg_bchno).
type Request = (String, String, String, Option<String>, String);

fn settle_requests(cache: &Path) -> Vec<Request> {
    let conn =
        rusqlite::Connection::open_with_flags(cache, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the journal read-only");
    let mut stmt = conn
        .prepare(
            "SELECT request_id, kind, state, setl_id, COALESCE(chrg_bchno, '') FROM settlements",
        )
        .expect("the journal's settlements");
    stmt.query_map([], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })
    .expect("query")
    .collect::<Result<_, _>>()
    .expect("read")
}

/// `medcard reconcile --hospital` over the twenty journals is 对平 through 3201 alone. Then a
/// 单边 is planted on each side — one workstation's settlement reversed at the insurer behind
/// its journal's back (医药机构多), and a settlement a program outside medcard made with the
/// institution's code (中心多) — and the next run finds both through the 3202 files: the first
/// attributed to its workstation and request, the other to no workstation.
fn assert_the_hospital_reconciles(rig: &Rig, db: &HospitalDb, config: &Path) {
    let (code, report) = reconcile_hospital(config);
    assert_eq!(code, 0, "reconcile --hospital:\n{report:#}");
    assert_eq!(
        report["differences"].as_array().map(Vec::len),
        Some(0),
        "{report:#}"
    );
    assert_eq!(rig.sim.requests("3202"), 0, "a balanced day needs no 3202");

    let planted = db
        .client()
        .query_one(
            "SELECT s.workstation, s.request_id, s.setl_id, s.psn_no, c.msgid \
             FROM hospital_settlements s JOIN hospital_calls c \
               ON c.workstation = s.workstation AND c.request_id = s.request_id \
             WHERE s.kind = 'settle' AND s.state = 'settled' \
               AND c.infno = '2207' AND c.state = 'SUCCESS' \
             ORDER BY s.workstation DESC, s.request_id LIMIT 1",
            &[],
        )
        .expect("a standing settlement in the hospital database");
    let (workstation, request_id, setl_id, psn_no, msgid): (
        String,
        String,
        String,
        String,
        String,
    ) = (
        planted.get(0),
        planted.get(1),
        planted.get(2),
        planted.get(3),
        planted.get(4),
    );
    let mut outside = same_institution(&rig.sim);
    let reversal = ReversalIn {
        psn_no,
        omsgid: msgid.clone(),
        oinfno: tx::SETTLE.into(),
    };
    call(&mut outside, tx::REVERSAL, data_input(&reversal));
    let (nobodys, nobodys_msgid) = other_counter_settles(&rig.sim, "8.00");

    let (code, report) = reconcile_hospital(config);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(
        rig.sim.requests("3202"),
        1,
        "one 3202 for the unbalanced day: {report:#}"
    );
    let found = differences(&report);
    assert_eq!(found.len(), 2, "{found:#?}");
    let of_kind = |kind: &str| the_one(&found, kind);
    let reversed = of_kind("hospital_only");
    assert_eq!(
        reversed["workstation"],
        workstation.as_str(),
        "{reversed:#}"
    );
    assert_eq!(reversed["request_id"], request_id.as_str(), "{reversed:#}");
    assert_eq!(reversed["setl_id"], setl_id.as_str(), "{reversed:#}");
    assert_eq!(reversed["msgid"], msgid.as_str(), "{reversed:#}");
    let made_outside = of_kind("insurer_only");
    assert_eq!(
        made_outside["setl_id"],
        nobodys.as_str(),
        "{made_outside:#}"
    );
    assert_eq!(
        made_outside["msgid"],
        nobodys_msgid.as_str(),
        "{made_outside:#}"
    );
    assert!(made_outside["workstation"].is_null(), "{made_outside:#}");
}

/// `medcard reconcile --hospital --format json --config config`: (exit status, report).
fn reconcile_hospital(config: &Path) -> (i32, Value) {
    let out = std::process::Command::new(common::medcard_bin())
        .args(["reconcile", "--hospital", "--format", "json", "--config"])
        .arg(config)
        .output()
        .expect("run medcard reconcile --hospital");
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "reconcile --hospital: {e}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), report)
}
