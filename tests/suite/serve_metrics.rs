//! `GET /metrics` of a real `medcard serve` (a child process: its registry is its own) with
//! the real insurer simulator, scraped over HTTP and read with a Prometheus text-format
//! parser (`prometheus-parse`): after a card read, a settlement, an insurer fault (HTTP 500
//! on 1101 until the circuit opens) and an unanswered 2207, the counts moved by exactly what
//! was done — deltas between two scrapes, since the sync and the start-up read count too —
//! and the gauges read at scrape time say the state (circuit, calls in doubt). The metrics
//! carry no personal data; `[metrics] listen` serves them when the web endpoint is off; the
//! Grafana dashboard in docs/ names only metrics docs/metrics.md lists, and docs/metrics.md
//! every metric a daemon emits.

use crate::common::rpc::{Client, Rpc};
use crate::common::settle::{
    Rig, XIAOWANG, commit_params, one_line, preview, register, wait_card, wait_catalogue,
};
use crate::common::web::{Web, config_lines};
use crate::common::{medcard, repo_file, wait_until};
use prometheus_parse::{Sample, Value as Parsed};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One scrape: the answer's `Content-Type`, its text and the parsed samples.
struct Scraped {
    content_type: String,
    text: String,
    samples: Vec<Sample>,
}

impl Scraped {
    /// `GET http://addr/metrics` with `accept`.
    fn from(addr: SocketAddr, accept: Option<&str>) -> Scraped {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .build()
            .into();
        let mut request = agent.get(format!("http://{addr}/metrics"));
        if let Some(accept) = accept {
            request = request.header("Accept", accept);
        }
        let mut response = request.call().expect("GET /metrics");
        assert_eq!(response.status(), 200, "GET /metrics");
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = response
            .body_mut()
            .read_to_string()
            .expect("the metrics' text");
        let lines = text.lines().map(|line| Ok(line.to_owned()));
        let samples = prometheus_parse::Scrape::parse(lines)
            .expect("the Prometheus text format")
            .samples;
        Scraped {
            content_type,
            text,
            samples,
        }
    }

    /// The samples of `metric` whose labels include `labels`.
    fn matching<'a>(
        &'a self,
        metric: &'a str,
        labels: &'a [(&str, &str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
    }

    /// The sum of `metric`'s counters, gauges or untyped values with `labels` (0 when none:
    /// a series that never happened).
    fn value(&self, metric: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(metric, labels)
            .map(|s| match &s.value {
                Parsed::Counter(v) | Parsed::Gauge(v) | Parsed::Untyped(v) => *v,
                other => panic!("{metric} is not a single value: {other:?}"),
            })
            .sum()
    }

    /// How many observations `metric`'s histogram with `labels` counts, from its buckets
    /// (the `+Inf` one) — the parser's histogram, not its `_count` line.
    fn observations(&self, metric: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(metric, labels)
            .map(|s| match &s.value {
                Parsed::Histogram(buckets) => buckets
                    .iter()
                    .find(|b| b.less_than.is_infinite())
                    .map_or(0.0, |b| b.count),
                other => panic!("{metric} is not a histogram: {other:?}"),
            })
            .sum()
    }

    /// Every metric family's name in the text (`# TYPE` lines).
    fn families(&self) -> BTreeSet<String> {
        self.text
            .lines()
            .filter_map(|line| line.strip_prefix("# TYPE "))
            .filter_map(|rest| rest.split_whitespace().next())
            .map(family_name)
            .collect()
    }
}

/// A sample or `# TYPE` name as its family (`x_total`, `x_bucket` → `x`).
fn family_name(name: &str) -> String {
    ["_total", "_bucket", "_count", "_sum"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(name)
        .to_owned()
}

/// A scrape once the start-up's background work is over: the first sync's card-status news
/// has the card in the reader judged again (one more 1101) just after the catalogue arrives.
/// Two scrapes 1.5 s apart (more than a sync interval) that agree.
fn quiet_scrape(addr: SocketAddr) -> Scraped {
    let moving = |s: &Scraped| {
        (
            s.value("medcard_insurer_calls_total", &[("infno", "1101")]),
            s.value("medcard_verdicts_total", &[]),
        )
    };
    let mut last = Scraped::from(addr, None);
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(1500));
        let now = Scraped::from(addr, None);
        if moving(&now) == moving(&last) {
            return now;
        }
        last = now;
    }
    panic!("the daemon's counts never settled:\n{}", last.text);
}

