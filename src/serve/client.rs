//! The daemon's client: JSON-RPC 2.0 over the Unix socket (or the optional loopback TCP
//! listener), blocking, one object per line, one request at a time on a connection. Request
//! ids are numbered per connection; notifications that arrive before an answer are skipped.
//! [`Client::subscribe`] turns a connection into an iterator of `events.subscribe`
//! notifications. `medcard call` / `events`, the demo, the benches and the tests use it.
//! [`Client::connect_web`] speaks the same over the web endpoint's WebSocket (`serve::web`,
//! one JSON object per text message), with or without a token.
//!
//! Before anything is sent on a Unix socket, the client checks who serves it (the uid the
//! kernel vouches for, SO_PEERCRED) against [`DaemonUid`]: a socket another local user put
//! in the daemon's place gets nothing — above all no PIN.

use serde_json::{Value, json};
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Whom a client accepts as the daemon: the uids the process serving the socket may run as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DaemonUid {
    /// root, this client's own user, or the owner of the socket's directory (medcard's user
    /// owns /run/medcard).
    #[default]
    Usual,
    /// This uid only (`medcard call --expect-uid`).
    Only(u32),
}

impl DaemonUid {
    /// The uids accepted for the daemon serving `socket`.
    fn accepted(self, socket: &Path) -> Vec<u32> {
        match self {
            DaemonUid::Only(uid) => vec![uid],
            DaemonUid::Usual => {
                let directory = socket
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                let owner = std::fs::metadata(directory).map(|meta| meta.uid());
                let mut uids = vec![0, super::peer::effective_uid()];
                uids.extend(owner.ok());
                uids.sort_unstable();
                uids.dedup();
                uids
            }
        }
    }

    /// Whether the process serving `stream` (connected to `socket`) is the daemon.
    fn check(self, stream: &UnixStream, socket: &Path) -> Result<(), ClientError> {
        let target = socket.display().to_string();
        let uid = super::peer::server_uid(stream).map_err(|source| ClientError::PeerUnknown {
            target: target.clone(),
            source,
        })?;
        let accepted = self.accepted(socket);
        if accepted.contains(&uid) {
            return Ok(());
        }
        let accepted: Vec<String> = accepted.iter().map(u32::to_string).collect();
        Err(ClientError::NotTheDaemon {
            target,
            uid,
            accepted: accepted.join(", "),
        })
    }
}

/// Why a call did not bring a result.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot connect to the daemon at {target}: {source} (is `medcard serve` running? \
         --socket names another socket)"
    )]
    Connect { target: String, source: io::Error },
    /// The socket is served by a process of a user the client does not accept.
    #[error(
        "refusing to talk to {target}: the process serving it runs as uid {uid}, not as \
         medcard's user (accepted: uid {accepted}); nothing was sent. Another local user may \
         have put their own socket there: check the socket's directory. If the daemon really \
         runs as uid {uid}, pass --expect-uid {uid} (or MEDCARD_EXPECT_UID={uid})"
    )]
    NotTheDaemon {
        target: String,
        uid: u32,
        accepted: String,
    },
    /// Who serves the socket cannot be read.
    #[error("cannot tell who serves {target} ({source}); nothing was sent")]
    PeerUnknown { target: String, source: io::Error },
    #[error("no answer from the daemon in time")]
    TimedOut,
    #[error("the daemon closed the connection without answering")]
    Closed,
    #[error("talking to the daemon: {0}")]
    Io(#[from] io::Error),
    /// The daemon answered with a JSON-RPC error.
    #[error("{method} failed: {code} {message}")]
    Rpc {
        method: String,
        code: i64,
        message: String,
        /// The error's `data` (`message_zh`, `reader_code`, …); null when absent.
        data: Value,
    },
    /// A line that is not JSON.
    #[error("the daemon sent something that is not a JSON-RPC message: {source}: {line:?}")]
    Malformed {
        line: String,
        source: serde_json::Error,
    },
    /// The web endpoint refused the WebSocket handshake (its origin, `Host` or token).
    #[error("the web endpoint at {target} refused the connection: HTTP {status}: {body}")]
    WebRefused {
        target: String,
        status: u16,
        body: String,
    },
    /// A WebSocket failure other than a refusal.
    #[error("the web endpoint's WebSocket: {0}")]
    WebSocket(#[from] tungstenite::Error),
    /// A response with neither `result` nor `error`.
    #[error(
        "the daemon sent something that is not a JSON-RPC message: an answer to {method} \
         with neither result nor error: {response}"
    )]
    NoResult { method: String, response: Value },
}

