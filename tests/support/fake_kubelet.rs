//! A fake kubelet and Job and Deployment controllers for the end-to-end tests: it runs
//! each trainer Job's pod, and (once `run_deployments` is called) each Deployment's
//! pods, as real local processes (the `trainer` binary), and moves Pods, Jobs and
//! Deployments along as Kubernetes would, level-based, by polling the API server.
//!
//! What it does: one pod at a time per Job (parallelism 1), pods created with the
//! template's labels and an owner reference; volumes emulated with local folders
//! (Secret and ConfigMap volumes written out, emptyDirs created) and every mount path
//! in the container's args and env rewritten to its folder; `envFrom` Secrets as
//! environment; SIGTERM when the pod object goes away (Job or Deployment deleted, Job
//! suspended, pod deleted); pod status `Running` then `Succeeded`/`Failed` with the
//! container's exit code and its termination message (the file at its
//! `terminationMessagePath`, which env values naming it are rewritten to, else with
//! `FallbackToLogsOnError` the output's tail); Job status `active`/`ready`/`failed`/`succeeded` and
//! `Complete`/`Failed` conditions following `backoffLimit` and the `podFailurePolicy`
//! rules the operator uses (`FailJob` on exit codes, `Ignore` on the
//! `DisruptionTarget` condition), and the Job controller's back-off before it
//! replaces a failed pod: 10 s after the first counted failure, doubling, at most
//! 6 minutes (a pod failed with `DisruptionTarget` is replaced at once). The back-off
//! is what gives the operator time to end a job whose failure a retry would repeat.
//!
//! Deployments (after `run_deployments`): `spec.replicas` pods, each labelled with the
//! template's labels and a `pod-template-hash` of the template, owned by the
//! Deployment itself. Each pod gets an IP of its own on the loopback interface
//! (`127.X.Y.Z`, in `status.podIP`), and its `--host` argument is rewritten to it, so
//! every pod listens on its container port as in a cluster and the operator reaches
//! it at `podIP:port`; `deployment_url` tells a test where a pod listens. The
//! readiness probe's HTTP path is polled every tick and sets the pod's
//! `ContainersReady` condition, and `Ready` once every `readinessGates` condition
//! (which a controller sets) is `True` too; conditions are written with strategic
//! merge patches, which keep the other writers' conditions. The Deployment's status (`replicas`, `updatedReplicas`,
//! `readyReplicas`, `availableReplicas`, `unavailableReplicas`, `observedGeneration`,
//! `Available` and `Progressing` conditions) is written from its pods as the
//! Deployment controller writes it. Extra pods, and pods of an earlier template, are
//! deleted (their processes get SIGTERM) and replaced.
//!
//! What it does not: scheduling, resources, init containers, more than one container,
//! a container `command` (the entry point is always `trainer`), `parallelism`/
//! `completions` above 1, pod deletion after completion, or the `Job` suspend flag
//! other than "no new pods". For Deployments: no ReplicaSets (pods are owned by the
//! Deployment), no rolling update (a new template replaces every old pod at once, as
//! `Recreate` would), no `minReadySeconds` or progress deadline, startup and liveness
//! probes are not run and readiness is probed every tick rather than every
//! `periodSeconds`; a container that exits is neither restarted nor its pod replaced
//! (the pod stays `Succeeded`/`Failed` with its exit code) unless a test restarts it
//! (`restart_container`); a Deployment whose pods
//! have init containers or a `command` (runtime `vllm`) gets no pods. Free ports are
//! found by binding and releasing one, so another process could take it first.

use std::collections::HashMap;
use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentSpec, DeploymentStatus,
};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, PodSpec, Secret};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;

/// Label the Job controller puts on its pods.
const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
/// Label the Deployment controller puts on its pods: a hash of their template.
const TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
/// Bytes of output kept as a failed container's termination message.
const MESSAGE_BYTES: usize = 4096;
/// The Job controller's back-off after a pod's first counted failure; it doubles with
/// each further one, up to `MAX_RETRY_BACKOFF`.
const RETRY_BACKOFF: Duration = Duration::from_secs(10);
const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(360);
/// How long a readiness probe waits for an answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// A pod's process on this machine.
struct RunningPod {
    child: Child,
    log: PathBuf,
    /// The container's termination message file (its `terminationMessagePath`).
    termination_log: PathBuf,
    terminating: bool,
    /// Killed as the kernel's OOM killer does at the memory limit (`OOMKilled`).
    oom_killed: bool,
    container: String,
    /// Set for a Deployment's pod.
    serving: Option<ServingPod>,
}

