//! `medcard serve` as a child process for end-to-end tests: started on a socket in a
//! temporary directory of its own, with clients ([`super::rpc`]) on that socket.

use super::rpc::{Client, Events, Rpc};
use super::temp::TempDir;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A running `medcard serve`; killed on drop if the test did not stop it.
pub struct Daemon {
    child: Child,
    _dir: TempDir,
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

    /// `medcard serve` with `config` on virtual readers holding `cards` (fixture names, or
    /// paths ending in `.toml`), with extra environment variables.
    pub fn start_virtual(config: &Path, cards: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut args = vec!["--virtual".to_owned()];
        args.extend(cards.iter().map(|card| {
            if card.ends_with(".toml") {
                (*card).to_owned()
            } else {
                super::fixture(card).display().to_string()
            }
        }));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let daemon = Daemon::start_with_env("medcard.sock", config, &args, env);
        daemon.wait_for_readers(cards.len());
        daemon
    }

    /// Waits until `readers.list` lists at least `count` readers: the monitor lists its
    /// readers after the socket answers, and a `card.read` naming a reader not yet listed
    /// is 1002.
    fn wait_for_readers(&self, count: usize) {
        let mut client = self.client();
        super::wait_until("the virtual readers listed", super::rpc::PATIENCE, || {
            let readers = client.result("readers.list", json!({}));
            readers.as_array().map_or(0, Vec::len) >= count
        });
    }

    /// [`Daemon::start_with_config`] with extra environment variables.
    pub fn start_with_env(
        name: &str,
        config: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        let dir = TempDir::new("daemon");
        let socket = dir.join(name);
        Daemon::spawn(dir, socket, config, args, env)
    }

    /// `medcard serve` on `socket` (a path outside the daemon's own temporary directory).
    pub fn start_at(socket: &Path, config: &Path, args: &[&str]) -> Daemon {
        Daemon::spawn(TempDir::new("daemon"), socket.to_owned(), config, args, &[])
    }

    /// Starts `medcard serve` on `socket`, its log in `dir`; returns once it answers.
    fn spawn(
        dir: TempDir,
        socket: PathBuf,
        config: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
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
            _dir: dir,
            socket,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut client) = Client::try_connect(&daemon.socket)
                && client
                    .call("system.info", json!({}))
                    .get("result")
                    .is_some()
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
    #[cfg(feature = "fault-injection")] // only the fault matrix uses it
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
    }
}
