//! `/etc/medcard/medcard.toml`: every key has a default (a missing file means all
//! defaults), unknown keys are errors, and [`Config::check`] explains what is wrong in the
//! operator's terms. Command-line flags override the file; SIGHUP reloads it.

pub use super::scanners::{ScannersSection, SerialScannerConfig};
pub use super::web::settings::{KioskDepartment, KioskSection, MetricsSection, WebSection};
use crate::insurer::{Partition, PartitionError};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Where the daemon looks for its configuration.
pub const DEFAULT_PATH: &str = "/etc/medcard/medcard.toml";

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub socket: SocketConfig,
    pub access: AccessConfig,
    pub readers: ReadersConfig,
    pub insurer: InsurerSection,
    pub cache: CacheSection,
    pub settle: SettleSection,
    pub hospital: HospitalSection,
    pub web: WebSection,
    pub kiosk: KioskSection,
    pub scanners: ScannersSection,
    pub metrics: MetricsSection,
}

/// The listeners and their limits.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SocketConfig {
    /// The Unix socket (ignored when systemd passes a listening socket).
    pub path: PathBuf,
    /// Its permission bits, octal (never world-accessible).
    pub mode: String,
    /// Its group (a name); empty: the daemon's own group.
    pub group: String,
    /// An optional loopback TCP listener, `127.0.0.1:PORT`; empty: off.
    pub tcp: String,
    /// Connections served at a time; the next one is refused with error 1008.
    pub max_connections: usize,
    /// The longest request line, in bytes.
    pub max_line_bytes: usize,
    /// Outgoing lines queued per connection; a subscriber that fills it is dropped.
    pub queue_lines: usize,
    /// Requests one connection may have in progress at a time.
    pub max_inflight: usize,
    /// On SIGTERM, how long requests in progress may take to finish.
    pub shutdown_grace_ms: u64,
    /// Connections kept for other users: one local user (uid) may hold at most
    /// `max_connections` less these, so that one program that leaks connections cannot
    /// lock the others out; 0: no per-user limit.
    pub reserved_for_other_users: usize,
    /// A connection with no request in progress and no subscription is closed after this
    /// many seconds without a request (a client that leaks connections cannot hold every
    /// slot for ever); 0: never.
    pub idle_timeout_s: u64,
    /// Connections kept for members of `access.allowed_groups` (the cashier programs): when
    /// only these are left, a caller in no allowed group is refused (1008) and a member is
    /// still served. Absent: 1 when `access.allowed_groups` is set (and `max_connections`
    /// is more than 1), else 0; see [`Config::reserved_for_allowed_groups`].
    pub reserved_for_allowed_groups: Option<usize>,
    /// A request line at least this long (a large bill) is heavy (`serve::heavy`).
    pub heavy_request_bytes: usize,
    /// Heavy requests parsed and worked on at once, daemon-wide.
    pub max_heavy_requests: usize,
    /// How long a heavy request waits for a turn before it is answered 1020 (busy, retry).
    pub heavy_wait_ms: u64,
}

impl Default for SocketConfig {
    fn default() -> SocketConfig {
        SocketConfig {
            path: PathBuf::from("/run/medcard/medcard.sock"),
            mode: "0660".to_owned(),
            group: String::new(),
            tcp: String::new(),
            max_connections: 64,
            max_line_bytes: 1024 * 1024,
            queue_lines: 256,
            max_inflight: 16,
            shutdown_grace_ms: 5000,
            idle_timeout_s: 300,
            reserved_for_other_users: 2,
            reserved_for_allowed_groups: None,
            heavy_request_bytes: 64 * 1024,
            max_heavy_requests: 2,
            heavy_wait_ms: 10_000,
        }
    }
}

/// Who may call the methods that touch the card (`card.refresh`, `card.verify_pin`).
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AccessConfig {
    /// Group names; a caller whose primary or supplementary group is one of them may call
    /// mutating methods. Empty: everyone who can open the socket.
    pub allowed_groups: Vec<String>,
}

/// The reader monitor.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReadersConfig {
    /// The PSAM reader: `auto`, `none` or a reader name.
    pub psam: String,
    /// A directory of extra card profiles (apdu-specs/*.toml); empty: built-in only.
    pub profiles: String,
    /// How often readers are polled when PC/SC cannot wait for changes, in milliseconds.
    pub poll_ms: u64,
}

impl Default for ReadersConfig {
    fn default() -> ReadersConfig {
        ReadersConfig {
            psam: "auto".to_owned(),
            profiles: String::new(),
            poll_ms: 250,
        }
    }
}