/// Where a Deployment's pod listens and what its conditions last said.
#[derive(Clone)]
struct ServingPod {
    deployment: String,
    /// Its own loopback address (`status.podIP`).
    ip: String,
    /// Its container port, where it listens on `ip`.
    port: u16,
    /// The readiness probe's port and path, if it has an HTTP probe.
    probe: Option<(u16, String)>,
    /// The condition types of its `readinessGates`.
    gates: Vec<String>,
    containers_ready: bool,
    ready: bool,
    /// Times its container was restarted ([`FakeKubelet::restart_container`]).
    restarts: u32,
}

/// The kubelet; dropping it stops its loop and kills what still runs.
pub struct FakeKubelet {
    running: Arc<Mutex<HashMap<String, RunningPod>>>,
    extra_env: Arc<Mutex<Vec<(String, String)>>>,
    exits: Arc<Mutex<HashMap<String, i32>>>,
    deployments: Arc<AtomicBool>,
    /// Deployment pods whose container the next tick restarts.
    restarts: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
    client: Client,
    namespace: String,
}

impl FakeKubelet {
    /// Adds `key=value` to the environment of every container started from now on
    /// (fault injection such as `ANNEAL_FAULT_NAN_LOSS_AT_STEP`).
    pub fn add_env(&self, key: &str, value: &str) {
        self.extra_env
            .lock()
            .unwrap()
            .push((key.to_owned(), value.to_owned()));
    }

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
        let exits: Arc<Mutex<HashMap<String, i32>>> = Arc::default();
        let deployments: Arc<AtomicBool> = Arc::default();
        let restarts: Arc<Mutex<Vec<String>>> = Arc::default();
        let extra_env = Arc::new(Mutex::new(extra_env));
        // The readiness prober's client, like every HTTP client here, needs ring installed.
        anneal_crds::storage::install_crypto_provider();
        let worker = Worker {
            client: client.clone(),
            namespace: namespace.to_owned(),
            trainer,
            extra_env: extra_env.clone(),
            scratch: scratch.to_owned(),
            running: running.clone(),
            exits: exits.clone(),
            deployments: deployments.clone(),
            restarts: restarts.clone(),
            started: Mutex::default(),
            backoff: Mutex::default(),
            http: reqwest::Client::builder()
                .timeout(PROBE_TIMEOUT)
                .build()
                .unwrap(),
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
            extra_env,
            exits,
            deployments,
            restarts,
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

    /// From now on, also runs the pods of the Deployments in the namespace (tests that
    /// write Deployment statuses themselves leave this off).
    pub fn run_deployments(&self) {
        self.deployments.store(true, Ordering::SeqCst);
    }

    /// [`Self::deployment_url`] as a function that outlives this borrow, for what
    /// stands in for cluster DNS (the console's way to a deployment).
    pub fn deployment_urls(&self) -> impl Fn(&str) -> Option<String> + Send + Sync + 'static {
        let running = self.running.clone();
        move |deployment| serving_url(&running.lock().unwrap(), deployment)
    }

    /// `http://POD_IP:PORT` where a running pod of `deployment` serves its container
    /// port (the first such pod by name); `None` when none runs.
    pub fn deployment_url(&self, deployment: &str) -> Option<String> {
        serving_url(&self.running.lock().unwrap(), deployment)
    }
}

/// Where the first running pod of `deployment`, by name, serves.
fn serving_url(running: &HashMap<String, RunningPod>, deployment: &str) -> Option<String> {
    let mut pods: Vec<(&String, &RunningPod)> = running
        .iter()
        .filter(|(_, p)| {
            p.serving
                .as_ref()
                .is_some_and(|s| s.deployment == deployment)
        })
        .collect();
    pods.sort_by_key(|(name, _)| name.as_str());
    let (_, pod) = pods.first()?;
    let serving = pod.serving.as_ref().unwrap();
    Some(format!("http://{}:{}", serving.ip, serving.port))
}

impl FakeKubelet {
    /// The exit code of a pod's process once it has exited (137 for a signal).
    pub fn exit_code(&self, pod_name: &str) -> Option<i32> {
        self.exits.lock().unwrap().get(pod_name).copied()
    }

    /// Kills a pod's process with SIGKILL (a crashed node or OOM kill).
    pub fn kill(&self, pod_name: &str) {
        if let Some(pod) = self.running.lock().unwrap().get_mut(pod_name) {
            let _ = pod.child.kill();
        }
    }

