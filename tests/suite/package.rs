//! The Debian package (packaging/build-deb, docs/packaging.md) on this machine, as hospital
//! IT installs it. Built from the release binary twice — at the binary's own version and at a
//! higher one, for the upgrade — and checked by lintian: clean, every tag that stands
//! explained in packaging/debian/lintian-overrides. Then, as root (CI runs the suite as root
//! in a fresh container; elsewhere the test says that it skips): `dpkg -i`; the user, the
//! directories and the enabled units; the installed binary's self-check of the installed
//! configuration; `systemd-analyze verify` on the installed units; `medcard serve` from the
//! installed configuration as the medcard user, its socket at the configured path with the
//! configured mode, answering `system.info` and listing pcscd's readers; the man pages and
//! completions; the upgrade keeping the file at the cache path and a local edit of the
//! conffile; `dpkg -r` keeping both, `dpkg --purge` removing them with everything else.
//!
//! A guard purges the package however the test ends; a machine-wide lock keeps two runs
//! apart, and the real PC/SC stack's lock is held while the installed daemon runs (it opens
//! every reader pcscd has). A medcard installed on the machine by anyone else is left alone:
//! the test says so and skips.

use crate::common::other_user::is_root;
use crate::common::stack::{READER_0, Stack};
use crate::common::temp::TempDir;
use crate::common::{self, json_of};
use medcard::serve::config::Config;
use std::fs::File;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const BINARY: &str = "/usr/bin/medcard";
const CONFIG: &str = "/etc/medcard/medcard.toml";
const STATE: &str = "/var/lib/medcard";
/// Written while this test has medcard on the machine, removed once nothing of it is left: a
/// package (or its directories) found at the start with this file beside it was left by an
/// earlier run of this test, and is purged.
const MARKER: &str = "/tmp/medcard-package-test.installed";

/// One built package.
struct Deb {
    path: PathBuf,
    version: String,
}

/// The package at the binary's version and the upgrade to it.
struct Packages {
    first: Deb,
    upgrade: Deb,
}

/// Both packages, built once for the tests of this file, from the release binary (`make
/// test` has built it; alone, this builds it) into `target/tmp/package/`.
fn packages() -> &'static Packages {
    static PACKAGES: OnceLock<Packages> = OnceLock::new();
    PACKAGES.get_or_init(|| {
        let binary = common::release_binary();
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("package");
        let version = env!("CARGO_PKG_VERSION");
        Packages {
            first: build(&binary, &out, version),
            upgrade: build(&binary, &out, &format!("{version}+upgrade1")),
        }
    })
}

fn build(binary: &Path, out: &Path, version: &str) -> Deb {
    let output = Command::new(common::repo_file("packaging/build-deb"))
        .arg("--binary")
        .arg(binary)
        .args(["--version", version])
        .arg("--out")
        .arg(out)
        .output()
        .expect("run packaging/build-deb");
    let stdout = succeeded("packaging/build-deb", &output);
    let path = PathBuf::from(stdout.trim());
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    assert!(
        path.is_file() && name.starts_with(&format!("medcard_{version}_")),
        "packaging/build-deb printed {stdout:?}"
    );
    Deb {
        path,
        version: version.to_string(),
    }
}

/// Its stdout, once `output` is known to be a success; else a panic with all it printed.
fn succeeded(what: &str, output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Whether `program` runs here; on CI it must (`make deps` installs it).
fn available(program: &str, package: &str) -> bool {
    let here = Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        here || std::env::var("CI").as_deref() != Ok("true"),
        "{program} is missing: `make deps` must install the Debian package {package}"
    );
    if !here {
        eprintln!("SKIPPED: {program} is not installed (Debian package {package}; `make deps`)");
    }
    here
}

