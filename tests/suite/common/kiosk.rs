//! The self-service kiosk from the test side: a [`KioskRig`] is the real daemon in this
//! process (`medcard::serve::Daemon`, so the test can insert and pull cards in its virtual
//! reader at any moment) with its web endpoint and `[kiosk]` section, pointed at a real
//! `medcard insurer-sim` child and a real cache file ([`super::settle::Rig`]); and
//! [`KioskPage`], the kiosk page in headless Chromium (`medcard::sim::browser`) opened as a
//! kiosk's browser opens it, with what the tests ask of it (the screen shown, the page's
//! whole text, the last screen saved, no console error).

use super::rpc::{Client, Rpc};
use super::settle::{self, Rig};
use super::web::{self, Web};
use medcard::reader::ReaderBackend;
use medcard::serve::config::Config;
use medcard::serve::{Daemon, RunningDaemon};
use medcard::sim::browser::{Browser, BrowserOptions};
use medcard::sim::card::{Chip, SharedVirtualReaders};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

/// The kiosk's card reader.
pub const READER: &str = "medcard virtual reader 0";
/// How long a test waits for the page to show something.
pub const WAIT: Duration = Duration::from_secs(10);
/// WebDriver's Enter key.
const ENTER: &str = "\u{E007}";
/// A person's pace on a keyboard: well beyond the page's gap between a scanner's keys.
const TYPING_GAP: Duration = Duration::from_millis(300);

/// A daemon serving the kiosk page on a virtual reader the test controls. Dropped in order:
/// the daemon (stopped on its runtime), the runtime, then the simulator and the directory.
pub struct KioskRig {
    pub readers: SharedVirtualReaders,
    pub web: Web,
    pub socket: PathBuf,
    daemon: Option<RunningDaemon>,
    runtime: tokio::runtime::Runtime,
    pub rig: Rig,
}

impl KioskRig {
    /// The simulator, then the daemon with an empty reader; returns once the first sync has
    /// brought the catalogue.
    pub fn start(tag: &str) -> KioskRig {
        KioskRig::start_with(tag, |_| {})
    }

    /// [`KioskRig::start`] with the configuration changed by `adjust` first.
    pub fn start_with(tag: &str, adjust: impl FnOnce(&mut Config)) -> KioskRig {
        let rig = Rig::start(tag, "");
        let dir = rig.config.parent().expect("the rig's directory").to_owned();
        let mut text = std::fs::read_to_string(&rig.config).expect("the config");
        text.push_str(&web::config_lines(&dir));
        std::fs::write(&rig.config, text).expect("the config");
        let mut config = Config::load(&rig.config).expect("a valid config").config;
        let socket = dir.join("medcard.sock");
        config.socket.path = socket.clone();
        adjust(&mut config);

        let readers = SharedVirtualReaders::new();
        readers.add_reader(READER);
        let backends = readers.clone();
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        let backends = move || Box::new(backends.clone()) as Box<dyn ReaderBackend + Send>;
        let started = runtime.block_on(Daemon::start(config, backends, None));
        let daemon = started.unwrap_or_else(|e| panic!("the daemon did not start: {e}"));
        let addr = daemon.web_addr().expect("the web endpoint listens");
        let daemon = {
            let _inside = runtime.enter();
            daemon.spawn()
        };
        let kiosk = KioskRig {
            readers,
            web: Web::in_dir(addr, &dir),
            socket,
            daemon: Some(daemon),
            runtime,
            rig,
        };
        settle::wait_catalogue(&mut kiosk.client());
        kiosk
    }

    /// A connection to the daemon's Unix socket.
    pub fn client(&self) -> Client {
        Client::connect(&self.socket)
    }

    /// Inserts the fixture card `name` into the kiosk's reader.
    pub fn insert(&self, name: &str) {
        let chip = Chip::load(&super::fixture(name)).expect("a fixture card");
        self.readers.insert(READER, chip);
    }

    /// Pulls the card out of the kiosk's reader.
    pub fn pull(&self) {
        assert!(self.readers.remove(READER).is_some(), "no card to pull");
    }

    /// Waits until the card in the reader has been judged; its `card.read`.
    pub fn judged_card(&self) -> Value {
        settle::wait_card(&mut self.client())
    }

    /// The kiosk page in a `width`×`height` Chromium, opened as a kiosk's browser opens it
    /// (the token in the fragment), once it is connected (`kiosk.config` applied).
    pub fn open_page(&self, width: u32, height: u32) -> KioskPage {
        let browser =
            Browser::start(BrowserOptions { width, height }).unwrap_or_else(|e| panic!("{e}"));
        let url = format!(
            "http://{}/kiosk#token={}",
            self.web.addr, self.web.kiosk_token
        );
        browser.goto(&url).unwrap_or_else(|e| panic!("{e}"));
        let page = KioskPage { browser };
        page.wait_text("#hospital-name", "测试医院");
        page
    }

    /// The HIS registers a visit for the card in the reader (over the WebSocket, with the
    /// client token) and puts `items` up as bill `bill_id`; the visit's `mdtrt_id`.
    pub fn offer_bill(&self, bill_id: &str, items: Value) -> String {
        let mut his = self.web.his();
        let card = his.result("card.read", json!({}));
        let mdtrt_id = settle::register(&mut his);
        offer(
            &mut his,
            bill_id,
            &card["holder"]["certno"],
            &mdtrt_id,
            items,
        );
        mdtrt_id
    }

