//! `medcard bench soak` run briefly through the binary, on the real pcscd + vpcd (the binary
//! takes the end-to-end lock itself): a functional test of the soak — it runs everything at
//! once, restarts pcscd, and ends with every settlement reconciled — not a timing test.

use crate::common::medcard;

#[test]
fn a_short_soak_restarts_pcscd_and_reconciles_every_settlement() {
    let output = medcard(&[
        "--log",
        "error",
        "bench",
        "soak",
        "--seconds",
        "20",
        "--readers",
        "pcscd",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{:?}\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("readers: pcscd + vpcd"), "{stdout}");
    let reconciled: Vec<&str> = stdout
        .lines()
        .filter(|line| line.starts_with("reconcile "))
        .collect();
    assert!(!reconciled.is_empty(), "{stdout}");
    assert!(
        reconciled.iter().all(|line| line.ends_with(": clean")),
        "{stdout}"
    );
    if stdout.contains("pcscd started here") {
        assert!(
            stdout.contains("pcscd restart 1: the daemon read the card again"),
            "{stdout}"
        );
    }
    for operation in ["settle.commit", "settle.refund", "card.read", "event"] {
        let done = stdout.lines().find_map(|line| {
            line.trim()
                .strip_prefix(operation)?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        });
        assert!(done.is_some_and(|n| n > 0), "no {operation} done: {stdout}");
    }
    assert!(stdout.contains("verdict: PASS"), "{stdout}");
}
