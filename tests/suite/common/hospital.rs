//! The hospital database for the tests: a throwaway PostgreSQL cluster (`sim::postgres`,
//! run as an unprivileged user), the medcard role's password in a 0600 file, the `[hospital]`
//! section that points a daemon at it, and what the tests compare: the local journal (the
//! cache file, read-only) against what PostgreSQL holds.

use super::rpc::{Client, Rpc};
use super::temp::TempDir;
use medcard::sim::postgres::PgCluster;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A cluster with the medcard role and database, and its password file (the cluster is
/// dropped before its directory, field order).
pub struct HospitalDb {
    pub cluster: PgCluster,
    pub password_file: PathBuf,
    _dir: TempDir,
}

impl HospitalDb {
    pub fn start(tag: &str) -> HospitalDb {
        let cluster = PgCluster::new().expect("a throwaway PostgreSQL cluster (make deps)");
        let dir = TempDir::new(tag);
        let password_file = dir.join("hospital.pw");
        cluster
            .write_password_file(&password_file)
            .expect("write the password file");
        HospitalDb {
            cluster,
            password_file,
            _dir: dir,
        }
    }

    /// `[hospital]` for workstation `name` on `node`, shipping every 100 ms.
    pub fn section(&self, name: &str, node: u32) -> String {
        format!(
            "\n[hospital]\nworkstation = {name:?}\nnode = {node}\ndatabase = {:?}\n\
             password_file = {:?}\nship_interval_ms = 100\n",
            self.cluster.connection_string(),
            self.password_file.display().to_string()
        )
    }

    /// A superuser connection, to look inside.
    pub fn client(&self) -> postgres::Client {
        self.cluster
            .superuser()
            .expect("connect to the hospital database")
    }

    /// The hospital's settlements of `workstation`: (request_id, state, setl_id, insutype).
    pub fn settlements(&self, workstation: &str) -> Vec<Settlement> {
        self.client()
            .query(
                "SELECT request_id, state, setl_id, insutype FROM hospital_settlements \
                 WHERE workstation = $1 ORDER BY request_id",
                &[&workstation],
            )
            .expect("hospital_settlements")
            .iter()
            .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
            .collect()
    }

    /// The hospital's calls of `workstation`: (msgid, infno, state).
    pub fn calls(&self, workstation: &str) -> Vec<(String, String, String)> {
        self.client()
            .query(
                "SELECT msgid, infno, state FROM hospital_calls WHERE workstation = $1 \
                 ORDER BY msgid",
                &[&workstation],
            )
            .expect("hospital_calls")
            .iter()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .collect()
    }

    /// `journal_log`'s seqs for `workstation`, in order.
    pub fn log_seqs(&self, workstation: &str) -> Vec<i64> {
        self.client()
            .query(
                "SELECT seq FROM journal_log WHERE workstation = $1 ORDER BY seq",
                &[&workstation],
            )
            .expect("journal_log")
            .iter()
            .map(|row| row.get(0))
            .collect()
    }
}

/// A settlement as both sides list it: request_id, state, setl_id, the visit's insutype.
pub type Settlement = (String, String, Option<String>, Option<String>);

/// The cache file beside a rig's config.
pub fn cache_of(config: &Path) -> PathBuf {
    config.with_file_name("cache.sqlite")
}

/// The local journal's settlements, as [`HospitalDb::settlements`] lists them.
pub fn local_settlements(cache: &Path) -> Vec<Settlement> {
    local(
        cache,
        "SELECT s.request_id, s.state, s.setl_id, v.insutype FROM settlements s \
         LEFT JOIN settle_visits v ON v.mdtrt_id = s.mdtrt_id ORDER BY s.request_id",
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
    )
}

/// The local journal's calls, as [`HospitalDb::calls`] lists them.
pub fn local_calls(cache: &Path) -> Vec<(String, String, String)> {
    local(
        cache,
        "SELECT msgid, infno, state FROM settle_journal ORDER BY msgid",
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    )
}

fn local<T>(
    cache: &Path,
    sql: &str,
    row_of: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Vec<T> {
    let conn =
        rusqlite::Connection::open_with_flags(cache, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the cache read-only");
    let mut stmt = conn.prepare(sql).expect("prepare");
    stmt.query_map([], row_of)
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("read")
}

/// `system.info`'s `hospital`.
pub fn hospital_info(client: &mut Client) -> Value {
    client.result("system.info", json!({}))["hospital"].clone()
}

/// Waits until the daemon has shipped everything (state `shipping`, nothing pending).
pub fn wait_shipped(client: &mut Client) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let info = hospital_info(client);
        if info["state"] == "shipping" && info["pending_rows"] == 0 {
            return info;
        }
        assert!(Instant::now() < deadline, "not shipped: {info}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A certificate authority named `name` and a server certificate it signed for 127.0.0.1 and
/// localhost, made with the `openssl` command in `dir`: (CA certificate, server certificate,
/// server key), PEM files.
pub fn test_certificates(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let path = |file: &str| dir.join(format!("{name}-{file}"));
    let (ca_key, ca, key, csr, cert, ext) = (
        path("ca.key"),
        path("ca.pem"),
        path("server.key"),
        path("server.csr"),
        path("server.pem"),
        path("san.ext"),
    );
    std::fs::write(&ext, "subjectAltName=IP:127.0.0.1,DNS:localhost\n").expect("write the SAN");
    let text = |p: &PathBuf| p.display().to_string();
    let subject = format!("/CN=medcard test CA {name}");
    let steps: [Vec<String>; 3] = [
        [
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &subject,
            "-keyout",
            &text(&ca_key),
            "-out",
            &text(&ca),
        ]
        .map(String::from)
        .to_vec(),
        [
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            &text(&key),
            "-out",
            &text(&csr),
        ]
        .map(String::from)
        .to_vec(),
        [
            "x509",
            "-req",
            "-in",
            &text(&csr),
            "-CA",
            &text(&ca),
            "-CAkey",
            &text(&ca_key),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &text(&ext),
            "-out",
            &text(&cert),
        ]
        .map(String::from)
        .to_vec(),
    ];
    for args in steps {
        let out = std::process::Command::new("openssl")
            .args(&args)
            .output()
            .expect("openssl (make deps installs it)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    (ca, cert, key)
}
