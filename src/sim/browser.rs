//! A real browser for the kiosk tests and `medcard bench web`: headless Chromium driven through
//! chromedriver with a small W3C WebDriver client over `ureq`.
//!
//! [`Browser::start`] takes the machine-wide [`BrowserLock`] (one Chromium at a time across test
//! threads and processes), starts `/usr/bin/chromedriver` on a free loopback port in a process
//! group of its own, waits until its `/status` says ready, and opens a session with
//! `/usr/bin/chromium` headless in a fresh profile directory. Dropping the [`Browser`] ends the
//! session, stops chromedriver and its browsers, removes the profile and releases the lock.
//!
//! The page's console is read through chromedriver's log endpoint
//! (`POST /session/{id}/se/log {"type": "browser"}`, enabled by `goog:loggingPrefs`);
//! [`Browser::console_errors`] keeps every SEVERE entry (`console.error`, uncaught exceptions,
//! failed loads) since the session started.

use base64::Engine;
use serde_json::{Value, json};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The key W3C WebDriver names an element reference by.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long chromedriver may take to say it is ready.
const DRIVER_READY: Duration = Duration::from_secs(20);
/// The longest one WebDriver command may take (a page load, Chromium's start).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the `wait_for*` calls look again.
const POLL: Duration = Duration::from_millis(50);
/// A screenshot of a large window is several MiB of base64.
const MAX_ANSWER: u64 = 64 * 1024 * 1024;

static NEXT_PROFILE: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    #[error("{0} is missing; `make deps` installs chromium and chromium-driver")]
    Missing(&'static str),
    #[error("cannot take the browser lock {0}: {1}")]
    Lock(PathBuf, std::io::Error),
    #[error("cannot start chromedriver ({CHROMEDRIVER}): {0}")]
    Spawn(std::io::Error),
    #[error("chromedriver did not become ready within {0:?}; its log: {1}")]
    NotReady(Duration, String),
    #[error("cannot write {0}: {1}")]
    File(PathBuf, std::io::Error),
    #[error("WebDriver {what}: no answer from chromedriver: {message}")]
    Transport { what: String, message: String },
    #[error("WebDriver {what}: chromedriver says {error}: {message}")]
    Refused {
        what: String,
        /// The W3C error code (`no such element`, `stale element reference`, …).
        error: String,
        message: String,
    },
    #[error("WebDriver {what}: unexpected answer {answer}")]
    Answer { what: String, answer: String },
    #[error("timed out after {timeout:?} waiting for {what} (last seen: {last})")]
    Timeout {
        what: String,
        timeout: Duration,
        last: String,
    },
}

/// The browser window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrowserOptions {
    pub width: u32,
    pub height: u32,
}

impl Default for BrowserOptions {
    fn default() -> BrowserOptions {
        BrowserOptions {
            width: 1280,
            height: 800,
        }
    }
}

/// An exclusive hold on the machine's one Chromium, across processes.
pub struct BrowserLock {
    _file: File,
}

impl BrowserLock {
    /// Blocks until no other medcard test or bench runs a browser.
    pub fn acquire() -> Result<BrowserLock, BrowserError> {
        let path = BrowserLock::path();
        let file = File::create(&path).map_err(|e| BrowserError::Lock(path.clone(), e))?;
        file.lock().map_err(|e| BrowserError::Lock(path, e))?;
        Ok(BrowserLock { _file: file })
    }

    /// The lock file (`$TMPDIR/medcard-chromium.lock`), `flock`ed by its holder.
    pub fn path() -> PathBuf {
        std::env::temp_dir().join("medcard-chromium.lock")
    }
}

/// A headless Chromium session; everything it started is stopped when dropped.
pub struct Browser {
    driver: Driver,
    session: String,
    console_errors: Mutex<Vec<String>>,
}

/// One element of the page, found by a CSS selector.
pub struct Element<'b> {
    browser: &'b Browser,
    id: String,
    css: String,
}

enum Verb {
    Get,
    Post(Value),
    Delete,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a `width`×`height` window.
    pub fn start(options: BrowserOptions) -> Result<Browser, BrowserError> {
        check_installed(&[CHROMIUM, CHROMEDRIVER])?;
        let driver = Driver::start()?;
        let answer = driver.request(
            "new session",
            "/session",
            Verb::Post(session_capabilities(options, &driver.profile())),
        )?;
        let session = answer
            .get("sessionId")
            .and_then(Value::as_str)
            .ok_or_else(|| unexpected("new session", &answer))?
            .to_owned();
        Ok(Browser {
            driver,
            session,
            console_errors: Mutex::new(Vec::new()),
        })
    }

