//! kube-rs against the simulator: each verb, its errors, and the Status bodies clients see.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers, like #[test] bodies, may panic.

mod common;

use std::time::Duration;

use common::{deployment, eventually, sim};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::core::{Status, response::StatusSummary};
use kube::runtime::watcher;
use serde_json::json;

fn cm(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}),
    )
    .unwrap()
}

fn api_error(e: kube::Error) -> Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn create_get_list_with_selectors_and_paging() {
    let sim = sim().await;
    let client = sim.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for (name, tier) in [("a", "web"), ("b", "db"), ("c", "web"), ("d", "cache")] {
        cms.create(
            &PostParams::default(),
            &cm(name, json!({"tier": tier, "app": "shop"})),
        )
        .await
        .unwrap();
    }
    let got = cms.get("b").await.unwrap();
    assert_eq!(got.metadata.labels.unwrap()["tier"], "db");
    assert!(
        got.metadata.uid.is_some()
            && got.metadata.creation_timestamp.is_some()
            && got.metadata.resource_version.is_some()
    );

    let names = |l: kube::core::ObjectList<ConfigMap>| {
        l.items
            .into_iter()
            .map(|c| c.metadata.name.unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("tier=web"))
                .await
                .unwrap()
        ),
        ["a", "c"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("tier in (db,cache)"))
                .await
                .unwrap()
        ),
        ["b", "d"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("tier notin (web),app==shop"))
                .await
                .unwrap()
        ),
        ["b", "d"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("tier!=web"))
                .await
                .unwrap()
        ),
        ["b", "d"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("!tier"))
                .await
                .unwrap()
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("tier"))
                .await
                .unwrap()
        )
        .len(),
        4
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().fields("metadata.name=c"))
                .await
                .unwrap()
        ),
        ["c"]
    );

    let first = cms.list(&ListParams::default().limit(3)).await.unwrap();
    let token = first.metadata.continue_.clone().expect("a continue token");
    assert_eq!(first.metadata.remaining_item_count, Some(1));
    assert_eq!(names(first), ["a", "b", "c"]);
    let second = cms
        .list(&ListParams::default().limit(3).continue_token(&token))
        .await
        .unwrap();
    assert!(second.metadata.continue_.is_none());
    assert_eq!(names(second), ["d"]);

    let err = api_error(
        cms.list(&ListParams::default().fields("data.k=v"))
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (400, "BadRequest"));
}

