//! The fake API server through a real `kube::Client` over HTTP: the Kubernetes
//! semantics controller tests rely on (CRUD, optimistic concurrency, patches,
//! status subresource, generation, finalizers, garbage collection, watches and
//! their 410 recovery), and kube-runtime's `watcher` and `Controller` on top.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anneal_crds::FineTuneJob;
use anneal_fake_apiserver::{FakeApiServer, Options};
use futures_util::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{
    Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

/// Long enough for anything on a busy machine, short enough to fail fast.
const WAIT: Duration = Duration::from_secs(5);

fn config_map(name: &str, labels: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([("k".to_owned(), "v".to_owned())])),
        ..ConfigMap::default()
    }
}

fn finetunejob(name: &str) -> FineTuneJob {
    serde_json::from_value(json!({
        "apiVersion": "anneal.dev/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": name},
        "spec": {
            "baseModel": {"name": "tiny", "source": "s3://models/tiny"},
            "dataset": {"train": "s3://data/train.jsonl"},
        },
        "status": {"phase": "Running"},
    }))
    .expect("a valid FineTuneJob")
}

fn owned_by<K: Resource<DynamicType = ()>>(owner: &K, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        owner_references: Some(vec![
            owner
                .controller_owner_ref(&())
                .expect("owner has name and uid"),
        ]),
        ..ObjectMeta::default()
    }
}

/// A JSON patch from its JSON text. `Patch::Json` takes json-patch's type, which
/// this crate does not depend on; passing the variant as a function names it.
fn json_patch(operations: serde_json::Value) -> Patch<()> {
    fn build<T: serde::de::DeserializeOwned>(
        operations: serde_json::Value,
        variant: fn(T) -> Patch<()>,
    ) -> Patch<()> {
        variant(serde_json::from_value(operations).expect("valid JSON patch operations"))
    }
    build(operations, Patch::Json)
}

