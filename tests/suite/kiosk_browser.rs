//! The self-service kiosk page (docs/kiosk.md) in a real browser: headless Chromium on the
//! page the daemon serves, opened as a kiosk opens it (the kiosk token in the fragment), the
//! daemon in this process on a virtual reader the test inserts cards in and pulls them from,
//! the real insurer simulator and a real cache file ([`crate::common::kiosk`]). Each flow
//! saves its last screen under `target/test-output/kiosk_*/` and fails on any console error.

use crate::common::kiosk::{KioskPage, KioskRig};
use crate::common::rpc::Rpc;
use crate::common::settle::{self, XIAOWANG};
use crate::common::wait_until;
use serde_json::{Value, json};

/// The kiosk's usual screen: landscape.
const LANDSCAPE: (u32, u32) = (1920, 1080);
/// A portrait kiosk screen.
const PORTRAIT: (u32, u32) = (1080, 1920);
/// 小王's PIN (fixtures/cards/xiaowang.toml).
const PIN: &str = "123456";

/// A rig with 小王's card judged in the reader and the page open on his card screen; his
/// `card.read` as the daemon answers it.
fn xiaowang_at_the_kiosk(tag: &str) -> (KioskRig, KioskPage, Value) {
    let kiosk = KioskRig::start(tag);
    kiosk.insert(XIAOWANG);
    let card = kiosk.judged_card();
    let page = kiosk.open_page(LANDSCAPE.0, LANDSCAPE.1);
    page.wait_screen("card");
    page.wait_text("#verdict", "可以使用医保");
    (kiosk, page, card)
}

/// The holder's name and ID number as the daemon read them from the card.
fn holder(card: &Value) -> (String, String) {
    let text = |field: &str| {
        card["holder"][field]
            .as_str()
            .unwrap_or_else(|| panic!("holder.{field} in {card}"))
            .to_owned()
    };
    (text("psn_name"), text("certno"))
}

/// The digits of the keypad shown now, in their order on the screen.
fn keypad_order(page: &KioskPage) -> Vec<String> {
    let keys = page
        .browser
        .find_all("#pin-keypad button[data-digit]")
        .unwrap_or_else(|e| panic!("{e}"));
    let order: Vec<String> = keys
        .iter()
        .map(|key| {
            key.attribute("data-digit")
                .ok()
                .flatten()
                .unwrap_or_default()
        })
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(sorted, ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);
    order
}

/// Touches the keypad's keys for `digits`.
fn type_pin(page: &KioskPage, digits: &str) {
    for digit in digits.chars() {
        page.click(&format!("#pin-keypad button[data-digit='{digit}']"));
    }
}

fn filled_dots(page: &KioskPage) -> usize {
    page.browser
        .find_all("#pin-dots .dot.filled")
        .unwrap_or_else(|e| panic!("{e}"))
        .len()
}

/// The page's text outside the keypad (whose keys are the digits themselves) and its URL.
fn text_beside_the_keypad(page: &KioskPage) -> String {
    let text = page.script(
        "const copy = document.documentElement.cloneNode(true);\
         copy.querySelector('#pin-keypad').remove();\
         return copy.outerHTML + ' ' + location.href;",
    );
    text.as_str().unwrap_or_default().to_owned()
}

/// Waits until the card screen's pay button is `disabled` or not.
fn wait_pay_disabled(page: &KioskPage, disabled: bool) {
    wait_until("the pay button's state", crate::common::kiosk::WAIT, || {
        page.disabled("#menu-pay") == disabled
    });
}

#[test]
fn inserting_a_card_shows_the_masked_holder_and_the_verdict() {
    let kiosk = KioskRig::start("kiosk-identity");
    let page = kiosk.open_page(LANDSCAPE.0, LANDSCAPE.1);
    page.wait_screen("idle");
    page.wait_text("section[data-for=idle] h1", "请插卡或出示医保电子凭证");
    let url = page.browser.current_url().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !url.contains("token="),
        "the token stayed in the URL: {url}"
    );
    assert!(!url.contains(&kiosk.web.kiosk_token), "{url}");

    kiosk.insert(XIAOWANG);
    page.wait_screen("card");
    let card = kiosk.judged_card();
    let (name, certno) = holder(&card);
    let first: String = name.chars().take(1).collect();
    let masked = format!("{first}{}", "*".repeat(name.chars().count() - 1));
    assert_eq!(page.wait_text("#holder-name", &first), masked);
    // The ID number as its first 4 and last 4 characters.
    let (head, tail) = (&certno[..4], &certno[certno.len() - 4..]);
    let masked_certno = format!("{head}{}{tail}", "*".repeat(certno.len() - 8));
    let shown_certno = page.text_of("#holder-certno");
    assert!(shown_certno.contains(&masked_certno), "{shown_certno}");
    page.wait_text("#verdict", "可以使用医保");
    let verdict = page
        .browser
        .find("#verdict")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        verdict
            .attribute("data-code")
            .unwrap_or_else(|e| panic!("{e}")),
        Some("ok".to_owned())
    );
    let all = page.all_text();
    assert!(!all.contains(&name), "the full name is in the page");
    assert!(!all.contains(&certno), "the full ID number is in the page");
    assert!(
        !all.contains(&kiosk.web.kiosk_token),
        "the token is in the page"
    );
    page.finish("kiosk_identity");
}

