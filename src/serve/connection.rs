//! One client connection: line framing with a size cap, JSON-RPC parsing, requests run
//! concurrently (at most `max_inflight`), and one bounded writer queue that carries replies
//! and notifications to the socket.
//!
//! - A line longer than `max_line_bytes` is answered with −32600 as soon as the limit is
//!   passed; the rest of it is discarded as it streams (never buffered), and the connection
//!   stays usable.
//! - A malformed line is answered with −32700; the connection stays usable.
//! - A line of at least `socket.heavy_request_bytes` (a large bill) waits for a daemon-wide
//!   turn ([`super::heavy`]) before it is parsed, and the connection reads nothing more
//!   meanwhile (pipelined lines wait in the socket, not in memory); with no turn within
//!   `socket.heavy_wait_ms` it is answered 1020 (busy, retry) unparsed.
//! - A subscriber whose queue is full, or whose event receiver lagged, gets a final
//!   `events.dropped` notification (best effort) and its subscription is cancelled; the
//!   connection stays open for requests.
//! - End of input: requests in progress finish and are answered, then the connection closes
//!   (it stays open while a subscription is active, until the client goes).
//! - A client that vanishes: its requests in progress are abandoned (noticed at the next
//!   write, or on a Unix socket within [`HangupProbe::EVERY`] of its end of input); nothing
//!   else changes.

use super::heavy::HeavyPermit;
use super::messages;
use super::methods;
use super::peer::Peer;
use super::rpc::{self, Call, RequestError, RpcError};
use super::shared::{Shared, Shutdown};
use super::types::CardEvent;
use serde_json::{Value, json};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{broadcast, mpsc};
use tokio::task::{JoinHandle, JoinSet};

/// What the framer yields.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A complete line, without its line end.
    Line(Vec<u8>),
    /// A line passed the size limit; the rest of it will be skipped.
    TooLong,
}

/// Splits a byte stream into lines of at most `max` bytes without ever holding more.
/// Cancel-safe: state changes only between awaits.
pub struct LineFramer<R> {
    reader: R,
    line: PartLine,
}

/// The line being read.
struct PartLine {
    bytes: Vec<u8>,
    max: usize,
    /// Skipping the rest of an oversized line.
    discarding: bool,
}

impl<R: AsyncBufRead + Unpin> LineFramer<R> {
    pub fn new(reader: R, max: usize) -> LineFramer<R> {
        LineFramer {
            reader,
            line: PartLine {
                bytes: Vec::new(),
                max,
                discarding: false,
            },
        }
    }

    /// The next non-blank line, [`Frame::TooLong`] once per oversized line, or `None` at
    /// the end of input (a half-written last line is dropped).
    pub async fn next_frame(&mut self) -> io::Result<Option<Frame>> {
        loop {
            let available = self.reader.fill_buf().await?;
            if available.is_empty() {
                self.line.bytes.clear();
                return Ok(None);
            }
            let (chunk, complete) = match available.iter().position(|b| *b == b'\n') {
                Some(end) => (&available[..end], true),
                None => (available, false),
            };
            let taken = chunk.len() + usize::from(complete);
            let frame = self.line.take(chunk, complete);
            self.reader.consume(taken);
            if let Some(frame) = frame {
                return Ok(Some(frame));
            }
        }
    }
}

/// Where a connection's requests come from: lines of a byte stream ([`LineFramer`]) or
/// WebSocket messages (`serve::web`). Cancel-safe like [`LineFramer::next_frame`].
pub trait FrameSource: Send {
    /// The next request, [`Frame::TooLong`] for one over the limit, `None` at the end.
    fn next_frame(&mut self) -> impl Future<Output = io::Result<Option<Frame>>> + Send;
}

impl<R: AsyncBufRead + Unpin + Send> FrameSource for LineFramer<R> {
    fn next_frame(&mut self) -> impl Future<Output = io::Result<Option<Frame>>> + Send {
        LineFramer::next_frame(self)
    }
}

/// Where a connection's replies and notifications go, one JSON text at a time: a byte
/// stream (a line each) or a WebSocket (a text message each).
pub trait LineSink: Send + 'static {
    /// Writes one reply or notification (without a line end).
    fn send_line(&mut self, line: String) -> impl Future<Output = io::Result<()>> + Send;
    /// Ends the output (a stream's shutdown, a WebSocket's close).
    fn close(&mut self) -> impl Future<Output = ()> + Send;
}

/// A byte stream as a [`LineSink`]: each text and its newline in one write.
struct StreamSink<W>(W);