#[tokio::test]
async fn not_found_already_exists_and_missing_namespace() {
    let sim = sim().await;
    let client = sim.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let err = api_error(cms.get("nope").await.unwrap_err());
    assert_eq!(
        (err.code, err.reason.as_str(), err.status),
        (404, "NotFound", Some(StatusSummary::Failure))
    );
    assert_eq!(err.message, "configmaps \"nope\" not found");
    cms.create(&PostParams::default(), &cm("x", json!({})))
        .await
        .unwrap();
    let err = api_error(
        cms.create(&PostParams::default(), &cm("x", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "AlreadyExists"));
    let elsewhere: Api<ConfigMap> = Api::namespaced(client, "ghost");
    let err = api_error(
        elsewhere
            .create(&PostParams::default(), &cm("x", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (err.code, err.message.as_str()),
        (404, "namespaces \"ghost\" not found")
    );
}

#[tokio::test]
async fn generate_name_dry_run_and_secret_string_data() {
    let sim = sim().await;
    let client = sim.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let generated: ConfigMap =
        serde_json::from_value(json!({"metadata": {"generateName": "cfg-"}})).unwrap();
    let created = cms
        .create(&PostParams::default(), &generated)
        .await
        .unwrap();
    let name = created.metadata.name.unwrap();
    assert!(name.starts_with("cfg-") && name.len() == 9, "{name}");

    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let would = cms.create(&dry, &cm("dry", json!({}))).await.unwrap();
    assert_eq!(would.metadata.name.as_deref(), Some("dry"));
    assert!(cms.get_opt("dry").await.unwrap().is_none());
    let patched = cms
        .patch(
            "cfg-".to_string().as_str().replace("cfg-", &name).as_str(),
            &PatchParams {
                dry_run: true,
                ..Default::default()
            },
            &Patch::Merge(json!({"data": {"z": "1"}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.data.unwrap()["z"], "1");
    assert!(cms.get(&name).await.unwrap().data.is_none());
    cms.delete(
        &name,
        &DeleteParams {
            dry_run: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(cms.get_opt(&name).await.unwrap().is_some());

    let secrets: Api<Secret> = Api::namespaced(client, "default");
    let s: Secret = serde_json::from_value(
        json!({"metadata": {"name": "s"}, "stringData": {"password": "hunter2"}}),
    )
    .unwrap();
    let stored = secrets.create(&PostParams::default(), &s).await.unwrap();
    assert_eq!(stored.data.unwrap()["password"].0, b"hunter2");
    assert!(stored.string_data.is_none());
    assert_eq!(stored.type_.as_deref(), Some("Opaque"));
}

#[tokio::test]
async fn update_conflicts_on_stale_resource_version() {
    let sim = sim().await;
    let cms: Api<ConfigMap> = Api::namespaced(sim.client().await.unwrap(), "default");
    let created = cms
        .create(&PostParams::default(), &cm("c", json!({})))
        .await
        .unwrap();
    let mut first = created.clone();
    first.data = Some([("k".to_string(), "1".to_string())].into());
    let updated = cms
        .replace("c", &PostParams::default(), &first)
        .await
        .unwrap();
    assert_ne!(
        updated.metadata.resource_version,
        created.metadata.resource_version
    );
    let mut stale = created;
    stale.data = Some([("k".to_string(), "2".to_string())].into());
    let err = api_error(
        cms.replace("c", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert!(
        err.message.contains("the object has been modified"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn merge_json_and_strategic_patches() {
    let sim = sim().await;
    let client = sim.client().await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(&PostParams::default(), &cm("p", json!({"a": "1"})))
        .await
        .unwrap();
    let merged = cms
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"labels": {"a": null, "b": "2"}}, "data": {"n": "m"}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        merged
            .metadata
            .labels
            .unwrap()
            .into_iter()
            .collect::<Vec<_>>(),
        [("b".to_string(), "2".to_string())]
    );
    assert_eq!(merged.data.as_ref().unwrap()["n"], "m");
    let ops: json_patch::Patch = serde_json::from_value(json!([{"op": "replace", "path": "/data/k", "value": "patched"}, {"op": "remove", "path": "/data/n"}])).unwrap();
    let patched = cms
        .patch("p", &PatchParams::default(), &Patch::<()>::Json(ops))
        .await
        .unwrap();
    assert_eq!(
        patched.data.unwrap().into_iter().collect::<Vec<_>>(),
        [("k".to_string(), "patched".to_string())]
    );
    let bad: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/data/k", "value": "other"}]))
            .unwrap();
    let err = api_error(
        cms.patch("p", &PatchParams::default(), &Patch::<()>::Json(bad))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422);

    let deploys: Api<Deployment> = Api::namespaced(client, "default");
    let mut d = deployment("web", "nginx:1.27", 1);
    d["spec"]["template"]["spec"]["containers"] =
        json!([{"name": "app", "image": "nginx:1.27"}, {"name": "side", "image": "busybox:1"}]);
    deploys
        .create(&PostParams::default(), &serde_json::from_value(d).unwrap())
        .await
        .unwrap();
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "side", "image": "busybox:2"}]}}}});
    let after = deploys
        .patch("web", &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .unwrap();
    let containers = after.spec.unwrap().template.spec.unwrap().containers;
    assert_eq!(
        containers
            .iter()
            .map(|c| (c.name.as_str(), c.image.clone().unwrap()))
            .collect::<Vec<_>>(),
        [
            ("app", "nginx:1.27".to_string()),
            ("side", "busybox:2".to_string())
        ]
    );
    assert_eq!(after.metadata.generation, Some(2));
}

#[tokio::test]
async fn server_side_apply_conflicts_force_and_field_removal() {
    let sim = sim().await;
    let cms: Api<ConfigMap> = Api::namespaced(sim.client().await.unwrap(), "default");
    let config = |data: serde_json::Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": data});
    let alice = PatchParams::apply("alice");
    let created = cms
        .patch(
            "ssa",
            &alice,
            &Patch::Apply(config(json!({"a": "1", "b": "2"}))),
        )
        .await
        .unwrap();
    assert_eq!(created.data.as_ref().unwrap().len(), 2);
    let managers: Vec<_> = created
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .map(|m| (m.manager.unwrap(), m.operation.unwrap()))
        .collect();
    assert_eq!(managers, [("alice".to_string(), "Apply".to_string())]);

    let bob = PatchParams::apply("bob");
    let err = api_error(
        cms.patch("ssa", &bob, &Patch::Apply(config(json!({"a": "9"}))))
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert!(
        err.message.contains("conflict with \"alice\"") && err.message.contains(".data.a"),
        "{}",
        err.message
    );
    // Same value: shared ownership, no conflict.
    cms.patch("ssa", &bob, &Patch::Apply(config(json!({"b": "2"}))))
        .await
        .unwrap();
    let forced = cms
        .patch(
            "ssa",
            &bob.clone().force(),
            &Patch::Apply(config(json!({"a": "9", "b": "2"}))),
        )
        .await
        .unwrap();
    assert_eq!(forced.data.as_ref().unwrap()["a"], "9");

    // Alice drops b (still owned by bob, so it stays) and c appears then disappears.
    cms.patch("ssa", &alice, &Patch::Apply(config(json!({"c": "3"}))))
        .await
        .unwrap();
    let after = cms
        .patch("ssa", &alice, &Patch::Apply(config(json!({}))))
        .await
        .unwrap();
    let data = after.data.unwrap();
    assert_eq!(data.keys().cloned().collect::<Vec<_>>(), ["a", "b"]);

    // An Update by another manager takes ownership, so re-applying the old value conflicts.
    cms.patch(
        "ssa",
        &PatchParams {
            field_manager: Some("editor".into()),
            ..Default::default()
        },
        &Patch::Merge(json!({"data": {"a": "edited"}})),
    )
    .await
    .unwrap();
    let err = api_error(
        cms.patch(
            "ssa",
            &bob,
            &Patch::Apply(config(json!({"a": "9", "b": "2"}))),
        )
        .await
        .unwrap_err(),
    );
    assert!(
        err.message.contains("conflict with \"editor\""),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn validation_errors_carry_causes() {
    let sim = sim().await;
    let client = sim.client().await.unwrap();
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let mut bad = deployment("Bad_Name", "", 1);
    bad["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
    let status = api_error(
        deploys
            .create(
                &PostParams::default(),
                &serde_json::from_value(bad).unwrap(),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(status.code, 422);
    assert_eq!(status.reason, "Invalid");
    let causes = status.details.unwrap().causes;
    let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "metadata.name",
            "spec.template.metadata.labels",
            "spec.template.spec.containers[0].image"
        ]
    );

    common::create_deployment(&deploys, "ok", "nginx:1", 1).await;
    let err = api_error(deploys.patch("ok", &PatchParams::default(), &Patch::Merge(json!({"spec": {"selector": {"matchLabels": {"app": "ok", "x": "y"}}, "template": {"metadata": {"labels": {"x": "y"}}}}}))).await.unwrap_err());
    assert_eq!(err.code, 422);
    assert!(
        err.message.contains("field is immutable"),
        "{}",
        err.message
    );

    let services: Api<Service> = Api::namespaced(client, "default");
    let svc: Service = serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})).unwrap();
    let svc = services.create(&PostParams::default(), &svc).await.unwrap();
    let spec = svc.spec.unwrap();
    assert!(spec.cluster_ip.unwrap().starts_with("10.100."));
    let port = &spec.ports.unwrap()[0];
    assert_eq!(port.protocol.as_deref(), Some("TCP"));
    assert_eq!(
        port.target_port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(80))
    );
    let err = api_error(
        services
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"clusterIP": "10.100.9.9"}})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    let bad_port: Service = serde_json::from_value(
        json!({"metadata": {"name": "bad"}, "spec": {"ports": [{"port": 70000}]}}),
    )
    .unwrap();
    assert_eq!(
        api_error(
            services
                .create(&PostParams::default(), &bad_port)
                .await
                .unwrap_err()
        )
        .code,
        422
    );
}

#[tokio::test]
async fn delete_cascades_through_owner_references_and_namespaces() {
    let sim = sim().await;
    let client = sim.client().await.unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "team"}})).unwrap(),
        )
        .await
        .unwrap();
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "team");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "team");
    common::create_deployment(&deploys, "web", "nginx:1", 2).await;
    eventually("two pods", Duration::from_secs(10), || async {
        (pods.list(&ListParams::default()).await.unwrap().items.len() == 2).then_some(())
    })
    .await;

    deploys
        .delete("web", &DeleteParams::background())
        .await
        .unwrap();
    eventually(
        "pods garbage-collected",
        Duration::from_secs(10),
        || async {
            pods.list(&ListParams::default())
                .await
                .unwrap()
                .items
                .is_empty()
                .then_some(())
        },
    )
    .await;

    // Orphaning keeps the ReplicaSet and drops its owner reference.
    common::create_deployment(&deploys, "api", "nginx:1", 1).await;
    let rss: Api<k8s_openapi::api::apps::v1::ReplicaSet> = Api::namespaced(client.clone(), "team");
    eventually("replicaset", Duration::from_secs(10), || async {
        (!rss
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty())
        .then_some(())
    })
    .await;
    deploys
        .delete(
            "api",
            &DeleteParams {
                propagation_policy: Some(PropagationPolicy::Orphan),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // A marker whose owner never existed, created after the orphaning DELETE: the garbage
    // collector deletes it on its next pass (garbagecollector.go attemptToDeleteItem: all owners
    // dangling), and that pass would have deleted the ReplicaSet had it still been owned.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "team");
    let mut marker = cm("gc-marker", json!({}));
    marker.metadata.owner_references = Some(vec![
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap", "name": "never-existed",
            "uid": "00000000-0000-0000-0000-000000000000"
        }))
        .unwrap(),
    ]);
    cms.create(&PostParams::default(), &marker).await.unwrap();
    eventually(
        "the garbage collector to delete the marker",
        Duration::from_secs(10),
        || async {
            cms.get_opt("gc-marker")
                .await
                .unwrap()
                .is_none()
                .then_some(())
        },
    )
    .await;
    let left = rss.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(left.len(), 1);
    assert!(
        left[0]
            .metadata
            .owner_references
            .as_ref()
            .is_none_or(|r| r.is_empty())
    );

    cms.create(&PostParams::default(), &cm("cfg", json!({})))
        .await
        .unwrap();
    let deleted = namespaces
        .delete("team", &DeleteParams::default())
        .await
        .unwrap();
    let terminating = deleted.left().expect("namespace deletion is not immediate");
    assert_eq!(
        terminating.status.unwrap().phase.as_deref(),
        Some("Terminating")
    );
    eventually("namespace gone", Duration::from_secs(10), || async {
        namespaces
            .get_opt("team")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(cms.get_opt("cfg").await.unwrap().is_none());
    let err = api_error(
        cms.create(&PostParams::default(), &cm("late", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 404);
}

/// kube-runtime's watcher against the simulator: the initial list, then adds, changes and deletes
/// in order, and an object that stops matching the label selector arrives as a delete, as the
/// API server's watch cache sends it (kubernetes/kubernetes
/// staging/src/k8s.io/apiserver/pkg/storage/cacher/cache_watcher.go, `convertToWatchEvent`:
/// old object passes the filter, new one does not → `watch.Deleted`).
#[tokio::test]
async fn watcher_sees_adds_changes_and_deletes() {
    let sim = sim().await;
    let cms: Api<ConfigMap> = Api::namespaced(sim.client().await.unwrap(), "default");
    let pp = PostParams::default();
    cms.create(&pp, &cm("before", json!({"watched": "yes"})))
        .await
        .unwrap();
    let mut stream = watcher(
        cms.clone(),
        watcher::Config::default().labels("watched=yes"),
    )
    .boxed();
    let mut next = async || -> watcher::Event<ConfigMap> {
        tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("a watch event within 10 s")
            .expect("the watch stream goes on")
            .expect("no watch error")
    };
    let described = |e: &watcher::Event<ConfigMap>| -> String {
        let d = |o: &ConfigMap| {
            format!(
                "{}={}",
                o.metadata.name.as_deref().unwrap_or_default(),
                o.data
                    .as_ref()
                    .and_then(|d| d.get("k"))
                    .cloned()
                    .unwrap_or_default()
            )
        };
        match e {
            watcher::Event::Init => "init".into(),
            watcher::Event::InitApply(o) => format!("init-apply {}", d(o)),
            watcher::Event::InitDone => "init-done".into(),
            watcher::Event::Apply(o) => format!("apply {}", d(o)),
            watcher::Event::Delete(o) => format!("delete {}", d(o)),
        }
    };
    // The initial list: the watch is established once it is done, so no sleep is needed.
    let mut initial = Vec::new();
    loop {
        let event = next().await;
        let done = matches!(event, watcher::Event::InitDone);
        initial.push(described(&event));
        if done {
            break;
        }
    }
    assert_eq!(initial, ["init", "init-apply before=v", "init-done"]);

    cms.create(&pp, &cm("w1", json!({"watched": "yes"})))
        .await
        .unwrap();
    cms.create(&pp, &cm("ignored", json!({"watched": "no"})))
        .await
        .unwrap();
    cms.patch(
        "w1",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "changed"}})),
    )
    .await
    .unwrap();
    cms.patch(
        "before",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"watched": "no"}}})),
    )
    .await
    .unwrap();
    cms.delete("w1", &DeleteParams::default()).await.unwrap();
    cms.delete("ignored", &DeleteParams::default())
        .await
        .unwrap();

    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(described(&next().await));
    }
    assert_eq!(
        seen,
        [
            "apply w1=v",
            "apply w1=changed",
            "delete before=v",
            "delete w1=changed"
        ]
    );
}

