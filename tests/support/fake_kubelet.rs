//! A fake kubelet and Job controller for the end-to-end tests: it runs each trainer
//! Job's pod as a real local process (the `trainer` binary), and moves Pods and Jobs
//! along as Kubernetes would, level-based, by polling the API server.
//!
//! What it does: one pod at a time per Job (parallelism 1), pods created with the
//! template's labels and an owner reference; volumes emulated with local folders
//! (Secret and ConfigMap volumes written out, emptyDirs created) and every mount path
//! in the container's args and env rewritten to its folder; `envFrom` Secrets as
//! environment; SIGTERM when the pod object goes away (Job deleted, suspended); pod
//! status `Running` then `Succeeded`/`Failed` with the container's exit code and a
//! `FallbackToLogsOnError` termination message (the output's tail); Job status
//! `active`/`ready`/`failed`/`succeeded` and `Complete`/`Failed` conditions following
//! `backoffLimit` and the `podFailurePolicy` rules the operator uses (`FailJob` on
//! exit codes, `Ignore` on the `DisruptionTarget` condition).
//!
//! What it does not: scheduling, resources, probes, init containers, more than one
//! container, `parallelism`/`completions` above 1, pod deletion after completion, or
//! the `Job` suspend flag other than "no new pods".

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;

/// Label the Job controller puts on its pods.
const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
/// Bytes of output kept as a failed container's termination message.
const MESSAGE_BYTES: usize = 4096;

/// A pod's process on this machine.
struct RunningPod {
    child: Child,
    log: PathBuf,
    terminating: bool,
}

/// The kubelet; dropping it stops its loop and kills what still runs.
pub struct FakeKubelet {
    running: Arc<Mutex<HashMap<String, RunningPod>>>,
    task: tokio::task::JoinHandle<()>,
    client: Client,
    namespace: String,
}

