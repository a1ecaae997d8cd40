//! `medcard bench web`: the web endpoint against the Unix socket, and the kiosk page in a
//! real browser. One counter in this process (the demo's: the insurer simulator, the
//! daemon on a virtual reader holding 小王's card, the web endpoint on loopback):
//!
//! 1. `card.read` over the Unix socket and over the WebSocket, at each number of clients
//!    (each a thread with one connection, one request after another, medcard's own client
//!    for both): requests/s and p99 side by side, and the WebSocket's share of the socket's
//!    (target ≥ 50%).
//! 2. The kiosk page (`/kiosk`) in headless Chromium (`sim::browser`): the card pulled and
//!    inserted --inserts times; each time, from the insertion to the holder's name drawn on
//!    the screen (the page stamps `data-ready-at` with `Date.now()` when it draws it):
//!    p50 / p99 (target p99 ≤ 150 ms).

use super::{Summary, ms};
use crate::cli::demo::counter::{Counter, CounterSetup, WebEndpoint};
use medcard::serve::client::Client;
use medcard::sim::browser::{Browser, BrowserOptions};
use medcard::sim::card::{CardImage, Chip, SharedVirtualReaders};
use serde_json::json;
use std::time::{Duration, Instant};

/// The targets.
const TARGET_WEB_SHARE: f64 = 0.5;
const TARGET_SCREEN_P99: Duration = Duration::from_millis(150);
const READER: &str = "Virtual counter reader";
const CARD: &str = "xiaowang";

/// What to measure.
pub struct Plan {
    pub seconds: f64,
    pub warm_up: f64,
    pub clients: Vec<usize>,
    /// Insertions timed in the browser; 0: no browser part.
    pub inserts: usize,
}

/// One level's figures for one transport.
struct Figures {
    per_second: f64,
    p99: Duration,
}

