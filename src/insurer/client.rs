//! [`InsurerClient`]: the HTTP JSON client (blocking, `ureq`). One POST per attempt, a
//! per-attempt timeout, retries with exponential backoff and jitter only for calls that
//! change nothing ([`Retry::Idempotent`]) and only after an uncertain outcome or a transient
//! refusal (系统繁忙), a circuit breaker tripped only by failures of the link itself so that
//! a dead insurer costs a swipe nothing, and a lazy 9001 sign-in renewed when old, on a new
//! business day or when the insurer says it has lapsed (one [`SharedSignIn`] per link), and
//! the 9002 sign-out. Refusals are read by [`RefusalRules`]: one about the
//! message (a lapsed sign-in, a duplicate msgid) is sent once more, a transient one is
//! [`LinkError::Busy`], HTTP 413 is [`LinkError::TooLarge`]. Every attempt, and every call
//! the breaker does not let out, is counted in the daemon's [`Metrics`] (by infno and outcome).

use super::breaker::{CircuitState, SharedBreaker};
use super::envelope::{
    InsurerConfig, Reply, RequestParts, Terminal, build_request, parse_response,
};
use super::msgid::{MsgIdSource, SequenceMsgIds};
use super::refusals::{Refusal, RefusalRules};
use super::sign_in::SharedSignIn;
use super::signer::{NoSigner, Signer};
use super::types::Uncertainty;
use super::wire::WireError;
use super::{CardEventPage, CataloguePage, EcIdentity, InsurerLink, LinkError, PersonInfo, wire};
use crate::metrics::{InsurerOutcome, Metrics};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Whether a call may be sent again after an uncertain outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Money-moving or otherwise state-changing: one attempt; an uncertain outcome is the
    /// caller's to resolve (2601 with this msgid).
    Never,
    /// Changes nothing at the insurer (9001, 1101, catalogue, feed): retried on Uncertain.
    Idempotent,
}

/// One transaction as it is sent, whatever msgid each attempt of it gets.
#[derive(Clone, Copy)]
struct Outgoing<'a> {
    infno: &'a str,
    insuplc_admdvs: Option<&'a str>,
    input: &'a Value,
    retry: Retry,
    terminal: Terminal,
}

/// The insurer link over HTTP.
pub struct InsurerClient {
    cfg: InsurerConfig,
    agent: ureq::Agent,
    signer: Box<dyn Signer>,
    msgids: Box<dyn MsgIdSource>,
    breaker: SharedBreaker,
    refusals: Arc<RefusalRules>,
    sign_in: SharedSignIn,
    /// The platform's clock as the last answer gave it (`refmsg_time`).
    clock: Option<ClockReading>,
    rng: u64,
    metrics: Metrics,
}

/// The platform's receipt time of one message (`refmsg_time`, Beijing time,
/// `yyyyMMddHHmmssSSS`) and the workstation's clock around it: how far apart the two
/// clocks are (the platform refuses messages whose `inf_time` is too far off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClockReading {
    pub refmsg_time: String,
    pub sent: SystemTime,
    pub answered: SystemTime,
}

