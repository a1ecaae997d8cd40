//! `medcard bench`: figures, printed, for the targets the issues set. Timed tests are not
//! used anywhere; this is where speed is measured.
//!
//! - `bench read`: card reads through pcscd + vpcd against a raw replay of the same APDUs.
//! - `bench serve`: `card.read` answered from a session by a `medcard serve` child process,
//!   at several numbers of concurrent clients, with the daemon's memory.
//! - `bench cache`: the insurer's feeds loaded into the local cache from a `medcard
//!   insurer-sim` child, verdict lookups from the cache, and an incremental sync.
//! - `bench settle`: settlements through the daemon's socket against the insurer simulator,
//!   in-process.
//! - `bench soak`: a bounded soak — swipes, settlements, refunds, subscriber churn, insurer
//!   faults and pcscd restarts at once; this process's RSS, descriptors and threads before
//!   and after, and every settlement reconciled.
//! - `bench hospital`: many counters of one hospital (in-process daemons, one insurer
//!   simulator, one throwaway PostgreSQL): aggregate settlements/s, the journal's
//!   replication lag to PostgreSQL, duplicate msgids, and hospital-wide reconciliation of a
//!   planted day.
//! - `bench memory`: a `medcard serve` child's memory under pipelined maximum-size
//!   `settle.preview` requests from several clients, and after them.
//!
//! - `bench web`: `card.read` over the web endpoint's WebSocket against the Unix socket,
//!   and the kiosk page in headless Chromium: insertion to the holder's name on screen.
//!
//! One file per bench; the percentiles, the millisecond format and the `/proc` memory
//! figures they share are here.

mod cache;
mod hospital;
mod memory;
mod read;
mod serve;
mod settle;
mod soak;
mod web;

use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Measure medcard: `bench read` times card reads through pcscd + vpcd; `bench serve` the
/// daemon's `card.read` throughput and latency; `bench cache` the cache's load, lookups and
/// incremental sync; `bench settle` settlements per second through the socket; `bench soak`
/// a bounded soak of everything at once; `bench memory` the daemon's memory under pipelined
/// maximum-size bills; `bench hospital` many counters of one hospital shipping to PostgreSQL;
/// `bench web` the WebSocket against the socket, and the kiosk page in headless Chromium.
#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: What,
}

/// The load levels of `bench serve` and `bench web`.
#[derive(Args)]
struct Levels {
    /// Measured seconds per level (and transport).
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Warm-up seconds per level (requests sent, not counted).
    #[arg(long, default_value_t = 1.0)]
    warm_up: f64,
    /// Concurrent clients per level.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 16, 64])]
    clients: Vec<usize>,
}

impl Levels {
    /// (seconds, warm-up, clients), each at least its least.
    fn checked(self) -> (f64, f64, Vec<usize>) {
        (
            self.seconds.max(0.1),
            self.warm_up.max(0.0),
            self.clients.into_iter().map(|n| n.max(1)).collect(),
        )
    }
}