#[test]
fn the_package_is_lintian_clean() {
    if !available("lintian", "lintian") {
        return;
    }
    // The one `make deb` makes (the upgrade's differs in its version only).
    let deb = &packages().first;
    let output = Command::new("lintian")
        .args(["--display-info", "--pedantic"])
        .args(["--fail-on", "error,warning,info,pedantic"])
        .arg(&deb.path)
        .output()
        .expect("run lintian");
    let stdout = String::from_utf8_lossy(&output.stdout);
    // Tags are "E: medcard: tag …" (E, W, I, P, X); "N:" lines are notes.
    let tags: Vec<&str> = stdout
        .lines()
        .filter(|line| {
            line.get(1..3) == Some(": ") && line.get(..1).is_some_and(|c| "EWIPX".contains(c))
        })
        .collect();
    assert!(
        output.status.success() && tags.is_empty(),
        "lintian {}: fix each tag, or explain it in packaging/debian/lintian-overrides:\n\
         {stdout}{}",
        deb.path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_package_installs_serves_upgrades_and_purges() {
    const TEST: &str = "the_package_installs_serves_upgrades_and_purges";
    if !is_root() {
        eprintln!("SKIPPED {TEST}: dpkg -i needs root (CI runs the suite as root)");
        return;
    }
    let packages = packages();
    let _lock = machine_lock();
    let Some(installation) = Installation::begin(TEST) else {
        return;
    };

    installation.install(&packages.first);
    let installed = Installed::read();
    installed.has_user_directories_and_enabled_units();
    let _ = installed_self_check();
    installed.units_verify();
    installed.serves_as_the_medcard_user();
    installed.has_man_pages_and_completions();

    let local = LocalState::make();
    installation.install(&packages.upgrade);
    local.is_kept("the upgrade");
    let _ = installed_self_check();

    installation.dpkg(&["--remove", "medcard"]);
    assert!(!Path::new(BINARY).exists(), "dpkg -r leaves {BINARY}");
    local.is_kept("dpkg -r");

    installation.dpkg(&["--purge", "medcard"]);
    installed.is_all_gone();
}

/// The polkit rule the package installs, run by node against a stand-in of polkit's rule API
/// (`polkit.addRule`, `polkit.Result`): the medcard user may use pcscd and its cards, nobody
/// else gains anything; the .pkla form for polkit 0.105 names the same user and actions.
#[test]
fn the_polkit_rule_lets_only_the_medcard_user_reach_pcscd() {
    let rules = common::repo_file("packaging/debian/medcard-pcscd.rules");
    let pkla = std::fs::read_to_string(common::repo_file("packaging/debian/medcard-pcscd.pkla"))
        .expect("read the .pkla");
    const ACTIONS: [&str; 2] = [
        "org.debian.pcsc-lite.access_pcsc",
        "org.debian.pcsc-lite.access_card",
    ];
    assert!(
        pkla.lines().any(|l| l == "Identity=unix-user:medcard")
            && pkla
                .lines()
                .any(|l| l == format!("Action={}", ACTIONS.join(";")))
            && pkla.lines().any(|l| l == "ResultAny=yes"),
        "{pkla}"
    );
    if Command::new("node").arg("--version").output().is_err() {
        eprintln!("SKIPPED running the polkit rule: node is not installed");
        return;
    }
    let script = r#"
        const rules = [];
        const polkit = { addRule: (rule) => rules.push(rule), Result: { YES: "yes", NO: "no" } };
        new Function("polkit", require("fs").readFileSync(process.argv[1], "utf8"))(polkit);
        const ask = (id, user) => {
            for (const rule of rules) {
                const result = rule({ id, lookup: () => "" }, { user, isInGroup: () => false });
                if (result !== undefined) return result;
            }
            return null;
        };
        const answers = {};
        for (const id of JSON.parse(process.argv[2]))
            for (const user of ["medcard", "www-data", "nobody"]) answers[id + " " + user] = ask(id, user);
        console.log(JSON.stringify(answers));
    "#;
    let asked = [
        ACTIONS[0],
        ACTIONS[1],
        "org.freedesktop.login1.reboot",
        "org.freedesktop.systemd1.manage-units",
    ];
    let output = Command::new("node")
        .args(["-e", script])
        .arg(&rules)
        .arg(serde_json::to_string(&asked).expect("JSON"))
        .output()
        .expect("run node");
    let answers = json_of(&output);
    for id in asked {
        for user in ["medcard", "www-data", "nobody"] {
            let expected = if ACTIONS.contains(&id) && user == "medcard" {
                serde_json::json!("yes")
            } else {
                serde_json::Value::Null
            };
            assert_eq!(answers[format!("{id} {user}")], expected, "{answers}");
        }
    }
}

/// The lock of this file's installs: one medcard package on the machine at a time.
fn machine_lock() -> File {
    let path = "/tmp/medcard-package.lock";
    let file = File::create(path).expect("create the package tests' lock file");
    file.lock().expect("lock the package tests' lock file");
    file
}

/// `medcard doctor` of the installed binary on the installed configuration: the file found
/// and valid, the insurer (not configured there) skipped, the exit status the report's.
fn installed_self_check() -> serde_json::Value {
    let output = Command::new(BINARY)
        .args(["doctor", "--config", CONFIG, "--format", "json"])
        .output()
        .expect("run the installed medcard");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "medcard doctor's JSON: {e}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let exit = match report["status"].as_str() {
        Some("pass" | "skip") => 0,
        Some("warn") => 1,
        _ => 2,
    };
    assert_eq!(output.status.code(), Some(exit), "{report}");
    let config = doctor_check(&report, "config");
    assert_eq!(config["status"], "pass", "{report}");
    assert!(
        config["found"]["en"]
            .as_str()
            .is_some_and(|f| f.contains(CONFIG)),
        "{config}"
    );
    // The installed configuration has no insurer: those checks are skipped, not failed.
    assert_eq!(
        doctor_check(&report, "insurer")["status"],
        "skip",
        "{report}"
    );
    report
}

/// The check `id` of a `medcard doctor --format json` report.
fn doctor_check<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    report["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["id"] == id))
        .unwrap_or_else(|| panic!("no {id} check in {report}"))
}

/// medcard installed by this test: purged when dropped, however the test ends.
struct Installation;

impl Installation {
    /// `None`, once it said why, when a medcard this test did not install is on the machine.
    fn begin(test: &str) -> Option<Installation> {
        let present = package_status().is_some()
            || Path::new("/etc/medcard").exists()
            || Path::new(STATE).exists();
        if present && !Path::new(MARKER).exists() {
            eprintln!(
                "SKIPPED {test}: medcard is installed on this machine, or /etc/medcard or \
                 {STATE} exist, and not by this test: it neither replaces nor purges them"
            );
            return None;
        }
        std::fs::write(MARKER, "medcard installed by tests/suite/package.rs\n")
            .expect("write the test's marker");
        let installation = Installation;
        if present {
            eprintln!("{test}: purging what an earlier, interrupted run of this test left");
            installation.dpkg(&["--purge", "medcard"]);
        }
        Some(installation)
    }

    fn install(&self, deb: &Deb) {
        let path = deb.path.to_str().expect("a UTF-8 path");
        self.dpkg(&["--install", path]);
        assert_eq!(
            package_status().as_deref(),
            Some("installed"),
            "after dpkg -i"
        );
        let version = dpkg_query("${Version}").expect("the installed version");
        assert_eq!(version, deb.version);
    }

    /// `dpkg ARGS…` without a terminal (a conffile question would fail it, not hang it).
    fn dpkg(&self, args: &[&str]) -> String {
        let output = Command::new("dpkg")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
            .expect("run dpkg");
        succeeded(&format!("dpkg {}", args.join(" ")), &output)
    }
}

impl Drop for Installation {
    /// Purges; the marker stays while anything of the package is left, so that the next run
    /// knows it for this test's.
    fn drop(&mut self) {
        let _ = Command::new("dpkg")
            .args(["--purge", "medcard"])
            .stdin(Stdio::null())
            .output();
        if package_status().is_none()
            && !Path::new("/etc/medcard").exists()
            && !Path::new(STATE).exists()
        {
            let _ = std::fs::remove_file(MARKER);
        }
    }
}

/// `dpkg-query`'s FORMAT for the medcard package; `None` when dpkg does not know it.
fn dpkg_query(format: &str) -> Option<String> {
    let output = Command::new("dpkg-query")
        .args(["--show", "--showformat", format, "medcard"])
        .stderr(Stdio::null())
        .output()
        .expect("run dpkg-query");
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The package's state ("installed", "config-files", …); `None` when it is not on the machine.
fn package_status() -> Option<String> {
    dpkg_query("${db:Status-Status}").filter(|status| status != "not-installed")
}

/// What the first install put on the machine.
struct Installed {
    /// Every path `dpkg -L` lists that is not a directory.
    files: Vec<PathBuf>,
    config: Config,
    uid: u32,
    gid: u32,
}

impl Installed {
    fn read() -> Installed {
        let listed = Command::new("dpkg")
            .args(["--listfiles", "medcard"])
            .output()
            .expect("run dpkg -L");
        let files = succeeded("dpkg -L medcard", &listed)
            .lines()
            .map(PathBuf::from)
            .filter(|path| !path.is_dir())
            .collect();
        let text = std::fs::read_to_string(CONFIG).expect("the installed configuration");
        let config = Config::parse(&text).expect("the installed configuration parses");
        let uid = medcard::serve::peer::user_id("medcard").expect("the user medcard");
        let gid = medcard::serve::peer::group_id("medcard").expect("the group medcard");
        Installed {
            files,
            config,
            uid,
            gid,
        }
    }

    /// The installed file whose path ends with `suffix`.
    fn file(&self, suffix: &str) -> &Path {
        self.files
            .iter()
            .find(|path| path.to_string_lossy().ends_with(suffix))
            .unwrap_or_else(|| panic!("the package has no {suffix}: {:?}", self.files))
    }

    fn has_user_directories_and_enabled_units(&self) {
        let passwd = Command::new("getent")
            .args(["passwd", "medcard"])
            .output()
            .expect("run getent");
        let passwd = succeeded("getent passwd medcard", &passwd);
        let fields: Vec<&str> = passwd.trim().split(':').collect();
        assert_eq!(fields.get(5), Some(&STATE), "{passwd}");
        assert!(
            fields
                .get(6)
                .is_some_and(|shell| shell.ends_with("nologin")),
            "{passwd}"
        );
        for dir in [STATE, "/run/medcard"] {
            let meta = std::fs::metadata(dir).unwrap_or_else(|e| panic!("{dir}: {e}"));
            assert!(meta.is_dir(), "{dir}");
            assert_eq!((meta.uid(), meta.gid()), (self.uid, self.gid), "{dir}");
            assert_eq!(meta.mode() & 0o7777, 0o750, "{dir}");
        }
        let conffiles = dpkg_query("${Conffiles}").unwrap_or_default();
        assert!(conffiles.contains(CONFIG), "conffiles: {conffiles:?}");
        // deb-systemd-helper (init-system-helpers) enables them even where systemd is not
        // running: they start at the next boot.
        if Command::new("deb-systemd-helper")
            .arg("--help")
            .output()
            .is_ok()
        {
            for link in [
                "/etc/systemd/system/multi-user.target.wants/medcard.service",
                "/etc/systemd/system/sockets.target.wants/medcard.socket",
            ] {
                let meta = std::fs::symlink_metadata(link);
                assert!(
                    meta.is_ok_and(|m| m.file_type().is_symlink()),
                    "{link} not enabled"
                );
            }
        }
    }

    /// `systemd-analyze verify` on the units where the package put them (ExecStart's
    /// /usr/bin/medcard is there now).
    fn units_verify(&self) {
        if !available("systemd-analyze", "systemd") {
            return;
        }
        let output = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(self.file("/systemd/system/medcard.service"))
            .arg(self.file("/systemd/system/medcard.socket"))
            .output()
            .expect("run systemd-analyze");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && !stderr.contains("medcard"),
            "systemd-analyze verify: {stderr}"
        );
    }

    /// `medcard serve` from the installed configuration as the medcard user, as the unit runs
    /// it, on the real pcscd: the socket at socket.path with socket.mode, owned by medcard;
    /// `system.info` from the installed `medcard call` (its default socket); pcscd's readers
    /// listed; gone again after SIGTERM.
    fn serves_as_the_medcard_user(&self) {
        let _stack = Stack::start();
        let log = TempDir::new("package");
        let daemon = Serving::start(&log.join("serve.log"));
        let info = daemon.call("system.info");
        assert_eq!(info["version"], env!("CARGO_PKG_VERSION"), "{info}");
        assert_eq!(info["pid"], daemon.pid(), "{info}");

        let socket = &self.config.socket.path;
        let meta = std::fs::metadata(socket).unwrap_or_else(|e| panic!("{socket:?}: {e}"));
        let mode = u32::from_str_radix(&self.config.socket.mode, 8).expect("socket.mode");
        assert!(meta.file_type().is_socket(), "{socket:?}");
        assert_eq!(meta.mode() & 0o777, mode, "{socket:?}'s mode");
        assert_eq!((meta.uid(), meta.gid()), (self.uid, self.gid), "{socket:?}");

        // The medcard user reaches pcscd (Debian 12's pcscd asks no polkit; where it does,
        // the package's rule lets this user in).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let readers = daemon.call("readers.list");
            let listed = readers
                .as_array()
                .is_some_and(|list| list.iter().any(|reader| reader["name"] == READER_0));
            if listed {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the installed daemon never listed {READER_0}: {readers}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // The installed doctor, beside the installed daemon: pcscd, its readers and the
        // daemon's socket all pass.
        let report = installed_self_check();
        for part in ["pcscd", "readers", "socket", "disk"] {
            assert_eq!(
                doctor_check(&report, part)["status"],
                "pass",
                "{part}: {report}"
            );
        }
        let log_text = daemon.stop();
        assert!(
            !socket.exists(),
            "{socket:?} left after SIGTERM\n{log_text}"
        );
    }

    fn has_man_pages_and_completions(&self) {
        let pages: Vec<&PathBuf> = self
            .files
            .iter()
            .filter(|path| path.starts_with("/usr/share/man/man1"))
            .collect();
        assert!(pages.len() > 10, "man pages: {pages:?}");
        for page in &pages {
            let tested = Command::new("gzip").arg("-t").arg(page).output();
            assert!(
                tested.is_ok_and(|t| t.status.success()),
                "{page:?} is not gzip"
            );
        }
        let serve = self.file("/usr/share/man/man1/medcard-serve.1.gz");
        let troff = Command::new("gzip").arg("-dc").arg(serve).output();
        let troff = succeeded("gzip -dc", &troff.expect("run gzip"));
        assert!(
            troff.contains(".TH medcard-serve 1") && troff.contains("\\-\\-config"),
            "{troff}"
        );
        if Command::new("man").arg("--version").output().is_ok() {
            let rendered = Command::new("man")
                .arg("-l")
                .arg(serve)
                .env("MANPAGER", "cat")
                .env("LC_ALL", "C.UTF-8")
                .output()
                .expect("run man");
            let text = succeeded("man -l", &rendered);
            assert!(text.contains("--config"), "{text}");
        }

        let bash = self.file("/usr/share/bash-completion/completions/medcard");
        let syntax = Command::new("bash").arg("-n").arg(bash).output();
        succeeded("bash -n on the completion", &syntax.expect("run bash"));
        let text = std::fs::read_to_string(bash).expect("the bash completion");
        assert!(text.contains("complete -F") && text.contains("serve"));
        let zsh = std::fs::read_to_string(self.file("/usr/share/zsh/vendor-completions/_medcard"))
            .expect("the zsh completion");
        assert!(zsh.starts_with("#compdef medcard"), "{zsh}");
        let fish = self.file("/usr/share/fish/vendor_completions.d/medcard.fish");
        let fish = std::fs::read_to_string(fish).expect("the fish completion");
        assert!(fish.contains("complete -c medcard"), "{fish}");
    }

    /// After `dpkg --purge`: the configuration, the state, and every file of the package.
    fn is_all_gone(&self) {
        assert_eq!(package_status(), None, "dpkg still knows medcard");
        for path in [Path::new("/etc/medcard"), Path::new(STATE)] {
            assert!(!path.exists(), "{path:?} left after the purge");
        }
        for link in [
            "/etc/systemd/system/multi-user.target.wants/medcard.service",
            "/etc/systemd/system/sockets.target.wants/medcard.socket",
        ] {
            assert!(
                std::fs::symlink_metadata(link).is_err(),
                "{link} left after the purge"
            );
        }
        let left: Vec<&PathBuf> = self.files.iter().filter(|path| path.exists()).collect();
        assert!(left.is_empty(), "left after the purge: {left:?}");
    }
}

/// `medcard serve --config /etc/medcard/medcard.toml` as the medcard user (setpriv, the way
/// the unit's User= / Group= run it); stopped when dropped.
struct Serving {
    child: Child,
    log: PathBuf,
}

impl Serving {
    /// Starts it and waits until the installed `medcard call` gets `system.info` answered.
    fn start(log: &Path) -> Serving {
        let child = Command::new("setpriv")
            .args([
                "--reuid=medcard",
                "--regid=medcard",
                "--init-groups",
                BINARY,
            ])
            .args(["--log", "info", "serve", "--config", CONFIG])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(log).expect("the daemon's log"))
            .spawn()
            .expect("start setpriv … medcard serve");
        let mut serving = Serving {
            child,
            log: log.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while call("system.info").is_err() {
            let exited = serving.child.try_wait().expect("wait for medcard serve");
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "the installed medcard serve did not answer ({exited:?}):\n{}",
                serving.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        serving
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn call(&self, method: &str) -> serde_json::Value {
        call(method).unwrap_or_else(|e| panic!("{e}\n{}", self.log_text()))
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM; its log once it exited, successfully.
    fn stop(mut self) -> String {
        terminate(&self.child);
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for medcard serve") {
                break status;
            }
            assert!(Instant::now() < deadline, "medcard serve ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        };
        let log = self.log_text();
        assert!(status.success(), "medcard serve exited {status}:\n{log}");
        log
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn terminate(child: &Child) {
    let pid = libc::pid_t::try_from(child.id()).expect("a pid");
    // SAFETY: kill has no memory-safety preconditions; the pid is our own unreaped child.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
}

/// The installed `medcard call METHOD` with its defaults (socket, expected daemon user).
fn call(method: &str) -> Result<serde_json::Value, String> {
    let output = Command::new(BINARY)
        .args(["call", method])
        .env_remove("MEDCARD_SOCKET")
        .env_remove("MEDCARD_EXPECT_UID")
        .output()
        .map_err(|e| e.to_string())?;
    if !output.status.success() {
        return Err(format!(
            "medcard call {method}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| format!("medcard call {method}: {e}"))
}

/// What an operator has on an installed workstation: a local edit of the configuration and
/// the cache with the journal at the configured path.
struct LocalState {
    config: String,
    cache: PathBuf,
    journal: Vec<u8>,
}

impl LocalState {
    fn make() -> LocalState {
        let original = std::fs::read_to_string(CONFIG).expect("the installed configuration");
        let config = original.replacen("max_connections = 64", "max_connections = 48", 1);
        assert_ne!(
            config, original,
            "the configuration has max_connections = 64"
        );
        std::fs::write(CONFIG, &config).expect("edit the installed configuration");
        let cache = Config::parse(&config).expect("it parses").cache.path;
        assert!(cache.starts_with(STATE), "cache.path {cache:?}");
        let journal = format!(
            "this workstation's cache and journal ({})\n",
            std::process::id()
        );
        std::fs::write(&cache, &journal).expect("write at the cache path");
        let uid = medcard::serve::peer::user_id("medcard").expect("the user medcard");
        let gid = medcard::serve::peer::group_id("medcard").expect("the group medcard");
        std::os::unix::fs::chown(&cache, Some(uid), Some(gid)).expect("chown the cache");
        LocalState {
            config,
            cache,
            journal: journal.into_bytes(),
        }
    }

    fn is_kept(&self, after: &str) {
        let cache = std::fs::read(&self.cache);
        assert!(
            cache.as_ref().is_ok_and(|bytes| *bytes == self.journal),
            "{:?} after {after}: {cache:?}",
            self.cache
        );
        let config = std::fs::read_to_string(CONFIG).unwrap_or_default();
        assert_eq!(config, self.config, "{CONFIG} after {after}");
        for leftover in [".dpkg-dist", ".dpkg-new", ".dpkg-old"] {
            let path = format!("{CONFIG}{leftover}");
            assert!(!Path::new(&path).exists(), "{path} after {after}");
        }
    }
}