impl InsurerClient {
    pub fn new(cfg: InsurerConfig) -> InsurerClient {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(cfg.timeout))
            .http_status_as_error(false)
            // The insurer is reached directly (a private line or loopback), never through
            // an HTTP_PROXY from the environment.
            .proxy(None)
            .build()
            .into();
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15);
        InsurerClient {
            msgids: Box::new(SequenceMsgIds::new(&cfg.fixmedins_code)),
            breaker: SharedBreaker::new(cfg.breaker_threshold, cfg.breaker_cooldown),
            refusals: RefusalRules::built_in(),
            signer: Box::new(NoSigner),
            agent,
            cfg,
            sign_in: SharedSignIn::new(),
            clock: None,
            rng: seed | 1,
            metrics: Metrics::off(),
        }
    }

    /// Use a region's signer instead of none.
    pub fn with_signer(mut self, signer: Box<dyn Signer>) -> InsurerClient {
        self.signer = signer;
        self
    }

    /// Use another msgid source (the cache's persistent one).
    pub fn with_msgids(mut self, msgids: Box<dyn MsgIdSource>) -> InsurerClient {
        self.msgids = msgids;
        self
    }

    /// Share `breaker` with the other clients of the same link (instead of one of its own).
    pub fn with_breaker(mut self, breaker: SharedBreaker) -> InsurerClient {
        self.breaker = breaker;
        self
    }

    /// Share `sign_in` with the other clients of the same link (instead of one of its own).
    pub fn with_sign_in(mut self, sign_in: SharedSignIn) -> InsurerClient {
        self.sign_in = sign_in;
        self
    }

    /// Read refusals with `rules` (a region's file before the built-in rules).
    pub fn with_refusals(mut self, rules: Arc<RefusalRules>) -> InsurerClient {
        self.refusals = rules;
        self
    }

    /// Count the calls in `metrics` (the daemon's).
    pub fn with_metrics(mut self, metrics: Metrics) -> InsurerClient {
        self.metrics = metrics;
        self
    }

    pub fn config(&self) -> &InsurerConfig {
        &self.cfg
    }

    /// Whether the circuit breaker is refusing calls right now.
    pub fn circuit_open(&self) -> bool {
        self.breaker.lock().is_open()
    }

    /// The circuit breaker's state now.
    pub fn circuit(&self) -> CircuitState {
        self.breaker.state()
    }

    /// What a refusal's `err_msg` is about, by this client's rules.
    pub fn refusal(&self, err_msg: &str) -> Refusal {
        self.refusals.classify(err_msg)
    }

    /// The current sign_no, if signed in.
    pub fn sign_no(&self) -> Option<String> {
        self.sign_in.sign_no()
    }

    /// The platform's clock as its last answer gave it.
    pub fn clock_reading(&self) -> Option<&ClockReading> {
        self.clock.as_ref()
    }

    /// A fresh msgid, for callers that journal a call before sending it with [`Self::send`].
    pub fn next_msgid(&mut self) -> String {
        self.msgids.next_msgid()
    }

    /// 9001: sign in now (also done lazily before the first call); the link's other
    /// clients use the new sign_no too.
    pub fn sign_in(&mut self) -> Result<String, LinkError> {
        let result = self.sign_in_once();
        if let Err(e) = &result {
            self.sign_in.failed(&e.to_string());
        }
        result
    }

    fn sign_in_once(&mut self) -> Result<String, LinkError> {
        let input = json!({"signIn": {
            "opter_no": self.cfg.opter, "mac": self.cfg.mac, "ip": self.cfg.ip,
        }});
        let reply = self.sent_with_fresh_msgids(Outgoing {
            infno: wire::SIGN_IN,
            insuplc_admdvs: None,
            input: &input,
            retry: Retry::Idempotent,
            terminal: Terminal::Counter,
        })?;
        let sign_no = reply
            .output
            .get("signinoutb")
            .and_then(|s| s.get("sign_no"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                Uncertainty::output(
                    wire::SIGN_IN,
                    WireError::MissingField("signinoutb.sign_no".into()),
                )
            })?
            .to_string();
        tracing::info!(sign_no = %sign_no, "signed in to the insurer");
        self.sign_in.signed_in(&sign_no);
        Ok(sign_no)
    }

    /// 9002: sign out of the current sign-in, if there is one (a clean shutdown). One
    /// attempt: a sign-in left behind lapses at the platform by itself.
    pub fn sign_out(&mut self) -> Result<Option<String>, LinkError> {
        let Some(sign_no) = self.sign_in.sign_no() else {
            return Ok(None);
        };
        let input = json!({"signOut": {"sign_no": sign_no, "opter_no": self.cfg.opter}});
        self.sent_with_fresh_msgids(Outgoing {
            infno: wire::SIGN_OUT,
            insuplc_admdvs: None,
            input: &input,
            retry: Retry::Never,
            terminal: Terminal::Counter,
        })?;
        tracing::info!(sign_no = %sign_no, "signed out of the insurer");
        self.sign_in.signed_out(&sign_no);
        Ok(Some(sign_no))
    }

    /// A transaction: signs in first when needed; sent once more (a new msgid) if the
    /// insurer refuses the message itself — after signing in again when it says the
    /// sign-in has lapsed, as is when it says the msgid was seen before.
    pub fn call(&mut self, infno: &str, input: Value, retry: Retry) -> Result<Reply, LinkError> {
        self.call_in(infno, None, input, retry)
    }

    /// [`Self::call`] with the insured person's region (required whenever input carries psn_no).
    pub fn call_in(
        &mut self,
        infno: &str,
        insuplc_admdvs: Option<&str>,
        input: Value,
        retry: Retry,
    ) -> Result<Reply, LinkError> {
        self.call_from(Terminal::Counter, infno, insuplc_admdvs, input, retry)
    }

    /// [`Self::call_in`] made from `terminal` (its operator fields in the envelope).
    pub fn call_from(
        &mut self,
        terminal: Terminal,
        infno: &str,
        insuplc_admdvs: Option<&str>,
        input: Value,
        retry: Retry,
    ) -> Result<Reply, LinkError> {
        let outgoing = Outgoing {
            infno,
            insuplc_admdvs,
            input: &input,
            retry,
            terminal,
        };
        self.ensure_signed_in()?;
        let sent_with = self.sign_in.sign_no();
        let result = self.sent_with_fresh_msgids(outgoing);
        match &result {
            Err(LinkError::Business { err_msg, .. })
                if self.refusal(err_msg) == Refusal::SignInLapsed =>
            {
                tracing::info!(infno, "insurer says the sign-in lapsed; signing in again");
                self.sign_in.lapsed(sent_with.as_deref());
                self.ensure_signed_in()?;
                self.sent_with_fresh_msgids(outgoing)
            }
            _ => result,
        }
    }

    /// [`Self::with_retries`], sent once more with a msgid from elsewhere when the insurer
    /// says it saw the msgid before (another process of this institution used it).
    fn sent_with_fresh_msgids(&mut self, outgoing: Outgoing<'_>) -> Result<Reply, LinkError> {
        let result = self.with_retries(outgoing);
        match &result {
            Err(LinkError::Business { err_msg, .. })
                if self.refusal(err_msg) == Refusal::DuplicateMsgid =>
            {
                tracing::warn!(infno = outgoing.infno, err_msg = %err_msg, "insurer saw the msgid before; sending again with a new one");
                self.with_retries(outgoing)
            }
            _ => result,
        }
    }

    /// Signs in unless the link's sign-in is fresh (today's, younger than `sign_ttl`):
    /// before [`Self::send`], which does not. One client of the link signs in at a time.
    pub fn ensure_signed_in(&mut self) -> Result<(), LinkError> {
        let ttl = self.cfg.sign_ttl;
        if self.sign_in.is_fresh(ttl) {
            return Ok(());
        }
        let shared = self.sign_in.clone();
        let _turn = shared.turn();
        if !shared.is_fresh(ttl) {
            self.sign_in()?;
        }
        Ok(())
    }

    /// Whether the link's sign-in is fresh now (no 9001 needed before the next call).
    pub fn signed_in(&self) -> bool {
        self.sign_in.is_fresh(self.cfg.sign_ttl)
    }

    fn with_retries(&mut self, outgoing: Outgoing<'_>) -> Result<Reply, LinkError> {
        let Outgoing {
            infno,
            insuplc_admdvs,
            input,
            retry,
            terminal,
        } = outgoing;
        let attempts = match retry {
            Retry::Never => 1,
            Retry::Idempotent => 1 + self.cfg.retries,
        };
        let mut attempt = 0;
        loop {
            let msgid = self.msgids.next_msgid();
            let result = self.send_from(terminal, infno, &msgid, insuplc_admdvs, input.clone());
            attempt += 1;
            match result {
                Err(LinkError::Uncertain(ref why)) if attempt < attempts => {
                    let pause = self.backoff(attempt);
                    tracing::warn!(infno, msgid, attempt, reason = %why, pause_ms = pause.as_millis() as u64, "insurer call uncertain; retrying");
                    std::thread::sleep(pause);
                }
                Err(LinkError::Busy { ref err_msg, .. }) if attempt < attempts => {
                    let pause = self.backoff(attempt);
                    tracing::warn!(infno, msgid, attempt, err_msg = %err_msg, pause_ms = pause.as_millis() as u64, "insurer busy; retrying");
                    std::thread::sleep(pause);
                }
                other => return other,
            }
        }
    }

    /// One attempt with a given msgid, through the circuit breaker. No retry, no sign-in. A
    /// transient refusal comes back as [`LinkError::Busy`]; a refusal of the msgid as seen
    /// before tells the msgid source ([`MsgIdSource::after_duplicate`]).
    pub fn send(
        &mut self,
        infno: &str,
        msgid: &str,
        insuplc_admdvs: Option<&str>,
        input: Value,
    ) -> Result<Reply, LinkError> {
        self.send_from(Terminal::Counter, infno, msgid, insuplc_admdvs, input)
    }

    /// [`Self::send`] made from `terminal`.
    fn send_from(
        &mut self,
        terminal: Terminal,
        infno: &str,
        msgid: &str,
        insuplc_admdvs: Option<&str>,
        input: Value,
    ) -> Result<Reply, LinkError> {
        self.through_breaker(infno)?;
        let sign_no = self.sign_in.sign_no();
        let mut envelope = build_request(
            &self.cfg,
            RequestParts {
                infno,
                msgid,
                sign_no: sign_no.as_deref(),
                insuplc_admdvs,
                terminal,
                input,
            },
        );
        self.signer.sign(&mut envelope);
        let started = Instant::now();
        let sent = SystemTime::now();
        let body = self.post(infno, &envelope);
        if let Ok(body) = &body {
            self.note_clock(body, sent);
        }
        let result = body
            .and_then(|body| parse_response(msgid, &body))
            .map_err(|e| self.transient_as_busy(e));
        self.record(infno, msgid, &result, started);
        result
    }

    /// One call whose answer is a file (9102): the HTTP body's bytes. A JSON body is the
    /// platform's envelope instead — a refusal, or no file. Signs in first; one attempt,
    /// through the circuit breaker.
    pub fn fetch(&mut self, infno: &str, input: Value) -> Result<Vec<u8>, LinkError> {
        self.ensure_signed_in()?;
        self.through_breaker(infno)?;
        let msgid = self.msgids.next_msgid();
        let sign_no = self.sign_in.sign_no();
        let mut envelope = build_request(
            &self.cfg,
            RequestParts {
                infno,
                msgid: &msgid,
                sign_no: sign_no.as_deref(),
                insuplc_admdvs: None,
                terminal: Terminal::Counter,
                input,
            },
        );
        self.signer.sign(&mut envelope);
        let started = Instant::now();
        let result = self
            .post_bytes(infno, &envelope)
            .and_then(|body| file_or_refusal(infno, &msgid, body))
            .map_err(|e| self.transient_as_busy(e));
        self.record(infno, &msgid, &result, started);
        result
    }

    /// Whether the circuit breaker lets a call of `infno` out; one it stops is counted.
    fn through_breaker(&self, infno: &str) -> Result<(), LinkError> {
        let checked = self.breaker.lock().check();
        if checked.is_err() {
            let outcome = InsurerOutcome::CircuitOpen;
            self.metrics
                .insurer_call(metric_infno(infno), outcome, None);
        }
        checked
    }

    /// The breaker, the metrics and the log after one attempt.
    fn record<T>(
        &mut self,
        infno: &str,
        msgid: &str,
        result: &Result<T, LinkError>,
        started: Instant,
    ) {
        let elapsed = started.elapsed();
        let elapsed_ms = elapsed.as_millis() as u64;
        let outcome = match result {
            Ok(_) => InsurerOutcome::Ok,
            Err(LinkError::Business { .. }) => InsurerOutcome::Refused,
            Err(LinkError::Busy { .. }) => InsurerOutcome::Busy,
            Err(LinkError::TooLarge { .. }) => InsurerOutcome::TooLarge,
            Err(LinkError::Uncertain(_)) => InsurerOutcome::Uncertain,
            Err(LinkError::CircuitOpen { .. }) => InsurerOutcome::CircuitOpen,
        };
        self.metrics
            .insurer_call(metric_infno(infno), outcome, Some(elapsed));
        match result {
            Ok(_) => {
                self.breaker.lock().record_success();
                tracing::debug!(infno, msgid, elapsed_ms, "insurer call answered");
            }
            Err(LinkError::Uncertain(why)) => {
                if why.is_link_failure() {
                    self.breaker.lock().record_failure();
                }
                tracing::warn!(infno, msgid, error = %why, elapsed_ms, "insurer call uncertain");
            }
            Err(e) => {
                // Refused, busy or too large: the insurer answered; the link is up.
                self.breaker.lock().record_success();
                tracing::info!(infno, msgid, error = %e, elapsed_ms, "insurer refused");
                if let LinkError::Business { err_msg, .. } = e
                    && self.refusal(err_msg) == Refusal::DuplicateMsgid
                {
                    // Whoever sends next (a retry, the next attempt of a 2207) numbers
                    // from a second nobody of this institution used yet.
                    self.msgids.after_duplicate();
                }
            }
        }
    }

    /// The platform's clock as `body` (an answer or a refusal) gives it.
    fn note_clock(&mut self, body: &str, sent: SystemTime) {
        if let Some(refmsg_time) = super::envelope::refmsg_time(body) {
            self.clock = Some(ClockReading {
                refmsg_time: refmsg_time.to_owned(),
                sent,
                answered: SystemTime::now(),
            });
        }
    }

    /// A refusal the rules call transient becomes [`LinkError::Busy`].
    fn transient_as_busy(&self, e: LinkError) -> LinkError {
        match e {
            LinkError::Business { infcode, err_msg }
                if self.refusal(&err_msg) == Refusal::Transient =>
            {
                LinkError::Busy { infcode, err_msg }
            }
            other => other,
        }
    }

    fn post(&self, infno: &str, envelope: &Value) -> Result<String, LinkError> {
        String::from_utf8(self.post_bytes(infno, envelope)?)
            .map_err(|e| LinkError::Uncertain(Uncertainty::Body(e.to_string())))
    }

    fn post_bytes(&self, infno: &str, envelope: &Value) -> Result<Vec<u8>, LinkError> {
        let body = envelope.to_string();
        let mut response = self
            .agent
            .post(&self.cfg.url)
            .content_type("application/json; charset=utf-8")
            .send(body.as_str())
            .map_err(transport_error)?;
        let status = response.status();
        if status == 413 {
            return Err(LinkError::TooLarge {
                infno: infno.to_owned(),
                bytes: body.len(),
            });
        }
        if status != 200 {
            return Err(LinkError::Uncertain(Uncertainty::Http(status.as_u16())));
        }
        response
            .body_mut()
            .read_to_vec()
            .map_err(|e| LinkError::Uncertain(Uncertainty::Body(e.to_string())))
    }

    /// base · 2^(attempt−1), plus up to half of that again at random.
    fn backoff(&mut self, attempt: u32) -> Duration {
        let base = self
            .cfg
            .backoff_base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let jitter_range = (base.as_millis() as u64 / 2).max(1);
        base + Duration::from_millis(self.next_random() % jitter_range)
    }

    /// xorshift64.
    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}