/// The insurer link: 1101 on every swipe (bounded wait) and the background sync.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InsurerSection {
    /// The platform's POST endpoint; empty: no insurer link (verdicts from the cache only).
    pub url: String,
    /// 定点医药机构编号 (12 letters / digits).
    pub fixmedins_code: String,
    pub fixmedins_name: String,
    /// 就医地医保区划: the hospital's region (6 digits), also the verdicts' home region.
    pub mdtrtarea_admvs: String,
    /// 经办人 (`opter`) and name of registrations made at a self-service terminal (the
    /// envelope's `opter_type` 2); the counter's are the link's own.
    pub kiosk_opter: String,
    pub kiosk_opter_name: String,
    /// 1101 on a swipe: the longest wait before the verdict falls back to the cache, ms.
    pub timeout_ms: u64,
    /// Seconds between two background syncs of the card-status feed and the catalogue.
    pub sync_interval_s: u64,
    /// Events / items asked for per feed page.
    pub page_size: u32,
    /// A region's refusal rules (insurer-refusals/ format), tried before the built-in
    /// ones; empty: the built-in rules only.
    pub refusals: PathBuf,
}

impl Default for InsurerSection {
    fn default() -> InsurerSection {
        let link = crate::insurer::InsurerConfig::default();
        InsurerSection {
            url: String::new(),
            fixmedins_code: link.fixmedins_code,
            fixmedins_name: link.fixmedins_name,
            mdtrtarea_admvs: link.mdtrtarea_admvs,
            kiosk_opter: link.kiosk_opter,
            kiosk_opter_name: link.kiosk_opter_name,
            timeout_ms: 800,
            sync_interval_s: 60,
            page_size: 500,
            refusals: PathBuf::new(),
        }
    }
}

impl InsurerSection {
    /// The link's settings for this section, with a per-attempt `timeout` and no retries.
    pub fn link_config(&self, timeout: std::time::Duration) -> crate::insurer::InsurerConfig {
        crate::insurer::InsurerConfig {
            url: self.url.trim().to_owned(),
            fixmedins_code: self.fixmedins_code.clone(),
            fixmedins_name: self.fixmedins_name.clone(),
            mdtrtarea_admvs: self.mdtrtarea_admvs.clone(),
            kiosk_opter: self.kiosk_opter.clone(),
            kiosk_opter_name: self.kiosk_opter_name.clone(),
            timeout,
            retries: 0,
            ..crate::insurer::InsurerConfig::default()
        }
    }

    /// Whether a link is configured.
    pub fn enabled(&self) -> bool {
        !self.url.trim().is_empty()
    }
}

/// The local cache the verdicts fall back to.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSection {
    /// The SQLite file; empty: no cache. Without an insurer link an absent file is not created.
    pub path: PathBuf,
    /// Cached facts older than this many seconds give the verdict `stale_cache`.
    pub stale_limit_s: u64,
    /// The insutypes the counter settles under, preferred first.
    pub insutype_preference: Vec<String>,
}

impl Default for CacheSection {
    fn default() -> CacheSection {
        CacheSection {
            path: PathBuf::from("/var/lib/medcard/cache.sqlite"),
            stale_limit_s: 86_400,
            insutype_preference: vec!["310".to_owned(), "390".to_owned()],
        }
    }
}

/// Settlement at this counter (needs the insurer link and the cache).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SettleSection {
    /// 医院等级 of this hospital, for the policy's rule: "1", "2" or "3".
    pub hosp_lv: String,
    /// 医疗类别 when `visit.register` names none (11 普通门诊).
    pub med_type: String,
    /// The policy for local previews when none matches the person (a built-in id).
    pub default_policy: String,
    /// A directory of extra policy files (fixtures/policy/*.toml shape); empty: built-in.
    pub policy_dir: String,
    /// How long one 2207 / 2208 / 2601 may take before its outcome counts as unknown, ms.
    pub timeout_ms: u64,
    /// Links to the insurer for settlement: visits that can settle at the same moment.
    pub links: usize,
    /// 2601 tries inside one commit before it answers `unknown` (the resolver goes on).
    pub reversal_tries: u32,
    /// Seconds between two passes of the background resolver over unanswered calls.
    pub resolve_interval_s: u64,
    /// The most lines one bill may have; `settle.preview` refuses a longer one (−32602).
    pub max_bill_lines: usize,
    /// The most lines one 2204 call carries; a longer bill is uploaded in several calls.
    pub max_upload_lines: usize,
}

impl Default for SettleSection {
    fn default() -> SettleSection {
        SettleSection {
            hosp_lv: "3".to_owned(),
            med_type: "11".to_owned(),
            default_policy: "cq-seed".to_owned(),
            policy_dir: String::new(),
            timeout_ms: 5_000,
            links: 4,
            reversal_tries: 3,
            resolve_interval_s: 30,
            max_bill_lines: crate::settle::service::DEFAULT_MAX_BILL_LINES,
            max_upload_lines: crate::settle::service::DEFAULT_MAX_UPLOAD_LINES,
        }
    }
}

/// This workstation among the hospital's: its node numbers its msgids and serials, and the
/// hospital database its journal is shipped to (docs/hospital.md). Without `database` the
/// workstation's journal stays on it alone.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HospitalSection {
    /// This workstation's node, `0..node_count`, its own in the hospital; absent: a standalone
    /// workstation (all msgid numbers, serials without a node).
    pub node: Option<u16>,
    /// How many nodes the msgid numbers of a second are divided among (1..=1000).
    pub node_count: u16,
    /// This workstation's name in the hospital database; empty: the host name.
    pub workstation: String,
    /// The hospital database, a libpq-style `key=value` connection string without a
    /// password; empty: nothing is shipped.
    pub database: String,
    /// A file holding the database role's password (one line, mode 0600 or stricter).
    pub password_file: PathBuf,
    /// The CA certificate (PEM) of the database server's; set: TLS is required.
    pub ssl_root_cert: PathBuf,
    /// How often the journal is shipped when caught up, ms.
    pub ship_interval_ms: u64,
}

