//! `medcard bench memory`: the daemon's memory under pipelined maximum-size legal requests.
//! A `medcard insurer-sim` child and a `medcard serve` child (its memory is the daemon's
//! alone) on a configuration in a temporary directory; each client registers a visit (by ID
//! number) and then writes `settle.preview` requests of `--lines` lines (the default
//! `settle.max_bill_lines`) one after another without waiting for the answers, for
//! `--seconds`; then it reads the answers still due and closes. The daemon's VmRSS is
//! sampled throughout: printed are the baseline (idle, visits registered), the peak, and the
//! RSS `--idle-wait` seconds after the burst, with the targets (peak ≤ 100 MB, idle-after ≤
//! 2 × baseline; a miss is reported, not an error).

use super::cache::SimChild;
use super::serve::Daemon;
use super::settle::PERSONS;
use medcard::serve::client::Client;
use medcard::settle::service::DEFAULT_MAX_BILL_LINES;
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// The targets.
const TARGET_PEAK_MB: f64 = 100.0;
const TARGET_IDLE_RATIO: f64 = 2.0;
/// 阿莫西林胶囊, 甲类 in the simulator's catalogue.
const CLASS_A_ITEM: &str = "XJ01CAA040A001010100001";
/// The longest wait for the answers still due after the burst.
const DRAIN_LIMIT: Duration = Duration::from_secs(300);

/// What to measure.
pub struct Plan {
    pub seconds: f64,
    pub clients: usize,
    pub lines: usize,
    pub idle_wait: f64,
}

/// What one client saw.
#[derive(Default)]
struct Tally {
    sent: usize,
    answered: usize,
    errors: Vec<i64>,
}

/// The daemon's VmRSS over the run, MB.
struct Figures {
    baseline: f64,
    peak: f64,
    idle_after: f64,
    tally: Tally,
    burst: Duration,
}

pub fn run(plan: &Plan) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("medcard-bench-memory-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let outcome = bench(plan, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    print(plan, &outcome?);
    Ok(())
}

fn bench(plan: &Plan, dir: &Path) -> Result<Figures, String> {
    let sim = SimChild::start(&dir.join("insurer-sim.sqlite"))?;
    let socket = dir.join("medcard.sock");
    let config = dir.join("medcard.toml");
    let text = format!(
        "[socket]\nmax_connections = 64\n\n[insurer]\nurl = \"http://{}/fsi/api/callService\"\n\
         mdtrtarea_admvs = \"500000\"\n\n[cache]\npath = {:?}\n\n[settle]\nlinks = {}\n",
        sim.addr,
        dir.join("cache.sqlite").display().to_string(),
        plan.clients.max(1)
    );
    std::fs::write(&config, text).map_err(|e| format!("cannot write {}: {e}", config.display()))?;
    let mut daemon = Daemon::spawn(&[
        "--config".as_ref(),
        config.as_os_str(),
        "--socket".as_ref(),
        socket.as_os_str(),
        "--virtual".as_ref(),
        "xiaowang".as_ref(),
    ])?;
    let measured = measure(plan, &socket, &daemon);
    let _ = daemon.stop();
    drop(sim);
    measured
}

