//! The simulated ingress is a model of F5 NGINX Ingress Controller 5.5.4, not of Ingress in
//! general. Each test names the NIC source it models (nginx/kubernetes-ingress at v5.5.4).
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers, like #[test] bodies, may panic.

mod common;

use std::time::Duration;

use common::{eventually, next_second, sim};
use k8s_openapi::api::core::v1::{Event, Namespace, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

const HOST: &str = "kdeploy.localhost";

async fn create<K>(client: &kube::Client, ns: &str, obj: Value) -> K
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + serde::Serialize,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    api.create(
        &PostParams::default(),
        &serde_json::from_value(obj).unwrap(),
    )
    .await
    .unwrap()
}

async fn namespace(client: &kube::Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
    )
    .await
    .unwrap();
}

fn ingress(name: &str, kind: Option<&str>, annotations: Value, paths: &[(&str, &str)]) -> Value {
    let mut annotations = annotations;
    if let Some(kind) = kind {
        annotations["nginx.org/mergeable-ingress-type"] = json!(kind);
    }
    let paths: Vec<Value> = paths
        .iter()
        .map(|(p, svc)| json!({"path": p, "pathType": "Prefix", "backend": {"service": {"name": svc, "port": {"number": 80}}}}))
        .collect();
    let rule = if paths.is_empty() {
        json!({"host": HOST})
    } else {
        json!({"host": HOST, "http": {"paths": paths}})
    };
    json!({"metadata": {"name": name, "annotations": annotations}, "spec": {"ingressClassName": "nginx", "rules": [rule]}})
}

/// A Deployment of simulated echo pods with its Service (port 80 → 8080).
async fn app(client: &kube::Client, ns: &str, name: &str) {
    let deployment = common::deployment(name, "echo:1", 1);
    create::<k8s_openapi::api::apps::v1::Deployment>(client, ns, deployment).await;
    create::<Service>(
        client,
        ns,
        json!({"metadata": {"name": name}, "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}),
    )
    .await;
}

/// (reason, type, message, count) of the NIC events about an Ingress, oldest first, read with the
/// field selectors the real API server indexes (event/strategy.go ToSelectableFields).
async fn nic_events(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Vec<(String, String, String, i32)> {
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), ns);
    let Ok(ing) = ingresses.get(name).await else {
        return Vec::new();
    };
    let uid = ing.metadata.uid.unwrap();
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let selector = format!(
        "involvedObject.kind=Ingress,involvedObject.uid={uid},source=nginx-ingress-controller"
    );
    let mut list = events
        .list(&ListParams::default().fields(&selector))
        .await
        .unwrap()
        .items;
    list.sort_by_key(|e| {
        (
            e.last_timestamp.clone().map(|t| t.0),
            e.metadata
                .resource_version
                .clone()
                .and_then(|v| v.parse::<u64>().ok()),
        )
    });
    list.into_iter()
        .map(|e| {
            (
                e.reason.unwrap_or_default(),
                e.type_.unwrap_or_default(),
                e.message.unwrap_or_default(),
                e.count.unwrap_or_default(),
            )
        })
        .collect()
}

/// The latest NIC verdict on an Ingress, once there is one.
async fn verdict(client: &kube::Client, ns: &str, name: &str) -> (String, String) {
    eventually("a NIC event", Duration::from_secs(10), || async {
        nic_events(client, ns, name)
            .await
            .pop()
            .map(|(reason, _, message, _)| (reason, message))
    })
    .await
}

async fn get(sim: &cluster::RunningSim, host: &str, path: &str) -> (u16, http::HeaderMap, String) {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let req = http::Request::get(format!("{}{path}", sim.ingress_url()))
        .header("Host", host)
        .body(http_body_util::Empty::new())
        .unwrap();
    let res = client.request(req).await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// Waits until `path` on HOST answers 200 from Service `service` in `ns`.
async fn served_by(sim: &cluster::RunningSim, path: &str, ns: &str, service: &str) -> Value {
    eventually(
        &format!("{path} served by {ns}/{service}"),
        Duration::from_secs(15),
        || async {
            let (code, _, body) = get(sim, &format!("{HOST}:8080"), path).await;
            let echo: Value = serde_json::from_str(&body).ok()?;
            (code == 200 && echo["namespace"] == ns && echo["service"] == service).then_some(echo)
        },
    )
    .await
}

/// configuration.go buildHostsAndResources / addProblemsForResourcesWithoutActiveHost and
/// controller.go processProblems: a later plain Ingress for a taken host is Rejected with
/// "All hosts are taken by other resources"; when the owner goes, the next-oldest takes the host
/// (updateRegularIngressStatusAndEvents: "Configuration for ns/name was added or updated ").
#[tokio::test]
async fn a_plain_ingress_for_a_taken_host_is_rejected_until_the_owner_goes() {
    let sim = sim().await;
    let client = sim.client().await.unwrap();
    namespace(&client, "alice").await;
    app(&client, "default", "site").await;
    app(&client, "alice", "hijack").await;
    create::<Ingress>(
        &client,
        "default",
        ingress("site", None, json!({}), &[("/", "site")]),
    )
    .await;
    assert_eq!(
        verdict(&client, "default", "site").await,
        (
            "AddedOrUpdated".into(),
            "Configuration for default/site was added or updated ".into()
        )
    );
    // creationTimestamp has second precision; a later second makes the order certain.
    next_second().await;
    create::<Ingress>(
        &client,
        "alice",
        ingress("hijack", None, json!({}), &[("/", "hijack")]),
    )
    .await;
    let events = eventually("rejection", Duration::from_secs(10), || async {
        let e = nic_events(&client, "alice", "hijack").await;
        (!e.is_empty()).then_some(e)
    })
    .await;
    assert_eq!(
        events,
        [(
            "Rejected".to_string(),
            "Warning".to_string(),
            "All hosts are taken by other resources".to_string(),
            1
        )]
    );
    served_by(&sim, "/anything", "default", "site").await;

    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), "default");
    ingresses.delete("site", &Default::default()).await.unwrap();
    // The controller records its events before NGINX serves the new configuration.
    served_by(&sim, "/anything", "alice", "hijack").await;
    assert_eq!(
        verdict(&client, "alice", "hijack").await,
        (
            "AddedOrUpdated".into(),
            "Configuration for alice/hijack was added or updated ".into()
        )
    );
}

