//! `medcard bench cache`: the insurer simulator as a child process; the load, the lookups and
//! the incremental sync in this process, through the real client and cache.

use super::super::sync::{Prefetching, sync_pages, thousands};
use medcard::cache::{Cache, CacheMsgIds, Feed, SyncReport};
use medcard::card::CardRead;
use medcard::insurer::{InsurerClient, InsurerConfig, InsurerLink};
use medcard::sim::insurer::Fixtures;
use medcard::sim::insurer::db::{
    synthetic_card_no, synthetic_card_stays_lost, synthetic_cards_for,
};
use medcard::verdict::{FactSource, VerdictCode, VerdictFacts, VerdictPolicy, assess};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// The targets.
const TARGET_LOAD: Duration = Duration::from_secs(20);
const TARGET_P99: Duration = Duration::from_micros(100);
const TARGET_RSS_MB: f64 = 100.0;
const TARGET_INCREMENTAL: Duration = Duration::from_secs(1);

pub struct Plan {
    pub events: u32,
    pub catalogue: u32,
    pub lookups: usize,
    pub page_size: u32,
    pub changes: u32,
}

/// What was measured.
struct Figures {
    load: Duration,
    cards: SyncReport,
    items: SyncReport,
    rss: f64,
    hwm: f64,
    p50: Duration,
    p99: Duration,
    verdicts: BTreeMap<String, usize>,
    incremental: Duration,
    incremental_report: SyncReport,
}

pub fn run(plan: &Plan) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("medcard-bench-cache-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let outcome = SimChild::start(&dir.join("insurer-sim.sqlite"))
        .and_then(|sim| measure(plan, &sim, &dir.join("cache.sqlite")));
    let _ = std::fs::remove_dir_all(&dir);
    let figures = outcome?;
    print(plan, &figures);
    Ok(())
}

fn measure(plan: &Plan, sim: &SimChild, db: &Path) -> Result<Figures, String> {
    println!(
        "medcard bench cache: {} card events + {} catalogue items from medcard insurer-sim \
         (pid {}), page size {}, {} lookups, {} changes",
        thousands(plan.events.into()),
        thousands(plan.catalogue.into()),
        sim.child.id(),
        plan.page_size,
        thousands(plan.lookups as u64),
        thousands(plan.changes.into())
    );
    let generating = Instant::now();
    sim.admin(&json!({"action": "generate_card_events", "count": plan.events}))?;
    sim.admin(&json!({"action": "generate_catalogue", "count": plan.catalogue}))?;
    println!(
        "generated in the simulator in {:.1} s (not part of the load figure)",
        generating.elapsed().as_secs_f64()
    );

    let cache = Cache::open(db).map_err(|e| e.to_string())?;
    let cfg = InsurerConfig {
        url: format!("http://{}/fsi/api/callService", sim.addr),
        timeout: Duration::from_secs(60),
        ..InsurerConfig::default()
    };
    let msgids = CacheMsgIds::new(
        &cfg.fixmedins_code,
        cache.writer().clone(),
        medcard::insurer::Partition::STANDALONE,
    );
    let client = InsurerClient::new(cfg).with_msgids(Box::new(msgids));
    let mut client = Prefetching::new(Box::new(client))?;
    let loading = Instant::now();
    let cards = sync(&cache, &mut client, Feed::CardEvents, plan.page_size)?;
    let items = sync(&cache, &mut client, Feed::Catalogue, plan.page_size)?;
    let load = loading.elapsed();
    let (rss, hwm) = memory()?;

    let fixture_cards = cache_fixture_persons(&cache, &mut client)?;
    let (p50, p99, verdicts) = lookups(plan, &cache, &fixture_cards)?;

    sim.admin(&json!({"action": "generate_card_events", "count": plan.changes}))?;
    let syncing = Instant::now();
    let incremental_report = sync(&cache, &mut client, Feed::CardEvents, plan.page_size)?;
    let incremental = syncing.elapsed();
    Ok(Figures {
        load,
        cards,
        items,
        rss,
        hwm,
        p50,
        p99,
        verdicts,
        incremental,
        incremental_report,
    })
}

fn sync(
    cache: &Cache,
    link: &mut dyn InsurerLink,
    feed: Feed,
    page_size: u32,
) -> Result<SyncReport, String> {
    sync_pages(cache, link, feed, page_size, None, &mut |_| {})
        .map_err(|stopped| stopped.error.to_string())
}

