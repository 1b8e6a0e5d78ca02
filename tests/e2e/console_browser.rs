//! The console in a real browser: headless Chromium from Debian's packages, driven
//! through chromedriver (WebDriver), against the operator's console over the fake API
//! server and moto, with a quick-start job trained and its final checkpoint deployed.
//! Alice signs in with her token; the list shows the job; its page's chart has a
//! point for every training loss and the checkpoint columns show the answers; the
//! playground streams the deployment's own answer; Suspend changes the spec; Bob is
//! refused the page and the action. Every page is usable at 1280 and 390 px wide (no
//! sideways scrolling of the page), its controls are reached with Tab, it loads
//! nothing from another host (the browser's own list of what it fetched), and is
//! kept as a screenshot at both widths in `target/console-screenshots/`.
//!
//! Needs `chromedriver` and `chromium` on PATH (`scripts/test.sh` installs Debian's
//! `chromium` and `chromium-driver`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anneal_crds::FineTuneJob;
use anneal_crds::storage::Storage;
use anneal_e2e::console_support::{answer_reviews, deploy_story, greedy_answer, train_story};
use anneal_e2e::operator_harness::{NAMESPACE, World, quickstart_lines, repo};
use anneal_operator::console::viewer::{AuthSettings, ConsoleAuth};
use fantoccini::{Client, ClientBuilder, Locator};
use kube::Api;
use serde_json::{Value, json};

const PROMPT: &str = "Can I take a bike on the tram?";
/// The widths every page must work at: a laptop and a phone.
const WIDTHS: [(u32, u32); 2] = [(1280, 900), (390, 844)];