/// Mergeable Ingresses (examples/ingress-resources/mergeable-ingress-types, configuration.go
/// buildMinionConfigs, addProblemsForOrphanMinions): minions from any namespace are served under
/// their master; a minion without a master is not served and gets NoIngressMasterFound; the
/// newer of two minions with one path gets "path P is taken by another resource".
#[tokio::test]
async fn minions_from_several_namespaces_share_the_masters_host() {
    let sim = sim().await;
    let client = sim.client().await.unwrap();
    namespace(&client, "alice").await;
    namespace(&client, "bob").await;
    app(&client, "alice", "web").await;
    app(&client, "bob", "api").await;
    app(&client, "bob", "copycat").await;
    let rewrites =
        |svc: &str| json!({"nginx.org/rewrites": format!("serviceName={svc} rewrite=/")});
    create::<Ingress>(
        &client,
        "alice",
        ingress(
            "web",
            Some("minion"),
            rewrites("web"),
            &[("/alice/web/", "web")],
        ),
    )
    .await;
    assert_eq!(
        verdict(&client, "alice", "web").await,
        (
            "NoIngressMasterFound".into(),
            "Ingress master is invalid or doesn't exist".into()
        )
    );
    let (code, _, _) = get(&sim, HOST, "/alice/web/").await;
    assert_eq!(code, 404, "a minion without its master is not served");

    create::<Ingress>(
        &client,
        "default",
        ingress("kdeploy-host", Some("master"), json!({}), &[]),
    )
    .await;
    create::<Ingress>(
        &client,
        "bob",
        ingress(
            "api",
            Some("minion"),
            rewrites("api"),
            &[("/bob/api/", "api")],
        ),
    )
    .await;
    let echo = served_by(&sim, "/alice/web/hello?x=1", "alice", "web").await;
    assert_eq!(
        (echo["path"].as_str(), echo["query"].as_str()),
        (Some("/hello"), Some("x=1"))
    );
    assert_eq!(
        echo["headers"]["host"], HOST,
        "NIC passes Host $host, without the port"
    );
    served_by(&sim, "/bob/api/v1", "bob", "api").await;
    assert_eq!(
        verdict(&client, "alice", "web").await,
        (
            "AddedOrUpdated".into(),
            "Configuration for alice/web was added or updated".into()
        )
    );
    assert_eq!(
        verdict(&client, "default", "kdeploy-host").await.1,
        "Configuration for default/kdeploy-host was added or updated"
    );

    // The copycat must be younger than alice's minion: a later second of creationTimestamp.
    next_second().await;
    create::<Ingress>(
        &client,
        "bob",
        ingress(
            "copycat",
            Some("minion"),
            rewrites("copycat"),
            &[("/alice/web/", "copycat")],
        ),
    )
    .await;
    let warned = eventually("path warning", Duration::from_secs(10), || async {
        nic_events(&client, "bob", "copycat")
            .await
            .into_iter()
            .find(|(reason, ..)| reason == "AddedOrUpdatedWithWarning")
    })
    .await;
    assert_eq!(
        (warned.1.as_str(), warned.2.as_str()),
        (
            "Warning",
            "Configuration for bob/copycat was added or updated with warning(s): path /alice/web/ is taken by another resource"
        )
    );
    served_by(&sim, "/alice/web/", "alice", "web").await;
}