impl<W: AsyncWrite + Unpin + Send + 'static> LineSink for StreamSink<W> {
    async fn send_line(&mut self, mut line: String) -> io::Result<()> {
        line.push('\n');
        self.0.write_all(line.as_bytes()).await?;
        self.0.flush().await
    }

    async fn close(&mut self) {
        let _ = self.0.shutdown().await;
    }
}

impl PartLine {
    /// Adds `chunk` to the line being read; a frame when one is finished or too long.
    fn take(&mut self, chunk: &[u8], complete: bool) -> Option<Frame> {
        if self.discarding {
            self.discarding = !complete;
            return None;
        }
        if self.bytes.len() + chunk.len() > self.max {
            self.bytes = Vec::new();
            self.discarding = !complete;
            return Some(Frame::TooLong);
        }
        self.bytes.extend_from_slice(chunk);
        if !complete {
            return None;
        }
        let mut line = std::mem::take(&mut self.bytes);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        Some(Frame::Line(line))
    }
}

/// The sending end of a connection's writer: replies wait for room, notifications do not.
#[derive(Clone)]
pub struct Outbox {
    lines: mpsc::Sender<String>,
    /// Last words (`events.dropped`), written after what is queued, room or not.
    notices: mpsc::Sender<String>,
}

impl Outbox {
    /// Queues a reply, waiting for room (a client that does not read only slows itself).
    async fn reply(&self, line: String) {
        let _ = self.lines.send(line).await;
    }

    /// Whether the writer is gone (the client vanished).
    async fn closed(&self) {
        self.lines.closed().await
    }
}

/// Starts the writer task for the byte stream `writer` with a queue of `capacity` lines.
pub fn spawn_writer<W>(writer: W, capacity: usize) -> (Outbox, JoinHandle<()>)
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    spawn_sink_writer(StreamSink(writer), capacity)
}

/// Starts the writer task for `sink` with a queue of `capacity` lines.
pub fn spawn_sink_writer<S: LineSink>(sink: S, capacity: usize) -> (Outbox, JoinHandle<()>) {
    let (lines_tx, lines) = mpsc::channel(capacity.max(1));
    let (notices_tx, notices) = mpsc::channel(4);
    let task = tokio::spawn(write_lines(sink, lines, notices));
    let outbox = Outbox {
        lines: lines_tx,
        notices: notices_tx,
    };
    (outbox, task)
}

async fn write_lines<S: LineSink>(
    mut sink: S,
    mut lines: mpsc::Receiver<String>,
    mut notices: mpsc::Receiver<String>,
) {
    loop {
        let line = tokio::select! {
            biased;
            Some(line) = lines.recv() => line,
            Some(notice) = notices.recv() => notice,
            else => break,
        };
        if sink.send_line(line).await.is_err() {
            return;
        }
    }
    sink.close().await;
}

/// A connection's state while it runs.
struct Connection {
    shared: Arc<Shared>,
    peer: Arc<Peer>,
    outbox: Outbox,
    inflight: JoinSet<()>,
    subscription: Option<JoinHandle<()>>,
    max_inflight: usize,
    /// How long the connection may sit with nothing in progress and no subscription.
    idle_timeout: Option<Duration>,
    /// Tells a client gone from a client that only closed its sending side.
    hangup: Option<HangupProbe>,
}

/// Notices a Unix-socket peer that closed both ways (`POLLHUP`), which end of input alone
/// cannot tell from a half-close (`shutdown(SHUT_WR)`, as `socat` does). Made from the
/// connection's stream and used only while that stream lives.
#[derive(Debug, Clone, Copy)]
pub struct HangupProbe(RawFd);

impl HangupProbe {
    /// How often a connection waiting for requests in progress looks.
    const EVERY: Duration = Duration::from_millis(200);

    pub fn of(stream: &impl AsRawFd) -> HangupProbe {
        HangupProbe(stream.as_raw_fd())
    }

    fn hung_up(self) -> bool {
        let mut poll = libc::pollfd {
            fd: self.0,
            events: 0,
            revents: 0,
        };
        // SAFETY: one valid pollfd; the descriptor belongs to a stream that outlives the
        // probe (see the type's documentation); a zero timeout never blocks.
        let ready = unsafe { libc::poll(&mut poll, 1, 0) };
        ready > 0 && poll.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0
    }

    /// Resolves when the peer has gone (never without a probe).
    async fn gone(probe: Option<HangupProbe>) {
        let Some(probe) = probe else {
            return std::future::pending().await;
        };
        while !probe.hung_up() {
            tokio::time::sleep(HangupProbe::EVERY).await;
        }
    }
}

