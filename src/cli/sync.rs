//! `medcard sync`: bring the local cache up to date with the insurer's feeds (card status,
//! catalogue) through the real [`InsurerClient`] and [`medcard::cache::sync_feed`].
//!
//! - `medcard sync --full`: the initial load — every feed paged until caught up, with a
//!   progress line on stderr (feed, pages, events applied, version / latest, rate, ETA).
//!   "Full" ignores nothing rather than starting over: the watermarks already make a run that
//!   was interrupted resume where its last committed page ended.
//! - `medcard sync`: one incremental pass, at most `--max-pages` pages per feed.
//!
//! The next page is fetched while the current one is applied ([`Prefetching`]).
//!
//! The progress line is an `indicatif` bar redrawn in place when stderr is a terminal;
//! otherwise a plain line is written about every 10 %. The summary goes to stdout. When the insurer cannot be
//! reached the command stops with exit status 1 and says so; what was applied stays applied
//! and the next run resumes.

use super::cache::DEFAULT_DB;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use medcard::cache::{Cache, CacheMsgIds, Feed, SyncError, SyncReport, sync_feed};
use medcard::insurer::{
    CardEventPage, CataloguePage, InsurerClient, InsurerConfig, InsurerLink, LinkError, Partition,
    PersonInfo, Uncertainty, msgid::DEFAULT_NODE_COUNT,
};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The insurer endpoint by default (`medcard insurer-sim --listen 127.0.0.1:8080`).
const DEFAULT_INSURER: &str = "http://127.0.0.1:8080/fsi/api/callService";

/// Fill or update the local cache from the insurer's card-status feed and catalogue.
#[derive(Args, Debug)]
pub struct SyncArgs {
    /// The insurer's POST endpoint.
    #[arg(long, default_value = DEFAULT_INSURER)]
    pub insurer: String,
    /// The cache file (created when absent).
    #[arg(long, default_value = DEFAULT_DB)]
    pub db: PathBuf,
    /// 定点医药机构编号 (12 letters/digits), sent in every envelope.
    #[arg(long, default_value = "H50010302473")]
    pub fixmedins_code: String,
    /// 就医地医保区划 (6 digits), sent in every envelope.
    #[arg(long, default_value = "500000")]
    pub admvs: String,
    /// This workstation's node in the hospital (`hospital.node` of its medcard.toml): its
    /// msgids are of its own numbers. Absent: the node the daemon recorded in the cache file
    /// (standalone when it recorded none); given, it must be that one.
    #[arg(long)]
    pub node: Option<u16>,
    /// The hospital's `hospital.node_count`.
    #[arg(long, default_value_t = DEFAULT_NODE_COUNT)]
    pub node_count: u16,
    /// Events or items asked for per request.
    #[arg(long, default_value_t = 5000)]
    pub page_size: u32,
    /// Sync every feed until caught up, with a progress line (the initial load).
    #[arg(long)]
    pub full: bool,
    /// Without --full: at most this many pages per feed.
    #[arg(long, default_value_t = 20)]
    pub max_pages: u32,
    /// Per-request timeout, in seconds.
    #[arg(long, default_value_t = 30)]
    pub timeout_secs: u64,
}

pub fn run(args: SyncArgs) -> ExitCode {
    let cfg = InsurerConfig {
        url: args.insurer.clone(),
        fixmedins_code: args.fixmedins_code.clone(),
        mdtrtarea_admvs: args.admvs.clone(),
        timeout: Duration::from_secs(args.timeout_secs.max(1)),
        ..InsurerConfig::default()
    };
    if let Err(message) = cfg.check() {
        eprintln!("medcard sync: {message}");
        return ExitCode::from(2);
    }
    let cache = match Cache::open(&args.db) {
        Ok(cache) => cache,
        Err(e) => {
            eprintln!("medcard sync: {e}");
            return ExitCode::from(2);
        }
    };
    let partition = match partition(&args, &cache) {
        Ok(partition) => partition,
        Err(message) => {
            eprintln!("medcard sync: {message}");
            return ExitCode::from(2);
        }
    };
    // msgids numbered by the cache, so that two runs in one second never repeat one.
    let msgids = CacheMsgIds::new(&cfg.fixmedins_code, cache.writer().clone(), partition);
    let client = InsurerClient::new(cfg).with_msgids(Box::new(msgids));
    let mut client = match Prefetching::new(Box::new(client)) {
        Ok(link) => link,
        Err(message) => {
            eprintln!("medcard sync: {message}");
            return ExitCode::from(2);
        }
    };
    let max_pages = (!args.full).then_some(args.max_pages.max(1));
    let show_progress = args.full;
    for feed in [Feed::CardEvents, Feed::Catalogue] {
        let started = Instant::now();
        let mut progress = Progress::new(feed, show_progress);
        let outcome = sync_pages(
            &cache,
            &mut client,
            feed,
            args.page_size.max(1),
            max_pages,
            &mut |report| progress.update(report),
        );
        progress.finish();
        match outcome {
            Ok(report) => println!("{}", summary(&report, started.elapsed())),
            Err(stopped) => {
                println!("{}", summary(&stopped.so_far, started.elapsed()));
                return stopped_exit(&args.insurer, &stopped);
            }
        }
    }
    ExitCode::SUCCESS
}

