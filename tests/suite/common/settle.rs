//! A settlement rig for the socket tests: a real `medcard insurer-sim` on loopback, a config
//! file pointing the daemon at it with a cache (and journal) in a temporary directory, and
//! helpers that look at the insurer's side directly (its list of the day's settlements, its
//! msg_log) so a test can check what the insurer holds, not only what medcard says.

use super::daemon::Daemon;
use super::insurer::InsurerSim;
use super::rpc::{Client, Rpc};
use super::temp::TempDir;
use medcard::insurer::settlement::DayDetailRow;
use medcard::settle::service::Patient;
use serde::Serialize;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// 阿莫西林胶囊: 甲类 (fully in scope) in fixtures/insurer/catalogue.toml.
pub const CLASS_A: &str = "XJ01CAA040A001010100001";
/// 小王's card (seed 000): his insurer record has balc 102.80 and 230.00 in scope this year.
pub const XIAOWANG: &str = "xiaowang";

/// 小王 as a patient registered by ID number (no card), the way `settle::service` takes
/// him: employee 310 in Chongqing, judged ok (fixtures/insurer/persons.toml).
pub fn xiaowang_by_certno() -> Patient {
    Patient {
        psn_no: "50000000000000012345".into(),
        psn_name: "王小".into(),
        insutype: "310".into(),
        psn_type: "11".into(),
        insuplc_admdvs: "500000".into(),
        mdtrt_cert_type: "02".into(),
        mdtrt_cert_no: "500103199103080319".into(),
        may_settle: medcard::verdict::MaySettle::Yes,
        verdict_code: Some(medcard::verdict::VerdictCode::Ok),
        ytd_hint: None,
    }
}

/// The simulator is stopped before its directory goes (field order).
pub struct Rig {
    pub sim: InsurerSim,
    pub config: PathBuf,
    _dir: TempDir,
}

impl Rig {
    /// A simulator and a config; `settle_lines` are extra `[settle]` keys.
    pub fn start(tag: &str, settle_lines: &str) -> Rig {
        Rig::start_with(tag, settle_lines, &[])
    }

    /// [`Rig::start`] with extra `medcard insurer-sim` flags.
    pub fn start_with(tag: &str, settle_lines: &str, sim_args: &[&str]) -> Rig {
        let dir = TempDir::new(tag);
        let sim = InsurerSim::start(
            &super::insurer::sim_db(&dir),
            super::insurer::ANY_PORT,
            sim_args,
        );
        let config = dir.join("medcard.toml");
        let text = format!(
            "[socket]\nmax_connections = 128\n\n[insurer]\nurl = {:?}\nmdtrtarea_admvs = \"500000\"\ntimeout_ms = 3000\n\
             sync_interval_s = 1\n\n[cache]\npath = {:?}\n\n[settle]\ntimeout_ms = 3000\n\
             resolve_interval_s = 1\n{settle_lines}\n",
            sim.url(),
            dir.join("cache.sqlite").display().to_string()
        );
        std::fs::write(&config, text).expect("write the config");
        Rig {
            sim,
            config,
            _dir: dir,
        }
    }

    /// `medcard serve` with virtual readers holding `cards` (fixture names).
    pub fn daemon(&self, cards: &[&str], env: &[(&str, &str)]) -> Daemon {
        Daemon::start_virtual(&self.config, cards, env)
    }

    /// The insurer's settlements of a visit that stand (not refunded, not reversed).
    pub fn standing(&self, mdtrt_id: &str) -> Vec<DayDetailRow> {
        self.sim.standing(mdtrt_id)
    }

