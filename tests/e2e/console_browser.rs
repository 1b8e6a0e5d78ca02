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

use std::time::{Duration, Instant};

use anneal_crds::FineTuneJob;
use anneal_crds::storage::Storage;
use anneal_e2e::browser::{
    Driver, ask_in_playground, check_page, click, text_of, texts_of, wait_for_answer,
};
use anneal_e2e::console_support::{answer_reviews, deploy_story, greedy_answer, train_story};
use anneal_e2e::operator_harness::{NAMESPACE, World, quickstart_lines};
use anneal_operator::console::viewer::{AuthSettings, ConsoleAuth};
use fantoccini::{Client, Locator};
use kube::Api;
use serde_json::json;

const PROMPT: &str = "Can I take a bike on the tram?";

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
    ask_in_playground(
        &browser,
        PROMPT,
        &[("temperature", "0"), ("max_tokens", "16")],
    )
    .await;
    wait_for_answer(&browser, &expected, Duration::from_secs(60)).await;
    assert_eq!(
        browser.current_url().await.unwrap().path(),
        format!("/deployments/{NAMESPACE}/chat"),
        "streamed in the page, not a form round trip"
    );
    // The snippets follow once the answer is over.
    let started = Instant::now();
    while !text_of(&browser, "#curl")
        .await
        .contains("\"max_tokens\": 16")
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the snippet follows: {}",
            text_of(&browser, "#curl").await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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
