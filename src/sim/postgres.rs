//! A throwaway PostgreSQL cluster for tests, benchmarks and demos of the hospital database
//! (docs/hospital.md): Debian's `postgresql` package (`make deps` installs it), `initdb` in a
//! temporary directory, `pg_ctl start` on a free loopback port with its Unix socket in the
//! same directory, a role and a database `medcard` with a password (so `password_file` is
//! exercised, over `scram-sha-256`). Run as root (CI), the cluster belongs to an unprivileged
//! user (`postgres`, else `nobody`): PostgreSQL refuses to run as root.
//!
//! [`PgCluster::stop`] and [`PgCluster::start`] take it down and up again on the same port and
//! data (an outage); dropping it stops it and removes the directory.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The role and database the cluster makes for medcard.
pub const ROLE: &str = "medcard";
pub const DATABASE: &str = "medcard";
/// The superuser `initdb` makes (trusted on the Unix socket only).
const SUPERUSER: &str = "postgres";

/// Why the cluster could not be made or run.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error(
        "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb); `make deps` installs it (Debian: postgresql)"
    )]
    NotInstalled,
    #[error("the throwaway cluster's directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} failed to run: {source}")]
    Spawn {
        what: String,
        source: std::io::Error,
    },
    #[error("{what} failed: {output}")]
    Failed { what: String, output: String },
    #[error("no free loopback port: {0}")]
    Port(std::io::Error),
    #[error("cannot set up the medcard role and database: {0}")]
    Setup(#[from] postgres::Error),
}

/// A running (or stopped) throwaway cluster.
pub struct PgCluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    password: String,
    /// The unprivileged user the cluster runs as when this process is root.
    run_as: Option<String>,
    running: bool,
}

impl PgCluster {
    /// Makes and starts a cluster with the medcard role and database.
    pub fn new() -> Result<PgCluster, PgError> {
        let bin = binaries()?;
        let dir = make_dir()?;
        let run_as = unprivileged_user();
        let mut cluster = PgCluster {
            bin,
            port: free_port()?,
            password: random_password(),
            run_as,
            running: false,
            dir,
        };
        cluster.init()?;
        cluster.start()?;
        cluster.create_medcard()?;
        Ok(cluster)
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding its Unix socket (and its data).
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// The medcard role's password (for the password file).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// `[hospital] database` for this cluster over loopback TCP, without the password.
    pub fn connection_string(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user={ROLE} dbname={DATABASE}",
            self.port
        )
    }