/// 1101 for the simulator's fixture cards, stored in the cache: the lookups' known
/// holders. Returns (卡号, certno) of those stored.
fn cache_fixture_persons(
    cache: &Cache,
    client: &mut dyn InsurerLink,
) -> Result<Vec<(String, String)>, String> {
    let fixtures = Fixtures::built_in().map_err(|e| e.to_string())?;
    let mut stored = Vec::new();
    for person in &fixtures.persons {
        for card in &person.cards {
            // Lost or replaced fixture cards are refused: not cached, fine.
            if let Ok(info) = client.person_by_card(&card.card_no, &card.card_sn) {
                cache
                    .store_person_for_card(
                        &card.card_no,
                        Some(&card.card_sn),
                        &info,
                        SystemTime::now(),
                    )
                    .map_err(|e| e.to_string())?;
                stored.push((card.card_no.clone(), person.certno.clone()));
            }
        }
    }
    Ok(stored)
}

/// Verdict lookups for random cards: 40 % synthetic cards from the feed (a tenth of
/// them lost), 25 % cards the feed left lost, 25 % unknown cards, 10 % fixture cards
/// whose holders are cached. Each = card_status + person_for_card + assess.
fn lookups(
    plan: &Plan,
    cache: &Cache,
    fixture_cards: &[(String, String)],
) -> Result<(Duration, Duration, BTreeMap<String, usize>), String> {
    let cards = synthetic_cards_for(plan.events).max(1);
    let lost_blocks = (cards / 10).max(1);
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let picks: Vec<(String, Option<String>)> = (0..plan.lookups)
        .map(|_| match rng.below(100) {
            0..40 => (synthetic_card_no(rng.below(cards)), None),
            40..65 => {
                let n = rng.below(lost_blocks) * 10 + 7;
                debug_assert!(synthetic_card_stays_lost(n));
                (synthetic_card_no(n), None)
            }
            65..90 => (synthetic_card_no(cards + rng.below(1_000_000)), None),
            _ => match fixture_cards.get(rng.below(fixture_cards.len() as u32) as usize) {
                Some((card_no, certno)) => (card_no.clone(), Some(certno.clone())),
                None => (synthetic_card_no(rng.below(cards)), None),
            },
        })
        .collect();
    let policy = VerdictPolicy {
        hospital_admdvs: "500000".into(),
        ..VerdictPolicy::default()
    };
    let now = SystemTime::now();
    let today = medcard::clock::Date::at(now);
    let mut card = CardRead {
        expiry_date: Some("2035-12-31".into()),
        ..CardRead::default()
    };
    let mut latencies = Vec::with_capacity(picks.len());
    let mut verdicts: BTreeMap<String, usize> = BTreeMap::new();
    for (card_no, certno) in picks {
        card.card_no = Some(card_no);
        card.holder.certno = certno;
        let started = Instant::now();
        let card_no = card.card_no.as_deref().unwrap_or_default();
        let record = cache.card_status(card_no).map_err(|e| e.to_string())?;
        let person = cache.person_for_card(card_no).map_err(|e| e.to_string())?;
        let facts = VerdictFacts {
            card: record,
            fetched_at: person.as_ref().map(|p| p.fetched_at),
            person: person.map(|p| p.info),
            source: FactSource::Cache,
            refusal: None,
        };
        let assessment = assess(&card, &facts, &policy, today, now);
        latencies.push(started.elapsed());
        *verdicts
            .entry(code_name(assessment.verdict.code))
            .or_default() += 1;
    }
    if latencies.is_empty() {
        return Ok((Duration::ZERO, Duration::ZERO, verdicts));
    }
    let summary = super::Summary::of(latencies);
    Ok((summary.median, summary.p99, verdicts))
}

fn code_name(code: VerdictCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{code:?}"))
}