/// The msgid partition to number from: the one the daemon recorded in the cache file (its
/// `[hospital] node`), or `--node` — which must then be the same — or a standalone
/// workstation's when neither says.
fn partition(args: &SyncArgs, cache: &Cache) -> Result<Partition, String> {
    let recorded = cache
        .writer()
        .recorded_partition()
        .map_err(|e| format!("cannot read the workstation's msgid partition: {e}"))?;
    let Some(node) = args.node else {
        return Ok(recorded.unwrap_or(Partition::STANDALONE));
    };
    let given = Partition::of_node(node, args.node_count).map_err(|e| e.to_string())?;
    match recorded {
        Some(recorded) if recorded != given => Err(format!(
            "--node {node} --node-count {} differs from the daemon's on this cache file ({}): \
             the workstation's msgids would collide with another's; give its own node, or none",
            args.node_count,
            describe(recorded)
        )),
        _ => Ok(given),
    }
}

fn describe(partition: Partition) -> String {
    match partition.node() {
        Some(node) => format!("node {node} of {}", partition.node_count()),
        None => "a standalone workstation".to_owned(),
    }
}

/// What a sync that stopped early had done, and why it stopped.
pub struct Stopped {
    pub so_far: SyncReport,
    pub error: SyncError,
}

/// Pages `feed` one page at a time (calling `on_page` after each) until caught up, or until
/// `max_pages` pages when given.
pub fn sync_pages(
    cache: &Cache,
    link: &mut dyn InsurerLink,
    feed: Feed,
    page_size: u32,
    max_pages: Option<u32>,
    on_page: &mut dyn FnMut(&SyncReport),
) -> Result<SyncReport, Box<Stopped>> {
    let mut total: Option<SyncReport> = None;
    loop {
        let page = match sync_feed(cache, link, feed, page_size, 1) {
            Ok(page) => page,
            Err(error) => {
                let so_far = total.unwrap_or_else(|| empty_report(cache, feed));
                return Err(Box::new(Stopped { so_far, error }));
            }
        };
        let total = total.get_or_insert_with(|| SyncReport {
            pages: 0,
            applied: 0,
            ..page.clone()
        });
        total.pages += page.pages;
        total.applied += page.applied;
        total.to_version = page.to_version;
        total.latest_version = page.latest_version;
        total.caught_up = page.caught_up;
        on_page(total);
        if page.caught_up || max_pages.is_some_and(|max| total.pages >= max) {
            return Ok(total.clone());
        }
    }
}

/// A report of nothing done, at the stored watermark.
fn empty_report(cache: &Cache, feed: Feed) -> SyncReport {
    let version = cache
        .feed_state(feed.as_str())
        .map(|state| state.version)
        .unwrap_or(0);
    SyncReport {
        feed,
        pages: 0,
        applied: 0,
        from_version: version,
        to_version: version,
        latest_version: 0,
        caught_up: false,
    }
}

fn stopped_exit(insurer: &str, stopped: &Stopped) -> ExitCode {
    let feed = stopped.so_far.feed.as_str();
    match &stopped.error {
        SyncError::Link { source, .. } => {
            eprintln!(
                "medcard sync: the insurer at {insurer} failed during the {feed} feed: {source}\n\
                 medcard sync: {} page(s) applied in this run are kept (version {}); run \
                 `medcard sync` again to resume",
                stopped.so_far.pages, stopped.so_far.to_version
            );
            ExitCode::FAILURE
        }
        SyncError::Cache(e) => {
            eprintln!("medcard sync: {feed} feed: {e}");
            ExitCode::from(2)
        }
    }
}

