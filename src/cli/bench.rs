//! `medcard bench`: figures, printed, for the targets the issues set. Timed tests are not
//! used anywhere; this is where speed is measured.
//!
//! - `bench read`: card reads through pcscd + vpcd against a raw replay of the same APDUs.
//! - `bench serve`: `card.read` answered from a session by a `medcard serve` child process,
//!   at several numbers of concurrent clients, with the daemon's memory.
//! - `bench cache`: the insurer's feeds loaded into the local cache from a `medcard
//!   insurer-sim` child, verdict lookups from the cache, and an incremental sync.
//! - `bench settle`: settlements through the daemon's socket against the insurer simulator,
//!   in-process (src/cli/bench_settle.rs).

#[path = "bench_settle.rs"]
mod settle_bench;

use clap::{Args, Subcommand};
use medcard::apdu::Exchanger;
use medcard::card::{CardReader, PsamSlot, ReadExtras, ReadOptions, read_in_reader_with};
use medcard::pcscd::{VPCD_PORT, VPCD_READER_0, VPCD_READER_1};
use medcard::profile::ProfileSet;
use medcard::psam::Psam;
use medcard::reader::pcsc_reader::PcscReaders;
use medcard::reader::{ReaderBackend, with_card};
use medcard::sim::vpcd::CardThread;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Measure medcard: `bench read` times card reads through pcscd + vpcd; `bench serve` the
/// daemon's `card.read` throughput and latency; `bench cache` the cache's load, lookups and
/// incremental sync; `bench settle` settlements per second through the socket.
#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: What,
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
        /// Measured seconds per level.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Warm-up seconds per level (requests sent, not counted).
        #[arg(long, default_value_t = 1.0)]
        warm_up: f64,
        /// Concurrent clients per level.
        #[arg(long, value_delimiter = ',', default_values_t = [1usize, 16, 64])]
        clients: Vec<usize>,
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
}