#[tokio::test]
async fn raw_watch_resumes_bookmarks_and_expires() {
    let sim = common::sim_with(cluster::SimConfig {
        watch_history: 5,
        bookmark_interval: Duration::from_millis(100),
        ..Default::default()
    })
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(sim.client().await.unwrap(), "default");
    let first = cms
        .create(&PostParams::default(), &cm("r0", json!({})))
        .await
        .unwrap();
    let rv = first.metadata.resource_version.clone().unwrap();
    cms.create(&PostParams::default(), &cm("r1", json!({})))
        .await
        .unwrap();

    let http = reqwest_like_get(&sim, &format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=1")).await;
    let lines: Vec<serde_json::Value> = http
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["type"], "ADDED");
    assert_eq!(lines[0]["object"]["metadata"]["name"], "r1");
    assert!(lines.iter().any(|l| l["type"] == "BOOKMARK"), "{lines:?}");

    for i in 2..12 {
        cms.create(&PostParams::default(), &cm(&format!("r{i}"), json!({})))
            .await
            .unwrap();
    }
    let http = reqwest_like_get(
        &sim,
        &format!(
            "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=1"
        ),
    )
    .await;
    let line: serde_json::Value = serde_json::from_str(http.lines().next().unwrap()).unwrap();
    assert_eq!(line["type"], "ERROR");
    assert_eq!(line["object"]["code"], 410);
    assert_eq!(line["object"]["reason"], "Expired");
}

