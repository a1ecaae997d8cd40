//! Leaf. The daemon's metrics for the hospital's Prometheus (docs/metrics.md), on the
//! `prometheus-client` crate: one [`Metrics`] per daemon — a registry of its own, so that two
//! daemons in one process (the tests, the demo) never count each other's work — holding the
//! typed families of what *happens*, and the small recording functions the layers call: card
//! reads ([`Metrics::card_read`]), verdicts, insurer calls, settlements, connections.
//!
//! What is *state* rather than an event (the circuit, the journal's calls in doubt, the
//! cache's age, the readers) is not kept here in step by hand: the daemon reads it from its
//! services at each scrape into a [`Scrape`] — one [`Scrape::gauge`] line per value — and
//! [`Metrics::render`] writes both, in the Prometheus text format (0.0.4) or OpenMetrics.
//!
//! Labels come from closed sets (`&'static str` from the callers' enums and constants, the
//! loaded profiles' names): no card number, ID number, name or code ever becomes a label.
//! [`Metrics::off`] (the default) records nothing: the command-line tools' links use it.

use prometheus_client::encoding::{EncodeLabelSet, prometheus_text, text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// The buckets of every duration histogram, in seconds: a card read takes 0.1–2 s, an
/// insurer call 20 ms–the timeout (a swipe's 1101 waits 0.8 s, a settlement 5 s).
const SECONDS_BUCKETS: [f64; 12] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How one insurer call attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsurerOutcome {
    /// Answered, infcode 0.
    Ok,
    /// A business refusal (infcode ≠ 0).
    Refused,
    /// A transient refusal (系统繁忙): not processed.
    Busy,
    /// HTTP 413.
    TooLarge,
    /// No answer that can be trusted (timeout, transport, HTTP 5xx, garbage).
    Uncertain,
    /// Not sent: the circuit breaker fails fast.
    CircuitOpen,
}

impl InsurerOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            InsurerOutcome::Ok => "ok",
            InsurerOutcome::Refused => "refused",
            InsurerOutcome::Busy => "busy",
            InsurerOutcome::TooLarge => "too_large",
            InsurerOutcome::Uncertain => "uncertain",
            InsurerOutcome::CircuitOpen => "circuit_open",
        }
    }
}

/// Which money-moving call a settlement outcome is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettlementKind {
    /// 2207 (and the cash-only settlement, which sends nothing).
    Settle,
    /// 2208.
    Refund,
    /// 2601 of an unanswered 2207 / 2208.
    Reversal,
}

/// How one journalled settlement call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettlementOutcome {
    /// The insurer settled (or refunded).
    Settled,
    /// Cash only (verdict `self_pay_only`): recorded here, nothing sent.
    SelfPay,
    /// The insurer refused the request: final.
    Refused,
    /// Refused about the message (a lapsed sign-in, a msgid seen before): sent again.
    Resent,
    /// Not sent or not processed (circuit open, busy, too large): nothing charged.
    NotProcessed,
    /// No answer: in doubt until a 2601 resolves it; of a 2601, no definite answer.
    Unknown,
    /// Of a 2601: the call was undone.
    Reversed,
    /// Of a 2601: the insurer never applied the call.
    NotApplied,
}

impl SettlementKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SettlementKind::Settle => "settle",
            SettlementKind::Refund => "refund",
            SettlementKind::Reversal => "reversal",
        }
    }
}

