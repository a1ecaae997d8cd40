//! Bills through the real socket against the real `medcard insurer-sim`: a bill re-priced
//! any number of times (each preview deletes only the batch the insurer still holds) settles
//! once with exactly its final lines at the insurer; a large bill is uploaded in several
//! 2204 calls, a 4,000-line one is priced and settled, and a bill over the configured
//! maximum is refused before anything is sent.

use crate::common;

use common::daemon::Daemon;
use common::rpc::{Client, Rpc};
use common::settle::{CLASS_A, Rig, XIAOWANG, commit_params, preview, register, wait_card};
use serde_json::{Value, json};
use std::time::Duration;

/// A rig with `settle_lines`, its daemon with 小王's card judged, a client and a visit.
fn registered(tag: &str, settle_lines: &str) -> (Rig, Daemon, Client, String) {
    let rig = Rig::start(tag, settle_lines);
    let daemon = rig.daemon(&[XIAOWANG], &[]);
    let mut client = daemon.client();
    common::settle::wait_catalogue(&mut client);
    wait_card(&mut client);
    let mdtrt_id = register(&mut client);
    (rig, daemon, client, mdtrt_id)
}

/// A bill of `count` lines of the 甲类 item at `price` yuan each.
fn bill(count: usize, price: &str) -> Value {
    let items: Vec<Value> = (0..count)
        .map(|_| json!({"code": CLASS_A, "name": "阿莫西林胶囊", "qty": "1", "price": price}))
        .collect();
    Value::Array(items)
}

#[test]
fn a_bill_re_priced_again_and_again_settles_once_with_its_final_lines() {
    // Two lines per 2204: every bill of more than two lines goes up in several calls.
    let (rig, _daemon, mut client, mdtrt_id) =
        registered("settle-repreview", "max_upload_lines = 2\n");
    // The bill changes between previews, and the last one is previewed twice.
    let sizes = [3usize, 5, 1, 4, 4];
    let mut last = Value::Null;
    for (n, size) in sizes.iter().enumerate() {
        last = preview(&mut client, &mdtrt_id, bill(*size, "1.00"));
        assert_eq!(last["source"], "insurer", "preview {}: {last}", n + 1);
        assert_eq!(
            last["insurer"]["medfee_sumamt"],
            format!("{size}.00"),
            "preview {}: {last}",
            n + 1
        );
    }
    // Each 2204 carried at most two lines; each later preview deleted the one batch before.
    let uploads: usize = sizes.iter().map(|n| n.div_ceil(2)).sum();
    assert_eq!(rig.requests("2204"), uploads);
    assert_eq!(rig.requests("2205"), sizes.len() - 1);

    let done = client.result(
        "settle.commit",
        commit_params(&last["preview_id"], "repreview-1"),
    );
    assert_eq!(done["state"], "settled", "{done}");
    assert_eq!(done["setlinfo"]["medfee_sumamt"], "4.00", "{done}");
    let setl_id = done["setl_id"].as_str().expect("setl_id").to_owned();
    assert_eq!(rig.standing(&mdtrt_id).len(), 1);
    // The insurer holds the final bill's four lines, all settled, and nothing else.
    let held = rig.fee_lines(&mdtrt_id);
    assert_eq!(held.len(), 4, "{held:?}");
    for (feedetl_sn, chrg_bchno, settled_by) in &held {
        assert_eq!(chrg_bchno, last["chrg_bchno"].as_str().expect("chrg_bchno"));
        assert_eq!(
            settled_by.as_deref(),
            Some(setl_id.as_str()),
            "{feedetl_sn}"
        );
    }
}

#[test]
fn an_older_preview_committed_after_a_newer_one_is_uploaded_again_and_settles_alone() {
    let (rig, _daemon, mut client, mdtrt_id) = registered("settle-old-preview", "");
    let first = preview(&mut client, &mdtrt_id, bill(2, "3.00"));
    let second = preview(&mut client, &mdtrt_id, bill(3, "1.00"));
    assert_eq!(second["source"], "insurer", "{second}");
    // The cashier settles the first bill after all: its batch was deleted by the second
    // preview, so it goes up again (and the second batch is deleted) before 2207.
    let done = client.result(
        "settle.commit",
        commit_params(&first["preview_id"], "old-preview-1"),
    );
    assert_eq!(done["state"], "settled", "{done}");
    assert_eq!(done["setlinfo"]["medfee_sumamt"], "6.00", "{done}");
    let held = rig.fee_lines(&mdtrt_id);
    assert_eq!(held.len(), 2, "{held:?}");
    assert!(
        held.iter().all(|(_, batch, setl)| batch
            == first["chrg_bchno"].as_str().unwrap_or_default()
            && setl.is_some()),
        "{held:?}"
    );
}