/// The summary line for one feed (stdout).
pub fn summary(report: &SyncReport, elapsed: Duration) -> String {
    let moved = report.to_version.saturating_sub(report.from_version);
    let seconds = elapsed.as_secs_f64();
    let rate = if seconds > 0.0 {
        moved as f64 / seconds
    } else {
        0.0
    };
    format!(
        "{}: {} page(s), {} applied, version {} → {} of {} ({}), {:.1} s, {}/s",
        report.feed.as_str(),
        report.pages,
        thousands(report.applied as u64),
        thousands(report.from_version),
        thousands(report.to_version),
        thousands(report.latest_version),
        if report.caught_up {
            "caught up".to_owned()
        } else if report.pages == 0 {
            "latest unknown".to_owned()
        } else {
            format!(
                "behind by {}",
                thousands(report.latest_version.saturating_sub(report.to_version))
            )
        },
        seconds,
        thousands(rate as u64)
    )
}

/// The progress line on stderr: an `indicatif` bar redrawn in place on a terminal, plain
/// lines about every 10 % otherwise.
struct Progress {
    feed: Feed,
    enabled: bool,
    /// On a terminal: the bar (drawn at most ten times a second).
    bar: Option<ProgressBar>,
    started: Instant,
    /// Non-terminal: the next tenth to report.
    next_tenth: u64,
}

impl Progress {
    fn new(feed: Feed, enabled: bool) -> Progress {
        let bar = (enabled && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10));
            if let Ok(style) = ProgressStyle::with_template("[{bar:20}] {msg}") {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        Progress {
            feed,
            enabled,
            bar,
            started: Instant::now(),
            next_tenth: 1,
        }
    }

    fn update(&mut self, report: &SyncReport) {
        if !self.enabled {
            return;
        }
        let span = report.latest_version.saturating_sub(report.from_version);
        let done = report.to_version.saturating_sub(report.from_version);
        if let Some(bar) = &self.bar {
            bar.set_length(span.max(1));
            bar.set_position(if span == 0 { 1 } else { done });
            bar.set_message(self.line(report, done, span));
            return;
        }
        let tenths = done.saturating_mul(10).checked_div(span).unwrap_or(10);
        if tenths >= self.next_tenth || report.caught_up {
            eprintln!("{}", self.line(report, done, span));
            self.next_tenth = tenths + 1;
        }
    }

    fn line(&self, report: &SyncReport, done: u64, span: u64) -> String {
        let seconds = self.started.elapsed().as_secs_f64();
        let rate = if seconds > 0.0 {
            done as f64 / seconds
        } else {
            0.0
        };
        let left = span.saturating_sub(done);
        let eta = if report.caught_up || left == 0 {
            "done".to_owned()
        } else if rate > 0.0 {
            format!("ETA {:.0} s", left as f64 / rate)
        } else {
            "ETA ?".to_owned()
        };
        let percent = if span == 0 {
            100.0
        } else {
            done as f64 * 100.0 / span as f64
        };
        format!(
            "{}: {} page(s), {} applied, version {} / {} ({percent:.0} %), {}/s, {eta}",
            self.feed.as_str(),
            report.pages,
            thousands(report.applied as u64),
            thousands(report.to_version),
            thousands(report.latest_version),
            thousands(rate as u64),
        )
    }