    /// Loads `url` and waits for its `load` event.
    pub fn goto(&self, url: &str) -> Result<(), BrowserError> {
        self.command(
            &format!("goto {url}"),
            "/url",
            Verb::Post(json!({"url": url})),
        )?;
        Ok(())
    }

    /// The address of the page shown now.
    pub fn current_url(&self) -> Result<String, BrowserError> {
        let answer = self.command("current url", "/url", Verb::Get)?;
        string_of("current url", answer)
    }

    /// The first element matching `css`, now.
    pub fn find(&self, css: &str) -> Result<Element<'_>, BrowserError> {
        let what = format!("find `{css}`");
        let answer = self.command(&what, "/element", Verb::Post(locator(css)))?;
        self.element(&what, css, &answer)
    }

    /// Every element matching `css`, now, in document order.
    pub fn find_all(&self, css: &str) -> Result<Vec<Element<'_>>, BrowserError> {
        let what = format!("find all `{css}`");
        let answer = self.command(&what, "/elements", Verb::Post(locator(css)))?;
        let Value::Array(found) = &answer else {
            return Err(unexpected(&what, &answer));
        };
        found.iter().map(|e| self.element(&what, css, e)).collect()
    }

    /// The first element matching `css` once it is there and displayed.
    pub fn wait_for(&self, css: &str, timeout: Duration) -> Result<Element<'_>, BrowserError> {
        poll(&format!("`{css}` displayed"), timeout, || {
            let element = self.find(css)?;
            Ok(element.is_displayed()?.then_some(element))
        })
    }

    /// The first element matching `css` once its text contains `needle`.
    pub fn wait_for_text(
        &self,
        css: &str,
        needle: &str,
        timeout: Duration,
    ) -> Result<Element<'_>, BrowserError> {
        let mut last = String::new();
        let waited = poll(&format!("`{needle}` in `{css}`"), timeout, || {
            let element = self.find(css)?;
            last = element.text()?;
            Ok(last.contains(needle).then_some(element))
        });
        waited.map_err(|e| match e {
            BrowserError::Timeout { what, timeout, .. } if !last.is_empty() => {
                BrowserError::Timeout {
                    what,
                    timeout,
                    last: format!("the text {last:?}"),
                }
            }
            other => other,
        })
    }

    /// Runs `script` as a function body with `arguments` = `args`; its return value.
    pub fn execute(&self, script: &str, args: &[Value]) -> Result<Value, BrowserError> {
        self.command(
            "execute",
            "/execute/sync",
            Verb::Post(json!({"script": script, "args": args})),
        )
    }

    /// Saves what the window shows as a PNG file at `path` (its directory created).
    pub fn screenshot_png(&self, path: &Path) -> Result<(), BrowserError> {
        let answer = self.command("screenshot", "/screenshot", Verb::Get)?;
        let encoded = string_of("screenshot", answer)?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_bytes())
            .map_err(|e| BrowserError::Answer {
                what: "screenshot".into(),
                answer: format!("not base64: {e}"),
            })?;
        let write = |path: &Path| {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(path, &png)
        };
        write(path).map_err(|e| BrowserError::File(path.to_owned(), e))
    }

    /// Every SEVERE entry of the page's console since the session started: `console.error`,
    /// uncaught exceptions, resources that failed to load.
    pub fn console_errors(&self) -> Result<Vec<String>, BrowserError> {
        // chromedriver hands each entry out once, so they are kept here.
        let answer = self.command(
            "read the console log",
            "/se/log",
            Verb::Post(json!({"type": "browser"})),
        )?;
        let Value::Array(entries) = &answer else {
            return Err(unexpected("read the console log", &answer));
        };
        let mut errors = self
            .console_errors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        errors.extend(
            entries
                .iter()
                .filter(|entry| entry.get("level").and_then(Value::as_str) == Some("SEVERE"))
                .map(|entry| {
                    entry
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned()
                }),
        );
        Ok(errors.clone())
    }

    /// Resizes the window (the kiosk's portrait and landscape screens).
    pub fn set_window_size(&self, width: u32, height: u32) -> Result<(), BrowserError> {
        self.command(
            "set the window size",
            "/window/rect",
            Verb::Post(json!({"width": width, "height": height})),
        )?;
        Ok(())
    }

    fn command(&self, what: &str, path: &str, verb: Verb) -> Result<Value, BrowserError> {
        let path = format!("/session/{}{path}", self.session);
        self.driver.request(what, &path, verb)
    }

    fn element(&self, what: &str, css: &str, answer: &Value) -> Result<Element<'_>, BrowserError> {
        let id = answer
            .get(ELEMENT_KEY)
            .and_then(Value::as_str)
            .ok_or_else(|| unexpected(what, answer))?;
        Ok(Element {
            browser: self,
            id: id.to_owned(),
            css: css.to_owned(),
        })
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Chromium quits with its session; `Driver`'s drop stops whatever is left.
        let _ = self.driver.request(
            "end the session",
            &format!("/session/{}", self.session),
            Verb::Delete,
        );
    }
}

