//! The integration tests, as one test binary (one link of the library instead of one per
//! file): each module below was a file of its own in `tests/`; `common` holds the helpers
//! they share. Run one module with a name filter, e.g. `cargo test --features fault-injection --test suite settle_faults`.

mod common;

mod architecture;
mod bench_soak;
mod browser;
mod cache_guard;
mod cache_verdict;
mod cli;
mod doctor;
mod e2e_pcscd;
mod e2e_psam_pin;
mod e2e_serve;
mod e2e_settle;
mod fuzz_regressions;
mod hospital_numbers;
mod hospital_ship;
mod hospital_view;
mod hospital_workstations;
mod insurer_ec;
mod insurer_link;
mod insurer_refusals;
mod insurer_settle;
mod kiosk_browser;
mod kiosk_qr_browser;
mod package;
mod read_fixtures;
mod release_binary;
mod robustness;
mod serve_credentials;
mod serve_ec_voucher;
mod serve_metrics;
mod serve_monitor;
mod serve_scanner;
mod serve_sign_in;
mod serve_socket;
mod serve_statement;
mod serve_verdicts;
mod settle_bills;
mod settle_calc;
mod settle_faults;
mod settle_input;
mod settle_reconcile;
mod settle_review;
mod settle_socket;
mod settle_terminal;
mod socket_owner;
mod storage_faults;
mod sync_cli;
mod troubleshooting;
mod web_endpoint;