/// The transactions medcard sends, as the metrics' `infno` label; anything else is `other`
/// (the label's values stay a closed set).
const METRIC_INFNOS: [&str; 21] = [
    wire::SIGN_IN,
    wire::SIGN_OUT,
    wire::PERSON_INFO,
    wire::EC_DECODE,
    wire::CARD_FEED,
    wire::CATALOGUE,
    super::files::FILE_UPLOAD,
    super::files::FILE_DOWNLOAD,
    super::settlement::REGISTER,
    super::settlement::CANCEL_REGISTER,
    super::settlement::VISIT_INFO,
    super::settlement::FEE_UPLOAD,
    super::settlement::FEE_CANCEL,
    super::settlement::PRE_SETTLE,
    super::settlement::SETTLE,
    super::settlement::REFUND,
    super::settlement::REVERSAL,
    super::settlement::DAY_TOTALS,
    super::settlement::DETAIL_RECONCILE,
    super::settlement::DAY_DETAIL,
    "other",
];

/// `infno` as the metrics' label: itself when medcard knows it, else `other`.
fn metric_infno(infno: &str) -> &'static str {
    METRIC_INFNOS
        .iter()
        .find(|known| **known == infno)
        .copied()
        .unwrap_or("other")
}

/// Whether a refusal says the sign-in has lapsed (签到信息不存在 / 签到已失效 / 请重新签到:
/// the call was not processed), by the built-in rules.
pub fn sign_in_lapsed(err_msg: &str) -> bool {
    RefusalRules::built_in().classify(err_msg) == Refusal::SignInLapsed
}

