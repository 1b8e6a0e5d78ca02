//! The README's first command, the quick start, as a newcomer runs it: the bundled
//! tiny model learns the house style of examples/quickstart/. Validation loss falls
//! well below the base model's, the sample answers, which do not have the style
//! before training, have it at the end, and the `try it:` and `serve it:` commands
//! it prints at the end run as printed (no `trainer` on PATH, as after `cargo run`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};

use anneal_crds::events::{EventBody, LogLevel, TrainerEvent};
use anneal_crds::finetunejob::CheckpointStatus;

/// A PATH with the shell's tools and no `trainer`.
pub(crate) const PATH_WITHOUT_TRAINER: &str = "/usr/local/bin:/usr/bin:/bin";

#[test]
fn the_quickstart_learns_the_house_style_and_its_printed_commands_run() {
    let dir = tempfile::tempdir().unwrap();
    let stdout = train_as_printed("examples/quickstart/finetunejob.yaml", dir.path());
    let events = run_events(dir.path());
    let last = learned_the_house_style(&events);

    let printed = |label: &str| printed_line(&stdout, label);
    let trainer = std::fs::canonicalize(env!("CARGO_BIN_EXE_trainer")).unwrap();
    let try_it = printed("try it:");
    assert!(
        try_it.contains(&format!("| {} generate ", trainer.display())),
        "the command names the program by its full path: {try_it}"
    );
    the_try_it_command_answers_like_the_last_checkpoint(&try_it, last);
    the_serve_it_command_serves_the_adapter(&printed("serve it:"), &printed("model id:"));
    the_browse_it_command_lists_the_run(&printed("browse it:"));
    the_evaluation_finds_the_house_style_in_the_tuned_model_only(dir.path());
}

/// `examples/quickstart/evaluation.yaml` on the run just trained: on 20 held-out
/// questions the tuned model opens every answer with "Good question!" and the base
/// model none, and the difference's interval is far above 0.
fn the_evaluation_finds_the_house_style_in_the_tuned_model_only(runs: &Path) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .arg("evaluate")
        .arg(repo.join("examples/quickstart/evaluation.yaml"))
        .arg("--runs")
        .arg(runs)
        .arg("--output")
        .arg(runs)
        .args(["--device", "cpu"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("best:    tuned (by regex /^Good question!/)"),
        "{stdout}"
    );
    let report_uri = printed_line(&stdout, "report:");
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(report_uri.strip_prefix("file://").unwrap()).unwrap(),
    )
    .unwrap();
    let score = |model: usize, metric: usize| &report["models"][model]["scores"][metric];
    assert_eq!(report["models"][0]["model"], "base");
    assert_eq!(score(0, 0)["score"]["mean"], 0.0);
    assert!(
        score(1, 0)["score"]["mean"].as_f64().unwrap() >= 0.9,
        "{report}"
    );
    assert!(
        score(1, 0)["vsBaseline"]["low"].as_f64().unwrap() > 0.5,
        "{report}"
    );
    assert_eq!(report["samples"].as_array().unwrap().len(), 20);
    let page = std::fs::read_to_string(
        report_uri
            .strip_prefix("file://")
            .unwrap()
            .replace("report.json", "report.html"),
    )
    .unwrap();
    assert!(page.contains("<td class=\"best\">tuned</td>"), "{page}");
    // The references are in the house style: the tuned model finds them likelier.
    let loss = report["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .position(|m| m == "referenceLoss")
        .unwrap();
    assert!(
        score(1, loss)["vsBaseline"]["high"].as_f64().unwrap() < 0.0,
        "{report}"
    );
    assert!(
        score(1, loss)["perplexity"]["mean"].as_f64().unwrap() > 1.0,
        "{report}"
    );
}

/// Runs `trainer train MANIFEST` (relative to the repository) as a newcomer would,
/// without `trainer` on PATH, into `output`; its standard output.
pub(crate) fn train_as_printed(manifest: &str, output: &Path) -> String {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let run = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .arg("train")
        .arg(repo.join(manifest))
        .arg("--output")
        .arg(output)
        .args(["--device", "cpu"])
        .env("PATH", PATH_WITHOUT_TRAINER)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    stdout
}

/// What the run printed after `label` (`try it:`), trimmed.
pub(crate) fn printed_line(stdout: &str, label: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no `{label}` line in:\n{stdout}"))
        .trim()
        .to_owned()
}

/// The events the run wrote to its `events.jsonl`.
fn run_events(output: &Path) -> Vec<TrainerEvent> {
    let runs = output.join("default/quickstart");
    let run = std::fs::read_dir(&runs).unwrap().next().unwrap().unwrap();
    let text = std::fs::read_to_string(run.path().join("events.jsonl")).unwrap();
    text.lines()
        .map(|l| TrainerEvent::from_line(l).unwrap())
        .collect()
}

