//! The shipper: the outbox's rows to the hospital database, in order, once each.
//!
//! A turn reads up to [`BATCH_ROWS`] outbox rows after the hospital's watermark for this
//! workstation and, in ONE PostgreSQL transaction, appends them to `journal_log` (`ON
//! CONFLICT DO NOTHING`: a batch repeated after a lost commit adds nothing), brings
//! `journal_rows` to each key's newest row (only a higher `seq` replaces one) and advances
//! `workstations.shipped_seq`; after the commit it deletes the local rows up to the
//! watermark. At each (re)connect it migrates, registers and reads the watermark back from
//! the hospital, so an outage, a kill between the commit and the local delete, or a restart
//! resumes without a gap or a duplicate.
//!
//! While the database is down the turns back off (doubling up to 30 s) and log one warning
//! per outage and one line on recovery. [`ShipMonitor`] is what `system.info`'s `hospital`
//! reports.

use super::register::{Workstation, register};
use super::{HospitalError, HospitalSettings, connect, schema};
use crate::clock::rfc3339;
use crate::settle::outbox::{Outbox, OutboxRow};
use postgres::Client;
use serde::Serialize;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

/// Outbox rows per PostgreSQL transaction.
pub const BATCH_ROWS: usize = 300;

/// The longest pause between two tries while the database is down or refuses.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Connected, but the oldest unshipped row is older than this: `behind`.
const BEHIND_AFTER_MS: i64 = 10_000;

/// What `system.info`'s `hospital.state` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShipState {
    /// Connected and caught up.
    Shipping,
    /// Connected, with rows waiting longer than 10 s or more than a batch.
    Behind,
    /// Not connected (down, unreachable, or not yet tried): settling goes on, rows wait.
    Down,
    /// The hospital refuses this workstation (its node, its journal): nothing is shipped.
    Refused,
}

impl ShipState {
    /// Every state.
    pub const ALL: [ShipState; 4] = [
        ShipState::Shipping,
        ShipState::Behind,
        ShipState::Down,
        ShipState::Refused,
    ];

    /// The name on every wire (`shipping`, `down` …).
    pub fn as_str(self) -> &'static str {
        match self {
            ShipState::Shipping => "shipping",
            ShipState::Behind => "behind",
            ShipState::Down => "down",
            ShipState::Refused => "refused",
        }
    }
}

/// The shipper's condition, shared with its monitor.
#[derive(Debug, Clone)]
struct Progress {
    connected: bool,
    refused: bool,
    /// The last error (its first line: no row data).
    last_error: Option<String>,
    /// When the present condition (connected, down, refused) began.
    since: SystemTime,
    shipped_seq: Option<i64>,
    last_shipped_at: Option<SystemTime>,
}

/// `system.info`'s `hospital` object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShipReport {
    pub state: ShipState,
    pub workstation: String,
    pub node: Option<i32>,
    /// The last outbox row the hospital holds (`null` until first connected).
    pub shipped_seq: Option<i64>,
    /// Outbox rows after it.
    pub pending_rows: u64,
    /// How long the oldest of them has waited, ms.
    pub lag_ms: Option<i64>,
    pub last_error: Option<String>,
    pub since: String,
    pub last_shipped_at: Option<String>,
}

/// A view of the shipper for `system.info`, held by the socket's side.
#[derive(Clone)]
pub struct ShipMonitor {
    workstation: Workstation,
    outbox: Outbox,
    progress: Arc<Mutex<Progress>>,
}