/// A file's bytes, unless the body is the platform's JSON envelope: then its refusal, or
/// (infcode 0 but no file) an unreadable answer.
fn file_or_refusal(infno: &str, msgid: &str, body: Vec<u8>) -> Result<Vec<u8>, LinkError> {
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Ok(body);
    }
    let text = String::from_utf8_lossy(&body);
    parse_response(msgid, &text)?;
    Err(Uncertainty::output(
        infno,
        WireError::MissingField("the file".into()),
    ))
}

/// A request that did not get through, or no answer in time.
fn transport_error(e: ureq::Error) -> LinkError {
    let timed_out = match &e {
        ureq::Error::Timeout(_) => true,
        ureq::Error::Io(io) => io.kind() == std::io::ErrorKind::TimedOut,
        _ => false,
    };
    LinkError::Uncertain(if timed_out {
        Uncertainty::Timeout(e.to_string())
    } else {
        Uncertainty::Transport(e.to_string())
    })
}

impl InsurerClient {
    /// 1101 by the number of an identity document (mdtrt_cert_type 02) of type
    /// `psn_cert_type` (01 居民身份证, 07 外国人永久居留证 …).
    pub fn person_by_document(
        &mut self,
        psn_cert_type: &str,
        certno: &str,
    ) -> Result<PersonInfo, LinkError> {
        tracing::debug!(certno = %crate::mask::certno(certno), psn_cert_type, "1101 by certno");
        let input = wire::person_by_document_input(psn_cert_type, certno);
        self.ask(wire::PERSON_INFO, input, wire::parse_person)
    }

