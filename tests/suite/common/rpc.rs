//! The test side of `medcard serve`'s JSON-RPC. Every test talks to the daemon through
//! medcard's own client (`medcard::serve::client`), wrapped here with the tests' patience
//! ([`PATIENCE`]; never sleep-and-hope): [`Client`], [`Events`] and [`call_once`]. Only the
//! protocol tests, which write malformed, partial or oversized requests on purpose, use
//! [`RawClient`]: the line protocol by hand. Both are an [`Rpc`] (bring it into scope to call
//! `call`, `result` and `error`).

use medcard::serve::client::{self, ClientError, Subscription};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long a test waits for anything the daemon should do.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A connection the client can read with a deadline: a Unix or a TCP stream.
pub trait Connection: Read + Write + Sized {
    fn duplicate(&self) -> std::io::Result<Self>;
    fn set_read_deadline(&self, left: Duration) -> std::io::Result<()>;
}

impl Connection for UnixStream {
    fn duplicate(&self) -> std::io::Result<Self> {
        self.try_clone()
    }

    fn set_read_deadline(&self, left: Duration) -> std::io::Result<()> {
        self.set_read_timeout(Some(left))
    }
}

impl Connection for TcpStream {
    fn duplicate(&self) -> std::io::Result<Self> {
        self.try_clone()
    }

    fn set_read_deadline(&self, left: Duration) -> std::io::Result<()> {
        self.set_read_timeout(Some(left))
    }
}

/// A JSON-RPC caller with the tests' patience: [`Client`] (medcard's own client) or
/// [`RawClient`] (the line protocol by hand) — one way to take a response apart.
pub trait Rpc {
    /// Sends a request and returns its whole response (`result` or `error`).
    fn call(&mut self, method: &str, params: Value) -> Value;

    /// The result of a call that must succeed.
    fn result(&mut self, method: &str, params: Value) -> Value {
        let response = self.call(method, params);
        assert!(response.get("error").is_none(), "{method}: {response}");
        response["result"].clone()
    }

    /// The error object of a call that must fail.
    fn error(&mut self, method: &str, params: Value) -> Value {
        let response = self.call(method, params);
        assert!(response.get("result").is_none(), "{method}: {response}");
        response["error"].clone()
    }
}

/// medcard's client with the tests' patience: one request at a time on one connection.
pub struct Client(client::Client);

impl Client {
    pub fn connect(socket: &Path) -> Client {
        Client::try_connect(socket).expect("connect to medcard serve")
    }

    /// A connection, or why there is none yet (the daemon still starting).
    pub fn try_connect(socket: &Path) -> Result<Client, ClientError> {
        Client::with_patience(client::Client::connect(socket))
    }

    /// A WebSocket to the web endpoint at `addr`, as a page of `origin` with `token`.
    pub fn connect_web(addr: SocketAddr, origin: Option<&str>, token: Option<&str>) -> Client {
        Client::with_patience(client::Client::connect_web(addr, origin, token))
            .expect("connect to the web endpoint")
    }

    /// The daemon's client itself (raw sends, reads, subscriptions).
    pub fn inner(&mut self) -> &mut client::Client {
        &mut self.0
    }

    /// The params of the next notification of `method`, the others skipped.
    pub fn next_notification(&mut self, method: &str) -> Value {
        loop {
            let message = self
                .inner()
                .receive()
                .expect("a notification in time")
                .expect("the connection open");
            if message["method"] == method {
                return message["params"].clone();
            }
        }
    }

    fn with_patience(
        connected: Result<client::Client, ClientError>,
    ) -> Result<Client, ClientError> {
        let mut client = connected?;
        client.set_timeout(Some(PATIENCE))?;
        Ok(Client(client))
    }
}

impl Rpc for Client {
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.0
            .call_raw(method, params)
            .unwrap_or_else(|e| panic!("no answer to {method} within {PATIENCE:?}: {e}"))
    }
}

/// The line protocol by hand, for the tests of the protocol itself: one request at a time.
/// `stream` and `lines` are open for tests that write malformed requests or read what
/// follows the last message.
pub struct RawClient<S: Connection = UnixStream> {
    pub stream: S,
    pub lines: BufReader<S>,
    next_id: u64,
}

impl RawClient {
    pub fn connect(socket: &Path) -> RawClient {
        RawClient::of(UnixStream::connect(socket).expect("connect to medcard serve"))
    }
}

impl RawClient<TcpStream> {
    pub fn connect_tcp(addr: SocketAddr) -> RawClient<TcpStream> {
        RawClient::of(TcpStream::connect(addr).expect("connect to medcard serve over TCP"))
    }
}