/// A plain HTTP GET with the admin token, returning the whole body (the watch ends by timeoutSeconds).
async fn reqwest_like_get(sim: &cluster::RunningSim, path: &str) -> String {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let req = http::Request::get(format!("{}{path}", sim.api_url()))
        .header("Authorization", format!("Bearer {}", sim.admin_token()))
        .body(http_body_util::Empty::new())
        .unwrap();
    let res = client.request(req).await.unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

#[tokio::test]
async fn unauthorized_and_forbidden() {
    let sim = sim().await;
    let bad = sim.client_with_token("wrong").await.unwrap();
    let err = api_error(
        Api::<ConfigMap>::namespaced(bad, "default")
            .list(&ListParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (401, "Unauthorized"));

    let admin = sim.client().await.unwrap();
    let token = sim.service_account_token("default", "reader");
    let reader = sim.client_with_token(&token).await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(reader.clone(), "default");
    let err = api_error(cms.list(&ListParams::default()).await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (403, "Forbidden"));
    assert!(
        err.message.contains("system:serviceaccount:default:reader"),
        "{}",
        err.message
    );

    let roles: Api<k8s_openapi::api::rbac::v1::Role> = Api::namespaced(admin.clone(), "default");
    roles.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "cm-read"}, "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]})).unwrap()).await.unwrap();
    let bindings: Api<k8s_openapi::api::rbac::v1::RoleBinding> = Api::namespaced(admin, "default");
    bindings.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "cm-read"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-read"}, "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": "default"}]})).unwrap()).await.unwrap();
    cms.list(&ListParams::default()).await.unwrap();
    assert_eq!(
        api_error(
            cms.create(&PostParams::default(), &cm("x", json!({})))
                .await
                .unwrap_err()
        )
        .code,
        403
    );

    let reviews: Api<k8s_openapi::api::authorization::v1::SelfSubjectAccessReview> =
        Api::all(reader);
    let ask = |verb: &str| {
        serde_json::from_value(json!({"spec": {"resourceAttributes": {"verb": verb, "resource": "configmaps", "namespace": "default"}}})).unwrap()
    };
    let yes = reviews
        .create(&PostParams::default(), &ask("list"))
        .await
        .unwrap();
    assert!(yes.status.unwrap().allowed);
    let no = reviews
        .create(&PostParams::default(), &ask("delete"))
        .await
        .unwrap();
    assert!(!no.status.unwrap().allowed);
}

#[tokio::test]
async fn discovery_lists_resources_with_short_names() {
    let sim = sim().await;
    let client = sim.client().await.unwrap();
    let apps = client.list_api_group_resources("apps/v1").await.unwrap();
    let deploy = apps
        .resources
        .iter()
        .find(|r| r.name == "deployments")
        .unwrap();
    assert_eq!(
        deploy.short_names.as_deref(),
        Some(&["deploy".to_string()][..])
    );
    assert!(deploy.namespaced);
    assert!(apps.resources.iter().any(|r| r.name == "deployments/scale"));
    let groups = client.list_api_groups().await.unwrap();
    assert!(groups.groups.iter().any(|g| g.name == "networking.k8s.io"));
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.minor, "34");
}

/// Re-applying a Service whose only port changed its number replaces the item the manager owned.
#[tokio::test]
async fn server_side_apply_replaces_a_list_item_whose_key_changed() {
    let sim = sim().await;
    let services: Api<Service> = Api::namespaced(sim.client().await.unwrap(), "default");
    let svc = |port: i32| {
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
               "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": port, "targetPort": 8080}]}})
    };
    let params = PatchParams::apply("deployer");
    services
        .patch("web", &params, &Patch::Apply(svc(80)))
        .await
        .unwrap();
    let updated = services
        .patch("web", &params, &Patch::Apply(svc(8080)))
        .await
        .unwrap();
    let ports = updated.spec.unwrap().ports.unwrap();
    assert_eq!(ports.len(), 1, "{ports:?}");
    assert_eq!(
        (ports[0].port, ports[0].name.as_deref()),
        (8080, Some("http"))
    );
}
