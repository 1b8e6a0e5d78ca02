//! A headless Chromium (Debian's `chromium` and `chromium-driver`, which
//! `scripts/test.sh` installs) driven over WebDriver, and the checks every console
//! page gets in it: both widths, nothing fetched from another host, a screenshot.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::operator_harness::repo;

/// The widths every page must work at: a laptop and a phone.
pub const WIDTHS: [(u32, u32); 2] = [(1280, 900), (390, 844)];

/// chromedriver on a free loopback port, killed when dropped.
pub struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    pub fn start() -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "chromedriver could not start ({error}): install Debian's chromium and \
                     chromium-driver (scripts/test.sh does)"
                )
            });
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    pub async fn browser(&self) -> Client {
        let capabilities: serde_json::Map<String, Value> = serde_json::from_value(json!({
            "goog:chromeOptions": {
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,900"]
            }
        }))
        .unwrap();
        let started = Instant::now();
        loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            let connected = ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&self.url)
                .await;
            match connected {
                Ok(client) => return client,
                Err(error) if started.elapsed() < Duration::from_secs(20) => {
                    let _ = error;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(error) => panic!("no browser session: {error}"),
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn screenshots() -> PathBuf {
    let dir = repo().join("target/console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Checks the page at both widths (no sideways scrolling of the page itself, nothing
/// fetched from another host) and keeps a screenshot of each as `{name}-{width}.png`.
pub async fn check_page(browser: &Client, console: &str, name: &str) {
    for (width, height) in WIDTHS {
        browser.set_window_size(width, height).await.unwrap();
        let layout = browser
            .execute(
                "return [document.documentElement.scrollWidth, window.innerWidth];",
                vec![],
            )
            .await
            .unwrap();
        let (scroll, inner) = (layout[0].as_u64().unwrap(), layout[1].as_u64().unwrap());
        assert!(
            scroll <= inner,
            "{name} at {width} px scrolls sideways: {scroll} > {inner}"
        );
        let png = browser.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{name}: a PNG");
        std::fs::write(screenshots().join(format!("{name}-{width}.png")), png).unwrap();
    }
    browser.set_window_size(1280, 900).await.unwrap();
    let fetched = browser
        .execute(
            "return performance.getEntriesByType('resource').map(e => e.name).concat([location.href]);",
            vec![],
        )
        .await
        .unwrap();
    for url in fetched.as_array().unwrap() {
        let url = url.as_str().unwrap();
        assert!(url.starts_with(console), "{name} fetched {url}");
    }
}

/// The visible text of the first element `css` selects, read in one step in the page:
/// a live page may put a fresh copy of its content in place at any moment, which
/// would leave an element found in one request and read in the next behind.
pub async fn text_of(browser: &Client, css: &str) -> String {
    texts_of(browser, css)
        .await
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no {css}"))
}

/// The visible text of every element `css` selects, read in one step.
pub async fn texts_of(browser: &Client, css: &str) -> Vec<String> {
    let texts = browser
        .execute(
            "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.innerText ?? e.textContent);",
            vec![json!(css)],
        )
        .await
        .unwrap();
    serde_json::from_value(texts).unwrap()
}

/// Clicks what `locator` finds, finding it again if the page put a fresh copy of its
/// content in place in between.
pub async fn click(browser: &Client, locator: Locator<'_>) {
    let mut last = None;
    for _ in 0..5 {
        let clicked = match browser.find(locator).await {
            Ok(element) => element.click().await,
            Err(error) => Err(error),
        };
        match clicked {
            Ok(()) => return,
            Err(error) => last = Some(error),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("could not click {locator:?}: {last:?}");
}

/// Writes `message` in the page's playground, sets its `fields` (`(name, value)` of
/// its inputs) and sends it.
pub async fn ask_in_playground(browser: &Client, message: &str, fields: &[(&str, &str)]) {
    browser
        .find(Locator::Id("message"))
        .await
        .unwrap()
        .send_keys(message)
        .await
        .unwrap();
    for (name, value) in fields {
        let field = browser
            .find(Locator::Css(&format!("input[name='{name}']")))
            .await
            .unwrap();
        field.clear().await.unwrap();
        field.send_keys(value).await.unwrap();
    }
    click(browser, Locator::Css("#playground button")).await;
}

/// Waits until the playground's streamed `#answer` reads `expected` (both trimmed),
/// `limit` at most.
pub async fn wait_for_answer(browser: &Client, expected: &str, limit: Duration) {
    let started = Instant::now();
    loop {
        let answer = text_of(browser, "#answer").await;
        if answer.trim() == expected.trim() {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "streamed {answer:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
