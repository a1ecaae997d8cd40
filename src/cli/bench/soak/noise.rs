//! The soak's noise: subscribers that come and go (and connections that only look in), one
//! that stays subscribed all day, and the insurer's faults switched on and off through the
//! simulator's admin endpoint (src/sim/insurer/faults.rs): latency, HTTP 500, 系统繁忙,
//! garbage, and replies lost after the insurer acted — on 2201, 2207, 2208 and 2601.

use super::super::cache::SimChild;
use super::{Shared, error_kind};
use medcard::serve::client::ClientError;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// One fault plan, on for [`FAULT_ON`], then none for [`FAULT_OFF`]; in turn.
const FAULTS: [(&str, &str); 9] = [
    ("latency 300 ms", r#"{"latency_ms": 300}"#),
    (
        "lost 2207 reply",
        r#"{"drop_after_processing": 1, "for_infno": "2207"}"#,
    ),
    ("HTTP 500 ×2", r#"{"http_500": 2}"#),
    (
        "lost 2208 reply",
        r#"{"drop_after_processing": 1, "for_infno": "2208"}"#,
    ),
    ("系统繁忙 ×2", r#"{"infcode_minus1": 2}"#),
    (
        "garbage 2206 reply",
        r#"{"garbage": 1, "for_infno": "2206"}"#,
    ),
    (
        "lost 2601 reply",
        r#"{"drop_after_processing": 1, "for_infno": "2601"}"#,
    ),
    ("random HTTP 500 (10 %)", r#"{"fail_rate": 0.1}"#),
    (
        "lost 2201 reply",
        r#"{"drop_after_processing": 1, "for_infno": "2201"}"#,
    ),
];
const FAULT_ON: Duration = Duration::from_secs(5);
const FAULT_OFF: Duration = Duration::from_secs(3);
/// How long the all-day subscriber waits for a notification at a time.
const LISTEN_TICK: Duration = Duration::from_millis(250);

/// The faults in turn until the run is over.
pub fn faults(sim: &SimChild, shared: &Shared) {
    let mut turn = 0;
    while !shared.over() {
        let (name, plan) = FAULTS[turn % FAULTS.len()];
        turn += 1;
        set_faults(sim, shared, name, plan);
        sleep_unless_over(shared, FAULT_ON);
        clear_faults(sim, shared);
        sleep_unless_over(shared, FAULT_OFF);
    }
}

/// No faults from now on.
pub fn clear_faults(sim: &SimChild, shared: &Shared) {
    set_faults(sim, shared, "none", "{}");
}

fn set_faults(sim: &SimChild, shared: &Shared, name: &str, plan: &str) {
    let mut request: Value = serde_json::from_str(plan).unwrap_or_else(|_| json!({}));
    request["action"] = json!("faults");
    let operation = if name == "none" {
        "faults off".to_owned()
    } else {
        format!("fault: {name}")
    };
    match sim.admin(&request) {
        Ok(_) => shared.ok(&operation),
        Err(e) => shared.failed(&operation, &e),
    }
}

fn sleep_unless_over(shared: &Shared, time: Duration) {
    let until = Instant::now() + time;
    while !shared.over() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Subscribers coming and going: each subscribes to everything and reads for 0.3–2.1 s;
/// every fourth connection only asks `system.info` and leaves.
pub fn subscribers(shared: &Shared) {
    let mut turn = 0u32;
    while !shared.over() {
        turn += 1;
        let Some(mut client) = shared.connect("events.subscribe") else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        if turn.is_multiple_of(4) {
            match client.call("system.info", json!({})) {
                Ok(_) => shared.ok("system.info"),
                Err(e) => shared.failed("system.info", &error_kind(&e)),
            }
            continue;
        }
        let stay = Duration::from_millis(300) * (turn % 7 + 1);
        listen(client, shared, Instant::now() + stay);
    }
}

/// One subscriber for the whole run.
pub fn listener(shared: &Shared) {
    if let Some(client) = shared.connect("events.subscribe (all day)") {
        listen(client, shared, Instant::now() + shared.length() * 2);
    }
}

/// Subscribes and counts notifications until `until` or the end of the run.
fn listen(client: medcard::serve::client::Client, shared: &Shared, until: Instant) {
    let mut subscription = match client.subscribe(&[]) {
        Ok(subscription) => subscription,
        Err(e) => return shared.failed("events.subscribe", &error_kind(&e)),
    };
    shared.ok("events.subscribe");
    let _ = subscription.set_timeout(Some(LISTEN_TICK));
    while !shared.over() && Instant::now() < until {
        match subscription.next() {
            Some(Ok(event)) if event["method"] == "events.dropped" => {
                shared.failed("event", "events.dropped");
                let _ = subscription.renew();
            }
            Some(Ok(_)) => shared.ok("event"),
            Some(Err(ClientError::TimedOut)) => {}
            Some(Err(e)) => return shared.failed("event", &error_kind(&e)),
            None => return shared.failed("event", "closed"),
        }
    }
}