/// Resolves at `deadline` (never without one).
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// Serves one accepted stream until the client goes, idles too long or the server shuts down.
pub async fn serve<S>(
    stream: S,
    peer: Peer,
    shared: Arc<Shared>,
    shutdown: Shutdown,
    hangup: Option<HangupProbe>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let max_line_bytes = shared.settings().config.socket.max_line_bytes;
    let (read_half, write_half) = tokio::io::split(stream);
    let framer = LineFramer::new(
        BufReader::with_capacity(64 * 1024, read_half),
        max_line_bytes,
    );
    serve_frames(
        framer,
        StreamSink(write_half),
        peer,
        shared,
        shutdown,
        hangup,
    )
    .await
}

/// Serves the requests of `frames`, answering into `sink`: the one request loop of every
/// transport (the Unix socket, loopback TCP, the WebSocket), with the socket's limits.
pub async fn serve_frames<F: FrameSource, S: LineSink>(
    mut frames: F,
    sink: S,
    peer: Peer,
    shared: Arc<Shared>,
    mut shutdown: Shutdown,
    hangup: Option<HangupProbe>,
) {
    let settings = shared.settings();
    let (outbox, writer) = spawn_sink_writer(sink, settings.config.socket.queue_lines);
    let grace = Duration::from_millis(settings.config.socket.shutdown_grace_ms);
    let mut connection = Connection {
        shared,
        peer: Arc::new(peer),
        outbox,
        inflight: JoinSet::new(),
        subscription: None,
        max_inflight: settings.config.socket.max_inflight,
        idle_timeout: match settings.config.socket.idle_timeout_s {
            0 => None,
            seconds => Some(Duration::from_secs(seconds)),
        },
        hangup,
    };
    tracing::debug!(peer = %connection.peer, "connection opened");
    let ended = connection.read_requests(&mut frames, &mut shutdown).await;
    connection.finish(ended, &mut shutdown, grace).await;
    drop(connection);
    let abort = writer.abort_handle();
    if tokio::time::timeout(grace, writer).await.is_err() {
        tracing::debug!("the client does not read its replies; closing");
        abort.abort();
    }
}

/// Why the request loop stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    EndOfInput,
    ClientGone,
    Shutdown,
    /// Nothing asked, nothing in progress, no subscription for `socket.idle_timeout_s`.
    Idle,
}

impl Connection {
    async fn read_requests<F: FrameSource>(
        &mut self,
        framer: &mut F,
        shutdown: &mut Shutdown,
    ) -> Ended {
        let mut last_activity = Instant::now();
        loop {
            let room = self.inflight.len() < self.max_inflight;
            let idle = self.inflight.is_empty() && self.subscription.is_none();
            let idle_until = self.idle_timeout.map(|limit| last_activity + limit);
            tokio::select! {
                frame = framer.next_frame(), if room => {
                    last_activity = Instant::now();
                    match frame {
                        Ok(Some(frame)) => self.on_frame(frame).await,
                        Ok(None) | Err(_) => return Ended::EndOfInput,
                    }
                }
                Some(_) = self.inflight.join_next(), if !self.inflight.is_empty() => {
                    last_activity = Instant::now();
                }
                _ = sleep_until(idle_until), if idle && idle_until.is_some() => {
                    tracing::info!(peer = %self.peer, "idle connection closed (socket.idle_timeout_s)");
                    return Ended::Idle;
                }
                _ = shutdown.recv() => return Ended::Shutdown,
                _ = self.outbox.closed() => return Ended::ClientGone,
            }
        }
    }

    /// After the request loop: answer what is in progress, keep a live subscription going.
    async fn finish(&mut self, ended: Ended, shutdown: &mut Shutdown, grace: Duration) {
        match ended {
            Ended::ClientGone | Ended::Idle => {
                self.inflight.abort_all();
            }
            Ended::Shutdown => {
                let _ = tokio::time::timeout(grace, self.drain()).await;
                self.inflight.abort_all();
            }
            Ended::EndOfInput => {
                let outbox = self.outbox.clone();
                let hangup = self.hangup;
                tokio::select! {
                    _ = self.drain() => {}
                    _ = shutdown.recv() => {}
                    _ = outbox.closed() => {}
                    _ = HangupProbe::gone(hangup) => {}
                }
                if let Some(subscription) = self.subscription.as_mut() {
                    tokio::select! {
                        _ = subscription => {}
                        _ = shutdown.recv() => {}
                        _ = outbox.closed() => {}
                        _ = HangupProbe::gone(hangup) => {}
                    }
                }
            }
        }
        self.inflight.abort_all();
        if let Some(subscription) = self.subscription.take() {
            subscription.abort();
        }
    }

