//! The operator's console over a job that trained: the jobs list and its filters, and
//! the job's page with the loss history its run copied to storage, each checkpoint's
//! sample answer, the log the report endpoint holds, its Events and its manifest.
//! Nothing on a page comes from another host, and nothing outside the job's pictures
//! is served from storage. With sign-in, each viewer sees only the jobs the API
//! server's reviews let them read.

use std::time::Duration;

use anneal_crds::storage::Storage;
use anneal_crds::{FineTuneJob, ModelDeployment};
use anneal_e2e::console_support::{answer_reviews, deploy_story, greedy_answer, train_story};
use anneal_e2e::operator_harness::{NAMESPACE, World, job_yaml, quickstart_lines};
use anneal_operator::console::viewer::{AuthSettings, ConsoleAuth};
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

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
    let status = train_story(&world, 1, None, PROMPT).await;
    let console = &operator.console_url;
    let best = anneal_crds::best_checkpoint::best_checkpoint_name(&status.checkpoints).unwrap();
    let list = jobs_list_with_filters(console, &best).await;

    // The job's page.
    let (code, page) = get(format!("{console}/jobs/{NAMESPACE}/story")).await;
    assert_eq!(code, 200, "{page}");
    loss_history_is_drawn(&world, &page).await;
    answers_log_and_events_are_shown(&world, &operator.report_url, &status, &page).await;
    // Everything on it is the console's own: no script loaded, no other host.
    for outside in [
        "<script src",
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
    page_follows_the_job(&world, console, &page).await;
    read_only_and_nothing_else_served(&world, console, &page, &best).await;
    operator.stop().await;
}

/// The jobs list shows the story job with its best checkpoint, and its filters work.
async fn jobs_list_with_filters(console: &str, best: &str) -> String {
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
    assert!(list.contains(best), "the best checkpoint {best}: {list}");
    let (_, running) = get(format!("{console}/?phase=Running")).await;
    assert!(!running.contains("/jobs/team-a/story") && running.contains("0 of 1 jobs shown"));
    let (_, chosen) = get(format!("{console}/?namespace={NAMESPACE}&phase=Succeeded")).await;
    assert!(chosen.contains("1 of 1 jobs shown"), "{chosen}");

    list
}

/// The loss curve has a point for every loss the run's events.jsonl holds.
async fn loss_history_is_drawn(world: &World, page: &str) {
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
}

/// Each checkpoint's answer to the prompt, the log the report endpoint holds, the
/// job's Events, conditions and manifest.
async fn answers_log_and_events_are_shown(
    world: &World,
    report_url: &str,
    status: &anneal_crds::finetunejob::FineTuneJobStatus,
    page: &str,
) {
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
        .get(format!("{}/v1/jobs/{NAMESPACE}/story/logs", report_url))
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
}

