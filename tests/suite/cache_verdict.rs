//! The cache (real SQLite files in temporary directories) and the verdict engine: file mode,
//! migrations, atomic and idempotent page application, resumable sync with a fake insurer
//! link, lookups, and every verdict code from facts.

use crate::common::d;
use crate::common::temp::TempDir;
use medcard::cache::{Cache, CardRecord, CardStatus, Feed, SyncError, migrations, sync_feed};
use medcard::card::{Balance, BalanceSource, CardRead};
use medcard::clock::Date;
use medcard::insurer::{
    CardEventKind, CardEventPage, CardStatusEvent, CatalogueItem, CataloguePage, ChrgitmLv,
    InsuInfo, InsurerLink, LinkError, PersonBase, PersonInfo, Uncertainty,
};
use medcard::verdict::{
    FactSource, MaySettle, VerdictCode, VerdictFacts, VerdictPolicy, assess, verdict,
};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// A cache file in a fresh temporary directory, removed (with the directory) on drop.
struct Scratch {
    path: PathBuf,
    dir: TempDir,
}

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = TempDir::new(&format!("cache-{tag}"));
        let path = dir.join("cache.sqlite");
        Scratch { path, dir }
    }
}

impl std::ops::Deref for Scratch {
    type Target = PathBuf;

    fn deref(&self) -> &PathBuf {
        &self.path
    }
}

impl AsRef<std::path::Path> for Scratch {
    fn as_ref(&self) -> &std::path::Path {
        &self.path
    }
}

fn open_temp(tag: &str) -> (Scratch, Cache) {
    let scratch = Scratch::new(tag);
    let cache = Cache::open(&scratch.path).unwrap();
    (scratch, cache)
}

fn person(psn_no: &str, certno: &str, name: &str, rows: Vec<InsuInfo>) -> PersonInfo {
    PersonInfo {
        baseinfo: PersonBase {
            psn_no: psn_no.into(),
            psn_cert_type: "01".into(),
            certno: certno.into(),
            psn_name: name.into(),
            gend: "1".into(),
            naty: "01".into(),
            brdy: "1990-01-01".into(),
        },
        insuinfo: rows,
    }
}

fn insu(insutype: &str, stas: &str, balc: &str, admdvs: &str) -> InsuInfo {
    InsuInfo {
        balc: d(balc),
        insutype: insutype.into(),
        psn_type: "11".into(),
        psn_insu_stas: stas.into(),
        insuplc_admdvs: admdvs.into(),
        psn_insu_date: Some("2010-01-01".into()),
        paus_insu_date: None,
    }
}

fn event(version: u64, card_no: &str, kind: CardEventKind, new: Option<&str>) -> CardStatusEvent {
    CardStatusEvent {
        version,
        card_no: card_no.into(),
        card_sn: None,
        certno: format!("certno-of-{card_no}"),
        kind,
        new_card_no: new.map(str::to_owned),
        event_time: "2026-11-23 10:00:00".into(),
    }
}

fn item(version: u64, code: &str) -> CatalogueItem {
    CatalogueItem {
        version,
        hilist_code: code.into(),
        hilist_name: format!("item {code}"),
        chrgitm_lv: ChrgitmLv::B,
        selfpay_prop: d("0.10"),
        pric_uplmt_amt: Some(d("12.50")),
        vali_flag: true,
    }
}

fn sqlite(path: &PathBuf) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}

fn count(path: &PathBuf, table: &str) -> i64 {
    sqlite(path)
        .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

// ---------------------------------------------------------------- file, pragmas, migrations

#[test]
fn new_file_is_created_0600_in_wal_mode() {
    let (path, cache) = open_temp("mode");
    let mode_of = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode_of(&path), 0o600);
    cache.next_msgid_seq("20261123").unwrap();
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    assert_eq!(mode_of(&wal), 0o600);
    let journal: String = sqlite(&path)
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(journal, "wal");
}