    async fn drain(&mut self) {
        while self.inflight.join_next().await.is_some() {}
    }

    async fn on_frame(&mut self, frame: Frame) {
        let line = match frame {
            Frame::Line(line) => line,
            Frame::TooLong => {
                let limit = self.shared.settings().config.socket.max_line_bytes;
                tracing::warn!(peer = %self.peer, limit, "request line too large; discarded");
                let error = RpcError::too_large(limit);
                return self.outbox.reply(rpc::failure(&Value::Null, &error)).await;
            }
        };
        let turn = match heavy_turn(&self.shared, &self.peer, &line).await {
            Ok(turn) => turn,
            Err(busy) => {
                if let Some(busy) = busy {
                    self.outbox.reply(busy).await;
                }
                return;
            }
        };
        let parsed = rpc::parse_call(&line);
        drop(line);
        match parsed {
            Err(bad) => {
                tracing::debug!(peer = %self.peer, code = bad.error.code, "bad request line");
                self.outbox.reply(rpc::failure(&bad.id, &bad.error)).await;
            }
            Ok(call) => self.on_call(call, turn).await,
        }
    }

    /// `turn`: a heavy request's, held until its answer is queued.
    async fn on_call(&mut self, call: Call, turn: Option<HeavyPermit>) {
        match call.method.as_str() {
            "events.subscribe" => self.subscribe(call).await,
            "events.unsubscribe" => {
                let was = self.cancel_subscription();
                self.answer(&call, Ok(json!({"unsubscribed": was}))).await;
            }
            _ if methods::is_immediate(&call) => {
                // Answered from the monitor's state without waiting: no task of its own.
                let result = methods::answer(&self.shared, &self.peer, &call).await;
                if let Some(line) = reply_line(&call, result) {
                    self.reply_soon(line);
                }
            }
            _ => {
                let (shared, peer, outbox) =
                    (self.shared.clone(), self.peer.clone(), self.outbox.clone());
                self.inflight.spawn(async move {
                    let result = methods::answer(&shared, &peer, &call).await;
                    let line = reply_line(&call, result);
                    drop(call);
                    if let Some(line) = line {
                        outbox.reply(line).await;
                    }
                    drop(turn);
                });
            }
        }
    }

    /// Queues a reply without making the request loop wait: when the queue is full, a task
    /// of the connection's waits for room (and counts against `max_inflight`).
    fn reply_soon(&mut self, line: String) {
        match self.outbox.lines.try_send(line) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(line)) => {
                let outbox = self.outbox.clone();
                self.inflight.spawn(async move { outbox.reply(line).await });
            }
        }
    }

    async fn answer(&self, call: &Call, result: Result<Value, RpcError>) {
        if let Some(id) = &call.id {
            self.outbox.reply(response(id, result)).await;
        }
    }

    /// `events.subscribe`: the reply first, then notifications of the chosen topics.
    async fn subscribe(&mut self, call: Call) {
        let topics = match methods::topics_of(&call.params) {
            Ok(topics) => topics,
            Err(error) => return self.answer(&call, Err(error)).await,
        };
        self.cancel_subscription();
        let events = self.shared.handle.subscribe();
        self.answer(&call, Ok(json!({"subscribed": topics}))).await;
        let outbox = self.outbox.clone();
        let (shared, peer) = (self.shared.clone(), self.peer.clone());
        self.subscription = Some(tokio::spawn(forward_events(
            events, topics, outbox, shared, peer,
        )));
    }

    fn cancel_subscription(&mut self) -> bool {
        match self.subscription.take() {
            Some(task) => {
                let active = !task.is_finished();
                task.abort();
                active
            }
            None => false,
        }
    }
}

/// For a heavy line, a turn (waited for); none for a light one. `Err`: no turn came in
/// time, with the busy answer (none for a notification).
async fn heavy_turn(
    shared: &Shared,
    peer: &Peer,
    line: &[u8],
) -> Result<Option<HeavyPermit>, Option<String>> {
    let settings = shared.settings();
    let socket = &settings.config.socket;
    if line.len() < socket.heavy_request_bytes {
        return Ok(None);
    }
    let waited_ms = socket.heavy_wait_ms;
    let gate = &shared.heavy;
    match gate.enter(Duration::from_millis(waited_ms)).await {
        Some(turn) => Ok(Some(turn)),
        None => {
            tracing::warn!(%peer, bytes = line.len(), max = gate.max(), "large request refused: busy");
            let busy = RpcError::from(RequestError::Busy {
                max: gate.max(),
                waited_ms,
            });
            Err(request_id(line).map(|id| rpc::failure(&id, &busy)))
        }
    }
}