/// nginx auto_redirect (ngx_http_core_module.c, docs #location) with absolute_redirect on and
/// port_in_redirect on, NGINX listening on 80 in its pod: `/ns/repo` → `http://<host>/ns/repo/`,
/// the client's port dropped, the query kept.
#[tokio::test]
async fn a_prefix_location_ending_in_a_slash_redirects_without_the_clients_port() {
    let sim = sim().await;
    let client = sim.client().await.unwrap();
    app(&client, "default", "web").await;
    create::<Ingress>(
        &client,
        "default",
        ingress("host", Some("master"), json!({}), &[]),
    )
    .await;
    create::<Ingress>(
        &client,
        "default",
        ingress(
            "web",
            Some("minion"),
            json!({"nginx.org/rewrites": "serviceName=web rewrite=/"}),
            &[("/alice/web/", "web")],
        ),
    )
    .await;
    served_by(&sim, "/alice/web/", "default", "web").await;
    let (code, headers, body) = get(&sim, "Kdeploy.Localhost:8080", "/alice/web?a=b").await;
    assert_eq!(code, 301);
    assert_eq!(
        headers["location"],
        "http://kdeploy.localhost/alice/web/?a=b"
    );
    assert!(
        body.contains("<title>301 Moved Permanently</title>"),
        "{body}"
    );
}

/// controller.go HasCorrectIngressClass: the class annotation wins over ingressClassName; other
/// classes are not judged (no events) and not served.
#[tokio::test]
async fn ingresses_of_other_classes_are_ignored() {
    let sim = sim().await;
    let client = sim.client().await.unwrap();
    app(&client, "default", "web").await;
    let mut alb = ingress("alb", None, json!({}), &[("/", "web")]);
    alb["spec"]["ingressClassName"] = json!("alb");
    create::<Ingress>(&client, "default", alb).await;
    create::<Ingress>(
        &client,
        "default",
        ingress(
            "annotated",
            None,
            json!({"kubernetes.io/ingress.class": "alb"}),
            &[("/", "web")],
        ),
    )
    .await;
    let mut classless = ingress("classless", None, json!({}), &[("/", "web")]);
    classless["spec"]
        .as_object_mut()
        .unwrap()
        .remove("ingressClassName");
    create::<Ingress>(&client, "default", classless).await;
    // A marker of NIC's class, created after them: NIC handles changes one at a time in the
    // order they arrive (internal/k8s/task_queue.go), so once it has judged the marker it has
    // seen the others.
    let mut marker = ingress("marker", None, json!({}), &[("/", "web")]);
    marker["spec"]["rules"][0]["host"] = json!("marker.localhost");
    create::<Ingress>(&client, "default", marker).await;
    assert_eq!(
        verdict(&client, "default", "marker").await.0,
        "AddedOrUpdated"
    );
    for name in ["alb", "annotated", "classless"] {
        assert!(
            nic_events(&client, "default", name).await.is_empty(),
            "{name}"
        );
    }
    assert_eq!(get(&sim, HOST, "/").await.0, 404);
}

