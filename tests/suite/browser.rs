//! The real-browser harness (`medcard::sim::browser`) against headless Chromium and
//! chromedriver (`make deps`: chromium, chromium-driver): tiny pages served from a loopback
//! listener in the test, a click that changes a text, a screenshot, the page's console errors.
//! One Chromium runs at a time on the machine; the tests wait for the browser lock.

use crate::common::test_output_dir;
use medcard::sim::browser::{Browser, BrowserError, BrowserLock, BrowserOptions};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// A button that shows `#shown` a moment later, and a moment after that writes the typed name
/// into `#greeting`;
/// the console gets a log line and a warning, which are not errors.
const BUTTON_PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>button</title></head>
<body>
<input id="name" placeholder="your name"><button id="go">Go</button>
<p id="greeting">waiting</p><p id="shown" hidden>shown</p>
<script>
console.log("a log line is not an error");
console.warn("a warning is not an error");
document.getElementById("go").addEventListener("click", () => {
  setTimeout(() => { document.getElementById("shown").hidden = false; }, 100);
  setTimeout(() => {
    document.getElementById("greeting").textContent =
      "hello " + document.getElementById("name").value;
  }, 200);
});
</script>
</body></html>"#;

/// A page that calls `console.error` and throws.
const NOISY_PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>noisy</title></head>
<body><p id="greeting">noisy</p>
<script>console.error("boom from the page");</script>
<script>throw new Error("thrown by the page");</script>
</body></html>"#;

/// The pages above over HTTP on a loopback port, one thread per connection.
struct Pages {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Pages {
    fn serve() -> Pages {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let addr = listener.local_addr().expect("its address");
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let acceptor = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    std::thread::spawn(move || answer(stream));
                }
            }
        });
        Pages {
            addr,
            stop,
            acceptor: Some(acceptor),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// One request: `/button`, `/noisy`, or 404.
fn answer(stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(&stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut header = String::new();
    while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
        header.clear();
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("");
    let (status, body) = match path {
        "/button" => ("200 OK", BUTTON_PAGE),
        "/noisy" => ("200 OK", NOISY_PAGE),
        _ => ("404 Not Found", "not here"),
    };
    let _ = write!(
        &stream,
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn browser(width: u32, height: u32) -> Browser {
    Browser::start(BrowserOptions { width, height }).unwrap_or_else(|e| panic!("{e}"))
}

/// The pages served, and an 800×600 Chromium showing `path`.
fn open(path: &str) -> (Pages, Browser) {
    let pages = Pages::serve();
    let browser = browser(800, 600);
    browser.goto(&pages.url(path)).unwrap();
    (pages, browser)
}

/// The last screen of `test`, to look at afterwards: `target/test-output/TEST/last.png`.
fn save_last_screen(browser: &Browser, test: &str) {
    let path = test_output_dir(test).join("last.png");
    browser.screenshot_png(&path).unwrap();
}

#[test]
fn a_click_changes_the_text_in_chromium() {
    let (pages, browser) = open("/button");
    assert_eq!(browser.current_url().unwrap(), pages.url("/button"));
    assert_eq!(
        browser.find("#greeting").unwrap().text().unwrap(),
        "waiting"
    );
    assert!(!browser.find("#shown").unwrap().is_displayed().unwrap());
    let name = browser.find("#name").unwrap();
    assert_eq!(
        name.attribute("placeholder").unwrap().as_deref(),
        Some("your name")
    );
    assert_eq!(name.attribute("data-none").unwrap(), None);

    name.send_keys("kiosk").unwrap();
    browser.find("#go").unwrap().click().unwrap();
    let shown = browser.wait_for("#shown", WAIT).unwrap();
    assert_eq!(shown.text().unwrap(), "shown");
    let greeting = browser
        .wait_for_text("#greeting", "hello", WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(greeting.text().unwrap(), "hello kiosk");
    let title = browser.execute("return document.title + arguments[0]", &["!".into()]);
    assert_eq!(title.unwrap(), "button!");

    save_last_screen(&browser, "browser_click");
}

#[test]
fn the_screenshot_is_a_png_of_the_window() {
    let pages = Pages::serve();
    let browser = browser(640, 480);
    browser.goto(&pages.url("/button")).unwrap();
    browser.set_window_size(900, 700).unwrap();
    let width = browser.execute("return window.innerWidth", &[]).unwrap();
    let height = browser.execute("return window.innerHeight", &[]).unwrap();
    assert_eq!(width, 900, "the window was resized");

    let path = test_output_dir("browser_screenshot").join("last.png");
    browser.screenshot_png(&path).unwrap();
    let png = std::fs::read(&path).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG signature");
    assert_eq!(&png[12..16], b"IHDR");
    let dimension = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    assert_eq!(
        (dimension(16), dimension(20)),
        (
            width.as_u64().unwrap() as u32,
            height.as_u64().unwrap() as u32
        ),
        "the screenshot is the page's viewport"
    );
}

#[test]
fn console_errors_reports_console_error_and_uncaught_exceptions() {
    let (pages, browser) = open("/noisy");
    let errors = browser.console_errors().unwrap();
    let reported = |needle: &str| errors.iter().any(|e| e.contains(needle));
    assert!(reported("boom from the page"), "{errors:?}");
    assert!(reported("thrown by the page"), "{errors:?}");

    // Kept for the whole session: a later clean page does not hide them.
    browser.goto(&pages.url("/button")).unwrap();
    assert_eq!(browser.console_errors().unwrap(), errors);
    save_last_screen(&browser, "browser_console_errors");
}

#[test]
fn a_clean_page_has_no_console_errors() {
    let (_pages, browser) = open("/button");
    browser.find("#go").unwrap().click().unwrap();
    browser.wait_for_text("#greeting", "hello", WAIT).unwrap();
    let errors = browser.console_errors().unwrap();
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn a_missing_element_is_chromedrivers_refusal_and_waiting_for_it_times_out() {
    let (_pages, browser) = open("/button");
    match browser.find("#nowhere") {
        Err(BrowserError::Refused { error, what, .. }) => {
            assert_eq!(error, "no such element");
            assert!(what.contains("#nowhere"), "{what}");
        }
        Err(other) => panic!("another error: {other}"),
        Ok(_) => panic!("found #nowhere"),
    }
    let waited = browser.wait_for_text("#greeting", "never written", Duration::from_millis(300));
    match waited {
        Err(BrowserError::Timeout { last, .. }) => assert!(last.contains("waiting"), "{last}"),
        Err(other) => panic!("another error: {other}"),
        Ok(_) => panic!("found a text never written"),
    }
}

#[test]
fn a_running_browser_holds_the_machine_wide_lock() {
    let browser = browser(800, 600);
    let lock = std::fs::File::open(BrowserLock::path()).unwrap();
    assert!(
        matches!(lock.try_lock(), Err(std::fs::TryLockError::WouldBlock)),
        "another Chromium could start beside this one"
    );
    drop(browser);
}
