//! `trainer console` over a run just trained: the runs list names it, its page draws
//! every logged loss, shows each checkpoint's answers side by side and the log, and
//! nothing outside the runs folder can be asked for.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

use anneal_crds::events::EventBody;

use crate::train_cli::{events, expect, job_dir, trainer_train};

/// Kills the console when the test ends, passed or not.
struct Console(Child);

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET path` on `address`: the status code and the body.
fn get(address: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_owned())
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

    let mut child = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["console", "--port", "0", "--runs"])
        .arg(&out)
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