#[test]
fn the_pin_on_a_shuffled_keypad_opens_the_balance_and_the_statement() {
    let (kiosk, page, card) = xiaowang_at_the_kiosk("kiosk-balance");
    // The HIS settles a visit for 小王 first: it shows in his statement.
    let mut his = kiosk.web.his();
    let mdtrt_id = settle::register(&mut his);
    let preview = settle::preview(&mut his, &mdtrt_id, settle::one_line("45.60"));
    let commit = settle::commit_params(&preview["preview_id"], "kiosk-balance-1");
    assert_eq!(his.result("settle.commit", commit)["state"], "settled");

    page.click("#menu-balance");
    page.wait_screen("pin");
    let first = keypad_order(&page);
    page.click("#pin-cancel");
    page.wait_screen("card");
    page.click("#menu-balance");
    page.wait_screen("pin");
    let second = keypad_order(&page);
    assert_ne!(first, second, "the keypad was not shuffled again");

    type_pin(&page, PIN);
    assert_eq!(filled_dots(&page), PIN.len());
    let beside = text_beside_the_keypad(&page);
    assert!(!beside.contains(PIN), "the PIN is in the page or its URL");
    page.click("#pin-ok");
    page.wait_screen("balance");

    // The card's balance, read with the PIN (the daemon's session has it now), and the
    // insurer's, asked directly.
    let read = kiosk.client().result("card.read", json!({}));
    let card_balc = read["balance"]["balc"]
        .as_str()
        .expect("the card's balance");
    let shown_card = page.text_of("#balance-card");
    assert!(shown_card.contains(card_balc), "{shown_card} ≠ {card_balc}");
    let (_, certno) = holder(&card);
    let insurer_balc = kiosk.rig.balc(&certno);
    let shown_insurer = page.text_of("#balance-insurer");
    assert!(
        shown_insurer.contains(&insurer_balc),
        "{shown_insurer} ≠ {insurer_balc}"
    );
    let statement = page.text_of("#statement");
    assert!(
        statement.contains("45.60") && statement.contains("已结算"),
        "{statement}"
    );
    assert!(
        statement.contains("医疗消费"),
        "the card's records: {statement}"
    );
    let url = page.browser.current_url().unwrap_or_else(|e| panic!("{e}"));
    assert!(!url.contains(PIN), "{url}");
    page.finish("kiosk_balance");
}

#[test]
fn the_pin_on_the_readers_own_pad_opens_the_balance() {
    let (kiosk, page, _) = xiaowang_at_the_kiosk("kiosk-pad");
    kiosk
        .readers
        .set_pin_pad(crate::common::kiosk::READER, Some("654321"));
    page.click("#menu-balance");
    page.wait_screen("pin");
    page.click("#pin-pad");
    page.wait_text("#pin-message", "还可尝试 2 次");
    kiosk
        .readers
        .set_pin_pad(crate::common::kiosk::READER, Some(PIN));
    page.click("#pin-pad");
    page.wait_screen("balance");
    let shown = page.text_of("#balance-card");
    assert!(shown.contains("102.80"), "the card's balance: {shown}");
    page.finish("kiosk_pin_pad");
}

#[test]
fn left_alone_the_page_goes_back_to_the_card_and_drops_the_digits() {
    let kiosk = KioskRig::start_with("kiosk-idle", |config| config.kiosk.idle_seconds = 1);
    kiosk.insert(XIAOWANG);
    kiosk.judged_card();
    let page = kiosk.open_page(LANDSCAPE.0, LANDSCAPE.1);
    page.wait_screen("card");
    page.click("#menu-balance");
    page.wait_screen("pin");
    type_pin(&page, "12");
    // Nobody touches the screen: after kiosk.idle_seconds, back to the card's first screen.
    page.wait_screen("card");
    page.click("#menu-balance");
    page.wait_screen("pin");
    assert_eq!(
        filled_dots(&page),
        0,
        "the digits typed before were dropped"
    );
    page.finish("kiosk_idle");
}