#[test]
fn a_missing_directory_is_created_private() {
    let scratch = Scratch::new("mkdir");
    let nested = scratch.dir.join("var/lib/medcard/cache.sqlite");
    let _cache = Cache::open(&nested).unwrap();
    let dir_mode = std::fs::metadata(nested.parent().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(dir_mode, 0o700);
}

#[test]
fn existing_0644_file_is_tightened() {
    let path = Scratch::new("tighten");
    // A cache made before (an empty file is refused, never initialised: cache_guard.rs).
    drop(Cache::open(&path.path).unwrap());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let _cache = Cache::open(&path.path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn migrations_run_from_empty_and_reopen_is_idempotent() {
    let (path, cache) = open_temp("migrate");
    let version: u32 = sqlite(&path)
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, migrations::current_version());
    assert!(version >= 1);
    cache
        .store_person(&person("P1", "C1", "王小", vec![]), SystemTime::now())
        .unwrap();
    drop(cache);
    let cache = Cache::open(&path.path).unwrap();
    assert_eq!(cache.stats().unwrap().schema_version, version);
    assert!(cache.person_by_certno("C1").unwrap().is_some());
}

#[test]
fn a_newer_schema_is_refused() {
    let (path, cache) = open_temp("newer");
    drop(cache);
    sqlite(&path)
        .pragma_update(None, "user_version", 99)
        .unwrap();
    assert!(matches!(
        Cache::open(&path.path),
        Err(medcard::cache::CacheError::NewerSchema { found: 99, .. })
    ));
}

// ---------------------------------------------------------------- persons, money, lookups

#[test]
fn balc_round_trips_as_a_decimal_string() {
    let (path, cache) = open_temp("balc");
    let info = person(
        "P1",
        "C1",
        "王小",
        vec![insu("310", "1", "332.80", "500100")],
    );
    cache.store_person(&info, SystemTime::now()).unwrap();
    let stored: String = sqlite(&path)
        .query_row("SELECT balc FROM insuinfo", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, "332.80");
    let back = cache.person_by_certno("C1").unwrap().unwrap();
    assert_eq!(back.info.insuinfo[0].balc, d("332.80"));
    assert_eq!(back.info.insuinfo[0].balc.to_string(), "332.80");
    assert_eq!(back.info, info);
}

#[test]
fn a_newer_1101_answer_replaces_the_insurance_rows() {
    let (_path, cache) = open_temp("replace-rows");
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let first = person(
        "P1",
        "C1",
        "王小",
        vec![
            insu("310", "1", "1.00", "500100"),
            insu("330", "1", "0", "500100"),
        ],
    );
    cache.store_person(&first, t0).unwrap();
    let second = person("P1", "C1", "王小", vec![insu("310", "2", "2.00", "500100")]);
    cache
        .store_person(&second, t0 + Duration::from_secs(60))
        .unwrap();
    let back = cache.person_by_certno("C1").unwrap().unwrap();
    assert_eq!(back.info, second);
    assert_eq!(back.fetched_at, t0 + Duration::from_secs(60));
}

#[test]
fn person_for_card_follows_the_card_to_its_holder() {
    let (_path, cache) = open_temp("for-card");
    let info = person("P1", "C1", "王小", vec![insu("310", "1", "5", "500100")]);
    assert!(cache.person_for_card("A0000001").unwrap().is_none());
    cache
        .store_person_for_card("A0000001", Some("SN1"), &info, SystemTime::now())
        .unwrap();
    assert_eq!(
        cache.person_for_card("A0000001").unwrap().unwrap().info,
        info
    );
    let card = cache.card_status("A0000001").unwrap().unwrap();
    assert_eq!(card.status, CardStatus::Active);
    assert_eq!(card.card_sn.as_deref(), Some("SN1"));
}

#[test]
fn msgid_sequence_counts_per_date_and_survives_reopen() {
    let (path, cache) = open_temp("msgid");
    assert_eq!(cache.next_msgid_seq("20261123").unwrap(), 1);
    assert_eq!(cache.next_msgid_seq("20261123").unwrap(), 2);
    assert_eq!(cache.next_msgid_seq("20261124").unwrap(), 1);
    drop(cache);
    let cache = Cache::open(&path.path).unwrap();
    assert_eq!(cache.next_msgid_seq("20261123").unwrap(), 3);
}

// ---------------------------------------------------------------- pages

fn page(events: Vec<CardStatusEvent>, latest: u64) -> CardEventPage {
    CardEventPage {
        events,
        latest_version: latest,
    }
}

#[test]
fn card_events_move_card_status_and_the_watermark() {
    let (_path, cache) = open_temp("events");
    let applied = cache
        .apply_card_events(&page(
            vec![
                event(1, "A1", CardEventKind::Lost, None),
                event(2, "A2", CardEventKind::Replaced, Some("A3")),
                event(3, "A4", CardEventKind::Cancelled, None),
                event(4, "A5", CardEventKind::Lost, None),
                event(5, "A5", CardEventKind::Unlocked, None),
            ],
            9,
        ))
        .unwrap();
    assert_eq!(applied, 5);
    let status = |no: &str| cache.card_status(no).unwrap().unwrap().status;
    assert_eq!(status("A1"), CardStatus::Lost);
    assert_eq!(status("A2"), CardStatus::Replaced);
    assert_eq!(
        cache
            .card_status("A2")
            .unwrap()
            .unwrap()
            .replaced_by
            .as_deref(),
        Some("A3")
    );
    assert_eq!(status("A3"), CardStatus::Active);
    assert_eq!(status("A4"), CardStatus::Cancelled);
    assert_eq!(status("A5"), CardStatus::Active);
    let state = cache.feed_state("card_events").unwrap();
    assert_eq!((state.version, state.latest_version), (5, 9));
    assert!(state.last_ok.is_some());
}

#[test]
fn reapplying_a_page_changes_nothing() {
    let (path, cache) = open_temp("idempotent");
    let p = page(
        vec![
            event(1, "A1", CardEventKind::Lost, None),
            event(2, "A1", CardEventKind::Unlocked, None),
        ],
        2,
    );
    assert_eq!(cache.apply_card_events(&p).unwrap(), 2);
    assert_eq!(cache.apply_card_events(&p).unwrap(), 0);
    assert_eq!(count(&path, "card_events"), 2);
    assert_eq!(
        cache.card_status("A1").unwrap().unwrap().status,
        CardStatus::Active
    );
    // An older page arriving late does not move the watermark back nor the status.
    let older = page(vec![event(1, "A1", CardEventKind::Lost, None)], 2);
    cache.apply_card_events(&older).unwrap();
    assert_eq!(cache.feed_state("card_events").unwrap().version, 2);
    assert_eq!(
        cache.card_status("A1").unwrap().unwrap().status,
        CardStatus::Active
    );
}

#[test]
fn a_failure_mid_page_applies_nothing() {
    let (path, cache) = open_temp("atomic");
    cache
        .apply_card_events(&page(vec![event(1, "A1", CardEventKind::Lost, None)], 1))
        .unwrap();
    // Injected failure: the third event of the next page aborts inside the transaction.
    sqlite(&path)
        .execute_batch(
            "CREATE TRIGGER injected_failure BEFORE INSERT ON card_events
             WHEN NEW.card_no = 'BOOM'
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
        )
        .unwrap();
    let failing = page(
        vec![
            event(2, "A2", CardEventKind::Lost, None),
            event(3, "A3", CardEventKind::Cancelled, None),
            event(4, "BOOM", CardEventKind::Lost, None),
            event(5, "A5", CardEventKind::Lost, None),
        ],
        5,
    );
    assert!(cache.apply_card_events(&failing).is_err());
    assert_eq!(count(&path, "card_events"), 1);
    assert!(cache.card_status("A2").unwrap().is_none());
    assert!(cache.card_status("A3").unwrap().is_none());
    let state = cache.feed_state("card_events").unwrap();
    assert_eq!((state.version, state.latest_version), (1, 1));
    // Once the fault is gone the same page applies whole.
    sqlite(&path)
        .execute_batch("DROP TRIGGER injected_failure")
        .unwrap();
    assert_eq!(cache.apply_card_events(&failing).unwrap(), 4);
    assert_eq!(cache.feed_state("card_events").unwrap().version, 5);
}

#[test]
fn catalogue_pages_upsert_by_code_and_keep_money_exact() {
    let (path, cache) = open_temp("catalogue");
    let mut a = item(1, "X001");
    let b = item(2, "X002");
    cache
        .apply_catalogue(&CataloguePage {
            items: vec![a.clone(), b.clone()],
            latest_version: 3,
        })
        .unwrap();
    a.version = 3;
    a.pric_uplmt_amt = None;
    a.vali_flag = false;
    let second = CataloguePage {
        items: vec![a.clone()],
        latest_version: 3,
    };
    assert_eq!(cache.apply_catalogue(&second).unwrap(), 1);
    assert_eq!(cache.apply_catalogue(&second).unwrap(), 0);
    assert_eq!(count(&path, "catalogue"), 2);
    assert_eq!(cache.catalogue_item("X001").unwrap().unwrap(), a);
    assert_eq!(cache.catalogue_item("X002").unwrap().unwrap(), b);
    assert!(cache.catalogue_item("nope").unwrap().is_none());
    assert_eq!(cache.feed_state("catalogue").unwrap().version, 3);
}

// ---------------------------------------------------------------- sync with a fake link

/// A card-status feed of `total` events held in memory; fails the `fail_on_call`-th call.
struct FakeLink {
    total: u64,
    calls: usize,
    fail_on_call: Option<usize>,
    asked_since: Vec<u64>,
}

impl FakeLink {
    fn new(total: u64, fail_on_call: Option<usize>) -> FakeLink {
        FakeLink {
            total,
            calls: 0,
            fail_on_call,
            asked_since: Vec::new(),
        }
    }

    fn call(&mut self, since: u64) -> Result<(), LinkError> {
        self.calls += 1;
        self.asked_since.push(since);
        if self.fail_on_call == Some(self.calls) {
            return Err(LinkError::Uncertain(Uncertainty::Transport(
                "connection reset".into(),
            )));
        }
        Ok(())
    }
}

impl InsurerLink for FakeLink {
    fn person_by_card(&mut self, _: &str, _: &str) -> Result<PersonInfo, LinkError> {
        Err(LinkError::Uncertain(Uncertainty::Transport(
            "not in this fake".into(),
        )))
    }

    fn person_by_certno(&mut self, _: &str) -> Result<PersonInfo, LinkError> {
        Err(LinkError::Uncertain(Uncertainty::Transport(
            "not in this fake".into(),
        )))
    }

    fn card_events(&mut self, since: u64, page_size: u32) -> Result<CardEventPage, LinkError> {
        self.call(since)?;
        let events = (since + 1..=self.total)
            .take(page_size as usize)
            .map(|v| event(v, &format!("C{v:04}"), CardEventKind::Lost, None))
            .collect();
        Ok(page(events, self.total))
    }

    fn catalogue(&mut self, since: u64, page_size: u32) -> Result<CataloguePage, LinkError> {
        self.call(since)?;
        let items = (since + 1..=self.total)
            .take(page_size as usize)
            .map(|v| item(v, &format!("H{v:04}")))
            .collect();
        Ok(CataloguePage {
            items,
            latest_version: self.total,
        })
    }
}

fn stored_versions(path: &PathBuf) -> Vec<u64> {
    let conn = sqlite(path);
    let mut statement = conn
        .prepare("SELECT version FROM card_events ORDER BY version")
        .unwrap();
    statement
        .query_map([], |r| r.get::<_, i64>(0))
        .unwrap()
        .map(|v| v.unwrap() as u64)
        .collect()
}

#[test]
fn sync_pages_until_caught_up() {
    let (path, cache) = open_temp("sync");
    let mut link = FakeLink::new(23, None);
    let report = sync_feed(&cache, &mut link, Feed::CardEvents, 5, 100).unwrap();
    assert_eq!(report.pages, 5);
    assert_eq!(report.applied, 23);
    assert_eq!((report.from_version, report.to_version), (0, 23));
    assert!(report.caught_up);
    assert_eq!(stored_versions(&path), (1..=23).collect::<Vec<_>>());
    // Nothing new: one call, nothing applied.
    let again = sync_feed(&cache, &mut link, Feed::CardEvents, 5, 100).unwrap();
    assert_eq!((again.pages, again.applied, again.caught_up), (1, 0, true));
}

#[test]
fn sync_resumes_after_a_failure_without_gaps_or_duplicates() {
    let (path, cache) = open_temp("resume");
    let mut link = FakeLink::new(40, Some(3));
    let error = sync_feed(&cache, &mut link, Feed::CardEvents, 10, 100).unwrap_err();
    match error {
        SyncError::Link { pages_applied, .. } => assert_eq!(pages_applied, 2),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(stored_versions(&path), (1..=20).collect::<Vec<_>>());
    let state = cache.feed_state("card_events").unwrap();
    assert_eq!(state.version, 20);
    assert!(
        state
            .last_error
            .as_deref()
            .unwrap()
            .contains("connection reset")
    );
    assert!(state.last_error_at.is_some());

    let report = sync_feed(&cache, &mut link, Feed::CardEvents, 10, 100).unwrap();
    assert_eq!(report.from_version, 20);
    assert_eq!(report.to_version, 40);
    assert_eq!(report.applied, 20);
    assert!(report.caught_up);
    // Page 3 was asked for again from where page 2 ended.
    assert_eq!(link.asked_since, vec![0, 10, 20, 20, 30]);
    assert_eq!(stored_versions(&path), (1..=40).collect::<Vec<_>>());
}

#[test]
fn sync_rolls_back_a_page_the_cache_cannot_take_and_resumes() {
    let (path, cache) = open_temp("sync-cache-fault");
    sqlite(&path)
        .execute_batch(
            "CREATE TRIGGER injected_failure BEFORE INSERT ON card_events
             WHEN NEW.version = 14
             BEGIN SELECT RAISE(ABORT, 'disk trouble'); END;",
        )
        .unwrap();
    let mut link = FakeLink::new(25, None);
    let error = sync_feed(&cache, &mut link, Feed::CardEvents, 10, 100).unwrap_err();
    assert!(matches!(error, SyncError::Cache(_)), "{error:?}");
    assert_eq!(stored_versions(&path), (1..=10).collect::<Vec<_>>());
    assert_eq!(cache.feed_state("card_events").unwrap().version, 10);
    sqlite(&path)
        .execute_batch("DROP TRIGGER injected_failure")
        .unwrap();
    let report = sync_feed(&cache, &mut link, Feed::CardEvents, 10, 100).unwrap();
    assert_eq!((report.from_version, report.to_version), (10, 25));
    assert_eq!(stored_versions(&path), (1..=25).collect::<Vec<_>>());
}

#[test]
fn sync_stops_at_max_pages_and_continues_later() {
    let (_path, cache) = open_temp("max-pages");
    let mut link = FakeLink::new(30, None);
    let first = sync_feed(&cache, &mut link, Feed::Catalogue, 10, 2).unwrap();
    assert_eq!(
        (first.pages, first.to_version, first.caught_up),
        (2, 20, false)
    );
    let second = sync_feed(&cache, &mut link, Feed::Catalogue, 10, 2).unwrap();
    assert_eq!((second.to_version, second.caught_up), (30, true));
    let stats = cache.stats().unwrap();
    assert_eq!(stats.catalogue, 30);
}

#[test]
fn stats_count_tables_and_report_feeds() {
    let (_path, cache) = open_temp("stats");
    cache
        .store_person(
            &person("P1", "C1", "王小", vec![insu("310", "1", "1", "500100")]),
            SystemTime::now(),
        )
        .unwrap();
    cache
        .apply_card_events(&page(vec![event(1, "A1", CardEventKind::Lost, None)], 4))
        .unwrap();
    cache.record_sync_error("catalogue", "timeout").unwrap();
    let stats = cache.stats().unwrap();
    assert_eq!(
        (
            stats.persons,
            stats.insuinfo,
            stats.cards,
            stats.card_events
        ),
        (1, 1, 1, 1)
    );
    assert!(stats.file_bytes > 0);
    let feed = |name: &str| stats.feeds.iter().find(|f| f.feed == name).unwrap().clone();
    assert_eq!(feed("card_events").latest_version, 4);
    assert_eq!(feed("catalogue").last_error.as_deref(), Some("timeout"));
}

// ---------------------------------------------------------------- verdicts

const HOSPITAL: &str = "500100";

fn policy() -> VerdictPolicy {
    VerdictPolicy {
        hospital_admdvs: HOSPITAL.into(),
        stale_limit: Duration::from_secs(3600),
        insutype_preference: vec!["310".into(), "390".into()],
    }
}

fn today() -> Date {
    Date::from_card("2026-11-23").unwrap()
}

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000)
}

fn card() -> CardRead {
    let mut card = CardRead {
        card_no: Some("A00000001".into()),
        expiry_date: Some("2030-12-31".into()),
        ..CardRead::default()
    };
    card.holder.certno = Some("50010119900101001X".into());
    card.holder.psn_name = Some("王小".into());
    card
}

fn holder(rows: Vec<InsuInfo>) -> PersonInfo {
    person("P001", "50010119900101001X", "王小", rows)
}

fn insurer_facts(person: Option<PersonInfo>) -> VerdictFacts {
    VerdictFacts {
        card: None,
        person,
        fetched_at: None,
        source: FactSource::Insurer,
        refusal: None,
    }
}

fn good_facts() -> VerdictFacts {
    insurer_facts(Some(holder(vec![insu("310", "1", "332.80", HOSPITAL)])))
}

fn card_record(status: CardStatus, replaced_by: Option<&str>) -> CardRecord {
    CardRecord {
        card_no: "A00000001".into(),
        card_sn: None,
        certno: "50010119900101001X".into(),
        status,
        replaced_by: replaced_by.map(str::to_owned),
        updated_version: 7,
    }
}

fn judge(card: &CardRead, facts: &VerdictFacts) -> medcard::verdict::Verdict {
    verdict(card, facts, &policy(), today(), now())
}

fn codes(v: &medcard::verdict::Verdict) -> Vec<VerdictCode> {
    v.reasons.iter().map(|r| r.code).collect()
}

#[test]
fn verdict_ok() {
    let v = judge(&card(), &good_facts());
    assert_eq!(v.code, VerdictCode::Ok);
    assert_eq!(v.may_settle, MaySettle::Yes);
    assert!(v.reasons.is_empty());
    assert_eq!(v.source, FactSource::Insurer);
    assert_eq!(v.stale_seconds, Some(0));
}

#[test]
fn verdict_lost() {
    let mut facts = good_facts();
    facts.card = Some(card_record(CardStatus::Lost, None));
    let v = judge(&card(), &facts);
    assert_eq!((v.code, v.may_settle), (VerdictCode::Lost, MaySettle::No));
    assert!(v.message_zh.contains("挂失"));
}

#[test]
fn verdict_replaced_names_the_newer_card() {
    let mut facts = good_facts();
    facts.card = Some(card_record(CardStatus::Replaced, Some("B00000002")));
    let v = judge(&card(), &facts);
    assert_eq!(
        (v.code, v.may_settle),
        (VerdictCode::Replaced, MaySettle::No)
    );
    assert_eq!(v.reasons[0].new_card_no.as_deref(), Some("B00000002"));
    assert!(v.message_zh.contains("B00000002"));
}

#[test]
fn verdict_cancelled() {
    let mut facts = good_facts();
    facts.card = Some(card_record(CardStatus::Cancelled, None));
    let v = judge(&card(), &facts);
    assert_eq!(
        (v.code, v.may_settle),
        (VerdictCode::Cancelled, MaySettle::No)
    );
}

#[test]
fn verdict_expired_by_the_workstation_date() {
    let mut c = card();
    c.expiry_date = Some("2026-11-22".into());
    let v = judge(&c, &good_facts());
    assert_eq!(
        (v.code, v.may_settle),
        (VerdictCode::Expired, MaySettle::No)
    );
    assert_eq!(v.reasons[0].expiry_date.as_deref(), Some("2026-11-22"));
    // Valid through its last day.
    c.expiry_date = Some("2026-11-23".into());
    assert_eq!(judge(&c, &good_facts()).code, VerdictCode::Ok);
}

#[test]
fn verdict_not_insured() {
    for stas in ["0", "4", "3"] {
        let facts = insurer_facts(Some(holder(vec![insu("310", stas, "0", HOSPITAL)])));
        let v = judge(&card(), &facts);
        assert_eq!(
            (v.code, v.may_settle),
            (VerdictCode::NotInsured, MaySettle::No)
        );
        assert_eq!(v.reasons[0].psn_insu_stas.as_deref(), Some(stas));
    }
    // No row this counter settles under.
    let facts = insurer_facts(Some(holder(vec![insu("510", "1", "0", HOSPITAL)])));
    assert_eq!(judge(&card(), &facts).code, VerdictCode::NotInsured);
    assert!(medcard::verdict::insured(&facts, &policy()).is_none());
}

#[test]
fn verdict_suspended() {
    let facts = insurer_facts(Some(holder(vec![insu("310", "2", "10", HOSPITAL)])));
    let v = judge(&card(), &facts);
    assert_eq!(
        (v.code, v.may_settle),
        (VerdictCode::Suspended, MaySettle::No)
    );
}

#[test]
fn verdict_prefers_an_active_row() {
    // 310 suspended, 390 active: settle under 390.
    let facts = insurer_facts(Some(holder(vec![
        insu("310", "2", "10", HOSPITAL),
        insu("390", "1", "0", HOSPITAL),
    ])));
    let a = assess(&card(), &facts, &policy(), today(), now());
    assert_eq!(a.verdict.code, VerdictCode::Ok);
    assert_eq!(a.insured.unwrap().insutype, "390");
}

#[test]
fn verdict_unknown_person() {
    let v = judge(&card(), &insurer_facts(None));
    assert_eq!(
        (v.code, v.may_settle),
        (VerdictCode::UnknownPerson, MaySettle::No)
    );
}

#[test]
fn verdict_identity_mismatch_names_the_field() {
    let mut c = card();
    c.holder.psn_name = Some("王大".into());
    let v = judge(&c, &good_facts());
    assert_eq!(
        (v.code, v.may_settle),
        (VerdictCode::IdentityMismatch, MaySettle::No)
    );
    assert_eq!(v.reasons[0].fields, vec!["psn_name"]);
    c.holder.certno = Some("500101199001010028".into());
    let v = judge(&c, &good_facts());
    assert_eq!(v.reasons[0].fields, vec!["certno", "psn_name"]);
    // A lower-case check character is the same number.
    let mut c = card();
    c.holder.certno = Some("50010119900101001x".into());
    assert_eq!(judge(&c, &good_facts()).code, VerdictCode::Ok);
}

fn offline_card(balc: &str) -> CardRead {
    let mut c = card();
    c.balance = Some(Balance {
        balc: balc.into(),
        annual_self_pay: "0.00".into(),
        annual_fund_pay: "0.00".into(),
        year: "2026".into(),
        source: BalanceSource::Card,
    });
    c.balance_source = Some(BalanceSource::Card);
    c
}

#[test]
fn verdict_balance_mismatch_gives_both_amounts() {
    let v = judge(&offline_card("300.00"), &good_facts());
    assert_eq!(
        (v.code, v.may_settle),
        (VerdictCode::BalanceMismatch, MaySettle::SelfPayOnly)
    );
    assert_eq!(v.reasons[0].card_balc, Some(d("300.00")));
    assert_eq!(v.reasons[0].insurer_balc, Some(d("332.80")));
    // Equal amounts, however written, are no mismatch.
    assert_eq!(
        judge(&offline_card("332.8"), &good_facts()).code,
        VerdictCode::Ok
    );
}

#[test]
fn verdict_stale_cache() {
    let facts = VerdictFacts {
        source: FactSource::Cache,
        refusal: None,
        fetched_at: Some(now() - Duration::from_secs(7200)),
        ..good_facts()
    };
    let v = judge(&card(), &facts);
    assert_eq!(
        (v.code, v.may_settle),
        (VerdictCode::StaleCache, MaySettle::SelfPayOnly)
    );
    assert_eq!(v.source, FactSource::Cache);
    assert_eq!(v.stale_seconds, Some(7200));
    assert_eq!(v.reasons[0].stale_seconds, Some(7200));
    // Within the limit the cache is good enough.
    let fresh = VerdictFacts {
        fetched_at: Some(now() - Duration::from_secs(600)),
        ..facts
    };
    let v = judge(&card(), &fresh);
    assert_eq!(
        (v.code, v.source, v.stale_seconds),
        (VerdictCode::Ok, FactSource::Cache, Some(600))
    );
    assert!(v.message_en.contains("cache"));
}

#[test]
fn verdict_other_region_may_settle_but_is_flagged() {
    let facts = insurer_facts(Some(holder(vec![insu("310", "1", "5", "511700")])));
    let v = judge(&card(), &facts);
    assert_eq!(
        (v.code, v.may_settle),
        (VerdictCode::OtherRegion, MaySettle::Yes)
    );
    assert_eq!(v.reasons[0].insuplc_admdvs.as_deref(), Some("511700"));
}

#[test]
fn verdict_the_strictest_of_several_decides() {
    // other_region (yes) + balance_mismatch (self_pay_only) + stale (self_pay_only)
    // + lost (no) + expired (no): lost leads, all listed, strictest first.
    let mut c = offline_card("1.00");
    c.expiry_date = Some("2020-01-01".into());
    let facts = VerdictFacts {
        card: Some(card_record(CardStatus::Lost, None)),
        person: Some(holder(vec![insu("310", "1", "5.00", "511700")])),
        fetched_at: Some(now() - Duration::from_secs(100_000)),
        source: FactSource::Cache,
        refusal: None,
    };
    let v = judge(&c, &facts);
    assert_eq!(
        codes(&v),
        vec![
            VerdictCode::Lost,
            VerdictCode::Expired,
            VerdictCode::StaleCache,
            VerdictCode::BalanceMismatch,
            VerdictCode::OtherRegion
        ]
    );
    assert_eq!((v.code, v.may_settle), (VerdictCode::Lost, MaySettle::No));

    // Without the no-codes, self_pay_only wins over yes.
    let mut c = offline_card("1.00");
    c.expiry_date = None;
    let facts = VerdictFacts {
        card: None,
        ..facts
    };
    let v = judge(&c, &facts);
    assert_eq!(v.may_settle, MaySettle::SelfPayOnly);
    assert_eq!(v.code, VerdictCode::StaleCache);
}

#[test]
fn verdict_and_insured_serialise_with_the_platform_names() {
    let mut facts = good_facts();
    facts.card = Some(card_record(CardStatus::Replaced, Some("B00000002")));
    let a = assess(&card(), &facts, &policy(), today(), now());
    let json = serde_json::to_value(&a).unwrap();
    let verdict = &json["verdict"];
    for key in [
        "code",
        "may_settle",
        "reasons",
        "message_zh",
        "message_en",
        "source",
        "stale_seconds",
    ] {
        assert!(verdict.get(key).is_some(), "verdict lacks {key}");
    }
    assert_eq!(verdict["code"], "replaced");
    assert_eq!(verdict["may_settle"], "no");
    assert_eq!(verdict["source"], "insurer");
    assert_eq!(verdict["reasons"][0]["new_card_no"], "B00000002");
    let insured = &json["insured"];
    assert_eq!(insured["psn_no"], "P001");
    assert_eq!(insured["insutype"], "310");
    assert_eq!(insured["psn_insu_stas"], "1");
    assert_eq!(insured["balc"], "332.80");
    assert_eq!(insured["insuplc_admdvs"], HOSPITAL);
    let stale = judge(
        &offline_card("1"),
        &VerdictFacts {
            source: FactSource::Cache,
            refusal: None,
            fetched_at: Some(now() - Duration::from_secs(7200)),
            ..good_facts()
        },
    );
    let json = serde_json::to_value(&stale).unwrap();
    assert_eq!(json["may_settle"], "self_pay_only");
    assert_eq!(json["source"], "cache");
}

#[test]
fn verdict_from_a_cache_lookup_end_to_end() {
    let (_path, cache) = open_temp("e2e-verdict");
    let fetched = now() - Duration::from_secs(120);
    cache
        .store_person_for_card(
            "A00000001",
            None,
            &holder(vec![insu("310", "1", "332.80", HOSPITAL)]),
            fetched,
        )
        .unwrap();
    let mut replaced = event(3, "A00000001", CardEventKind::Replaced, Some("B00000002"));
    replaced.certno = "50010119900101001X".into();
    cache.apply_card_events(&page(vec![replaced], 3)).unwrap();
    let cached = cache.person_for_card("A00000001").unwrap().unwrap();
    let facts = VerdictFacts {
        card: cache.card_status("A00000001").unwrap(),
        person: Some(cached.info),
        fetched_at: Some(cached.fetched_at),
        source: FactSource::Cache,
        refusal: None,
    };
    let v = judge(&card(), &facts);
    assert_eq!(v.code, VerdictCode::Replaced);
    assert_eq!(v.stale_seconds, Some(120));
    assert_eq!(v.reasons[0].new_card_no.as_deref(), Some("B00000002"));
}

#[test]
fn calendar_dates_from_time_and_text() {
    // 2026-11-23 16:00 UTC is 2026-11-24 00:00 in China.
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_449_600);
    assert_eq!(medcard::clock::utc(t), "2026-11-23 16:00:00 UTC");
    assert_eq!(Date::at(t).to_string(), "2026-11-24");
    assert_eq!(
        Date::from_card("20301231").unwrap().to_string(),
        "2030-12-31"
    );
    assert!(Date::from_card("2030-13-01").is_none());
    assert!(Date::from_card("").is_none());
}

