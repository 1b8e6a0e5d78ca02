//! The operator's RBAC rules against what it really calls. The rules are the Helm
//! chart's, as rendered into `deploy/base/rbac.yaml` (all namespaces: ClusterRole)
//! and `tests/helm/rendered/rbac-watch-team-a.yaml` (`watchNamespace: team-a`: Roles
//! only); CI fails when those files differ from `helm template` of the chart
//! (`scripts/k8s/checks.py render-deploy --check`). The operator runs as its
//! ServiceAccount through a story against the fake API server (the admission webhook
//! making its certificate, answering the API server over TLS and asking a
//! SubjectAccessReview, then renewing the certificate after a restart; two
//! FineTuneJobs trained to the end, one deleted; a ModelDeployment served, scaled and
//! deleted; a ModelEvaluation of a job's adapter run to the end; leader election), the server records every request with the attributes RBAC
//! authorizes (user, verb, group, resource, subresource, namespace), and the test
//! checks both ways: every call is allowed by a bound rule, and every verb of every
//! rule was used by some call.

use std::collections::BTreeSet;
use std::time::Duration;

use anneal_crds::finetunejob::JobPhase;
use anneal_crds::modelevaluation::{EvaluationPhase, ModelEvaluation};
use anneal_crds::{FineTuneJob, ModelDeployment};
use anneal_e2e::operator_harness::{NAMESPACE, World, job_yaml, page_text, quickstart_lines, repo};
use anneal_fake_apiserver::{AuditRecord, ResourceType};
use anneal_operator::admission::WebhookTls;
use anneal_operator::admission::certificate;
use anneal_operator::console::ConsoleSettings;
use anneal_operator::leader_election::{LEADER_LABEL, LeaseSettings};
use anneal_operator::operator_run::{Listeners, OperatorSettings, WebhookServing, run_operator};
use anneal_operator::report::ReportSettings;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::Api;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Where the chart installs the operator by default, and its ServiceAccount there.
const OPERATOR_NAMESPACE: &str = "anneal-system";
const SERVICE_ACCOUNT: &str = "anneal-operator";
const OPERATOR_POD: &str = "anneal-operator-7d4b9c-x2x9q";
const TRAINING: Duration = Duration::from_secs(240);
const WAIT: Duration = Duration::from_secs(30);

/// One rule of a bound (Cluster)Role: cluster-wide (`namespace: None`) or in one namespace.
#[derive(Debug)]
struct Rule {
    role: String,
    namespace: Option<String>,
    groups: Vec<String>,
    resources: Vec<String>,
    /// `resourceNames`: the rule allows only these objects (empty: any).
    names: Vec<String>,
    verbs: Vec<String>,
}

impl Rule {
    fn allows(&self, call: &Call) -> bool {
        let in_scope = match &self.namespace {
            None => true,
            Some(namespace) => *namespace == call.namespace,
        };
        in_scope
            && self.groups.iter().any(|g| g == "*" || *g == call.group)
            && self
                .resources
                .iter()
                .any(|r| r == "*" || *r == call.resource)
            && self.verbs.iter().any(|v| v == "*" || *v == call.verb)
            && (self.names.is_empty() || self.names.contains(&call.name))
    }
}

/// A request as RBAC sees it; `resource` is `plural[/subresource]`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Call {
    verb: String,
    group: String,
    resource: String,
    namespace: String,
    /// Empty for collection requests (and creates).
    name: String,
}