impl ClientError {
    /// The JSON-RPC error object, for a daemon's error (`{code, message, data}`).
    pub fn rpc_error(&self) -> Option<Value> {
        match self {
            ClientError::Rpc {
                code,
                message,
                data,
                ..
            } => {
                let mut error = json!({"code": code, "message": message});
                if !data.is_null() {
                    error["data"] = data.clone();
                }
                Some(error)
            }
            _ => None,
        }
    }
}

/// A byte stream to the daemon.
trait Stream: Read + Write + Send {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
}

impl Stream for UnixStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        UnixStream::set_read_timeout(self, timeout)
    }
}

impl Stream for TcpStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }
}

/// One connection to the daemon.
pub struct Client {
    transport: Transport,
    next_id: u64,
}

/// How messages travel: lines on a byte stream, or WebSocket text messages.
enum Transport {
    Lines {
        stream: BufReader<Box<dyn Stream>>,
        /// A line read in part when a read timed out; the rest follows on the next read.
        partial: Vec<u8>,
    },
    WebSocket(Box<tungstenite::WebSocket<TcpStream>>),
}

impl Client {
    /// Connects to the daemon's Unix socket, served by one of the [usual](DaemonUid::Usual)
    /// uids.
    pub fn connect(socket: &Path) -> Result<Client, ClientError> {
        Client::connect_expecting(socket, DaemonUid::Usual)
    }

    /// Connects to the daemon's Unix socket and checks that the process serving it runs as
    /// `daemon` says, before anything is sent ([`ClientError::NotTheDaemon`] otherwise).
    pub fn connect_expecting(socket: &Path, daemon: DaemonUid) -> Result<Client, ClientError> {
        let stream = UnixStream::connect(socket).map_err(|source| ClientError::Connect {
            target: socket.display().to_string(),
            source,
        })?;
        daemon.check(&stream, socket)?;
        Ok(Client::of(Box::new(stream)))
    }

    /// Connects to the daemon's loopback TCP listener.
    pub fn connect_tcp(addr: SocketAddr) -> Result<Client, ClientError> {
        let stream = TcpStream::connect(addr).map_err(|source| ClientError::Connect {
            target: addr.to_string(),
            source,
        })?;
        Ok(Client::of(Box::new(stream)))
    }