/// `after − before` of a histogram's observations.
fn observed(before: &Scraped, after: &Scraped, metric: &str, labels: &[(&str, &str)]) -> f64 {
    after.observations(metric, labels) - before.observations(metric, labels)
}

/// `after − before` of a value.
fn delta(before: &Scraped, after: &Scraped, metric: &str, labels: &[(&str, &str)]) -> f64 {
    after.value(metric, labels) - before.value(metric, labels)
}

/// A rig whose daemon has the web endpoint on (and `extra` lines in its configuration).
fn rig_with(tag: &str, extra: &str) -> Rig {
    let rig = Rig::start(tag, "");
    let dir = rig.config.parent().expect("the config's directory");
    let mut text = std::fs::read_to_string(&rig.config).expect("read the config");
    text.push_str(extra);
    if extra.is_empty() {
        text.push_str(&config_lines(dir));
    }
    std::fs::write(&rig.config, text).expect("write the config");
    rig
}

/// `card.refresh` of the only reader: a new read, judged again.
fn refresh(client: &mut Client) -> Value {
    client.result("card.refresh", json!({}))
}

const READ_OK: [(&str, &str); 2] = [("profile", "ssse-2.0"), ("outcome", "ok")];
const VERDICT_FRESH: [(&str, &str); 3] = [
    ("credential", "card"),
    ("code", "ok"),
    ("source", "insurer"),
];

