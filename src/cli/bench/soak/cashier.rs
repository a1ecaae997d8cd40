//! The soak's cashiers: each on a connection of its own registers a visit by ID number
//! (the fixture persons in turn), prices it (every fourth visit twice: a re-priced bill),
//! settles it with a `request_id` of its own — retried with the same `request_id` after
//! 1016, 1017 or a result still in doubt, as docs/protocol.md tells a cashier's program —
//! and refunds every third settlement. What each request ended as goes into the ledger,
//! which the end of the soak holds against the journal.

use super::super::settle::{CLASS_A_ITEM, PERSONS};
use super::{Shared, error_kind};
use medcard::serve::client::Client;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Tries of one commit or refund before it is left to the end of the soak.
const TRIES: u32 = 6;
/// Error codes after which the same request is sent again.
const RETRIED: [&str; 3] = ["1016", "1017", "timeout"];
/// Final states of a request ("retry": every attempt undone, nothing charged).
const FINAL: [&str; 5] = ["settled", "refused", "refunded", "self_pay", "retry"];

/// One commit or refund a cashier sent, and what it ended as.
pub struct Sent {
    pub request_id: String,
    /// `settle.commit` or `settle.refund`.
    pub method: &'static str,
    /// The request's state as last seen; `None` while only errors came back.
    pub state: Option<String>,
    /// The settlement the cashier was told of.
    pub setl_id: Option<String>,
    pub setl_date: Option<String>,
}

impl Sent {
    fn is_final(&self) -> bool {
        self.state.as_deref().is_some_and(|s| FINAL.contains(&s))
    }

    /// Takes what a settlement result says.
    fn update(&mut self, result: &Value) {
        let text = |key: &str| result[key].as_str().map(str::to_owned);
        self.state = text("state");
        if let Some(setl_id) = text("setl_id") {
            self.setl_id = Some(setl_id);
            self.setl_date = text("setl_date");
        }
    }
}

/// Cashier `cashier`'s day: one visit after another until the run is over.
pub fn work(cashier: usize, shared: &Shared) {
    let mut client = None;
    let mut visit = 0;
    while !shared.over() {
        let Some(connection) = client.as_mut() else {
            client = shared.connect("visit.register");
            if client.is_none() {
                std::thread::sleep(Duration::from_millis(500));
            }
            continue;
        };
        visit += 1;
        if !one_visit(connection, shared, cashier, visit) {
            client = None;
        }
    }
}

/// Register, price, settle, maybe refund. False when the connection is no good any more.
fn one_visit(client: &mut Client, shared: &Shared, cashier: usize, visit: usize) -> bool {
    let certno = PERSONS[(cashier * 5 + visit) % PERSONS.len()];
    let registered = call(
        client,
        shared,
        "visit.register",
        json!({"certno": certno, "dept_code": "A03", "dept_name": "内科", "dr_name": "张医生"}),
    );
    let mdtrt_id = match registered {
        Ok(visit) => visit["mdtrt_id"].clone(),
        Err(alive) => return pause(alive),
    };
    let price = format!("{}.{:02}", 1 + visit % 9, (visit * 37) % 100);
    let items = json!([{"code": CLASS_A_ITEM, "name": "阿莫西林胶囊", "qty": "1", "price": price}]);
    let mut preview = Value::Null;
    for _ in 0..1 + usize::from(visit.is_multiple_of(4)) {
        let params = json!({"mdtrt_id": mdtrt_id, "items": items, "acct_used": visit % 3 == 1});
        match call(client, shared, "settle.preview", params) {
            Ok(answer) => preview = answer,
            Err(alive) => return pause(alive),
        }
    }
    let commit = json!({"preview_id": preview["preview_id"], "request_id": format!("soak-{cashier}-{visit}")});
    let (settled, alive) = send(client, shared, "settle.commit", commit);
    if alive && visit.is_multiple_of(3) && settled.state.as_deref() == Some("settled") {
        let refund = json!({"setl_id": settled.setl_id, "request_id": format!("soak-{cashier}-{visit}-refund")});
        let (refunded, alive) = send(client, shared, "settle.refund", refund);
        record(shared, settled);
        record(shared, refunded);
        return alive;
    }
    record(shared, settled);
    alive
}

/// A short pause after a failed step (the insurer may be down); passes `alive` on.
fn pause(alive: bool) -> bool {
    std::thread::sleep(Duration::from_millis(200));
    alive
}

fn record(shared: &Shared, sent: Sent) {
    shared
        .ledger
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(sent);
}

/// One call, counted; the error's side: whether the connection is still good.
fn call(client: &mut Client, shared: &Shared, method: &str, params: Value) -> Result<Value, bool> {
    match client.call(method, params) {
        Ok(result) => {
            shared.ok(method);
            Ok(result)
        }
        Err(e) => {
            shared.failed(method, &error_kind(&e));
            Err(alive_after(&e))
        }
    }
}

fn alive_after(error: &medcard::serve::client::ClientError) -> bool {
    use medcard::serve::client::ClientError;
    matches!(error, ClientError::Rpc { .. } | ClientError::TimedOut)
}