impl Default for HospitalSection {
    fn default() -> HospitalSection {
        HospitalSection {
            node: None,
            node_count: crate::insurer::msgid::DEFAULT_NODE_COUNT,
            workstation: String::new(),
            database: String::new(),
            password_file: PathBuf::new(),
            ssl_root_cert: PathBuf::new(),
            ship_interval_ms: 500,
        }
    }
}

impl HospitalSection {
    /// The msgid numbers this workstation owns (standalone when no node is set).
    pub fn partition(&self) -> Result<Partition, PartitionError> {
        match self.node {
            None => Ok(Partition::STANDALONE),
            Some(node) => Partition::of_node(node, self.node_count),
        }
    }

    /// Whether the journal is shipped to a hospital database.
    pub fn ships(&self) -> bool {
        !self.database.trim().is_empty()
    }

    /// The shipper's settings.
    pub fn settings(&self) -> crate::hospital::HospitalSettings {
        crate::hospital::HospitalSettings {
            database: self.database.trim().to_owned(),
            password_file: self.password_file.clone(),
            ssl_root_cert: self.ssl_root_cert.clone(),
            ship_interval: std::time::Duration::from_millis(self.ship_interval_ms.max(1)),
        }
    }

    /// `workstation`, or the host name when it is empty.
    pub fn workstation_name(&self) -> String {
        let name = self.workstation.trim();
        if !name.is_empty() {
            return name.to_owned();
        }
        let mut buffer = [0u8; 256];
        // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it.
        let ok = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) } == 0;
        let end = buffer.iter().position(|b| *b == 0).unwrap_or(0);
        match ok.then(|| String::from_utf8_lossy(&buffer[..end]).into_owned()) {
            Some(host) if !host.is_empty() => host,
            _ => "localhost".to_owned(),
        }
    }

    fn check(&self, cache_path: &Path, findings: &mut Findings) {
        if !self.ships() {
            return;
        }
        if let Err(e) = crate::hospital::connect::parse(&self.settings()) {
            findings.errors.push(e.to_string());
        }
        if self.node.is_none() {
            findings.errors.push(
                "hospital.database is set but hospital.node is not: every workstation of a \
                 hospital needs a node of its own, or its msgids collide with the others' \
                 (docs/hospital.md)"
                    .to_owned(),
            );
        }
        if self.ship_interval_ms == 0 {
            findings
                .errors
                .push("hospital.ship_interval_ms must be at least 1".to_owned());
        }
        if cache_path.as_os_str().is_empty() {
            findings.warnings.push(
                "hospital.database is set but cache.path is empty: there is no journal to ship"
                    .to_owned(),
            );
        }
    }
}

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid medcard TOML: {source}")]
    Syntax {
        path: PathBuf,
        #[source]
        source: SyntaxError,
    },
    #[error("{path}: {}", problems.join("; "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
}

/// Why a configuration text is not medcard TOML: where (line, column, the key on that line)
/// and what kind of mistake, with TOML's own account as the source.
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub struct SyntaxError {
    /// 1-based line and column of the mistake, when TOML can tell.
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// The key (with its table: `socket.mode`) on that line, when there is one.
    pub key: Option<String>,
    pub kind: SyntaxKind,
    source: Box<toml::de::Error>,
}

/// The kinds of mistake a configuration text can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyntaxKind {
    /// A key medcard does not know (misspelt, or in the wrong table).
    UnknownKey,
    /// A value of the wrong type (a string for a number …).
    WrongType,
    /// A value of the right type that is not allowed.
    BadValue,
    /// Not TOML at all.
    Toml,
}

impl SyntaxError {
    fn new(text: &str, source: toml::de::Error) -> SyntaxError {
        let message = source.message();
        let kind = if message.starts_with("unknown field") {
            SyntaxKind::UnknownKey
        } else if message.starts_with("invalid type") {
            SyntaxKind::WrongType
        } else if message.starts_with("invalid value") || message.starts_with("unknown variant") {
            SyntaxKind::BadValue
        } else {
            SyntaxKind::Toml
        };
        let place = source.span().map(|span| place_of(text, span.start));
        SyntaxError {
            line: place.as_ref().map(|p| p.line),
            column: place.as_ref().map(|p| p.column),
            key: place.and_then(|p| p.key),
            kind,
            source: Box::new(source),
        }
    }
}

/// Where an offset of a configuration text is: its line and column, and the key of that
/// line within its table.
struct Place {
    line: usize,
    column: usize,
    key: Option<String>,
}

fn place_of(text: &str, offset: usize) -> Place {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    let table = before
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_owned());
    let this_line = text[line_start..].lines().next().unwrap_or("");
    let key = this_line
        .split_once('=')
        .map(|(key, _)| key.trim().to_owned())
        .filter(|key| !key.is_empty() && !key.starts_with('#'))
        .map(|key| match &table {
            Some(table) => format!("{table}.{key}"),
            None => key,
        });
    Place { line, column, key }
}