impl SettlementOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            SettlementOutcome::Settled => "settled",
            SettlementOutcome::SelfPay => "self_pay",
            SettlementOutcome::Refused => "refused",
            SettlementOutcome::Resent => "resent",
            SettlementOutcome::NotProcessed => "not_processed",
            SettlementOutcome::Unknown => "unknown",
            SettlementOutcome::Reversed => "reversed",
            SettlementOutcome::NotApplied => "not_applied",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReadLabels {
    profile: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProfileLabel {
    profile: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    credential: &'static str,
    code: &'static str,
    source: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    infno: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InfnoLabel {
    infno: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SettlementLabels {
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransportLabel {
    transport: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn seconds_histogram() -> Histogram {
    Histogram::new(SECONDS_BUCKETS)
}

/// The registry and its families (registered once, then only read and counted).
#[derive(Debug)]
struct Families {
    registry: Registry,
    card_reads: Family<ReadLabels, Counter>,
    card_read_seconds: Histograms<ProfileLabel>,
    verdicts: Family<VerdictLabels, Counter>,
    insurer_calls: Family<CallLabels, Counter>,
    insurer_call_seconds: Histograms<InfnoLabel>,
    settlements: Family<SettlementLabels, Counter>,
    connections_open: Family<TransportLabel, Gauge>,
    connections_refused: Family<TransportLabel, Counter>,
}

impl Families {
    fn new() -> Families {
        let mut registry = Registry::default();
        let families = Families {
            card_reads: Family::default(),
            card_read_seconds: Family::new_with_constructor(seconds_histogram),
            verdicts: Family::default(),
            insurer_calls: Family::default(),
            insurer_call_seconds: Family::new_with_constructor(seconds_histogram),
            settlements: Family::default(),
            connections_open: Family::default(),
            connections_refused: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "medcard_card_reads",
            "Cards read by the reader monitor, by profile and outcome (ok, or why not)",
            families.card_reads.clone(),
        );
        registry.register(
            "medcard_card_read_duration_seconds",
            "How long each card read took, by profile",
            families.card_read_seconds.clone(),
        );
        registry.register(
            "medcard_verdicts",
            "Verdicts published, by credential (card, certno, qr), code and source of the facts",
            families.verdicts.clone(),
        );
        registry.register(
            "medcard_insurer_calls",
            "Insurer call attempts by infno and outcome (circuit_open: not sent)",
            families.insurer_calls.clone(),
        );
        registry.register(
            "medcard_insurer_call_duration_seconds",
            "How long each insurer call attempt that was sent took, by infno",
            families.insurer_call_seconds.clone(),
        );
        registry.register(
            "medcard_settlements",
            "Journalled settlement calls by kind (settle, refund, reversal) and outcome",
            families.settlements.clone(),
        );
        registry.register(
            "medcard_connections_open",
            "Connections being served, by transport (unix, tcp, web)",
            families.connections_open.clone(),
        );
        registry.register(
            "medcard_connections_refused",
            "Connections refused over the limits (error 1008), by transport",
            families.connections_refused.clone(),
        );
        Families {
            registry,
            ..families
        }
    }
}

/// A daemon's metrics; cheap to clone (every clone counts into the same registry).
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    families: Option<Arc<Families>>,
}

impl Metrics {
    /// A registry of its own, every family registered (a daemon's).
    pub fn new() -> Metrics {
        Metrics {
            families: Some(Arc::new(Families::new())),
        }
    }

    /// Records nothing (the command-line tools' links, bare test setups).
    pub fn off() -> Metrics {
        Metrics::default()
    }

    fn with(&self, record: impl FnOnce(&Families)) {
        if let Some(families) = &self.families {
            record(families);
        }
    }

    /// A card read by `profile` (`unknown` when it failed before one was chosen) that ended
    /// as `outcome` (`ok`, or `card::ReadError::kind`), taking `elapsed`.
    pub fn card_read(&self, profile: &str, outcome: &'static str, elapsed: Duration) {
        self.with(|f| {
            let profile = profile.to_owned();
            f.card_read_seconds
                .get_or_create(&ProfileLabel {
                    profile: profile.clone(),
                })
                .observe(elapsed.as_secs_f64());
            f.card_reads
                .get_or_create(&ReadLabels { profile, outcome })
                .inc();
        });
    }

    /// A verdict given on a `credential` (`card`, `certno`, `qr`): its `code` and the
    /// `source` of its facts (`insurer`, `cache`).
    pub fn verdict(&self, credential: &'static str, code: &'static str, source: &'static str) {
        self.with(|f| {
            let labels = VerdictLabels {
                credential,
                code,
                source,
            };
            f.verdicts.get_or_create(&labels).inc();
        });
    }

    /// One insurer call attempt of `infno` (from the link's known set, or `other`); `sent`:
    /// how long it took, when it went out.
    pub fn insurer_call(
        &self,
        infno: &'static str,
        outcome: InsurerOutcome,
        sent: Option<Duration>,
    ) {
        self.with(|f| {
            let outcome = outcome.as_str();
            f.insurer_calls
                .get_or_create(&CallLabels { infno, outcome })
                .inc();
            if let Some(elapsed) = sent {
                f.insurer_call_seconds
                    .get_or_create(&InfnoLabel { infno })
                    .observe(elapsed.as_secs_f64());
            }
        });
    }

    /// A journalled settlement call of `kind` that ended as `outcome`.
    pub fn settlement(&self, kind: SettlementKind, outcome: SettlementOutcome) {
        self.with(|f| {
            let labels = SettlementLabels {
                kind: kind.as_str(),
                outcome: outcome.as_str(),
            };
            f.settlements.get_or_create(&labels).inc();
        });
    }

    /// A connection over `transport` admitted: counted open until [`Self::connection_closed`].
    pub fn connection_opened(&self, transport: &'static str) {
        self.with(|f| {
            f.connections_open
                .get_or_create(&TransportLabel { transport })
                .inc();
        });
    }

    /// A connection [`Self::connection_opened`] is done.
    pub fn connection_closed(&self, transport: &'static str) {
        self.with(|f| {
            f.connections_open
                .get_or_create(&TransportLabel { transport })
                .dec();
        });
    }

    /// A connection over `transport` refused over the limits.
    pub fn connection_refused(&self, transport: &'static str) {
        self.with(|f| {
            f.connections_refused
                .get_or_create(&TransportLabel { transport })
                .inc();
        });
    }

    /// The exposition: the families counted so far, then `scrape`'s gauges, as `format`.
    pub fn render(&self, scrape: Scrape, format: Format) -> String {
        let mut state = Registry::default();
        for (name, (help, family)) in scrape.gauges {
            state.register(name, help, family);
        }
        for (name, (help, counter)) in scrape.counters {
            state.register(name, help, counter);
        }
        let mut out = String::new();
        let mut registries = self
            .families
            .iter()
            .map(|f| &f.registry)
            .chain(std::iter::once(&state));
        // Writing to a String cannot fail; an error here would be the encoder's own.
        let written = registries
            .try_for_each(|registry| match format {
                Format::Prometheus => prometheus_text::encode(&mut out, registry),
                Format::OpenMetrics => text::encode_registry(&mut out, registry),
            })
            .and_then(|()| match format {
                Format::Prometheus => Ok(()),
                Format::OpenMetrics => text::encode_eof(&mut out),
            });
        if let Err(e) = written {
            tracing::error!(error = %e, "the metrics could not be encoded");
        }
        out
    }
}

/// The exposition format of a scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format, version 0.0.4 (the default).
    Prometheus,
    /// OpenMetrics 1.0 text, for a scraper that asks for it.
    OpenMetrics,
}

impl Format {
    /// OpenMetrics when the scraper's `Accept` names it (as Prometheus's own does), else
    /// the Prometheus text format.
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(accept) if accept.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    /// The answer's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

type Gauges = Family<Vec<(&'static str, String)>, Gauge<f64, AtomicU64>>;

/// The values read at one scrape: the daemon's state now (gauges), and totals something
/// else keeps (the kernel's CPU time: counters).
#[derive(Debug, Default)]
pub struct Scrape {
    gauges: BTreeMap<&'static str, (&'static str, Gauges)>,
    counters: BTreeMap<&'static str, (&'static str, Counter<f64, AtomicU64>)>,
}

impl Scrape {
    /// `name{labels} value`, with `help` (the first one given for `name`). Label values must
    /// come from closed sets: never personal data.
    pub fn gauge(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: &[(&'static str, &str)],
        value: f64,
    ) -> &mut Scrape {
        let (_, family) = self
            .gauges
            .entry(name)
            .or_insert_with(|| (help, Gauges::default()));
        let labels = labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        family.get_or_create(&labels).set(value);
        self
    }

    /// `name_total value`: a total kept elsewhere, read now.
    pub fn counter(&mut self, name: &'static str, help: &'static str, value: f64) -> &mut Scrape {
        let counter = Counter::<f64, AtomicU64>::default();
        counter.inc_by(value);
        self.counters.insert(name, (help, counter));
        self
    }

    /// One gauge per state of a set, 1 for the one that holds (`circuit{state="open"} 1`).
    pub fn state(
        &mut self,
        name: &'static str,
        help: &'static str,
        states: &[&'static str],
        now: &str,
    ) -> &mut Scrape {
        for state in states {
            let value = if *state == now { 1.0 } else { 0.0 };
            self.gauge(name, help, &[("state", state)], value);
        }
        self
    }

    /// The process's basics from `/proc/self` (Linux): resident memory, open files, CPU
    /// time, start time. What cannot be read is left out.
    pub fn process(&mut self) -> &mut Scrape {
        let process = process::read();
        if let Some(bytes) = process.resident_bytes {
            self.gauge(
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                &[],
                bytes,
            );
        }
        if let Some(fds) = process.open_fds {
            self.gauge(
                "process_open_fds",
                "Number of open file descriptors",
                &[],
                fds,
            );
        }
        if let Some(seconds) = process.cpu_seconds {
            self.counter(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                seconds,
            );
        }
        if let Some(start) = process.start_time {
            self.gauge(
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch in seconds",
                &[],
                start,
            );
        }
        self
    }
}

/// `/proc/self`, read at a scrape.
mod process {
    #[derive(Debug, Default)]
    pub struct Process {
        pub resident_bytes: Option<f64>,
        pub open_fds: Option<f64>,
        pub cpu_seconds: Option<f64>,
        pub start_time: Option<f64>,
    }

    pub fn read() -> Process {
        // SAFETY: sysconf(3) only reads configuration values.
        let (ticks, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // The fields after the command name (which may hold spaces), from `state` (field 3) on.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());
        let ticks = (ticks > 0).then_some(ticks as f64);
        let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("btime "))
                .and_then(|s| s.trim().parse::<f64>().ok())
        });
        Process {
            resident_bytes: field(24)
                .filter(|_| page > 0)
                .map(|pages| pages * page as f64),
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|dir| dir.count() as f64),
            cpu_seconds: ticks.and_then(|t| Some((field(14)? + field(15)?) / t)),
            start_time: ticks.and_then(|t| Some(boot? + field(22)? / t)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_recorded_is_rendered_with_its_labels() {
        let metrics = Metrics::new();
        metrics.insurer_call("1101", InsurerOutcome::Ok, Some(Duration::from_millis(30)));
        metrics.insurer_call("1101", InsurerOutcome::CircuitOpen, None);
        metrics.settlement(SettlementKind::Settle, SettlementOutcome::Settled);
        let mut scrape = Scrape::default();
        scrape.state("medcard_circuit", "test", &["closed", "open"], "open");
        let text = metrics.render(scrape, Format::Prometheus);
        for line in [
            "medcard_insurer_calls_total{infno=\"1101\",outcome=\"ok\"} 1",
            "medcard_insurer_calls_total{infno=\"1101\",outcome=\"circuit_open\"} 1",
            "medcard_insurer_call_duration_seconds_count{infno=\"1101\"} 1",
            "medcard_insurer_call_duration_seconds_bucket{infno=\"1101\",le=\"0.05\"} 1",
            "medcard_insurer_call_duration_seconds_bucket{infno=\"1101\",le=\"0.025\"} 0",
            "medcard_settlements_total{kind=\"settle\",outcome=\"settled\"} 1",
            "medcard_circuit{state=\"open\"} 1.0",
            "medcard_circuit{state=\"closed\"} 0.0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
        }
        let open = metrics.render(Scrape::default(), Format::OpenMetrics);
        assert!(open.ends_with("# EOF\n"), "{open}");
    }

    #[test]
    fn off_records_nothing_but_still_renders_the_scrape() {
        let metrics = Metrics::off();
        metrics.verdict("card", "ok", "insurer");
        let mut scrape = Scrape::default();
        scrape.gauge("medcard_x", "test", &[], 2.0);
        let text = metrics.render(scrape, Format::Prometheus);
        assert!(!text.contains("medcard_verdicts"), "{text}");
        assert!(text.contains("medcard_x 2.0"), "{text}");
    }

    #[test]
    fn the_process_is_read_from_proc() {
        let process = process::read();
        assert!(
            process.resident_bytes.is_some_and(|b| b > 1e6),
            "{process:?}"
        );
        assert!(process.open_fds.is_some_and(|n| n >= 3.0), "{process:?}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let start = process.start_time.unwrap_or(0.0);
        assert!(
            start > now - 86_400.0 * 30.0 && start <= now + 1.0,
            "{start} {now}"
        );
    }

    #[test]
    fn openmetrics_only_when_asked() {
        assert_eq!(Format::from_accept(None), Format::Prometheus);
        assert_eq!(
            Format::from_accept(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
            )),
            Format::OpenMetrics
        );
        assert!(
            Format::Prometheus
                .content_type()
                .starts_with("text/plain; version=0.0.4")
        );
    }
}