fn print(plan: &Plan, f: &Figures) {
    let moved = |r: &SyncReport| r.to_version.saturating_sub(r.from_version);
    let loaded = moved(&f.cards) + moved(&f.items);
    let rate = loaded as f64 / f.load.as_secs_f64().max(1e-9);
    println!("{:<34} figure", "step");
    println!(
        "{:<34} {:.2} s ({}/s): {} events in {} pages, {} items in {} pages",
        "full load",
        f.load.as_secs_f64(),
        thousands(rate as u64),
        thousands(moved(&f.cards)),
        f.cards.pages,
        thousands(moved(&f.items)),
        f.items.pages
    );
    println!(
        "{:<34} {:.1} MB now, {:.1} MB peak (VmHWM)",
        "RSS of the loading process", f.rss, f.hwm
    );
    println!(
        "{:<34} p50 {:.1} µs, p99 {:.1} µs",
        format!("verdict lookups ({})", thousands(plan.lookups as u64)),
        f.p50.as_secs_f64() * 1e6,
        f.p99.as_secs_f64() * 1e6
    );
    let verdicts: Vec<String> = f
        .verdicts
        .iter()
        .map(|(code, n)| format!("{code} {}", thousands(*n as u64)))
        .collect();
    println!("{:<34} {}", "verdicts", verdicts.join(", "));
    println!(
        "{:<34} {:.3} s: {} events in {} page(s)",
        format!(
            "incremental sync ({} changes)",
            thousands(plan.changes.into())
        ),
        f.incremental.as_secs_f64(),
        thousands(moved(&f.incremental_report)),
        f.incremental_report.pages
    );
    let verdict = |met: bool| if met { "met" } else { "NOT met" };
    let load_met = f.load <= TARGET_LOAD;
    let p99_met = f.p99 <= TARGET_P99;
    let rss_met = f.hwm <= TARGET_RSS_MB;
    let incremental_met = f.incremental <= TARGET_INCREMENTAL;
    println!(
        "targets: full load ≤ 20 s: {}; lookup p99 ≤ 100 µs: {}; RSS ≤ 100 MB during the \
         load (peak VmHWM): {}; incremental sync of 10,000 changes ≤ 1 s: {} — {}",
        verdict(load_met),
        verdict(p99_met),
        verdict(rss_met),
        verdict(incremental_met),
        if load_met && p99_met && rss_met && incremental_met {
            "all met"
        } else {
            "not all met"
        }
    );
}

/// This process's VmRSS and VmHWM, in MB.
fn memory() -> Result<(f64, f64), String> {
    super::memory_mb("self")
}

/// xorshift64: reproducible picks.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u32) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % u64::from(n.max(1))) as u32
    }
}

/// `medcard insurer-sim` (this binary) on loopback; killed on drop. The soak's insurer too.
pub(super) struct SimChild {
    pub(super) child: Child,
    pub(super) addr: String,
    agent: ureq::Agent,
}

impl SimChild {
    pub(super) fn start(db: &Path) -> Result<SimChild, String> {
        let exe: PathBuf =
            std::env::current_exe().map_err(|e| format!("cannot find the medcard binary: {e}"))?;
        let mut child = Command::new(exe)
            .args([
                "--log",
                "warn",
                "insurer-sim",
                "--listen",
                "127.0.0.1:0",
                "--db",
            ])
            .arg(db)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start medcard insurer-sim: {e}"))?;
        let mut line = String::new();
        let read = match child.stdout.take() {
            Some(out) => BufReader::new(out)
                .read_line(&mut line)
                .map_err(|e| e.to_string()),
            None => Err("no stdout".to_owned()),
        };
        let addr = line.trim().to_owned();
        let mut sim = SimChild {
            child,
            addr,
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .proxy(None)
                .timeout_global(Some(Duration::from_secs(600)))
                .build()
                .into(),
        };
        if let Err(e) = read.and_then(|_| {
            sim.addr
                .parse::<std::net::SocketAddr>()
                .map(|_| ())
                .map_err(|_| format!("first line {:?} is not an address", sim.addr))
        }) {
            let _ = sim.child.kill();
            return Err(format!("medcard insurer-sim did not start: {e}"));
        }
        Ok(sim)
    }

    pub(super) fn admin(&self, request: &Value) -> Result<Value, String> {
        let mut response = self
            .agent
            .post(format!("http://{}/admin", self.addr))
            .send_json(request)
            .map_err(|e| format!("admin {request}: {e}"))?;
        let value: Value = response
            .body_mut()
            .read_json()
            .map_err(|e| format!("admin {request}: {e}"))?;
        if value["ok"] != true {
            return Err(format!("admin {request} → {value}"));
        }
        Ok(value)
    }
}

impl Drop for SimChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
