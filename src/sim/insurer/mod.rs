//! The insurer simulator behind `medcard insurer-sim`: the national platform's one POST
//! endpoint on loopback (axum), answering the transactions the client uses (9001, 1101, the
//! outpatient settlement chain 2201–2208, 2601, 3201, 3202 with its files 9101 / 9102, and
//! the medcard extensions X101 / X102 / X302 and 1162, the e-voucher decode) from its own SQLite database seeded from `fixtures/insurer/`, with realistic refusals
//! (infcode −1 + err_msg), fault injection and an admin endpoint for live changes.
//!
//! - [`fixtures`]: the seed files; [`db`]: the database; [`service`]: envelopes and
//!   dispatch; [`faults`]: the fault plan; [`admin`]: `POST /admin`.
//! - Settlement: [`visit`] (2201–2205), [`settle`] (2206–2208, 2601), [`recon`] (3201,
//!   3202, X302), [`files`] (9101, 9102), on [`books`] (visits, lines, settlements) and [`accounts`] (ledger, bindings,
//!   credits, interest); [`policies`] chooses the cost-sharing policy, [`clock`] is the
//!   business date, [`context`] what the transactions share; [`ec_voucher`]: the 医保电子凭证
//!   codes (admin `ec_issue`), their decode (1162) and 1101 by token.

pub mod accounts;
pub mod admin;
pub mod books;
pub mod clock;
pub mod context;
pub mod db;
pub mod ec_voucher;
pub mod faults;
pub mod files;
pub mod fixtures;
pub mod policies;
pub mod recon;
pub mod service;
pub mod settle;
pub mod visit;

