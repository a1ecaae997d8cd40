//! `medcard bench soak`: a bounded soak. For `--minutes` the daemon (in this process, on a
//! SQLite journal in a temporary directory) serves a whole bad day at once against the insurer
//! simulator (a `medcard insurer-sim` child): cards swapped, pulled and read ([`cards`]),
//! visits registered, priced, settled and some refunded ([`cashier`]), subscribers coming and
//! going, insurer faults switched on and off ([`noise`]), and pcscd restarted under the
//! daemon. This process's RSS, open file descriptors and threads are printed before the load
//! and after it ([`figures`]); then every settlement is checked: each `request_id` the
//! cashiers saw settle has that one `setl_id` in the journal, and `medcard reconcile`
//! compares the journal with the insurer for every settlement day. Exit status 1 when a
//! settlement is unreconciled or doubled, a request stayed in doubt, the daemon broke, or a
//! figure grew.
//!
//! The cards go through the real pcscd + vpcd when they are installed (the machine-wide
//! end-to-end lock is held throughout), else through in-process virtual readers, with no
//! pcscd restart; the first line says which.

mod cards;
mod cashier;
mod figures;
mod noise;

use super::cache::SimChild;
use cards::CardSide;
pub use cards::Readers;
use figures::Figures;
use medcard::serve::Daemon;
use medcard::serve::client::Client;
use medcard::serve::config::Config;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The daemon's settlement links to the insurer (`settle.links`).
const SETTLE_LINKS: usize = 4;
/// How often a progress line goes to stderr.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);
/// How long the warm-up waits for the first sync and the first card.
const WARM_UP_WAIT: Duration = Duration::from_secs(30);
/// How long requests left in doubt get to be resolved once the faults are off.
const RESOLVE_WAIT: Duration = Duration::from_secs(90);

/// What to run.
pub struct Plan {
    pub duration: Duration,
    /// Cashiers settling at once, one connection each.
    pub cashiers: usize,
    pub readers: Readers,
}

/// What every worker shares: the end of the run, the counts, the settlements seen.
pub struct Shared {
    until: Instant,
    started: Instant,
    stopped: AtomicBool,
    pub socket: PathBuf,
    tally: Mutex<BTreeMap<String, Counts>>,
    /// Every settlement (commit or refund) a cashier sent: its request_id and what it saw.
    pub ledger: Mutex<Vec<cashier::Sent>>,
}

/// One operation's results.
#[derive(Default, Clone)]
struct Counts {
    ok: u64,
    errors: BTreeMap<String, u64>,
}

/// Error kinds that mean the daemon broke rather than the insurer misbehaved.
const BROKEN: [&str; 4] = ["-32603", "closed", "io", "malformed"];

impl Shared {
    /// Whether the run is over (its time is up, or a worker gave up).
    pub fn over(&self) -> bool {
        self.stopped.load(Ordering::Relaxed) || Instant::now() >= self.until
    }

    /// Time since the load started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The run's length.
    pub fn length(&self) -> Duration {
        self.until.saturating_duration_since(self.started)
    }

    /// Ends the run early (a worker could not go on).
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    pub fn ok(&self, operation: &str) {
        self.count(operation, None);
    }

    pub fn failed(&self, operation: &str, kind: &str) {
        self.count(operation, Some(kind));
    }

    fn count(&self, operation: &str, error: Option<&str>) {
        let mut tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        let counts = tally.entry(operation.to_owned()).or_default();
        match error {
            None => counts.ok += 1,
            Some(kind) => *counts.errors.entry(kind.to_owned()).or_default() += 1,
        }
    }