/// chromedriver on a free loopback port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Driver {
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

    async fn browser(&self) -> Client {
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

fn screenshots() -> PathBuf {
    let dir = repo().join("target/console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Checks the page at both widths (no sideways scrolling of the page itself, nothing
/// fetched from another host) and keeps a screenshot of each as `{name}-{width}.png`.
async fn check_page(browser: &Client, console: &str, name: &str) {
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
async fn text_of(browser: &Client, css: &str) -> String {
    texts_of(browser, css)
        .await
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no {css}"))
}

/// The visible text of every element `css` selects, read in one step.
async fn texts_of(browser: &Client, css: &str) -> Vec<String> {
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
async fn click(browser: &Client, locator: Locator<'_>) {
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

async fn sign_in(browser: &Client, console: &str, token: &str) {
    browser.goto(&format!("{console}/")).await.unwrap();
    assert_eq!(
        browser.current_url().await.unwrap().path(),
        "/login",
        "sent to sign in"
    );
    let field = browser.find(Locator::Id("token")).await.unwrap();
    field.send_keys(token).await.unwrap();
    let form = browser
        .form(Locator::Css("form[action='/login']"))
        .await
        .unwrap();
    form.submit().await.unwrap();
    // Signed in, the list greets the viewer with a way out.
    browser
        .wait()
        .for_element(Locator::Css("form[action='/logout']"))
        .await
        .expect("signed in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_console_works_in_a_browser() {
    let world = World::start(&quickstart_lines(24)).await;
    answer_reviews(&world);
    world.kubelet.run_deployments();
    let operator = world
        .start_operator_with_console(AuthSettings {
            mode: ConsoleAuth::Token,
            ..AuthSettings::default()
        })
        .await;
    // As serving.rs trains it: the house style ("Good question! ...") takes, so the
    // fine-tuned model answers otherwise than its base.
    let status = train_story(&world, 2, Some("0.01"), PROMPT).await;
    let model = deploy_story(&world).await;
    let console = operator.console_url.clone();
    let driver = Driver::start();
    let browser = driver.browser().await;

    // Alice signs in and sees the job.
    browser.goto(&format!("{console}/login")).await.unwrap();
    check_page(&browser, &console, "sign-in").await;
    sign_in(&browser, &console, "alice-token").await;
    let link = format!("a[href='/jobs/{NAMESPACE}/story']");
    assert_eq!(
        texts_of(&browser, &link).await,
        [format!("{NAMESPACE}/story")]
    );
    assert!(text_of(&browser, "table").await.contains("Succeeded"));
    check_page(&browser, &console, "jobs").await;

    // The job's page: a chart point for each training loss, each checkpoint's answer.
    click(&browser, Locator::Css(&link)).await;
    let run = {
        let uid = world.job("story").await.metadata.uid.unwrap();
        format!("s3://anneal-e2e/runs/{NAMESPACE}/story/{uid}")
    };
    let settings = world.storage_settings();
    let events = tokio::task::spawn_blocking(move || {
        let storage = Storage::open_with(&run, settings).unwrap();
        storage.get("events.jsonl").unwrap().unwrap()
    })
    .await
    .unwrap();
    let history = anneal_console::runs::fold_events(&String::from_utf8(events).unwrap());
    let points = texts_of(&browser, "circle.train-point").await;
    assert_eq!(points.len(), history.train_loss.len());
    let shown = texts_of(&browser, "td.answer").await;
    for checkpoint in &status.checkpoints {
        let sample = checkpoint.samples[0].trim();
        assert!(
            shown.iter().any(|s| s.trim() == sample),
            "{}'s answer {sample:?} not in {shown:?}",
            checkpoint.name
        );
    }
    check_page(&browser, &console, "job").await;

    // Suspend: the spec changes, and the page offers Resume.
    click(&browser, Locator::XPath("//button[text()='Suspend']")).await;
    browser
        .wait()
        .for_element(Locator::XPath("//button[text()='Resume']"))
        .await
        .unwrap();
    assert!(world.job("story").await.spec.suspend, "suspended");
    click(&browser, Locator::XPath("//button[text()='Resume']")).await;
    browser
        .wait()
        .for_element(Locator::XPath("//button[text()='Suspend']"))
        .await
        .unwrap();
    assert!(!world.job("story").await.spec.suspend, "resumed");
    // A change made elsewhere shows on the open page, without navigating.
    let jobs: Api<FineTuneJob> = Api::namespaced(world.client(), NAMESPACE);
    let suspend = json!({"spec": {"suspend": true}});
    jobs.patch(
        "story",
        &Default::default(),
        &kube::api::Patch::Merge(&suspend),
    )
    .await
    .unwrap();
    browser
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::XPath("//button[text()='Resume']"))
        .await
        .expect("the page follows the job");
    let resume = json!({"spec": {"suspend": false}});
    jobs.patch(
        "story",
        &Default::default(),
        &kube::api::Patch::Merge(&resume),
    )
    .await
    .unwrap();
    browser
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::XPath("//button[text()='Suspend']"))
        .await
        .unwrap();

    // The playground streams what the deployment answers.
    let server = world.kubelet.deployment_url("chat").unwrap();
    let question = json!([{"role": "user", "content": PROMPT}]);
    let expected = greedy_answer(&server, &model, question.clone(), 16).await;
    let base = greedy_answer(&server, "anneal-tiny", question, 16).await;
    assert_ne!(base, expected, "the adapter changes the answer");
    browser
        .goto(&format!("{console}/deployments/{NAMESPACE}/chat"))
        .await
        .unwrap();
    check_page(&browser, &console, "deployment").await;
    // Every control of the playground is reached with Tab, in order.
    browser
        .execute("document.getElementById('model').focus();", vec![])
        .await
        .unwrap();
    let mut reached = Vec::new();
    for _ in 0..6 {
        let active = browser.active_element().await.unwrap();
        reached.push(active.attr("name").await.unwrap().unwrap_or_default());
        active.send_keys("\u{e004}").await.unwrap();
    }
    let last = browser.active_element().await.unwrap();
    reached.push(last.tag_name().await.unwrap());
    assert_eq!(
        reached,
        [
            "model",
            "system",
            "message",
            "temperature",
            "top_p",
            "max_tokens",
            "button"
        ]
    );
    let chosen = browser.find(Locator::Id("model")).await.unwrap();
    assert_eq!(
        chosen.prop("value").await.unwrap().as_deref(),
        Some(model.as_str()),
        "the fine-tuned model is chosen first"
    );
    browser
        .find(Locator::Id("message"))
        .await
        .unwrap()
        .send_keys(PROMPT)
        .await
        .unwrap();
    for (name, value) in [("temperature", "0"), ("max_tokens", "16")] {
        let field = browser
            .find(Locator::Css(&format!("input[name='{name}']")))
            .await
            .unwrap();
        field.clear().await.unwrap();
        field.send_keys(value).await.unwrap();
    }
    click(&browser, Locator::Css("#playground button")).await;
    let started = Instant::now();
    loop {
        let answer = text_of(&browser, "#answer").await;
        if answer == expected.trim() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "streamed {answer:?}, the deployment says {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        browser.current_url().await.unwrap().path(),
        format!("/deployments/{NAMESPACE}/chat"),
        "streamed in the page, not a form round trip"
    );
    let curl = text_of(&browser, "#curl").await;
    assert!(
        curl.contains("\"max_tokens\": 16"),
        "the snippet follows: {curl}"
    );
    check_page(&browser, &console, "playground").await;

    // Bob is refused the job's page, and its actions.
    browser.goto(&format!("{console}/")).await.unwrap();
    let form = browser
        .form(Locator::Css("form[action='/logout']"))
        .await
        .unwrap();
    form.submit().await.unwrap();
    sign_in(&browser, &console, "bob-token").await;
    assert!(
        text_of(&browser, "main")
            .await
            .contains("0 of 0 jobs shown")
    );
    browser
        .goto(&format!("{console}/jobs/{NAMESPACE}/story"))
        .await
        .unwrap();
    assert!(
        text_of(&browser, "main")
            .await
            .contains("bob may not get the FineTuneJob team-a/story")
    );
    let refused = browser
        .execute_async(
            "const done = arguments[0];
             fetch('/jobs/team-a/story/suspend', {method: 'POST',
               headers: {'Content-Type': 'application/x-www-form-urlencoded'}, body: 'suspend=true'})
               .then(r => done(r.status));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(refused, json!(403));
    check_page(&browser, &console, "refused").await;
    assert!(
        !world.job("story").await.spec.suspend,
        "bob changed nothing"
    );
    let _: FineTuneJob = world.job("story").await;

    browser.close().await.unwrap();
    operator.stop().await;
}
