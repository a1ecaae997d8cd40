//! `medcard bench settle`: settlements per second through the daemon's socket against the
//! insurer simulator on loopback, all in this process (the counter of `medcard demo`:
//! [`crate::cli::demo::counter`]). The journal is the cache file, whose connections all run
//! `synchronous=FULL` (src/cache/mod.rs): every commit's journal writes are on disk before
//! the insurer is called and before the answer goes back.
//!
//! Two phases, so that `settle.commit` is timed alone: every client registers its visits
//! (by ID number, twelve fixture persons in turn; 小王's card sits in a virtual reader as at a
//! counter) and previews one small line of the 甲类 item with the personal account left out
//! (so no account runs dry); then every client commits its previews one after another, and
//! the commit phase is timed by the wall clock.

use super::{Summary, ms};
use crate::cli::demo::counter::{Counter, CounterSetup};
use medcard::serve::client::Client;
use medcard::sim::card::Chip;
use medcard::sim::card::SharedVirtualReaders;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

/// The target.
const TARGET_COMMITS_PER_SECOND: f64 = 500.0;
/// The journal's `synchronous` setting: set on every connection to the cache file when it is
/// opened (`cache::configure`); a pragma read back on another connection would show that
/// connection's own setting, so it is stated here rather than measured.
const JOURNAL_SYNCHRONOUS: &str = "FULL";
const READER: &str = "Virtual counter reader";
const CARD: &str = "xiaowang";
/// Insured, active fixture persons (fixtures/insurer/persons.toml), registered by ID number
/// in turn: the simulator sums a person's settlements of the year on every 2206 / 2207, so
/// thousands of visits of one person would measure that sum rather than the counter.
pub(super) const PERSONS: [&str; 12] = [
    "500103199103080319",
    "510104195802140261",
    "440106200108170645",
    "330782197912050571",
    "650102198511030574",
    "440304199906210480",
    "310104197204300191",
    "430104197604182283",
    "330106196509250131",
    "120101198305270710",
    "320106199307210467",
    "420106198801120829",
];
/// 阿莫西林胶囊, 甲类 in the simulator's catalogue.
pub(super) const CLASS_A_ITEM: &str = "XJ01CAA040A001010100001";

/// What to measure.
pub struct Plan {
    /// Settlements in all.
    pub count: usize,
    /// Concurrent connections.
    pub clients: usize,
    /// `settle.links`: the settler's links to the insurer.
    pub links: usize,
    /// The line's price, yuan.
    pub price: String,
}

/// What was measured.
struct Figures {
    prepare: Duration,
    commit: Duration,
    latencies: Vec<Duration>,
}

pub fn run(plan: &Plan) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("medcard-bench-settle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let outcome = tokio::runtime::Runtime::new()
        .map_err(|e| e.to_string())
        .and_then(|runtime| runtime.block_on(bench(plan, &dir)));
    let _ = std::fs::remove_dir_all(&dir);
    let figures = outcome?;
    print(plan, &figures);
    Ok(())
}

async fn bench(plan: &Plan, dir: &Path) -> Result<Figures, String> {
    let readers = SharedVirtualReaders::new();
    let card = crate::cli::load_card(CARD).map_err(|e| e.to_string())?;
    readers.insert(READER, Chip::from(card));
    let socket = dir.join("medcard.sock");
    let counter = Counter::start(CounterSetup {
        dir,
        socket: &socket,
        readers,
        links: plan.links,
        web: false,
        scanner: None,
    })
    .await?;
    let measured = measure(plan, &counter).await;
    counter.stop().await;
    measured
}

async fn measure(plan: &Plan, counter: &Counter) -> Result<Figures, String> {
    counter.wait_synced().await?;
    counter
        .handle
        .wait_session(Some(READER), Duration::from_secs(10))
        .await
        .map_err(|e| format!("小王's card was not read: {e}"))?;
    println!(
        "medcard bench settle: {} settlements of {} yuan, {} clients, {} insurer links, journal synchronous={JOURNAL_SYNCHRONOUS}",
        plan.count, plan.price, plan.clients, plan.links
    );
    let started = Instant::now();
    let prepared = each_client(plan, counter, |client, index, share| {
        prepare(client, index, share, &plan.price)
    })?;
    let prepare = started.elapsed();
    let committing = Instant::now();
    let latencies = each_client(plan, counter, |client, index, _| {
        commit(client, index, &prepared[index])
    })?
    .concat();
    Ok(Figures {
        prepare,
        commit: committing.elapsed(),
        latencies,
    })
}

