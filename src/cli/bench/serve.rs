//! `medcard bench serve`: `card.read` answered from a session by a `medcard serve` child
//! process (its memory is the daemon's alone), clients on a tokio runtime here.

use super::ms;
use medcard::serve::client::Client;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// The targets, checked at the largest level.
const TARGET_RPS: f64 = 20_000.0;
const TARGET_P99: Duration = Duration::from_millis(2);
const TARGET_RSS_MB: f64 = 30.0;

/// The request every client sends, over and over.
const REQUEST: &[u8] = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"card.read\"}\n";

pub struct Plan {
    pub seconds: f64,
    pub warm_up: f64,
    pub clients: Vec<usize>,
    pub card: String,
}

/// One level's figures.
struct Level {
    clients: usize,
    requests: usize,
    per_second: f64,
    p50: Duration,
    p99: Duration,
    rss: Memory,
}

/// VmRSS and VmHWM in MB.
#[derive(Clone, Copy)]
struct Memory {
    rss: f64,
    hwm: f64,
}

pub fn run(plan: &Plan) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("medcard-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let socket = dir.join("bench.sock");
    let max_clients = plan.clients.iter().copied().max().unwrap_or(1);
    let mut daemon = Daemon::start(&socket, &plan.card, max_clients)?;
    let outcome = measure_all(plan, &socket, &daemon);
    let stopped = daemon.stop();
    let _ = std::fs::remove_dir_all(&dir);
    let levels = outcome?;
    let status = stopped?;
    if !status.success() {
        return Err(format!("the daemon exited with {status} after SIGTERM"));
    }
    println!("daemon stopped with SIGTERM: {status}");
    if let Some(last) = levels.last() {
        print_verdict(last);
    }
    Ok(())
}

fn measure_all(plan: &Plan, socket: &Path, daemon: &Daemon) -> Result<Vec<Level>, String> {
    wait_until_serving(socket, daemon)?;
    let started = memory(daemon.pid())?;
    println!(
        "medcard bench serve: card.read from a session (virtual card {}), {} clients, \
         {:.1} s warm-up + {:.1} s measured per level; daemon pid {}, RSS {:.1} MB at start",
        plan.card,
        plan.clients
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join("/"),
        plan.warm_up,
        plan.seconds,
        daemon.pid(),
        started.rss,
    );
    println!(
        "{:>7} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9}",
        "clients", "requests", "req/s", "p50 ms", "p99 ms", "RSS MB", "HWM MB"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let mut levels = Vec::new();
    for &clients in &plan.clients {
        let (requests, latencies) = runtime.block_on(level(socket, clients, plan))?;
        let summary = super::Summary::of(latencies);
        let level = Level {
            clients,
            requests,
            per_second: requests as f64 / plan.seconds,
            p50: summary.median,
            p99: summary.p99,
            rss: memory(daemon.pid())?,
        };
        println!(
            "{:>7} {:>10} {:>10.0} {:>9} {:>9} {:>9.1} {:>9.1}",
            level.clients,
            level.requests,
            level.per_second,
            ms(level.p50),
            ms(level.p99),
            level.rss.rss,
            level.rss.hwm
        );
        levels.push(level);
    }
    Ok(levels)
}

fn print_verdict(level: &Level) {
    let verdict = |met: bool| if met { "met" } else { "NOT met" };
    let rps_met = level.per_second >= TARGET_RPS;
    let p99_met = level.p99 <= TARGET_P99;
    let rss_met = level.rss.hwm <= TARGET_RSS_MB;
    println!(
        "targets at {} clients: ≥ {:.0} req/s: {} ({:.0}); p99 ≤ {} ms: {} ({}); \
         RSS ≤ {:.0} MB (peak VmHWM): {} ({:.1}) — {}",
        level.clients,
        TARGET_RPS,
        verdict(rps_met),
        level.per_second,
        ms(TARGET_P99),
        verdict(p99_met),
        ms(level.p99),
        TARGET_RSS_MB,
        verdict(rss_met),
        level.rss.hwm,
        if rps_met && p99_met && rss_met {
            "all met"
        } else {
            "not all met"
        }
    );
}

/// Runs `clients` connections at once: connect, warm up, then count what completes in
/// the measured window. Returns the requests completed and their latencies.
async fn level(
    socket: &Path,
    clients: usize,
    plan: &Plan,
) -> Result<(usize, Vec<Duration>), String> {
    let mut streams = Vec::with_capacity(clients);
    for _ in 0..clients {
        let stream = UnixStream::connect(socket)
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", socket.display()))?;
        streams.push(stream);
    }
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let measure_from = start + Duration::from_secs_f64(plan.warm_up);
    let until = measure_from + Duration::from_secs_f64(plan.seconds);
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|stream| tokio::spawn(client(stream, start, measure_from, until)))
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        let samples = task.await.map_err(|e| format!("a client failed: {e}"))??;
        latencies.extend(samples);
    }
    if latencies.is_empty() {
        return Err("no request completed in the measured window".to_owned());
    }
    Ok((latencies.len(), latencies))
}