fn api_code<T: std::fmt::Debug>(result: kube::Result<T>) -> (u16, String) {
    match result {
        Err(kube::Error::Api(status)) => (status.code, status.reason.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn next<S: Stream + Unpin>(stream: &mut S) -> S::Item {
    tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("an event in time")
        .expect("the stream goes on")
}

fn names(list: &[ConfigMap]) -> Vec<String> {
    list.iter().map(ResourceExt::name_any).collect()
}

#[tokio::test]
async fn create_get_list_with_selectors() {
    let server = FakeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let pp = PostParams::default();

    let a = cms
        .create(&pp, &config_map("a", &[("app", "web"), ("tier", "front")]))
        .await
        .unwrap();
    cms.create(&pp, &config_map("b", &[("app", "db")]))
        .await
        .unwrap();
    cms.create(&pp, &config_map("c", &[])).await.unwrap();
    let mut generated = config_map("", &[]);
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("gen-".to_owned());
    let generated = cms.create(&pp, &generated).await.unwrap();

    assert_eq!(a.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(a.metadata.generation, Some(1));
    assert!(a.metadata.uid.is_some() && a.metadata.creation_timestamp.is_some());
    assert_eq!(a.metadata.resource_version.as_deref(), Some("1"));
    assert!(generated.name_any().starts_with("gen-") && generated.name_any().len() == 9);
    assert_eq!(cms.get("a").await.unwrap(), a);

    let select = |s: &str| ListParams::default().labels(s);
    let list = cms.list(&select("app=web")).await.unwrap();
    assert_eq!(names(&list.items), ["a"]);
    assert_eq!(list.metadata.resource_version.as_deref(), Some("4"));
    // Typed lists drop the items' type fields; the wire format carries them.
    let raw = http::Request::get("/api/v1/namespaces/default/configmaps?labelSelector=app%3Dweb")
        .body(Vec::new())
        .unwrap();
    let raw: serde_json::Value =
        serde_json::from_str(&server.client().request_text(raw).await.unwrap()).unwrap();
    assert_eq!(
        (raw["kind"].as_str(), raw["apiVersion"].as_str()),
        (Some("ConfigMapList"), Some("v1"))
    );
    assert_eq!(
        (
            raw["items"][0]["kind"].as_str(),
            raw["items"][0]["apiVersion"].as_str()
        ),
        (Some("ConfigMap"), Some("v1"))
    );
    assert_eq!(
        names(&cms.list(&select("app in (web,db)")).await.unwrap().items),
        ["a", "b"]
    );
    assert_eq!(
        names(&cms.list(&select("app,!tier")).await.unwrap().items),
        ["b"]
    );
    assert_eq!(
        names(&cms.list(&select("app!=web")).await.unwrap().items).len(),
        3
    );
    let by_name = ListParams::default().fields("metadata.name=c");
    assert_eq!(names(&cms.list(&by_name).await.unwrap().items), ["c"]);
    // The watcher's first list asks for a page of 500 from resourceVersion 0.
    let paged = ListParams::default().limit(1).match_any();
    let page = cms.list(&paged).await.unwrap();
    assert_eq!(
        (page.items.len(), page.metadata.continue_.as_deref()),
        (4, None)
    );

    let all: Api<ConfigMap> = Api::all(server.client());
    let other_ns: Api<ConfigMap> = Api::namespaced(server.client(), "other");
    other_ns.create(&pp, &config_map("a", &[])).await.unwrap();
    assert_eq!(
        all.list(&ListParams::default()).await.unwrap().items.len(),
        5
    );
    assert_eq!(
        all.list(&ListParams::default().fields("metadata.namespace=other"))
            .await
            .unwrap()
            .items
            .len(),
        1
    );

    assert_eq!(
        api_code(cms.create(&pp, &config_map("a", &[])).await),
        (409, "AlreadyExists".into())
    );
    assert_eq!(api_code(cms.get("missing").await), (404, "NotFound".into()));
    assert_eq!(cms.get_opt("missing").await.unwrap(), None);
    assert_eq!(server.list::<ConfigMap>().len(), 5);
}

#[tokio::test]
async fn replace_with_a_stale_resource_version_conflicts() {
    let server = FakeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let created = cms
        .create(&PostParams::default(), &config_map("a", &[]))
        .await
        .unwrap();

    let mut first = created.clone();
    first.data = Some(BTreeMap::from([("k".to_owned(), "first".to_owned())]));
    let replaced = cms
        .replace("a", &PostParams::default(), &first)
        .await
        .unwrap();
    assert_ne!(
        replaced.metadata.resource_version,
        created.metadata.resource_version
    );
    assert_eq!(
        replaced.metadata.generation,
        Some(2),
        "data is outside metadata and status"
    );

    let mut stale = created.clone();
    stale.data = Some(BTreeMap::from([("k".to_owned(), "second".to_owned())]));
    assert_eq!(
        api_code(cms.replace("a", &PostParams::default(), &stale).await),
        (409, "Conflict".into())
    );
    assert_eq!(cms.get("a").await.unwrap().data.unwrap()["k"], "first");

    let mut renamed = replaced.clone();
    renamed.metadata.name = Some("b".to_owned());
    assert_eq!(
        api_code(cms.replace("a", &PostParams::default(), &renamed).await).0,
        400
    );
    assert_eq!(
        api_code(
            cms.replace(
                "missing",
                &PostParams::default(),
                &config_map("missing", &[])
            )
            .await
        )
        .0,
        404
    );
}

#[tokio::test]
async fn merge_json_and_apply_patches() {
    let server = FakeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    cms.create(
        &PostParams::default(),
        &config_map("a", &[("app", "web"), ("tier", "front")]),
    )
    .await
    .unwrap();
    let pp = PatchParams::default();

    let merge = json!({"metadata": {"labels": {"tier": null, "new": "yes"}}, "data": {"x": "1"}});
    let merged = cms.patch("a", &pp, &Patch::Merge(&merge)).await.unwrap();
    let labels = merged.metadata.labels.clone().unwrap();
    assert_eq!(
        labels,
        BTreeMap::from([("app".into(), "web".into()), ("new".into(), "yes".into())])
    );
    assert_eq!(merged.data.clone().unwrap().len(), 2);

    // A patch that changes nothing keeps the resourceVersion.
    let again = cms.patch("a", &pp, &Patch::Merge(&merge)).await.unwrap();
    assert_eq!(
        again.metadata.resource_version,
        merged.metadata.resource_version
    );

    let ops = json_patch(json!([
        {"op": "test", "path": "/data/x", "value": "1"},
        {"op": "replace", "path": "/data/x", "value": "2"},
        {"op": "add", "path": "/metadata/labels/added", "value": "by-json-patch"},
        {"op": "remove", "path": "/data/k"},
    ]));
    let patched = cms.patch("a", &pp, &ops).await.unwrap();
    assert_eq!(
        patched.data.unwrap(),
        BTreeMap::from([("x".into(), "2".into())])
    );
    assert_eq!(patched.metadata.labels.unwrap()["added"], "by-json-patch");
    let failing = json_patch(json!([{"op": "test", "path": "/data/x", "value": "1"}]));
    assert_eq!(
        api_code(cms.patch("a", &pp, &failing).await),
        (422, "Invalid".into())
    );
    let stale_rv = json!({"metadata": {"resourceVersion": "1"}, "data": {"x": "3"}});
    assert_eq!(
        api_code(cms.patch("a", &pp, &Patch::Merge(&stale_rv)).await).0,
        409
    );

    // Server-side apply creates, then merges; other fields stay.
    let apply = PatchParams::apply("anneal-test").force();
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied", "labels": {"a": "1"}}, "data": {"one": "1"}});
    let created = cms
        .patch("applied", &apply, &Patch::Apply(&body))
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"two": "2"}});
    let applied = cms
        .patch("applied", &apply, &Patch::Apply(&body))
        .await
        .unwrap();
    assert_eq!(
        applied.data.unwrap(),
        BTreeMap::from([("one".into(), "1".into()), ("two".into(), "2".into())])
    );
    assert_eq!(applied.metadata.labels.unwrap()["a"], "1");

    // kube refuses an apply without a field manager itself, so ask over raw HTTP.
    let request = http::Request::patch("/api/v1/namespaces/default/configmaps/applied")
        .header("content-type", "application/apply-patch+yaml")
        .body(serde_json::to_vec(&body).unwrap())
        .unwrap();
    assert_eq!(
        api_code(server.client().request_text(request).await),
        (400, "BadRequest".into())
    );
    let missing = cms.patch("missing", &pp, &Patch::Merge(&merge)).await;
    assert_eq!(api_code(missing), (404, "NotFound".into()));
    // uid is immutable: a patch written for an earlier object of this name is refused.
    let other_uid =
        serde_json::json!({"metadata": {"uid": "not-this-one"}, "data": {"stale": "write"}});
    let refused = cms.patch("a", &pp, &Patch::Merge(&other_uid)).await;
    assert_eq!(api_code(refused).0, 409);
    let data = cms.get("a").await.unwrap().data.unwrap();
    assert!(!data.contains_key("stale"));
}

#[tokio::test]
async fn status_subresource_and_generation() {
    let server = FakeApiServer::start().await;
    let ftjs: Api<FineTuneJob> = Api::default_namespaced(server.client());
    let created = ftjs
        .create(&PostParams::default(), &finetunejob("job"))
        .await
        .unwrap();
    assert_eq!(created.status, None, "status on create is dropped");
    assert_eq!(created.metadata.generation, Some(1));

    let status =
        json!({"status": {"phase": "Running", "message": "training"}, "spec": {"suspend": true}});
    let after_status = ftjs
        .patch_status("job", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    let got = after_status.status.clone().unwrap();
    assert_eq!(
        (got.phase.map(|p| format!("{p:?}")), got.message.as_deref()),
        (Some("Running".into()), Some("training"))
    );
    assert!(
        !after_status.spec.suspend,
        "a status write leaves spec alone"
    );
    assert_eq!(after_status.metadata.generation, Some(1));
    assert_ne!(
        after_status.metadata.resource_version,
        created.metadata.resource_version
    );

    let spec = json!({"spec": {"suspend": true}, "status": {"phase": "Failed"}});
    let after_spec = ftjs
        .patch("job", &PatchParams::default(), &Patch::Merge(&spec))
        .await
        .unwrap();
    assert!(after_spec.spec.suspend);
    assert_eq!(after_spec.metadata.generation, Some(2));
    assert_eq!(
        after_spec.status, after_status.status,
        "a main-resource write leaves status alone"
    );

    let labels = json!({"metadata": {"labels": {"x": "y"}}});
    let after_labels = ftjs
        .patch("job", &PatchParams::default(), &Patch::Merge(&labels))
        .await
        .unwrap();
    assert_eq!(
        after_labels.metadata.generation,
        Some(2),
        "metadata changes keep the generation"
    );

    let mut replacement = after_labels.clone();
    replacement.status.as_mut().unwrap().message = Some("replaced".into());
    let replaced = ftjs
        .replace_status("job", &PostParams::default(), &replacement)
        .await
        .unwrap();
    assert_eq!(
        replaced.status.unwrap().message.as_deref(),
        Some("replaced")
    );
    // `replacement` still carries the resourceVersion the first replace used up.
    assert_eq!(
        api_code(
            ftjs.replace_status("job", &PostParams::default(), &replacement)
                .await
        )
        .0,
        409
    );

    let writes = server.writes_to("finetunejobs", "default", "job", Some("status"));
    assert_eq!(
        writes
            .iter()
            .map(|w| (w.verb.as_str(), w.code))
            .collect::<Vec<_>>(),
        [("patch", 200), ("update", 200), ("update", 409)]
    );
    assert_eq!(
        server
            .writes_to("finetunejobs", "default", "job", None)
            .len(),
        3
    );
    assert!(
        server
            .get::<FineTuneJob>("default", "job")
            .unwrap()
            .spec
            .suspend
    );
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let server = FakeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let mut cm = config_map("held", &[]);
    cm.metadata.finalizers = Some(vec!["anneal.dev/cleanup".to_owned()]);
    cms.create(&PostParams::default(), &cm).await.unwrap();

    let deleted = cms.delete("held", &DeleteParams::default()).await.unwrap();
    let terminating = deleted.left().expect("the object, still there");
    assert!(terminating.metadata.deletion_timestamp.is_some());
    assert_eq!(terminating.metadata.generation, Some(2));
    assert_eq!(cms.get("held").await.unwrap(), terminating);

    let add = json!({"metadata": {"finalizers": ["anneal.dev/cleanup", "another"]}});
    assert_eq!(
        api_code(
            cms.patch("held", &PatchParams::default(), &Patch::Merge(&add))
                .await
        )
        .0,
        422
    );

    let remove = json!({"metadata": {"finalizers": null}});
    cms.patch("held", &PatchParams::default(), &Patch::Merge(&remove))
        .await
        .unwrap();
    assert_eq!(cms.get_opt("held").await.unwrap(), None);
}

/// A dependent created when its owner is already gone (a controller acting on a
/// stale cache) is collected, as the real garbage collector does shortly after.
#[tokio::test]
async fn a_dependent_created_after_its_owner_is_gone_is_collected() {
    let server = FakeApiServer::start().await;
    let client = server.client();
    let pp = PostParams::default();
    let ftjs: Api<FineTuneJob> = Api::default_namespaced(client.clone());
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    let ftj = ftjs.create(&pp, &finetunejob("gone")).await.unwrap();
    ftjs.delete("gone", &DeleteParams::default()).await.unwrap();
    let late = Secret {
        metadata: owned_by(&ftj, "late"),
        ..Secret::default()
    };
    secrets.create(&pp, &late).await.unwrap();
    assert_eq!(secrets.get_opt("late").await.unwrap(), None);
    // With a living owner it stays.
    let ftj = ftjs.create(&pp, &finetunejob("here")).await.unwrap();
    let kept = Secret {
        metadata: owned_by(&ftj, "kept"),
        ..Secret::default()
    };
    secrets.create(&pp, &kept).await.unwrap();
    assert!(secrets.get_opt("kept").await.unwrap().is_some());
}

#[tokio::test]
async fn owner_references_cascade_and_orphan() {
    let server = FakeApiServer::start().await;
    let client = server.client();
    let pp = PostParams::default();
    let ftjs: Api<FineTuneJob> = Api::default_namespaced(client.clone());
    let jobs: Api<Job> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());

    // A FineTuneJob owns a Job and a Secret; the Job owns a Pod.
    let family = |suffix: &'static str| {
        let (ftjs, jobs, pods, secrets, pp) = (
            ftjs.clone(),
            jobs.clone(),
            pods.clone(),
            secrets.clone(),
            pp.clone(),
        );
        async move {
            let ftj = ftjs
                .create(&pp, &finetunejob(&format!("ftj-{suffix}")))
                .await
                .unwrap();
            let job = Job {
                metadata: owned_by(&ftj, &format!("job-{suffix}")),
                ..Job::default()
            };
            let job = jobs.create(&pp, &job).await.unwrap();
            let secret = Secret {
                metadata: owned_by(&ftj, &format!("secret-{suffix}")),
                ..Secret::default()
            };
            secrets.create(&pp, &secret).await.unwrap();
            let pod = Pod {
                metadata: owned_by(&job, &format!("pod-{suffix}")),
                ..Pod::default()
            };
            pods.create(&pp, &pod).await.unwrap();
        }
    };

    family("a").await;
    ftjs.delete("ftj-a", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(jobs.get_opt("job-a").await.unwrap(), None);
    assert_eq!(secrets.get_opt("secret-a").await.unwrap(), None);
    assert_eq!(
        pods.get_opt("pod-a").await.unwrap(),
        None,
        "collected recursively"
    );

    family("b").await;
    ftjs.delete("ftj-b", &DeleteParams::orphan()).await.unwrap();
    let job = jobs.get("job-b").await.unwrap();
    assert_eq!(
        job.metadata.owner_references, None,
        "an orphan loses its reference to the owner"
    );
    assert!(secrets.get_opt("secret-b").await.unwrap().is_some());
    // Jobs orphan their Pods by default, like the real API server.
    jobs.delete("job-b", &DeleteParams::default())
        .await
        .unwrap();
    let pod = pods.get("pod-b").await.unwrap();
    assert_eq!(pod.metadata.owner_references, None);

    family("c").await;
    jobs.delete("job-c", &DeleteParams::background())
        .await
        .unwrap();
    assert_eq!(pods.get_opt("pod-c").await.unwrap(), None);
    assert!(secrets.get_opt("secret-c").await.unwrap().is_some());

    // A finalizer on the owner defers the collection until it is removed.
    family("d").await;
    let hold = json!({"metadata": {"finalizers": ["anneal.dev/cleanup"]}});
    ftjs.patch("ftj-d", &PatchParams::default(), &Patch::Merge(&hold))
        .await
        .unwrap();
    ftjs.delete("ftj-d", &DeleteParams::foreground())
        .await
        .unwrap();
    assert!(jobs.get_opt("job-d").await.unwrap().is_some());
    let release = json!({"metadata": {"finalizers": []}});
    ftjs.patch("ftj-d", &PatchParams::default(), &Patch::Merge(&release))
        .await
        .unwrap();
    assert!(ftjs.get_opt("ftj-d").await.unwrap().is_none());
    assert_eq!(jobs.get_opt("job-d").await.unwrap(), None);
    assert_eq!(pods.get_opt("pod-d").await.unwrap(), None);

    let left: Vec<String> = server
        .list::<Pod>()
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    assert_eq!(left, ["pod-b"]);
}

#[tokio::test]
async fn raw_watch_sees_added_modified_deleted_in_order() {
    let server = FakeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let pp = PostParams::default();
    cms.create(&pp, &config_map("before", &[("app", "web")]))
        .await
        .unwrap();
    let from = server.resource_version().to_string();

    let mut all = cms
        .watch(&WatchParams::default().disable_bookmarks(), &from)
        .await
        .unwrap()
        .boxed();
    let mut web = cms
        .watch(
            &WatchParams::default().labels("app=web").disable_bookmarks(),
            "0",
        )
        .await
        .unwrap()
        .boxed();
    assert!(
        matches!(next(&mut web).await.unwrap(), WatchEvent::Added(cm) if cm.name_any() == "before")
    );

    cms.create(&pp, &config_map("a", &[("app", "web")]))
        .await
        .unwrap();
    let relabel = json!({"metadata": {"labels": {"app": "db"}}});
    cms.patch("a", &PatchParams::default(), &Patch::Merge(&relabel))
        .await
        .unwrap();
    cms.delete("a", &DeleteParams::default()).await.unwrap();

    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(match next(&mut all).await.unwrap() {
            WatchEvent::Added(cm) => ("ADDED", cm.metadata.resource_version.unwrap()),
            WatchEvent::Modified(cm) => ("MODIFIED", cm.metadata.resource_version.unwrap()),
            WatchEvent::Deleted(cm) => ("DELETED", cm.metadata.resource_version.unwrap()),
            other => panic!("unexpected {other:?}"),
        });
    }
    assert_eq!(
        seen,
        [
            ("ADDED", "2".into()),
            ("MODIFIED", "3".into()),
            ("DELETED", "4".into())
        ]
    );

    // Through a selector, an object that stops matching is a deletion.
    assert!(matches!(next(&mut web).await.unwrap(), WatchEvent::Added(cm) if cm.name_any() == "a"));
    assert!(
        matches!(next(&mut web).await.unwrap(), WatchEvent::Deleted(cm) if cm.name_any() == "a")
    );
}

