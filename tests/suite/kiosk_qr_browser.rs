//! The 医保电子凭证 QR code at the self-service kiosk (docs/kiosk.md), in a real browser:
//! headless Chromium on the page the daemon serves, the real insurer simulator issuing codes
//! for 小王 (admin `ec_issue`), the daemon in this process ([`crate::common::kiosk`]). The
//! code reaches the page as a keyboard scanner types it (a burst of keys and Enter into the
//! page) or through the daemon's serial scanner (a real pty, `credential.scanned`); the page
//! presents it, registers a visit as a self-service terminal and pays an offered bill once.
//! A used code gets its message and the first screen again, a person typing is not taken
//! for a scanner, the card in the reader comes first, and the idle timeout drops the
//! credential. Each flow saves its last screen and fails on any console error.

use crate::common::kiosk::{self, KioskPage, KioskRig};
use crate::common::settle::XIAOWANG;
use medcard::reader::scanner::Terminator;
use medcard::serve::config::SerialScannerConfig;
use medcard::sim::scanner::VirtualScanner;
use serde_json::json;

/// 小王's ID number (fixtures/insurer/persons.toml).
const XIAOWANG_CERTNO: &str = "500103199103080319";
/// 小王's name as the insurer knows it.
const XIAOWANG_NAME: &str = "王小";
/// The kiosk's usual screen: landscape.
const LANDSCAPE: (u32, u32) = (1920, 1080);

/// A new code the simulator issues for 小王 (what his phone shows).
fn issue(kiosk: &KioskRig) -> String {
    kiosk
        .rig
        .sim
        .admin(json!({"action": "ec_issue", "certno": XIAOWANG_CERTNO}))["code"]
        .as_str()
        .expect("a code")
        .to_owned()
}

/// The page open on its first screen, which asks for the card or the code.
fn open_idle(kiosk: &KioskRig) -> KioskPage {
    let page = kiosk.open_page(LANDSCAPE.0, LANDSCAPE.1);
    page.wait_screen("idle");
    page.wait_text("section[data-for=idle] h1", "请插卡或出示医保电子凭证");
    page
}

/// Waits for the credential screen of 小王's code: his name masked, the e-voucher named,
/// the verdict, and nothing that needs the card; nothing of the code or his identity in
/// the page.
fn wait_credential_screen(page: &KioskPage, code: &str) {
    page.wait_screen("credential");
    assert_eq!(page.wait_text("#holder-name", "王"), "王*");
    page.wait_text("#holder-credential", "医保电子凭证");
    page.wait_text("#verdict", "可以使用医保");
    let certno = page.text_of("#holder-certno");
    assert!(
        certno.contains("5001") && certno.contains("0319"),
        "{certno}"
    );
    for card_only in ["#menu-balance", "#menu-eject"] {
        let shown = page.script(&format!(
            "return document.querySelector({card_only:?}).offsetParent !== null"
        ));
        assert_eq!(shown, false, "{card_only} offered without a card");
    }
    let all = page.all_text();
    for secret in [code, XIAOWANG_CERTNO, XIAOWANG_NAME] {
        assert!(!all.contains(secret), "{secret} is in the page");
    }
}

/// A new code for 小王 read by a keyboard scanner, once its credential screen shows; the
/// code.
fn scan_and_wait(kiosk: &KioskRig, page: &KioskPage) -> String {
    let code = issue(kiosk);
    page.scan_keys(&code);
    wait_credential_screen(page, &code);
    code
}

#[test]
fn a_code_from_a_keyboard_scanner_registers_a_visit_as_a_self_service_terminal() {
    let kiosk = KioskRig::start("kiosk-qr-register");
    let page = open_idle(&kiosk);
    let code = scan_and_wait(&kiosk, &page);

    page.click("#menu-register");
    page.wait_screen("register");
    page.click("#departments button[data-dept=A03]");
    page.wait_screen("registered");
    let number = page.text_of("#ipt-otp-no");
    assert!(page.text_of("#registration").contains("内科"));
    // Registered at the insurer once, as a self-service terminal, by the e-voucher (01).
    assert_eq!(kiosk.rig.sim.opter_types("2201"), [json!("2")]);
    let mdtrt_id = kiosk.rig.mdtrt_id_of(&number);
    let (cert_type, token) = kiosk.rig.visit_credential(&mdtrt_id);
    assert_eq!(cert_type, "01");
    assert_ne!(token, code, "the visit holds the token, not the code");
    // 完成 goes back to the credential's menu, 完成 there to the first screen.
    page.click("section[data-for=registered] [data-action=menu]");
    page.wait_screen("credential");
    page.click("#menu-done");
    page.wait_screen("idle");
    page.finish("kiosk_qr_register");
}