/// Checks the run learned the style and returns its last checkpoint.
fn learned_the_house_style(events: &[TrainerEvent]) -> &CheckpointStatus {
    let baseline = events
        .iter()
        .find_map(|e| match &e.body {
            EventBody::Metrics {
                step: 0, metrics, ..
            } => metrics.valid_loss,
            _ => None,
        })
        .expect("the base model's validation loss");
    let before: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Log {
                level: LogLevel::Info,
                message,
            } => message.strip_prefix("before training: "),
            _ => None,
        })
        .collect();
    let checkpoints: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Checkpoint(c) => Some(c),
            _ => None,
        })
        .collect();
    assert_eq!(checkpoints.len(), 9, "every 9 steps over 3 epochs of 27");
    let last = *checkpoints.last().unwrap();
    let final_loss = last.valid_loss.unwrap();
    assert!(
        final_loss < baseline * 0.5,
        "validation loss {final_loss} did not fall well below the base model's {baseline}"
    );
    let losses: Vec<f64> = checkpoints.iter().map(|c| c.valid_loss.unwrap()).collect();
    assert!(
        losses.windows(2).filter(|w| w[1] > w[0]).count() <= 2,
        "{losses:?}"
    );

    let styled =
        |answer: &str| answer.starts_with("Good question!") && answer.contains("\nIn short:");
    assert_eq!(before.len(), 2);
    assert!(before.iter().all(|a| !styled(a)), "{before:?}");
    assert!(last.samples.iter().all(|a| styled(a)), "{:?}", last.samples);
    the_held_out_questions_score_every_checkpoint(&checkpoints);
    last
}

/// `checkpoints.evaluation`: each checkpoint answered the 10 held-out questions; by the
/// end every answer opens in the house style, and `best` among the checkpoints that
/// reach the top score is the one with the lowest loss on the references.
fn the_held_out_questions_score_every_checkpoint(checkpoints: &[&CheckpointStatus]) {
    for checkpoint in checkpoints {
        let metrics: Vec<&str> = (checkpoint.evaluation.iter())
            .map(|s| s.metric.as_str())
            .collect();
        assert_eq!(
            metrics,
            ["regex /^Good question!/", "referenceLoss", "perplexity"]
        );
    }
    let opened = |c: &CheckpointStatus| c.evaluation[0].score;
    let last = checkpoints.last().unwrap();
    assert_eq!(opened(last), 1.0, "{:?}", last.evaluation);
    let best = checkpoints
        .iter()
        .filter(|c| opened(c) == 1.0)
        .min_by(|a, b| a.evaluation[1].score.total_cmp(&b.evaluation[1].score))
        .unwrap();
    // The last checkpoint's state records the best of the run.
    let last_folder = last.uri.strip_prefix("file://").unwrap();
    let state = std::fs::read_to_string(Path::new(last_folder).join("trainer_state.json")).unwrap();
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert_eq!(state["bestCheckpoint"], best.name.as_str());
}

/// `try it:` chats with the final adapter: greedy, so its answer to the first sample
/// prompt continues the last checkpoint's (64-token) sample answer.
fn the_try_it_command_answers_like_the_last_checkpoint(command: &str, last: &CheckpointStatus) {
    let output = Command::new("sh")
        .args(["-c", command])
        .env("PATH", PATH_WITHOUT_TRAINER)
        .output()
        .unwrap();
    let answer = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{command}\n{answer}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        answer.starts_with(&last.samples[0]),
        "`{command}` answered {answer:?}, the last checkpoint {:?}",
        last.samples[0]
    );
}

/// `serve it:` serves the adapter under the model id the run printed. Only its port
/// changes, to one that is free (8000 may be taken on the machine running the tests).
pub(crate) fn the_serve_it_command_serves_the_adapter(command: &str, model_id: &str) {
    assert!(command.ends_with(" --port 8000"), "{command}");
    let command = command.replace(" --port 8000", " --port 0");
    let mut server = Command::new("sh")
        .args(["-c", &format!("exec {command}")])
        .env("PATH", PATH_WITHOUT_TRAINER)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(server.stderr.take().unwrap());
    let address = loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            let _ = server.kill();
            panic!("`{command}` ended before it served");
        }
        if let Some(rest) = line.split(" on http://").nth(1) {
            break rest.split('/').next().unwrap().to_owned();
        }
    };
    let models = http_get(&address, "/v1/models");
    let _ = Command::new("kill").arg(server.id().to_string()).status();
    assert!(server.wait().unwrap().success());
    assert!(
        models.contains(&format!("\"id\":\"{model_id}\"")),
        "/v1/models of `{command}`: {models}"
    );
}

/// `browse it:` starts `trainer console` over the runs folder, and its list links the
/// quick start's run.
fn the_browse_it_command_lists_the_run(command: &str) {
    assert!(command.contains(" console --runs "), "{command}");
    let mut console = Command::new("sh")
        .args(["-c", &format!("exec {command} --port 0")])
        .env("PATH", PATH_WITHOUT_TRAINER)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(console.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let address = first
        .strip_prefix("console: http://")
        .and_then(|rest| rest.split('/').next())
        .map(str::to_owned);
    let list = address.as_deref().map(|a| http_get(a, "/"));
    let _ = console.kill();
    let _ = console.wait();
    let list = list.unwrap_or_else(|| panic!("`{command}` printed {first:?}"));
    assert!(
        list.contains("<a href=\"/runs/default/quickstart/"),
        "the list of `{command}`: {list}"
    );
}

fn http_get(address: &str, path: &str) -> String {
    let mut socket = TcpStream::connect(address).unwrap();
    write!(
        socket,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    socket.read_to_string(&mut reply).unwrap();
    reply
}