#[test]
fn a_four_thousand_line_bill_goes_up_in_chunks_and_settles() {
    // 4,000 lines in 2204 calls of 100 (the default): the simulator stores each call in one
    // pass over the visit's lines (a read of them per line stored made this minutes long,
    // past the link's timeout, as a single 4,000-line 2204 was).
    let (rig, daemon, mut client, mdtrt_id) = registered("settle-4000", "");
    // A debug build on a busy machine takes seconds: more patience than the tests' usual.
    let mut patient = medcard::serve::client::Client::connect(&daemon.socket).expect("connect");
    patient
        .set_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    let p = patient
        .call(
            "settle.preview",
            json!({"mdtrt_id": mdtrt_id, "items": bill(4000, "0.01")}),
        )
        .expect("settle.preview");
    assert_eq!(p["source"], "insurer", "{}", p["insurer_error"]);
    assert_eq!(p["insurer"]["medfee_sumamt"], "40.00");
    assert_eq!(rig.requests("2204"), 40);
    let done = client.result("settle.commit", commit_params(&p["preview_id"], "big-1"));
    drop(patient);
    assert_eq!(done["state"], "settled", "{}", done["err_msg"]);
    let held = rig.fee_lines(&mdtrt_id);
    assert_eq!(held.len(), 4000);
    assert!(held.iter().all(|(_, _, setl)| setl.is_some()));
}

#[test]
fn a_bill_over_the_maximum_is_refused_before_anything_is_sent() {
    let (rig, _daemon, mut client, mdtrt_id) =
        registered("settle-max-lines", "max_bill_lines = 3\n");
    let error = client.error(
        "settle.preview",
        json!({"mdtrt_id": mdtrt_id, "items": bill(4, "1.00")}),
    );
    assert_eq!(error["code"], -32602, "{error}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.contains("4 lines"), "{error}");
    assert!(message.contains("settle.max_bill_lines"), "{error}");
    assert!(
        error["data"]["message_zh"]
            .as_str()
            .unwrap_or_default()
            .contains("拆分"),
        "{error}"
    );
    assert_eq!(rig.requests("2204"), 0);
    // At the maximum it is priced.
    let p = preview(&mut client, &mdtrt_id, bill(3, "1.00"));
    assert_eq!(p["source"], "insurer", "{p}");
}

#[test]
fn a_2205_whose_answer_was_lost_counts_as_done_when_the_batch_is_gone() {
    let (rig, _daemon, mut client, mdtrt_id) = registered("settle-2205-lost", "");
    preview(&mut client, &mdtrt_id, bill(2, "1.00"));
    // The next 2205 deletes the first batch, but its answer is lost: the link asks again
    // and the insurer answers that the batch has no lines — which is what was wanted.
    rig.sim
        .admin(json!({"action": "faults", "drop_after_processing": 1, "for_infno": "2205"}));
    let second = preview(&mut client, &mdtrt_id, bill(3, "1.00"));
    assert_eq!(second["source"], "insurer", "{}", second["insurer_error"]);
    assert_eq!(rig.requests("2205"), 2);
    let done = client.result(
        "settle.commit",
        commit_params(&second["preview_id"], "lost-2205-1"),
    );
    assert_eq!(done["state"], "settled", "{done}");
    let held = rig.fee_lines(&mdtrt_id);
    assert_eq!(held.len(), 3, "{held:?}");
    assert!(held.iter().all(|(_, _, setl)| setl.is_some()), "{held:?}");
}

#[test]
fn a_large_bill_beyond_the_heavy_request_cap_is_answered_busy_and_nothing_is_done() {
    // One large request at a time daemon-wide; a second waits 200 ms for its turn.
    let rig = Rig::start("settle-heavy", "");
    let mut text = std::fs::read_to_string(&rig.config).expect("config");
    text = text.replace(
        "[socket]\n",
        "[socket]\nheavy_request_bytes = 1024\nmax_heavy_requests = 1\nheavy_wait_ms = 200\n",
    );
    std::fs::write(&rig.config, text).expect("config");
    let daemon = rig.daemon(&[XIAOWANG], &[]);
    let mut client = daemon.client();
    common::settle::wait_catalogue(&mut client);
    wait_card(&mut client);
    let mdtrt_id = register(&mut client);
    // The first bill's 2206 is slow: it holds the one turn meanwhile.
    rig.sim
        .admin(json!({"action": "faults", "latency_ms": 2000, "for_infno": "2206"}));
    let mut first_client = daemon.client();
    let visit = mdtrt_id.clone();
    let first = std::thread::spawn(move || preview(&mut first_client, &visit, bill(20, "1.00")));
    common::wait_until("the first bill at 2206", Duration::from_secs(20), || {
        rig.sim.requests("2206") >= 1
    });
    let busy = client.error(
        "settle.preview",
        json!({"mdtrt_id": mdtrt_id, "items": bill(20, "1.00")}),
    );
    assert_eq!(busy["code"], 1020, "{busy}");
    assert!(
        busy["message"]
            .as_str()
            .unwrap_or_default()
            .contains("retry"),
        "{busy}"
    );
    let first = first.join().expect("the first preview");
    assert_eq!(first["source"], "insurer", "{first}");
    // Nothing of the refused one reached the insurer; it goes through once the turn is free.
    assert_eq!(rig.requests("2204"), 1);
    rig.sim.admin(json!({"action": "faults"}));
    let again = preview(&mut client, &mdtrt_id, bill(20, "1.00"));
    assert_eq!(again["source"], "insurer", "{again}");
}