    fn tally(&self) -> BTreeMap<String, Counts> {
        self.tally.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A socket connection with a read timeout; `None` (counted) when it cannot be had.
    pub fn connect(&self, operation: &str) -> Option<Client> {
        match Client::connect(&self.socket) {
            Ok(mut client) => {
                let _ = client.set_timeout(Some(Duration::from_secs(30)));
                Some(client)
            }
            Err(e) => {
                self.failed(operation, &error_kind(&e));
                None
            }
        }
    }
}

/// A client error as a short kind: the JSON-RPC code, or what went wrong on the wire.
pub fn error_kind(error: &medcard::serve::client::ClientError) -> String {
    use medcard::serve::client::ClientError;
    match error {
        ClientError::Rpc { code, .. } => code.to_string(),
        ClientError::Connect { .. } => "connect".into(),
        ClientError::NotTheDaemon { .. } | ClientError::PeerUnknown { .. } => {
            "not-the-daemon".into()
        }
        ClientError::TimedOut => "timeout".into(),
        ClientError::Closed => "closed".into(),
        ClientError::Io(_) | ClientError::WebSocket(_) => "io".into(),
        ClientError::WebRefused { status, .. } => format!("http-{status}"),
        ClientError::Malformed { .. } | ClientError::NoResult { .. } => "malformed".into(),
    }
}

/// What the end of the soak found.
struct Verdict {
    problems: Vec<String>,
}

pub fn run(plan: &Plan) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("medcard-bench-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let outcome = soak(plan, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    let verdict = outcome?;
    if verdict.problems.is_empty() {
        println!("verdict: PASS — every settlement reconciled, figures flat");
        return Ok(());
    }
    println!("verdict: FAIL");
    for problem in &verdict.problems {
        println!("  - {problem}");
    }
    Err(format!(
        "the soak found {} problem(s)",
        verdict.problems.len()
    ))
}

fn soak(plan: &Plan, dir: &Path) -> Result<Verdict, String> {
    let side = CardSide::open(plan.readers)?;
    let sim = SimChild::start(&dir.join("insurer-sim.sqlite"))?;
    let config_path = write_config(dir, &sim.addr)?;
    let config = Config::load(&config_path)
        .map_err(|e| e.to_string())?
        .config;
    println!(
        "medcard bench soak: {:.1} min, {} cashiers; readers: {}; insurer: medcard insurer-sim pid {} at {}; \
         daemon in this process (pid {}), journal {}",
        plan.duration.as_secs_f64() / 60.0,
        plan.cashiers,
        side.describe(),
        sim.child.id(),
        sim.addr,
        std::process::id(),
        config.cache.path.display()
    );
    let socket = config.socket.path.clone();
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let daemon = runtime
        .block_on(Daemon::start(config, side.backends(), None))
        .map_err(|e| format!("the daemon did not start: {e}"))?;
    if daemon.services().settler.is_none() {
        return Err("settlement could not be set up (run with --log info to see why)".into());
    }
    let daemon = {
        let _entered = runtime.enter();
        daemon.spawn()
    };
    let shared = Shared {
        until: Instant::now(),
        started: Instant::now(),
        stopped: AtomicBool::new(false),
        socket,
        tally: Mutex::default(),
        ledger: Mutex::default(),
    };
    let outcome = load_and_check(plan, side, &sim, shared);
    runtime.block_on(daemon.stop());
    let (mut problems, days) = outcome?;
    problems.extend(reconcile(&config_path, &days));
    Ok(Verdict { problems })
}

/// The soak proper: warm-up, start figures, the load, in-doubt requests resolved, end
/// figures. The problems found and the settlement days to reconcile.
fn load_and_check(
    plan: &Plan,
    side: CardSide,
    sim: &SimChild,
    mut shared: Shared,
) -> Result<(Vec<String>, Vec<String>), String> {
    warm_up(&shared.socket, side.reader())?;
    let start = Figures::settled(None)?;
    println!("start: {}", start.line());
    shared.started = Instant::now();
    shared.until = shared.started + plan.duration;
    let (side, load) = run_load(plan, side, sim, &shared);
    noise::clear_faults(sim, &shared);
    let mut problems = cashier::settle_the_doubt(&shared, RESOLVE_WAIT);
    let end = Figures::settled(Some(&start))?;
    problems.extend(cashier::check_journal(&shared));
    print_tally(&shared);
    println!("before the load: {}", start.line());
    for (name, reading) in [("warmed", &load.warmed), ("end of load", &load.end)] {
        if let Some((figures, operations)) = reading {
            println!("{name} ({operations} operations): {}", figures.line());
        }
    }
    println!("at rest: {}", end.line());
    println!("descriptors changed: {}", start.descriptor_changes(&end));
    problems.extend(start.growth(&end));
    if let (Some(warmed), Some(end_of_load)) = (&load.warmed, &load.end) {
        problems.extend(figures::rss_growth(warmed, end_of_load));
    }
    problems.extend(broken(&shared));
    problems.extend(side.problems());
    drop(side);
    Ok((problems, cashier::settlement_days(&shared)))
}

/// Figures taken under load: once warmed up (a third into the run) and as it ends, each with
/// the operations done by then.
struct Load {
    warmed: Option<(Figures, u64)>,
    end: Option<(Figures, u64)>,
}

/// Every worker at once until the time is up, a progress line every 30 s; the card side
/// back, and the figures under load.
fn run_load(plan: &Plan, side: CardSide, sim: &SimChild, shared: &Shared) -> (CardSide, Load) {
    std::thread::scope(|scope| {
        let cashiers: Vec<_> = (0..plan.cashiers)
            .map(|n| scope.spawn(move || cashier::work(n, shared)))
            .collect();
        let swiper = scope.spawn(move || cards::swipe(side, shared));
        let subscribers = scope.spawn(|| noise::subscribers(shared));
        let listener = scope.spawn(|| noise::listener(shared));
        let faults = scope.spawn(|| noise::faults(sim, shared));
        let load = progress(shared);
        for cashier in cashiers {
            let _ = cashier.join();
        }
        let _ = subscribers.join();
        let _ = listener.join();
        let _ = faults.join();
        let side = swiper.join().unwrap_or_else(|_| {
            shared.failed("swipe", "panicked");
            CardSide::gone()
        });
        (side, load)
    })
}

/// A progress line to stderr every 30 s until the run is over; the figures under load.
fn progress(shared: &Shared) -> Load {
    let warm = shared.started + shared.length() / 3;
    let reading = || {
        let (ok, errors) = totals(&shared.tally());
        Figures::now().ok().map(|figures| (figures, ok + errors))
    };
    let mut warmed = None;
    let mut next = shared.started + PROGRESS_EVERY;
    while !shared.over() {
        std::thread::sleep(Duration::from_millis(200));
        let now = Instant::now();
        if warmed.is_none() && now >= warm {
            warmed = reading();
        }
        if now >= next {
            next += PROGRESS_EVERY;
            let (ok, errors) = totals(&shared.tally());
            let figures = Figures::now().map_or_else(|e| e, |f| f.line());
            eprintln!(
                "soak {:>4.0} s: {figures}; {ok} operations ok, {errors} errors",
                shared.elapsed().as_secs_f64()
            );
        }
    }
    Load {
        warmed,
        end: reading(),
    }
}

fn totals(tally: &BTreeMap<String, Counts>) -> (u64, u64) {
    tally.values().fold((0, 0), |(ok, errors), counts| {
        (ok + counts.ok, errors + counts.errors.values().sum::<u64>())
    })
}

/// The first sync done (local previews need the catalogue's classes) and the first card read.
fn warm_up(socket: &Path, reader: &str) -> Result<(), String> {
    let deadline = Instant::now() + WARM_UP_WAIT;
    let mut client = Client::connect(socket).map_err(|e| e.to_string())?;
    loop {
        let status = client
            .call("sync.status", json!({}))
            .map_err(|e| e.to_string())?;
        if status["versions"]["catalogue"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        if Instant::now() >= deadline {
            return Err(format!("the first sync did not finish: {status}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    client
        .call("card.read", json!({"reader": reader, "wait_ms": 10_000}))
        .map(drop)
        .map_err(|e| format!("the first card was not read: {e}"))
}

/// The daemon's configuration: the socket, journal and insurer in `dir`, the resolver every
/// 5 s (requests left in doubt by the faults are settled quickly).
fn write_config(dir: &Path, sim_addr: &str) -> Result<PathBuf, String> {
    let path = dir.join("medcard.toml");
    let text = format!(
        "[socket]\npath = {socket:?}\nmode = \"0600\"\n\n\
         [insurer]\nurl = \"http://{sim_addr}/fsi/api/callService\"\nsync_interval_s = 15\n\n\
         [cache]\npath = {cache:?}\n\n\
         [settle]\nlinks = {SETTLE_LINKS}\ntimeout_ms = 2000\nresolve_interval_s = 5\n",
        socket = dir.join("medcard.sock").display().to_string(),
        cache = dir.join("cache.sqlite").display().to_string(),
    );
    std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

fn print_tally(shared: &Shared) {
    let tally = shared.tally();
    let (ok, errors) = totals(&tally);
    println!(
        "operations in {:.0} s: {ok} ok, {errors} errors",
        shared.length().as_secs_f64()
    );
    for (operation, counts) in &tally {
        let errors: Vec<String> = counts
            .errors
            .iter()
            .map(|(kind, n)| format!("{kind} ×{n}"))
            .collect();
        let errors = if errors.is_empty() {
            String::new()
        } else {
            format!("; errors {}", errors.join(", "))
        };
        println!("  {operation:<24} {:>7} ok{errors}", counts.ok);
    }
}

/// Errors that say the daemon broke (internal errors, connections dropped mid-call).
fn broken(shared: &Shared) -> Vec<String> {
    shared
        .tally()
        .iter()
        .flat_map(|(operation, counts)| {
            counts
                .errors
                .iter()
                .filter(|(kind, _)| BROKEN.contains(&kind.as_str()))
                .map(move |(kind, n)| format!("{operation}: {n} × {kind} (the daemon broke)"))
        })
        .collect()
}

/// `medcard reconcile` for every settlement day: its report, and a problem for each day that
/// is not clean.
fn reconcile(config: &Path, days: &[String]) -> Vec<String> {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return vec![format!("cannot find the medcard binary to reconcile: {e}")],
    };
    let mut problems = Vec::new();
    for day in days {
        let output = Command::new(&exe)
            .args(["--log", "error", "reconcile", "--date", day, "--config"])
            .arg(config)
            .output();
        let clean = match output {
            Ok(output) => {
                for line in String::from_utf8_lossy(&output.stdout).lines() {
                    println!("  │ {line}");
                }
                eprint!("{}", String::from_utf8_lossy(&output.stderr));
                output.status.success()
            }
            Err(e) => {
                println!("  medcard reconcile could not run: {e}");
                false
            }
        };
        if clean {
            println!("reconcile {day}: clean");
        } else {
            println!("reconcile {day}: NOT clean");
            problems.push(format!("reconcile {day} is not clean"));
        }
    }
    if days.is_empty() {
        problems.push("nothing was settled: nothing to reconcile".into());
    }
    problems
}