    /// Connects to the web endpoint's WebSocket (`ws://ADDR/ws`) as a page of `origin`
    /// would (none: as a program), presenting `token` when given.
    pub fn connect_web(
        addr: SocketAddr,
        origin: Option<&str>,
        token: Option<&str>,
    ) -> Result<Client, ClientError> {
        let target = format!("ws://{addr}/ws");
        let stream = TcpStream::connect(addr).map_err(|source| ClientError::Connect {
            target: target.clone(),
            source,
        })?;
        stream.set_nodelay(true)?;
        let request = web_request(&target, origin, token)?;
        match tungstenite::client::client(request, stream) {
            Ok((socket, _)) => Ok(Client {
                transport: Transport::WebSocket(Box::new(socket)),
                next_id: 1,
            }),
            Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
                Err(ClientError::WebRefused {
                    target,
                    status: response.status().as_u16(),
                    body: String::from_utf8_lossy(response.body().as_deref().unwrap_or(&[]))
                        .into_owned(),
                })
            }
            Err(tungstenite::HandshakeError::Failure(e)) => Err(ClientError::WebSocket(e)),
            Err(tungstenite::HandshakeError::Interrupted(_)) => Err(ClientError::TimedOut),
        }
    }

    fn of(stream: Box<dyn Stream>) -> Client {
        Client {
            transport: Transport::Lines {
                stream: BufReader::new(stream),
                partial: Vec::new(),
            },
            next_id: 1,
        }
    }

    /// How long a read waits for the daemon ([`ClientError::TimedOut`] after); `None`: for
    /// ever (the default).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<(), ClientError> {
        match &self.transport {
            Transport::Lines { stream, .. } => Ok(stream.get_ref().set_read_timeout(timeout)?),
            Transport::WebSocket(socket) => Ok(socket.get_ref().set_read_timeout(timeout)?),
        }
    }

    /// Sends `text` as it is (not numbered, not checked): for testing what the daemon does
    /// with malformed or oversized requests. The answer is read with [`Client::receive`].
    pub fn send_text(&mut self, text: &str) -> Result<(), ClientError> {
        match &mut self.transport {
            Transport::Lines { stream, .. } => {
                stream.get_mut().write_all(format!("{text}\n").as_bytes())?;
            }
            Transport::WebSocket(socket) => socket.send(tungstenite::Message::text(text))?,
        }
        Ok(())
    }

    /// The next message the daemon sends; `None` once it closed the connection.
    pub fn receive(&mut self) -> Result<Option<Value>, ClientError> {
        self.next_message()
    }

    /// The request the next [`call`](Self::call) of `method` sends (for showing it).
    pub fn request(&self, method: &str, params: &Value) -> Value {
        json!({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
    }

    /// Calls `method`: its result, or the daemon's error as [`ClientError::Rpc`].
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, ClientError> {
        let mut response = self.call_raw(method, params)?;
        if let Some(error) = response.get_mut("error") {
            return Err(rpc_error(method, error.take()));
        }
        match response.get_mut("result") {
            Some(result) => Ok(result.take()),
            None => Err(ClientError::NoResult {
                method: method.to_owned(),
                response,
            }),
        }
    }

    /// Calls `method` and returns the whole response object (`result` or `error`). An error
    /// with `"id": null` answers it too: the daemon refused the connection (1008) or could not
    /// read the request's id (an over-long line), and this client has one request out.
    pub fn call_raw(&mut self, method: &str, params: Value) -> Result<Value, ClientError> {
        let id = self.next_id;
        let request = self.request(method, &params);
        self.next_id += 1;
        self.send(&request)?;
        loop {
            let message = self.next_message()?.ok_or(ClientError::Closed)?;
            let unaddressed_error =
                message.get("id") == Some(&Value::Null) && message.get("error").is_some();
            if message.get("id") == Some(&json!(id)) || unaddressed_error {
                return Ok(message);
            }
        }
    }

    /// Subscribes to `topics` (all when empty) and hands the connection over to the
    /// notifications.
    pub fn subscribe(mut self, topics: &[String]) -> Result<Subscription, ClientError> {
        let params = if topics.is_empty() {
            json!({})
        } else {
            json!({"topics": topics})
        };
        self.call("events.subscribe", params.clone())?;
        Ok(Subscription {
            client: self,
            params,
        })
    }

    fn send(&mut self, message: &Value) -> Result<(), ClientError> {
        self.send_text(&message.to_string())
    }

    /// The next JSON message; `None` when the daemon closed the connection.
    fn next_message(&mut self) -> Result<Option<Value>, ClientError> {
        let text = match &mut self.transport {
            Transport::Lines { stream, partial } => match next_line(stream, partial)? {
                Some(line) => line,
                None => return Ok(None),
            },
            Transport::WebSocket(socket) => match next_text(socket)? {
                Some(text) => text.into_bytes(),
                None => return Ok(None),
            },
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|source| ClientError::Malformed {
                line: String::from_utf8_lossy(&text).into_owned(),
                source,
            })
    }
}

/// The next whole line of `stream` (a part read before a timeout kept in `partial`).
fn next_line(
    stream: &mut BufReader<Box<dyn Stream>>,
    partial: &mut Vec<u8>,
) -> Result<Option<Vec<u8>>, ClientError> {
    match stream.read_until(b'\n', partial) {
        Ok(_) if partial.is_empty() => return Ok(None),
        Ok(_) => {}
        Err(e) if is_timeout(&e) => return Err(ClientError::TimedOut),
        Err(e) => return Err(ClientError::Io(e)),
    }
    let line = std::mem::take(partial);
    Ok(line.ends_with(b"\n").then_some(line))
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// The next text (or binary) message of `socket`; `None` once it closed.
fn next_text(
    socket: &mut tungstenite::WebSocket<TcpStream>,
) -> Result<Option<String>, ClientError> {
    loop {
        match socket.read() {
            Ok(tungstenite::Message::Text(text)) => return Ok(Some(text.as_str().to_owned())),
            Ok(tungstenite::Message::Binary(bytes)) => {
                return Ok(Some(String::from_utf8_lossy(&bytes).into_owned()));
            }
            Ok(tungstenite::Message::Close(_)) => return Ok(None),
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                return Ok(None);
            }
            Err(tungstenite::Error::Io(e)) if is_timeout(&e) => return Err(ClientError::TimedOut),
            Err(e) => return Err(e.into()),
        }
    }
}

/// The WebSocket handshake request: the `medcard.jsonrpc` subprotocol, the token's.
fn web_request(
    target: &str,
    origin: Option<&str>,
    token: Option<&str>,
) -> Result<tungstenite::handshake::client::Request, ClientError> {
    use tungstenite::client::IntoClientRequest;
    let mut request = target.into_client_request()?;
    let mut protocols = super::web::guard::PROTOCOL.to_owned();
    if let Some(token) = token {
        protocols.push_str(&format!(
            ", {}{token}",
            super::web::guard::TOKEN_PROTOCOL_PREFIX
        ));
    }
    let headers = request.headers_mut();
    let header = |text: &str| {
        text.parse()
            .map_err(|e: tungstenite::http::header::InvalidHeaderValue| {
                ClientError::WebSocket(tungstenite::Error::HttpFormat(e.into()))
            })
    };
    headers.insert("Sec-WebSocket-Protocol", header(&protocols)?);
    if let Some(origin) = origin {
        headers.insert("Origin", header(origin)?);
    }
    Ok(request)
}

fn rpc_error(method: &str, error: Value) -> ClientError {
    ClientError::Rpc {
        method: method.to_owned(),
        code: error["code"].as_i64().unwrap_or_default(),
        message: error["message"].as_str().unwrap_or_default().to_owned(),
        data: error.get("data").cloned().unwrap_or(Value::Null),
    }
}

/// A connection subscribed to the daemon's notifications; each item is one whole
/// notification (`{"jsonrpc", "method", "params"}`). Ends when the daemon closes.
pub struct Subscription {
    client: Client,
    params: Value,
}

impl Subscription {
    /// Subscribes again with the same topics (after an `events.dropped`); events in between
    /// are lost.
    pub fn renew(&mut self) -> Result<(), ClientError> {
        let request = self.client.request("events.subscribe", &self.params);
        self.client.next_id += 1;
        self.client.send(&request)
    }

    /// How long [`next`](Iterator::next) waits for a notification.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<(), ClientError> {
        self.client.set_timeout(timeout)
    }
}

