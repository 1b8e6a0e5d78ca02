//! `spec.tracking.mlflow` against a real MLflow tracking server (`mlflow server` from
//! PyPI, which scripts/test.sh installs into .venv) started on loopback: the run, its
//! parameters, every step's training loss, each checkpoint's answers and the loss
//! chart are read back through MLflow's own REST API.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anneal_crds::events::EventBody;
use serde_json::{Value, json};

use crate::support::http_runtime;
use crate::train_cli::{events, expect, job_dir, repo, trainer_train};

/// `mlflow server`, killed when dropped.
struct Mlflow {
    child: Child,
    url: String,
}

impl Drop for Mlflow {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mlflow_program() -> PathBuf {
    let program = std::env::var_os("ANNEAL_MLFLOW")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/bin/mlflow"));
    assert!(
        program.is_file(),
        "{} is missing: run ./scripts/test.sh (it installs the Python test tools into .venv), or set ANNEAL_MLFLOW to an mlflow executable",
        program.display()
    );
    program
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET` or `POST` (with `body`) on the server's REST API: the answer's JSON.
fn api(url: &str, path: &str, body: Option<Value>) -> Value {
    http_runtime().block_on(async {
        let client = reqwest::Client::new();
        let request = match body {
            Some(body) => client
                .post(format!("{url}/api/2.0/mlflow/{path}"))
                .header("content-type", "application/json")
                .body(body.to_string()),
            None => client.get(format!("{url}/api/2.0/mlflow/{path}")),
        };
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).unwrap()
    })
}

fn start_mlflow(store: &std::path::Path) -> Mlflow {
    let port = free_port();
    let child = Command::new(mlflow_program())
        .args([
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--workers",
            "1",
        ])
        .arg("--backend-store-uri")
        .arg(format!("sqlite:///{}", store.join("mlflow.db").display()))
        .arg("--artifacts-destination")
        .arg(store.join("artifacts"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Mlflow {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let started = Instant::now();
    loop {
        let up = http_runtime().block_on(async {
            reqwest::get(format!("{}/health", server.url))
                .await
                .is_ok_and(|r| r.status().is_success())
        });
        if up {
            return server;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "mlflow server did not start"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn a_run_is_logged_to_mlflow_with_its_parameters_metrics_answers_and_chart() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_mlflow(dir.path());
    let manifest = job_dir(dir.path(), None);
    let text = std::fs::read_to_string(&manifest).unwrap()
        + &format!(
            "  tracking: {{mlflow: {{uri: \"{}\", experiment: anneal-tests}}}}\n",
            server.url
        );
    std::fs::write(&manifest, text).unwrap();
    let output = trainer_train(&manifest, &dir.path().join("out"), &[])
        .output()
        .unwrap();
    expect(&output, 0);
    let trained = events(&output.stdout);

    let experiment = api(
        &server.url,
        "experiments/get-by-name?experiment_name=anneal-tests",
        None,
    );
    let experiment_id = experiment["experiment"]["experiment_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let runs = api(
        &server.url,
        "runs/search",
        Some(
            json!({"experiment_ids": [experiment_id], "filter": "tags.`anneal.run` = 'team-a/cli/r1'"}),
        ),
    );
    let runs = runs["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let run = &runs[0];
    assert_eq!(run["info"]["status"], "FINISHED");
    assert_eq!(run["info"]["run_name"], "cli/r1");
    let param = |key: &str| {
        (run["data"]["params"].as_array().unwrap().iter())
            .find(|p| p["key"] == key)
            .map(|p| p["value"].as_str().unwrap().to_owned())
    };
    assert_eq!(param("base_model").as_deref(), Some("anneal-tiny"));
    assert_eq!(param("learningRate").as_deref(), Some("0.003"));
    let tag = |key: &str| {
        (run["data"]["tags"].as_array().unwrap().iter())
            .find(|t| t["key"] == key)
            .map(|t| t["value"].as_str().unwrap().to_owned())
    };
    assert_eq!(
        tag("anneal.model_id").as_deref(),
        Some("ft:anneal-tiny:cli:ckpt-10")
    );

    // Every logged training loss, at its step.
    let run_id = run["info"]["run_id"].as_str().unwrap();
    let history = api(
        &server.url,
        &format!("metrics/get-history?run_id={run_id}&metric_key=train_loss"),
        None,
    );
    let mut logged: Vec<(u64, f64)> = (history["metrics"].as_array().unwrap().iter())
        .map(|m| (m["step"].as_u64().unwrap(), m["value"].as_f64().unwrap()))
        .collect();
    logged.sort_by_key(|(step, _)| *step);
    let expected: Vec<(u64, f64)> = trained
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Metrics { step, metrics, .. } => metrics.train_loss.map(|l| (*step, l)),
            _ => None,
        })
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(logged.len(), expected.len());
    for ((step, value), (want_step, want)) in logged.iter().zip(&expected) {
        assert_eq!(step, want_step);
        assert!(
            (value - want).abs() < 1e-6 * want.abs().max(1.0),
            "{value} vs {want}"
        );
    }

    // The loss chart and each checkpoint's answers among its artifacts.
    let listed = api(
        &server.url,
        &format!("artifacts/list?run_id={run_id}"),
        None,
    );
    let files: Vec<&str> = (listed["files"].as_array().unwrap().iter())
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert!(
        files.contains(&"loss.svg") && files.contains(&"checkpoints"),
        "{files:?}"
    );
    let checkpoints = api(
        &server.url,
        &format!("artifacts/list?run_id={run_id}&path=checkpoints"),
        None,
    );
    let saved = trained
        .iter()
        .filter(|e| matches!(e.body, EventBody::Checkpoint(_)))
        .count();
    assert_eq!(checkpoints["files"].as_array().unwrap().len(), saved);
}

#[test]
fn an_unreachable_server_does_not_stop_training() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let manifest = job_dir(dir.path(), None);
    let text = std::fs::read_to_string(&manifest).unwrap()
        + &format!("  tracking: {{mlflow: {{uri: \"http://127.0.0.1:{port}\"}}}}\n");
    std::fs::write(&manifest, text).unwrap();
    let output = trainer_train(&manifest, &dir.path().join("out"), &[])
        .output()
        .unwrap();
    expect(&output, 0);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "warning: MLflow tracking at http://127.0.0.1:{port}: "
        )),
        "{stderr}"
    );
}
