//! `medcard bench hospital`: many counters of one hospital against one insurer simulator and
//! one PostgreSQL (docs/hospital.md, issue 13), all in this process.
//!
//! For each number of counters N: a throwaway PostgreSQL cluster (`sim::postgres`), the
//! insurer simulator on loopback, and N daemons — each with its own cache directory, socket
//! and journal, `[hospital]` node k of `node_count` ≥ N, shipping to the cluster. One client
//! per counter registers its visits by ID number and previews them, then commits them one
//! after another (the commit phase timed alone, as `bench settle` does, and the whole
//! settlement). Once every shipper has caught up: the replication lag of this run's journal
//! rows (`journal_log.shipped_at − journalled_at`: from the journal write in SQLite to the
//! PostgreSQL transaction that shipped it; `shipped_at` is that transaction's `now()`),
//! p50 and p99, and the msgids the simulator refused as duplicates or received twice.
//!
//! Then a day of `--day` settlements for hospital-wide reconciliation, planted on both sides
//! with the same setl_ids, msgids and amounts: in the simulator's books
//! (`books::plant_settlements`) and in PostgreSQL's `journal_rows` as the shipper writes
//! them (visits, settlements, their 2207 calls; one `INSERT … SELECT generate_series` each).
//! The time is that of `medcard reconcile --hospital`'s own path: reading the day from
//! PostgreSQL (`hospital::books::institution_books`: the day's settlements and calls, two
//! streamed queries) and `settle::reconcile::reconcile` on them (3201 per insutype and
//! clearing type), and again
//! with one settlement planted in PostgreSQL only, which takes the 3202 file round trip over
//! the whole day. Figures are printed beside the issue's targets; a miss is reported, not an
//! error.

use super::{Summary, ms};
use crate::cli::demo::counter::{Stopper, start_sim};
use medcard::clock::DateTime;
use medcard::hospital::books::institution_books;
use medcard::insurer::settlement::Setlinfo;
use medcard::insurer::{InsurerClient, InsurerConfig};
use medcard::reader::ReaderBackend;
use medcard::serve::client::Client;
use medcard::serve::config::Config;
use medcard::serve::{Daemon, RunningDaemon};
use medcard::settle::reconcile::{DetailSource, reconcile};
use medcard::sim::card::SharedVirtualReaders;
use medcard::sim::insurer::books::{self, Settlement};
use medcard::sim::postgres::PgCluster;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The issue's targets.
const TARGET_SETTLEMENTS_PER_SECOND: f64 = 500.0;
const TARGET_LAG_P99: Duration = Duration::from_secs(1);
const TARGET_RECONCILE: Duration = Duration::from_secs(10);
/// The counters the settlements-per-second target is set for.
const TARGET_COUNTERS: usize = 50;
/// The hospital's region in the simulator's fixtures (重庆): 3201's settlement agency.
const REGION: &str = "500000";
/// How long the shippers may take to catch up after the run.
const CATCH_UP: Duration = Duration::from_secs(120);
/// Workstations the planted day is spread over.
const DAY_WORKSTATIONS: usize = 50;

/// What to measure.
pub struct Plan {
    /// Numbers of counters, one level each.
    pub counters: Vec<usize>,
    /// Settlements each counter makes.
    pub per_counter: usize,
    /// Settlements of the planted day.
    pub day: usize,
}

pub fn run(plan: &Plan) -> Result<(), String> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    println!(
        "medcard bench hospital: {:?} counters × {} settlements, one insurer simulator, one PostgreSQL",
        plan.counters, plan.per_counter
    );
    for &n in &plan.counters {
        let figures = level(&runtime, n, plan.per_counter)?;
        figures.print(n);
    }
    if plan.day > 0 {
        day(&runtime, plan.day)?;
    }
    Ok(())
}