/// What [`Config::check`] finds.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Findings {
    /// The daemon refuses to start with these.
    pub errors: Vec<String>,
    /// Worth knowing; the daemon starts.
    pub warnings: Vec<String>,
}

/// A loaded configuration and whether it came from a file.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// `false`: the file did not exist, every key has its default.
    pub from_file: bool,
}

impl Config {
    /// Reads `path`; a missing file gives the defaults. Errors when the file is unreadable,
    /// malformed or [`check`](Self::check) finds errors.
    pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Loaded {
                    config: Config::default(),
                    from_file: false,
                });
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let config = Config::parse(&text).map_err(|source| ConfigError::Syntax {
            path: path.to_owned(),
            source,
        })?;
        config.validated(path).map(|config| Loaded {
            config,
            from_file: true,
        })
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<Config, SyntaxError> {
        toml::from_str(text).map_err(|e| SyntaxError::new(text, e))
    }

    /// `self`, or the errors [`check`](Self::check) finds.
    pub fn validated(self, path: &Path) -> Result<Config, ConfigError> {
        let findings = self.check();
        if findings.errors.is_empty() {
            Ok(self)
        } else {
            Err(ConfigError::Invalid {
                path: path.to_owned(),
                problems: findings.errors,
            })
        }
    }

    /// Errors (the daemon will not start) and warnings, in the operator's terms.
    pub fn check(&self) -> Findings {
        let mut findings = Findings::default();
        self.socket.check(&mut findings);
        self.check_reserved_for_allowed_groups(&mut findings);
        for group in &self.access.allowed_groups {
            if crate::serve::peer::group_id(group).is_none() {
                findings.warnings.push(format!(
                    "access.allowed_groups: no group {group:?} on this machine; nobody is \
                     admitted through it"
                ));
            }
        }
        if self.readers.poll_ms == 0 {
            findings
                .errors
                .push("readers.poll_ms must be at least 1".to_owned());
        }
        self.check_insurer(&mut findings);
        self.check_settle(&mut findings);
        self.check_hospital(&mut findings);
        self.hospital.check(&self.cache.path, &mut findings);
        self.web.check(&mut findings);
        self.kiosk.check(&mut findings);
        self.scanners.check(&mut findings);
        self.metrics.check(&self.web, &mut findings);
        findings
    }

    /// The workstation's msgid partition (standalone when `hospital.node` is unset or, in a
    /// configuration [`check`](Self::check) refuses, wrong).
    pub fn partition(&self) -> Partition {
        self.hospital.partition().unwrap_or(Partition::STANDALONE)
    }

    fn check_hospital(&self, findings: &mut Findings) {
        let hospital = &self.hospital;
        let checked = match hospital.node {
            Some(node) => Partition::of_node(node, hospital.node_count),
            None => Partition::of_node(0, hospital.node_count),
        };
        if let Err(e) = checked {
            findings.errors.push(e.to_string());
        } else if hospital.node.is_none()
            && hospital.node_count != crate::insurer::msgid::DEFAULT_NODE_COUNT
        {
            findings.warnings.push(format!(
                "hospital.node_count ({}) has no effect without hospital.node: this is a \
                 standalone workstation",
                hospital.node_count
            ));
        }
    }

    /// The connections kept for members of `access.allowed_groups`: the configured number,
    /// or by default 1 when groups are listed (0 when `max_connections` is 1); always 0
    /// without `access.allowed_groups` (nobody could take them).
    pub fn reserved_for_allowed_groups(&self) -> usize {
        if self.access.allowed_groups.is_empty() {
            return 0;
        }
        self.socket
            .reserved_for_allowed_groups
            .unwrap_or(usize::from(self.socket.max_connections > 1))
    }

    fn check_reserved_for_allowed_groups(&self, findings: &mut Findings) {
        let Some(reserved) = self.socket.reserved_for_allowed_groups else {
            return;
        };
        if reserved > 0 && self.access.allowed_groups.is_empty() {
            findings.warnings.push(format!(
                "socket.reserved_for_allowed_groups ({reserved}) has no effect: \
                 access.allowed_groups is empty"
            ));
        } else if reserved >= self.socket.max_connections {
            findings.errors.push(format!(
                "socket.reserved_for_allowed_groups ({reserved}) must be less than \
                 socket.max_connections ({}): callers in no allowed group would never get a \
                 connection",
                self.socket.max_connections
            ));
        }
    }

    fn check_settle(&self, findings: &mut Findings) {
        let settle = &self.settle;
        if !["1", "2", "3"].contains(&settle.hosp_lv.as_str()) {
            findings.errors.push(format!(
                "settle.hosp_lv must be 1, 2 or 3, not {:?}",
                settle.hosp_lv
            ));
        }
        for (key, value) in [
            ("settle.timeout_ms", settle.timeout_ms),
            ("settle.links", settle.links as u64),
            ("settle.reversal_tries", u64::from(settle.reversal_tries)),
            ("settle.resolve_interval_s", settle.resolve_interval_s),
            ("settle.max_bill_lines", settle.max_bill_lines as u64),
            ("settle.max_upload_lines", settle.max_upload_lines as u64),
        ] {
            if value == 0 {
                findings.errors.push(format!("{key} must be at least 1"));
            }
        }
        if let Err(e) =
            crate::settle::service::load_policies(&settle.policy_dir, &settle.default_policy)
        {
            findings.errors.push(format!("settle: {e}"));
        }
    }

    fn check_insurer(&self, findings: &mut Findings) {
        let insurer = &self.insurer;
        for (key, value) in [
            ("insurer.timeout_ms", insurer.timeout_ms),
            ("insurer.sync_interval_s", insurer.sync_interval_s),
            ("insurer.page_size", u64::from(insurer.page_size)),
        ] {
            if value == 0 {
                findings.errors.push(format!("{key} must be at least 1"));
            }
        }
        if let Err(e) = crate::insurer::RefusalRules::with_region_file(Some(&insurer.refusals)) {
            findings.errors.push(format!("insurer.refusals: {e}"));
        }
        if insurer.enabled() {
            if let Err(problem) = insurer
                .link_config(std::time::Duration::from_millis(insurer.timeout_ms))
                .check()
            {
                findings.errors.push(format!("insurer: {problem}"));
            }
            if self.cache.path.as_os_str().is_empty() {
                findings.warnings.push(
                    "cache.path is empty: with the insurer down, swipes get no verdict from a \
                     cache"
                        .to_owned(),
                );
            }
        }
        if self.cache.insutype_preference.is_empty() {
            findings.warnings.push(
                "cache.insutype_preference is empty: every verdict will be not_insured".to_owned(),
            );
        }
    }

    /// The socket's permission bits (valid after [`check`](Self::check)).
    pub fn socket_mode(&self) -> u32 {
        parse_mode(&self.socket.mode).unwrap_or(0o660)
    }

    /// The TCP listener's address, when one is configured.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.socket.tcp.trim().parse().ok()
    }

    /// Every key with its value, its meaning, and whether it differs from the default.
    pub fn explain(&self) -> String {
        let defaults = Config::default();
        let settings: [Setting; 58] = [
            (
                "socket.path",
                |c| text(&c.socket.path.display().to_string()),
                "the Unix socket (systemd's socket, when passed, wins)",
            ),
            (
                "socket.mode",
                |c| text(&c.socket.mode),
                "permission bits of the socket, octal; never world-accessible",
            ),
            (
                "socket.group",
                |c| text(&c.socket.group),
                "group owning the socket; empty = the daemon's group",
            ),
            (
                "socket.tcp",
                |c| text(&c.socket.tcp),
                "loopback TCP listener (127.0.0.1:PORT); empty = off",
            ),
            (
                "socket.max_connections",
                |c| c.socket.max_connections.to_string(),
                "connections at a time; the next is refused (error 1008)",
            ),
            (
                "socket.max_line_bytes",
                |c| c.socket.max_line_bytes.to_string(),
                "longest request line; longer ones get -32600",
            ),
            (
                "socket.queue_lines",
                |c| c.socket.queue_lines.to_string(),
                "outgoing lines queued per connection; a subscriber filling it is dropped",
            ),
            (
                "socket.max_inflight",
                |c| c.socket.max_inflight.to_string(),
                "requests in progress per connection",
            ),
            (
                "socket.heavy_request_bytes",
                |c| c.socket.heavy_request_bytes.to_string(),
                "a request line this long is heavy (large bill): limited daemon-wide",
            ),
            (
                "socket.max_heavy_requests",
                |c| c.socket.max_heavy_requests.to_string(),
                "heavy requests worked on at once, daemon-wide",
            ),
            (
                "socket.heavy_wait_ms",
                |c| c.socket.heavy_wait_ms.to_string(),
                "a heavy request's longest wait for a turn, then 1020 busy, ms",
            ),
            (
                "socket.shutdown_grace_ms",
                |c| c.socket.shutdown_grace_ms.to_string(),
                "on SIGTERM, time left for requests in progress",
            ),
            (
                "socket.reserved_for_other_users",
                |c| c.socket.reserved_for_other_users.to_string(),
                "one local user may hold max_connections less these; 0 = no per-user limit",
            ),
            (
                "socket.idle_timeout_s",
                |c| c.socket.idle_timeout_s.to_string(),
                "an idle connection (no request, no subscription) is closed after it; 0 = never",
            ),
            (
                "socket.reserved_for_allowed_groups",
                |c| match c.socket.reserved_for_allowed_groups {
                    Some(reserved) => reserved.to_string(),
                    None => format!("auto ({})", c.reserved_for_allowed_groups()),
                },
                "connections kept for access.allowed_groups' members; auto = 1 with groups",
            ),
            (
                "access.allowed_groups",
                |c| format!("{:?}", c.access.allowed_groups),
                "groups allowed card.refresh / card.verify_pin; [] = everyone",
            ),
            (
                "readers.psam",
                |c| text(&c.readers.psam),
                "PSAM reader: auto, none or a reader name",
            ),
            (
                "readers.profiles",
                |c| text(&c.readers.profiles),
                "extra card profiles directory; empty = built-in only",
            ),
            (
                "readers.poll_ms",
                |c| c.readers.poll_ms.to_string(),
                "reader polling interval, ms",
            ),
            (
                "insurer.url",
                |c| text(&c.insurer.url),
                "the insurer's POST endpoint; empty = no link (verdicts from the cache only)",
            ),
            (
                "insurer.fixmedins_code",
                |c| text(&c.insurer.fixmedins_code),
                "定点医药机构编号, 12 letters/digits",
            ),
            (
                "insurer.fixmedins_name",
                |c| text(&c.insurer.fixmedins_name),
                "定点医药机构名称",
            ),
            (
                "insurer.mdtrtarea_admvs",
                |c| text(&c.insurer.mdtrtarea_admvs),
                "the hospital's 医保区划 (6 digits); other 参保地 give other_region",
            ),
            (
                "insurer.kiosk_opter",
                |c| text(&c.insurer.kiosk_opter),
                "经办人 of self-service (kiosk) registrations, opter_type 2",
            ),
            (
                "insurer.kiosk_opter_name",
                |c| text(&c.insurer.kiosk_opter_name),
                "经办人姓名 of self-service (kiosk) registrations",
            ),
            (
                "insurer.timeout_ms",
                |c| c.insurer.timeout_ms.to_string(),
                "1101 on a swipe: longest wait before falling back to the cache, ms",
            ),
            (
                "insurer.sync_interval_s",
                |c| c.insurer.sync_interval_s.to_string(),
                "seconds between background syncs of the card-status feed and catalogue",
            ),
            (
                "insurer.page_size",
                |c| c.insurer.page_size.to_string(),
                "events / items per feed page",
            ),
            (
                "insurer.refusals",
                |c| text(&c.insurer.refusals.display().to_string()),
                "a region's refusal rules (insurer-refusals/ format) before the built-in ones; empty = built-in only",
            ),
            (
                "cache.path",
                |c| text(&c.cache.path.display().to_string()),
                "the SQLite cache; empty = none",
            ),
            (
                "cache.stale_limit_s",
                |c| c.cache.stale_limit_s.to_string(),
                "cached facts older than this give stale_cache (self-pay only), s",
            ),
            (
                "cache.insutype_preference",
                |c| format!("{:?}", c.cache.insutype_preference),
                "insutypes the counter settles under, preferred first",
            ),
            (
                "settle.hosp_lv",
                |c| text(&c.settle.hosp_lv),
                "医院等级 for the policy's rule (1, 2, 3)",
            ),
            (
                "settle.med_type",
                |c| text(&c.settle.med_type),
                "医疗类别 when visit.register names none",
            ),
            (
                "settle.default_policy",
                |c| text(&c.settle.default_policy),
                "policy for local previews when none matches",
            ),
            (
                "settle.policy_dir",
                |c| text(&c.settle.policy_dir),
                "extra policy files; empty = built-in only",
            ),
            (
                "settle.timeout_ms",
                |c| c.settle.timeout_ms.to_string(),
                "a 2207 / 2208 / 2601 unanswered this long is unknown (then reversed), ms",
            ),
            (
                "settle.links",
                |c| c.settle.links.to_string(),
                "insurer links for settlement (visits settling at once)",
            ),
            (
                "settle.reversal_tries",
                |c| c.settle.reversal_tries.to_string(),
                "2601 tries inside one commit before it answers unknown",
            ),
            (
                "settle.resolve_interval_s",
                |c| c.settle.resolve_interval_s.to_string(),
                "seconds between passes of the background resolver",
            ),
            (
                "settle.max_bill_lines",
                |c| c.settle.max_bill_lines.to_string(),
                "most lines per bill; settle.preview refuses a longer one (-32602)",
            ),
            (
                "settle.max_upload_lines",
                |c| c.settle.max_upload_lines.to_string(),
                "most lines per 2204 call; longer bills are uploaded in several calls",
            ),
            (
                "hospital.node",
                |c| c.hospital.node.map_or("none".to_owned(), |n| n.to_string()),
                "this workstation's node (0..node_count), its own in the hospital; none = standalone",
            ),
            (
                "hospital.node_count",
                |c| c.hospital.node_count.to_string(),
                "nodes sharing the 10,000 msgids of a second (1..1000): 10000/node_count each",
            ),
            (
                "hospital.workstation",
                |c| text(&c.hospital.workstation),
                "this workstation's name in the hospital database; empty = the host name",
            ),
            (
                "hospital.database",
                |c| text(&c.hospital.database),
                "hospital PostgreSQL, key=value without password; empty = ship nothing",
            ),
            (
                "hospital.password_file",
                |c| text(&c.hospital.password_file.display().to_string()),
                "the database role's password, one line; readable by the daemon's user only",
            ),
            (
                "hospital.ssl_root_cert",
                |c| text(&c.hospital.ssl_root_cert.display().to_string()),
                "CA of the database server (PEM); set = TLS required, empty = loopback only",
            ),
            (
                "hospital.ship_interval_ms",
                |c| c.hospital.ship_interval_ms.to_string(),
                "how often the journal is shipped when caught up, ms",
            ),
            (
                "web.listen",
                |c| text(&c.web.listen),
                "loopback HTTP + WebSocket endpoint for browsers and kiosks; empty = off",
            ),
            (
                "web.allowed_origins",
                |c| format!("{:?}", c.web.allowed_origins),
                "origins whose pages may call (exact); the kiosk page is always allowed",
            ),
            (
                "web.token_file",
                |c| text(&c.web.token_file.display().to_string()),
                "the HIS's client token (every method); made at first start, 0640",
            ),
            (
                "web.kiosk_token_file",
                |c| text(&c.web.kiosk_token_file.display().to_string()),
                "the kiosk page's token (PIN, self-service registration, offered bills)",
            ),
            (
                "kiosk.hospital_name",
                |c| text(&c.kiosk.hospital_name),
                "shown on the kiosk's first screen",
            ),
            (
                "kiosk.departments",
                |c| format!("{} departments", c.kiosk.departments.len()),
                "[{dept_code, dept_name, dr_name}] offered for self-service registration",
            ),
            (
                "kiosk.idle_seconds",
                |c| c.kiosk.idle_seconds.to_string(),
                "with no touch for this long, the kiosk page goes back to its first screen",
            ),
            (
                "metrics.listen",
                |c| text(&c.metrics.listen),
                "GET /metrics on a listener of its own (the web endpoint serves it too); empty = off",
            ),
            (
                "metrics.allow_remote",
                |c| c.metrics.allow_remote.to_string(),
                "let metrics.listen be an address other hosts reach (no personal data in it)",
            ),
        ];
        let mut rows: Vec<String> = settings
            .iter()
            .map(|(key, show, meaning)| row(key, show(self), show(&defaults), meaning))
            .collect();
        rows.extend(self.scanners.explain());
        rows.join("\n")
    }
}