#[derive(Subcommand)]
enum What {
    /// Read fixture cards through pcscd + vpcd and compare with a raw replay of the same APDUs.
    ///
    /// Starts pcscd if none runs (root), inserts each card into vpcd slot 0 from this
    /// process, reads it --count times (connect, transaction, read, disconnect: one swipe
    /// each), then replays the exact APDU sequence of one read the same number of times with
    /// no decoding. A PSAM (slot 1) authenticates 3.0 cards; its APDUs are replayed too, and
    /// the replay sends GET CHALLENGE where the read sent EXTERNAL AUTHENTICATE (a replayed
    /// cryptogram would only cost the card a try). Prints APDUs per read (card + PSAM),
    /// median and p99 per read, and the ratio of the medians (target ≤ 1.10).
    Read {
        /// Reads per card.
        #[arg(long, default_value_t = 1000)]
        count: usize,
        /// Cards to read: fixture files or built-in names.
        #[arg(long = "card", default_values_t = ["xiaowang".to_owned(), "gen1".to_owned(), "no-4e".to_owned(), "gen3".to_owned()])]
        cards: Vec<String>,
        /// The PSAM in vpcd slot 1: a fixture file or a built-in name.
        #[arg(long, default_value = "test-sm4")]
        psam: String,
        /// Extra card profiles.
        #[arg(long, value_name = "DIR")]
        profiles: Option<PathBuf>,
    },
    /// The web endpoint: `card.read` over the WebSocket against the Unix socket, and the
    /// kiosk page's insertion-to-screen time in headless Chromium.
    ///
    /// Starts the demo's counter in this process (the insurer simulator, the daemon on a
    /// virtual reader holding 小王's card, the web endpoint on 127.0.0.1 with an ephemeral
    /// port). For each number of --clients: that many connections at once over the Unix
    /// socket, then as many over the WebSocket, each sending `card.read` one after another
    /// with medcard's own client (a warm-up, then --seconds measured): requests/s and p99 of
    /// both and the WebSocket's share (target ≥ 50%). Then, unless --inserts 0, opens
    /// `/kiosk` in headless Chromium (Debian's chromium and chromium-driver, installed by
    /// `make deps`) and pulls and inserts the card --inserts times: from each insertion to
    /// the holder's name drawn on the page, p50 and p99 (target p99 ≤ 150 ms). A miss is
    /// reported, not an error.
    Web {
        #[command(flatten)]
        levels: Levels,
        /// Card insertions timed on the kiosk page (0: skip the browser).
        #[arg(long, default_value_t = 100)]
        inserts: usize,
    },
    /// Requests per second and latency of `card.read` answered by `medcard serve`.
    ///
    /// Starts `medcard serve --virtual CARD` (this binary) on a socket in a temporary
    /// directory, waits until it answers, then for each number of --clients runs that many
    /// connections at once, each sending `card.read` one after another: a warm-up, then
    /// --seconds measured. Prints requests/s, p50 and p99 latency, and the daemon's RSS
    /// (VmRSS, and its peak VmHWM) after each level; then compares the largest level with
    /// the targets (≥ 20,000 req/s, p99 ≤ 2 ms, RSS ≤ 30 MB). A miss is reported, not an
    /// error. The daemon is stopped with SIGTERM at the end.
    Serve {
        #[command(flatten)]
        levels: Levels,
        /// The card the daemon serves: a fixture file or a built-in name.
        #[arg(long, default_value = "xiaowang")]
        card: String,
    },
    /// Load the insurer's feeds into the local cache, then verdict lookups from it.
    ///
    /// Starts `medcard insurer-sim` (this binary) with a temporary database and has it
    /// generate --events card-status events and --catalogue catalogue items (timed apart);
    /// then, in this process, loads both feeds into a new cache through the real insurer
    /// client and `cache::sync_feed` (--page-size per request) and prints the load time and
    /// rate and this process's RSS (VmRSS, peak VmHWM); then --lookups verdicts for random
    /// cards (known, lost, unknown, and fixture cards whose holders are cached: card status +
    /// person + verdict::assess each) with p50 / p99; then --changes new events and the time
    /// of the incremental sync. Compares with the targets (load ≤ 20 s, p99 ≤ 100 µs,
    /// RSS ≤ 100 MB, incremental ≤ 1 s); a miss is reported, not an error.
    Cache {
        /// Card-status events generated in the simulator.
        #[arg(long, default_value_t = 1_000_000)]
        events: u32,
        /// Catalogue items generated in the simulator.
        #[arg(long, default_value_t = 100_000)]
        catalogue: u32,
        /// Verdict lookups.
        #[arg(long, default_value_t = 100_000)]
        lookups: usize,
        /// Events or items per request (the simulator allows up to 5000).
        #[arg(long, default_value_t = 5000)]
        page_size: u32,
        /// New events for the incremental sync.
        #[arg(long, default_value_t = 10_000)]
        changes: u32,
    },
    /// Settlements per second through the daemon's socket against the insurer simulator.
    ///
    /// All in this process, as `medcard demo` runs it: the insurer simulator on loopback (a
    /// temporary database, the built-in fixtures), the cache and settlement journal in a
    /// temporary directory (synchronous=FULL), and the daemon with 小王's card in a virtual
    /// reader. First every client registers its visits (visit.register by ID number, twelve
    /// fixture persons in turn) and previews one line of --price yuan of a 甲类 item with the
    /// personal account left out (acct_used false); then every
    /// client commits its previews one after another (a new request_id each). Prints the
    /// register + preview rate, commits/s over the commit phase's wall clock with p50 / p99 /
    /// max commit latency, the whole settlement rate, and the target (≥ 500 commits/s); a
    /// miss is reported, not an error. Everything is removed at the end.
    Settle {
        /// Settlements in all, shared among the clients.
        #[arg(long, default_value_t = 2000)]
        count: usize,
        /// Concurrent socket connections, each one settlement at a time.
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// The settler's links to the insurer (settle.links): settlements that can call the
        /// insurer at the same moment (default: as many as --clients).
        #[arg(long, value_name = "N")]
        links: Option<usize>,
        /// The bill line's price, yuan (one of the 甲类 item 阿莫西林胶囊).
        #[arg(long, default_value = "1.00")]
        price: String,
    },
    /// A bounded soak: everything at once for --minutes, then every settlement reconciled.
    ///
    /// Starts `medcard insurer-sim` (this binary) and the daemon in this process (socket,
    /// cache and journal in a temporary directory). With pcscd + vpcd (as root; the
    /// end-to-end lock is taken) the cards go through the real PC/SC stack and pcscd is
    /// restarted under the daemon about every two minutes (at least once); without them,
    /// through an in-process virtual reader and no restart — the first line says which.
    /// Meanwhile: fixture cards swapped, pulled and read (a card that may settle is
    /// registered by card, the visit cancelled); --cashiers cashiers registering by ID
    /// number, pricing (every fourth bill twice), settling (retrying 1016 / 1017 with the
    /// same request_id) and refunding every third settlement; subscribers coming and going
    /// and one staying; insurer faults in turn (latency, HTTP 500, 系统繁忙, garbage, lost
    /// replies of 2201 / 2207 / 2208 / 2601). A progress line goes to stderr every 30 s.
    ///
    /// Prints this process's RSS, open file descriptors and threads before the load, at
    /// half-time and after it (at rest), the operations and errors by kind, requests left in
    /// doubt, whether every settlement a cashier was told of is the journal's, and `medcard
    /// reconcile` of every settlement day. Exit status 1 when a settlement is unreconciled,
    /// doubled or lost, a request stays in doubt, the daemon broke (−32603, a connection
    /// dropped), pcscd's restart was not survived, or a figure grew: at rest, descriptors
    /// other than TCP > start + 4, TCP connections > the insurer links and vpcd, threads >
    /// start + 2; under load, RSS at the end > 1.5 × warmed up (a third in) + 4 MB.
    Soak {
        /// How long the load runs, minutes.
        #[arg(long, default_value_t = 5.0)]
        minutes: f64,
        /// How long the load runs, seconds (instead of --minutes).
        #[arg(long, conflicts_with = "minutes")]
        seconds: Option<f64>,
        /// Cashiers settling at once, a connection each.
        #[arg(long, default_value_t = 2)]
        cashiers: usize,
        /// The readers: pcscd + vpcd when available (auto), or either one.
        #[arg(long, value_enum, default_value_t = soak::Readers::Auto)]
        readers: soak::Readers,
    },
    /// Many counters of one hospital: settlements/s, replication lag to PostgreSQL,
    /// duplicate msgids, and hospital-wide reconciliation of a day.
    ///
    /// For each number of --counters N, all in this process: a throwaway PostgreSQL cluster
    /// (Debian's postgresql, `make deps`), the insurer simulator on loopback, and N daemons,
    /// each with its own cache directory and socket, `[hospital]` node k (node_count ≥ N)
    /// shipping to the cluster. One client per counter registers its visits by ID number and
    /// previews them, then commits them one after another. Prints, per N: the aggregate
    /// settlements/s of the commit phase (timed alone, as `bench settle` does) and of whole
    /// settlements (register + preview + commit), the replication lag (journal write →
    /// PostgreSQL: journal_log.shipped_at − journalled_at) p50 and p99 once every shipper
    /// caught up, and the msgids the simulator refused as duplicates or received twice.
    /// Then a day of --day settlements planted on both sides (the simulator's books,
    /// PostgreSQL's journal_rows) with the same setl_ids, msgids and amounts, and the time to
    /// reconcile it hospital-wide from PostgreSQL: balanced (3201), and with one settlement
    /// in PostgreSQL only (3201 + the 3202 file round trip). Targets: ≥ 500 settlements/s
    /// at 50 counters, lag p99 ≤ 1 s, 0 duplicates, reconcile ≤ 10 s; a miss is reported,
    /// not an error.
    Hospital {
        /// Numbers of counters, one level each.
        #[arg(long, value_delimiter = ',', default_values_t = [1usize, 10, 50])]
        counters: Vec<usize>,
        /// Settlements each counter makes.
        #[arg(long, default_value_t = 40)]
        settlements_per_counter: usize,
        /// Settlements of the planted day to reconcile (0: none).
        #[arg(long, default_value_t = 100_000)]
        day: usize,
    },
    /// The daemon's memory under pipelined maximum-size `settle.preview` requests.
    ///
    /// Starts `medcard insurer-sim` and `medcard serve` (this binary) as child processes on
    /// a configuration in a temporary directory (default settings, `settle.links` = --clients),
    /// registers one visit per client by ID number, then has every client write
    /// `settle.preview` requests of --lines lines one after another without waiting for the
    /// answers (pipelined) for --seconds, reading the answers meanwhile, then the answers
    /// still due. Prints the daemon's RSS at rest (baseline), its peak (VmRSS sampled every
    /// 50 ms, and VmHWM), and its RSS --idle-wait seconds after the burst, against the targets
    /// (peak ≤ 100 MB, idle after ≤ 2 × baseline); a miss is reported, not an error.
    Memory {
        /// Seconds of pipelining.
        #[arg(long, default_value_t = 60.0)]
        seconds: f64,
        /// Concurrent clients, each with a visit of its own.
        #[arg(long, default_value_t = 4)]
        clients: usize,
        /// Lines per bill (default: settle.max_bill_lines' default).
        #[arg(long, default_value_t = memory::DEFAULT_LINES)]
        lines: usize,
        /// Seconds to wait after the burst before the idle figure.
        #[arg(long, default_value_t = 5.0)]
        idle_wait: f64,
    },
}