#[tokio::test]
async fn bookmarks_and_timeouts() {
    let options = Options {
        bookmark_interval: Duration::from_millis(100),
        ..Options::default()
    };
    let server = FakeApiServer::start_with(options).await;
    let leases: Api<Lease> = Api::default_namespaced(server.client());
    leases
        .create(
            &PostParams::default(),
            &Lease {
                metadata: ObjectMeta {
                    name: Some("l".into()),
                    ..ObjectMeta::default()
                },
                ..Lease::default()
            },
        )
        .await
        .unwrap();

    let params = WatchParams::default().timeout(1);
    let mut stream = leases.watch(&params, "1").await.unwrap().boxed();
    match next(&mut stream).await.unwrap() {
        WatchEvent::Bookmark(bookmark) => assert_eq!(bookmark.metadata.resource_version, "1"),
        other => panic!("expected a bookmark, got {other:?}"),
    }
    let started = std::time::Instant::now();
    let rest: Vec<_> = tokio::time::timeout(WAIT, stream.try_collect::<Vec<_>>())
        .await
        .unwrap()
        .unwrap();
    assert!(rest.iter().all(|e| matches!(e, WatchEvent::Bookmark(_))));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "timeoutSeconds ends the stream"
    );
}

#[tokio::test]
async fn stale_resource_version_gets_410_and_the_watcher_relists() {
    let server = FakeApiServer::start().await;
    let client = server.client();
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    let pp = PostParams::default();
    cms.create(&pp, &config_map("a", &[])).await.unwrap();

    let mut events = watcher(cms.clone(), watcher::Config::default().disable_bookmarks()).boxed();
    assert!(matches!(
        next(&mut events).await.unwrap(),
        watcher::Event::Init
    ));
    assert!(
        matches!(next(&mut events).await.unwrap(), watcher::Event::InitApply(cm) if cm.name_any() == "a")
    );
    assert!(matches!(
        next(&mut events).await.unwrap(),
        watcher::Event::InitDone
    ));

    // History moves on without ConfigMap events, is compacted, and the watch
    // connection drops: the watcher resumes from its old resourceVersion.
    secrets
        .create(
            &pp,
            &Secret {
                metadata: ObjectMeta {
                    name: Some("s".into()),
                    ..ObjectMeta::default()
                },
                ..Secret::default()
            },
        )
        .await
        .unwrap();
    let compacted_at = server.resource_version();
    server.compact();
    server.disconnect_watches();
    match next(&mut events).await {
        Err(watcher::Error::WatchError(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"))
        }
        other => panic!("expected 410 Gone, got {other:?}"),
    }
    assert!(matches!(
        next(&mut events).await.unwrap(),
        watcher::Event::Init
    ));
    assert!(
        matches!(next(&mut events).await.unwrap(), watcher::Event::InitApply(cm) if cm.name_any() == "a")
    );
    assert!(matches!(
        next(&mut events).await.unwrap(),
        watcher::Event::InitDone
    ));
    cms.create(&pp, &config_map("b", &[])).await.unwrap();
    assert!(
        matches!(next(&mut events).await.unwrap(), watcher::Event::Apply(cm) if cm.name_any() == "b")
    );
    cms.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(
        matches!(next(&mut events).await.unwrap(), watcher::Event::Delete(cm) if cm.name_any() == "a")
    );

    // A raw watch from before the compaction gets the same single ERROR event.
    let stale = (compacted_at - 1).to_string();
    let errors: Vec<_> = cms
        .watch(&WatchParams::default(), &stale)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    match errors.as_slice() {
        [WatchEvent::Error(status)] => assert_eq!(status.code, 410),
        other => panic!("expected one ERROR event, got {other:?}"),
    }
}

#[tokio::test]
async fn controller_reconciles_every_config_map() {
    let server = FakeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    let pp = PostParams::default();
    cms.create(&pp, &config_map("existing", &[])).await.unwrap();

    async fn reconcile(cm: Arc<ConfigMap>, client: Arc<Client>) -> Result<Action, kube::Error> {
        let api: Api<ConfigMap> = Api::namespaced((*client).clone(), &cm.namespace().unwrap());
        let mark = json!({"metadata": {"annotations": {"reconciled": "yes"}}});
        api.patch(
            &cm.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&mark),
        )
        .await?;
        Ok(Action::await_change())
    }
    fn error_policy(_: Arc<ConfigMap>, _: &kube::Error, _: Arc<Client>) -> Action {
        Action::requeue(Duration::from_millis(50))
    }
    let controller = Controller::new(cms.clone(), watcher::Config::default())
        .run(reconcile, error_policy, Arc::new(server.client()))
        .for_each(|_| async {});
    let controller = tokio::spawn(controller);

    cms.create(&pp, &config_map("new-1", &[])).await.unwrap();
    cms.create(&pp, &config_map("new-2", &[])).await.unwrap();
    let reconciled = async {
        loop {
            let marked = server
                .list::<ConfigMap>()
                .iter()
                .filter(|cm| cm.annotations().get("reconciled").map(String::as_str) == Some("yes"))
                .count();
            if marked == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(WAIT, reconciled)
        .await
        .expect("all three reconciled");
    controller.abort();
    // The second reconcile of each patches nothing, so no event loops it back.
    for name in ["existing", "new-1", "new-2"] {
        let generation = server
            .get::<ConfigMap>("default", name)
            .unwrap()
            .metadata
            .generation;
        assert_eq!(generation, Some(1));
    }
}

#[tokio::test]
async fn discovery_in_process_client_and_unknown_resources() {
    let server = FakeApiServer::start().await;
    let client = server.client();
    assert_eq!(client.apiserver_version().await.unwrap().minor, "33");
    let discovery = kube::Discovery::new(client.clone()).run().await.unwrap();
    let gvk = GroupVersionKind::gvk("anneal.dev", "v1alpha1", "FineTuneJob");
    let (resource, caps) = discovery.resolve_gvk(&gvk).expect("FineTuneJob discovered");
    assert_eq!(
        (resource.plural.as_str(), caps.scope),
        ("finetunejobs", kube::discovery::Scope::Namespaced)
    );

    // The same state through the router as an in-process tower::Service.
    let direct: Api<ConfigMap> = Api::default_namespaced(server.service_client());
    direct
        .create(&PostParams::default(), &config_map("direct", &[]))
        .await
        .unwrap();
    let over_http: Api<ConfigMap> = Api::default_namespaced(client.clone());
    assert_eq!(over_http.get("direct").await.unwrap().name_any(), "direct");

    let widgets = ApiResource::from_gvk(&GroupVersionKind::gvk("example.com", "v1", "Widget"));
    let widgets: Api<DynamicObject> = Api::default_namespaced_with(client, &widgets);
    assert_eq!(
        api_code(widgets.list(&ListParams::default()).await),
        (404, "NotFound".into())
    );
    assert!(server.request_count() > 5);
    assert_eq!(server.objects("v1", "ConfigMap").len(), 1);
}

#[tokio::test]
async fn watcher_with_streaming_lists() {
    let server = FakeApiServer::start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(server.client());
    cms.create(&PostParams::default(), &config_map("a", &[]))
        .await
        .unwrap();
    let mut events = watcher(cms.clone(), watcher::Config::default().streaming_lists()).boxed();
    assert!(matches!(
        next(&mut events).await.unwrap(),
        watcher::Event::Init
    ));
    assert!(
        matches!(next(&mut events).await.unwrap(), watcher::Event::InitApply(cm) if cm.name_any() == "a")
    );
    assert!(matches!(
        next(&mut events).await.unwrap(),
        watcher::Event::InitDone
    ));
    cms.create(&PostParams::default(), &config_map("b", &[]))
        .await
        .unwrap();
    assert!(
        matches!(next(&mut events).await.unwrap(), watcher::Event::Apply(cm) if cm.name_any() == "b")
    );
}

#[tokio::test]
async fn the_fault_schedule_fails_one_users_requests_as_a_busy_server_would() {
    use anneal_fake_apiserver::FaultSchedule;
    let server = FakeApiServer::start().await;
    let schedule = |errors, conflicts, gone, drop| FaultSchedule {
        seed: 1,
        user: Some("operator".into()),
        server_error_percent: errors,
        conflict_percent: conflicts,
        latency_percent: 0,
        latency: Duration::ZERO,
        watch_gone_percent: gone,
        watch_drop_percent: drop,
        watch_drop_within: Duration::from_millis(200),
    };
    let operator: Api<ConfigMap> = Api::namespaced(server.client_as("operator"), "default");
    let test: Api<ConfigMap> = Api::namespaced(server.client(), "default");

    server.set_faults(Some(schedule(100, 0, 0, 0)));
    assert_eq!(api_code(operator.list(&ListParams::default()).await).0, 500);
    assert!(
        test.list(&ListParams::default()).await.is_ok(),
        "another user is spared"
    );

    server.set_faults(Some(schedule(0, 100, 0, 0)));
    let created = operator
        .create(&PostParams::default(), &config_map("a", &[]))
        .await;
    assert_eq!(api_code(created).0, 409);
    assert!(
        server.list::<ConfigMap>().is_empty(),
        "a refused write writes nothing"
    );
    assert!(
        operator.list(&ListParams::default()).await.is_ok(),
        "reads pass"
    );

    server.set_faults(Some(schedule(0, 0, 100, 0)));
    let mut events = operator
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    match next(&mut events).await {
        Ok(WatchEvent::Error(status)) => assert_eq!(status.code, 410),
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }

    server.set_faults(Some(schedule(0, 0, 0, 100)));
    let mut events = operator
        .watch(&WatchParams::default().timeout(60), "0")
        .await
        .unwrap()
        .boxed();
    let ended = tokio::time::timeout(Duration::from_secs(5), events.next()).await;
    assert!(
        matches!(ended, Ok(None)),
        "a dropped stream ends well before its 60 s timeout: {ended:?}"
    );
    let counts = server.fault_counts();
    assert_eq!(
        (
            counts.server_errors,
            counts.conflicts,
            counts.watches_gone,
            counts.watches_dropped
        ),
        (1, 1, 1, 1)
    );
}