    /// Kills a pod's process with SIGKILL and reports its container `OOMKilled`, as
    /// the kernel does to a container over its memory limit.
    pub fn oom_kill(&self, pod_name: &str) {
        if let Some(pod) = self.running.lock().unwrap().get_mut(pod_name) {
            pod.oom_killed = true;
            let _ = pod.child.kill();
        }
    }

    /// Restarts a Deployment pod's container, as the kubelet does after a crash or a
    /// failed liveness probe: its process is killed and started again in the same pod
    /// (same IP, volumes laid out afresh, so ConfigMaps as they are now),
    /// `restartCount` goes up and the pod is not Ready until its readiness probe
    /// passes again; its readiness gates' conditions stay as they were.
    pub fn restart_container(&self, pod_name: &str) {
        self.restarts.lock().unwrap().push(pod_name.to_owned());
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
    extra_env: Arc<Mutex<Vec<(String, String)>>>,
    scratch: PathBuf,
    running: Arc<Mutex<HashMap<String, RunningPod>>>,
    exits: Arc<Mutex<HashMap<String, i32>>>,
    deployments: Arc<AtomicBool>,
    restarts: Arc<Mutex<Vec<String>>>,
    /// Pods started per Job (and per Deployment), so a re-created Job's pods get new
    /// names (as the random suffixes of real pod names are new).
    started: Mutex<HashMap<String, usize>>,
    /// Per Job uid: its counted pod failures and when its next pod may start.
    backoff: Mutex<HashMap<String, (u32, Instant)>>,
    /// For readiness probes.
    http: reqwest::Client,
}

impl Worker {
    async fn tick(&self) -> Result<(), kube::Error> {
        let jobs_api: Api<Job> = Api::namespaced(self.client.clone(), &self.namespace);
        let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        self.restart_requested(&pods_api).await?;
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
                    let reason = match (code, process.oom_killed) {
                        (0, _) => "Completed",
                        (_, true) => "OOMKilled",
                        (_, false) => "Error",
                    };
                    exited.push((
                        name.clone(),
                        process.container.clone(),
                        (code, reason),
                        termination_message(process, code),
                    ));
                }
            }
            let mut exits = self.exits.lock().unwrap();
            for (name, _, (code, _), _) in &exited {
                running.remove(name);
                exits.insert(name.clone(), *code);
            }
        }
        for (name, container, (code, reason), message) in exited {
            if let Some(pod) = pods.iter().find(|p| p.name_any() == name) {
                if code != 0 {
                    self.back_off(pod);
                }
                let phase = if code == 0 { "Succeeded" } else { "Failed" };
                let patch = json!({"status": {"phase": phase, "containerStatuses": [{
                    "name": container, "image": "trainer", "imageID": "", "ready": false,
                    "restartCount": 0,
                    "state": {"terminated": {"exitCode": code, "reason": reason,
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
            if !finished
                && !suspended
                && status.active.unwrap_or(0) == 0
                && self.backoff_over(job.uid())
                && self.still_there(&jobs_api, &job).await?
            {
                let index = self.next_index(&job_name);
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

        if self.deployments.load(Ordering::SeqCst) {
            self.probe_readiness().await?;
            let pods = pods_api.list(&ListParams::default()).await?.items;
            let deployments_api: Api<Deployment> =
                Api::namespaced(self.client.clone(), &self.namespace);
            for deployment in deployments_api.list(&ListParams::default()).await?.items {
                if deployment.metadata.deletion_timestamp.is_none() {
                    self.sync_deployment(&deployment, &pods).await?;
                }
            }
        }
        Ok(())
    }

    /// Restarts the containers [`FakeKubelet::restart_container`] asked for.
    async fn restart_requested(&self, pods_api: &Api<Pod>) -> Result<(), kube::Error> {
        let requested = std::mem::take(&mut *self.restarts.lock().unwrap());
        for name in requested {
            let Some(mut process) = self.running.lock().unwrap().remove(&name) else {
                continue;
            };
            let _ = process.child.kill();
            let _ = process.child.wait();
            let Some(mut serving) = process.serving.take() else {
                continue;
            };
            let Some(pod) = pods_api.get_opt(&name).await? else {
                continue;
            };
            serving.restarts += 1;
            serving.containers_ready = false;
            serving.ready = false;
            let restarts = serving.restarts;
            let spec = pod.spec.unwrap_or_default();
            self.spawn_container(&name, &spec, Some(serving)).await?;
            let patch = json!({"status": {"conditions": [
                {"type": "Ready", "status": "False", "lastTransitionTime": now()},
                {"type": "ContainersReady", "status": "False", "lastTransitionTime": now()}],
                "containerStatuses": [{
                    "name": process.container, "image": "trainer", "imageID": "",
                    "ready": false, "started": true, "restartCount": restarts,
                    "state": {"running": {"startedAt": now()}}}]}});
            pods_api
                .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                .await?;
        }
        Ok(())
    }

    /// Probes the readiness of each running Deployment pod and writes its
    /// `ContainersReady` and `Ready` conditions when they change; `Ready` also waits
    /// for the pod's readiness gates.
    async fn probe_readiness(&self) -> Result<(), kube::Error> {
        let probed: Vec<(String, String, ServingPod)> = self
            .running
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, p)| !p.terminating)
            .filter_map(|(name, p)| Some((name.clone(), p.container.clone(), p.serving.clone()?)))
            .collect();
        let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        for (name, container, serving) in probed {
            // No HTTP probe: ready once running, as the kubelet has it.
            let containers_ready = match &serving.probe {
                Some((port, path)) => self
                    .http
                    .get(format!("http://{}:{port}{path}", serving.ip))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success()),
                None => true,
            };
            let gates_open = serving.gates.is_empty()
                || match pods_api.get_opt(&name).await? {
                    Some(pod) => gates_true(&pod, &serving.gates),
                    None => continue,
                };
            let ready = containers_ready && gates_open;
            if (containers_ready, ready) == (serving.containers_ready, serving.ready) {
                continue;
            }
            let status = |flag: bool| if flag { "True" } else { "False" };
            let patch = json!({"status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": status(ready), "lastTransitionTime": now()},
                {"type": "ContainersReady", "status": status(containers_ready),
                 "lastTransitionTime": now()}],
                "containerStatuses": [{
                    "name": container, "image": "trainer", "imageID": "",
                    "ready": containers_ready, "started": true,
                    "restartCount": serving.restarts,
                    "state": {"running": {"startedAt": now()}}}]}});
            match pods_api
                .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                .await
            {
                Ok(_) => {}
                // Deleted since: its process gets SIGTERM next tick.
                Err(kube::Error::Api(status)) if status.code == 404 => continue,
                Err(error) => return Err(error),
            }
            if let Some(pod) = self.running.lock().unwrap().get_mut(&name)
                && let Some(serving) = pod.serving.as_mut()
            {
                serving.containers_ready = containers_ready;
                serving.ready = ready;
            }
        }
        Ok(())
    }

    /// Moves a Deployment toward `spec.replicas` pods of its current template and
    /// writes its status from them, as the Deployment controller does.
    async fn sync_deployment(
        &self,
        deployment: &Deployment,
        pods: &[Pod],
    ) -> Result<(), kube::Error> {
        let spec = deployment.spec.clone().unwrap_or_default();
        let wanted = usize::try_from(spec.replicas.unwrap_or(1)).unwrap_or(0);
        let (current, started) = self
            .scale_to_template(deployment, &spec, pods, wanted)
            .await?;
        let status = deployment_status(deployment, &spec, &current, started, wanted);
        self.write_deployment_status(deployment, status).await
    }

    /// Deletes the Deployment's pods of an earlier template and those beyond `wanted`,
    /// and starts pods up to it where the fake can run them: the pods kept, and how
    /// many were started.
    async fn scale_to_template<'a>(
        &self,
        deployment: &Deployment,
        spec: &DeploymentSpec,
        pods: &'a [Pod],
        wanted: usize,
    ) -> Result<(Vec<&'a Pod>, usize), kube::Error> {
        let hash = template_hash(&spec.template);
        let uid = deployment.metadata.uid.clone();
        let mut own: Vec<&Pod> = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| {
                p.owner_references()
                    .iter()
                    .any(|o| o.controller == Some(true) && Some(&o.uid) == uid.as_ref())
            })
            .collect();
        own.sort_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0));

        // Pods of an earlier template go, then the newest beyond `replicas`.
        let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let (current, old): (Vec<&Pod>, Vec<&Pod>) = own
            .into_iter()
            .partition(|p| p.labels().get(TEMPLATE_HASH_LABEL) == Some(&hash));
        let extra = current.len().saturating_sub(wanted);
        let (current, surplus) = current.split_at(current.len() - extra);
        for pod in old.iter().chain(surplus) {
            pods_api
                .delete(&pod.name_any(), &DeleteParams::default())
                .await?;
        }
        let runnable = spec.template.spec.as_ref().is_some_and(|s| {
            s.init_containers.as_ref().is_none_or(Vec::is_empty)
                && s.containers.len() == 1
                && s.containers[0].command.is_none()
        });
        let mut started = 0;
        if runnable {
            for _ in current.len()..wanted {
                let index = self.next_index(&format!("deployment/{}", deployment.name_any()));
                self.start_deployment_pod(deployment, &hash, index).await?;
                started += 1;
            }
        }
        Ok((current.to_vec(), started))
    }

    /// Patches the Deployment's status to `status` where it changed.
    async fn write_deployment_status(
        &self,
        deployment: &Deployment,
        status: DeploymentStatus,
    ) -> Result<(), kube::Error> {
        if Some(&status) == deployment.status.as_ref() {
            return Ok(());
        }
        // Explicit nulls, so that a merge patch removes what no longer holds.
        let patch = json!({"status": {
            "replicas": status.replicas, "updatedReplicas": status.updated_replicas,
            "readyReplicas": status.ready_replicas,
            "availableReplicas": status.available_replicas,
            "unavailableReplicas": status.unavailable_replicas,
            "observedGeneration": status.observed_generation,
            "conditions": status.conditions,
        }});
        Api::<Deployment>::namespaced(self.client.clone(), &self.namespace)
            .patch_status(
                &deployment.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        Ok(())
    }

    /// Starts the Job controller's back-off for the Job of `pod`, which just failed,
    /// unless the failure was a disruption (the policy's `Ignore` rule).
    fn back_off(&self, pod: &Pod) {
        let disrupted = (pod.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c.type_ == "DisruptionTarget" && c.status == "True")
            });
        // Keyed by the Job's uid: a Job made again under the same name starts afresh.
        let Some(job) = pod.owner_references().first().map(|owner| &owner.uid) else {
            return;
        };
        if disrupted {
            return;
        }
        let mut backoff = self.backoff.lock().unwrap();
        let (failures, until) = backoff.entry(job.clone()).or_insert((0, Instant::now()));
        *failures += 1;
        let delay = RETRY_BACKOFF.saturating_mul(1 << (*failures - 1).min(8));
        *until = Instant::now() + delay.min(MAX_RETRY_BACKOFF);
    }

    /// Whether `job` (as this tick listed it) still stands: a Job deleted since the
    /// tick began (its pods collected with it) must not get a new pod, as the Job
    /// controller, which watches Jobs, never gives one.
    async fn still_there(&self, jobs_api: &Api<Job>, job: &Job) -> Result<bool, kube::Error> {
        let current = jobs_api.get_opt(&job.name_any()).await?;
        Ok(current.is_some_and(|current| {
            current.metadata.uid == job.metadata.uid
                && current.metadata.deletion_timestamp.is_none()
        }))
    }

    /// Whether the back-off of the Job with uid `job`, if any, has passed.
    fn backoff_over(&self, job: Option<String>) -> bool {
        let Some(job) = job else { return true };
        (self.backoff.lock().unwrap().get(&job)).is_none_or(|(_, until)| Instant::now() >= *until)
    }

    /// The next pod number of a Job or Deployment (`key`).
    fn next_index(&self, key: &str) -> usize {
        let mut started = self.started.lock().unwrap();
        let count = started.entry(key.to_owned()).or_insert(0);
        *count += 1;
        *count - 1
    }

    /// Creates a Deployment's pod and starts its process, not ready until its
    /// readiness probe answers.
    async fn start_deployment_pod(
        &self,
        deployment: &Deployment,
        hash: &str,
        index: usize,
    ) -> Result<(), kube::Error> {
        let name = deployment.name_any();
        let template = deployment.spec.clone().unwrap_or_default().template;
        let pod_name = format!("{name}-{hash}-{index}");
        self.create_pod(
            deployment,
            &template,
            &pod_name,
            (TEMPLATE_HASH_LABEL, hash),
        )
        .await?;
        let spec = template.spec.unwrap();
        let container = &spec.containers[0];

        // The pod listens on its container port at an address of its own.
        let container_port = container
            .ports
            .iter()
            .flatten()
            .next()
            .map(|p| p.container_port);
        let port = container_port
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(8000);
        let ip = free_pod_ip(port);
        let probe = container
            .readiness_probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .map(|get| {
                let probed = match &get.port {
                    IntOrString::Int(number) => Some(*number),
                    IntOrString::String(named) => container
                        .ports
                        .iter()
                        .flatten()
                        .find(|p| p.name.as_ref() == Some(named))
                        .map(|p| p.container_port),
                };
                let probed = probed.and_then(|p| u16::try_from(p).ok()).unwrap_or(port);
                (probed, get.path.clone().unwrap_or_else(|| "/".to_owned()))
            });
        let gates = (spec.readiness_gates.iter().flatten())
            .map(|gate| gate.condition_type.clone())
            .collect();
        let serving = ServingPod {
            deployment: name,
            ip: ip.clone(),
            port,
            probe,
            gates,
            containers_ready: false,
            ready: false,
            restarts: 0,
        };
        self.spawn_container(&pod_name, &spec, Some(serving))
            .await?;
        let patch = json!({"status": {"phase": "Running", "startTime": now(),
            "podIP": ip, "podIPs": [{"ip": ip}], "conditions": [
            {"type": "Ready", "status": "False", "lastTransitionTime": now()},
            {"type": "ContainersReady", "status": "False", "lastTransitionTime": now()}],
            "containerStatuses": [{
                "name": container.name, "image": "trainer", "imageID": "", "ready": false,
                "started": true, "restartCount": 0,
                "state": {"running": {"startedAt": now()}}}]}});
        Api::<Pod>::namespaced(self.client.clone(), &self.namespace)
            .patch_status(
                &pod_name,
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            )
            .await?;
        Ok(())
    }

    /// Creates the Pod object of `template`, owned by `owner` (its controller), with
    /// the template's labels plus `label`, as the Job and Deployment controllers do.
    async fn create_pod<K: Resource<DynamicType = ()>>(
        &self,
        owner: &K,
        template: &k8s_openapi::api::core::v1::PodTemplateSpec,
        pod_name: &str,
        label: (&str, &str),
    ) -> Result<Pod, kube::Error> {
        let mut labels = template
            .metadata
            .clone()
            .unwrap_or_default()
            .labels
            .unwrap_or_default();
        labels.insert(label.0.to_owned(), label.1.to_owned());
        let pod = Pod {
            metadata: kube::api::ObjectMeta {
                name: Some(pod_name.to_owned()),
                namespace: Some(self.namespace.clone()),
                labels: Some(labels),
                owner_references: owner.controller_owner_ref(&()).map(|o| vec![o]),
                ..Default::default()
            },
            spec: template.spec.clone(),
            status: None,
        };
        let pods_api: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        pods_api.create(&PostParams::default(), &pod).await
    }

    /// Creates the pod object, lays out its volumes and starts its process.
    async fn start_pod(&self, job: &Job, index: usize) -> Result<Pod, kube::Error> {
        let job_name = job.name_any();
        let template = job.spec.as_ref().unwrap().template.clone();
        let pod_name = format!("{job_name}-{index}");
        let created = self
            .create_pod(job, &template, &pod_name, (JOB_NAME_LABEL, &job_name))
            .await?;
        let spec = template.spec.unwrap();
        self.spawn_container(&pod_name, &spec, None).await?;
        let patch = json!({"status": {"phase": "Running", "startTime": now(), "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": now()}]}});
        Api::<Pod>::namespaced(self.client.clone(), &self.namespace)
            .patch_status(&pod_name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(created)
    }

    /// Lays out a pod's volumes and starts its container's process; a Deployment's
    /// pod (`serving`) listens on its own loopback port.
    async fn spawn_container(
        &self,
        pod_name: &str,
        spec: &PodSpec,
        serving: Option<ServingPod>,
    ) -> Result<(), kube::Error> {
        let container = &spec.containers[0];
        let root = self.scratch.join(pod_name);
        fs::create_dir_all(&root).unwrap();
        // A claim is one folder shared by every pod that mounts it (a ReadWriteMany
        // volume); every other volume is the pod's own.
        let volume_folder =
            |volume: &k8s_openapi::api::core::v1::Volume| match &volume.persistent_volume_claim {
                Some(claim) => self.scratch.join("claims").join(&claim.claim_name),
                None => root.join(&volume.name),
            };
        let mut mounts: Vec<(String, PathBuf)> = Vec::new();
        for volume in spec.volumes.iter().flatten() {
            for mount in container.volume_mounts.iter().flatten() {
                if mount.name == volume.name {
                    mounts.push((mount.mount_path.clone(), volume_folder(volume)));
                }
            }
        }
        // The termination message file, which the kubelet mounts into every container.
        let termination_path = container
            .termination_message_path
            .clone()
            .unwrap_or_else(|| "/dev/termination-log".to_owned());
        let termination_log = root.join("termination-log");
        fs::write(&termination_log, "").unwrap();
        mounts.push((termination_path, termination_log.clone()));
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
        for volume in spec.volumes.iter().flatten() {
            let folder = volume_folder(volume);
            fs::create_dir_all(&folder).unwrap();
            self.write_volume_files(volume, &folder, &mounts).await?;
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
        for (key, value) in self.extra_env.lock().unwrap().iter() {
            command.env(key, value);
        }
        let mut args: Vec<String> = container.args.iter().flatten().map(|a| local(a)).collect();
        if let Some(serving) = &serving {
            args = loopback_args(args, &serving.ip, serving.port);
        }
        command.args(&args);
        let log = root.join("output.log");
        let output = fs::File::create(&log).unwrap();
        command
            .stdin(Stdio::null())
            .stdout(output.try_clone().unwrap())
            .stderr(output);
        let child = command.spawn().expect("starting the trainer process");
        self.running.lock().unwrap().insert(
            pod_name.to_owned(),
            RunningPod {
                child,
                log,
                termination_log,
                terminating: false,
                oom_killed: false,
                container: container.name.clone(),
                serving,
            },
        );
        Ok(())
    }
}