    /// The HIS registers a visit for the person with ID number `certno` (no card: at the
    /// counter, by the number) and puts `items` up as bill `bill_id` for them; the visit's
    /// `mdtrt_id`.
    pub fn offer_bill_to(&self, certno: &str, bill_id: &str, items: Value) -> String {
        let mut his = self.web.his();
        let visit = his.result(
            "visit.register",
            json!({"certno": certno, "dept_code": "A03", "dept_name": "内科",
                   "dr_name": "张医生"}),
        );
        let mdtrt_id = visit["mdtrt_id"].as_str().expect("mdtrt_id").to_owned();
        offer(&mut his, bill_id, &json!(certno), &mdtrt_id, items);
        mdtrt_id
    }
}

/// A bill of two boxes of a 甲类 drug, 30.00 in all.
pub fn two_boxes() -> Value {
    json!([{"code": settle::CLASS_A, "name": "阿莫西林胶囊", "qty": "2", "price": "15.00"}])
}

/// `bill.offer` of `items` as bill `bill_id` of visit `mdtrt_id`, to the holder of `certno`.
fn offer(his: &mut Client, bill_id: &str, certno: &Value, mdtrt_id: &str, items: Value) {
    his.result(
        "bill.offer",
        json!({"bill_id": bill_id, "certno": certno, "mdtrt_id": mdtrt_id,
               "dept_name": "内科", "items": items}),
    );
}

impl Drop for KioskRig {
    fn drop(&mut self) {
        if let Some(daemon) = self.daemon.take() {
            self.runtime.block_on(daemon.stop());
        }
    }
}

/// The kiosk page in Chromium.
pub struct KioskPage {
    pub browser: Browser,
}

impl KioskPage {
    /// Waits until the page shows `screen` (`body[data-screen]`).
    pub fn wait_screen(&self, screen: &str) {
        let css = format!("body[data-screen={screen}]");
        if let Err(e) = self.browser.wait_for(&css, WAIT) {
            panic!("{e}; the page shows {:?}: {}", self.screen(), self.text());
        }
    }

    /// The screen shown now.
    pub fn screen(&self) -> String {
        self.script("return document.body.dataset.screen || ''")
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits until `css` (present and displayed) contains `needle`; its text.
    pub fn wait_text(&self, css: &str, needle: &str) -> String {
        let element = self
            .browser
            .wait_for_text(css, needle, WAIT)
            .unwrap_or_else(|e| panic!("{e}; the page shows {:?}", self.screen()));
        element.text().unwrap_or_else(|e| panic!("{e}"))
    }

    /// The text of `css`, now.
    pub fn text_of(&self, css: &str) -> String {
        self.browser
            .find(css)
            .and_then(|element| element.text())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Clicks `css` once it is displayed.
    pub fn click(&self, css: &str) {
        let element = self
            .browser
            .wait_for(css, WAIT)
            .unwrap_or_else(|e| panic!("{e}; the page shows {:?}", self.screen()));
        element
            .click()
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// Whether the button `css` is disabled.
    pub fn disabled(&self, css: &str) -> bool {
        self.script(&format!("return document.querySelector({css:?}).disabled")) == json!(true)
    }

    /// Everything the page holds as text, hidden screens and attributes included (its HTML).
    pub fn all_text(&self) -> String {
        self.script("return document.documentElement.outerHTML")
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The text shown (`innerText`), for failure messages.
    pub fn text(&self) -> String {
        self.script("return document.body.innerText")
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// From the holder's menu (`menu`: `card` or `credential`) pays the offered bill
    /// `bill_id` of 30.00, 确认支付 pressed twice in the same instant (two commits of the same
    /// bill); then, back at the menu, the bill is paid and opening it shows its receipt again.
    pub fn pay_bill_pressing_twice(&self, bill_id: &str, menu: &str) {
        self.click("#menu-pay");
        self.wait_screen("bills");
        let bill = format!("#bills [data-bill-id={bill_id:?}]");
        self.wait_text(&format!("{bill}[data-state=offered]"), "30.00");
        self.click(&bill);
        self.wait_screen("preview");
        self.wait_text("#amount-medfee", "30.00");
        self.script(
            "const pay = document.getElementById('pay-confirm'); pay.click(); pay.click(); \
             return null;",
        );
        self.wait_screen("receipt");
        self.wait_text("#receipt", "门诊医保结算凭证");

        self.click("section[data-for=receipt] [data-action=menu]");
        self.wait_screen(menu);
        self.click("#menu-pay");
        self.wait_screen("bills");
        self.click(&format!("{bill}[data-state=settled]"));
        self.wait_screen("receipt");
        self.wait_text("#receipt", "门诊医保结算凭证");
    }

    /// A keyboard scanner reads `code`: its characters typed into the page at once (no field
    /// focused), then Enter.
    pub fn scan_keys(&self, code: &str) {
        self.body()
            .send_keys(&format!("{code}{ENTER}"))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// A person types `text` and Enter on a keyboard, one key every [`TYPING_GAP`].
    pub fn type_slowly(&self, text: &str) {
        let body = self.body();
        for key in text.chars().map(String::from).chain([ENTER.to_owned()]) {
            std::thread::sleep(TYPING_GAP);
            body.send_keys(&key).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    fn body(&self) -> medcard::sim::browser::Element<'_> {
        self.browser.find("body").unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs `script` in the page; its value.
    pub fn script(&self, script: &str) -> Value {
        self.browser
            .execute(script, &[])
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Saves the last screen under `target/test-output/TEST/last.png` and fails the test on
    /// any console error the page logged.
    pub fn finish(&self, test: &str) {
        let path = super::test_output_dir(test).join("last.png");
        self.browser
            .screenshot_png(&path)
            .unwrap_or_else(|e| panic!("{e}"));
        let errors = self
            .browser
            .console_errors()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(errors.is_empty(), "the page's console errors: {errors:?}");
    }
}