use crate::clock::DateTime;
use admin::AdminError;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use db::{CardTexts, MsgLogEntry, SimDb, TxError};
use faults::{Fault, Faults};
use policies::SimPolicies;
use serde_json::{Value, json};
use service::Request;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use fixtures::Fixtures;

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("insurer-sim database: {0}")]
    Db(#[from] rusqlite::Error),
    /// A fixture file or the policy directory cannot be read.
    #[error("insurer-sim fixtures: {}: {source}", path.display())]
    FixtureFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A fixture file (`persons`, `card_events`, `catalogue`) is not what it should be.
    #[error("insurer-sim fixtures: {file}: {source}")]
    FixtureSyntax {
        file: &'static str,
        #[source]
        source: toml::de::Error,
    },
    /// The fixtures do not go into the database (a bad amount, an unknown person …).
    #[error("insurer-sim fixtures: {0}")]
    Seed(#[source] TxError),
    #[error("insurer-sim fixtures: policy: {0}")]
    Policy(#[from] crate::settle::policy::PolicyError),
    #[error("insurer-sim fixtures: no policy {id:?} (known: {known})")]
    UnknownPolicy { id: String, known: String },
    #[error("insurer-sim: {0}")]
    Io(#[from] std::io::Error),
}

/// How to start.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// The database file (created and seeded when new).
    pub db: PathBuf,
    /// A fixtures directory; `None` = the compiled-in copies.
    pub fixtures: Option<PathBuf>,
    /// The initial fault plan.
    pub faults: Faults,
    /// The insurer's region (the first six characters of inf_refmsgid).
    pub region: String,
    /// The default policy's id (used when no policy matches a person's region).
    pub policy: String,
    /// Policy files tried before the built-in ones (`*.toml`).
    pub policy_dir: Option<PathBuf>,
    /// The hospital grade settlements use ("1", "2", "3").
    pub hosp_lv: String,
    /// Whether medcard's extension transactions (X101, X102, X302) are offered; a real
    /// platform has none of them.
    pub extensions: bool,
    /// How 1101 words its refusal of a lost, replaced or cancelled card.
    pub card_texts: CardTexts,
    /// The largest request body taken; a larger one is answered HTTP 413 unread.
    pub max_body_bytes: usize,
    /// How long an e-voucher code (admin `ec_issue`) can be decoded.
    pub ec_code_ttl: Duration,
    /// How long an ecToken (1162) is taken by 1101.
    pub ec_token_ttl: Duration,
}

/// The request body limit by default (axum's own).
pub const DEFAULT_MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

impl SimOptions {
    /// The defaults, with a database path.
    pub fn new(db: PathBuf) -> SimOptions {
        SimOptions {
            db,
            fixtures: None,
            faults: Faults::default(),
            region: "500000".into(),
            policy: "cq-seed".into(),
            policy_dir: None,
            hosp_lv: "3".into(),
            extensions: true,
            card_texts: CardTexts::default(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            ec_code_ttl: ec_voucher::DEFAULT_CODE_TTL,
            ec_token_ttl: ec_voucher::DEFAULT_TOKEN_TTL,
        }
    }
}

/// The running simulator's shared state.
pub struct SimState {
    db: Mutex<SimDb>,
    faults: Mutex<Faults>,
    requests: Mutex<BTreeMap<String, u64>>,
    serial: AtomicU64,
    rng: Mutex<u64>,
    region: String,
    policies: SimPolicies,
    extensions: bool,
    card_texts: CardTexts,
    max_body_bytes: usize,
    ec_code_ttl: Duration,
    ec_token_ttl: Duration,
    /// Seconds the platform's clock is ahead of the wall clock (admin `clock_skew`): what
    /// `refmsg_time` and `respond_time` say.
    clock_skew_s: std::sync::atomic::AtomicI64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SimState {
    /// Open the database, seed it if new.
    pub fn open(options: &SimOptions) -> Result<Arc<SimState>, SimError> {
        let fixtures = match &options.fixtures {
            Some(dir) => Fixtures::load_dir(dir)?,
            None => Fixtures::built_in()?,
        };
        let policies = SimPolicies::new(
            options.policy_dir.as_deref(),
            &options.policy,
            &options.hosp_lv,
        )?;
        let mut db = SimDb::open(&options.db)?;
        db.seed(&fixtures, &policies)?;
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Ok(Arc::new(SimState {
            db: Mutex::new(db),
            faults: Mutex::new(options.faults.clone()),
            requests: Mutex::new(BTreeMap::new()),
            serial: AtomicU64::new(1),
            rng: Mutex::new(seed | 1),
            region: options.region.clone(),
            policies,
            extensions: options.extensions,
            card_texts: options.card_texts.clone(),
            max_body_bytes: options.max_body_bytes,
            ec_code_ttl: options.ec_code_ttl,
            ec_token_ttl: options.ec_token_ttl,
            clock_skew_s: std::sync::atomic::AtomicI64::new(0),
        }))
    }

    /// Whether medcard's extension transactions are offered.
    pub fn extensions(&self) -> bool {
        self.extensions
    }

    /// 1101's wording for unusable cards.
    pub fn card_texts(&self) -> &CardTexts {
        &self.card_texts
    }

    /// The policies settlements use.
    pub fn policies(&self) -> &SimPolicies {
        &self.policies
    }

    pub fn db(&self) -> MutexGuard<'_, SimDb> {
        lock(&self.db)
    }

    pub fn set_faults(&self, faults: Faults) {
        *lock(&self.faults) = faults;
    }

    /// region(6) + yyyyMMddHHmmss + serial(10).
    /// The platform's time now: the wall clock moved by the admin's `clock_skew`.
    pub fn platform_now(&self) -> DateTime {
        DateTime::at(self.platform_time())
    }

    /// [`Self::platform_now`] as a moment.
    pub fn platform_time(&self) -> std::time::SystemTime {
        let skew = self.clock_skew_s.load(Ordering::Relaxed);
        let shift = Duration::from_secs(skew.unsigned_abs());
        let now = std::time::SystemTime::now();
        let moved = if skew >= 0 {
            now.checked_add(shift)
        } else {
            now.checked_sub(shift)
        };
        moved.unwrap_or(now)
    }

    /// Sets how far the platform's clock is ahead of the wall clock (negative: behind).
    pub fn set_clock_skew(&self, seconds: i64) {
        self.clock_skew_s.store(seconds, Ordering::Relaxed);
    }

    pub fn next_refmsgid(&self) -> String {
        let n = self.serial.fetch_add(1, Ordering::Relaxed) % 10_000_000_000;
        format!("{}{}{n:010}", self.region, DateTime::now().compact())
    }

    /// A sign_no (30 characters, same shape as inf_refmsgid).
    pub fn next_sign_no(&self) -> String {
        self.next_refmsgid()
    }

    fn count_request(&self, infno: &str) {
        *lock(&self.requests).entry(infno.to_string()).or_insert(0) += 1;
    }

    fn stats_json(&self) -> Value {
        let requests = lock(&self.requests).clone();
        let total: u64 = requests.values().sum();
        json!({"ok": true, "requests": requests, "total": total, "faults": *lock(&self.faults)})
    }

    fn log(&self, entry: &MsgLogEntry<'_>) {
        if let Err(e) = self.db().log_msg(entry) {
            tracing::error!(error = ?e, "insurer-sim could not write msg_log");
        }
    }

    /// How long an e-voucher code can be decoded, unless `ec_issue` says otherwise.
    pub fn ec_code_ttl(&self) -> Duration {
        self.ec_code_ttl
    }

    /// How long an ecToken is taken by 1101.
    pub fn ec_token_ttl(&self) -> Duration {
        self.ec_token_ttl
    }

    /// The insurer's region (the prefix of inf_refmsgid, e-voucher codes and tokens).
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The next pseudo-random number (xorshift64).
    pub fn random(&self) -> u64 {
        let mut x = lock(&self.rng);
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }

    /// Uniform in [0, 1).
    fn chance(&self) -> f64 {
        (self.random() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn take_fault(&self, infno: &str) -> (std::time::Duration, Option<Fault>) {
        let chance = self.chance();
        lock(&self.faults).take(infno, chance)
    }
}

/// The routes: `POST /admin`, and the transaction endpoint on every other path.
pub fn router(state: Arc<SimState>) -> Router {
    let limit = axum::extract::DefaultBodyLimit::max(state.max_body_bytes);
    Router::new()
        .route("/admin", post(admin_handler))
        .fallback(transaction_handler)
        .layer(limit)
        .with_state(state)
}

/// Serve on a bound listener until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<SimState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// A temporary database path for this process.
pub fn temp_db_path() -> PathBuf {
    std::env::temp_dir().join(format!("medcard-insurer-sim-{}.sqlite", std::process::id()))
}

/// Remove a database file and its WAL companions.
pub fn remove_db(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

async fn admin_handler(State(state): State<Arc<SimState>>, body: Bytes) -> Response {
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return admin_error(AdminError::BadJson(e)),
    };
    let result = tokio::task::spawn_blocking(move || admin::run(&state, &req)).await;
    match result {
        Ok(Ok(v)) => axum::Json(v).into_response(),
        Ok(Err(e)) => admin_error(e),
        Err(e) => admin_error(AdminError::TaskFailed(e)),
    }
}

fn admin_error(e: AdminError) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"ok": false, "error": e.to_string()})),
    )
        .into_response()
}