/// One connection sending `card.read` after `card.read` until `until`; the latencies of
/// the requests sent after `measure_from`.
async fn client(
    stream: UnixStream,
    start: tokio::time::Instant,
    measure_from: tokio::time::Instant,
    until: tokio::time::Instant,
) -> Result<Vec<Duration>, String> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::with_capacity(16 * 1024, read);
    let mut line = Vec::with_capacity(4096);
    let mut samples = Vec::with_capacity(65_536);
    tokio::time::sleep_until(start).await;
    loop {
        let sent = Instant::now();
        if tokio::time::Instant::from_std(sent) >= until {
            break;
        }
        write
            .write_all(REQUEST)
            .await
            .map_err(|e| format!("cannot send: {e}"))?;
        line.clear();
        let n = read
            .read_until(b'\n', &mut line)
            .await
            .map_err(|e| format!("cannot read the answer: {e}"))?;
        let latency = sent.elapsed();
        if n == 0 {
            return Err("the daemon closed the connection".to_owned());
        }
        if !is_result(&line) {
            return Err(format!(
                "card.read failed: {}",
                String::from_utf8_lossy(&line).trim_end()
            ));
        }
        if tokio::time::Instant::from_std(sent) >= measure_from {
            samples.push(latency);
        }
    }
    Ok(samples)
}

/// Whether a response line is a success (its `result` key comes before the card: the
/// start of the line tells).
fn is_result(line: &[u8]) -> bool {
    let head = &line[..line.len().min(64)];
    head.windows(8).any(|w| w == b"\"result\"")
}

/// Waits until the daemon answers `system.info` and `card.read` returns the card.
fn wait_until_serving(socket: &Path, daemon: &Daemon) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut client) = Client::connect(socket)
            && client.set_timeout(Some(Duration::from_secs(10))).is_ok()
            && client.call("system.info", json!({})).is_ok()
        {
            let read = client
                .call("card.read", json!({"wait_ms": 5000}))
                .map_err(|e| e.to_string())?;
            if read["session_id"].is_u64() {
                return Ok(());
            }
            return Err(format!("card.read did not return the card: {read}"));
        }
        if let Some(status) = daemon.exited() {
            return Err(format!("medcard serve exited before serving: {status}"));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "medcard serve did not answer on {} within 20 s",
                socket.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The daemon's VmRSS and VmHWM, in MB.
fn memory(pid: u32) -> Result<Memory, String> {
    let (rss, hwm) = super::memory_mb(&pid.to_string())?;
    Ok(Memory { rss, hwm })
}

/// `medcard serve` as a child process (this binary); stopped with SIGTERM.
pub(super) struct Daemon {
    child: Option<Child>,
    pid: u32,
}

impl Daemon {
    fn start(socket: &Path, card: &str, clients: usize) -> Result<Daemon, String> {
        let max = (clients + 4).max(64).to_string();
        Daemon::spawn(&[
            "--config".as_ref(),
            "/nonexistent".as_ref(),
            "--socket".as_ref(),
            socket.as_os_str(),
            "--max-connections".as_ref(),
            max.as_ref(),
            "--virtual".as_ref(),
            card.as_ref(),
        ])
    }

    /// `medcard --log warn serve ARGS…` (this binary).
    pub(super) fn spawn(args: &[&std::ffi::OsStr]) -> Result<Daemon, String> {
        let exe: PathBuf =
            std::env::current_exe().map_err(|e| format!("cannot find the medcard binary: {e}"))?;
        let child = Command::new(exe)
            .args(["--log", "warn", "serve"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start medcard serve: {e}"))?;
        let pid = child.id();
        Ok(Daemon {
            child: Some(child),
            pid,
        })
    }

    pub(super) fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the daemon has exited (a zombie not reaped yet), from /proc.
    pub(super) fn exited(&self) -> Option<String> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?;
        let state = stat.rsplit(')').next()?.split_whitespace().next()?;
        (state == "Z").then(|| "exited".to_owned())
    }

    /// SIGTERM, then waits (SIGKILL after 15 s).
    pub(super) fn stop(&mut self) -> Result<ExitStatus, String> {
        let Some(mut child) = self.child.take() else {
            return Err("the daemon was already stopped".to_owned());
        };
        let pid = i32::try_from(self.pid).map_err(|e| e.to_string())?;
        // SAFETY: kill(2) on the child we spawned and have not reaped.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Ok(None) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err("the daemon did not stop within 15 s of SIGTERM".to_owned());
                }
                Err(e) => return Err(format!("cannot wait for the daemon: {e}")),
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop();
        }
    }
}
