//! A real `medcard insurer-sim` child on loopback, for the tests of the insurer link, the
//! cache sync and the daemon's verdicts.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The simulator process; killed on drop.
pub struct InsurerSim {
    child: Child,
    /// `127.0.0.1:PORT` as the simulator printed it.
    pub addr: String,
}

impl InsurerSim {
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
        InsurerSim { child, addr }
    }

    /// The platform endpoint.
    pub fn url(&self) -> String {
        format!("http://{}/fsi/api/callService", self.addr)
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