#[test]
fn metrics_count_reads_settlements_and_insurer_faults_exactly() {
    let rig = rig_with("metrics", "");
    let daemon = rig.daemon(&[XIAOWANG], &[]);
    let mut client = daemon.client();
    wait_catalogue(&mut client);
    wait_card(&mut client);
    let web = Web::of(&daemon, &rig.config);

    // A card read: one read, one verdict, one 1101.
    let before = quiet_scrape(web.addr);
    assert!(
        before.content_type.starts_with("text/plain; version=0.0.4"),
        "{}",
        before.content_type
    );
    let card = refresh(&mut client);
    assert_eq!(card["verdict"]["code"], "ok", "{card}");
    let read = Scraped::from(web.addr, None);
    assert_eq!(
        delta(&before, &read, "medcard_card_reads_total", &READ_OK),
        1.0
    );
    assert_eq!(
        observed(
            &before,
            &read,
            "medcard_card_read_duration_seconds",
            &[("profile", "ssse-2.0")]
        ),
        1.0
    );
    assert_eq!(
        delta(&before, &read, "medcard_verdicts_total", &VERDICT_FRESH),
        1.0
    );
    let ok_1101 = [("infno", "1101"), ("outcome", "ok")];
    assert_eq!(
        delta(&before, &read, "medcard_insurer_calls_total", &ok_1101),
        1.0
    );
    assert_eq!(
        observed(
            &before,
            &read,
            "medcard_insurer_call_duration_seconds",
            &[("infno", "1101")]
        ),
        1.0
    );
    assert_eq!(
        read.value("medcard_insurer_circuit_state", &[("state", "closed")]),
        1.0
    );
    assert_eq!(read.value("medcard_journal_unresolved_calls", &[]), 0.0);
    assert_eq!(read.value("medcard_journal_writable", &[]), 1.0);
    assert_eq!(read.value("medcard_readers", &[("state", "ready")]), 1.0);
    // One sign-in for the whole link (the swipe, the sync, the keeper), as the insurer saw.
    assert_eq!(
        read.value("medcard_insurer_sign_in_state", &[("state", "signed_in")]),
        1.0
    );
    assert_eq!(
        read.value("medcard_insurer_sign_ins", &[]),
        rig.requests("9001") as f64
    );
    let age = read.value("medcard_cache_age_seconds", &[]);
    assert!(
        (0.0..60.0).contains(&age),
        "the cache synced a moment ago: {age}"
    );

    // A settlement: one 2207, settled.
    let mdtrt_id = register(&mut client);
    let p = preview(&mut client, &mdtrt_id, one_line("12.00"));
    let before = Scraped::from(web.addr, None);
    let done = client.result(
        "settle.commit",
        commit_params(&p["preview_id"], "metrics-1"),
    );
    assert_eq!(done["state"], "settled", "{done}");
    let settled = Scraped::from(web.addr, None);
    let settle = [("kind", "settle"), ("outcome", "settled")];
    assert_eq!(
        delta(&before, &settled, "medcard_settlements_total", &settle),
        1.0
    );
    let ok_2207 = [("infno", "2207"), ("outcome", "ok")];
    assert_eq!(
        delta(&before, &settled, "medcard_insurer_calls_total", &ok_2207),
        1.0
    );
    assert_eq!(
        delta(&before, &settled, "medcard_settlements_total", &[]),
        1.0
    );

    // The insurer fails every 1101 with HTTP 500: uncertain, until the breaker opens.
    let sent_before = rig.sim.requests("1101");
    rig.sim
        .admin(json!({"action": "faults", "http_500": 1000, "for_infno": "1101"}));
    let mut refreshes = 0.0;
    let open = loop {
        refresh(&mut client);
        refreshes += 1.0;
        let now = Scraped::from(web.addr, None);
        if now.value("medcard_insurer_circuit_state", &[("state", "open")]) == 1.0 {
            break now;
        }
        assert!(refreshes < 20.0, "the circuit never opened:\n{}", now.text);
    };
    refresh(&mut client);
    refreshes += 1.0;
    let after = Scraped::from(web.addr, None);
    let sent = (rig.sim.requests("1101") - sent_before) as f64;
    let uncertain = [("infno", "1101"), ("outcome", "uncertain")];
    assert!(sent >= 1.0);
    assert_eq!(
        delta(&settled, &after, "medcard_insurer_calls_total", &uncertain),
        sent,
        "every 1101 that reached the insurer is counted uncertain"
    );
    let stopped = [("infno", "1101"), ("outcome", "circuit_open")];
    assert_eq!(
        delta(&settled, &after, "medcard_insurer_calls_total", &stopped),
        refreshes - sent,
        "every other 1101 was stopped by the breaker"
    );
    assert!(delta(&open, &after, "medcard_insurer_calls_total", &stopped) >= 1.0);
    assert_eq!(
        observed(
            &settled,
            &after,
            "medcard_insurer_call_duration_seconds",
            &[("infno", "1101")]
        ),
        sent,
        "only calls that went out have a duration"
    );
    assert_eq!(
        delta(&settled, &after, "medcard_card_reads_total", &READ_OK),
        refreshes
    );
    let from_cache = [("credential", "card"), ("source", "cache")];
    assert_eq!(
        delta(&settled, &after, "medcard_verdicts_total", &from_cache),
        refreshes,
        "with the insurer down, every verdict comes from the cache"
    );
    assert_eq!(
        after.value("medcard_insurer_circuit_state", &[("state", "open")]),
        1.0
    );
    assert_eq!(
        after.value("medcard_insurer_circuit_state", &[("state", "closed")]),
        0.0
    );

    // Nothing personal in any of it: not the holder's ID number, name, nor the card number.
    for personal in [
        &card["holder"]["certno"],
        &card["holder"]["psn_name"],
        &card["card_no"],
    ] {
        let personal = personal.as_str().expect("the card's data");
        assert!(
            !after.text.contains(personal),
            "{personal} in:\n{}",
            after.text
        );
    }
    assert_documented(&after);

    // OpenMetrics for a scraper that asks for it, with its own type and end.
    let open_metrics = Scraped::from(
        web.addr,
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    );
    assert!(
        open_metrics
            .content_type
            .starts_with("application/openmetrics-text; version=1.0.0"),
        "{}",
        open_metrics.content_type
    );
    assert!(open_metrics.text.ends_with("# EOF\n"));

    // The web endpoint's Host guard holds for /metrics too.
    let (status, _) = get_raw(web.addr, "/metrics", "evil.example");
    assert_eq!(status, 403);
}