impl Worker {
    /// Writes a Secret or ConfigMap volume's keys as files into `folder`.
    async fn write_volume_files(
        &self,
        volume: &k8s_openapi::api::core::v1::Volume,
        folder: &Path,
        mounts: &[(String, PathBuf)],
    ) -> Result<(), kube::Error> {
        if let Some(secret) = &volume.secret {
            let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
            let found = api.get(secret.secret_name.as_deref().unwrap()).await?;
            for (key, value) in found.data.unwrap_or_default() {
                fs::write(folder.join(key), local_text(value.0, mounts)).unwrap();
            }
        }
        if let Some(config_map) = &volume.config_map {
            let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
            // An optional ConfigMap that is not there leaves the folder empty.
            let found = match config_map.optional {
                Some(true) => api.get_opt(&config_map.name).await?.unwrap_or_default(),
                _ => api.get(&config_map.name).await?,
            };
            for (key, value) in found.data.unwrap_or_default() {
                fs::write(folder.join(key), local_text(value.into_bytes(), mounts)).unwrap();
            }
        }
        Ok(())
    }
}

/// A mounted file's `bytes` with every mount path it names rewritten to its folder
/// (the pod's manifest names its ConfigMap dataset's path); binary files as they are.
fn local_text(bytes: Vec<u8>, mounts: &[(String, PathBuf)]) -> Vec<u8> {
    match String::from_utf8(bytes) {
        Ok(mut text) => {
            // Through placeholders, so a folder under /tmp is not rewritten again for
            // the pod's own /tmp mount.
            for (index, (path, _)) in mounts.iter().enumerate() {
                text = text.replace(path.as_str(), &format!("\u{0}{index}\u{0}"));
            }
            for (index, (_, folder)) in mounts.iter().enumerate() {
                text = text.replace(&format!("\u{0}{index}\u{0}"), &folder.display().to_string());
            }
            text.into_bytes()
        }
        Err(binary) => binary.into_bytes(),
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

/// The args with `--port` set to `port` and `--host` to the pod's address.
fn loopback_args(args: Vec<String>, ip: &str, port: u16) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" | "--host" => {
                args.next();
                let value = if arg == "--port" {
                    port.to_string()
                } else {
                    ip.to_owned()
                };
                out.extend([arg, value]);
            }
            _ if arg.starts_with("--port=") => out.push(format!("--port={port}")),
            _ if arg.starts_with("--host=") => out.push(format!("--host={ip}")),
            _ => out.push(arg),
        }
    }
    out
}