    /// 1101 by 医保电子凭证: mdtrt_cert_type 01, mdtrt_cert_no = the ecToken from
    /// [`Self::decode_ec`]. An unknown or expired token is refused (`LinkError::Business`,
    /// [`super::Refusal::EcTokenInvalid`] by the built-in rules).
    pub fn person_by_ec_token(&mut self, ec_token: &str) -> Result<PersonInfo, LinkError> {
        tracing::debug!(ec_token = %crate::mask::certno(ec_token), "1101 by e-voucher token");
        let input = wire::person_by_ec_token_input(ec_token);
        self.ask(wire::PERSON_INFO, input, wire::parse_person)
    }

    /// 1162: a scanned 医保电子凭证 code → its ecToken and holder (the simulator's stand-in
    /// for the platform SDK's decode). A code is single-use, so this is sent once
    /// ([`Retry::Never`]): after an uncertain outcome the code may be used up, and the
    /// patient shows a fresh one. An expired, used or unknown code is refused
    /// (`LinkError::Business`; [`super::Refusal::EcCodeExpired`], `EcCodeUsed`, `EcCodeUnknown`
    /// by the built-in rules).
    pub fn decode_ec(&mut self, code: &str) -> Result<EcIdentity, LinkError> {
        tracing::debug!(code = %crate::mask::certno(code), "1162 e-voucher decode");
        let input = wire::ec_decode_input(code);
        self.ask_with(
            wire::EC_DECODE,
            input,
            Retry::Never,
            wire::parse_ec_identity,
        )
    }