impl Iterator for Subscription {
    type Item = Result<Value, ClientError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let message = match self.client.next_message() {
                Ok(Some(message)) => message,
                Ok(None) => return None,
                Err(e) => return Some(Err(e)),
            };
            if let Some(error) = message.get("error") {
                return Some(Err(rpc_error("events.subscribe", error.clone())));
            }
            if message.get("method").is_some() {
                return Some(Ok(message));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A daemon stand-in answering one connection with `reply` for each line it reads.
    fn answering(reply: impl Fn(&Value) -> Vec<String> + Send + 'static) -> Client {
        let dir = std::env::temp_dir().join(format!(
            "medcard-client-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sock");
        let listener = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut writer = stream.try_clone().unwrap();
            for line in BufReader::new(stream).lines() {
                let request: Value = serde_json::from_str(&line.unwrap()).unwrap();
                for answer in reply(&request) {
                    writeln!(writer, "{answer}").unwrap();
                }
            }
        });
        let client = Client::connect(&path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        client
    }

    #[test]
    fn a_socket_served_by_another_uid_gets_nothing() {
        let dir = std::env::temp_dir().join(format!("medcard-client-uid-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sock");
        let listener = UnixListener::bind(&path).unwrap();
        let received = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut bytes = Vec::new();
            let _ = stream.read_to_end(&mut bytes);
            bytes
        });
        let me = crate::serve::peer::effective_uid();
        let other = me.wrapping_add(1);
        let refused = Client::connect_expecting(&path, DaemonUid::Only(other)).and_then(|mut c| {
            c.set_timeout(Some(Duration::from_millis(200)))?;
            c.call("card.verify_pin", json!({"pin": "123456"}))
        });
        let error = refused.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(error.contains(&format!("runs as uid {me}")), "{error}");
        assert_eq!(received.join().unwrap(), b"", "the server got bytes");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_usual_daemon_uids_are_root_the_user_and_the_directory_owner() {
        let me = crate::serve::peer::effective_uid();
        let accepted = DaemonUid::Usual.accepted(Path::new("/nonexistent-medcard/x.sock"));
        assert!(
            accepted.contains(&0) && accepted.contains(&me),
            "{accepted:?}"
        );
        let owner = std::fs::metadata("/").unwrap().uid();
        assert!(
            DaemonUid::Usual
                .accepted(Path::new("/x.sock"))
                .contains(&owner)
        );
        assert_eq!(
            DaemonUid::Only(4242).accepted(Path::new("/x.sock")),
            vec![4242]
        );
    }

    #[test]
    fn an_error_with_a_null_id_answers_the_request_out() {
        let mut client = answering(|_| {
            vec![json!({"jsonrpc": "2.0", "id": null, "error": {"code": 1008, "message": "too many connections"}}).to_string()]
        });
        // Without the rule the call would wait for its own id: time out, so that it fails.
        client.set_timeout(Some(Duration::from_secs(5))).unwrap();
        assert!(matches!(
            client.call("system.info", json!({})),
            Err(ClientError::Rpc { code: 1008, .. })
        ));
    }

    #[test]
    fn results_errors_and_notifications_in_between() {
        let mut client = answering(|request| {
            let id = &request["id"];
            match request["method"].as_str() {
                Some("ok") => vec![
                    json!({"jsonrpc": "2.0", "method": "card.ready", "params": {}}).to_string(),
                    json!({"jsonrpc": "2.0", "id": id, "result": {"n": id}}).to_string(),
                ],
                Some("bad") => vec![
                    json!({"jsonrpc": "2.0", "id": id, "error": {"code": 1001, "message": "no card", "data": {"message_zh": "无卡"}}})
                        .to_string(),
                ],
                _ => vec!["not json".to_owned()],
            }
        });
        assert_eq!(client.call("ok", json!({})).unwrap(), json!({"n": 1}));
        let error = client.call("bad", json!({})).unwrap_err();
        assert!(
            matches!(&error, ClientError::Rpc { code: 1001, data, .. } if data["message_zh"] == "无卡")
        );
        assert_eq!(error.rpc_error().unwrap()["message"], "no card");
        assert!(matches!(
            client.call("garbage", json!({})),
            Err(ClientError::Malformed { .. })
        ));
    }

    #[test]
    fn a_subscription_yields_notifications_and_a_silent_daemon_times_out() {
        let client = answering(|request| match request["method"].as_str() {
            Some("events.subscribe") => vec![
                json!({"jsonrpc": "2.0", "id": request["id"], "result": {"subscribed": []}})
                    .to_string(),
                json!({"jsonrpc": "2.0", "method": "card.inserted", "params": {"reader": "A"}})
                    .to_string(),
            ],
            _ => Vec::new(),
        });
        let mut events = client.subscribe(&[]).unwrap();
        let event = events.next().unwrap().unwrap();
        assert_eq!(event["method"], "card.inserted");
        events.set_timeout(Some(Duration::from_millis(50))).unwrap();
        assert!(matches!(events.next(), Some(Err(ClientError::TimedOut))));
    }
}