fn measure(plan: &Plan, socket: &Path, daemon: &Daemon) -> Result<Figures, String> {
    let mut client = ready(socket, daemon)?;
    let visits = (0..plan.clients)
        .map(|n| register(&mut client, PERSONS[n % PERSONS.len()]))
        .collect::<Result<Vec<_>, _>>()?;
    drop(client);
    std::thread::sleep(Duration::from_secs(1));
    let pid = daemon.pid().to_string();
    let baseline = rss(&pid)?;
    println!(
        "medcard bench memory: {} clients pipelining settle.preview of {} lines for {:.0} s; \
         daemon pid {pid}, RSS {baseline:.1} MB at rest",
        plan.clients, plan.lines, plan.seconds
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = sample_peak(pid.clone(), sampling.clone());
    let started = Instant::now();
    let tally = runtime.block_on(burst(plan, socket, &visits));
    let burst = started.elapsed();
    sampling.store(false, Ordering::Relaxed);
    let peak = sampler
        .join()
        .map_err(|_| "the sampler panicked".to_owned())?;
    std::thread::sleep(Duration::from_secs_f64(plan.idle_wait));
    let (idle_after, hwm) = super::memory_mb(&pid)?;
    Ok(Figures {
        baseline,
        peak: peak.max(hwm),
        idle_after,
        tally: tally?,
        burst,
    })
}

/// A client once the daemon answers, its settlement is on and the catalogue is synced.
fn ready(socket: &Path, daemon: &Daemon) -> Result<Client, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut client) = Client::connect(socket)
            && client.set_timeout(Some(Duration::from_secs(60))).is_ok()
            && let Ok(status) = client.call("sync.status", json!({}))
            && status["versions"]["catalogue"].as_u64().unwrap_or(0) > 0
        {
            return Ok(client);
        }
        if let Some(status) = daemon.exited() {
            return Err(format!("medcard serve exited before serving: {status}"));
        }
        if Instant::now() >= deadline {
            return Err("medcard serve did not sync the catalogue within 30 s".to_owned());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn register(client: &mut Client, certno: &str) -> Result<String, String> {
    let visit = client
        .call(
            "visit.register",
            json!({"certno": certno, "dept_code": "A03", "dept_name": "内科", "dr_name": "张医生"}),
        )
        .map_err(|e| format!("visit.register: {e}"))?;
    visit["mdtrt_id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("visit.register answered no mdtrt_id: {visit}"))
}

/// The largest VmRSS seen every 50 ms until `sampling` is cleared.
fn sample_peak(pid: String, sampling: Arc<AtomicBool>) -> std::thread::JoinHandle<f64> {
    std::thread::spawn(move || {
        let mut peak = 0.0f64;
        while sampling.load(Ordering::Relaxed) {
            if let Ok(now) = rss(&pid) {
                peak = peak.max(now);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        peak
    })
}

fn rss(pid: &str) -> Result<f64, String> {
    super::memory_mb(pid).map(|(rss, _)| rss)
}

/// Every client at once; their tallies added up.
async fn burst(plan: &Plan, socket: &Path, visits: &[String]) -> Result<Tally, String> {
    let until = tokio::time::Instant::now() + Duration::from_secs_f64(plan.seconds);
    let tasks: Vec<_> = visits
        .iter()
        .map(|mdtrt_id| {
            let line = preview_line(mdtrt_id, plan.lines);
            let socket = socket.to_owned();
            tokio::spawn(async move { pipeline(&socket, line, until).await })
        })
        .collect();
    let mut total = Tally::default();
    for task in tasks {
        let tally = task.await.map_err(|e| format!("a client failed: {e}"))??;
        total.sent += tally.sent;
        total.answered += tally.answered;
        total.errors.extend(tally.errors);
    }
    Ok(total)
}

/// One settle.preview request line of `lines` lines of one cent.
fn preview_line(mdtrt_id: &str, lines: usize) -> Arc<Vec<u8>> {
    let item = json!({"code": CLASS_A_ITEM, "name": "阿莫西林胶囊", "qty": "1", "price": "0.01"});
    let request = json!({"jsonrpc": "2.0", "id": 1, "method": "settle.preview",
        "params": {"mdtrt_id": mdtrt_id, "items": vec![item; lines], "acct_used": false}});
    let mut bytes = request.to_string().into_bytes();
    bytes.push(b'\n');
    Arc::new(bytes)
}

/// One connection writing `line` again and again until `until` (as fast as the daemon takes
/// them), reading the answers meanwhile; then the answers still due (the connection is
/// half-closed: the daemon answers what it has and closes).
async fn pipeline(
    socket: &Path,
    line: Arc<Vec<u8>>,
    until: tokio::time::Instant,
) -> Result<Tally, String> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", socket.display()))?;
    let (read, mut write) = stream.into_split();
    let mut writer = tokio::spawn(async move {
        let mut sent = 0usize;
        // A write cut by the deadline leaves half a line, which the daemon drops.
        while let Ok(Ok(())) = tokio::time::timeout_at(until, write.write_all(&line)).await {
            sent += 1;
        }
        sent
    });
    let mut read = BufReader::with_capacity(64 * 1024, read);
    let mut tally = Tally::default();
    let mut answer = Vec::new();
    let mut writing = true;
    let drain_until = until + DRAIN_LIMIT;
    while writing || tally.answered < tally.sent {
        tokio::select! {
            sent = &mut writer, if writing => {
                tally.sent = sent.map_err(|e| format!("the writer failed: {e}"))?;
                writing = false;
            }
            got = read.read_until(b'\n', &mut answer) => {
                match got {
                    Ok(0) => return Err("the daemon closed the connection".to_owned()),
                    Ok(_) => {
                        tally.answered += 1;
                        if let Some(code) = error_code(&answer) {
                            tally.errors.push(code);
                        }
                        answer.clear();
                    }
                    Err(e) => return Err(format!("cannot read an answer: {e}")),
                }
            }
            _ = tokio::time::sleep_until(drain_until) => {
                return Err(format!(
                    "{} answers still due {DRAIN_LIMIT:?} after the burst",
                    tally.sent.saturating_sub(tally.answered)
                ));
            }
        }
    }
    Ok(tally)
}

/// The error code of an error answer (its head is small: `{"error":{"code":…`).
fn error_code(answer: &[u8]) -> Option<i64> {
    let head = &answer[..answer.len().min(256)];
    if !head.windows(8).any(|w| w == b"\"error\"") {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(answer).ok()?;
    value["error"]["code"].as_i64()
}

fn print(plan: &Plan, f: &Figures) {
    let t = &f.tally;
    let mut codes: Vec<(i64, usize)> = Vec::new();
    for code in &t.errors {
        match codes.iter_mut().find(|(c, _)| c == code) {
            Some((_, n)) => *n += 1,
            None => codes.push((*code, 1)),
        }
    }
    let codes = codes
        .iter()
        .map(|(code, n)| format!("{n} × {code}"))
        .collect::<Vec<_>>()
        .join(", ");
    println!(
        "burst: {} requests sent, {} answered ({} errors{}{codes}) in {:.1} s",
        t.sent,
        t.answered,
        t.errors.len(),
        if codes.is_empty() { "" } else { ": " },
        f.burst.as_secs_f64()
    );
    println!(
        "daemon RSS: baseline {:.1} MB, peak {:.1} MB, idle after {:.0} s {:.1} MB",
        f.baseline, f.peak, plan.idle_wait, f.idle_after
    );
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    println!(
        "targets: peak ≤ {TARGET_PEAK_MB:.0} MB: {}; idle after ≤ {TARGET_IDLE_RATIO:.0} × baseline ({:.1} MB): {}",
        verdict(f.peak <= TARGET_PEAK_MB),
        f.baseline * TARGET_IDLE_RATIO,
        verdict(f.idle_after <= f.baseline * TARGET_IDLE_RATIO)
    );
}

/// `--lines`' default: the daemon's default maximum of lines per bill.
pub const DEFAULT_LINES: usize = DEFAULT_MAX_BILL_LINES;