impl<S: Connection> RawClient<S> {
    pub fn of(stream: S) -> RawClient<S> {
        stream.set_read_deadline(PATIENCE).expect("read timeout");
        let lines = BufReader::new(stream.duplicate().expect("clone the stream"));
        RawClient {
            stream,
            lines,
            next_id: 1,
        }
    }

    /// Writes `bytes` as they are (a request, a fragment, garbage).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send to medcard serve");
    }

    /// The next message, whatever it is (waiting up to [`PATIENCE`]).
    pub fn read(&mut self) -> Value {
        read_message(&mut self.lines, Instant::now() + PATIENCE)
            .unwrap_or_else(|| panic!("nothing from medcard serve within {PATIENCE:?}"))
    }
}

impl<S: Connection> Rpc for RawClient<S> {
    /// Sends a request and returns its response (notifications in between are skipped).
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.send_raw(format!("{request}\n").as_bytes());
        loop {
            let message = read_message(&mut self.lines, Instant::now() + PATIENCE)
                .unwrap_or_else(|| panic!("no answer to {method} within {PATIENCE:?}"));
            if message.get("id") == Some(&json!(id)) {
                return message;
            }
        }
    }
}

/// One call on a fresh connection, waiting up to `limit`; `None` when the daemon is not
/// there or dies before answering.
#[cfg(feature = "fault-injection")] // only the fault matrix uses it
pub fn call_once(socket: &Path, method: &str, params: Value, limit: Duration) -> Option<Value> {
    let mut client = client::Client::connect(socket).ok()?;
    client.set_timeout(Some(limit)).ok()?;
    client.call_raw(method, params).ok()
}

/// One JSON message, or `None` when `deadline` passes first (or the daemon closes).
fn read_message<S: Connection>(lines: &mut BufReader<S>, deadline: Instant) -> Option<Value> {
    let mut line = Vec::new();
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        lines
            .get_ref()
            .set_read_deadline(left.max(Duration::from_millis(1)))
            .ok()?;
        match lines.read_until(b'\n', &mut line) {
            Ok(0) => return None,
            Ok(_) if line.ends_with(b"\n") => {
                // The next plain read (a test's own) gets the usual patience back.
                lines.get_ref().set_read_deadline(PATIENCE).ok()?;
                return Some(serde_json::from_slice(&line).unwrap_or_else(|e| {
                    let line = String::from_utf8_lossy(&line);
                    panic!("medcard serve sent something that is not JSON ({e}): {line:?}")
                }));
            }
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("reading from medcard serve: {e}"),
        }
    }
}

/// A subscription to every topic on a connection of its own.
pub struct Events {
    subscription: Subscription,
    /// Every notification seen, in order (for failure messages).
    pub seen: Vec<Value>,
}

impl Events {
    pub fn subscribe(socket: &Path) -> Events {
        let subscription = client::Client::connect(socket)
            .and_then(|client| client.subscribe(&[]))
            .expect("subscribe to medcard serve");
        Events {
            subscription,
            seen: Vec::new(),
        }
    }

    /// The next notification, or `None` when `deadline` passes first (or the daemon closes).
    fn next_before(&mut self, deadline: Instant) -> Option<Value> {
        let left = deadline.checked_duration_since(Instant::now())?;
        self.subscription
            .set_timeout(Some(left.max(Duration::from_millis(1))))
            .ok()?;
        match self.subscription.next()? {
            Ok(event) => Some(event),
            Err(ClientError::TimedOut) => None,
            Err(e) => panic!("reading from medcard serve: {e}"),
        }
    }

    /// The notifications about `reader` up to and including the first `method` one (waiting
    /// up to [`PATIENCE`] for each); notifications about other readers are skipped.
    pub fn until(&mut self, reader: &str, method: &str) -> Vec<Value> {
        let deadline = Instant::now() + PATIENCE;
        let mut got = Vec::new();
        loop {
            let event = self.next_before(deadline).unwrap_or_else(|| {
                panic!(
                    "no {method} for {reader} within {PATIENCE:?}; seen so far: {}",
                    self.describe()
                )
            });
            self.seen.push(event.clone());
            if event["params"]["reader"] != reader {
                continue;
            }
            let done = event["method"] == method;
            got.push(event);
            if done {
                return got;
            }
        }
    }

    /// The methods of `events`, in order.
    pub fn methods(events: &[Value]) -> Vec<&str> {
        events
            .iter()
            .map(|e| e["method"].as_str().unwrap_or("?"))
            .collect()
    }

    fn describe(&self) -> String {
        Events::methods(&self.seen)
            .iter()
            .zip(&self.seen)
            .map(|(m, e)| format!("{m}({})", e["params"]["reader"]))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