    /// A transaction that reads (safe to retry), its `output` read by `parse`.
    fn ask<T>(
        &mut self,
        infno: &str,
        input: Value,
        parse: fn(&Value) -> Result<T, WireError>,
    ) -> Result<T, LinkError> {
        self.ask_with(infno, input, Retry::Idempotent, parse)
    }

    /// A transaction sent as `retry` allows, its `output` read by `parse`.
    fn ask_with<T>(
        &mut self,
        infno: &str,
        input: Value,
        retry: Retry,
        parse: fn(&Value) -> Result<T, WireError>,
    ) -> Result<T, LinkError> {
        let reply = self.call(infno, input, retry)?;
        parse(&reply.output).map_err(|e| Uncertainty::output(infno, e))
    }

    /// A page of a versioned feed: what came after `since_version`, `page_size` at most.
    fn feed_page<T>(
        &mut self,
        infno: &str,
        since_version: u64,
        page_size: u32,
        parse: fn(&Value) -> Result<T, WireError>,
    ) -> Result<T, LinkError> {
        self.ask(
            infno,
            wire::versioned_input(since_version, page_size),
            parse,
        )
    }
}

impl InsurerLink for InsurerClient {
    fn person_by_card(&mut self, card_no: &str, card_sn: &str) -> Result<PersonInfo, LinkError> {
        tracing::debug!(card_no = %crate::mask::certno(card_no), "1101 by card");
        let input = wire::person_by_card_input(card_no, card_sn);
        self.ask(wire::PERSON_INFO, input, wire::parse_person)
    }