impl SocketConfig {
    fn check(&self, findings: &mut Findings) {
        match parse_mode(&self.mode) {
            None => findings.errors.push(format!(
                "socket.mode {:?} is not an octal mode like \"0660\"",
                self.mode
            )),
            Some(mode) if mode & 0o007 != 0 => findings.errors.push(format!(
                "socket.mode {:?} gives other users access; the socket must not be \
                 world-accessible (use 0660 or 0600)",
                self.mode
            )),
            Some(_) => {}
        }
        if !self.path.is_absolute() {
            findings
                .warnings
                .push(format!("socket.path {:?} is relative", self.path));
        }
        if !self.group.is_empty() && crate::serve::peer::group_id(&self.group).is_none() {
            findings.errors.push(format!(
                "socket.group: no group {:?} on this machine",
                self.group
            ));
        }
        self.check_tcp(findings);
        if self.reserved_for_other_users >= self.max_connections {
            findings.errors.push(format!(
                "socket.reserved_for_other_users ({}) must be less than socket.max_connections ({})",
                self.reserved_for_other_users, self.max_connections
            ));
        }
        for (key, value, least) in [
            ("socket.max_connections", self.max_connections, 1),
            ("socket.max_line_bytes", self.max_line_bytes, 1024),
            ("socket.queue_lines", self.queue_lines, 1),
            ("socket.max_inflight", self.max_inflight, 1),
            ("socket.heavy_request_bytes", self.heavy_request_bytes, 1024),
            ("socket.max_heavy_requests", self.max_heavy_requests, 1),
        ] {
            if value < least {
                findings
                    .errors
                    .push(format!("{key} must be at least {least} (is {value})"));
            }
        }
    }