// ---------------------------------------------------------------- medcard cache stats

#[test]
fn cache_stats_command_prints_text_and_json() {
    let (path, cache) = open_temp("cli");
    cache
        .apply_card_events(&page(vec![event(1, "A1", CardEventKind::Lost, None)], 3))
        .unwrap();
    cache.record_sync_error("catalogue", "timeout").unwrap();
    drop(cache);
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_medcard"))
            .args(["cache", "stats", "--db"])
            .arg(&path.path)
            .args(args)
            .output()
            .unwrap()
    };
    let json = run(&["--format", "json"]);
    assert!(json.status.success());
    let stats: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(stats["cards"], 1);
    assert_eq!(stats["card_events"], 1);
    let text = run(&[]);
    assert!(text.status.success());
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("feed card_events"), "{text}");
    assert!(text.contains("version 1 of 3"), "{text}");
    assert!(text.contains("timeout"), "{text}");
    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_medcard"))
        .args(["cache", "stats", "--db", "/nonexistent/cache.sqlite"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn the_one_writer_is_shared_by_threads_and_readers_see_its_commits() {
    let (_path, cache) = open_temp("threads");
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let writer = cache.writer().clone();
            std::thread::spawn(move || {
                (0..25)
                    .map(|_| writer.next_msgid_seq("20261123").unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort_unstable();
    assert_eq!(all, (1..=100).collect::<Vec<_>>());
    let reader = cache.new_reader().unwrap();
    cache
        .store_person(&person("P9", "C9", "李四", vec![]), SystemTime::now())
        .unwrap();
    assert!(reader.person_by_certno("C9").unwrap().is_some());
    assert!(reader.person_by_psn_no("P9").unwrap().is_some());
}
