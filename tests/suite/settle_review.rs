//! Regression tests for bugs a review found in the settlement code (each comment says what
//! went wrong before the fix). They drive the library's `Settler` directly against a real
//! `medcard insurer-sim` child on loopback, with no daemon and no background resolver, so
//! the interleavings are the test's own.

use crate::common;

use common::d;
use common::insurer::InsurerSim;
use common::temp::TempDir;
use medcard::cache::Cache;
use medcard::insurer::{InsurerClient, InsurerConfig};
use medcard::settle::journal::RequestState;
use medcard::settle::lines::LineError;
use medcard::settle::service::{
    BillItem, InvalidRequest, RegisterParams, SettleError, SettleOptions, Settler, load_policies,
};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// 阿莫西林胶囊: 甲类.
const CLASS_A: &str = "XJ01CAA040A001010100001";

/// The simulator is stopped before its directory goes (field order).
struct Bench {
    sim: InsurerSim,
    settler: Arc<Settler>,
    _dir: TempDir,
}

impl Bench {
    fn start(tag: &str) -> Bench {
        let dir = TempDir::new(tag);
        let sim = InsurerSim::in_dir(&dir);
        let cache = Arc::new(Cache::open(dir.join("cache.sqlite")).expect("cache"));
        let link = InsurerClient::new(InsurerConfig {
            fixmedins_code: "H50010377777".into(),
            breaker_threshold: 1000,
            ..sim.config()
        });
        let policies = load_policies("", "cq-seed").expect("policies");
        let options = SettleOptions {
            reversal_backoff: Duration::from_millis(10),
            ..SettleOptions::default()
        };
        let settler = Arc::new(Settler::new(cache, vec![link], policies, options));
        Bench {
            sim,
            settler,
            _dir: dir,
        }
    }

    fn register(&self) -> String {
        let patient = common::settle::xiaowang_by_certno();
        let params = RegisterParams {
            dept_code: "A03".into(),
            dept_name: "内科".into(),
            dr_name: "张医生".into(),
            ..RegisterParams::default()
        };
        self.settler
            .register(&patient, &params)
            .expect("register")
            .mdtrt_id
    }

    fn standing(&self, mdtrt_id: &str) -> usize {
        self.sim.standing(mdtrt_id).len()
    }

    fn requests(&self, infno: &str) -> usize {
        self.sim.logged(infno)
    }
}

fn bill(qty: &str, price: &str) -> Vec<BillItem> {
    vec![BillItem {
        code: CLASS_A.into(),
        name: "阿莫西林胶囊".into(),
        qty: d(qty),
        price: d(price),
        medins_code: String::new(),
    }]
}

/// Was a bug (service/resolve.rs `resolve_all` / `resolve_call`, journal.rs `settle_call`): the resolver
/// lists the unresolved calls without the visit lock and then acts on that stale row. A
/// 2207 that is PENDING only because it is in flight is listed; the resolver waits for the
/// visit lock, the commit records SUCCESS and answers the cashier "settled", and then the
/// resolver — with its stale PENDING copy — marks the call UNKNOWN (`settle_call` has no
/// state guard) and sends a 2601 that reverses the settlement the patient already paid for.
#[test]
fn a_resolver_pass_during_a_slow_commit_does_not_reverse_the_settlement() {
    let bench = Bench::start("review-race");
    let mdtrt_id = bench.register();
    let p = bench
        .settler
        .preview(&mdtrt_id, &bill("1", "120.00"), None)
        .expect("preview");
    assert_eq!(p.source, "insurer");
    // The 2207 takes 1.5 s to answer (well inside the 5 s timeout).
    bench
        .sim
        .admin(json!({"action": "faults", "latency_ms": 1500, "for_infno": "2207"}));
    let settler = bench.settler.clone();
    let preview_id = p.preview_id.clone();
    let commit = std::thread::spawn(move || settler.commit(&preview_id, "race-1"));
    // The resolver's periodic pass starts while the 2207 is out.
    std::thread::sleep(Duration::from_millis(400));
    let left = bench.settler.resolve_all().expect("resolve_all");
    let done = commit.join().expect("commit thread").expect("commit");
    // The cashier was told "settled" and took 17.20 in cash.
    assert_eq!(done.state, RequestState::Settled);
    assert_eq!(left, 0);
    assert_eq!(
        bench.requests("2601"),
        0,
        "a 2601 was sent for a call that had been answered"
    );
    let status = bench.settler.status(Some("race-1"), None).expect("status");
    assert_eq!(
        status.state,
        RequestState::Settled,
        "the journal no longer holds the settlement: {:?}",
        status.calls
    );
    assert_eq!(bench.standing(&mdtrt_id), 1, "the insurer reversed it");
}