/// A commit or refund sent until it is final, with the same `request_id` each time; what
/// it ended as, and whether the connection is still good.
fn send(client: &mut Client, shared: &Shared, method: &'static str, params: Value) -> (Sent, bool) {
    let mut sent = Sent {
        request_id: params["request_id"].as_str().unwrap_or_default().to_owned(),
        method,
        state: None,
        setl_id: None,
        setl_date: None,
    };
    for attempt in 1..=TRIES {
        match client.call(method, params.clone()) {
            Ok(result) => {
                sent.update(&result);
                if sent.is_final() && sent.state.as_deref() != Some("retry") {
                    shared.ok(method);
                    return (sent, true);
                }
                let state = sent.state.clone().unwrap_or_default();
                shared.failed(method, &format!("state {state}"));
            }
            Err(e) => {
                let kind = error_kind(&e);
                shared.failed(method, &kind);
                if !RETRIED.contains(&kind.as_str()) {
                    return (sent, alive_after(&e));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(300) * attempt);
    }
    (sent, true)
}

/// Once the faults are off: every request not final yet is asked after (`settle.status`)
/// until it is, for up to `wait`. A problem for each still in doubt then.
pub fn settle_the_doubt(shared: &Shared, wait: Duration) -> Vec<String> {
    let deadline = Instant::now() + wait;
    let Some(mut client) = shared.connect("settle.status") else {
        return vec!["cannot connect to ask after requests in doubt".into()];
    };
    let mut ledger = shared.ledger.lock().unwrap_or_else(|e| e.into_inner());
    let doubtful = ledger.iter().filter(|sent| !sent.is_final()).count();
    loop {
        let mut left = 0;
        for sent in ledger.iter_mut().filter(|sent| !sent.is_final()) {
            match client.call("settle.status", json!({"request_id": sent.request_id})) {
                Ok(result) => sent.update(&result),
                // Never journalled (a 1016 before anything was sent): nothing was charged.
                Err(e) if error_kind(&e) == "1012" => sent.state = Some("not journalled".into()),
                Err(_) => {}
            }
            left +=
                usize::from(!sent.is_final() && sent.state.as_deref() != Some("not journalled"));
        }
        if left == 0 || Instant::now() >= deadline {
            println!(
                "requests in doubt when the load stopped: {doubtful}; still in doubt {:.0} s later: {left}",
                wait.saturating_sub(deadline.saturating_duration_since(Instant::now()))
                    .as_secs_f64()
            );
            return ledger
                .iter()
                .filter(|sent| !sent.is_final() && sent.state.as_deref() != Some("not journalled"))
                .map(|sent| {
                    format!(
                        "{} {} is still in doubt ({:?})",
                        sent.method, sent.request_id, sent.state
                    )
                })
                .collect();
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Every settlement the cashiers were told of is the journal's, under the same
/// `request_id`, and the journal holds no settlement they were not told of: nothing doubled,
/// nothing lost.
pub fn check_journal(shared: &Shared) -> Vec<String> {
    let Some(mut client) = shared.connect("settle.list") else {
        return vec!["cannot connect to check the journal".into()];
    };
    let ledger = shared.ledger.lock().unwrap_or_else(|e| e.into_inner());
    let told: BTreeMap<&str, &str> = ledger
        .iter()
        .filter_map(|sent| Some((sent.setl_id.as_deref()?, sent.request_id.as_str())))
        .collect();
    let mut problems = Vec::new();
    let mut journalled = BTreeSet::new();
    for day in days(&ledger) {
        let listed = match list_day(&mut client, &day) {
            Ok(listed) => listed,
            Err(e) => {
                problems.push(format!("settle.list {day}: {e}"));
                continue;
            }
        };
        for row in &listed {
            let setl_id = row["setl_id"].as_str().unwrap_or_default();
            let request_id = row["request_id"].as_str().unwrap_or_default();
            if setl_id.is_empty() {
                continue; // cash only: nothing at the insurer
            }
            journalled.insert(setl_id.to_owned());
            if told.get(setl_id) != Some(&request_id) {
                problems.push(format!(
                    "the journal holds {setl_id} under {request_id}, which no cashier was told of (doubled?)"
                ));
            }
        }
    }
    for (setl_id, request_id) in &told {
        if !journalled.contains(*setl_id) {
            problems.push(format!(
                "{request_id} was told {setl_id}, which the journal does not list (lost?)"
            ));
        }
    }
    println!(
        "journal: {} settlements and refunds, each the one its cashier was told of: {}",
        journalled.len(),
        if problems.is_empty() { "yes" } else { "NO" }
    );
    problems
}

/// Every settlement of `day`, page by page (`settle.list`'s `after` = the previous `next`).
fn list_day(client: &mut Client, day: &str) -> Result<Vec<Value>, String> {
    let mut rows = Vec::new();
    let mut after = Value::Null;
    loop {
        let page = client
            .call("settle.list", json!({"date": day, "after": after}))
            .map_err(|e| e.to_string())?;
        rows.extend(
            page["settlements"]
                .as_array()
                .into_iter()
                .flatten()
                .cloned(),
        );
        match &page["next"] {
            Value::Null => return Ok(rows),
            next => after = next.clone(),
        }
    }
}

/// The settlement days of the ledger.
pub fn settlement_days(shared: &Shared) -> Vec<String> {
    days(&shared.ledger.lock().unwrap_or_else(|e| e.into_inner()))
}

fn days(ledger: &[Sent]) -> Vec<String> {
    let days: BTreeSet<&str> = ledger
        .iter()
        .filter_map(|sent| sent.setl_date.as_deref())
        .collect();
    days.into_iter().map(str::to_owned).collect()
}