pub fn run(args: BenchArgs) -> ExitCode {
    let outcome = match args.what {
        What::Read {
            count,
            cards,
            psam,
            profiles,
        } => bench_read(count.max(1), &cards, &psam, profiles.as_deref()),
        What::Serve {
            seconds,
            warm_up,
            clients,
            card,
        } => serve_bench::run(&serve_bench::Plan {
            seconds: seconds.max(0.1),
            warm_up: warm_up.max(0.0),
            clients: clients.into_iter().map(|n| n.max(1)).collect(),
            card,
        }),
        What::Cache {
            events,
            catalogue,
            lookups,
            page_size,
            changes,
        } => cache_bench::run(&cache_bench::Plan {
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
        } => settle_bench::run(&settle_bench::Plan {
            count: count.max(1),
            clients: clients.max(1),
            links: links.unwrap_or(clients).max(1),
            price,
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

/// One card's figures.
struct Figures {
    card_apdus: usize,
    psam_apdus: usize,
    read: Summary,
    replay: Summary,
}

fn bench_read(
    count: usize,
    cards: &[String],
    psam: &str,
    dir: Option<&std::path::Path>,
) -> Result<(), String> {
    let profiles = super::load_profiles(dir).map_err(|e| e.to_string())?;
    let (_lock, _pcscd) = super::real_stack()?;
    let psam_image = super::load_psam(psam).map_err(|e| e.to_string())?;
    let _psam =
        CardThread::spawn(&(VPCD_PORT + 1).to_string(), psam_image).map_err(|e| e.to_string())?;
    let mut psam_readers = PcscReaders::new();
    psam_readers
        .wait_for_card(Some(VPCD_READER_1), Duration::from_secs(10))
        .map_err(|e| format!("the PSAM did not appear in {VPCD_READER_1}: {e}"))?;
    println!(
        "medcard bench read: {count} reads per card through pcscd + vpcd (card in {VPCD_READER_0}, PSAM {psam} in {VPCD_READER_1})"
    );
    println!(
        "{:<10} {:<9} {:>10} {:>10} {:>10} {:>10} {:>11} {:>11} {:>6}",
        "card",
        "profile",
        "card APDUs",
        "PSAM APDUs",
        "read p50",
        "read p99",
        "replay p50",
        "replay p99",
        "ratio"
    );
    for card in cards {
        let image = super::load_card(card).map_err(|e| e.to_string())?;
        let inserted =
            CardThread::spawn(&VPCD_PORT.to_string(), image).map_err(|e| e.to_string())?;
        let mut readers = PcscReaders::new();
        readers
            .wait_for_card(Some(VPCD_READER_0), Duration::from_secs(10))
            .map_err(|e| format!("card {card} did not appear in {VPCD_READER_0}: {e}"))?;
        let mut stack = Stack {
            cards: &mut readers,
            psam: &mut psam_readers,
            profiles: &profiles,
        };
        let (profile, figures) = measure(&mut stack, count)?;
        drop(inserted);
        readers
            .wait_for_removal(VPCD_READER_0, Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        println!(
            "{:<10} {:<9} {:>10} {:>10} {:>10} {:>10} {:>11} {:>11} {:>6.3}",
            card,
            profile,
            figures.card_apdus,
            figures.psam_apdus,
            ms(figures.read.median),
            ms(figures.read.p99),
            ms(figures.replay.median),
            ms(figures.replay.p99),
            figures.read.median.as_secs_f64() / figures.replay.median.as_secs_f64(),
        );
    }
    println!(
        "(times per read in ms; a read and a replay each connect, open a transaction and disconnect)"
    );
    Ok(())
}

/// The two connections a read uses.
struct Stack<'a> {
    cards: &'a mut PcscReaders,
    psam: &'a mut PcscReaders,
    profiles: &'a ProfileSet,
}

/// What one read sent, card side and PSAM side.
struct Recording {
    profile: String,
    card: Vec<Vec<u8>>,
    psam: Vec<Vec<u8>>,
}

fn measure(stack: &mut Stack<'_>, count: usize) -> Result<(String, Figures), String> {
    let recording = record_one_read(stack)?;
    let warm_up = count.min(50);
    let mut read = Vec::with_capacity(count);
    let mut replay = Vec::with_capacity(count);
    for round in 0..warm_up + count {
        let started = Instant::now();
        let extras = ReadExtras {
            psam: Some(PsamSlot {
                backend: &mut *stack.psam,
                reader: VPCD_READER_1,
            }),
            ..ReadExtras::default()
        };
        read_in_reader_with(&mut *stack.cards, VPCD_READER_0, stack.profiles, extras)
            .map_err(|e| e.to_string())?;
        let read_time = started.elapsed();
        let started = Instant::now();
        replay_once(stack, &recording)?;
        let replay_time = started.elapsed();
        if round >= warm_up {
            read.push(read_time);
            replay.push(replay_time);
        }
    }
    Ok((
        recording.profile,
        Figures {
            card_apdus: recording.card.len(),
            psam_apdus: recording.psam.len(),
            read: Summary::of(read),
            replay: Summary::of(replay),
        },
    ))
}

/// Reads once with the PSAM, keeping the exact bytes sent on both sides.
fn record_one_read(stack: &mut Stack<'_>) -> Result<Recording, String> {
    let (cards, profiles) = (&mut *stack.cards, stack.profiles);
    with_card(&mut *stack.psam, VPCD_READER_1, |psam_channel| {
        let mut psam_ex = Exchanger::new(psam_channel).recording();
        let mut psam = Psam::open(&mut psam_ex, VPCD_READER_1).map_err(|e| e.to_string())?;
        let (card, card_log) = with_card(cards, VPCD_READER_0, |channel| {
            let mut ex = Exchanger::new(channel).recording();
            let options = ReadOptions {
                authenticator: Some(&mut psam),
                ..ReadOptions::default()
            };
            let card = CardReader::new(profiles).read_with(&mut ex, options);
            (card, ex.take_log())
        })
        .map_err(|e| e.to_string())?;
        let profile = card.map_err(|e| e.to_string())?.profile;
        Ok(Recording {
            profile,
            card: card_log,
            psam: psam_ex.take_log(),
        })
    })
    .map_err(|e| e.to_string())?
}

/// Sends the recorded APDUs on both connections, checking only that each gets a status word.
fn replay_once(stack: &mut Stack<'_>, recording: &Recording) -> Result<(), String> {
    const EXTERNAL_AUTHENTICATE: u8 = 0x82;
    let get_challenge = [0x00, 0x84, 0x00, 0x00, 0x08];
    let cards = &mut *stack.cards;
    with_card(&mut *stack.psam, VPCD_READER_1, |psam_channel| {
        with_card(cards, VPCD_READER_0, |channel| {
            for command in &recording.card {
                let command: &[u8] = match command.get(1) {
                    Some(&EXTERNAL_AUTHENTICATE) => &get_challenge,
                    _ => command,
                };
                expect_status(channel.transmit(command))?;
            }
            Ok::<(), String>(())
        })
        .map_err(|e| e.to_string())??;
        for command in &recording.psam {
            expect_status(psam_channel.transmit(command))?;
        }
        Ok(())
    })
    .map_err(|e| e.to_string())?
}

fn expect_status(reply: Result<Vec<u8>, medcard::reader::ReaderError>) -> Result<(), String> {
    match reply {
        Ok(reply) if reply.len() >= 2 => Ok(()),
        Ok(_) => Err("the card stopped answering during the replay".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

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

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

/// `medcard bench serve`: the daemon as a child process, clients on a tokio runtime here.
mod serve_bench {
    use super::ms;
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
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
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
        let timeout = Duration::from_secs(5);
        loop {
            let info = super::super::call::call(socket, "system.info", json!({}), timeout);
            if info.as_ref().is_ok_and(|r| r.get("result").is_some()) {
                let read = super::super::call::call(
                    socket,
                    "card.read",
                    json!({"wait_ms": 5000}),
                    Duration::from_secs(10),
                )?;
                if read["result"]["session_id"].is_u64() {
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
        let path = format!("/proc/{pid}/status");
        let status =
            std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
        let kb = |key: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(key))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse::<f64>().ok())
                .ok_or_else(|| format!("no {key} in {path}"))
        };
        Ok(Memory {
            rss: kb("VmRSS:")? / 1024.0,
            hwm: kb("VmHWM:")? / 1024.0,
        })
    }

    /// `medcard serve` as a child process (this binary); stopped with SIGTERM.
    struct Daemon {
        child: Option<Child>,
        pid: u32,
    }

    impl Daemon {
        fn start(socket: &Path, card: &str, clients: usize) -> Result<Daemon, String> {
            let exe: PathBuf = std::env::current_exe()
                .map_err(|e| format!("cannot find the medcard binary: {e}"))?;
            let child = Command::new(exe)
                .args(["--log", "warn", "serve", "--config", "/nonexistent"])
                .arg("--socket")
                .arg(socket)
                .arg("--max-connections")
                .arg((clients + 4).max(64).to_string())
                .arg("--virtual")
                .arg(card)
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

        fn pid(&self) -> u32 {
            self.pid
        }

        /// Whether the daemon has exited (a zombie not reaped yet), from /proc.
        fn exited(&self) -> Option<String> {
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?;
            let state = stat.rsplit(')').next()?.split_whitespace().next()?;
            (state == "Z").then(|| "exited".to_owned())
        }

        /// SIGTERM, then waits (SIGKILL after 15 s).
        fn stop(&mut self) -> Result<ExitStatus, String> {
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
}

/// `medcard bench cache`: the insurer simulator as a child process; the load, the lookups and
/// the incremental sync in this process, through the real client and cache.
mod cache_bench {
    use super::super::sync::{Prefetching, sync_pages, thousands};
    use medcard::cache::{Cache, CacheMsgIds, Feed, SyncReport};
    use medcard::card::CardRead;
    use medcard::insurer::sim::Fixtures;
    use medcard::insurer::sim::db::{
        synthetic_card_no, synthetic_card_stays_lost, synthetic_cards_for,
    };
    use medcard::insurer::{InsurerClient, InsurerConfig, InsurerLink};
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
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
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
        let msgids = CacheMsgIds::new(&cfg.fixmedins_code, cache.writer().clone());
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
        let path = "/proc/self/status";
        let status =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
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

    /// `medcard insurer-sim` (this binary) on loopback; killed on drop.
    struct SimChild {
        child: Child,
        addr: String,
        agent: ureq::Agent,
    }

    impl SimChild {
        fn start(db: &Path) -> Result<SimChild, String> {
            let exe: PathBuf = std::env::current_exe()
                .map_err(|e| format!("cannot find the medcard binary: {e}"))?;
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

        fn admin(&self, request: &Value) -> Result<Value, String> {
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
}