/// A directory of this process's, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Result<TempDir, String> {
        let path = std::env::temp_dir().join(format!(
            "medcard-bench-hospital-{tag}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The hospital of one level: its database, its insurer, its counters.
struct Hospital {
    pg: PgCluster,
    sim: Option<Stopper<std::io::Result<()>>>,
    insurer_url: String,
    sim_db: PathBuf,
    dir: TempDir,
}

impl Hospital {
    fn start(runtime: &tokio::runtime::Runtime, tag: &str) -> Result<Hospital, String> {
        let dir = TempDir::new(tag)?;
        let pg = PgCluster::new().map_err(|e| e.to_string())?;
        pg.write_password_file(&dir.0.join("hospital.pw"))
            .map_err(|e| format!("the password file: {e}"))?;
        let sim_db = dir.0.join("insurer-sim.sqlite");
        let (sim, addr) = runtime.block_on(start_sim(&sim_db))?;
        Ok(Hospital {
            pg,
            sim: Some(sim),
            insurer_url: format!("http://{addr}/fsi/api/callService"),
            sim_db,
            dir,
        })
    }

    /// Counter `k`'s configuration: its own directory, node `k` of `node_count`.
    fn counter_config(&self, k: usize, node_count: u16) -> Result<Config, String> {
        let home = self.dir.0.join(format!("counter-{k:02}"));
        std::fs::create_dir_all(&home).map_err(|e| e.to_string())?;
        let mut config = Config::default();
        config.socket.path = home.join("medcard.sock");
        config.socket.mode = "0600".into();
        config.insurer.url = self.insurer_url.clone();
        config.insurer.mdtrtarea_admvs = REGION.into();
        config.cache.path = home.join("cache.sqlite");
        config.hospital.node = Some(u16::try_from(k).map_err(|e| e.to_string())?);
        config.hospital.node_count = node_count;
        config.hospital.workstation = format!("counter-{k:02}");
        config.hospital.database = self.pg.connection_string();
        config.hospital.password_file = self.dir.0.join("hospital.pw");
        Ok(config)
    }

    fn stop(&mut self, runtime: &tokio::runtime::Runtime) {
        if let Some(sim) = self.sim.take() {
            runtime.block_on(sim.stop());
        }
    }
}

/// A running counter: its daemon and socket.
struct Counter {
    daemon: RunningDaemon,
    socket: PathBuf,
}

fn start_counters(
    runtime: &tokio::runtime::Runtime,
    hospital: &Hospital,
    n: usize,
) -> Result<Vec<Counter>, String> {
    let node_count = u16::try_from(n.max(100)).map_err(|e| e.to_string())?;
    let mut counters = Vec::with_capacity(n);
    for k in 0..n {
        let config = hospital.counter_config(k, node_count)?;
        let socket = config.socket.path.clone();
        let readers = SharedVirtualReaders::new();
        let backends = move || Box::new(readers.clone()) as Box<dyn ReaderBackend + Send>;
        let daemon = runtime
            .block_on(Daemon::start(config, backends, None))
            .map_err(|e| format!("counter {k}: {e}"))?;
        if daemon.services().settler.is_none() {
            return Err(format!("counter {k}: settlement could not be set up"));
        }
        let daemon = runtime.block_on(async { daemon.spawn() });
        counters.push(Counter { daemon, socket });
    }
    Ok(counters)
}

/// Polls `system.info` (or `sync.status`) of every counter until `ready` holds for each.
fn wait_all(
    counters: &[Counter],
    method: &str,
    limit: Duration,
    what: &str,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    for (k, counter) in counters.iter().enumerate() {
        let mut client = Client::connect(&counter.socket).map_err(|e| e.to_string())?;
        loop {
            let answer = client.call(method, json!({})).map_err(|e| e.to_string())?;
            if ready(&answer) {
                break;
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "counter {k}: {what} not within {limit:?}: {answer}"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}

/// What one level measured.
struct Figures {
    settlements: usize,
    prepare: Duration,
    commit: Duration,
    latencies: Vec<Duration>,
    lag: Option<(Duration, Duration, i64)>,
    refused_duplicates: i64,
    msgids_twice: i64,
}

fn level(
    runtime: &tokio::runtime::Runtime,
    n: usize,
    per_counter: usize,
) -> Result<Figures, String> {
    let mut hospital = Hospital::start(runtime, &format!("n{n}"))?;
    let started = Instant::now();
    let counters = start_counters(runtime, &hospital, n)?;
    wait_all(
        &counters,
        "sync.status",
        Duration::from_secs(60),
        "the first sync",
        |s| s["versions"]["catalogue"].as_u64().unwrap_or(0) > 0,
    )?;
    println!(
        "\n{n} counters started and synced in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let measured = settle_everywhere(&counters, per_counter);
    let caught_up = wait_all(
        &counters,
        "system.info",
        CATCH_UP,
        "the shipper caught up",
        |i| i["hospital"]["state"] == "shipping" && i["hospital"]["pending_rows"] == 0,
    );
    for counter in counters {
        runtime.block_on(counter.daemon.stop());
    }
    let (prepare, commit, latencies) = measured?;
    caught_up?;
    let lag = replication_lag(&hospital.pg)?;
    hospital.stop(runtime);
    let (refused_duplicates, msgids_twice) = duplicate_msgids(&hospital.sim_db)?;
    Ok(Figures {
        settlements: latencies.len(),
        prepare,
        commit,
        latencies,
        lag,
        refused_duplicates,
        msgids_twice,
    })
}

/// Every counter's client registers and previews its visits, then (timed alone) commits them.
fn settle_everywhere(
    counters: &[Counter],
    per_counter: usize,
) -> Result<(Duration, Duration, Vec<Duration>), String> {
    let started = Instant::now();
    let prepared = each_counter(counters, |client, k| {
        super::settle::prepare(client, k, per_counter, "1.00")
    })?;
    let prepare = started.elapsed();
    let committing = Instant::now();
    let latencies = each_counter(counters, |client, k| {
        super::settle::commit(client, k, &prepared[k])
    })?
    .concat();
    Ok((prepare, committing.elapsed(), latencies))
}

/// `work` for every counter at once, a thread and a connection each; results in order.
fn each_counter<T: Send>(
    counters: &[Counter],
    work: impl Fn(Client, usize) -> Result<T, String> + Sync,
) -> Result<Vec<T>, String> {
    let clients = counters
        .iter()
        .map(|c| Client::connect(&c.socket).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let work = &work;
    std::thread::scope(|scope| {
        let threads: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(k, client)| scope.spawn(move || work(client, k)))
            .collect();
        threads
            .into_iter()
            .map(|t| {
                t.join()
                    .map_err(|_| "a counter's client panicked".to_owned())?
            })
            .collect()
    })
}

/// p50 and p99 of `shipped_at − journalled_at` over every journal row, and how many rows.
fn replication_lag(pg: &PgCluster) -> Result<Option<(Duration, Duration, i64)>, String> {
    let mut client = pg.superuser().map_err(|e| e.to_string())?;
    let row = client
        .query_one(
            "SELECT COUNT(*), \
             percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM shipped_at - journalled_at)), \
             percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM shipped_at - journalled_at)) \
             FROM journal_log",
            &[],
        )
        .map_err(|e| format!("journal_log: {e}"))?;
    let rows: i64 = row.get(0);
    let seconds = |i: usize| -> Option<Duration> {
        let s: Option<f64> = row.get(i);
        s.map(|s| Duration::from_secs_f64(s.max(0.0)))
    };
    Ok(match (seconds(1), seconds(2)) {
        (Some(p50), Some(p99)) if rows > 0 => Some((p50, p99, rows)),
        _ => None,
    })
}

/// From the simulator's msg_log: requests refused as a duplicate msgid, msgids received
/// more than once.
fn duplicate_msgids(sim_db: &Path) -> Result<(i64, i64), String> {
    let conn =
        rusqlite::Connection::open_with_flags(sim_db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| format!("the simulator's database: {e}"))?;
    let count = |sql: &str| -> Result<i64, String> {
        conn.query_row(sql, [], |r| r.get(0))
            .map_err(|e| format!("msg_log: {e}"))
    };
    Ok((
        count("SELECT COUNT(*) FROM msg_log WHERE err_msg LIKE '%报文ID%重复%'")?,
        count(
            "SELECT COUNT(*) FROM (SELECT msgid FROM msg_log GROUP BY msgid HAVING COUNT(*) > 1)",
        )?,
    ))
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

impl Figures {
    fn print(&self, n: usize) {
        let per_second = |d: Duration| self.settlements as f64 / d.as_secs_f64().max(1e-9);
        let commits = per_second(self.commit);
        let whole = per_second(self.prepare + self.commit);
        println!(
            "register + preview: {} in {:.2} s ({:.0}/s)",
            self.settlements,
            self.prepare.as_secs_f64(),
            per_second(self.prepare)
        );
        let target = if n >= TARGET_COUNTERS {
            format!(
                "target ≥ {TARGET_SETTLEMENTS_PER_SECOND:.0}/s at {TARGET_COUNTERS} counters: {}",
                met(commits >= TARGET_SETTLEMENTS_PER_SECOND)
            )
        } else {
            format!("(the target is set for {TARGET_COUNTERS} counters)")
        };
        if !self.latencies.is_empty() {
            let summary = Summary::of(self.latencies.clone());
            println!(
                "settle.commit: {} in {:.2} s → {commits:.0} settlements/s aggregate, {target}; latency p50 {} ms, p99 {} ms",
                self.settlements,
                self.commit.as_secs_f64(),
                ms(summary.median),
                ms(summary.p99)
            );
        }
        println!(
            "whole settlements (register + preview + commit: 2201, 2204, 2206, 2207): {whole:.0}/s"
        );
        match self.lag {
            Some((p50, p99, rows)) => println!(
                "replication lag (journal write → PostgreSQL), {rows} rows: p50 {} ms, p99 {} ms; target p99 ≤ {} ms: {}",
                ms(p50),
                ms(p99),
                TARGET_LAG_P99.as_millis(),
                met(p99 <= TARGET_LAG_P99)
            ),
            None => println!("replication lag: no rows shipped"),
        }
        println!(
            "duplicate msgids: {} refused as duplicates, {} received twice; target 0: {}",
            self.refused_duplicates,
            self.msgids_twice,
            met(self.refused_duplicates == 0 && self.msgids_twice == 0)
        );
    }
}

/// One planted settlement: its number `n` names everything, on both sides alike.
struct Planted {
    setl_id: String,
    mdtrt_id: String,
    msgid: String,
    chrg_bchno: String,
    psn_no: String,
    medfee: String,
}

impl Planted {
    fn new(n: usize, fixmedins_code: &str, day: &str) -> Planted {
        let day8 = day.replace('-', "");
        Planted {
            setl_id: format!("S{day8}{n:010}"),
            mdtrt_id: format!("M{day8}{n:010}"),
            // fixmedins_code + yyyyMMddHHmmss + 4 digits: 10,000 a second from 00:00:00.
            msgid: format!(
                "{fixmedins_code}{day8}{:02}{:02}{:02}{:04}",
                n / 10_000 / 3600,
                n / 10_000 / 60 % 60,
                n / 10_000 % 60,
                n % 10_000
            ),
            chrg_bchno: format!("B{}{n:09}", &day8[2..]),
            psn_no: format!("5000{n:016}"),
            medfee: format!("{}.{:02}", 1 + n % 97, n % 100),
        }
    }

    /// The insurer's setlinfo: a cash settlement below the deductible (the fund and the
    /// account pay nothing; the identities of insurer-api.md §2.6 hold).
    fn setlinfo(&self, day: &str) -> serde_json::Value {
        let m = &self.medfee;
        json!({
            "mdtrt_id": self.mdtrt_id, "setl_id": self.setl_id, "psn_no": self.psn_no,
            "psn_name": "", "psn_cert_type": "01", "certno": "", "insutype": "310",
            "psn_type": "11", "med_type": "11", "setl_time": format!("{day} 09:00:00"),
            "medfee_sumamt": m, "fulamt_ownpay_amt": "0.00", "overlmt_selfpay": "0.00",
            "preselfpay_amt": "0.00", "inscp_scp_amt": m, "act_pay_dedc": m,
            "hifp_pay": "0.00", "pool_prop_selfpay": "0", "cvlserv_pay": "0.00",
            "hifes_pay": "0.00", "hifmi_pay": "0.00", "hifob_pay": "0.00", "maf_pay": "0.00",
            "oth_pay": "0.00", "fund_pay_sumamt": "0.00", "psn_part_amt": m,
            "acct_pay": "0.00", "acct_mulaid_pay": "0.00", "psn_cash_pay": m,
            "hosp_part_amt": "0.00", "balc": "0.00", "medins_setl_id": self.msgid,
            "clr_optins": REGION, "clr_way": "01", "clr_type": "11",
        })
    }

    fn settlement(&self, day: &str) -> Result<Settlement, String> {
        let setlinfo: Setlinfo = serde_json::from_value(self.setlinfo(day))
            .map_err(|e| format!("a planted setlinfo: {e}"))?;
        Ok(Settlement {
            setl_id: self.setl_id.clone(),
            msgid: self.msgid.clone(),
            mdtrt_id: self.mdtrt_id.clone(),
            chrg_bchno: self.chrg_bchno.clone(),
            psn_no: self.psn_no.clone(),
            insutype: "310".into(),
            setl_date: day.to_owned(),
            setlinfo,
            setldetail: Vec::new(),
            status: "settled".into(),
            refund_setl_id: None,
            refund_msgid: None,
        })
    }
}

/// The planted day's workstations: counter-00 … counter-(W−1), node w.
const PLANT_WORKSTATIONS_SQL: &str = "\
INSERT INTO workstations (workstation, node, node_count, fixmedins_code, journal_id) \
SELECT format('counter-%s', lpad(w::text, 2, '0')), w, 100, $1::text, w \
FROM generate_series(0, $2::bigint - 1) w";

/// The day's settlements in PostgreSQL as the shipper writes them: for planted settlement n
/// (the same numbers as [`Planted::new`]), workstation counter-(n mod W), its visit, its
/// request `day-n` and its 2207 call.
const PLANT_ROWS_SQL: &str = r#"
INSERT INTO journal_rows (workstation, tbl, key, seq, row)
SELECT format('counter-%s', lpad((n % $5::bigint)::text, 2, '0')), t.tbl, t.key, 3 * n + t.o, t.row
FROM generate_series($3::bigint, $4::bigint) n,
LATERAL (SELECT $2::text AS day, replace($2::text, '-', '') AS day8,
                format('%s.%s', 1 + n % 97, lpad((n % 100)::text, 2, '0')) AS medfee) d,
LATERAL (SELECT 'S' || d.day8 || lpad(n::text, 10, '0') AS setl_id,
                'M' || d.day8 || lpad(n::text, 10, '0') AS mdtrt_id,
                $1::text || d.day8 || lpad((n / 10000 / 3600)::text, 2, '0')
                   || lpad((n / 10000 / 60 % 60)::text, 2, '0')
                   || lpad((n / 10000 % 60)::text, 2, '0') || lpad((n % 10000)::text, 4, '0') AS msgid,
                'B' || substr(d.day8, 3) || lpad(n::text, 9, '0') AS chrg_bchno,
                '5000' || lpad(n::text, 16, '0') AS psn_no) i,
LATERAL (VALUES
  (0, 'settle_visits', i.mdtrt_id, jsonb_build_object(
     'mdtrt_id', i.mdtrt_id, 'psn_no', i.psn_no, 'insutype', '310', 'med_type', '11',
     'state', 'registered')),
  (1, 'settlements', 'day-' || n, jsonb_build_object(
     'request_id', 'day-' || n, 'kind', 'settle', 'mdtrt_id', i.mdtrt_id,
     'chrg_bchno', i.chrg_bchno, 'psn_no', i.psn_no, 'insuplc_admdvs', '500000',
     'state', 'settled', 'setl_id', i.setl_id, 'setl_date', d.day,
     'setlinfo', jsonb_build_object(
        'mdtrt_id', i.mdtrt_id, 'setl_id', i.setl_id, 'psn_no', i.psn_no, 'insutype', '310',
        'med_type', '11', 'clr_type', '11', 'medfee_sumamt', d.medfee,
        'inscp_scp_amt', d.medfee, 'act_pay_dedc', d.medfee, 'psn_part_amt', d.medfee,
        'psn_cash_pay', d.medfee, 'fund_pay_sumamt', '0.00', 'acct_pay', '0.00',
        'acct_mulaid_pay', '0.00', 'hifp_pay', '0.00', 'medins_setl_id', i.msgid))),
  (2, 'settle_journal', i.msgid, jsonb_build_object(
     'msgid', i.msgid, 'infno', '2207', 'request_id', 'day-' || n, 'state', 'SUCCESS',
     'psn_no', i.psn_no, 'mdtrt_id', i.mdtrt_id,
     'created_at', extract(epoch FROM now())::bigint,
     'updated_at', extract(epoch FROM now())::bigint))
) AS t(o, tbl, key, row)
"#;

fn day(runtime: &tokio::runtime::Runtime, count: usize) -> Result<(), String> {
    let mut hospital = Hospital::start(runtime, "day")?;
    let today = DateTime::now().date();
    let link_config = InsurerConfig {
        url: hospital.insurer_url.clone(),
        timeout: Duration::from_secs(120),
        ..InsurerConfig::default()
    };
    let code = link_config.fixmedins_code.clone();
    println!(
        "\nA day of {count} settlements over {DAY_WORKSTATIONS} workstations for hospital-wide reconciliation"
    );
    let planting = Instant::now();
    plant_insurer(&hospital.sim_db, &code, &today, count)?;
    let mut pg = hospital.pg.superuser().map_err(|e| e.to_string())?;
    medcard::hospital::schema::migrate(&mut pg).map_err(|e| e.to_string())?;
    let last = i64::try_from(count).map_err(|e| e.to_string())?;
    plant_hospital(&mut pg, &code, &today, (1, last), true)?;
    println!(
        "planted on both sides in {:.1} s",
        planting.elapsed().as_secs_f64()
    );
    let mut link = InsurerClient::new(link_config);
    let balanced = timed_reconcile(&mut pg, &mut link, &today)?;
    println!(
        "reconcile ({count} settlements, balanced: 3201 only): {:.2} s (the day read from PostgreSQL in {:.2} s), {}; target ≤ {} s: {}",
        balanced.total.as_secs_f64(),
        balanced.read.as_secs_f64(),
        balanced.outcome,
        TARGET_RECONCILE.as_secs(),
        met(balanced.total <= TARGET_RECONCILE)
    );
    // One settlement the hospital holds and the insurer does not: 3201 does not balance,
    // and the 3202 file round trip compares the whole day.
    plant_hospital(&mut pg, &code, &today, (last + 1, last + 1), false)?;
    let one_off = timed_reconcile(&mut pg, &mut link, &today)?;
    println!(
        "reconcile ({} settlements, one planted in PostgreSQL only: 3201 + 3202 files): {:.2} s, {}; target ≤ {} s: {}",
        count + 1,
        one_off.total.as_secs_f64(),
        one_off.outcome,
        TARGET_RECONCILE.as_secs(),
        met(one_off.total <= TARGET_RECONCILE)
    );
    println!(
        "(timed: `medcard reconcile --hospital`'s own path — hospital::books::institution_books, then settle::reconcile with Scope::Institution)"
    );
    drop(pg);
    hospital.stop(runtime);
    Ok(())
}

fn plant_insurer(sim_db: &Path, code: &str, day: &str, count: usize) -> Result<(), String> {
    let settlements = (1..=count)
        .map(|n| Planted::new(n, code, day).settlement(day))
        .collect::<Result<Vec<_>, _>>()?;
    let mut conn = rusqlite::Connection::open(sim_db).map_err(|e| e.to_string())?;
    conn.busy_timeout(Duration::from_secs(30))
        .map_err(|e| e.to_string())?;
    books::plant_settlements(&mut conn, &settlements).map_err(|e| e.message())?;
    Ok(())
}

/// Plants settlements `first..=last` in PostgreSQL (and the `workstations` rows, when
/// `with_workstations`).
fn plant_hospital(
    pg: &mut postgres::Client,
    code: &str,
    day: &str,
    (first, last): (i64, i64),
    with_workstations: bool,
) -> Result<(), String> {
    let workstations = i64::try_from(DAY_WORKSTATIONS).map_err(|e| e.to_string())?;
    let mut tx = pg.transaction().map_err(|e| e.to_string())?;
    if with_workstations {
        tx.execute(PLANT_WORKSTATIONS_SQL, &[&code, &workstations])
            .map_err(|e| format!("planting workstations: {e}"))?;
    }
    tx.execute(PLANT_ROWS_SQL, &[&code, &day, &first, &last, &workstations])
        .map_err(|e| format!("planting journal_rows: {e}"))?;
    tx.commit().map_err(|e| e.to_string())?;
    // Statistics, as autovacuum would gather them after a day of shipping.
    pg.batch_execute("ANALYZE journal_rows")
        .map_err(|e| format!("ANALYZE journal_rows: {e}"))
}

struct Timed {
    total: Duration,
    read: Duration,
    outcome: String,
}

fn timed_reconcile(
    pg: &mut postgres::Client,
    link: &mut InsurerClient,
    day: &str,
) -> Result<Timed, String> {
    let started = Instant::now();
    let books = institution_books(pg, day).map_err(|e| e.to_string())?;
    let read = started.elapsed();
    let report =
        reconcile(&books, link, day, REGION, DetailSource::Platform).map_err(|e| e.to_string())?;
    let total = started.elapsed();
    let outcome = if report.is_clean() {
        "对平".to_owned()
    } else {
        format!("不平: {} differences", report.differences.len())
    };
    Ok(Timed {
        total,
        read,
        outcome,
    })
}