impl FakeKubelet {
    /// Starts acting on the Jobs in `namespace`, running pods with `trainer` (the
    /// binary's path) as their container's entry point, with `extra_env` added.
    pub fn start(
        client: Client,
        namespace: &str,
        trainer: PathBuf,
        extra_env: Vec<(String, String)>,
        scratch: &Path,
    ) -> FakeKubelet {
        let running: Arc<Mutex<HashMap<String, RunningPod>>> = Arc::default();
        let worker = Worker {
            client: client.clone(),
            namespace: namespace.to_owned(),
            trainer,
            extra_env,
            scratch: scratch.to_owned(),
            running: running.clone(),
            started: Mutex::default(),
        };
        let task = tokio::spawn(async move {
            loop {
                if let Err(error) = worker.tick().await {
                    eprintln!("fake kubelet: {error}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        FakeKubelet {
            running,
            task,
            client,
            namespace: namespace.to_owned(),
        }
    }

    /// Evicts a pod the way a node drain or preemption does: the pod gets the
    /// `DisruptionTarget` condition and its container SIGTERM.
    pub async fn evict(&self, pod_name: &str) {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let patch = json!({"status": {"conditions": [{
            "type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI",
            "message": "evicted by the test", "lastTransitionTime": now(),
        }]}});
        pods.patch_status(pod_name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("marking the pod disrupted");
        let mut running = self.running.lock().unwrap();
        if let Some(pod) = running.get_mut(pod_name) {
            terminate(pod);
        }
    }

    /// Kills a pod's process with SIGKILL (a crashed node or OOM kill).
    pub fn kill(&self, pod_name: &str) {
        if let Some(pod) = self.running.lock().unwrap().get_mut(pod_name) {
            let _ = pod.child.kill();
        }
    }

    /// Names of the pods whose processes run now.
    pub fn running_pods(&self) -> Vec<String> {
        let mut names: Vec<String> = self.running.lock().unwrap().keys().cloned().collect();
        names.sort();
        names
    }

    /// The output of a pod's process so far.
    pub fn logs(&self, pod_name: &str) -> String {
        fs::read_to_string(self.log_path(pod_name)).unwrap_or_default()
    }

    fn log_path(&self, pod_name: &str) -> PathBuf {
        self.running
            .lock()
            .unwrap()
            .get(pod_name)
            .map(|p| p.log.clone())
            .unwrap_or_default()
    }
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        self.task.abort();
        for pod in self.running.lock().unwrap().values_mut() {
            let _ = pod.child.kill();
            let _ = pod.child.wait();
        }
    }
}

struct Worker {
    client: Client,
    namespace: String,
    trainer: PathBuf,
    extra_env: Vec<(String, String)>,
    scratch: PathBuf,
    running: Arc<Mutex<HashMap<String, RunningPod>>>,
    /// Pods started per Job name, so a re-created Job's pods get new names (as the
    /// random suffixes of real pod names are new).
    started: Mutex<HashMap<String, usize>>,
}

impl Worker {
    async fn tick(&self) -> Result<(), kube::Error> {
        let jobs_api: Api<Job> = Api::namespaced(self.client.clone(), &self.namespace);
        let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let jobs = jobs_api.list(&ListParams::default()).await?.items;
        let pods = pods_api.list(&ListParams::default()).await?.items;

        // Containers whose pod is gone or going get SIGTERM; exited ones are recorded.
        let mut exited = Vec::new();
        {
            let mut running = self.running.lock().unwrap();
            for (name, process) in running.iter_mut() {
                let pod = pods.iter().find(|p| &p.name_any() == name);
                if (pod.is_none() || pod.is_some_and(|p| p.metadata.deletion_timestamp.is_some()))
                    && !process.terminating
                {
                    terminate(process);
                }
                if let Ok(Some(status)) = process.child.try_wait() {
                    let code = status.code().unwrap_or(137);
                    exited.push((name.clone(), code, tail(&process.log)));
                }
            }
            for (name, _, _) in &exited {
                running.remove(name);
            }
        }
        for (name, code, message) in exited {
            if pods.iter().any(|p| p.name_any() == name) {
                let phase = if code == 0 { "Succeeded" } else { "Failed" };
                let patch = json!({"status": {"phase": phase, "containerStatuses": [{
                    "name": "trainer", "image": "trainer", "imageID": "", "ready": false,
                    "restartCount": 0,
                    "state": {"terminated": {"exitCode": code, "reason": if code == 0 {"Completed"} else {"Error"},
                        "message": message, "finishedAt": now()}},
                }]}});
                pods_api
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
        }

        let pods = pods_api.list(&ListParams::default()).await?.items;
        for job in jobs {
            if job.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let job_name = job.name_any();
            let own: Vec<&Pod> = pods
                .iter()
                .filter(|p| p.labels().get(JOB_NAME_LABEL) == Some(&job_name))
                .collect();
            let status = job_status(&job, &own);
            let finished = status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.status == "True" && (c.type_ == "Complete" || c.type_ == "Failed"));
            let suspended = job.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false);
            let mut status = status;
            if !finished && !suspended && status.active.unwrap_or(0) == 0 {
                let index = {
                    let mut started = self.started.lock().unwrap();
                    let count = started.entry(job_name.clone()).or_insert(0);
                    *count += 1;
                    *count - 1
                };
                let pod = self.start_pod(&job, index).await?;
                status.active = Some(1);
                status.ready = Some(1);
                if status.start_time.is_none() {
                    status.start_time = pod.metadata.creation_timestamp.clone();
                }
            }
            if job.status.as_ref() != Some(&status) {
                jobs_api
                    .patch_status(
                        &job_name,
                        &PatchParams::default(),
                        &Patch::Merge(&json!({"status": status})),
                    )
                    .await?;
            }
        }
        Ok(())
    }

    /// Creates the pod object, lays out its volumes and starts its process.
    async fn start_pod(&self, job: &Job, index: usize) -> Result<Pod, kube::Error> {
        let job_name = job.name_any();
        let template = job.spec.as_ref().unwrap().template.clone();
        let mut labels = template
            .metadata
            .clone()
            .unwrap_or_default()
            .labels
            .unwrap_or_default();
        labels.insert(JOB_NAME_LABEL.to_owned(), job_name.clone());
        let pod_name = format!("{job_name}-{index}");
        let pod = Pod {
            metadata: kube::api::ObjectMeta {
                name: Some(pod_name.clone()),
                namespace: Some(self.namespace.clone()),
                labels: Some(labels),
                owner_references: job.controller_owner_ref(&()).map(|o| vec![o]),
                ..Default::default()
            },
            spec: template.spec.clone(),
            status: None,
        };
        let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let created = pods_api.create(&PostParams::default(), &pod).await?;
        let spec = template.spec.unwrap();
        let container = &spec.containers[0];

        let root = self.scratch.join(&pod_name);
        fs::create_dir_all(&root).unwrap();
        let mut mounts: Vec<(String, PathBuf)> = Vec::new();
        for volume in spec.volumes.iter().flatten() {
            for mount in container.volume_mounts.iter().flatten() {
                if mount.name == volume.name {
                    mounts.push((mount.mount_path.clone(), root.join(&volume.name)));
                }
            }
        }
        // Longest mount paths first, so /var/run/anneal/job is not taken for /var/run.
        mounts.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
        let local = |value: &str| {
            for (path, folder) in &mounts {
                if let Some(rest) = value.strip_prefix(path.as_str()) {
                    return format!("{}{rest}", folder.display());
                }
            }
            value.to_owned()
        };
        // Mounted files that name mount paths (the pod's manifest names its ConfigMap
        // dataset's path) are rewritten too.
        let local_text = |bytes: Vec<u8>| match String::from_utf8(bytes) {
            Ok(mut text) => {
                // Through placeholders, so a folder under /tmp is not rewritten again
                // for the pod's own /tmp mount.
                for (index, (path, _)) in mounts.iter().enumerate() {
                    text = text.replace(path.as_str(), &format!("\u{0}{index}\u{0}"));
                }
                for (index, (_, folder)) in mounts.iter().enumerate() {
                    text =
                        text.replace(&format!("\u{0}{index}\u{0}"), &folder.display().to_string());
                }
                text.into_bytes()
            }
            Err(binary) => binary.into_bytes(),
        };
        for volume in spec.volumes.iter().flatten() {
            let folder = root.join(&volume.name);
            fs::create_dir_all(&folder).unwrap();
            if let Some(secret) = &volume.secret {
                let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
                let found = api.get(secret.secret_name.as_deref().unwrap()).await?;
                for (key, value) in found.data.unwrap_or_default() {
                    fs::write(folder.join(key), local_text(value.0)).unwrap();
                }
            }
            if let Some(config_map) = &volume.config_map {
                let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
                let found = api.get(&config_map.name).await?;
                for (key, value) in found.data.unwrap_or_default() {
                    fs::write(folder.join(key), value).unwrap();
                }
            }
        }

        let mut command = Command::new(&self.trainer);
        command.env_clear();
        command.env("PATH", std::env::var("PATH").unwrap_or_default());
        for from in container.env_from.iter().flatten() {
            if let Some(secret_ref) = &from.secret_ref {
                let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
                let found = api.get(&secret_ref.name).await?;
                for (key, value) in found.data.unwrap_or_default() {
                    command.env(key, String::from_utf8_lossy(&value.0).into_owned());
                }
            }
        }
        for variable in container.env.iter().flatten() {
            if let Some(value) = &variable.value {
                command.env(&variable.name, local(value));
            }
        }
        for (key, value) in &self.extra_env {
            command.env(key, value);
        }
        let args: Vec<String> = container.args.iter().flatten().map(|a| local(a)).collect();
        command.args(&args);
        let log = root.join("output.log");
        let output = fs::File::create(&log).unwrap();
        command
            .stdin(Stdio::null())
            .stdout(output.try_clone().unwrap())
            .stderr(output);
        let child = command.spawn().expect("starting the trainer process");
        self.running.lock().unwrap().insert(
            pod_name.clone(),
            RunningPod {
                child,
                log,
                terminating: false,
            },
        );
        let patch = json!({"status": {"phase": "Running", "startTime": now(), "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": now()}]}});
        pods_api
            .patch_status(&pod_name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(created)
    }
}

/// The Job's status from its pods, as the Job controller computes it.
fn job_status(job: &Job, pods: &[&Pod]) -> JobStatus {
    let mut status = job.status.clone().unwrap_or_default();
    let spec = job.spec.clone().unwrap_or_default();
    let phase = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default()
    };
    let disrupted = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c.type_ == "DisruptionTarget" && c.status == "True")
            })
    };
    let exit_code = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|c| c.first())
            .and_then(|c| c.state.as_ref())
            .and_then(|s| s.terminated.as_ref())
            .map(|t| t.exit_code)
    };
    let active = pods
        .iter()
        .filter(|p| !matches!(phase(p).as_str(), "Succeeded" | "Failed"))
        .count();
    let succeeded = pods.iter().filter(|p| phase(p) == "Succeeded").count();
    let failed_pods: Vec<&&Pod> = pods.iter().filter(|p| phase(p) == "Failed").collect();
    let mut counted_failures = 0;
    let mut fail_job = None;
    for pod in &failed_pods {
        let mut ignored = false;
        for rule in spec.pod_failure_policy.iter().flat_map(|p| p.rules.iter()) {
            let matches = match (&rule.on_exit_codes, &rule.on_pod_conditions) {
                (Some(codes), _) => exit_code(pod).is_some_and(|code| {
                    let listed = codes.values.contains(&code);
                    if codes.operator == "In" {
                        listed
                    } else {
                        !listed
                    }
                }),
                (None, Some(conditions)) => conditions
                    .iter()
                    .any(|c| c.type_ == "DisruptionTarget" && disrupted(pod)),
                _ => false,
            };
            if matches {
                match rule.action.as_str() {
                    "FailJob" => fail_job = Some(exit_code(pod).unwrap_or_default()),
                    "Ignore" => ignored = true,
                    _ => {}
                }
                break;
            }
        }
        if !ignored {
            counted_failures += 1;
        }
    }
    status.active = Some(active as i32);
    status.ready = Some(active as i32);
    status.succeeded = Some(succeeded as i32);
    status.failed = Some(counted_failures);
    let mut condition = None;
    if succeeded > 0 {
        condition = Some((
            "Complete",
            "CompletionsReached",
            "Reached expected number of succeeded pods".to_owned(),
        ));
    } else if let Some(code) = fail_job {
        condition = Some((
            "Failed",
            "PodFailurePolicy",
            format!("Container trainer for pod exited with code {code} matching FailJob rule"),
        ));
    } else if counted_failures > spec.backoff_limit.unwrap_or(6) {
        condition = Some((
            "Failed",
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit".to_owned(),
        ));
    }
    if let Some((type_, reason, message)) = condition
        && !status.conditions.iter().flatten().any(|c| c.type_ == type_)
    {
        status
            .conditions
            .get_or_insert_with(Vec::new)
            .push(JobCondition {
                type_: type_.to_owned(),
                status: "True".to_owned(),
                reason: Some(reason.to_owned()),
                message: Some(message),
                ..JobCondition::default()
            });
        if type_ == "Complete" {
            status.completion_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                anneal_crds::jiff::Timestamp::now(),
            ));
        }
        status.active = Some(0);
        status.ready = Some(0);
    }
    status
}

fn terminate(process: &mut RunningPod) {
    process.terminating = true;
    let _ = Command::new("kill")
        .args(["-TERM", &process.child.id().to_string()])
        .status();
}

fn tail(log: &Path) -> String {
    let text = fs::read(log).unwrap_or_default();
    let start = text.len().saturating_sub(MESSAGE_BYTES);
    String::from_utf8_lossy(&text[start..]).into_owned()
}

fn now() -> String {
    anneal_crds::jiff::Timestamp::now()
        .round(anneal_crds::jiff::Unit::Second)
        .unwrap()
        .to_string()
}