pub fn run(plan: &Plan) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("medcard-bench-web-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let outcome = runtime.block_on(bench(plan, &dir));
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

async fn bench(plan: &Plan, dir: &std::path::Path) -> Result<(), String> {
    let readers = SharedVirtualReaders::new();
    readers.add_reader(READER);
    let card = crate::cli::load_card(CARD).map_err(|e| e.to_string())?;
    readers.insert(READER, Chip::from(card.clone()));
    let socket = dir.join("medcard.sock");
    let counter = Counter::start(CounterSetup {
        dir,
        socket: &socket,
        readers: readers.clone(),
        links: 1,
        web: true,
        scanner: None,
    })
    .await?;
    let measured = measure(plan, &counter, &readers, card).await;
    counter.stop().await;
    measured
}

async fn measure(
    plan: &Plan,
    counter: &Counter,
    readers: &SharedVirtualReaders,
    card: CardImage,
) -> Result<(), String> {
    let web = counter
        .web
        .as_ref()
        .ok_or("the web endpoint did not start")?;
    counter
        .handle
        .wait_session(Some(READER), Duration::from_secs(10))
        .await
        .map_err(|e| format!("the bench card was not read: {e}"))?;
    let socket = counter.socket.clone();
    let addr = web.addr;
    let plan_copy = (plan.seconds, plan.warm_up, plan.clients.clone());
    tokio::task::spawn_blocking(move || transports(&plan_copy, &socket, addr))
        .await
        .map_err(|e| e.to_string())??;
    if plan.inserts > 0 {
        kiosk_screen(plan.inserts, web, readers, card).await?;
    }
    Ok(())
}

/// Part 1: `card.read` over both transports at each level.
fn transports(
    plan: &(f64, f64, Vec<usize>),
    socket: &std::path::Path,
    addr: std::net::SocketAddr,
) -> Result<(), String> {
    let (seconds, warm_up, clients) = plan;
    println!(
        "medcard bench web: card.read from a session, Unix socket vs WebSocket ({addr}), \
         {warm_up:.1} s warm-up + {seconds:.1} s measured per level"
    );
    println!(
        "{:>7} {:>12} {:>11} {:>12} {:>11} {:>8}",
        "clients", "socket req/s", "socket p99", "ws req/s", "ws p99", "ws/sock"
    );
    let mut last_share = None;
    for &n in clients {
        let connect_socket = || Client::connect(socket).map_err(|e| e.to_string());
        let connect_web = || Client::connect_web(addr, None, None).map_err(|e| e.to_string());
        let on_socket = level(n, *seconds, *warm_up, connect_socket)?;
        let on_web = level(n, *seconds, *warm_up, connect_web)?;
        let share = on_web.per_second / on_socket.per_second;
        println!(
            "{n:>7} {:>12.0} {:>11} {:>12.0} {:>11} {:>7.0}%",
            on_socket.per_second,
            ms(on_socket.p99),
            on_web.per_second,
            ms(on_web.p99),
            share * 100.0
        );
        last_share = Some((n, share));
    }
    if let Some((n, share)) = last_share {
        println!(
            "target at {n} clients: WebSocket ≥ {:.0}% of the socket's req/s: {} ({:.0}%)",
            TARGET_WEB_SHARE * 100.0,
            if share >= TARGET_WEB_SHARE {
                "met"
            } else {
                "NOT met"
            },
            share * 100.0
        );
    }
    Ok(())
}

/// `clients` threads, each a connection from `connect` sending `card.read` after
/// `card.read`: a warm-up, then `seconds` counted.
fn level(
    clients: usize,
    seconds: f64,
    warm_up: f64,
    connect: impl Fn() -> Result<Client, String>,
) -> Result<Figures, String> {
    let connections = (0..clients)
        .map(|_| connect())
        .collect::<Result<Vec<_>, _>>()?;
    let start = Instant::now() + Duration::from_millis(50);
    let measure_from = start + Duration::from_secs_f64(warm_up);
    let until = measure_from + Duration::from_secs_f64(seconds);
    let threads: Vec<_> = connections
        .into_iter()
        .map(|client| std::thread::spawn(move || reads(client, start, measure_from, until)))
        .collect();
    let mut latencies = Vec::new();
    for thread in threads {
        latencies.extend(thread.join().map_err(|_| "a client thread panicked")??);
    }
    if latencies.is_empty() {
        return Err("no request completed in the measured window".into());
    }
    let per_second = latencies.len() as f64 / seconds;
    Ok(Figures {
        per_second,
        p99: Summary::of(latencies).p99,
    })
}

fn reads(
    mut client: Client,
    start: Instant,
    measure_from: Instant,
    until: Instant,
) -> Result<Vec<Duration>, String> {
    std::thread::sleep(start.saturating_duration_since(Instant::now()));
    let mut samples = Vec::new();
    loop {
        let sent = Instant::now();
        if sent >= until {
            return Ok(samples);
        }
        client
            .call("card.read", json!({}))
            .map_err(|e| e.to_string())?;
        if sent >= measure_from {
            samples.push(sent.elapsed());
        }
    }
}

/// Part 2: the kiosk page in headless Chromium, insertion to the name on screen.
async fn kiosk_screen(
    inserts: usize,
    web: &WebEndpoint,
    readers: &SharedVirtualReaders,
    card: CardImage,
) -> Result<(), String> {
    let (url, readers) = (web.kiosk_url(), readers.clone());
    let samples =
        tokio::task::spawn_blocking(move || insert_and_time(inserts, &url, &readers, &card))
            .await
            .map_err(|e| e.to_string())??;
    let summary = Summary::of(samples.timings);
    println!(
        "kiosk page in headless Chromium (1080×1920): {inserts} insertions, insertion to the \
         holder's name on screen p50 {} ms, p99 {} ms; {} console errors",
        ms(summary.median),
        ms(summary.p99),
        samples.console_errors
    );
    println!(
        "target: insertion-to-screen p99 ≤ {} ms: {}",
        ms(TARGET_SCREEN_P99),
        if summary.p99 <= TARGET_SCREEN_P99 {
            "met"
        } else {
            "NOT met"
        }
    );
    Ok(())
}

/// The timings of one browser run, and the console errors it met.
struct Screens {
    timings: Vec<Duration>,
    console_errors: usize,
}

/// Opens the kiosk page, then `inserts` times: the card pulled (the page back to idle), then
/// inserted; the page's `data-ready-at` (its `Date.now()` when it drew the name) less the
/// wall clock at the insertion. Same machine, same clock; milliseconds.
fn insert_and_time(
    inserts: usize,
    url: &str,
    readers: &SharedVirtualReaders,
    card: &CardImage,
) -> Result<Screens, String> {
    let browser = Browser::start(BrowserOptions {
        width: 1080,
        height: 1920,
    })
    .map_err(|e| e.to_string())?;
    browser.goto(url).map_err(|e| e.to_string())?;
    let patience = Duration::from_secs(10);
    browser
        .wait_for("#holder-name", patience)
        .map_err(|e| format!("the kiosk page never showed the card: {e}"))?;
    let mut timings = Vec::with_capacity(inserts);
    for _ in 0..inserts {
        readers.remove(READER);
        wait_page(
            &browser,
            "return document.body.dataset.screen === 'idle'",
            patience,
        )?;
        let before = page_value(&browser, "return document.body.dataset.readyAt || '0'")?;
        let inserted_at = unix_ms();
        readers.insert(READER, Chip::from(card.clone()));
        let changed = format!("return (document.body.dataset.readyAt || '0') !== '{before}'");
        wait_page(&browser, &changed, patience)?;
        let drawn_at: u128 = page_value(&browser, "return document.body.dataset.readyAt")?
            .parse()
            .map_err(|e| format!("data-ready-at is not a time: {e}"))?;
        timings.push(Duration::from_millis(
            drawn_at.saturating_sub(inserted_at) as u64
        ));
    }
    let console_errors = browser.console_errors().map_err(|e| e.to_string())?.len();
    Ok(Screens {
        timings,
        console_errors,
    })
}

fn unix_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}

/// A script's answer as text.
fn page_value(browser: &Browser, script: &str) -> Result<String, String> {
    let value = browser.execute(script, &[]).map_err(|e| e.to_string())?;
    Ok(value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned))
}

/// Waits until `script` answers true in the page (polled every 2 ms).
fn wait_page(browser: &Browser, script: &str, patience: Duration) -> Result<(), String> {
    let deadline = Instant::now() + patience;
    loop {
        if browser.execute(script, &[]).map_err(|e| e.to_string())? == json!(true) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the kiosk page did not get there in {patience:?}: {script}"
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
