//! `medcard serve` as a child process for end-to-end tests: started on a socket in a
//! temporary directory, medcard's JSON-RPC client with the tests' patience, and an event
//! subscription read with deadlines (never sleep-and-hope).

use medcard::serve::client::{ClientError, Subscription};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a test waits for anything the daemon should do.
pub const PATIENCE: Duration = Duration::from_secs(10);

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// A fresh temporary directory for one daemon.
pub fn temp_dir(tag: &str) -> PathBuf {
    let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("medcard-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temporary directory");
    dir
}

/// A running `medcard serve`; killed on drop if the test did not stop it.
pub struct Daemon {
    child: Child,
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl Daemon {
    /// `medcard --log info serve --socket DIR/NAME --config /nonexistent ARGS…`; returns once
    /// the socket answers `system.info` (at most 20 s).
    pub fn start(name: &str, args: &[&str]) -> Daemon {
        Daemon::start_with_config(name, Path::new("/nonexistent"), args)
    }

    /// [`Daemon::start`] with a configuration file.
    pub fn start_with_config(name: &str, config: &Path, args: &[&str]) -> Daemon {
        Daemon::start_with_env(name, config, args, &[])
    }

    /// [`Daemon::start_with_config`] with extra environment variables.
    pub fn start_with_env(
        name: &str,
        config: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        let dir = temp_dir("daemon");
        let socket = dir.join(name);
        let log = dir.join("serve.log");
        let child = Command::new(super::medcard_bin())
            .args(["--log", "info", "serve", "--config"])
            .arg(config)
            .arg("--socket")
            .arg(&socket)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("daemon log file"))
            .spawn()
            .expect("start medcard serve");
        let mut daemon = Daemon {
            child,
            dir,
            socket,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut client) = Client::try_connect(&daemon.socket)
                && client
                    .0
                    .call_raw("system.info", json!({}))
                    .is_ok_and(|r| r.get("result").is_some())
            {
                break;
            }
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("medcard serve exited ({status}): {}", daemon.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "medcard serve did not answer within 20 s: {}",
                daemon.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still the one started (it has not exited).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.socket)
    }

    /// A connection subscribed to every topic.
    pub fn events(&self) -> Events {
        Events::subscribe(&self.socket)
    }

    /// What the daemon logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the process to exit by itself (at most `limit`); `None` if it did not.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then waits for the exit (at most 15 s).
    pub fn terminate(&mut self) -> ExitStatus {
        // SAFETY: kill(2) on the child this test started and has not reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for medcard serve") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "medcard serve did not exit within 15 s of SIGTERM: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A JSON-RPC client on one connection (medcard's own): one request at a time.
pub struct Client(medcard::serve::client::Client);

impl Client {
    pub fn connect(socket: &Path) -> Client {
        Client::try_connect(socket).expect("connect to medcard serve")
    }

    fn try_connect(socket: &Path) -> Result<Client, ClientError> {
        let mut client = medcard::serve::client::Client::connect(socket)?;
        client.set_timeout(Some(PATIENCE))?;
        Ok(Client(client))
    }

    /// Sends a request and returns its response (notifications in between are skipped).
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.0
            .call_raw(method, params)
            .unwrap_or_else(|e| panic!("no answer to {method} within {PATIENCE:?}: {e}"))
    }

    /// The result of a call that must succeed.
    pub fn result(&mut self, method: &str, params: Value) -> Value {
        let response = self.call(method, params);
        assert!(response.get("error").is_none(), "{method}: {response}");
        response["result"].clone()
    }

    /// The error object of a call that must fail.
    pub fn error(&mut self, method: &str, params: Value) -> Value {
        let response = self.call(method, params);
        assert!(response.get("result").is_none(), "{method}: {response}");
        response["error"].clone()
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
        let subscription = Client::try_connect(socket)
            .and_then(|client| client.0.subscribe(&[]))
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

    /// The next notification, waiting up to [`PATIENCE`].
    pub fn next(&mut self) -> Value {
        let event = self
            .next_before(Instant::now() + PATIENCE)
            .unwrap_or_else(|| {
                panic!(
                    "no notification within {PATIENCE:?}; seen so far: {}",
                    self.describe()
                )
            });
        self.seen.push(event.clone());
        event
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
