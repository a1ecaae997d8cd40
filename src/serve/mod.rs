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
//! - [`connection`]: line framing with a size limit, JSON-RPC parsing and replies.
//! - [`methods`]: one handler per method, from request to result.
//! - [`config`]: the settings file, `/etc/medcard/medcard.toml` by default.
//! - [`verdicts`]: the cache + 1101 assessor and the background sync.
//! - [`settlement`]: visits and settlement on the socket, and the background resolver of
//!   unanswered money-moving calls.
//! - [`background`]: starting the sync and the resolver threads beside the socket.

pub mod background;
pub mod config;
pub mod connection;
pub mod handle;
pub mod methods;
pub mod monitor;
pub mod peer;
pub mod rpc;
pub mod server;
pub mod settlement;
pub mod systemd;
pub mod types;
pub mod verdicts;

pub use handle::{MonitorHandle, MonitorSide, Request, Snapshot};
pub use monitor::{Assessor, MonitorConfig, MonitorThread, PsamChoice, spawn_monitor};
pub use types::{CardEvent, CardSession, ReaderInfo, ReaderState, SessionError};