impl From<&AuditRecord> for Call {
    fn from(record: &AuditRecord) -> Self {
        Call {
            verb: record.verb.clone(),
            group: record.group.clone(),
            resource: match &record.subresource {
                Some(sub) => format!("{}/{sub}", record.resource),
                None => record.resource.clone(),
            },
            namespace: record.namespace.clone(),
            name: record.name.clone(),
        }
    }
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The rules of the Roles and ClusterRoles bound to the operator's ServiceAccount in
/// a rendered RBAC file.
fn bound_rules(file: &str) -> Vec<Rule> {
    let text = std::fs::read_to_string(repo().join(file)).unwrap();
    let objects: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect();
    let binds_operator = |binding: &Value| {
        binding["subjects"].as_array().is_some_and(|subjects| {
            subjects.iter().any(|s| {
                s["kind"] == "ServiceAccount"
                    && s["name"] == SERVICE_ACCOUNT
                    && s["namespace"] == OPERATOR_NAMESPACE
            })
        })
    };
    let mut rules = Vec::new();
    for binding in objects.iter().filter(|o| binds_operator(o)) {
        let (role_kind, role_name) = (&binding["roleRef"]["kind"], &binding["roleRef"]["name"]);
        let binding_namespace = match binding["kind"].as_str() {
            Some("ClusterRoleBinding") => None,
            Some("RoleBinding") => Some(binding["metadata"]["namespace"].as_str().unwrap()),
            other => panic!("unexpected binding kind {other:?}"),
        };
        let role = objects
            .iter()
            .find(|o| {
                o["kind"] == *role_kind
                    && o["metadata"]["name"] == *role_name
                    && o["metadata"]["namespace"].as_str() == binding_namespace
            })
            .unwrap_or_else(|| panic!("{role_kind} {role_name} is bound but not defined"));
        for rule in role["rules"].as_array().unwrap() {
            assert!(
                rule.get("nonResourceURLs").is_none(),
                "this test does not read nonResourceURLs: {rule}"
            );
            rules.push(Rule {
                role: format!(
                    "{} {}",
                    role_kind.as_str().unwrap_or_default(),
                    role_name.as_str().unwrap_or_default()
                ),
                namespace: binding_namespace.map(str::to_owned),
                groups: strings(&rule["apiGroups"]),
                resources: strings(&rule["resources"]),
                names: strings(&rule["resourceNames"]),
                verbs: strings(&rule["verbs"]),
            });
        }
    }
    assert!(
        !rules.is_empty(),
        "no rules bound to {OPERATOR_NAMESPACE}/{SERVICE_ACCOUNT}"
    );
    rules
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_chart_grants_exactly_what_the_operator_calls_in_all_namespaces() {
    let rules = bound_rules("deploy/base/rbac.yaml");
    assert!(
        rules.iter().any(|r| r.namespace.is_none()),
        "watching all namespaces needs a ClusterRole"
    );
    story_within(rules, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_one_watched_namespace_the_chart_grants_only_roles_and_they_suffice() {
    let rules = bound_rules("tests/helm/rendered/rbac-watch-team-a.yaml");
    // Cluster-wide only what has no namespace: the webhook's SubjectAccessReviews and
    // its own webhook configuration.
    let cluster_wide: BTreeSet<&str> = rules
        .iter()
        .filter(|r| r.namespace.is_none())
        .flat_map(|r| r.resources.iter().map(String::as_str))
        .collect();
    assert_eq!(
        cluster_wide,
        BTreeSet::from(["subjectaccessreviews", "validatingwebhookconfigurations"]),
        "{rules:#?}"
    );
    story_within(rules, Some(NAMESPACE)).await;
}

/// The admission webhook as `deploy/` installs it: its configuration (from the
/// rendered manifest, `caBundle` empty); the operator makes its certificate Secret.
struct Webhook {
    port: u16,
    dir: tempfile::TempDir,
}

const WEBHOOK_HOST: &str = "anneal-operator-webhook.anneal-system.svc";
const WEBHOOK_SECRET: &str = "anneal-operator-webhook-tls";

impl Webhook {
    async fn install(world: &World) -> Webhook {
        world.api.register(ResourceType::cluster_scoped(
            "admissionregistration.k8s.io",
            "v1",
            "validatingwebhookconfigurations",
            "ValidatingWebhookConfiguration",
        ));
        world.api.register(ResourceType::cluster_scoped(
            "authorization.k8s.io",
            "v1",
            "subjectaccessreviews",
            "SubjectAccessReview",
        ));
        let text = std::fs::read_to_string(repo().join("deploy/base/operator.yaml")).unwrap();
        let configuration: ValidatingWebhookConfiguration =
            serde_yaml_ng::Deserializer::from_str(&text)
                .map(|doc| <Value as serde::Deserialize>::deserialize(doc).unwrap())
                .find(|o| o["kind"] == "ValidatingWebhookConfiguration")
                .map(|o| serde_json::from_value(o).unwrap())
                .expect("deploy/ installs the webhook");
        Api::<ValidatingWebhookConfiguration>::all(world.client())
            .create(&PostParams::default(), &configuration)
            .await
            .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Webhook {
            port,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn serving(&self) -> WebhookServing {
        WebhookServing {
            listen: ([127, 0, 0, 1], self.port).into(),
            tls: WebhookTls {
                cert_dir: self.dir.path().to_owned(),
            },
            certificate: Some(certificate::OperatorCertificate {
                namespace: OPERATOR_NAMESPACE.to_owned(),
                secret: WEBHOOK_SECRET.to_owned(),
                hosts: vec![WEBHOOK_HOST.to_owned()],
                configuration: "anneal-operator".to_owned(),
            }),
        }
    }

    /// Waits for the operator to put its CA into the configuration, then sends the
    /// webhook a FineTuneJob naming a Secret as the API server would (TLS trusting
    /// only that `caBundle`); the fake API server answers the operator's
    /// SubjectAccessReview without allowing it, so the job is refused.
    async fn refuses_a_secret_alice_may_not_read(&self, world: &World) {
        let configurations: Api<ValidatingWebhookConfiguration> = Api::all(world.client());
        let started = std::time::Instant::now();
        let bundle = loop {
            let configuration = configurations.get("anneal-operator").await.unwrap();
            let bundles: Vec<Option<ByteString>> = configuration
                .webhooks
                .unwrap_or_default()
                .into_iter()
                .map(|w| w.client_config.ca_bundle)
                .collect();
            if bundles.iter().all(Option::is_some) && !bundles.is_empty() {
                break bundles[0].clone().unwrap();
            }
            assert!(started.elapsed() < WAIT, "no caBundle: {bundles:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let client = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&bundle.0).unwrap()])
            .resolve(WEBHOOK_HOST, ([127, 0, 0, 1], self.port).into())
            .build()
            .unwrap();
        let job: Value = serde_yaml_ng::from_str(&format!(
            "{}  output: {{uri: \"s3://anneal-e2e/runs\", credentialsSecret: payroll}}\n",
            job_yaml("probe", 1, 2, "")
        ))
        .unwrap();
        let review = serde_json::json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "review-1",
                "kind": {"group": "anneal.dev", "version": "v1alpha1", "kind": "FineTuneJob"},
                "resource": {"group": "anneal.dev", "version": "v1alpha1", "resource": "finetunejobs"},
                "name": "probe",
                "namespace": NAMESPACE,
                "operation": "CREATE",
                "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
                "object": job,
                "oldObject": null,
                "dryRun": false,
            }
        });
        let url = format!("https://{WEBHOOK_HOST}:{}/validate/finetunejobs", self.port);
        let started = std::time::Instant::now();
        let answer: Value = loop {
            // The webhook serves once the operator has written its certificate.
            match client
                .post(&url)
                .header("content-type", "application/json")
                .body(review.to_string())
                .send()
                .await
            {
                Ok(response) => {
                    break serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
                }
                Err(error) => {
                    assert!(
                        started.elapsed() < WAIT,
                        "the webhook did not answer: {error}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        let response = &answer["response"];
        assert_eq!(response["allowed"], false, "{answer}");
        let message = response["status"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("payroll"), "{message}");
        // The CA the bundle names is the one in the Secret the operator made.
        let secret = Api::<Secret>::namespaced(world.client(), OPERATOR_NAMESPACE)
            .get(WEBHOOK_SECRET)
            .await
            .unwrap();
        assert_eq!(secret.data.unwrap()["ca.crt"], bundle);
    }

    /// As a restart 340 days on finds it: the serving certificate's recorded end 25
    /// days away. Returns what the Secret said.
    async fn age_certificate(&self, world: &World) -> Secret {
        let secrets = Api::<Secret>::namespaced(world.client(), OPERATOR_NAMESPACE);
        let soon = anneal_crds::jiff::Timestamp::now()
            + anneal_crds::jiff::SignedDuration::from_hours(24 * 25);
        let patch = serde_json::json!({"metadata": {"annotations": {
            certificate::NOT_AFTER_ANNOTATION: soon.to_string()}}});
        secrets
            .patch(
                WEBHOOK_SECRET,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .unwrap()
    }

    /// Waits until the operator replaced the serving certificate of `aged` (same CA).
    async fn renewed(&self, world: &World, aged: &Secret) {
        let secrets = Api::<Secret>::namespaced(world.client(), OPERATOR_NAMESPACE);
        let before = aged.data.clone().unwrap();
        let started = std::time::Instant::now();
        loop {
            let now = secrets.get(WEBHOOK_SECRET).await.unwrap().data.unwrap();
            if now["tls.crt"] != before["tls.crt"] {
                assert_eq!(now["ca.crt"], before["ca.crt"], "the CA stays");
                return;
            }
            assert!(started.elapsed() < WAIT, "the certificate was not renewed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The console lists the jobs and shows a job's history and Events with the chart's
/// permissions: a read they lack would leave its section saying so.
async fn console_reads_within_the_rules(console: &str) {
    let list = page_text(format!("{console}/")).await;
    for name in ["story", "inline"] {
        assert!(
            list.contains(&format!("/jobs/{NAMESPACE}/{name}")),
            "{list}"
        );
    }
    let page = page_text(format!("{console}/jobs/{NAMESPACE}/story")).await;
    assert!(page.contains("<td>Succeeded</td>"), "its Events: {page}");
    assert!(!page.contains("Not read:"), "{page}");
    assert!(page.contains("train-point"), "its loss history: {page}");
}

/// Runs the story with the operator watching `watch` (all namespaces when `None`) and
/// checks its calls against `rules`.
async fn story_within(rules: Vec<Rule>, watch: Option<&str>) {
    let world = World::start(&quickstart_lines(24)).await;

    // The operator's own pod, which the leader labels for the report Service.
    let pods: Api<Pod> = Api::namespaced(world.client(), OPERATOR_NAMESPACE);
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some(OPERATOR_POD.to_owned()),
            ..ObjectMeta::default()
        },
        ..Pod::default()
    };
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let webhook = Webhook::install(&world).await;

    // The operator as the chart runs it, with leader election in its own namespace.
    let user = format!("system:serviceaccount:{OPERATOR_NAMESPACE}:{SERVICE_ACCOUNT}");
    let report = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let health = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = world.config.clone();
    config.report_base_url = format!("http://{}", report.local_addr().unwrap());
    let settings = OperatorSettings {
        config,
        namespace: watch.map(str::to_owned),
        lease: Some(LeaseSettings {
            lease_duration: Duration::from_secs(3),
            retry_every: Duration::from_millis(300),
            ..LeaseSettings::new(OPERATOR_NAMESPACE, "anneal-operator", OPERATOR_POD)
        }),
        report: ReportSettings::default(),
        instance: OPERATOR_POD.to_owned(),
        webhook: Some(webhook.serving()),
        console: ConsoleSettings::default(),
    };
    let (stop, stopped) = watch::channel(false);
    let console = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let console_url = format!("http://{}", console.local_addr().unwrap());
    let operator = tokio::spawn(run_operator(
        world.api.client_as(&user),
        settings.clone(),
        Listeners {
            report,
            health,
            console: Some(console),
        },
        stopped,
    ));

    // A job on an S3 dataset with several checkpoints (repeated Events are patched),
    // and one on a ConfigMap dataset; both train to the end.
    let config_map = ConfigMap {
        metadata: ObjectMeta {
            name: Some("chats".into()),
            ..ObjectMeta::default()
        },
        data: Some([("train.jsonl".to_owned(), quickstart_lines(24))].into()),
        ..ConfigMap::default()
    };
    Api::<ConfigMap>::namespaced(world.client(), NAMESPACE)
        .create(&PostParams::default(), &config_map)
        .await
        .unwrap();
    // The API server calls the webhook; it asks whether alice may read the Secret.
    webhook.refuses_a_secret_alice_may_not_read(&world).await;

    world.apply(&job_yaml("story", 2, 2, "")).await;
    let inline = job_yaml("inline", 1, 2, "").replace(
        r#"dataset: {train: "s3://anneal-e2e/data/train.jsonl", validationSplit: 0.2}"#,
        "dataset: {configMap: {name: chats}, validationSplit: 0.2}",
    );
    assert!(inline.contains("configMap"));
    world.apply(&inline).await;
    for name in ["story", "inline"] {
        world
            .wait_for(name, TRAINING, "Succeeded", |s| {
                s.phase == Some(JobPhase::Succeeded) && s.result.is_some()
            })
            .await;
    }
    let labelled = pods.get(OPERATOR_POD).await.unwrap().metadata.labels;
    assert_eq!(
        labelled
            .unwrap_or_default()
            .get(LEADER_LABEL)
            .map(String::as_str),
        Some("true"),
        "the leader labels its pod for the report Service"
    );

    console_reads_within_the_rules(&console_url).await;
    serve_scale_and_delete(&world, &console_url).await;
    evaluate(&world, &console_url).await;

    // Deleting a job: the operator removes its trainer Job and Secret, then its finalizer.
    let jobs: Api<FineTuneJob> = Api::namespaced(world.client(), NAMESPACE);
    jobs.delete("story", &Default::default()).await.unwrap();
    let started = std::time::Instant::now();
    while jobs.get_opt("story").await.unwrap().is_some() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "story not deleted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Stopping releases the Lease and takes the label off.
    let _ = stop.send(true);
    operator.await.unwrap().unwrap();
    let labels = pods.get(OPERATOR_POD).await.unwrap().metadata.labels;
    assert!(!labels.unwrap_or_default().contains_key(LEADER_LABEL));

    // Started again when the webhook's serving certificate is near its end, the
    // operator renews it.
    let aged = webhook.age_certificate(&world).await;
    let (stop, stopped) = watch::channel(false);
    let operator = tokio::spawn(run_operator(
        world.api.client_as(&user),
        settings,
        Listeners {
            report: TcpListener::bind("127.0.0.1:0").await.unwrap(),
            health: TcpListener::bind("127.0.0.1:0").await.unwrap(),
            console: None,
        },
        stopped,
    ));
    webhook.renewed(&world, &aged).await;
    let _ = stop.send(true);
    operator.await.unwrap().unwrap();

    check_calls_against_rules(&world, &user, &rules);
}

/// The story job's final adapter evaluated against the base model: the operator
/// creates the evaluation's Secret and Job and writes its status as the pod runs.
async fn evaluate(world: &World, console: &str) {
    let evaluations: Api<ModelEvaluation> = Api::namespaced(world.client(), NAMESPACE);
    let evaluation = anneal_crds::manifest::parse_modelevaluation(&format!(
        r#"apiVersion: anneal.dev/v1alpha1
kind: ModelEvaluation
metadata: {{name: compare, namespace: {NAMESPACE}}}
spec:
  models:
    - {{name: base, baseModel: {{name: anneal-tiny, source: "s3://anneal-e2e/models/anneal-tiny"}}}}
    - {{name: tuned, fineTuneJob: {{name: story}}}}
  dataset: {{uri: "s3://anneal-e2e/data/train.jsonl", maxSamples: 4}}
  metrics: [{{rougeL: {{}}}}]
  generation: {{maxTokens: 16}}
  resources: {{gpus: 0}}
"#
    ))
    .unwrap();
    evaluations
        .create(&PostParams::default(), &evaluation)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    loop {
        let status = evaluations
            .get("compare")
            .await
            .unwrap()
            .status
            .unwrap_or_default();
        if status.phase == Some(EvaluationPhase::Failed) {
            panic!(
                "the evaluation failed: {status:?}\n{}",
                world.kubelet.logs("compare-evaluate-0")
            );
        }
        if status.phase == Some(EvaluationPhase::Succeeded) {
            assert_eq!(status.results.len(), 2, "{status:?}");
            break;
        }
        assert!(
            started.elapsed() < TRAINING,
            "the evaluation did not succeed: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The console lists it and shows its scores and its report's answers.
    let list = page_text(format!("{console}/evaluations")).await;
    assert!(
        list.contains(&format!("/evaluations/{NAMESPACE}/compare")),
        "{list}"
    );
    let page = page_text(format!("{console}/evaluations/{NAMESPACE}/compare")).await;
    assert!(page.contains("<th>base</th><th>tuned</th>"), "{page}");
    assert!(!page.contains("Not read:"), "the report's answers: {page}");
}

/// The ConfigMap job's result served: the operator applies a Deployment and a
/// Service; once the Deployment's pods are ready the ModelDeployment is Ready; more
/// replicas apply the Deployment again; deleting it leaves the children to the
/// garbage collector.
async fn serve_scale_and_delete(world: &World, console: &str) {
    world.kubelet.run_deployments();
    let serving: Api<ModelDeployment> = Api::namespaced(world.client(), NAMESPACE);
    let deployment = anneal_crds::manifest::parse_modeldeployment(&format!(
        r#"apiVersion: anneal.dev/v1alpha1
kind: ModelDeployment
metadata: {{name: inline-serve, namespace: {NAMESPACE}}}
spec:
  model:
    fineTuneJob: {{name: inline, checkpoint: final}}
  replicas: 1
  resources: {{gpus: 0}}
"#
    ))
    .unwrap();
    serving
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    let servers: Api<Deployment> = Api::namespaced(world.client(), NAMESPACE);
    let started = std::time::Instant::now();
    while servers.get_opt("inline-serve").await.unwrap().is_none() {
        assert!(started.elapsed() < WAIT, "no serving Deployment");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The console lists it and shows its page.
    let list = page_text(format!("{console}/deployments")).await;
    assert!(
        list.contains(&format!("/deployments/{NAMESPACE}/inline-serve")),
        "{list}"
    );
    page_text(format!("{console}/deployments/{NAMESPACE}/inline-serve")).await;
    // Its pod runs: the operator loads the checkpoint into it and opens its gate.
    let started = std::time::Instant::now();
    loop {
        let status = serving.get("inline-serve").await.unwrap().status;
        let ready =
            status.is_some_and(|s| s.ready_replicas == 1 && s.replicas.iter().all(|r| r.in_sync));
        if ready {
            break;
        }
        assert!(
            started.elapsed() < WAIT,
            "the serving pod did not get its adapter"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let more = serde_json::json!({"spec": {"replicas": 2}});
    serving
        .patch(
            "inline-serve",
            &PatchParams::default(),
            &Patch::Merge(&more),
        )
        .await
        .unwrap();
    let started = std::time::Instant::now();
    loop {
        let server = servers.get("inline-serve").await.unwrap();
        let phase = serving
            .get("inline-serve")
            .await
            .unwrap()
            .status
            .and_then(|s| s.phase);
        if server.spec.and_then(|s| s.replicas) == Some(2) && phase.is_some() {
            break;
        }
        assert!(started.elapsed() < WAIT, "the Deployment was not scaled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    serving
        .delete("inline-serve", &Default::default())
        .await
        .unwrap();
}

/// Every call `user` made is allowed by a bound rule, and every verb of every rule was
/// used by some call.
fn check_calls_against_rules(world: &World, user: &str, rules: &[Rule]) {
    let audit = world.api.audit();
    let calls: BTreeSet<Call> = audit
        .iter()
        .filter(|r| r.user == user)
        .map(Call::from)
        .collect();
    assert!(!calls.is_empty(), "no request came from {user}");

    let refused: Vec<&Call> = calls
        .iter()
        .filter(|call| !rules.iter().any(|rule| rule.allows(call)))
        .collect();
    assert!(
        refused.is_empty(),
        "the operator makes calls its RBAC rules refuse (add them to \
         charts/anneal/templates/rbac.yaml, then run \
         `.venv/bin/python scripts/k8s/checks.py render-deploy`):\n{refused:#?}"
    );

    let mut unused = Vec::new();
    for rule in rules {
        for group in &rule.groups {
            for resource in &rule.resources {
                for verb in &rule.verbs {
                    let used = calls.iter().any(|call| {
                        call.group == *group
                            && call.resource == *resource
                            && call.verb == *verb
                            && rule.allows(call)
                    });
                    if !used {
                        unused.push(format!(
                            "{}: {verb} {resource} (group {group:?}){}",
                            rule.role,
                            rule.namespace
                                .as_deref()
                                .map(|n| format!(" in {n}"))
                                .unwrap_or_default()
                        ));
                    }
                }
            }
        }
    }
    assert!(
        unused.is_empty(),
        "RBAC rules grant verbs the operator never used (remove them from \
         charts/anneal/templates/rbac.yaml, or make this story use them):\n\
         {unused:#?}\ncalls seen:\n{calls:#?}"
    );
}

/// Every environment variable the chart's Deployment sets is one the operator reads
/// (`anneal-operator --help` lists each flag's variable), so a renamed flag cannot
/// leave a chart value silently ignored.
#[test]
fn every_variable_the_chart_sets_is_an_operator_setting() {
    let help = anneal_operator::cli::help_text();
    let template =
        std::fs::read_to_string(repo().join("charts/anneal/templates/deployment.yaml")).unwrap();
    let names: Vec<&str> = template
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- name: "))
        .filter(|name| name.starts_with("ANNEAL_") || name.starts_with("POD_"))
        .collect();
    assert!(names.len() >= 10, "{names:?}");
    for name in names {
        assert!(
            help.contains(&format!("[env: {name}")),
            "the chart sets {name}, which `anneal-operator --help` does not list"
        );
    }
}

/// The chart's NetworkPolicy (rendered into `deploy/base/operator.yaml`) lets trainer
/// pods, as the operator plans them, reach the report port of the operator's pods,
/// and nothing else reach it; the metrics port only from the monitoring namespace;
/// the webhook's port from the API server, wherever it is.
#[test]
fn the_network_policy_lets_only_trainer_pods_reach_the_report_port() {
    let text = std::fs::read_to_string(repo().join("deploy/base/operator.yaml")).unwrap();
    let objects: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect();
    let policy = objects
        .iter()
        .find(|o| o["kind"] == "NetworkPolicy")
        .expect("a NetworkPolicy");
    let operator = objects.iter().find(|o| o["kind"] == "Deployment").unwrap();
    let operator_labels = &operator["spec"]["template"]["metadata"]["labels"];
    let selected = policy["spec"]["podSelector"]["matchLabels"]
        .as_object()
        .unwrap();
    assert!(
        selected.iter().all(|(k, v)| &operator_labels[k] == v),
        "the policy must select the operator's pods: {selected:?} vs {operator_labels:?}"
    );
    assert_eq!(
        policy["spec"]["policyTypes"],
        serde_json::json!(["Ingress"])
    );
    let rules = policy["spec"]["ingress"].as_array().unwrap();
    let rule_for = |port: &str| {
        rules
            .iter()
            .find(|r| {
                r["ports"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["port"] == port)
            })
            .unwrap_or_else(|| panic!("no rule for port {port}"))
    };

    // The report port: peers carrying the label every planned trainer pod carries.
    let report_from = rule_for("report")["from"].as_array().unwrap();
    assert_eq!(report_from.len(), 1);
    let required = report_from[0]["podSelector"]["matchExpressions"]
        .as_array()
        .unwrap();
    let job = anneal_crds::manifest::parse_finetunejob(
        "apiVersion: anneal.dev/v1alpha1\nkind: FineTuneJob\nmetadata: {name: j, namespace: team-a, uid: u}\nspec:\n  baseModel: {name: anneal-tiny, source: \"s3://m/t\"}\n  dataset: {train: \"s3://d/t.jsonl\"}\n  output: {uri: \"s3://o\"}\n",
    )
    .unwrap();
    let planned = anneal_operator::finetunejob::trainer_job::plan_trainer_job(
        &job,
        &anneal_operator::config::OperatorConfig::default(),
        None,
    )
    .unwrap();
    let trainer_labels = planned
        .spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .labels
        .unwrap();
    for expression in required {
        assert_eq!(expression["operator"], "Exists");
        let key = expression["key"].as_str().unwrap();
        assert!(
            trainer_labels.contains_key(key),
            "trainer pods lack {key}: {trainer_labels:?}"
        );
    }
    assert_eq!(report_from[0]["namespaceSelector"], serde_json::json!({}));

    // The metrics port: the monitoring namespace only.
    let metrics_from = rule_for("metrics")["from"].as_array().unwrap();
    assert_eq!(
        metrics_from,
        &[
            serde_json::json!({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}})
        ]
    );
    // The admission webhook's port: from anywhere, since the API server's address is
    // not known in advance (it answers only AdmissionReviews over TLS).
    assert!(rule_for("webhook").get("from").is_none());
    assert_eq!(rules.len(), 3, "no other way in");
}
