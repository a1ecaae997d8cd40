//! `medcard serve`: the workstation daemon. One process owns the readers, reads each card
//! once into a session, and answers every program on a local socket (JSON-RPC 2.0, one
//! object per line).
//!
//! The shape follows tokio's mini-redis:
//! - [`monitor`]: a thread of its own runs the PC/SC status loop, keeps one
//!   [`CardSession`] per reader holding a card, and publishes [`CardEvent`]s. It is the only
//!   owner of the readers; everything else talks to it through a [`MonitorHandle`].
//! - [`server`]: the listener (Unix socket, optional loopback TCP), connection limits,
//!   graceful shutdown.
//! - [`connection`]: the one request loop of every transport (line framing with a size
//!   limit, or WebSocket messages), JSON-RPC parsing and replies.
//! - [`web`]: the loopback HTTP + WebSocket endpoint for browser-based HIS and kiosks
//!   (`Host`, `Origin` and token checks; the kiosk page); `GET /metrics` there and on
//!   `metrics.listen`'s listener of its own.
//! - [`scrape`]: what `/metrics` answers: the daemon's metrics and its state read now.
//! - [`bills`]: the bills the HIS offers for paying at a kiosk.
//! - [`credentials`]: patients who present an ID number (or, next, a QR code) instead of
//!   a card, kept as credential sessions for `visit.register`.
//! - [`methods`]: one handler per method, from request to result.
//! - [`messages`]: the one place for operator messages: each error the operator sees, as
//!   its JSON-RPC code, English and Chinese text (`rpc`'s error objects, the cli's lines).
//! - [`config`]: the settings file, `/etc/medcard/medcard.toml` by default.
//! - [`shared`]: what every connection shares (the handle, the services, the settings).
//! - [`services`]: the cache, the insurer link and the settler, opened once from the config.
//! - [`verdicts`]: the cache + 1101 assessor the monitor calls before `card.ready`.
//! - [`settlement`]: visits and settlement on the socket (the wire; the work is in
//!   [`crate::settle::service`]).
//! - [`statement`]: `card.statement`, the card's DF04 records and the holder's journalled
//!   settlements (read-only).
//! - [`background`]: the sync and the resolver threads beside the socket.
//! - [`scanners`]: `[scanners]`, the serial scanners' threads and their `credential.scanned`
//!   events.
//! - [`worker`]: the one stoppable-thread type (monitor, sync, resolver).
//! - [`daemon`]: the composition root: [`Daemon`] starts all of the above and stops it in
//!   order.
//! - [`client`]: the blocking JSON-RPC client of the socket (`medcard call`, the demo,
//!   the benches, the tests).
//!
//! Inside `serve` modules point one way: `daemon` → `server` → `web` → `connection` →
//! `methods` → `bills` → `settlement` / `statement` → `shared` → `services` → `verdicts` → `monitor` → `handle` / `worker`;
//! `messages` → `rpc` and the error types (every `RpcError::from` an error goes through it).

pub mod background;
pub mod bills;
pub mod client;
pub mod config;
pub mod connection;
pub mod credentials;
pub mod daemon;
pub mod doctor;
pub mod handle;
pub mod heavy;
pub mod messages;
pub mod methods;
pub mod monitor;
pub mod peer;
pub mod rpc;
pub mod scanners;
pub mod scrape;
pub mod server;
pub mod services;
pub mod settlement;
pub mod shared;
pub mod statement;
pub mod systemd;
pub mod types;
pub mod verdicts;
pub mod web;
pub mod worker;

pub use daemon::{Daemon, DaemonError, RunningDaemon};

pub use handle::{MonitorHandle, MonitorSide, PinInput, Request, Snapshot};
pub use monitor::{Assessor, MonitorConfig, PsamChoice, spawn_monitor};
pub use types::{CardEvent, CardSession, ReaderInfo, ReaderState, ScanKind, SessionError};
pub use worker::Worker;