impl ShipMonitor {
    fn progress(&self) -> Progress {
        self.progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn update(&self, change: impl FnOnce(&mut Progress)) {
        change(&mut self.progress.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// The shipper's state now, with the outbox's backlog.
    pub fn report(&self, now: SystemTime) -> ShipReport {
        let progress = self.progress();
        let backlog = self
            .outbox
            .backlog(progress.shipped_seq.unwrap_or(0))
            .unwrap_or_default();
        let now_ms = unix_millis(now);
        let lag_ms = backlog.oldest_ms.map(|oldest| (now_ms - oldest).max(0));
        let state = if progress.refused {
            ShipState::Refused
        } else if !progress.connected {
            ShipState::Down
        } else if lag_ms.is_some_and(|lag| lag > BEHIND_AFTER_MS)
            || backlog.rows > BATCH_ROWS as u64
        {
            ShipState::Behind
        } else {
            ShipState::Shipping
        };
        ShipReport {
            state,
            workstation: self.workstation.name.clone(),
            node: self.workstation.node,
            shipped_seq: progress.shipped_seq,
            pending_rows: backlog.rows,
            lag_ms,
            last_error: progress.last_error,
            since: rfc3339(progress.since),
            last_shipped_at: progress.last_shipped_at.map(rfc3339),
        }
    }
}

/// Ships the outbox, one [`turn`](Self::turn) at a time (blocking: a worker thread's).
pub struct Shipper {
    settings: HospitalSettings,
    monitor: ShipMonitor,
    client: Option<Client>,
    /// The hospital's watermark, while connected.
    watermark: i64,
    /// The pause after a failed turn.
    backoff: Duration,
    /// Whether the present outage or refusal was logged.
    logged: bool,
    /// When the hospital last heard from this workstation (a batch, or a heartbeat).
    last_seen: Option<Instant>,
}

impl Shipper {
    pub fn new(settings: HospitalSettings, workstation: Workstation, outbox: Outbox) -> Shipper {
        let monitor = ShipMonitor {
            workstation,
            outbox,
            progress: Arc::new(Mutex::new(Progress {
                connected: false,
                refused: false,
                last_error: Some("not connected yet".to_owned()),
                since: SystemTime::now(),
                shipped_seq: None,
                last_shipped_at: None,
            })),
        };
        Shipper {
            backoff: settings.ship_interval,
            settings,
            monitor,
            client: None,
            watermark: 0,
            logged: false,
            last_seen: None,
        }
    }

    /// What `system.info` reads.
    pub fn monitor(&self) -> ShipMonitor {
        self.monitor.clone()
    }

    /// Connects, migrates and registers (at the daemon's start, then whenever the
    /// connection is gone); the local rows the hospital already holds are deleted.
    pub fn connect(&mut self) -> Result<(), HospitalError> {
        let result = self.try_connect();
        if let Err(e) = &result {
            self.failed(e);
        }
        result
    }

    fn try_connect(&mut self) -> Result<(), HospitalError> {
        let name = format!("medcard {}", self.monitor.workstation.name);
        let mut client = connect::connect(&self.settings, &name)?;
        schema::migrate(&mut client)?;
        let watermark = register(&mut client, &self.monitor.workstation)?;
        self.monitor.outbox.delete_through(watermark)?;
        self.client = Some(client);
        self.watermark = watermark;
        if self.logged {
            tracing::info!(
                shipped_seq = watermark,
                "the hospital database is back: shipping the journal"
            );
        }
        self.logged = false;
        self.backoff = self.settings.ship_interval;
        self.monitor.update(|p| {
            *p = Progress {
                connected: true,
                refused: false,
                last_error: None,
                since: SystemTime::now(),
                shipped_seq: Some(watermark),
                last_shipped_at: p.last_shipped_at,
            };
        });
        Ok(())
    }

    /// One turn; returns how long to pause before the next (none while a full batch was
    /// shipped and more wait).
    pub fn turn(&mut self) -> Duration {
        match self.ship_batch() {
            Ok(true) => Duration::ZERO,
            Ok(false) => self.settings.ship_interval,
            Err(e) => {
                self.failed(&e);
                let pause = self.backoff;
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                pause
            }
        }
    }

    /// Ships one batch; true when it was full (more may wait).
    fn ship_batch(&mut self) -> Result<bool, HospitalError> {
        if self.client.is_none() {
            self.try_connect()?;
        }
        let rows = self.monitor.outbox.after(self.watermark, BATCH_ROWS)?;
        let Some(client) = self.client.as_mut() else {
            return Ok(false);
        };
        let Some(last) = rows.last().map(|row| row.seq) else {
            let interval = heartbeat_interval(self.settings.ship_interval);
            if self.last_seen.is_none_or(|at| at.elapsed() >= interval) {
                heartbeat(client, &self.monitor.workstation)?;
                self.last_seen = Some(Instant::now());
            }
            return Ok(false);
        };
        append(client, &self.monitor.workstation, &rows)?;
        self.last_seen = Some(Instant::now());
        self.watermark = last;
        self.monitor.update(|p| {
            p.shipped_seq = Some(last);
            p.last_shipped_at = Some(SystemTime::now());
        });
        self.monitor.outbox.delete_through(last)?;
        Ok(rows.len() == BATCH_ROWS)
    }

    /// Notes a failure: the connection is dropped (the next turn reconnects and reads the
    /// watermark again); logged once per outage or refusal.
    fn failed(&mut self, e: &HospitalError) {
        self.client = None;
        let refused = e.is_operator_error();
        let message = e.to_string();
        if !self.logged {
            if refused {
                tracing::error!(error = %message, "the hospital database refuses this workstation: the journal is kept here, nothing is shipped");
            } else {
                tracing::warn!(error = %message, "the hospital database is unreachable: settling goes on, the journal is shipped when it is back");
            }
            self.logged = true;
        }
        self.monitor.update(|p| {
            if p.connected || p.refused != refused {
                p.since = SystemTime::now();
            }
            p.connected = false;
            p.refused = refused;
            p.last_error = Some(message);
        });
    }
}

/// How often a workstation with nothing to ship tells the hospital it is there (20 pauses,
/// at most a minute), so that `medcard hospital workstations` tells a quiet workstation from
/// one that stopped shipping.
fn heartbeat_interval(ship_interval: Duration) -> Duration {
    (ship_interval * 20).min(Duration::from_secs(60))
}

/// `last_seen_at` = now: this workstation is caught up and alive.
fn heartbeat(client: &mut Client, workstation: &Workstation) -> Result<(), HospitalError> {
    let seen = client.execute(
        "UPDATE workstations SET last_seen_at = now() WHERE workstation = $1 AND journal_id = $2",
        &[&workstation.name, &workstation.journal_id],
    )?;
    if seen != 1 {
        return Err(HospitalError::NotRegistered);
    }
    Ok(())
}

/// One batch in one transaction: the log, the latest rows, the watermark.
fn append(
    client: &mut Client,
    workstation: &Workstation,
    rows: &[OutboxRow],
) -> Result<(), HospitalError> {
    let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
    let tbls: Vec<&str> = rows.iter().map(|r| r.tbl.as_str()).collect();
    let keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
    let bodies: Vec<&str> = rows.iter().map(|r| r.row.as_str()).collect();
    let times: Vec<i64> = rows.iter().map(|r| r.journalled_at_ms).collect();
    let last = seqs.last().copied().unwrap_or(0);
    let name = &workstation.name;
    let mut tx = client.transaction()?;
    tx.execute(
        "INSERT INTO journal_log (workstation, seq, tbl, key, row, journalled_at) \
         SELECT $1, s, t, k, r::jsonb, to_timestamp(j / 1000.0) \
         FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::bigint[]) \
              AS u(s, t, k, r, j) \
         ON CONFLICT (workstation, seq) DO NOTHING",
        &[name, &seqs, &tbls, &keys, &bodies, &times],
    )?;
    tx.execute(
        "INSERT INTO journal_rows (workstation, tbl, key, seq, row) \
         SELECT DISTINCT ON (t, k) $1, t, k, s, r::jsonb \
         FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[]) AS u(s, t, k, r) \
         ORDER BY t, k, s DESC \
         ON CONFLICT (workstation, tbl, key) DO UPDATE SET seq = EXCLUDED.seq, row = EXCLUDED.row \
         WHERE journal_rows.seq < EXCLUDED.seq",
        &[name, &seqs, &tbls, &keys, &bodies],
    )?;
    let advanced = tx.execute(
        "UPDATE workstations SET shipped_seq = GREATEST(shipped_seq, $3), \
         last_shipped_at = now(), last_seen_at = now() \
         WHERE workstation = $1 AND journal_id = $2",
        &[name, &workstation.journal_id, &last],
    )?;
    if advanced != 1 {
        return Err(HospitalError::NotRegistered);
    }
    tx.commit()?;
    Ok(())
}

fn unix_millis(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