impl Element<'_> {
    pub fn click(&self) -> Result<(), BrowserError> {
        self.command("click", "/click", Verb::Post(json!({})))?;
        Ok(())
    }

    /// The element's rendered text (empty while it is hidden).
    pub fn text(&self) -> Result<String, BrowserError> {
        let answer = self.command("text", "/text", Verb::Get)?;
        string_of(&format!("text of `{}`", self.css), answer)
    }

    /// The attribute `name`, or `None` when the element has none.
    pub fn attribute(&self, name: &str) -> Result<Option<String>, BrowserError> {
        let answer = self.command(
            &format!("attribute {name}"),
            &format!("/attribute/{name}"),
            Verb::Get,
        )?;
        Ok(answer.as_str().map(str::to_owned))
    }

    /// Types `keys` into the element.
    pub fn send_keys(&self, keys: &str) -> Result<(), BrowserError> {
        self.command("send keys", "/value", Verb::Post(json!({"text": keys})))?;
        Ok(())
    }

    pub fn is_displayed(&self) -> Result<bool, BrowserError> {
        let answer = self.command("displayed", "/displayed", Verb::Get)?;
        answer
            .as_bool()
            .ok_or_else(|| unexpected(&format!("displayed `{}`", self.css), &answer))
    }

    fn command(&self, what: &str, path: &str, verb: Verb) -> Result<Value, BrowserError> {
        let what = format!("{what} `{}`", self.css);
        self.browser
            .command(&what, &format!("/element/{}{path}", self.id), verb)
    }
}

/// chromedriver, its browsers (one process group) and the working directory of both.
struct Driver {
    child: Child,
    agent: ureq::Agent,
    base: String,
    work: PathBuf,
    _lock: BrowserLock,
}

impl Driver {
    fn start() -> Result<Driver, BrowserError> {
        let lock = BrowserLock::acquire()?;
        let work = std::env::temp_dir().join(format!(
            "medcard-browser-{}-{}",
            std::process::id(),
            NEXT_PROFILE.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(work.join("profile"))
            .map_err(|e| BrowserError::File(work.clone(), e))?;
        let log = work.join("chromedriver.log");
        let port = free_port().map_err(BrowserError::Spawn)?;
        let child = spawn_chromedriver(port, &log)?;
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(COMMAND_TIMEOUT))
            .http_status_as_error(false)
            .proxy(None)
            .build()
            .into();
        let mut driver = Driver {
            child,
            agent,
            base: format!("http://127.0.0.1:{port}"),
            work,
            _lock: lock,
        };
        driver.wait_ready()?;
        Ok(driver)
    }

    fn profile(&self) -> PathBuf {
        self.work.join("profile")
    }

    fn wait_ready(&mut self) -> Result<(), BrowserError> {
        let deadline = Instant::now() + DRIVER_READY;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            let status = self.request("status", "/status", Verb::Get);
            if status.is_ok_and(|s| s.get("ready") == Some(&Value::Bool(true))) {
                return Ok(());
            }
            std::thread::sleep(POLL);
        }
        let log = std::fs::read_to_string(self.work.join("chromedriver.log")).unwrap_or_default();
        Err(BrowserError::NotReady(DRIVER_READY, log))
    }