    /// Writes the medcard role's password to `path`, mode 0600.
    pub fn write_password_file(&self, path: &Path) -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        writeln!(file, "{}", self.password)
    }

    /// A superuser connection over the Unix socket (for tests that look inside).
    pub fn superuser(&self) -> Result<postgres::Client, PgError> {
        self.connect_as(SUPERUSER, DATABASE)
    }

    /// Starts it (again) on the same port and data; waits until it accepts connections.
    pub fn start(&mut self) -> Result<(), PgError> {
        if self.running {
            return Ok(());
        }
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("postgres.log");
        self.pg_ctl(&[
            "start",
            "-w",
            "-t",
            "60",
            "-l",
            &path_text(&log),
            "-o",
            &options,
        ])?;
        self.running = true;
        Ok(())
    }

    /// Serves TLS from now on with the server certificate and key (PEM files; the key must
    /// name the certificate's host, e.g. 127.0.0.1): copied into the data directory, handed to
    /// the cluster's user with the key at 0600 as PostgreSQL demands, then `ssl = on` and a
    /// configuration reload. Plain connections are still accepted (medcard's `ssl_root_cert`
    /// requires TLS of its own).
    pub fn enable_tls(&self, cert: &Path, key: &Path) -> Result<(), PgError> {
        let copy = |from: &Path, name: &str, mode: u32| -> Result<PathBuf, PgError> {
            let to = self.data().join(name);
            std::fs::copy(from, &to)
                .and_then(|_| std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode)))
                .map_err(|source| PgError::Dir {
                    path: to.clone(),
                    source,
                })?;
            self.chown(&to)?;
            Ok(to)
        };
        let cert = copy(cert, "server.crt", 0o644)?;
        let key = copy(key, "server.key", 0o600)?;
        let mut admin = self.superuser()?;
        // One statement at a time: ALTER SYSTEM refuses to run inside a transaction block.
        for statement in [
            format!("ALTER SYSTEM SET ssl_cert_file = '{}'", path_text(&cert)),
            format!("ALTER SYSTEM SET ssl_key_file = '{}'", path_text(&key)),
            "ALTER SYSTEM SET ssl = on".to_owned(),
            "SELECT pg_reload_conf()".to_owned(),
        ] {
            admin.batch_execute(&statement)?;
        }
        Ok(())
    }

    /// Stops it (fast shutdown: connections are closed); the data stays.
    pub fn stop(&mut self) -> Result<(), PgError> {
        if !self.running {
            return Ok(());
        }
        self.pg_ctl(&["stop", "-w", "-m", "fast"])?;
        self.running = false;
        Ok(())
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn init(&self) -> Result<(), PgError> {
        let pwfile = self.dir.join("superuser.pw");
        std::fs::write(&pwfile, format!("{}\n", self.password)).map_err(|source| PgError::Dir {
            path: pwfile.clone(),
            source,
        })?;
        self.chown(&pwfile)?;
        let data = path_text(&self.data());
        self.run_tool(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                SUPERUSER,
                "--pwfile",
                &path_text(&pwfile),
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        let _ = std::fs::remove_file(&pwfile);
        Ok(())
    }

    fn create_medcard(&self) -> Result<(), PgError> {
        let mut admin = self.connect_as(SUPERUSER, "postgres")?;
        // A password is a literal in CREATE ROLE; this one is hex digits only.
        admin.batch_execute(&format!(
            "CREATE ROLE {ROLE} LOGIN PASSWORD '{}'",
            self.password
        ))?;
        admin.batch_execute(&format!("CREATE DATABASE {DATABASE} OWNER {ROLE}"))?;
        Ok(())
    }

    fn connect_as(&self, user: &str, dbname: &str) -> Result<postgres::Client, PgError> {
        let mut config = postgres::Config::new();
        config
            .host_path(&self.dir)
            .port(self.port)
            .user(user)
            .dbname(dbname);
        Ok(config.connect(postgres::NoTls)?)
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<(), PgError> {
        let data = path_text(&self.data());
        let mut all = vec!["-D", &data];
        all.extend_from_slice(args);
        self.run_tool("pg_ctl", &all)
    }

    /// Runs one of PostgreSQL's programs, as the unprivileged user when root.
    fn run_tool(&self, tool: &str, args: &[&str]) -> Result<(), PgError> {
        let program = self.bin.join(tool);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&program);
                c
            }
            None => Command::new(&program),
        };
        let output = command
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| PgError::Spawn {
                what: tool.to_owned(),
                source,
            })?;
        check(tool, &output)
    }

    /// Hands `path` to the unprivileged user (when root).
    fn chown(&self, path: &Path) -> Result<(), PgError> {
        let Some(user) = &self.run_as else {
            return Ok(());
        };
        let output = Command::new("chown")
            .arg(user)
            .arg(path)
            .output()
            .map_err(|source| PgError::Spawn {
                what: "chown".to_owned(),
                source,
            })?;
        check("chown", &output)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.running {
            let _ = self.pg_ctl(&["stop", "-w", "-m", "immediate"]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The newest installed PostgreSQL's binaries.
fn binaries() -> Result<PathBuf, PgError> {
    let versions = std::fs::read_dir("/usr/lib/postgresql").map_err(|_| PgError::NotInstalled)?;
    versions
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version)
        .map(|(_, bin)| bin)
        .ok_or(PgError::NotInstalled)
}

/// A new directory for one cluster, writable by the user it runs as.
fn make_dir() -> Result<PathBuf, PgError> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("medcard-pg-{}-{n}", std::process::id()));
    let dir_error = |source| PgError::Dir {
        path: dir.clone(),
        source,
    };
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).map_err(dir_error)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(dir_error)?;
    if let Some(user) = unprivileged_user() {
        let output = Command::new("chown")
            .arg(&user)
            .arg(&dir)
            .output()
            .map_err(dir_error)?;
        check("chown", &output)?;
    }
    Ok(dir)
}

/// When this process is root: the user the cluster runs as (`postgres`, else `nobody`).
fn unprivileged_user() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    ["postgres", "nobody"]
        .into_iter()
        .find(|user| {
            Command::new("id")
                .arg("-u")
                .arg(user)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(str::to_owned)
}

fn free_port() -> Result<u16, PgError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(PgError::Port)?;
    Ok(listener.local_addr().map_err(PgError::Port)?.port())
}

/// 32 hex digits from the kernel's random source.
fn random_password() -> String {
    let mut bytes = [0u8; 16];
    if let Ok(mut random) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut random, &mut bytes);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    bytes[..4]
        .iter_mut()
        .zip(nanos.to_le_bytes())
        .for_each(|(b, n)| *b ^= n);
    hex::encode(bytes)
}

fn check(what: &str, output: &Output) -> Result<(), PgError> {
    if output.status.success() {
        return Ok(());
    }
    Err(PgError::Failed {
        what: what.to_owned(),
        output: format!(
            "{} {}",
            String::from_utf8_lossy(&output.stdout).trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        ),
    })
}

fn path_text(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throwaway_cluster_takes_the_medcard_role_by_password_and_survives_a_restart() {
        let mut cluster = PgCluster::new().expect("a throwaway cluster (make deps)");
        let connect = |cluster: &PgCluster| {
            let mut config: postgres::Config = cluster.connection_string().parse().unwrap();
            config.password(cluster.password());
            config.connect(postgres::NoTls)
        };
        let mut client = connect(&cluster).expect("medcard by password");
        client
            .batch_execute("CREATE TABLE t (x int); INSERT INTO t VALUES (7)")
            .unwrap();
        let mut wrong: postgres::Config = cluster.connection_string().parse().unwrap();
        wrong.password("not it");
        assert!(wrong.connect(postgres::NoTls).is_err());
        drop(client);
        cluster.stop().unwrap();
        assert!(connect(&cluster).is_err());
        cluster.start().unwrap();
        let mut again = connect(&cluster).expect("up again");
        let x: i32 = again.query_one("SELECT x FROM t", &[]).unwrap().get(0);
        assert_eq!(x, 7);
        let dir = cluster.socket_dir().to_owned();
        drop(again);
        drop(cluster);
        assert!(!dir.exists());
    }
}