/// A change to the job is told on the page's watch.
async fn page_follows_the_job(world: &World, console: &str, page: &str) {
    assert!(page.contains(r#"data-watch="/jobs/team-a/story/watch""#));
    let mut watch = reqwest::get(format!("{console}/jobs/{NAMESPACE}/story/watch"))
        .await
        .unwrap();
    assert_eq!(watch.headers()["content-type"], "text/event-stream");
    let labelled = json!({"metadata": {"labels": {"reviewed": "yes"}}});
    Api::<FineTuneJob>::namespaced(world.client(), NAMESPACE)
        .patch(
            "story",
            &Default::default(),
            &kube::api::Patch::Merge(&labelled),
        )
        .await
        .unwrap();
    let told = tokio::time::timeout(Duration::from_secs(10), async {
        let mut seen = String::new();
        while let Some(chunk) = watch.chunk().await.unwrap() {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("event: changed\ndata: ") {
                return seen;
            }
        }
        seen
    })
    .await
    .expect("a changed event within 10 s");
    assert!(told.contains("event: changed\ndata: "), "{told}");
}

/// Without sign-in the console is read-only; what is not there, or not the job's
/// pictures, is not found.
async fn read_only_and_nothing_else_served(world: &World, console: &str, page: &str, best: &str) {
    // Without sign-in the console is read-only: no actions offered, none taken.
    assert!(!page.contains("<h2>Actions</h2>"), "{page}");
    let suspend = reqwest::Client::new()
        .post(format!("{console}/jobs/{NAMESPACE}/story/suspend"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("suspend=true")
        .send()
        .await
        .unwrap();
    assert_eq!(suspend.status(), 403);
    assert!(suspend.text().await.unwrap().contains("read-only"));
    assert!(!world.job("story").await.spec.suspend);

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
}

/// A GPU job's page shows the memory plan Validating judged it by, from the built-in
/// shape of its model's name when its folder has no config.json; a CPU job's shows
/// the operator's estimate of its size.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gpu_jobs_page_shows_its_memory_plan() {
    let world = World::start(&quickstart_lines(4)).await;
    let operator = world.start_operator(None).await;
    let gpu_job = job_yaml("big", 1, 2, "")
        .replace("name: anneal-tiny,", "name: Qwen2.5-7B-Instruct,")
        .replace("models/anneal-tiny", "models/qwen-7b")
        .replace("resources: {gpus: 0}", "resources: {gpus: 1}");
    world.apply(&gpu_job).await;
    let (code, page) = get(format!("{}/jobs/{NAMESPACE}/big", operator.console_url)).await;
    assert_eq!(code, 200);
    let plan_at = page
        .find("<pre class=\"log\" id=\"memory-plan\">")
        .unwrap_or_else(|| panic!("{page}"));
    let plan = &page[plan_at..];
    assert!(
        plan.contains(
            "Qwen2.5-7B-Instruct (shape from the built-in shape of its name) on one GPU of 80 GiB"
        ),
        "{plan}"
    );
    for row in ["base weights", "trainable state", "activations"] {
        assert!(plan.contains(row), "{row} in {plan}");
    }
    // A CPU job has none, but the operator's estimate of its size, as its status has it.
    world.apply(&job_yaml("small", 1, 2, "")).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let estimate = loop {
        if let Some(estimate) = world.job("small").await.status.and_then(|s| s.estimate) {
            break estimate;
        }
        assert!(std::time::Instant::now() < deadline, "no estimate");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let (_, page) = get(format!("{}/jobs/{NAMESPACE}/small", operator.console_url)).await;
    assert!(!page.contains("memory-plan"), "{page}");
    let shown = &page[page
        .find("<table id=\"estimate\">")
        .unwrap_or_else(|| panic!("{page}"))..];
    for row in [
        format!(
            "<th>Samples an epoch</th><td>{}</td>",
            estimate.samples_per_epoch
        ),
        format!(
            "<th>Tokens an epoch</th><td>{}</td>",
            estimate.tokens_per_epoch
        ),
        format!("<th>Steps</th><td>{}</td>", estimate.steps),
        // No duration on the CPU, whose speed the operator does not know.
        "<th>Duration</th><td>-</td>".to_owned(),
    ] {
        assert!(shown.contains(&row), "{row} in {shown}");
    }
    assert!(estimate.steps > 0);
    operator.stop().await;
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
    let console = Browser::new(&operator.console_url);
    sign_in_is_required(&console).await;
    alice_sees_only_her_namespace(&console).await;
    actions_are_as_the_api_server_allows(&console, &world).await;
    a_checkpoint_is_deployed(&console, &world).await;
    a_checkpoint_is_published(&console, &world).await;

    // Signing out drops the cookie.
    let logout = console.browser.post(format!("{}/logout", console.url));
    let (code, location, cookie, _) = console.send(logout).await;
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
    let console = Browser::new(&operator.console_url);
    let proxied = (console.browser.get(format!("{}/", console.url)))
        .header("X-Forwarded-User", "alice")
        .header("X-Forwarded-Groups", "ml");
    let (code, _, _, list) = console.send(proxied).await;
    assert!(code == 200 && list.contains("/jobs/team-a/story") && !list.contains("payroll"));
    let (code, _, _, page) = console
        .send(console.browser.get(format!("{}/", console.url)))
        .await;
    assert_eq!(code, 401);
    assert!(page.contains("no X-Forwarded-User header"), "{page}");
    operator.stop().await;
}

/// A browser on the console that follows no redirects.
struct Browser {
    browser: reqwest::Client,
    url: String,
}

impl Browser {
    fn new(url: &str) -> Self {
        let browser = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self {
            browser,
            url: url.to_owned(),
        }
    }

    /// The answer's status, `location`, `set-cookie` and body.
    async fn send(&self, request: reqwest::RequestBuilder) -> (u16, String, String, String) {
        let response = request.send().await.unwrap();
        let code = response.status().as_u16();
        let header = |name: &str| {
            (response.headers().get(name))
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        let (location, cookie) = (header("location"), header("set-cookie"));
        (code, location, cookie, response.text().await.unwrap())
    }

    fn sign_in(&self, token: &str) -> reqwest::RequestBuilder {
        (self.browser.post(format!("{}/login", self.url)))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={token}"))
    }

    /// A page as the viewer whose cookie holds `token`.
    fn get_as(&self, token: &str, path: &str) -> reqwest::RequestBuilder {
        (self.browser.get(format!("{}{path}", self.url)))
            .header("cookie", format!("anneal-console-token={token}"))
    }

    /// A form posted to the story job's `path` as the viewer whose cookie holds `token`.
    fn act(&self, path: &str, token: &str, body: &str) -> reqwest::RequestBuilder {
        (self
            .browser
            .post(format!("{}/jobs/{NAMESPACE}/story/{path}", self.url)))
        .header("cookie", format!("anneal-console-token={token}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_owned())
    }
}

/// Not signed in: sent to sign in; a token the API server does not accept is refused.
async fn sign_in_is_required(console: &Browser) {
    let (code, location, _, _) = console
        .send(console.browser.get(format!("{}/", console.url)))
        .await;
    assert_eq!((code, location.as_str()), (303, "/login"));
    let (code, _, _, page) = console
        .send(console.browser.get(format!("{}/login", console.url)))
        .await;
    assert!(code == 200 && page.contains(r#"name="token""#), "{page}");
    let (code, _, cookie, page) = console.send(console.sign_in("mallory-token")).await;
    assert_eq!(code, 401);
    assert!(
        cookie.is_empty() && page.contains("does not accept this token"),
        "{page}"
    );
}

/// Alice signs in: her token is kept in a cookie no script reads and no other site
/// sends, and she sees her namespace's jobs only; Bob, by bearer token, sees none.
async fn alice_sees_only_her_namespace(console: &Browser) {
    let (code, location, cookie, _) = console.send(console.sign_in("alice-token")).await;
    assert_eq!((code, location.as_str()), (303, "/"));
    for part in [
        "anneal-console-token=alice-token",
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
    ] {
        assert!(cookie.contains(part), "{part} in {cookie}");
    }
    let as_alice = |path: &str| console.get_as("alice-token", path);
    let (code, _, _, list) = console.send(as_alice("/")).await;
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
    let (code, _, _, page) = console
        .send(as_alice(&format!("/jobs/{NAMESPACE}/story")))
        .await;
    assert!(code == 200 && page.contains("kind: FineTuneJob"), "{page}");
    // Another namespace's job is refused whether it is there or not.
    for path in ["/jobs/team-b/payroll", "/jobs/team-b/not-there"] {
        let (code, _, _, page) = console.send(as_alice(path)).await;
        assert_eq!(code, 403, "{path}");
        assert!(page.contains("alice may not get the FineTuneJob"), "{page}");
        assert!(!page.contains("kind: FineTuneJob"));
    }
    // Nor may she follow it.
    let (code, _, _, _) = console.send(as_alice("/jobs/team-b/payroll/watch")).await;
    assert_eq!(code, 403);

    let as_bob = |path: &str| {
        (console.browser.get(format!("{}{path}", console.url))).bearer_auth("bob-token")
    };
    let (code, _, _, list) = console.send(as_bob("/")).await;
    assert!(code == 200 && list.contains("0 of 0 jobs shown"), "{list}");
    let (code, _, _, _) = console
        .send(as_bob(&format!("/jobs/{NAMESPACE}/story")))
        .await;
    assert_eq!(code, 403);
}

/// Actions, each as the API server allows the viewer: alice resumes the job (she may
/// patch it) and may not delete it; bob changes nothing, nor does another site.
async fn actions_are_as_the_api_server_allows(console: &Browser, world: &World) {
    let story = format!("/jobs/{NAMESPACE}/story");
    let (_, _, _, page) = console.send(console.get_as("alice-token", &story)).await;
    assert!(
        page.contains(">Resume</button>") && page.contains("suspend: false"),
        "{page}"
    );
    assert!(
        !page.contains("to delete the job"),
        "alice may not delete: {page}"
    );
    let resume = console.act("suspend", "alice-token", "suspend=false");
    let (code, location, _, _) = console.send(resume).await;
    assert_eq!((code, location.as_str()), (303, "/jobs/team-a/story"));
    assert!(!world.job("story").await.spec.suspend, "resumed");
    let suspend = console.act("suspend", "alice-token", "suspend=true");
    let (code, _, _, _) = console.send(suspend).await;
    assert_eq!(code, 303);
    assert!(world.job("story").await.spec.suspend, "suspended again");
    let delete = console.act("delete", "alice-token", "confirm=story");
    let (code, _, _, page) = console.send(delete).await;
    assert_eq!(code, 403);
    assert!(
        page.contains("alice may not delete the FineTuneJob team-a/story"),
        "{page}"
    );
    let by_bob = console.act("suspend", "bob-token", "suspend=false");
    let (code, _, _, page) = console.send(by_bob).await;
    assert_eq!(code, 403, "{page}");
    assert!(world.job("story").await.spec.suspend, "bob changed nothing");
    // Another site's page cannot make alice's browser act.
    let forged = (console.act("suspend", "alice-token", "suspend=false"))
        .header("origin", "https://evil.example");
    let (code, _, _, page) = console.send(forged).await;
    assert!(code == 403 && page.contains("another site"), "{page}");
    assert!(world.job("story").await.spec.suspend);
}

/// Deploying a checkpoint the job has: the ModelDeployment the page showed.
async fn a_checkpoint_is_deployed(console: &Browser, world: &World) {
    let jobs: Api<FineTuneJob> = Api::namespaced(world.client(), NAMESPACE);
    let trained = json!({"status": {
        "result": {"modelId": "ft:anneal-tiny:story:ckpt-2", "uri": "s3://x/final"},
        "checkpoints": [{"name": "ckpt-2", "step": 2, "epoch": 1.0, "uri": "s3://x/checkpoints/ckpt-2", "validLoss": 1.5}]}});
    jobs.patch_status(
        "story",
        &Default::default(),
        &kube::api::Patch::Merge(&trained),
    )
    .await
    .unwrap();
    let story = format!("/jobs/{NAMESPACE}/story");
    let (_, _, _, page) = console.send(console.get_as("alice-token", &story)).await;
    assert!(
        page.contains(r#"<option value="ckpt-2">"#) && page.contains("name: story-final"),
        "{page}"
    );
    let deploy = |checkpoint: &str| {
        let form = format!("checkpoint={checkpoint}&replicas=1");
        console.send(console.act("deploy", "alice-token", &form))
    };
    let (code, _, _, page) = deploy("ckpt-9").await;
    assert_eq!(code, 422);
    assert!(
        page.contains("checkpoint &quot;ckpt-9&quot; is not one of the job"),
        "{page}"
    );
    let (code, location, _, _) = deploy("ckpt-2").await;
    assert_eq!(
        (code, location.as_str()),
        (303, "/deployments/team-a/story-ckpt-2")
    );
    let deployed = Api::<ModelDeployment>::namespaced(world.client(), NAMESPACE)
        .get("story-ckpt-2")
        .await
        .unwrap();
    let source = deployed.spec.model.fine_tune_job.unwrap();
    assert_eq!(
        (source.name.as_str(), source.checkpoint.as_str()),
        ("story", "ckpt-2")
    );
    let (code, _, _, _) = deploy("ckpt-2").await;
    assert_eq!(code, 409, "the name is taken now");
}

/// Publishing a checkpoint adds a spec.publish entry, as the page showed it.
async fn a_checkpoint_is_published(console: &Browser, world: &World) {
    let story = format!("/jobs/{NAMESPACE}/story");
    let (_, _, _, page) = console.send(console.get_as("alice-token", &story)).await;
    assert!(
        page.contains(r#"action="/jobs/team-a/story/publish""#)
            && page.contains("to: hf://ORG/NAME"),
        "{page}"
    );
    let publish = |token: &str, form: &str| console.send(console.act("publish", token, form));
    let (code, _, _, page) = publish("alice-token", "checkpoint=ckpt-2&to=gs%3A%2F%2Fb%2Fx").await;
    assert_eq!(code, 422);
    assert!(page.contains("spec.publish[0].to"), "{page}");
    let (code, location, _, _) = publish(
        "alice-token",
        "checkpoint=ckpt-2&to=hf%3A%2F%2Facme%2Fstory-ckpt-2&merge=true",
    )
    .await;
    assert_eq!((code, location.as_str()), (303, "/jobs/team-a/story"));
    let published = world.job("story").await.spec.publish;
    assert_eq!(published.len(), 1);
    assert_eq!(
        (
            published[0].checkpoint.as_str(),
            published[0].to.as_str(),
            published[0].merge
        ),
        ("ckpt-2", "hf://acme/story-ckpt-2", true)
    );
    let (code, _, _, _) = publish("bob-token", "checkpoint=final&to=s3%3A%2F%2Fb%2Fx").await;
    assert_eq!(code, 403, "bob may not patch the job");
    assert_eq!(world.job("story").await.spec.publish.len(), 1);
}

/// The text of the `data:` chunks of a streamed chat answer.
fn streamed_text(stream: &str) -> String {
    stream
        .lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter(|data| *data != "[DONE]")
        .filter_map(|data| serde_json::from_str::<serde_json::Value>(data).ok())
        .filter_map(|chunk| {
            chunk["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_playground_streams_what_the_deployment_answers() {
    let world = World::start(&quickstart_lines(24)).await;
    world.kubelet.run_deployments();
    let operator = world
        .start_operator_with_console(AuthSettings::default())
        .await;
    train_story(&world, 1, None, PROMPT).await;
    let model = deploy_story(&world).await;
    let console = &operator.console_url;

    let (code, list) = get(format!("{console}/deployments")).await;
    assert_eq!(code, 200);
    assert!(
        list.contains(&format!(r#"href="/deployments/{NAMESPACE}/chat""#)),
        "{list}"
    );
    assert!(
        list.contains("FineTuneJob story (final)") && list.contains("Ready"),
        "{list}"
    );
    let page_url = format!("{console}/deployments/{NAMESPACE}/chat");
    let (code, page) = get(page_url.clone()).await;
    assert_eq!(code, 200, "{page}");
    // The models the server lists: the fine-tuned one and its base.
    assert!(
        page.contains(&format!(r#"<option value="{model}""#)),
        "{page}"
    );
    assert!(page.contains(r#"<option value="anneal-tiny""#), "{page}");

    // What the server itself answers, greedily.
    let server = world.kubelet.deployment_url("chat").unwrap();
    let messages =
        json!([{"role": "system", "content": "Be kind."}, {"role": "user", "content": PROMPT}]);
    let answer = greedy_answer(&server, &model, messages, 16).await;
    assert!(!answer.is_empty());

    // Through the console, streamed, it is the same.
    let fields = json!({"model": model, "system": "Be kind.", "message": PROMPT,
        "temperature": "0", "top_p": "1", "max_tokens": "16"});
    let streamed = post_json(format!("{page_url}/chat"), &fields).await;
    assert_eq!(streamed.status(), 200);
    assert_eq!(
        streamed.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let stream = streamed.text().await.unwrap();
    assert!(
        stream.matches("data: ").count() > 2,
        "streamed in chunks: {stream}"
    );
    assert_eq!(streamed_text(&stream), answer, "{stream}");

    // The form, without script, answers the same in the page.
    let form = [
        ("model", model.as_str()),
        ("system", "Be kind."),
        ("message", PROMPT),
        ("temperature", "0"),
        ("top_p", "1"),
        ("max_tokens", "16"),
    ];
    let encoded: String = form
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencoding(v)))
        .collect::<Vec<_>>()
        .join("&");
    let post_form = |body: String| {
        reqwest::Client::new()
            .post(format!("{page_url}/playground"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let response = post_form(encoded.clone()).await.unwrap();
    assert_eq!(response.status(), 200);
    let page = response.text().await.unwrap();
    assert!(
        page.contains(&format!("{}</pre>", escaped(&answer))),
        "{page}"
    );
    assert!(page.contains(&escaped(PROMPT)), "the message is kept");
    // A bad setting is named, and nothing is asked.
    let response = post_form(encoded.replace("temperature=0", "temperature=5"))
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let page = response.text().await.unwrap();
    assert!(
        page.contains("temperature must be a number from 0 to 2"),
        "{page}"
    );
    // The streaming route takes JSON only (a cross-site form cannot send it).
    let form_to_chat = reqwest::Client::new()
        .post(format!("{page_url}/chat"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("model=x")
        .send()
        .await
        .unwrap();
    assert_eq!(form_to_chat.status(), 415);
    // The snippets send the same request to the deployment's endpoint.
    let snippets = post_json(format!("{page_url}/snippets"), &fields).await;
    let snippets: serde_json::Value =
        serde_json::from_str(&snippets.text().await.unwrap()).unwrap();
    let curl = snippets["curl"].as_str().unwrap();
    assert!(
        curl.starts_with(&format!(
            "curl -N http://chat.{NAMESPACE}.svc:8000/v1/chat/completions"
        )),
        "{curl}"
    );
    assert!(
        curl.contains("\"max_tokens\": 16") && curl.contains("Be kind."),
        "{curl}"
    );
    operator.stop().await;
}

async fn post_json(url: String, body: &serde_json::Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

/// `text` as a form field's value.
fn urlencoding(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
