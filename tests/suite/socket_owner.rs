//! The socket is ours or nothing, tried with a second local user (`nobody`, run by
//! [`common::other_user`]) against the real `medcard serve` and `medcard call`: an impostor
//! in a shared directory gets no PIN and the daemon refuses that directory; the daemon never
//! removes or replaces a socket another user put at its path; and when other users hold
//! every ordinary connection, a member of `access.allowed_groups` is still served. These
//! need root (to become another user); run otherwise, they say so and skip.

use crate::common;

use common::daemon::Daemon;
use common::other_user::{NOBODY, OtherUser, can_switch_users};
use common::rpc::{PATIENCE, Rpc};
use common::temp::TempDir;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

const PIN: &str = "123456";

/// A fresh directory with `mode` (0777: shared; 01777: sticky, as /tmp), and the socket
/// path in it.
fn directory(mode: u32) -> (TempDir, PathBuf) {
    let dir = TempDir::new("shared");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
    let socket = dir.join("medcard.sock");
    (dir, socket)
}

/// `medcard serve` on `socket`, which must refuse to start: its standard error.
fn refused_start(socket: &Path) -> String {
    let mut child = Command::new(common::medcard_bin())
        .args(["serve", "--config", "/nonexistent", "--socket"])
        .arg(socket)
        .arg("--virtual")
        .arg(common::fixture("xiaowang"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("medcard serve started on {}", socket.display());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!status.success(), "{stderr}");
    stderr
}

/// Asserts that `socket` is still the socket `nobody` made.
fn assert_nobodys_socket(socket: &Path) {
    let meta = std::fs::symlink_metadata(socket).expect("the impostor's socket is still there");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.uid(), NOBODY);
}

#[test]
fn the_pin_never_reaches_a_socket_another_user_put_in_a_shared_directory() {
    if !can_switch_users("the_pin_never_reaches_a_socket_another_user_put_in_a_shared_directory") {
        return;
    }
    let (dir, socket) = directory(0o777);
    let mut impostor = OtherUser::listen(&socket);

    let params = format!("{{\"pin\": \"{PIN}\"}}");
    let socket_arg = socket.display().to_string();
    let args = ["call", "--socket", &socket_arg, "--timeout", "3"];
    let output = Command::new(common::medcard_bin())
        .args(args)
        .args(["card.verify_pin", &params])
        .output()
        .unwrap();
    let received = impostor.received(PATIENCE);
    assert!(
        received.is_empty(),
        "the impostor received {:?}",
        String::from_utf8_lossy(&received)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("runs as uid {NOBODY}")),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was sent"), "{stderr}");

    let refusal = refused_start(&socket);
    assert!(refusal.contains("writable by other users"), "{refusal}");
    assert!(refusal.contains(&dir.display().to_string()), "{refusal}");
    assert!(refusal.contains("/run/medcard"), "{refusal}");
    assert_nobodys_socket(&socket);
}

#[test]
fn the_daemon_never_removes_a_socket_it_did_not_create() {
    if !can_switch_users("the_daemon_never_removes_a_socket_it_did_not_create") {
        return;
    }
    // A sticky directory (as /tmp) is accepted: others cannot remove what is not theirs.
    let (_dir, socket) = directory(0o1777);
    let config = Path::new("/nonexistent");
    let fixture = common::fixture("xiaowang").display().to_string();
    let mut daemon = Daemon::start_at(&socket, config, &["--virtual", &fixture]);
    // Someone who can (a cleaner, an administrator) removed it; another user bound theirs.
    std::fs::remove_file(&socket).unwrap();
    let _impostor = OtherUser::listen(&socket);
    assert!(daemon.terminate().success(), "{}", daemon.log_text());
    assert_nobodys_socket(&socket);
    assert!(
        daemon
            .log_text()
            .contains("no longer the socket this daemon created"),
        "{}",
        daemon.log_text()
    );
}

#[test]
fn a_socket_of_another_user_at_the_path_is_never_replaced() {
    if !can_switch_users("a_socket_of_another_user_at_the_path_is_never_replaced") {
        return;
    }
    let (_dir, socket) = directory(0o1777);
    // Nobody's socket, and nobody listens on it any more: stale, but not ours.
    drop(OtherUser::listen(&socket));
    let refusal = refused_start(&socket);
    assert!(
        refusal.contains(&format!("socket of uid {NOBODY}")),
        "{refusal}"
    );
    assert_nobodys_socket(&socket);
}

#[test]
fn a_member_of_the_allowed_groups_is_served_when_others_hold_every_other_connection() {
    if !can_switch_users(
        "a_member_of_the_allowed_groups_is_served_when_others_hold_every_other_connection",
    ) {
        return;
    }
    let dir = TempDir::new("reserved");
    // nobody may open the socket (its group); root's group is the cashier programs'.
    let config = dir.file(
        "medcard.toml",
        &format!(
            "[socket]\ngroup = \"{NOBODY}\"\nmax_connections = 3\nreserved_for_other_users = 0\n\
             reserved_for_allowed_groups = 1\n[access]\nallowed_groups = [\"0\"]\n"
        ),
    );
    let fixture = common::fixture("xiaowang").display().to_string();
    let daemon = Daemon::start_with_config("medcard.sock", &config, &["--virtual", &fixture]);
    // A leaking program of another user and group asks for every connection there is.
    let _leaking = OtherUser::connect(&daemon.socket, 3);
    let mut cashier = daemon.client();
    let info = cashier.call("system.info", serde_json::json!({}));
    assert!(info.get("result").is_some(), "{info}");
}
