//! A real `medcard insurer-sim` child on loopback, for the tests of the insurer link, the
//! cache sync, the daemon's verdicts and settlement; and what the insurer holds, asked
//! directly (its admin endpoint, its X302 list of the day's settlements, its msg_log), so a
//! test can check the insurer's side, not only what medcard says.

use super::temp::TempDir;
use medcard::clock::DateTime;
use medcard::insurer::settlement::{DayDetailIn, DayDetailRow, data_input, output_part};
use medcard::insurer::{InsurerClient, InsurerConfig, Retry};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Any free port on loopback.
pub const ANY_PORT: &str = "127.0.0.1:0";

/// The simulator process; killed on drop (then its own directory, if it has one, removed).
pub struct InsurerSim {
    child: Child,
    /// `127.0.0.1:PORT` as the simulator printed it.
    pub addr: String,
    _dir: Option<TempDir>,
}

impl InsurerSim {
    /// The `opter_type` of each request of `infno` the simulator logged, in order.
    pub fn opter_types(&self, infno: &str) -> Vec<Value> {
        let log = self.admin(json!({"action": "msg_log"}));
        log["rows"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|row| row["infno"] == infno)
            .map(|row| row["opter_type"].clone())
            .collect()
    }

    /// Starts the simulator on `listen` (`127.0.0.1:0`: any port) with its SQLite at `db`.
    pub fn start(db: &Path, listen: &str, extra: &[&str]) -> InsurerSim {
        let mut child = Command::new(super::medcard_bin())
            .args(["insurer-sim", "--listen", listen, "--db"])
            .arg(db)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start medcard insurer-sim");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("sim stdout"))
            .read_line(&mut line)
            .expect("the sim's address line");
        let addr = line.trim().to_string();
        assert!(addr.starts_with("127.0.0.1:"), "first line: {line:?}");
        InsurerSim {
            child,
            addr,
            _dir: None,
        }
    }

    /// On any port with its SQLite in `dir` (`dir/sim.sqlite`).
    pub fn in_dir(dir: &Path) -> InsurerSim {
        InsurerSim::start(&sim_db(dir), ANY_PORT, &[])
    }

    /// On any port with `extra` flags, in a temporary directory of its own (removed when
    /// the simulator is dropped).
    pub fn fresh(tag: &str, extra: &[&str]) -> InsurerSim {
        let dir = TempDir::new(tag);
        let mut sim = InsurerSim::start(&sim_db(&dir), ANY_PORT, extra);
        sim._dir = Some(dir);
        sim
    }

    /// The platform endpoint.
    pub fn url(&self) -> String {
        format!("http://{}/fsi/api/callService", self.addr)
    }

    /// A client configuration for this simulator: 5 s timeout, the rest default.
    pub fn config(&self) -> InsurerConfig {
        InsurerConfig {
            url: self.url(),
            timeout: Duration::from_secs(5),
            ..InsurerConfig::default()
        }
    }

    /// A request to the admin endpoint; asserts it was accepted.
    pub fn admin(&self, request: Value) -> Value {
        let value = self.admin_raw(request.clone());
        assert_eq!(value["ok"], true, "admin {request} → {value}");
        value
    }

    /// A request to the admin endpoint, accepted or not (`{"ok": false, "error": …}`).
    pub fn admin_raw(&self, request: Value) -> Value {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .build()
            .into();
        let mut response = agent
            .post(format!("http://{}/admin", self.addr))
            .send_json(&request)
            .expect("admin request");
        response.body_mut().read_json().expect("admin JSON")
    }

    /// How many requests of `infno` reached the simulator (its stats, faults included).
    pub fn requests(&self, infno: &str) -> u64 {
        self.admin(json!({"action": "stats"}))["requests"][infno]
            .as_u64()
            .unwrap_or(0)
    }

    /// How many requests of `infno` the simulator logged as processed (its msg_log).
    pub fn logged(&self, infno: &str) -> usize {
        let log = self.admin(json!({"action": "msg_log"}));
        log["rows"]
            .as_array()
            .map(|rows| rows.iter().filter(|r| r["infno"] == infno).count())
            .unwrap_or(0)
    }

    /// A link of the test's own to the simulator (a hospital code no daemon uses).
    pub fn own_link(&self) -> InsurerClient {
        InsurerClient::new(InsurerConfig {
            fixmedins_code: "H50010399999".into(),
            ..self.config()
        })
    }

    /// The insurer's settlements of today (any state), from its own X302.
    pub fn settlements_today(&self) -> Vec<DayDetailRow> {
        let input = data_input(&DayDetailIn {
            stmt_date: DateTime::now().date(),
        });
        let reply = self
            .own_link()
            .call("X302", input, Retry::Idempotent)
            .expect("X302 from the simulator");
        output_part(&reply.output, "detail").expect("X302 detail")
    }

    /// The insurer's settlements of a visit that stand (not refunded, not reversed).
    pub fn standing(&self, mdtrt_id: &str) -> Vec<DayDetailRow> {
        self.settlements_today()
            .into_iter()
            .filter(|r| r.mdtrt_id == mdtrt_id && r.refd_setl_flag != "1" && r.revs_flag != "1")
            .collect()
    }

    /// Kills the simulator (the insurer goes down).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for InsurerSim {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The simulator's SQLite file in `dir`.
pub fn sim_db(dir: &Path) -> PathBuf {
    dir.join("sim.sqlite")
}

/// A daemon config file in `dir` for verdicts: the insurer at `url`, the cache at
/// `dir/cache.sqlite`, a one-second sync interval, pages of two; `cache_lines` are extra
/// `[cache]` keys.
pub fn verdict_config(dir: &Path, url: &str, stale_limit_s: u64, cache_lines: &str) -> PathBuf {
    let path = dir.join("medcard.toml");
    let text = format!(
        "[insurer]\nurl = {url:?}\nmdtrtarea_admvs = \"500000\"\ntimeout_ms = 2000\n\
         sync_interval_s = 1\npage_size = 2\n\n[cache]\npath = {:?}\nstale_limit_s = {stale_limit_s}\n\
         {cache_lines}",
        dir.join("cache.sqlite").display().to_string()
    );
    std::fs::write(&path, text).expect("write the config");
    path
}