    fn person_by_certno(&mut self, certno: &str) -> Result<PersonInfo, LinkError> {
        self.person_by_document(crate::fields::RESIDENT_ID_CARD, certno)
    }

    fn card_events(
        &mut self,
        since_version: u64,
        page_size: u32,
    ) -> Result<CardEventPage, LinkError> {
        self.feed_page(
            wire::CARD_FEED,
            since_version,
            page_size,
            wire::parse_card_events,
        )
    }

    fn catalogue(
        &mut self,
        since_version: u64,
        page_size: u32,
    ) -> Result<CataloguePage, LinkError> {
        self.feed_page(
            wire::CATALOGUE,
            since_version,
            page_size,
            wire::parse_catalogue,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_bounded() {
        let cfg = InsurerConfig {
            backoff_base: Duration::from_millis(100),
            ..InsurerConfig::default()
        };
        let mut c = InsurerClient::new(cfg);
        for _ in 0..50 {
            let first = c.backoff(1);
            assert!(first >= Duration::from_millis(100) && first < Duration::from_millis(150));
            let third = c.backoff(3);
            assert!(third >= Duration::from_millis(400) && third < Duration::from_millis(600));
        }
    }

    #[test]
    fn the_infno_label_is_a_closed_set() {
        assert_eq!(metric_infno("2207"), "2207");
        assert_eq!(metric_infno("9001"), "9001");
        assert_eq!(metric_infno("500103199103080319"), "other");
        assert_eq!(metric_infno(""), "other");
    }

    #[test]
    fn a_dead_endpoint_is_uncertain_then_circuit_open() {
        let cfg = InsurerConfig {
            url: "http://127.0.0.1:9/".into(),
            retries: 0,
            breaker_threshold: 2,
            timeout: Duration::from_millis(300),
            ..InsurerConfig::default()
        };
        let mut c = InsurerClient::new(cfg);
        assert!(matches!(c.sign_in(), Err(LinkError::Uncertain(_))));
        assert!(matches!(c.sign_in(), Err(LinkError::Uncertain(_))));
        assert!(matches!(c.sign_in(), Err(LinkError::CircuitOpen { .. })));
    }
}