/// Answers one request outside a connection (an HTTP POST): the same parsing, heavy turns
/// and methods as a connection's request; `events.*` need a connection and are refused.
/// `None`: a notification, answered with nothing.
pub async fn answer_once(shared: &Shared, peer: &Peer, line: &[u8]) -> Option<String> {
    let _turn = match heavy_turn(shared, peer, line).await {
        Ok(turn) => turn,
        Err(busy) => return busy,
    };
    let call = match rpc::parse_call(line) {
        Ok(call) => call,
        Err(bad) => return Some(rpc::failure(&bad.id, &bad.error)),
    };
    if call.method.starts_with("events.") {
        let error = RpcError::invalid_request(format!(
            "{} needs a connection that stays open: use the WebSocket",
            call.method
        ));
        return reply_line(&call, Err(error));
    }
    let result = methods::answer(shared, peer, &call).await;
    reply_line(&call, result)
}

/// The id of a request line read without parsing the rest into values: `None` for a
/// notification (no `id`), null for a line that is not a JSON object.
fn request_id(line: &[u8]) -> Option<Value> {
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(default, deserialize_with = "present")]
        id: Option<Value>,
    }
    fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
        serde::Deserialize::deserialize(d).map(Some)
    }
    match serde_json::from_slice::<Head>(line) {
        Ok(head) => head.id,
        Err(_) => Some(Value::Null),
    }
}

/// The response line to `call` (none for a notification); failures are logged.
fn reply_line(call: &Call, result: Result<methods::Answer, RpcError>) -> Option<String> {
    if let Err(error) = &result {
        tracing::debug!(method = %call.method, code = error.code, "request failed");
    }
    let id = call.id.as_ref()?;
    Some(match result {
        Ok(methods::Answer::Raw(text)) => rpc::success_raw(id, &text),
        Ok(methods::Answer::Value(value)) => rpc::success(id, &value),
        Err(error) => rpc::failure(id, &error),
    })
}

fn response(id: &rpc::Id, result: Result<Value, RpcError>) -> String {
    match result {
        Ok(result) => rpc::success(id, &result),
        Err(error) => rpc::failure(id, &error),
    }
}

/// Copies events of `topics` to the connection's queue until the queue is full, the
/// receiver lags or the monitor stops; then a last `events.dropped` notice. A scanned code
/// goes only to a peer who may call mutating methods (as the settings say at the time).
async fn forward_events(
    mut events: broadcast::Receiver<CardEvent>,
    topics: Vec<&'static str>,
    outbox: Outbox,
    shared: Arc<Shared>,
    peer: Arc<Peer>,
) {
    let reason = loop {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                break format!("lagged: {missed} events missed");
            }
            Err(broadcast::error::RecvError::Closed) => break "monitor stopped".to_owned(),
        };
        let topic = event.topic();
        if !topics.contains(&topic) {
            continue;
        }
        let params = methods::notification_params(&shared, &peer, &event);
        let line = rpc::notification(topic, &params);
        match outbox.lines.try_send(line) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => break "queue full".to_owned(),
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    };
    tracing::warn!(%peer, reason, "subscriber dropped");
    let notice = rpc::notification(
        "events.dropped",
        &json!({"reason": reason, "message_zh": messages::SUBSCRIBER_DROPPED_ZH}),
    );
    let _ = outbox.notices.try_send(notice);
}

/// Refuses a connection over a limit with one error line (`refusal`), then reads and
/// discards what the client sends until it closes (at most a second in all), so that
/// closing does not reset the connection before the client has read the line.
pub async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, refusal: &RpcError) {
    let line = rpc::failure(&Value::Null, refusal) + "\n";
    let refuse = async {
        stream.write_all(line.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        while tokio::io::AsyncReadExt::read(&mut stream, &mut sink).await? > 0 {}
        io::Result::Ok(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), refuse).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn frames(input: &[u8], max: usize) -> Vec<Frame> {
        let mut framer = LineFramer::new(BufReader::with_capacity(8, input), max);
        let mut out = Vec::new();
        while let Some(frame) = framer.next_frame().await.unwrap() {
            out.push(frame);
        }
        out
    }

    #[tokio::test]
    async fn lines_are_split_and_long_ones_refused_once() {
        let input = b"ab\r\n\n0123456789abcdef\nxyz\npartial";
        assert_eq!(
            frames(input, 10).await,
            vec![
                Frame::Line(b"ab".to_vec()),
                Frame::TooLong,
                Frame::Line(b"xyz".to_vec())
            ]
        );
    }
}