#[test]
fn a_lost_card_gets_the_counters_guidance_and_nothing_to_pay_or_register() {
    let kiosk = KioskRig::start("kiosk-lost");
    let version = kiosk
        .rig
        .sim
        .admin(json!({"action": "report_lost", "card_no": "C06123455"}))["version"]
        .as_u64()
        .expect("the event's version");
    let mut client = kiosk.client();
    wait_until(
        "the loss in the cache",
        crate::common::rpc::PATIENCE * 2,
        || {
            let status = client.result("sync.status", json!({}));
            status["versions"]["card_events"].as_u64().unwrap_or(0) >= version
        },
    );
    let page = kiosk.open_page(LANDSCAPE.0, LANDSCAPE.1);
    kiosk.insert(XIAOWANG);
    page.wait_screen("card");
    let verdict = page.wait_text("#verdict", "挂失");
    assert!(verdict.contains("挂失/补卡"), "{verdict}");
    assert_eq!(
        page.browser
            .find("#verdict")
            .and_then(|v| v.attribute("data-code"))
            .unwrap_or_else(|e| panic!("{e}")),
        Some("lost".to_owned())
    );
    wait_pay_disabled(&page, true);
    assert!(
        page.disabled("#menu-register"),
        "registering offered to a lost card"
    );
    page.finish("kiosk_lost");
}

#[test]
fn choosing_a_department_registers_the_visit() {
    let (kiosk, page, _) = xiaowang_at_the_kiosk("kiosk-register");
    page.click("#menu-register");
    page.wait_screen("register");
    page.click("#departments button[data-dept=A03]");
    page.wait_screen("registered");
    let number = page.text_of("#ipt-otp-no");
    assert!(!number.is_empty() && number != "—", "门诊号 {number:?}");
    assert!(page.text_of("#registration").contains("内科"));
    // One registration at the insurer, as a self-service terminal's (自助终端).
    assert_eq!(kiosk.rig.sim.opter_types("2201"), [json!("2")]);
    page.finish("kiosk_register");
}

#[test]
fn an_offered_bill_is_paid_once_however_often_pay_is_pressed() {
    let (kiosk, page, _) = xiaowang_at_the_kiosk("kiosk-pay");
    let bill_id = "kiosk-bill-0001";
    kiosk.offer_bill(bill_id, crate::common::kiosk::two_boxes());
    page.pay_bill_pressing_twice(bill_id, "card");
    assert_eq!(kiosk.rig.requests("2207"), 1, "the bill settled once");
    page.finish("kiosk_pay");
}

#[test]
fn pulling_the_card_mid_pin_goes_back_to_idle_and_drops_the_digits() {
    let (kiosk, page, _) = xiaowang_at_the_kiosk("kiosk-pull");
    page.click("#menu-balance");
    page.wait_screen("pin");
    type_pin(&page, &PIN[..3]);
    assert_eq!(filled_dots(&page), 3);
    kiosk.pull();
    page.wait_screen("idle");

    kiosk.insert(XIAOWANG);
    page.wait_screen("card");
    page.click("#menu-balance");
    page.wait_screen("pin");
    assert_eq!(
        filled_dots(&page),
        0,
        "the digits typed before the card went"
    );
    page.finish("kiosk_pull");
}

#[test]
fn with_the_insurer_down_the_cached_verdict_shows_its_age_and_paying_is_off() {
    let (mut kiosk, page, _) = xiaowang_at_the_kiosk("kiosk-down");
    wait_pay_disabled(&page, false);
    kiosk.rig.sim.stop();
    kiosk.pull();
    page.wait_screen("idle");
    kiosk.insert(XIAOWANG);
    page.wait_screen("card");
    let age = page.wait_text("#cache-age", "分钟前的信息");
    assert!(age.contains("医保中心暂时无法连接"), "{age}");
    wait_pay_disabled(&page, true);
    let reason = page.wait_text("#pay-disabled", "暂不能自助挂号和缴费");
    assert!(!reason.is_empty());
    assert!(page.disabled("#menu-register"));
    page.finish("kiosk_insurer_down");
}

#[test]
fn the_card_screen_fits_portrait_and_landscape_with_and_without_large_text() {
    let (_kiosk, page, _) = xiaowang_at_the_kiosk("kiosk-layout");
    let fits = |size: (u32, u32), what: &str| {
        page.browser
            .set_window_size(size.0, size.1)
            .unwrap_or_else(|e| panic!("{e}"));
        let overflow =
            page.script("return [document.documentElement.scrollWidth, window.innerWidth];");
        let (scroll, inner) = (
            overflow[0].as_u64().unwrap_or(u64::MAX),
            overflow[1].as_u64().unwrap_or(0),
        );
        assert!(
            scroll <= inner,
            "{what} {size:?}: scrollWidth {scroll} > innerWidth {inner}"
        );
    };
    fits(PORTRAIT, "portrait");
    fits(LANDSCAPE, "landscape");
    page.click("#large-text");
    assert_eq!(
        page.script("return document.body.classList.contains('large')"),
        true
    );
    fits(PORTRAIT, "portrait, 大字");
    fits(LANDSCAPE, "landscape, 大字");
    page.finish("kiosk_layout");
}