    /// The fee lines the insurer holds for a visit, from the simulator's own database:
    /// (feedetl_sn, chrg_bchno, setl_id), in upload order.
    pub fn fee_lines(&self, mdtrt_id: &str) -> Vec<(String, String, Option<String>)> {
        let conn = self.sim_conn();
        let mut stmt = conn
            .prepare(
                "SELECT feedetl_sn, chrg_bchno, setl_id FROM fee_lines WHERE mdtrt_id = ?1 \
                 ORDER BY rowid",
            )
            .expect("the simulator's fee_lines");
        stmt.query_map([mdtrt_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("query fee_lines")
            .collect::<Result<_, _>>()
            .expect("read fee_lines")
    }

    /// The insurer's settlement books, from the simulator's own database: every 2207 it
    /// settled, (setl_id, chrg_bchno, status: `settled`, `refunded` or `reversed`).
    #[cfg(feature = "fault-injection")] // only the hospital's fault test uses it
    pub fn sim_books(&self) -> Vec<(String, String, String)> {
        let conn = self.sim_conn();
        let mut stmt = conn
            .prepare("SELECT setl_id, chrg_bchno, status FROM settlements ORDER BY rowid")
            .expect("the simulator's settlements");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("query settlements")
            .collect::<Result<_, _>>()
            .expect("read settlements")
    }

    /// The visit's status at the insurer (`registered`, `cancelled`), from the simulator's
    /// own database.
    #[cfg(feature = "fault-injection")] // only the full-disk tests use it
    pub fn visit_status(&self, mdtrt_id: &str) -> String {
        self.sim_conn()
            .query_row(
                "SELECT status FROM visits WHERE mdtrt_id = ?1",
                [mdtrt_id],
                |r| r.get(0),
            )
            .expect("the simulator's visit")
    }

    /// The credential a visit was registered with at the insurer (2201's
    /// `mdtrt_cert_type`, `mdtrt_cert_no`), from the simulator's own database.
    pub fn visit_credential(&self, mdtrt_id: &str) -> (String, String) {
        self.sim_conn()
            .query_row(
                "SELECT mdtrt_cert_type, mdtrt_cert_no FROM visits WHERE mdtrt_id = ?1",
                [mdtrt_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("the simulator's visit")
    }

    /// The visit the insurer registered under 门诊号 `ipt_otp_no` (what a receipt or the
    /// kiosk's screen shows): its `mdtrt_id`, from the simulator's own database.
    pub fn mdtrt_id_of(&self, ipt_otp_no: &str) -> String {
        self.sim_conn()
            .query_row(
                "SELECT mdtrt_id FROM visits WHERE ipt_otp_no = ?1",
                [ipt_otp_no],
                |r| r.get(0),
            )
            .expect("the simulator's visit")
    }

    /// The daemon's journal, read from its cache file: (visits registered, calls sent or
    /// about to be, by state).
    pub fn journal_rows(&self) -> (usize, Vec<(String, String)>) {
        let path = self.config.with_file_name("cache.sqlite");
        let conn = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open the cache file");
        let visits: i64 = conn
            .query_row("SELECT count(*) FROM settle_visits", [], |r| r.get(0))
            .expect("count visits");
        let mut stmt = conn
            .prepare("SELECT infno, state FROM settle_journal ORDER BY rowid")
            .expect("the journal");
        let calls = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query the journal")
            .collect::<Result<_, _>>()
            .expect("read the journal");
        (usize::try_from(visits).unwrap_or(0), calls)
    }

    /// The simulator's database, read-only.
    fn sim_conn(&self) -> rusqlite::Connection {
        let db = self.sim_db();
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the simulator's database")
    }

    /// Every request the simulator received, in order (its msg_log, not capped like the
    /// admin action's): (msgid, infno, outcome, err_msg).
    pub fn msg_log(&self) -> Vec<(String, String, String, Option<String>)> {
        let conn = self.sim_conn();
        let mut stmt = conn
            .prepare("SELECT msgid, infno, outcome, err_msg FROM msg_log ORDER BY id")
            .expect("the simulator's msg_log");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .expect("query msg_log")
            .collect::<Result<_, _>>()
            .expect("read msg_log")
    }

    /// How many requests of `infno` reached the simulator (its msg_log).
    pub fn requests(&self, infno: &str) -> usize {
        self.sim.logged(infno)
    }

    /// The person's balance at the insurer (1101 by ID number).
    pub fn balc(&self, certno: &str) -> String {
        use medcard::insurer::InsurerLink;
        let person = self.sim.own_link().person_by_certno(certno).expect("1101");
        person.insuinfo[0].balc.to_string()
    }

    /// `medcard reconcile` on today: (exit code, output).
    pub fn reconcile(&self) -> (i32, String) {
        self.reconcile_with(&[])
    }

    /// `medcard reconcile ARGS…` on today: (exit code, output).
    pub fn reconcile_with(&self, args: &[&str]) -> (i32, String) {
        let out = self.run_reconcile(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), text)
    }

    /// `medcard reconcile --format json ARGS…` on today: (exit code, the report).
    pub fn reconcile_json(&self, args: &[&str]) -> (i32, Value) {
        let mut all = vec!["--format", "json"];
        all.extend_from_slice(args);
        let out = self.run_reconcile(&all);
        let report = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        (out.status.code().unwrap_or(-1), report)
    }

    fn run_reconcile(&self, args: &[&str]) -> std::process::Output {
        Command::new(super::medcard_bin())
            .args(["reconcile", "--config"])
            .arg(&self.config)
            .args(args)
            .output()
            .expect("run medcard reconcile")
    }

    /// The simulator's database file (for a test that plants a difference in the insurer's
    /// books).
    pub fn sim_db(&self) -> PathBuf {
        super::insurer::sim_db(&self._dir)
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

/// settle.commit's params: the preview to settle, under the caller's `request_id`.
pub fn commit_params(preview_id: impl Serialize, request_id: &str) -> Value {
    json!({"preview_id": preview_id, "request_id": request_id})
}

/// settle.refund's params: the settlement to refund, under the caller's `request_id`.
pub fn refund_params(setl_id: impl Serialize, request_id: &str) -> Value {
    json!({"setl_id": setl_id, "request_id": request_id})
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
