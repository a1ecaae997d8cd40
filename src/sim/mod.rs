//! The other side of the wire: what medcard talks to, simulated, for tests, benchmarks and the
//! demo. The simulators may use product modules (a virtual PSAM diversifies keys as
//! `psam` does, the insurer settles with `settle::calc`); no product module uses them — only
//! `cli`, the top, wires them in.
//!
//! - [`browser`]: headless Chromium through chromedriver (a small WebDriver client), for the
//!   kiosk tests and `medcard bench web`, one at a time per machine.
//! - [`card`]: the card side — virtual cards and PSAMs, their fixture images, served to the
//!   real pcscd through vpcd or in-process through [`card::virtual_reader`].
//! - [`insurer`]: the insurer side — `medcard insurer-sim`, the national platform's
//!   transactions over loopback HTTP.
//! - [`pcscd`]: starting pcscd for the end-to-end stack and the machine-wide lock its users take.
//! - [`scanner`]: the virtual serial scanner, a pty pair behind a symlink, for the scanner
//!   tests and `medcard sim --scanner`.
//! - [`postgres`]: a throwaway PostgreSQL cluster (the hospital database) for tests, benches and
//!   demos.

pub mod browser;
pub mod card;
pub mod insurer;
pub mod pcscd;
pub mod postgres;
pub mod scanner;