pub fn run(args: BenchArgs) -> ExitCode {
    let outcome = match args.what {
        What::Read {
            count,
            cards,
            psam,
            profiles,
        } => read::run(count.max(1), &cards, &psam, profiles.as_deref()),
        What::Serve { levels, card } => {
            let (seconds, warm_up, clients) = levels.checked();
            serve::run(&serve::Plan {
                seconds,
                warm_up,
                clients,
                card,
            })
        }
        What::Web { levels, inserts } => {
            let (seconds, warm_up, clients) = levels.checked();
            web::run(&web::Plan {
                seconds,
                warm_up,
                clients,
                inserts,
            })
        }
        What::Cache {
            events,
            catalogue,
            lookups,
            page_size,
            changes,
        } => cache::run(&cache::Plan {
            events,
            catalogue,
            lookups,
            page_size: page_size.max(1),
            changes,
        }),
        What::Settle {
            count,
            clients,
            links,
            price,
        } => settle::run(&settle::Plan {
            count: count.max(1),
            clients: clients.max(1),
            links: links.unwrap_or(clients).max(1),
            price,
        }),
        What::Hospital {
            counters,
            settlements_per_counter,
            day,
        } => hospital::run(&hospital::Plan {
            counters: counters.into_iter().map(|n| n.clamp(1, 1000)).collect(),
            per_counter: settlements_per_counter.max(1),
            day,
        }),
        What::Soak {
            minutes,
            seconds,
            cashiers,
            readers,
        } => soak::run(&soak::Plan {
            duration: Duration::from_secs_f64(seconds.unwrap_or(minutes * 60.0).max(1.0)),
            cashiers: cashiers.max(1),
            readers,
        }),
        What::Memory {
            seconds,
            clients,
            lines,
            idle_wait,
        } => memory::run(&memory::Plan {
            seconds: seconds.max(0.1),
            clients: clients.max(1),
            lines: lines.max(1),
            idle_wait: idle_wait.max(0.0),
        }),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("medcard bench: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The median and the 99th percentile of timed samples.
struct Summary {
    median: Duration,
    p99: Duration,
}

impl Summary {
    fn of(mut samples: Vec<Duration>) -> Summary {
        samples.sort();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Summary {
            median: at(0.5),
            p99: at(0.99),
        }
    }
}

/// Milliseconds with three places.
fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

/// VmRSS and VmHWM of a process (`self` or a pid) in MB, from `/proc/PID/status`.
fn memory_mb(pid: &str) -> Result<(f64, f64), String> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let kb = |key: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<f64>().ok())
            .ok_or_else(|| format!("no {key} in {path}"))
    };
    Ok((kb("VmRSS:")? / 1024.0, kb("VmHWM:")? / 1024.0))
}