/// Was a bug (service/preview.rs `fee_detail`: `fee_ocur_time: LocalTime::now()`, used by `ask_insurer`
/// from `call_input`): when a preview's 2204 was answered but its 2206 was not (source
/// `local`, `uploaded` stays false), the commit uploads the same feedetl_sn lines again with
/// a new fee_ocur_time. The insurer holds the first upload and refuses different content
/// (费用明细流水号已存在且内容不同), so the commit fails with 1015 "the insurer refused" —
/// every time, for that preview — instead of settling. The same happens to a later attempt
/// in one commit (its `preview` row is stale) after a 2207 was reversed.
#[test]
fn a_commit_after_a_preview_whose_2206_failed_settles() {
    let bench = Bench::start("review-reupload");
    let mdtrt_id = bench.register();
    bench
        .sim
        .admin(json!({"action": "faults", "infcode_minus1": 100, "for_infno": "2206"}));
    let p = bench
        .settler
        .preview(&mdtrt_id, &bill("1", "120.00"), None)
        .expect("preview");
    // 系统繁忙 is retried: it lasted longer than the link's retries.
    bench.sim.admin(json!({"action": "faults"}));
    assert_eq!(p.source, "local", "{:?}", p.insurer_error);
    // The cashier takes the money; a second later the commit.
    std::thread::sleep(Duration::from_millis(1100));
    let done = bench.settler.commit(&p.preview_id, "reupload-1");
    match done {
        Ok(s) => assert_eq!(s.state, RequestState::Settled),
        Err(e) => panic!("the commit did not settle: {e}"),
    }
    assert_eq!(bench.standing(&mdtrt_id), 1);
}

/// A refund whose 2208 went unanswered holds its settlement: a second refund (another
/// request_id) is refused while the first is in doubt, and once the first is shown never to
/// have been applied (2601: 原交易不存在) the second refunds it — and a later resolver pass
/// leaves the original `refunded` (an earlier version set it back to `settled`).
#[test]
fn a_refund_in_doubt_holds_the_settlement_and_a_never_applied_one_changes_nothing() {
    let bench = Bench::start("review-refund");
    let mdtrt_id = bench.register();
    let p = bench
        .settler
        .preview(&mdtrt_id, &bill("1", "120.00"), None)
        .expect("preview");
    let settled = bench
        .settler
        .commit(&p.preview_id, "pay-1")
        .expect("commit");
    let setl_id = settled.setl_id.clone().expect("setl_id");
    // The next 7 requests fail unprocessed: refund-1's 2208 and its three 2601s, then the
    // three 2601s refund-2 tries first (it resolves the visit before anything else).
    bench.sim.admin(json!({"action": "faults", "http_500": 7}));
    let f1 = bench.settler.refund(&setl_id, "refund-1");
    assert!(matches!(f1, Err(SettleError::Unknown { .. })), "{f1:?}");
    let f2 = bench.settler.refund(&setl_id, "refund-2");
    assert!(
        matches!(&f2, Err(SettleError::BatchSettled { request_id, .. }) if request_id == "refund-1"),
        "{f2:?}"
    );
    // The resolver: refund-1's 2601 → 原交易不存在 (never applied) → `retry`.
    assert_eq!(bench.settler.resolve_all().expect("resolve"), 0);
    let f2 = bench
        .settler
        .refund(&setl_id, "refund-2")
        .expect("refund-2");
    assert_eq!(f2.state, RequestState::Settled, "{f2:?}");
    assert_eq!(
        bench.standing(&mdtrt_id),
        0,
        "the insurer holds it refunded"
    );
    assert_eq!(bench.settler.resolve_all().expect("resolve"), 0);
    let original = bench.settler.status(None, Some(&setl_id)).expect("status");
    assert_eq!(original.state, RequestState::Refunded);
    // refund-1 may not now go on: refund-2 holds the settlement.
    let again = bench.settler.refund(&setl_id, "refund-1");
    assert!(
        matches!(again, Err(SettleError::BatchSettled { .. })),
        "{again:?}"
    );
}

/// Was a bug (lines.rs `CatalogueTotals::from_lines`, and `ask_insurer`'s `.sum()`): the lines are
/// checked one by one (`line_amount` uses `checked_mul`), but their totals are added with
/// `+`, which panics on overflow. Two lines a cashier's program can send through
/// `settle.preview` panic the settlement service (the socket answers −32603 internal error
/// instead of −32602 bad params).
#[test]
fn a_bill_too_large_in_total_is_refused_not_a_panic() {
    let bench = Bench::start("review-overflow");
    let mdtrt_id = bench.register();
    let huge = "40000000000000000000000000000"; // 4e28 yuan per line, each line fits a Decimal
    let mut items = bill(huge, "1");
    items.extend(bill(huge, "1"));
    let settler = bench.settler.clone();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        settler.preview(&mdtrt_id, &items, None)
    }));
    match result {
        Ok(Err(SettleError::Invalid(InvalidRequest::BadLine(LineError::TooLarge { .. })))) => {}
        Ok(other) => panic!("expected a refusal of the bill, got {other:?}"),
        Err(_) => panic!("settle.preview panicked on two large fee lines"),
    }
}
