//! The operator's console over a job that trained: the jobs list and its filters, and
//! the job's page with the loss history its run copied to storage, each checkpoint's
//! sample answer, the log the report endpoint holds, its Events and its manifest.
//! Nothing on a page comes from another host, and nothing outside the job's pictures
//! is served from storage. With sign-in, each viewer sees only the jobs the API
//! server's reviews let them read.

use std::time::Duration;

use anneal_crds::FineTuneJob;
use anneal_crds::finetunejob::JobPhase;
use anneal_crds::storage::Storage;
use anneal_e2e::operator_harness::{NAMESPACE, World, job_yaml, quickstart_lines};
use anneal_fake_apiserver::ResourceType;
use anneal_operator::console::viewer::{AuthSettings, ConsoleAuth};
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

const TRAINING: Duration = Duration::from_secs(240);
const PROMPT: &str = "Tell me about <kites> & wind.";

async fn get(url: String) -> (u16, String) {
    let response = reqwest::get(url).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// `text` as the pages write it (maud escapes `&`, `<`, `>` and `"`).
fn escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_console_shows_a_trained_job_its_history_answers_and_log() {
    let world = World::start(&quickstart_lines(24)).await;
    let operator = world.start_operator(None).await;
    let yaml = job_yaml("story", 1, 2, "").replace(
        "everySteps: 2}",
        &format!(
            "everySteps: 2, samplePrompts: [{{messages: [{{role: user, content: \"{PROMPT}\"}}]}}]}}"
        ),
    );
    assert!(yaml.contains("samplePrompts"));
    world.apply(&yaml).await;
    let status = world
        .wait_for("story", TRAINING, "Succeeded", |s| {
            s.phase == Some(JobPhase::Succeeded) && s.result.is_some()
        })
        .await
        .status
        .unwrap();
    let console = &operator.console_url;

    // The list, and its filters.
    let (code, list) = get(format!("{console}/")).await;
    assert_eq!(code, 200);
    assert!(
        list.contains(&format!(r#"href="/jobs/{NAMESPACE}/story""#)),
        "{list}"
    );
    assert!(
        list.contains("Succeeded") && list.contains("anneal-tiny"),
        "{list}"
    );
    let best = anneal_crds::best_checkpoint::best_checkpoint_name(&status.checkpoints).unwrap();
    assert!(list.contains(&best), "the best checkpoint {best}: {list}");
    let (_, running) = get(format!("{console}/?phase=Running")).await;
    assert!(!running.contains("/jobs/team-a/story") && running.contains("0 of 1 jobs shown"));
    let (_, chosen) = get(format!("{console}/?namespace={NAMESPACE}&phase=Succeeded")).await;
    assert!(chosen.contains("1 of 1 jobs shown"), "{chosen}");

    // The job's page.
    let (code, page) = get(format!("{console}/jobs/{NAMESPACE}/story")).await;
    assert_eq!(code, 200, "{page}");
    // The loss curve has a point for every training loss events.jsonl holds.
    let job = world.job("story").await;
    let run = format!(
        "{}/{NAMESPACE}/story/{}",
        world.config.default_output_uri.as_deref().unwrap(),
        job.metadata.uid.as_deref().unwrap()
    );
    let settings = world.storage_settings();
    let events = tokio::task::spawn_blocking(move || {
        Storage::open_with(&run, settings)
            .unwrap()
            .get("events.jsonl")
            .unwrap()
            .unwrap()
    })
    .await
    .unwrap();
    let history = anneal_console::runs::fold_events(&String::from_utf8(events).unwrap());
    assert!(history.train_loss.len() >= 4, "{:?}", history.train_loss);
    assert_eq!(
        page.matches(r#"class="train-point""#).count(),
        history.train_loss.len(),
        "{page}"
    );
    assert_eq!(
        page.matches(r#"class="valid-point""#).count(),
        history.valid_loss.len()
    );
    // Each checkpoint is a column with its answer to the prompt, which is escaped.
    assert!(page.contains(&escaped(PROMPT)), "{page}");
    for checkpoint in &status.checkpoints {
        assert!(page.contains(&checkpoint.name), "{}", checkpoint.name);
        assert_eq!(checkpoint.samples.len(), 1);
        assert!(
            page.contains(&escaped(&checkpoint.samples[0])),
            "{}'s answer {:?}",
            checkpoint.name,
            checkpoint.samples[0]
        );
    }
    // The log the report endpoint holds.
    let token = world.report_token("story").await;
    let logs = reqwest::Client::new()
        .get(format!(
            "{}/v1/jobs/{NAMESPACE}/story/logs",
            operator.report_url
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let last = logs.lines().last().unwrap();
    let message = last.splitn(3, ' ').nth(2).unwrap();
    assert!(page.contains(&escaped(message)), "{message:?} in {page}");
    // Its Events, conditions and manifest.
    assert!(
        page.contains("<td>Succeeded</td>"),
        "the Succeeded Event: {page}"
    );
    assert!(page.contains("<td>Complete</td>"), "the Complete condition");
    assert!(page.contains("kind: FineTuneJob") && page.contains("samplePrompts:"));
    // Everything on it is the console's own: no script, no other host.
    for outside in [
        "<script",
        r#"src="http"#,
        r#"href="http"#,
        "@import",
        "url(",
    ] {
        assert!(
            !page.contains(outside) && !list.contains(outside),
            "{outside}"
        );
    }

    // What is not there, or not the job's pictures, is not found.
    for path in [
        format!("/jobs/{NAMESPACE}/nope"),
        "/jobs/other/story".to_owned(),
        format!("/jobs/{NAMESPACE}/story/samples/{best}/sample-1.png"),
        format!("/jobs/{NAMESPACE}/story/samples/{best}/adapter_model.safetensors"),
        format!("/jobs/{NAMESPACE}/story/samples/..%2F..%2Fevents.jsonl/sample-1.png"),
    ] {
        let (code, _) = get(format!("{console}{path}")).await;
        assert_eq!(code, 404, "{path}");
    }
    operator.stop().await;
}

/// Answers the API server's reviews as a cluster would: `alice-token` is alice (group
/// `ml`), `bob-token` is bob; alice may get and list FineTuneJobs in the test
/// namespace only, bob nothing.
fn answer_reviews(world: &World) {
    world.api.register(ResourceType::cluster_scoped(
        "authentication.k8s.io",
        "v1",
        "tokenreviews",
        "TokenReview",
    ));
    world.api.register(ResourceType::cluster_scoped(
        "authorization.k8s.io",
        "v1",
        "subjectaccessreviews",
        "SubjectAccessReview",
    ));
    world.api.answer_reviews("tokenreviews", |review| {
        match review["spec"]["token"].as_str() {
            Some("alice-token") => {
                json!({"authenticated": true, "user": {"username": "alice", "groups": ["ml"]}})
            }
            Some("bob-token") => json!({"authenticated": true, "user": {"username": "bob"}}),
            _ => json!({"authenticated": false}),
        }
    });
    world.api.answer_reviews("subjectaccessreviews", |review| {
        let spec = &review["spec"];
        let attributes = &spec["resourceAttributes"];
        let allowed = spec["user"] == "alice"
            && spec["groups"] == json!(["ml"])
            && attributes["group"] == "anneal.dev"
            && attributes["resource"] == "finetunejobs"
            && attributes["namespace"] == NAMESPACE
            && (attributes["verb"] == "get" || attributes["verb"] == "list");
        json!({"allowed": allowed})
    });
}

fn suspended(name: &str, namespace: &str) -> String {
    format!(
        "{}  suspend: true\n",
        job_yaml(name, 1, 2, "").replace(
            &format!("namespace: {NAMESPACE}"),
            &format!("namespace: {namespace}")
        )
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signed_in_viewers_see_only_the_jobs_they_may_read() {
    let world = World::start(&quickstart_lines(24)).await;
    answer_reviews(&world);
    for (name, namespace) in [("story", NAMESPACE), ("payroll", "team-b")] {
        let job: FineTuneJob = serde_yaml_ng::from_str(&suspended(name, namespace)).unwrap();
        Api::<FineTuneJob>::namespaced(world.client(), namespace)
            .create(&PostParams::default(), &job)
            .await
            .unwrap();
    }
    let operator = world
        .start_operator_with_console(AuthSettings {
            mode: ConsoleAuth::Token,
            ..AuthSettings::default()
        })
        .await;
    let console = operator.console_url.clone();
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let send = |request: reqwest::RequestBuilder| async move {
        let response = request.send().await.unwrap();
        let code = response.status().as_u16();
        let header = |name: &str| {
            (response.headers().get(name))
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        let (location, cookie) = (header("location"), header("set-cookie"));
        (code, location, cookie, response.text().await.unwrap())
    };

    // Not signed in: sent to sign in; a token the API server does not accept is refused.
    let (code, location, _, _) = send(browser.get(format!("{console}/"))).await;
    assert_eq!((code, location.as_str()), (303, "/login"));
    let (code, _, _, page) = send(browser.get(format!("{console}/login"))).await;
    assert!(code == 200 && page.contains(r#"name="token""#), "{page}");
    let sign_in = |token: &str| {
        browser
            .post(format!("{console}/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={token}"))
    };
    let (code, _, cookie, page) = send(sign_in("mallory-token")).await;
    assert_eq!(code, 401);
    assert!(
        cookie.is_empty() && page.contains("does not accept this token"),
        "{page}"
    );

    // Alice signs in: her token is kept in a cookie no script reads and no other site sends.
    let (code, location, cookie, _) = send(sign_in("alice-token")).await;
    assert_eq!((code, location.as_str()), (303, "/"));
    for part in [
        "anneal-console-token=alice-token",
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
    ] {
        assert!(cookie.contains(part), "{part} in {cookie}");
    }
    let as_alice = |path: &str| {
        (browser.get(format!("{console}{path}")))
            .header("cookie", "anneal-console-token=alice-token")
    };
    let (code, _, _, list) = send(as_alice("/")).await;
    assert_eq!(code, 200, "{list}");
    assert!(list.contains(&format!("/jobs/{NAMESPACE}/story")), "{list}");
    assert!(
        !list.contains("payroll") && !list.contains("team-b"),
        "{list}"
    );
    assert!(
        list.contains("Signed in as <strong>alice</strong>"),
        "{list}"
    );
    let (code, _, _, page) = send(as_alice(&format!("/jobs/{NAMESPACE}/story"))).await;
    assert!(code == 200 && page.contains("kind: FineTuneJob"), "{page}");
    // Another namespace's job is refused whether it is there or not.
    for path in ["/jobs/team-b/payroll", "/jobs/team-b/not-there"] {
        let (code, _, _, page) = send(as_alice(path)).await;
        assert_eq!(code, 403, "{path}");
        assert!(page.contains("alice may not get the FineTuneJob"), "{page}");
        assert!(!page.contains("kind: FineTuneJob"));
    }

    // Bob, by bearer token, may list nothing.
    let as_bob = |path: &str| {
        browser
            .get(format!("{console}{path}"))
            .bearer_auth("bob-token")
    };
    let (code, _, _, list) = send(as_bob("/")).await;
    assert!(code == 200 && list.contains("0 of 0 jobs shown"), "{list}");
    let (code, _, _, _) = send(as_bob(&format!("/jobs/{NAMESPACE}/story"))).await;
    assert_eq!(code, 403);

    // Signing out drops the cookie.
    let (code, location, cookie, _) = send(browser.post(format!("{console}/logout"))).await;
    assert_eq!((code, location.as_str()), (303, "/login"));
    assert!(cookie.starts_with("anneal-console-token=;") && cookie.contains("Max-Age=0"));
    operator.stop().await;

    // Behind an authenticating proxy, the proxy's headers name the viewer.
    let operator = world
        .start_operator_with_console(AuthSettings {
            mode: ConsoleAuth::Header,
            ..AuthSettings::default()
        })
        .await;
    let console = operator.console_url.clone();
    let (code, _, _, list) = send(
        browser
            .get(format!("{console}/"))
            .header("X-Forwarded-User", "alice")
            .header("X-Forwarded-Groups", "ml"),
    )
    .await;
    assert!(code == 200 && list.contains("/jobs/team-a/story") && !list.contains("payroll"));
    let (code, _, _, page) = send(browser.get(format!("{console}/"))).await;
    assert_eq!(code, 401);
    assert!(page.contains("no X-Forwarded-User header"), "{page}");
    operator.stop().await;
}
