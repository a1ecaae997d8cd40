//! A settlement rig for the socket tests: a real `medcard insurer-sim` on loopback, a config
//! file pointing the daemon at it with a cache (and journal) in a temporary directory, and
//! helpers that look at the insurer's side directly (its list of the day's settlements, its
//! msg_log) so a test can check what the insurer holds, not only what medcard says.

use super::daemon::{Client, Daemon, temp_dir};
use super::fixture;
use super::insurer::InsurerSim;
use medcard::clock::DateTime;
use medcard::insurer::settlement::{DayDetailIn, DayDetailRow, data_input, output_part};
use medcard::insurer::{InsurerClient, InsurerConfig, Retry};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// 阿莫西林胶囊: 甲类 (fully in scope) in fixtures/insurer/catalogue.toml.
pub const CLASS_A: &str = "XJ01CAA040A001010100001";
/// 小王's card (seed 000): his insurer record has balc 102.80 and 230.00 in scope this year.
pub const XIAOWANG: &str = "xiaowang";

pub struct Rig {
    pub dir: PathBuf,
    pub sim: InsurerSim,
    pub config: PathBuf,
}

impl Rig {
    /// A simulator and a config; `settle_lines` are extra `[settle]` keys.
    pub fn start(tag: &str, settle_lines: &str) -> Rig {
        let dir = temp_dir(tag);
        let sim = InsurerSim::start(&dir.join("sim.sqlite"), "127.0.0.1:0", &[]);
        let config = dir.join("medcard.toml");
        let text = format!(
            "[socket]\nmax_connections = 128\n\n[insurer]\nurl = {:?}\nmdtrtarea_admvs = \"500000\"\ntimeout_ms = 3000\n\
             sync_interval_s = 1\n\n[cache]\npath = {:?}\n\n[settle]\ntimeout_ms = 3000\n\
             resolve_interval_s = 1\n{settle_lines}\n",
            sim.url(),
            dir.join("cache.sqlite").display().to_string()
        );
        std::fs::write(&config, text).expect("write the config");
        Rig { dir, sim, config }
    }

    /// `medcard serve` with virtual readers holding `cards` (fixture names).
    pub fn daemon(&self, cards: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut args = vec!["--virtual".to_owned()];
        args.extend(cards.iter().map(|c| fixture(c).display().to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Daemon::start_with_env("medcard.sock", &self.config, &args, env)
    }

    /// A link of the test's own to the simulator.
    pub fn link(&self) -> InsurerClient {
        InsurerClient::new(InsurerConfig {
            url: self.sim.url(),
            fixmedins_code: "H50010399999".into(),
            timeout: Duration::from_secs(5),
            ..InsurerConfig::default()
        })
    }

    /// The insurer's settlements of today (any state).
    pub fn insurer_rows(&self) -> Vec<DayDetailRow> {
        let input = data_input(&DayDetailIn {
            stmt_date: DateTime::now().date(),
        });
        let reply = self
            .link()
            .call("X302", input, Retry::Idempotent)
            .expect("X302 from the simulator");
        output_part(&reply.output, "detail").expect("X302 detail")
    }

    /// The insurer's settlements of a visit that stand (not refunded, not reversed).
    pub fn standing(&self, mdtrt_id: &str) -> Vec<DayDetailRow> {
        self.insurer_rows()
            .into_iter()
            .filter(|r| r.mdtrt_id == mdtrt_id && r.refd_setl_flag != "1" && r.revs_flag != "1")
            .collect()
    }

    /// How many requests of `infno` reached the simulator (its msg_log).
    pub fn requests(&self, infno: &str) -> usize {
        let log = self.sim.admin(json!({"action": "msg_log"}));
        log["rows"]
            .as_array()
            .map(|rows| rows.iter().filter(|r| r["infno"] == infno).count())
            .unwrap_or(0)
    }

    /// The person's balance at the insurer (1101 by ID number).
    pub fn balc(&self, certno: &str) -> String {
        use medcard::insurer::InsurerLink;
        let person = self.link().person_by_certno(certno).expect("1101");
        person.insuinfo[0].balc.to_string()
    }

    /// `medcard reconcile` on today: (exit code, output).
    pub fn reconcile(&self) -> (i32, String) {
        let out = Command::new(super::medcard_bin())
            .args(["reconcile", "--config"])
            .arg(&self.config)
            .output()
            .expect("run medcard reconcile");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), text)
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.sim.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits until the daemon's cache holds the catalogue (the first sync), so local previews
/// know the items' classes.
pub fn wait_catalogue(client: &mut Client) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = client.result("sync.status", json!({}));
        if status["versions"]["catalogue"].as_u64().unwrap_or(0) > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "no catalogue sync: {status}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the card in the (only) reader has been judged (carries a verdict).
pub fn wait_card(client: &mut Client) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let read = client.call("card.read", json!({}));
        if let Some(card) = read.get("result").filter(|c| c["verdict"].is_object()) {
            return card.clone();
        }
        assert!(Instant::now() < deadline, "no judged card: {read}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// visit.register for the card in the reader, at 内科.
pub fn register(client: &mut Client) -> String {
    let visit = client.result(
        "visit.register",
        json!({"dept_code": "A03", "dept_name": "内科", "dr_name": "张医生"}),
    );
    visit["mdtrt_id"].as_str().expect("mdtrt_id").to_owned()
}

/// One line of `amount` yuan of the 甲类 item (qty 1).
pub fn one_line(amount: &str) -> Value {
    json!([{"code": CLASS_A, "name": "阿莫西林胶囊", "qty": "1", "price": amount}])
}

/// settle.preview; returns the whole answer.
pub fn preview(client: &mut Client, mdtrt_id: &str, items: Value) -> Value {
    client.result(
        "settle.preview",
        json!({"mdtrt_id": mdtrt_id, "items": items}),
    )
}

impl Rig {
    /// [`Rig::start`] for a daemon that reads the PC/SC readers (pcscd + vpcd) instead of
    /// `--virtual` ones: the same simulator and config, with no PSAM reader
    /// (`readers.psam = "none"`: the 2.0 fixture cards need none).
    pub fn start_pcsc(tag: &str, settle_lines: &str) -> Rig {
        let rig = Rig::start(tag, settle_lines);
        let mut text = std::fs::read_to_string(&rig.config).expect("read the config");
        text.push_str("\n[readers]\npsam = \"none\"\n");
        std::fs::write(&rig.config, text).expect("write the config");
        rig
    }

    /// `medcard serve` with this config on the PC/SC readers (no `--virtual`).
    pub fn pcsc_daemon(&self) -> Daemon {
        Daemon::start_with_config("medcard.sock", &self.config, &[])
    }
}