#[test]
fn an_unanswered_2207_is_in_doubt_in_the_metrics_until_reversed() {
    let rig = rig_with("metrics-doubt", "");
    let daemon = rig.daemon(&[XIAOWANG], &[]);
    let mut client = daemon.client();
    wait_catalogue(&mut client);
    wait_card(&mut client);
    let web = Web::of(&daemon, &rig.config);
    let mdtrt_id = register(&mut client);
    let p = preview(&mut client, &mdtrt_id, one_line("8.00"));
    let before = Scraped::from(web.addr, None);
    // Processed, then the answer lost: every 2207 and 2601 until the faults are lifted.
    rig.sim.admin(json!({
        "action": "faults", "drop_after_processing": 1000, "for_infno": "2207,2601"
    }));
    let answer = client.call("settle.commit", commit_params(&p["preview_id"], "doubt-1"));
    assert!(answer.get("error").is_some(), "{answer}");
    let doubt = Scraped::from(web.addr, None);
    let unknown = [("kind", "settle"), ("outcome", "unknown")];
    assert_eq!(
        delta(&before, &doubt, "medcard_settlements_total", &unknown),
        1.0
    );
    assert_eq!(doubt.value("medcard_journal_unresolved_calls", &[]), 1.0);
    let reversal_unknown = [("kind", "reversal"), ("outcome", "unknown")];
    assert!(
        delta(
            &before,
            &doubt,
            "medcard_settlements_total",
            &reversal_unknown
        ) >= 1.0
    );

    // The link answers again: the resolver reverses the 2207 (after the breaker's cooldown).
    rig.sim
        .admin(json!({"action": "faults", "drop_after_processing": 0}));
    wait_until("the 2207 reversed", Duration::from_secs(40), || {
        let now = Scraped::from(web.addr, None);
        now.value("medcard_journal_unresolved_calls", &[]) == 0.0
    });
    let resolved = Scraped::from(web.addr, None);
    let reversed = [("kind", "reversal"), ("outcome", "reversed")];
    assert_eq!(
        delta(&before, &resolved, "medcard_settlements_total", &reversed),
        1.0
    );
    assert_eq!(
        delta(
            &before,
            &resolved,
            "medcard_settlements_total",
            &[("kind", "settle")]
        ),
        1.0,
        "one 2207 went out, whatever came after"
    );
}

#[test]
fn the_metrics_listener_of_its_own_serves_when_the_web_endpoint_is_off() {
    let rig = rig_with("metrics-own", "\n[metrics]\nlisten = \"127.0.0.1:0\"\n");
    let daemon = rig.daemon(&[XIAOWANG], &[]);
    let mut client = daemon.client();
    let card = wait_card(&mut client);
    let info = client.result("system.info", json!({}));
    assert_eq!(info["web"], Value::Null, "{info}");
    let urls = info["metrics"].as_array().expect("system.info.metrics");
    assert_eq!(urls.len(), 1, "{info}");
    let url = urls[0].as_str().expect("a URL");
    let addr: SocketAddr = url
        .strip_prefix("http://")
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .and_then(|addr| addr.parse().ok())
        .unwrap_or_else(|| panic!("{url}"));

    // The start-up read is counted; an ID number presented at the counter too.
    let before = Scraped::from(addr, None);
    assert!(before.value("medcard_card_reads_total", &READ_OK) >= 1.0);
    let certno = card["holder"]["certno"].as_str().expect("certno");
    let presented = client.result("credential.present", json!({"certno": certno}));
    assert_eq!(presented["verdict"]["code"], "ok", "{presented}");
    let after = Scraped::from(addr, None);
    let by_certno = [
        ("credential", "certno"),
        ("code", "ok"),
        ("source", "insurer"),
    ];
    assert_eq!(
        delta(&before, &after, "medcard_verdicts_total", &by_certno),
        1.0
    );
    assert!(after.value("medcard_connections_open", &[("transport", "unix")]) >= 1.0);
    assert!(after.value("process_resident_memory_bytes", &[]) > 1e6);
    for personal in [certno, card["holder"]["psn_name"].as_str().unwrap_or("?")] {
        assert!(
            !after.text.contains(personal),
            "{personal} in:\n{}",
            after.text
        );
    }

    // It serves /metrics and nothing else, to loopback names only.
    assert_eq!(get_raw(addr, "/rpc", &addr.to_string()).0, 404);
    assert_eq!(get_raw(addr, "/metrics", "evil.example:9465").0, 403);
    let (status, body) = get_raw(addr, "/metrics", &format!("localhost:{}", addr.port()));
    assert_eq!(status, 200);
    assert!(body.contains("medcard_build_info"), "{body}");
}

