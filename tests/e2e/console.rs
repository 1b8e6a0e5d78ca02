//! The operator's console over a job that trained: the jobs list and its filters, and
//! the job's page with the loss history its run copied to storage, each checkpoint's
//! sample answer, the log the report endpoint holds, its Events and its manifest.
//! Nothing on a page comes from another host, and nothing outside the job's pictures
//! is served from storage.

use std::time::Duration;

use anneal_crds::finetunejob::JobPhase;
use anneal_crds::storage::Storage;
use anneal_e2e::operator_harness::{NAMESPACE, World, job_yaml, quickstart_lines};

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