/// validation.go validateIngress: NIC's own checks reject an Ingress with the aggregated field
/// errors (path-regex values; 5.5.4's illegalKeywordFmt refusing any path containing "/var");
/// denylisted annotations are dropped, not rejected (annotations.go masterDenylist /
/// minionDenylist, ingress.go filterMasterAnnotations) as long as their value passes validation.
#[tokio::test]
async fn nic_validation_rejects_and_denylisted_annotations_are_ignored() {
    let sim = sim().await;
    let client = sim.client().await.unwrap();
    app(&client, "default", "web").await;
    create::<Ingress>(
        &client,
        "default",
        ingress(
            "host",
            Some("master"),
            json!({"nginx.org/use-cluster-ip": "false"}),
            &[],
        ),
    )
    .await;
    create::<Ingress>(
        &client,
        "default",
        ingress(
            "web",
            Some("minion"),
            json!({"nginx.org/hsts": "true"}),
            &[("/web/", "web")],
        ),
    )
    .await;
    assert_eq!(
        verdict(&client, "default", "web").await,
        (
            "AddedOrUpdated".into(),
            "Configuration for default/web was added or updated".into()
        )
    );
    served_by(&sim, "/web/x", "default", "web").await;

    create::<Ingress>(
        &client,
        "default",
        ingress(
            "regex",
            Some("minion"),
            json!({"nginx.org/path-regex": "sometimes"}),
            &[("/r/", "web")],
        ),
    )
    .await;
    assert_eq!(
        verdict(&client, "default", "regex").await,
        ("Rejected".into(), r#"annotations.nginx.org/path-regex: Invalid value: "sometimes": allowed values: 'case_sensitive', 'case_insensitive' or 'exact'"#.into())
    );
    create::<Ingress>(
        &client,
        "default",
        ingress(
            "varun",
            Some("minion"),
            json!({}),
            &[("/varun/web/", "web")],
        ),
    )
    .await;
    assert_eq!(
        verdict(&client, "default", "varun").await,
        ("Rejected".into(), r#"spec.rules[0].http.paths[0].path: Invalid value: "/varun/web/": must not contain invalid paths"#.into())
    );
    let both = json!({"nginx.org/rewrites": "serviceName=web rewrite=/", "nginx.org/rewrite-target": "/x"});
    create::<Ingress>(
        &client,
        "default",
        ingress("both", Some("minion"), both, &[("/both/", "web")]),
    )
    .await;
    assert_eq!(
        verdict(&client, "default", "both").await,
        ("AddedOrUpdatedWithWarning".into(), "Configuration for default/both was added or updated with warning(s): nginx.org/rewrites and nginx.org/rewrite-target annotations are mutually exclusive; nginx.org/rewrites will take precedence".into())
    );
    let (code, ..) = get(&sim, HOST, "/varun/web/").await;
    assert_eq!(code, 404);
}

/// client-go tools/record/events_cache.go: the same verdict again (syncService re-reports the
/// resources of a Service whose ports change, service.go) is one Event with count 2 and the
/// first occurrence's firstTimestamp.
#[tokio::test]
async fn a_repeated_verdict_is_counted_on_one_event() {
    let sim = sim().await;
    let client = sim.client().await.unwrap();
    app(&client, "default", "web").await;
    create::<Ingress>(
        &client,
        "default",
        ingress("web", None, json!({}), &[("/", "web")]),
    )
    .await;
    verdict(&client, "default", "web").await;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let patch = json!({"spec": {"ports": [{"name": "http", "port": 81, "targetPort": 8080}]}});
    services
        .patch("web", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
    let events = eventually("count 2", Duration::from_secs(10), || async {
        let e = nic_events(&client, "default", "web").await;
        e.iter().any(|(.., count)| *count == 2).then_some(e)
    })
    .await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, "AddedOrUpdated");
    let all: Api<Event> = Api::namespaced(client.clone(), "default");
    let e = all
        .list(
            &ListParams::default()
                .fields("reason=AddedOrUpdated,type=Normal,source=nginx-ingress-controller"),
        )
        .await
        .unwrap()
        .items
        .remove(0);
    assert!(e.first_timestamp.unwrap().0 <= e.last_timestamp.unwrap().0);
    assert_eq!(
        e.involved_object.api_version.as_deref(),
        Some("networking.k8s.io/v1")
    );
    assert_eq!(
        e.reporting_component.as_deref(),
        Some("nginx-ingress-controller")
    );
    // Port 81 is not what the Ingress names (80): NGINX's upstream has no endpoints, so 502.
    eventually(
        "502 for a port the Service lacks",
        Duration::from_secs(5),
        || async { (get(&sim, HOST, "/").await.0 == 502).then_some(()) },
    )
    .await;
}

/// The API server (not NIC) refuses an IP address as an Ingress rule's host:
/// kubernetes pkg/apis/networking/validation/validation.go validateIngressRules
/// ("must be a DNS name, not an IP address").
#[tokio::test]
async fn the_api_server_refuses_an_ip_address_as_ingress_host() {
    let sim = sim().await;
    let client = sim.client().await.unwrap();
    let mut by_ip = ingress("by-ip", None, json!({}), &[("/", "web")]);
    by_ip["spec"]["rules"][0]["host"] = json!("10.0.0.7");
    let api: Api<Ingress> = Api::namespaced(client.clone(), "default");
    let err = api
        .create(
            &PostParams::default(),
            &serde_json::from_value(by_ip).unwrap(),
        )
        .await
        .expect_err("an IP host is refused");
    let kube::Error::Api(status) = err else {
        panic!("expected the API's refusal, got {err:?}");
    };
    assert_eq!(status.code, 422);
    assert!(
        status.message.contains(
            "spec.rules[0].host: Invalid value: \"10.0.0.7\": must be a DNS name, not an IP address"
        ),
        "{}",
        status.message
    );
}