/// A pod IP: an address of the loopback network (Linux answers on all of 127/8)
/// where nothing listens on `port` now, picked at random so that the kubelets of
/// tests running side by side do not meet.
fn free_pod_ip(port: u16) -> String {
    for _ in 0..100 {
        let [a, b, c]: [u8; 3] = rand::random();
        let ip = format!("127.{}.{b}.{}", a.max(1), c.clamp(1, 254));
        if std::net::TcpListener::bind((ip.as_str(), port)).is_ok() {
            return ip;
        }
    }
    panic!("no loopback address has port {port} free");
}

/// Whether every readiness gate of the pod has its condition `True`.
fn gates_true(pod: &Pod, gates: &[String]) -> bool {
    let conditions = (pod.status.as_ref())
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    gates
        .iter()
        .all(|gate| (conditions.iter()).any(|c| &c.type_ == gate && c.status == "True"))
}

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `pod-template-hash` of a template: stable for the same template.
fn template_hash(template: &k8s_openapi::api::core::v1::PodTemplateSpec) -> String {
    let mut hasher = DefaultHasher::new();
    serde_json::to_string(template).unwrap().hash(&mut hasher);
    format!("{:016x}", hasher.finish())[..10].to_owned()
}

/// A Deployment's status from the pods of its current template (`current`, plus
/// `started` just created), as the Deployment controller writes it.
fn deployment_status(
    deployment: &Deployment,
    spec: &DeploymentSpec,
    current: &[&Pod],
    started: usize,
    wanted: usize,
) -> DeploymentStatus {
    let phase = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default()
    };
    let ready = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    };
    let active: Vec<&&Pod> = current
        .iter()
        .filter(|p| !matches!(phase(p).as_str(), "Succeeded" | "Failed"))
        .collect();
    let replicas = (active.len() + started) as i32;
    let ready_count = active.iter().filter(|p| ready(p)).count() as i32;
    let wanted = wanted as i32;
    let available = ready_count >= wanted - max_unavailable(spec, wanted);
    let complete = ready_count == wanted && replicas == wanted;
    let before = deployment.status.clone().unwrap_or_default();
    let conditions = vec![
        deployment_condition(
            &before,
            "Available",
            available,
            if available {
                (
                    "MinimumReplicasAvailable",
                    "Deployment has minimum availability.",
                )
            } else {
                (
                    "MinimumReplicasUnavailable",
                    "Deployment does not have minimum availability.",
                )
            },
        ),
        deployment_condition(
            &before,
            "Progressing",
            true,
            if complete {
                (
                    "NewReplicaSetAvailable",
                    "The Deployment has successfully progressed.",
                )
            } else {
                ("ReplicaSetUpdated", "The Deployment is progressing.")
            },
        ),
    ];
    DeploymentStatus {
        replicas: Some(replicas),
        updated_replicas: Some(replicas),
        ready_replicas: Some(ready_count),
        available_replicas: Some(ready_count),
        unavailable_replicas: (wanted > ready_count).then_some(wanted - ready_count),
        observed_generation: deployment.metadata.generation,
        conditions: Some(conditions),
        ..before
    }
}