    /// Leaves the bar's last state on the terminal.
    fn finish(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A feed request: which feed, after which version, how many.
type PageKey = (Feed, u64, u32);

/// A request for the worker, and its answer.
enum Job {
    Page(PageKey),
    PersonByCard(String, String),
    PersonByCertno(String),
}

enum Answer {
    Cards(Result<CardEventPage, LinkError>),
    Catalogue(Result<CataloguePage, LinkError>),
    Person(Result<PersonInfo, LinkError>),
}

/// An [`InsurerLink`] that fetches the next feed page while the caller applies this one.
///
/// The link itself runs on a worker thread. After a full page that is not the last, the
/// worker is asked at once for the page after it; when the caller then asks for exactly that
/// page (the cache's watermark moved as expected) it gets the prefetched answer, otherwise
/// the prefetched one is dropped and the request is sent as asked. The feeds change nothing
/// at the insurer, so a page fetched and not used costs only the transfer. Sync still
/// applies pages one at a time, each with its watermark, in order.
pub struct Prefetching {
    jobs: Option<std::sync::mpsc::Sender<Job>>,
    answers: std::sync::mpsc::Receiver<Answer>,
    worker: Option<std::thread::JoinHandle<()>>,
    /// The page being fetched ahead, if any.
    ahead: Option<PageKey>,
}

impl Prefetching {
    pub fn new(link: Box<dyn InsurerLink>) -> Result<Prefetching, String> {
        let (jobs, job_rx) = std::sync::mpsc::channel::<Job>();
        let (answer_tx, answers) = std::sync::mpsc::channel::<Answer>();
        let worker = std::thread::Builder::new()
            .name("insurer-link".into())
            .spawn(move || {
                let mut link = link;
                for job in job_rx {
                    let answer = match job {
                        Job::Page((Feed::CardEvents, since, size)) => {
                            Answer::Cards(link.card_events(since, size))
                        }
                        Job::Page((Feed::Catalogue, since, size)) => {
                            Answer::Catalogue(link.catalogue(since, size))
                        }
                        Job::PersonByCard(card_no, card_sn) => {
                            Answer::Person(link.person_by_card(&card_no, &card_sn))
                        }
                        Job::PersonByCertno(certno) => {
                            Answer::Person(link.person_by_certno(&certno))
                        }
                    };
                    if answer_tx.send(answer).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| format!("cannot start the insurer link's thread: {e}"))?;
        Ok(Prefetching {
            jobs: Some(jobs),
            answers,
            worker: Some(worker),
            ahead: None,
        })
    }

    /// Sends `job` and waits for its answer (after draining a prefetch no one wants).
    fn ask(&mut self, job: Job) -> Result<Answer, LinkError> {
        if self.ahead.take().is_some() {
            let _ = self.answers.recv();
        }
        self.send(job)?;
        self.receive()
    }

    fn send(&self, job: Job) -> Result<(), LinkError> {
        self.jobs
            .as_ref()
            .and_then(|jobs| jobs.send(job).ok())
            .ok_or(LinkError::Uncertain(Uncertainty::LinkStopped))
    }

    fn receive(&self) -> Result<Answer, LinkError> {
        self.answers
            .recv()
            .map_err(|_| LinkError::Uncertain(Uncertainty::LinkStopped))
    }

    /// The page `key`: prefetched when it was the one fetched ahead.
    fn page(&mut self, key: PageKey) -> Result<Answer, LinkError> {
        if self.ahead == Some(key) {
            self.ahead = None;
            self.receive()
        } else {
            self.ask(Job::Page(key))
        }
    }

    /// After a page of `count` entries ending at `last`: fetch the next one ahead.
    fn read_ahead(&mut self, key: PageKey, count: usize, last: Option<u64>, latest: u64) {
        let (feed, _, size) = key;
        if let Some(last) = last.filter(|&last| count >= size as usize && last < latest) {
            let next = (feed, last, size);
            if self.send(Job::Page(next)).is_ok() {
                self.ahead = Some(next);
            }
        }
    }
}

impl Drop for Prefetching {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// An answer of the wrong kind (cannot happen: one job, one answer, in order).
fn mixed_up() -> LinkError {
    LinkError::Uncertain(Uncertainty::MixedUp)
}

impl InsurerLink for Prefetching {
    fn person_by_card(&mut self, card_no: &str, card_sn: &str) -> Result<PersonInfo, LinkError> {
        match self.ask(Job::PersonByCard(card_no.to_owned(), card_sn.to_owned()))? {
            Answer::Person(answer) => answer,
            _ => Err(mixed_up()),
        }
    }

    fn person_by_certno(&mut self, certno: &str) -> Result<PersonInfo, LinkError> {
        match self.ask(Job::PersonByCertno(certno.to_owned()))? {
            Answer::Person(answer) => answer,
            _ => Err(mixed_up()),
        }
    }

    fn card_events(
        &mut self,
        since_version: u64,
        page_size: u32,
    ) -> Result<CardEventPage, LinkError> {
        let key = (Feed::CardEvents, since_version, page_size);
        let Answer::Cards(answer) = self.page(key)? else {
            return Err(mixed_up());
        };
        let page = answer?;
        let last = page.events.last().map(|e| e.version);
        self.read_ahead(key, page.events.len(), last, page.latest_version);
        Ok(page)
    }

    fn catalogue(
        &mut self,
        since_version: u64,
        page_size: u32,
    ) -> Result<CataloguePage, LinkError> {
        let key = (Feed::Catalogue, since_version, page_size);
        let Answer::Catalogue(answer) = self.page(key)? else {
            return Err(mixed_up());
        };
        let page = answer?;
        let last = page.items.last().map(|i| i.version);
        self.read_ahead(key, page.items.len(), last, page.latest_version);
        Ok(page)
    }
}