async fn transaction_handler(State(state): State<Arc<SimState>>, body: Bytes) -> Response {
    let received = state.platform_now().compact_millis();
    let req = match service::parse_request(&body) {
        Ok(req) => req,
        Err(e) => {
            state.count_request("?");
            let reply = service::envelope(&state, -1, &e.to_string(), Value::Null, &received);
            return axum::Json(reply).into_response();
        }
    };
    state.count_request(&req.infno);
    let (latency, fault) = state.take_fault(&req.infno);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let answer = tokio::task::spawn_blocking(move || answer(&state, &req, fault, &received)).await;
    match answer {
        Ok(answer) => respond(answer),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn answer(
    state: &SimState,
    req: &Request,
    fault: Option<Fault>,
    received: &str,
) -> service::Answer {
    let unprocessed = |fault: Fault| {
        state.log(&MsgLogEntry {
            msgid: &req.msgid,
            infno: &req.infno,
            opter_type: &req.opter_type,
            outcome: fault.outcome(),
            infcode: None,
            err_msg: None,
            inf_refmsgid: None,
        });
    };
    match fault {
        None => service::process(state, req, received, false),
        Some(Fault::DropAfterProcessing) => {
            service::process(state, req, received, true);
            service::Answer::Drop
        }
        Some(Fault::InfcodeMinus1) => {
            unprocessed(Fault::InfcodeMinus1);
            let msg = "医保中心系统繁忙，请稍后再试";
            service::Answer::Envelope(service::envelope(state, -1, msg, Value::Null, received))
        }
        Some(Fault::DuplicateMsgid) => {
            unprocessed(Fault::DuplicateMsgid);
            let msg = format!("发送方报文ID[{}]重复", req.msgid);
            service::Answer::Envelope(service::envelope(state, -1, &msg, Value::Null, received))
        }
        Some(f @ Fault::Http500) => {
            unprocessed(f);
            service::Answer::Http500
        }
        Some(f @ Fault::Garbage) => {
            unprocessed(f);
            service::Answer::Garbage
        }
    }
}

fn respond(answer: service::Answer) -> Response {
    match answer {
        service::Answer::Envelope(v) => axum::Json(v).into_response(),
        service::Answer::File { filename, bytes } => (
            StatusCode::OK,
            [
                ("content-type", "application/octet-stream".to_owned()),
                (
                    "content-disposition",
                    format!("attachment; filename=\"{filename}\""),
                ),
            ],
            bytes,
        )
            .into_response(),
        service::Answer::Http500 => {
            (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response()
        }
        service::Answer::Garbage => (
            StatusCode::OK,
            [("content-type", "application/json")],
            "<html><body>502 Bad Gateway</body></html>\u{0}\u{1}{\"infcode\":",
        )
            .into_response(),
        service::Answer::Drop => {
            let broken = futures_util::stream::once(async {
                Err::<Bytes, std::io::Error>(std::io::Error::other("reply dropped by insurer-sim"))
            });
            Response::new(Body::from_stream(broken))
        }
    }
}