/// `maxUnavailable` of a rolling update, rounded down as the Deployment controller does.
fn max_unavailable(spec: &DeploymentSpec, replicas: i32) -> i32 {
    let strategy = spec.strategy.clone().unwrap_or_default();
    if strategy.type_.as_deref().unwrap_or("RollingUpdate") != "RollingUpdate" || replicas == 0 {
        return 0;
    }
    let value = strategy
        .rolling_update
        .and_then(|r| r.max_unavailable)
        .unwrap_or_else(|| IntOrString::String("25%".to_owned()));
    match value {
        IntOrString::Int(n) => n,
        IntOrString::String(percent) => percent
            .trim_end_matches('%')
            .parse::<i32>()
            .map_or(0, |p| replicas * p / 100),
    }
}

/// A Deployment condition, keeping its times when nothing about it changed.
fn deployment_condition(
    before: &DeploymentStatus,
    type_: &str,
    holds: bool,
    (reason, message): (&str, &str),
) -> DeploymentCondition {
    let status = if holds { "True" } else { "False" };
    let stamp = || {
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            anneal_crds::jiff::Timestamp::now()
                .round(anneal_crds::jiff::Unit::Second)
                .unwrap(),
        ))
    };
    let old = before
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_);
    let same_status = old.is_some_and(|c| c.status == status);
    let same = same_status && old.is_some_and(|c| c.reason.as_deref() == Some(reason));
    DeploymentCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message.to_owned()),
        last_transition_time: if same_status {
            old.and_then(|c| c.last_transition_time.clone())
        } else {
            stamp()
        },
        last_update_time: if same {
            old.and_then(|c| c.last_update_time.clone())
        } else {
            stamp()
        },
    }
}

fn terminate(process: &mut RunningPod) {
    process.terminating = true;
    let _ = Command::new("kill")
        .args(["-TERM", &process.child.id().to_string()])
        .status();
}

/// What Kubernetes reports as an exited container's message: its termination message
/// file, or with `FallbackToLogsOnError` (the only policy the operator uses) the tail
/// of its output when the file is empty and the container failed.
fn termination_message(pod: &RunningPod, code: i32) -> String {
    let text = fs::read(&pod.termination_log).unwrap_or_default();
    if !text.is_empty() {
        return String::from_utf8_lossy(&text[..text.len().min(MESSAGE_BYTES)]).into_owned();
    }
    if code == 0 {
        return String::new();
    }
    tail(&pod.log)
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