    fn check_tcp(&self, findings: &mut Findings) {
        let tcp = self.tcp.trim();
        if tcp.is_empty() {
            return;
        }
        match tcp.parse::<SocketAddr>() {
            Err(_) => findings.errors.push(format!(
                "socket.tcp {tcp:?} is not an address like \"127.0.0.1:7788\""
            )),
            Ok(addr) if !addr.ip().is_loopback() => findings.errors.push(format!(
                "socket.tcp {tcp:?} is not a loopback address; medcard listens on 127.0.0.1 \
                 or ::1 only (card data must not leave the workstation)"
            )),
            Ok(_) => findings.warnings.push(
                "socket.tcp is on: TCP callers have no credentials, so mutating methods are \
                 refused to them when access.allowed_groups is set"
                    .to_owned(),
            ),
        }
    }
}

fn parse_mode(text: &str) -> Option<u32> {
    u32::from_str_radix(text.trim(), 8)
        .ok()
        .filter(|mode| *mode <= 0o777)
}

/// One line of [`Config::explain`]: the key, how to show its value, and what it means.
type Setting = (&'static str, fn(&Config) -> String, &'static str);

/// One line of [`Config::explain`]: `key = value  (default|set)  # meaning`.
fn row(key: &str, value: String, default: String, meaning: &str) -> String {
    let origin = if value == default { "default" } else { "set" };
    format!("{key} = {value}  ({origin})  # {meaning}")
}