    /// One WebDriver command: its `value`, or chromedriver's error.
    fn request(&self, what: &str, path: &str, verb: Verb) -> Result<Value, BrowserError> {
        let url = format!("{}{path}", self.base);
        let sent = match verb {
            Verb::Get => self.agent.get(&url).call(),
            Verb::Post(body) => self.agent.post(&url).send_json(&body),
            Verb::Delete => self.agent.delete(&url).call(),
        };
        let transport = |e: ureq::Error| BrowserError::Transport {
            what: what.to_owned(),
            message: e.to_string(),
        };
        let mut response = sent.map_err(transport)?;
        let answer: Value = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_json()
            .map_err(transport)?;
        let value = answer.get("value").cloned().unwrap_or(Value::Null);
        match value.get("error").and_then(Value::as_str) {
            Some(error) => Err(BrowserError::Refused {
                what: what.to_owned(),
                error: error.to_owned(),
                message: first_line(value.get("message")),
            }),
            None => Ok(value),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) on the process group chromedriver leads (spawned with
            // `process_group(0)`, so its pgid is its pid): chromedriver and its browsers.
            unsafe {
                libc::kill(-pid, libc::SIGTERM);
            }
            super::pcscd::terminate(&mut self.child);
            // SAFETY: as above; whatever of the group outlived the SIGTERM.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

fn spawn_chromedriver(port: u16, log: &Path) -> Result<Child, BrowserError> {
    use std::os::unix::process::CommandExt;
    let out = File::create(log).map_err(|e| BrowserError::File(log.to_owned(), e))?;
    let err = out
        .try_clone()
        .map_err(|e| BrowserError::File(log.to_owned(), e))?;
    Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(BrowserError::Spawn)
}

/// The new-session request: headless Chromium in `profile`, its console log kept.
fn session_capabilities(options: BrowserOptions, profile: &Path) -> Value {
    let args = [
        "--headless".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-quic".to_owned(),
        "--no-first-run".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--disable-sync".to_owned(),
        format!("--window-size={},{}", options.width, options.height),
        format!("--user-data-dir={}", profile.display()),
    ];
    json!({"capabilities": {"alwaysMatch": {
        "browserName": "chrome",
        "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        "goog:loggingPrefs": {"browser": "ALL"},
    }}})
}

fn check_installed(programs: &[&'static str]) -> Result<(), BrowserError> {
    match programs.iter().find(|p| !Path::new(p).exists()) {
        Some(missing) => Err(BrowserError::Missing(missing)),
        None => Ok(()),
    }
}

/// A loopback port nothing listens on right now.
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Calls `check` every [`POLL`] until it finds something; a refusal (no such element yet, a
/// stale one) counts as not yet, any other error ends the wait.
fn poll<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<Option<T>, BrowserError>,
) -> Result<T, BrowserError> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check() {
            Ok(Some(found)) => return Ok(found),
            Ok(None) => "not yet".to_owned(),
            Err(refused @ BrowserError::Refused { .. }) => refused.to_string(),
            Err(other) => return Err(other),
        };
        if Instant::now() >= deadline {
            return Err(BrowserError::Timeout {
                what: what.to_owned(),
                timeout,
                last,
            });
        }
        std::thread::sleep(POLL);
    }
}

fn locator(css: &str) -> Value {
    json!({"using": "css selector", "value": css})
}

fn string_of(what: &str, answer: Value) -> Result<String, BrowserError> {
    match answer {
        Value::String(text) => Ok(text),
        other => Err(unexpected(what, &other)),
    }
}

fn unexpected(what: &str, answer: &Value) -> BrowserError {
    let mut answer = answer.to_string();
    answer.truncate(answer.floor_char_boundary(200));
    BrowserError::Answer {
        what: what.to_owned(),
        answer,
    }
}

/// chromedriver's message without the session line and stack trace it appends.
fn first_line(message: Option<&Value>) -> String {
    message
        .and_then(Value::as_str)
        .and_then(|m| m.lines().next())
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_names_make_deps() {
        let error = check_installed(&["/nonexistent/chromium"]).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("/nonexistent/chromium"), "{text}");
        assert!(text.contains("make deps"), "{text}");
        assert!(text.contains("chromium-driver"), "{text}");
    }

    #[test]
    fn the_session_asks_for_headless_chromium_in_its_own_profile_with_the_console_log() {
        let caps = session_capabilities(
            BrowserOptions {
                width: 1080,
                height: 1920,
            },
            Path::new("/tmp/p"),
        );
        let wanted = &caps["capabilities"]["alwaysMatch"];
        assert_eq!(wanted["goog:chromeOptions"]["binary"], CHROMIUM);
        let args = wanted["goog:chromeOptions"]["args"].as_array().unwrap();
        for arg in [
            "--headless",
            "--window-size=1080,1920",
            "--user-data-dir=/tmp/p",
        ] {
            assert!(args.contains(&json!(arg)), "{arg} in {args:?}");
        }
        assert_eq!(wanted["goog:loggingPrefs"]["browser"], "ALL");
    }
}