#[test]
fn an_offered_bill_is_paid_by_the_code_once_however_often_pay_is_pressed() {
    let kiosk = KioskRig::start("kiosk-qr-pay");
    let bill_id = "kiosk-qr-bill-0001";
    kiosk.offer_bill_to(XIAOWANG_CERTNO, bill_id, kiosk::two_boxes());
    let page = open_idle(&kiosk);
    scan_and_wait(&kiosk, &page);
    page.pay_bill_pressing_twice(bill_id, "credential");
    assert_eq!(kiosk.rig.requests("2207"), 1, "the bill settled once");
    page.finish("kiosk_qr_pay");
}

#[test]
fn a_used_code_gets_its_message_and_the_first_screen_again_and_registers_nothing() {
    let kiosk = KioskRig::start("kiosk-qr-used");
    let page = open_idle(&kiosk);
    let code = scan_and_wait(&kiosk, &page);
    page.click("#menu-done");
    page.wait_screen("idle");

    // The same code again: the insurer decoded it once already.
    page.scan_keys(&code);
    page.wait_screen("error");
    let message = page.wait_text("#message", "已使用");
    assert!(message.contains("刷新"), "{message}");
    // Left alone, the first screen comes back by itself.
    page.wait_screen("idle");
    assert_eq!(kiosk.rig.requests("2201"), 0, "nothing registered");
    assert_eq!(kiosk.rig.requests("1162"), 2);
    page.finish("kiosk_qr_used");
}

#[test]
fn a_person_typing_the_code_is_not_taken_for_a_scanner() {
    let kiosk = KioskRig::start("kiosk-qr-typed");
    let page = open_idle(&kiosk);
    page.type_slowly(&issue(&kiosk));
    // A code from the scanner now is the first the insurer is asked to decode.
    let scanned = issue(&kiosk);
    page.scan_keys(&scanned);
    wait_credential_screen(&page, &scanned);
    assert_eq!(
        kiosk.rig.requests("1162"),
        1,
        "the typed code was presented"
    );
    page.finish("kiosk_qr_typed");
}

#[test]
fn left_alone_the_page_drops_the_credential() {
    let kiosk = KioskRig::start_with("kiosk-qr-idle", |config| config.kiosk.idle_seconds = 2);
    let page = open_idle(&kiosk);
    page.scan_keys(&issue(&kiosk));
    page.wait_screen("credential");
    // Nobody touches the screen: after kiosk.idle_seconds, the first screen.
    page.wait_screen("idle");
    page.finish("kiosk_qr_idle");
}

#[test]
fn the_serial_scanner_presents_a_code_and_the_card_in_the_reader_comes_first() {
    let mut plugged = None;
    let kiosk = KioskRig::start_with("kiosk-qr-serial", |config| {
        let dir = config.socket.path.parent().expect("the rig's directory");
        let scanner = VirtualScanner::plug(&dir.join("scanner"), Terminator::Cr).expect("a pty");
        config.scanners.serial.push(SerialScannerConfig {
            name: "kiosk".to_owned(),
            device: scanner.device().to_owned(),
            baud: 9600,
            terminator: Terminator::Cr,
        });
        plugged = Some(scanner);
    });
    let scanner = plugged.expect("the scanner");
    let page = open_idle(&kiosk);

    // An ID number is not taken at the kiosk.
    scanner.scan(XIAOWANG_CERTNO).expect("the scanner sends");
    page.wait_text("#scan-notice", "医保电子凭证");
    assert_eq!(page.screen(), "idle");

    let code = issue(&kiosk);
    scanner.scan(&code).expect("the scanner sends");
    wait_credential_screen(&page, &code);

    // The card inserted: its holder's screen replaces the code's; a code scanned while the
    // card is in is not taken.
    kiosk.insert(XIAOWANG);
    page.wait_screen("card");
    page.wait_text("#verdict", "可以使用医保");
    let second = issue(&kiosk);
    scanner.scan(&second).expect("the scanner sends");
    page.wait_text("#scan-notice", "请先取走社保卡");
    assert_eq!(page.screen(), "card");
    assert_eq!(
        kiosk.rig.requests("1162"),
        1,
        "a code presented over the card"
    );
    page.finish("kiosk_qr_serial");
}
