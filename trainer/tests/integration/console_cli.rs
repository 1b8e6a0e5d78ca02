//! `trainer console` over a run just trained: the runs list names it, its page draws
//! every logged loss, shows each checkpoint's answers side by side and the log, and
//! nothing outside the runs folder can be asked for.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use anneal_crds::events::EventBody;

use crate::train_cli::{events, expect, job_dir, trainer_train};

/// Kills the console when the test ends, passed or not.
pub(crate) struct Console(Child);

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET path` on `address`: the status code and the body's bytes.
fn get_bytes(address: &str, path: &str) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(address).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let status = String::from_utf8_lossy(&response[9..12]).parse().unwrap();
    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(response.len(), |i| i + 4);
    (status, response[head_end..].to_vec())
}

/// `GET path` on `address`: the status code and the body as text.
pub(crate) fn get(address: &str, path: &str) -> (u16, String) {
    let (status, body) = get_bytes(address, path);
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn the_console_shows_a_trained_runs_losses_answers_and_log() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = job_dir(dir.path(), None);
    let text = std::fs::read_to_string(&manifest).unwrap().replace(
        "checkpoints: {everyEpoch: true, everySteps: 2}",
        "checkpoints: {everyEpoch: true, everySteps: 2, samplePrompts: [{messages: [{role: user, content: \"What should I wear <today>?\"}]}]}",
    );
    std::fs::write(&manifest, text).unwrap();
    let out = dir.path().join("out");
    let output = trainer_train(&manifest, &out, &[]).output().unwrap();
    expect(&output, 0);
    let trained = events(&output.stdout);

    let (console, address) = start_console(&out);

    let (status, list) = get(&address, "/");
    assert_eq!(status, 200);
    assert!(
        list.contains("<a href=\"/runs/team-a/cli/r1\">r1</a>"),
        "{list}"
    );
    assert!(list.contains("<td>Succeeded</td>"), "{list}");
    assert!(list.contains("<td>10/10</td>"), "{list}");

    let (status, page) = get(&address, "/runs/team-a/cli/r1");
    assert_eq!(status, 200);
    let losses = trained
        .iter()
        .filter(|e| matches!(&e.body, EventBody::Metrics { metrics, .. } if metrics.train_loss.is_some()))
        .count();
    assert_eq!(page.matches("class=\"train-point\"").count(), losses);
    let checkpoints: Vec<_> = trained
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Checkpoint(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(
        page.matches("class=\"valid-point\"").count(),
        checkpoints.len() + 1,
        "one more before training"
    );
    for checkpoint in &checkpoints {
        assert!(
            page.contains(&format!("{}<br>", checkpoint.name)),
            "{}",
            checkpoint.name
        );
        let answer = maud::html! { (checkpoint.samples[0]) }.into_string();
        assert!(page.contains(&answer), "{answer}");
    }
    // The prompt is escaped, not markup.
    assert!(page.contains("What should I wear &lt;today&gt;?"));
    assert!(page.contains("Model id: <code>ft:anneal-tiny:cli:ckpt-10</code>"));
    assert!(
        !page.contains("http-equiv=\"refresh\""),
        "a finished run stays put"
    );
    // Nothing is loaded from another host: no absolute URL in a link, a picture or a
    // style (an air-gapped cluster has none to reach).
    for shown in [&list, &page] {
        for attribute in ["href=\"", "src=\""] {
            for (at, _) in shown.match_indices(attribute) {
                let value = &shown[at + attribute.len()..];
                assert!(value.starts_with('/'), "{}", &value[..value.len().min(60)]);
            }
        }
        assert!(!shown.contains("url("), "no style loads anything");
    }

    charts_zoom_to_a_window_of_steps(&address, &trained);

    for path in [
        "/runs/team-a/cli/r2",
        "/runs/team-a/..%2F..%2F/r1",
        "/runs/team-a/cli",
    ] {
        let (status, _) = get(&address, path);
        assert_eq!(status, 404, "{path}");
    }
    drop(console);
}

/// `?from=&to=` draws only the steps between, in every chart; a bad bound is named.
fn charts_zoom_to_a_window_of_steps(address: &str, trained: &[anneal_crds::events::TrainerEvent]) {
    let losses_between = |from: u64, to: u64| {
        trained
            .iter()
            .filter(|e| {
                matches!(&e.body, EventBody::Metrics { step, metrics, .. }
                if metrics.train_loss.is_some() && (from..=to).contains(step))
            })
            .count()
    };
    let (status, zoomed) = get(address, "/runs/team-a/cli/r1?from=3&to=6");
    assert_eq!(status, 200);
    assert_eq!(
        zoomed.matches("class=\"train-point\"").count(),
        losses_between(3, 6)
    );
    assert!(
        losses_between(3, 6) < losses_between(0, u64::MAX),
        "a real cut"
    );
    assert!(zoomed.contains("data-first-step=\"3\""), "{zoomed}");
    assert!(zoomed.contains("<a href=\"/runs/team-a/cli/r1\">All steps</a>"));
    let (status, _) = get(address, "/runs/team-a/cli/r1?from=&to=");
    assert_eq!(status, 200, "blank fields are all steps");
    let (status, refused) = get(address, "/runs/team-a/cli/r1?from=abc");
    assert_eq!(status, 400);
    assert!(
        refused.contains("a step is a whole number, not \"abc\""),
        "{refused}"
    );
}

/// Starts `trainer console` on `runs`; its address.
pub(crate) fn start_console(runs: &std::path::Path) -> (Console, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["console", "--port", "0", "--runs"])
        .arg(runs)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let console = Console(child);
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first).unwrap();
    let address = first
        .strip_prefix("console: http://")
        .and_then(|rest| rest.split_once('/'))
        .map(|(address, _)| address.to_owned())
        .unwrap_or_else(|| panic!("{first}"));
    (console, address)
}

#[test]
fn an_image_runs_sample_pictures_are_shown_and_nothing_else_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("team-a/dog/r1");
    let checkpoint = run.join("checkpoints/ckpt-4");
    std::fs::create_dir_all(&checkpoint).unwrap();
    let png = b"\x89PNG\r\n\x1a\nnot really a picture".to_vec();
    std::fs::write(checkpoint.join("sample-0.png"), &png).unwrap();
    std::fs::write(checkpoint.join("adapter_config.json"), "{}").unwrap();
    let uri = format!("file://{}/sample-0.png", checkpoint.display());
    let events = [
        r#"{"seq":1,"time":"2026-12-05T10:00:00Z","type":"phase","phase":"Running"}"#.to_owned(),
        format!(
            r#"{{"seq":2,"time":"2026-12-05T10:00:09Z","type":"checkpoint","name":"ckpt-4","step":4,"epoch":1.0,"uri":"file://{}","samples":["{uri}"]}}"#,
            checkpoint.display()
        ),
    ];
    std::fs::write(run.join("events.jsonl"), events.join("\n") + "\n").unwrap();
    let (_console, address) = start_console(dir.path());

    let (status, page) = get(&address, "/runs/team-a/dog/r1");
    assert_eq!(status, 200);
    assert!(
        page.contains("<img src=\"/runs/team-a/dog/r1/samples/ckpt-4/sample-0.png\""),
        "{page}"
    );
    // Still running: the page reloads itself.
    assert!(page.contains("<meta http-equiv=\"refresh\" content=\"10\">"));
    let (status, body) = get_bytes(&address, "/runs/team-a/dog/r1/samples/ckpt-4/sample-0.png");
    assert_eq!(status, 200);
    assert_eq!(body, png);
    for path in [
        "/runs/team-a/dog/r1/samples/ckpt-4/adapter_config.json",
        "/runs/team-a/dog/r1/samples/ckpt-4/sample-1.png",
        "/runs/team-a/dog/r1/samples/..%2F..%2F..%2F/sample-0.png",
    ] {
        assert_eq!(get(&address, path).0, 404, "{path}");
    }
}

#[test]
fn a_missing_runs_folder_is_named() {
    let output = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["console", "--runs", "/nonexistent/anneal-runs"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim_end(),
        "trainer console: --runs /nonexistent/anneal-runs: no such folder (train a job first: trainer train JOB.yaml)"
    );
}