#[test]
fn config_check_refuses_a_metrics_listener_for_other_hosts_unless_allowed() {
    let dir = crate::common::temp::TempDir::new("metrics-config");
    let file = dir.join("medcard.toml");
    let check = |text: &str| {
        std::fs::write(&file, text).expect("write the config");
        let output = medcard(&["config", "check", file.to_str().expect("a path")]);
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    let (code, text) = check("[metrics]\nlisten = \"0.0.0.0:9465\"\n");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("metrics.allow_remote"), "{text}");
    let (code, text) = check("[metrics]\nlisten = \"0.0.0.0:9465\"\nallow_remote = true\n");
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("firewall"), "{text}");
    let (code, text) = check("[metrics]\nlisten = \"127.0.0.1:9465\"\n");
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("metrics.listen = \"127.0.0.1:9465\""),
        "{text}"
    );
}

#[test]
fn the_grafana_dashboard_names_only_documented_metrics() {
    let text = std::fs::read_to_string(repo_file("docs/grafana/medcard-dashboard.json"))
        .expect("docs/grafana/medcard-dashboard.json");
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 8, "{exprs:?}");
    let documented = documented_metrics();
    for expr in &exprs {
        let named = metric_names(expr);
        assert!(!named.is_empty(), "{expr} names no metric");
        for name in named {
            assert!(
                documented.contains(&family_name(&name)),
                "the dashboard's {expr:?} names {name}, which docs/metrics.md does not list"
            );
        }
    }
}

/// Every metric a scrape shows is in docs/metrics.md.
fn assert_documented(scrape: &Scraped) {
    let documented = documented_metrics();
    let families = scrape.families();
    assert!(families.len() >= 15, "{families:?}");
    for family in families {
        assert!(
            documented.contains(&family),
            "{family} is emitted but docs/metrics.md does not list it"
        );
    }
}

/// The metrics docs/metrics.md's tables list: each row's first cell, `` `name` ``.
fn documented_metrics() -> BTreeSet<String> {
    let doc = std::fs::read_to_string(repo_file("docs/metrics.md")).expect("docs/metrics.md");
    doc.lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .filter(|name| name.starts_with("medcard_") || name.starts_with("process_"))
        .map(family_name)
        .collect()
}

/// Every `expr` string in a Grafana dashboard.
fn collect_exprs(value: &Value, exprs: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", Value::String(expr)) => exprs.push(expr.clone()),
                    _ => collect_exprs(value, exprs),
                }
            }
        }
        Value::Array(values) => values.iter().for_each(|v| collect_exprs(v, exprs)),
        _ => {}
    }
}

/// The metric names in a PromQL expression (identifiers starting `medcard_` or `process_`).
fn metric_names(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("medcard_") || word.starts_with("process_"))
        .map(str::to_owned)
        .collect()
}

/// `GET path` by hand with a `Host` header of our choosing: (status, body).
fn get_raw(addr: SocketAddr, path: &str, host: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let head = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).expect("send");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, body)| body.to_owned());
    (status, body)
}