/// Runs `work` for every client at once, each on a thread with a connection of its own, its
/// index and its share of the settlements; the results in client order.
fn each_client<T: Send>(
    plan: &Plan,
    counter: &Counter,
    work: impl Fn(Client, usize, usize) -> Result<T, String> + Sync,
) -> Result<Vec<T>, String> {
    let mut clients = Vec::with_capacity(plan.clients);
    for _ in 0..plan.clients {
        clients.push(counter.client()?);
    }
    let work = &work;
    std::thread::scope(|scope| {
        let threads: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(index, client)| {
                let share =
                    plan.count / plan.clients + usize::from(index < plan.count % plan.clients);
                scope.spawn(move || work(client, index, share))
            })
            .collect();
        threads
            .into_iter()
            .map(|thread| {
                thread
                    .join()
                    .map_err(|_| "a client thread panicked".to_owned())?
            })
            .collect()
    })
}

/// `count` visits registered (persons from the `first`-th on) and previewed; their
/// preview ids.
pub(super) fn prepare(
    mut client: Client,
    first: usize,
    count: usize,
    price: &str,
) -> Result<Vec<String>, String> {
    let mut previews = Vec::with_capacity(count);
    let items = json!([{"code": CLASS_A_ITEM, "name": "阿莫西林胶囊", "qty": "1", "price": price}]);
    for n in 0..count {
        let certno = PERSONS[(first + n) % PERSONS.len()];
        let visit = client
            .call(
                "visit.register",
                json!({"certno": certno, "dept_code": "A03", "dept_name": "内科", "dr_name": "张医生"}),
            )
            .map_err(|e| e.to_string())?;
        let preview = client
            .call(
                "settle.preview",
                json!({"mdtrt_id": visit["mdtrt_id"], "items": items, "acct_used": false}),
            )
            .map_err(|e| e.to_string())?;
        let id = preview["preview_id"]
            .as_str()
            .ok_or_else(|| format!("settle.preview answered no preview_id: {preview}"))?;
        previews.push(id.to_owned());
    }
    Ok(previews)
}

/// Commits `previews` one after another; each commit's latency.
pub(super) fn commit(
    mut client: Client,
    index: usize,
    previews: &[String],
) -> Result<Vec<Duration>, String> {
    let mut latencies = Vec::with_capacity(previews.len());
    for (n, preview_id) in previews.iter().enumerate() {
        let request_id = format!("bench-{index}-{n}");
        let sent = Instant::now();
        let done = client
            .call(
                "settle.commit",
                json!({"preview_id": preview_id, "request_id": request_id}),
            )
            .map_err(|e| e.to_string())?;
        latencies.push(sent.elapsed());
        if done["state"] != "settled" {
            return Err(format!("{request_id} did not settle: {done}"));
        }
    }
    Ok(latencies)
}

fn print(plan: &Plan, figures: &Figures) {
    let n = figures.latencies.len();
    let per_second = |d: Duration| n as f64 / d.as_secs_f64().max(1e-9);
    let max = figures.latencies.iter().max().copied().unwrap_or_default();
    println!(
        "register + preview: {n} in {:.2} s ({:.0}/s)",
        figures.prepare.as_secs_f64(),
        per_second(figures.prepare)
    );
    let rate = per_second(figures.commit);
    if n > 0 {
        let summary = Summary::of(figures.latencies.clone());
        println!(
            "settle.commit:      {n} in {:.2} s → {rate:.0} commits/s; latency p50 {} ms, p99 {} ms, max {} ms",
            figures.commit.as_secs_f64(),
            ms(summary.median),
            ms(summary.p99),
            ms(max)
        );
    }
    let whole = figures.prepare + figures.commit;
    println!(
        "whole settlement (register + preview + commit): {:.0}/s",
        per_second(whole)
    );
    let verdict = if rate >= TARGET_COMMITS_PER_SECOND {
        "met"
    } else {
        "MISSED"
    };
    println!(
        "target ≥ {TARGET_COMMITS_PER_SECOND:.0} commits/s with {} clients: {verdict}",
        plan.clients
    );
}
