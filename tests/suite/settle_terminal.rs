//! Where a registration is made from reaches the insurer: a self-service terminal's 2201 and
//! 2203 go with `opter_type` 2 (自助终端) and the kiosk's operator, the counter's with the
//! configured `opter_type` 1 — checked in the msg_log of a real `medcard insurer-sim` on
//! loopback, which refuses an `opter_type` the platform does not know.

use crate::common;

use common::insurer::InsurerSim;
use common::settle::xiaowang_by_certno;
use common::temp::TempDir;
use medcard::cache::Cache;
use medcard::insurer::{InsurerClient, InsurerConfig, InsurerLink, LinkError};
use medcard::settle::service::{RegisterParams, SettleOptions, Settler, Terminal, load_policies};
use serde_json::json;
use std::sync::Arc;

/// 小王's ID number (fixtures/insurer/persons.toml).
const WANG_CERTNO: &str = "500103199103080319";

fn registration(terminal: Terminal) -> RegisterParams {
    RegisterParams {
        dept_code: "A03".into(),
        dept_name: "内科".into(),
        dr_name: "张医生".into(),
        terminal,
        ..RegisterParams::default()
    }
}

#[test]
fn a_self_service_registration_goes_as_opter_type_2_and_the_counters_as_1() {
    let dir = TempDir::new("terminal-opter");
    let sim = InsurerSim::in_dir(&dir);
    let cache = Arc::new(Cache::open(dir.join("cache.sqlite")).expect("cache"));
    let link = InsurerClient::new(InsurerConfig {
        fixmedins_code: "H50010377777".into(),
        ..sim.config()
    });
    let policies = load_policies("", "cq-seed").expect("policies");
    let settler = Settler::new(cache, vec![link], policies, SettleOptions::default());

    let counter = settler
        .register(&xiaowang_by_certno(), &registration(Terminal::Counter))
        .expect("the counter's registration");
    let kiosk = settler
        .register(&xiaowang_by_certno(), &registration(Terminal::SelfService))
        .expect("the kiosk's registration");
    assert_ne!(counter.mdtrt_id, kiosk.mdtrt_id);

    assert_eq!(sim.opter_types("2201"), [json!("1"), json!("2")]);
    assert_eq!(sim.opter_types("2203"), [json!("1"), json!("2")]);
    // The sign-in is the link's own, whoever registers.
    assert_eq!(sim.opter_types("9001"), [json!("1")]);
}

#[test]
fn the_simulator_refuses_an_opter_type_the_platform_does_not_know() {
    let sim = InsurerSim::fresh("terminal-refused", &[]);
    let mut link = InsurerClient::new(InsurerConfig {
        opter_type: "9".into(),
        ..sim.config()
    });
    let refused = link.person_by_certno(WANG_CERTNO);
    assert!(
        matches!(&refused, Err(LinkError::Business { err_msg, .. }) if err_msg.contains("opter_type")),
        "{refused:?}"
    );
    let mut mobile = InsurerClient::new(InsurerConfig {
        opter_type: "3".into(),
        ..sim.config()
    });
    assert!(mobile.person_by_certno(WANG_CERTNO).is_ok());
}