/// A string as TOML writes it.
fn text(value: &str) -> String {
    format!("{value:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_all_defaults() {
        let config = Config::parse("").unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.socket_mode(), 0o660);
        assert!(config.check().errors.is_empty());
    }

    #[test]
    fn world_access_public_tcp_and_unknown_keys_are_refused() {
        let config = Config::parse("[socket]\nmode = \"0666\"\ntcp = \"0.0.0.0:80\"\n").unwrap();
        let errors = config.check().errors;
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(Config::parse("[socket]\npaht = \"/x\"\n").is_err());
    }

    #[test]
    fn other_users_keep_fewer_slots_than_there_are() {
        let config =
            Config::parse("[socket]\nmax_connections = 2\nreserved_for_other_users = 2\n").unwrap();
        let errors = config.check().errors;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("reserved_for_other_users"), "{errors:?}");
        let fits =
            Config::parse("[socket]\nmax_connections = 3\nreserved_for_other_users = 2\n").unwrap();
        assert!(fits.check().errors.is_empty());
    }

    #[test]
    fn allowed_groups_keep_fewer_slots_than_there_are() {
        let auto = Config::parse("[access]\nallowed_groups = [\"0\"]\n").unwrap();
        assert_eq!(auto.reserved_for_allowed_groups(), 1);
        assert!(
            auto.explain()
                .contains("reserved_for_allowed_groups = auto (1)")
        );
        assert_eq!(Config::default().reserved_for_allowed_groups(), 0);
        let all = Config::parse(
            "[socket]\nmax_connections = 3\nreserved_for_allowed_groups = 3\n\
             [access]\nallowed_groups = [\"0\"]\n",
        )
        .unwrap();
        let errors = all.check().errors;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("reserved_for_allowed_groups"),
            "{errors:?}"
        );
        let no_groups = Config::parse("[socket]\nreserved_for_allowed_groups = 1\n").unwrap();
        assert_eq!(no_groups.reserved_for_allowed_groups(), 0);
        let findings = no_groups.check();
        assert!(findings.errors.is_empty(), "{:?}", findings.errors);
        assert!(findings.warnings[0].contains("no effect"), "{findings:?}");
        let single = Config::parse(
            "[socket]\nmax_connections = 1\nreserved_for_other_users = 0\n\
             [access]\nallowed_groups = [\"0\"]\n",
        )
        .unwrap();
        assert_eq!(single.reserved_for_allowed_groups(), 0);
        assert!(single.check().errors.is_empty());
    }

    #[test]
    fn syntax_errors_name_the_line_the_key_and_the_kind() {
        let unknown = Config::parse("[access]\n\n[socket]\npaht = \"/x\"\n").unwrap_err();
        assert_eq!(unknown.kind, SyntaxKind::UnknownKey, "{unknown}");
        assert_eq!(unknown.line, Some(4), "{unknown}");
        assert_eq!(unknown.key.as_deref(), Some("socket.paht"), "{unknown}");
        let wrong = Config::parse("[socket]\nmax_connections = \"many\"\n").unwrap_err();
        assert_eq!(wrong.kind, SyntaxKind::WrongType, "{wrong}");
        assert_eq!(wrong.key.as_deref(), Some("socket.max_connections"));
        let broken = Config::parse("[socket\n").unwrap_err();
        assert_eq!(broken.kind, SyntaxKind::Toml, "{broken}");
        assert_eq!(broken.line, Some(1));
    }

    #[test]
    fn insurer_and_cache_keys_are_checked() {
        let config = Config::parse(
            "[insurer]\nurl = \"http://127.0.0.1:9/x\"\nfixmedins_code = \"short\"\n\
             timeout_ms = 0\n[cache]\nstale_limit_s = 60\n",
        )
        .unwrap();
        let errors = config.check().errors;
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(config.explain().contains("insurer.timeout_ms = 0  (set)"));
        assert!(Config::parse("[cache]\nstale = 1\n").is_err());
        assert!(!Config::default().insurer.enabled());
    }

    #[test]
    fn a_hospital_node_is_checked_against_the_count() {
        let standalone = Config::parse("").unwrap();
        assert_eq!(standalone.partition(), Partition::STANDALONE);
        let node = Config::parse("[hospital]\nnode = 7\n").unwrap();
        assert!(node.check().errors.is_empty(), "{:?}", node.check());
        assert_eq!(node.partition(), Partition::of_node(7, 100).unwrap());
        assert!(node.explain().contains("hospital.node = 7  (set)"));
        let outside = Config::parse("[hospital]\nnode = 10\nnode_count = 10\n").unwrap();
        let errors = outside.check().errors;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("hospital.node 10"), "{errors:?}");
        let too_many = Config::parse("[hospital]\nnode = 1\nnode_count = 1001\n").unwrap();
        assert!(too_many.check().errors[0].contains("hospital.node_count"));
        let no_node = Config::parse("[hospital]\nnode_count = 20\n").unwrap();
        let findings = no_node.check();
        assert!(findings.errors.is_empty(), "{findings:?}");
        assert!(findings.warnings[0].contains("standalone"), "{findings:?}");
        assert!(Config::parse("[hospital]\nnode = -1\n").is_err());
    }
}
