//! Controllers and the ingress data path: rollouts, pod failure modes, endpoints, routing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers, like #[test] bodies, may panic.

mod common;

use std::time::Duration;

use common::{deployment, eventually, sim, until};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Endpoints, Event, Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{Condition, await_condition, conditions};
use serde_json::{Value, json};

/// The mergeable master for `apps.example.com` (NIC gives a host to one Ingress; the services of
/// these tests share it through minions: examples/ingress-resources/mergeable-ingress-types).
async fn master(client: &kube::Client) {
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), "default");
    let ing = json!({"metadata": {"name": "apps", "annotations": {"nginx.org/mergeable-ingress-type": "master"}}, "spec": {"ingressClassName": "nginx", "rules": [{"host": "apps.example.com"}]}});
    ingresses
        .create(
            &PostParams::default(),
            &serde_json::from_value(ing).unwrap(),
        )
        .await
        .unwrap();
}

/// A Service for the Deployment `name` and a minion routing `path` on `apps.example.com` to it.
async fn expose(
    client: &kube::Client,
    name: &str,
    mut ingress_annotations: Value,
    path: &str,
    path_type: &str,
) {
    ingress_annotations["nginx.org/mergeable-ingress-type"] = json!("minion");
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc = json!({"metadata": {"name": name}, "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]}});
    services
        .create(
            &PostParams::default(),
            &serde_json::from_value(svc).unwrap(),
        )
        .await
        .unwrap();
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), "default");
    let ing = json!({"metadata": {"name": name, "annotations": ingress_annotations}, "spec": {"ingressClassName": "nginx", "rules": [{"host": "apps.example.com", "http": {"paths": [{"path": path, "pathType": path_type, "backend": {"service": {"name": name, "port": {"number": 80}}}}]}}]}});
    ingresses
        .create(
            &PostParams::default(),
            &serde_json::from_value(ing).unwrap(),
        )
        .await
        .unwrap();
}

async fn get(sim: &cluster::RunningSim, host: &str, path: &str) -> (u16, String) {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let req = http::Request::get(format!("{}{path}", sim.ingress_url()))
        .header("Host", host)
        .header("X-Test", "1")
        .body(http_body_util::Empty::new())
        .unwrap();
    let res = client.request(req).await.unwrap();
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn deployment_becomes_available_with_kubectl_visible_status() {
    let sim = sim().await;
    let client = sim.client().await.unwrap();
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    common::create_deployment(&deploys, "web", "nginx:1.27", 3).await;
    common::rolled_out(&deploys, "web", Duration::from_secs(15)).await;
    let d = deploys.get("web").await.unwrap();
    let status = d.status.unwrap();
    assert_eq!(
        (
            status.replicas,
            status.updated_replicas,
            status.ready_replicas,
            status.available_replicas
        ),
        (Some(3), Some(3), Some(3), Some(3))
    );
    assert_eq!(status.observed_generation, d.metadata.generation);
    let progressing = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Progressing")
        .unwrap();
    assert_eq!(
        progressing.reason.as_deref(),
        Some("NewReplicaSetAvailable")
    );

    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let rs = rss
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .remove(0);
    let hash = rs.metadata.labels.as_ref().unwrap()["pod-template-hash"].clone();
    assert_eq!(
        rs.metadata.name.as_deref(),
        Some(format!("web-{hash}").as_str())
    );
    assert_eq!(
        rs.metadata.annotations.as_ref().unwrap()["deployment.kubernetes.io/revision"],
        "1"
    );
    assert_eq!(
        rs.metadata.owner_references.as_ref().unwrap()[0].name,
        "web"
    );

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let list = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items;
    assert_eq!(list.len(), 3);
    for p in &list {
        let status = p.status.as_ref().unwrap();
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert!(status.pod_ip.is_some());
        assert!(
            p.spec
                .as_ref()
                .unwrap()
                .node_name
                .as_ref()
                .unwrap()
                .starts_with("sim-node-")
        );
    }
}

#[tokio::test]
async fn missing_and_crashing_images_are_reported_like_a_kubelet() {
    let sim = sim().await;
    let client = sim.client().await.unwrap();
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deploys
        .create(
            &PostParams::default(),
            &serde_json::from_value(deployment("ghost", "registry.local/does-not-exist:1", 1))
                .unwrap(),
        )
        .await
        .unwrap();
    common::create_deployment(&deploys, "boom", "registry.local/crash:1", 1).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let waiting = |app: &'static str, reason: &'static str| {
        let pods = pods.clone();
        async move {
            let list = pods
                .list(&ListParams::default().labels(&format!("app={app}")))
                .await
                .unwrap()
                .items;
            let cs = list
                .first()?
                .status
                .as_ref()?
                .container_statuses
                .as_ref()?
                .first()?
                .clone();
            (cs.state.as_ref()?.waiting.as_ref()?.reason.as_deref() == Some(reason)).then_some(cs)
        }
    };
    eventually("ImagePullBackOff", Duration::from_secs(10), || {
        waiting("ghost", "ImagePullBackOff")
    })
    .await;
    let crashing = eventually("restarts", Duration::from_secs(10), || async {
        waiting("boom", "CrashLoopBackOff")
            .await
            .filter(|cs| cs.restart_count >= 2)
    })
    .await;
    assert!(!crashing.ready);
    let events: Api<Event> = Api::namespaced(client, "default");
    let reasons: Vec<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    assert!(
        reasons.iter().any(|r| r == "Failed") && reasons.iter().any(|r| r == "BackOff"),
        "{reasons:?}"
    );
    let d = deploys.get("ghost").await.unwrap();
    assert_eq!(d.status.unwrap().unavailable_replicas, Some(1));
}

/// NIC's data path through mergeable minions: path-regex + rewrite-target, rewrites with the
/// auto-redirect, 404 for unknown hosts and paths, 502 for a Service without ready endpoints
/// (NewUpstreamWithDefaultServer in NIC's internal/configs/version1/config.go).
#[tokio::test]
async fn ingress_routes_through_minions_with_rewrites_404_and_502() {
    let sim = sim().await;
    let client = sim.client().await.unwrap();
    master(&client).await;
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    common::create_deployment(&deploys, "echo", "echo:1", 2).await;
    expose(
        &client,
        "echo",
        json!({"nginx.org/path-regex": "case_sensitive", "nginx.org/rewrite-target": "/$2"}),
        "/team/echo(/|$)(.*)",
        "ImplementationSpecific",
    )
    .await;
    common::create_deployment(&deploys, "plain", "echo:1", 1).await;
    expose(
        &client,
        "plain",
        json!({"nginx.org/rewrites": "serviceName=plain rewrite=/"}),
        "/team/plain/",
        "Prefix",
    )
    .await;
    common::create_deployment(&deploys, "down", "does-not-exist:1", 1).await;
    expose(&client, "down", json!({}), "/down", "Prefix").await;
    common::rolled_out(&deploys, "echo", Duration::from_secs(15)).await;
    common::rolled_out(&deploys, "plain", Duration::from_secs(15)).await;

    let (code, body) = eventually("echo routed", Duration::from_secs(5), || async {
        let r = get(&sim, "apps.example.com", "/team/echo/hello/world?x=1&y=2").await;
        (r.0 == 200).then_some(r)
    })
    .await;
    assert_eq!(code, 200);
    let echo: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echo["path"], "/hello/world");
    assert_eq!(echo["query"], "x=1&y=2");
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["headers"]["x-test"], "1");
    // NIC's `random two least_conn` spreads requests over both ready pods.
    let mut pods_seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let (_, body) = get(&sim, "apps.example.com", "/team/echo").await;
        let echo: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(echo["path"], "/");
        pods_seen.insert(echo["pod"].as_str().unwrap().to_string());
    }
    assert_eq!(pods_seen.len(), 2);

    let (code, body) = get(&sim, "apps.example.com", "/team/plain/abc?q=1").await;
    assert_eq!(code, 200, "{body}");
    let echo: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (echo["path"].as_str(), echo["query"].as_str()),
        (Some("/abc"), Some("q=1"))
    );
    assert_eq!(get(&sim, "apps.example.com", "/team/plain").await.0, 301);

    assert_eq!(get(&sim, "other.example.com", "/team/echo/").await.0, 404);
    assert_eq!(get(&sim, "apps.example.com", "/nothing-here").await.0, 404);
    assert_eq!(get(&sim, "apps.example.com", "/down/x").await.0, 502);

    let endpoints: Api<Endpoints> = Api::namespaced(client, "default");
    let ep = endpoints.get("echo").await.unwrap();
    let subset = &ep.subsets.unwrap()[0];
    assert_eq!(subset.addresses.as_ref().unwrap().len(), 2);
    assert_eq!(subset.ports.as_ref().unwrap()[0].port, 8080);
}

#[tokio::test]
async fn rolling_update_keeps_serving_through_the_ingress() {
    let sim = common::sim_with(cluster::SimConfig {
        readiness_delay: Duration::from_millis(400),
        ..Default::default()
    })
    .await;
    let client = sim.client().await.unwrap();
    master(&client).await;
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    // The pods outlive the ingress's view of them by a preStop sleep longer than the endpoint
    // propagation delay (1 s by default), as the product's pods do.
    let mut d = deployment("roll", "app:1", 2);
    d["spec"]["template"]["spec"]["containers"][0]["lifecycle"] =
        json!({"preStop": {"sleep": {"seconds": 2}}});
    deploys
        .create(&PostParams::default(), &serde_json::from_value(d).unwrap())
        .await
        .unwrap();
    expose(&client, "roll", json!({}), "/", "Prefix").await;
    common::rolled_out(&deploys, "roll", Duration::from_secs(15)).await;
    eventually("serving", Duration::from_secs(5), || async {
        (get(&sim, "apps.example.com", "/").await.0 == 200).then_some(())
    })
    .await;

    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:2"}]}}}});
    deploys
        .patch("roll", &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .unwrap();
    let mut failures = Vec::new();
    let mut served_by = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut requests = 0;
    loop {
        let (code, body) = get(&sim, "apps.example.com", "/ping").await;
        requests += 1;
        if code == 200 {
            let echo: Value = serde_json::from_str(&body).unwrap();
            served_by.insert(echo["pod"].as_str().unwrap().to_string());
        } else {
            failures.push(code);
        }
        let d = deploys.get("roll").await.unwrap();
        let done = conditions::is_deployment_completed().matches_object(Some(&d))
            && d.metadata.generation == d.status.as_ref().and_then(|s| s.observed_generation)
            && d.status.as_ref().and_then(|s| s.replicas) == Some(2);
        // New pods reach the ingress a propagation delay after they are ready: keep going until
        // they answer, so the old pods' termination falls inside the measured window.
        if done && served_by.len() >= 3 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited 20 s for the rollout to finish and old and new pods to answer; last seen: \
             done {done}, status {:?}, served by {served_by:?}",
            d.status
        );
        // Pacing of the load; the loop ends on the condition above or its deadline.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        failures.is_empty(),
        "{} of {requests} requests failed: {failures:?}",
        failures.len()
    );
    assert!(
        served_by.len() >= 3,
        "old and new pods served: {served_by:?}"
    );
    let rss: Api<ReplicaSet> = Api::namespaced(client, "default");
    let sets = rss.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(sets.len(), 2);
    let newest = sets
        .iter()
        .find(|rs| {
            rs.metadata.annotations.as_ref().unwrap()["deployment.kubernetes.io/revision"] == "2"
        })
        .unwrap();
    assert_eq!(newest.spec.as_ref().unwrap().replicas, Some(2));
}

/// A pod-count and CPU quota with LimitRange defaults: the ReplicaSet stops at the quota and
/// reports FailedCreate; pods without requests are refused when no default fills them in.
#[tokio::test]
async fn resource_quota_and_limit_range_bound_what_a_replicaset_creates() {
    use k8s_openapi::api::core::v1::{LimitRange, ResourceQuota};
    let sim = sim().await;
    let client = sim.client().await.unwrap();
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), "default");
    let limits: Api<LimitRange> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    let bad: ResourceQuota = serde_json::from_value(
        json!({"metadata": {"name": "bad"}, "spec": {"hard": {"pods": "lots"}}}),
    )
    .unwrap();
    match quotas.create(&PostParams::default(), &bad).await {
        Err(kube::Error::Api(s)) => assert_eq!((s.code, s.reason.as_str()), (422, "Invalid")),
        other => panic!("expected 422, got {other:?}"),
    }
    let quota: ResourceQuota = serde_json::from_value(
        json!({"metadata": {"name": "compute"}, "spec": {"hard": {"pods": "2", "requests.cpu": "2"}}}),
    )
    .unwrap();
    quotas.create(&PostParams::default(), &quota).await.unwrap();

    // No LimitRange yet: a pod without a CPU request cannot be charged against the quota.
    let bare: Pod = serde_json::from_value(json!({"metadata": {"name": "bare"}, "spec": {"containers": [{"name": "app", "image": "nginx"}]}})).unwrap();
    match pods.create(&PostParams::default(), &bare).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403);
            assert_eq!(
                s.message,
                "pods \"bare\" is forbidden: failed quota: compute: must specify requests.cpu for: app"
            );
        }
        other => panic!("expected 403, got {other:?}"),
    }

    let range: LimitRange = serde_json::from_value(json!({"metadata": {"name": "defaults"}, "spec": {"limits": [{"type": "Container", "default": {"cpu": "400m"}, "max": {"cpu": "2"}}]}})).unwrap();
    let stored = limits.create(&PostParams::default(), &range).await.unwrap();
    let item = &stored.spec.unwrap().limits[0];
    assert_eq!(item.default_request.as_ref().unwrap()["cpu"].0, "400m");

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    common::create_deployment(&deployments, "web", "nginx:1.27", 3).await;
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let failed = eventually("a FailedCreate event", Duration::from_secs(10), || async {
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("FailedCreate"))
    })
    .await;
    let message = failed.message.unwrap();
    assert!(
        message.starts_with("Error creating: pods \"web-")
            && message.ends_with(
                "is forbidden: exceeded quota: compute, requested: pods=1, used: pods=2, limited: pods=2"
            ),
        "{message}"
    );
    assert_eq!(failed.type_.as_deref(), Some("Warning"));
    let created = pods.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(created.len(), 2);
    let requests = created[0].spec.as_ref().unwrap().containers[0]
        .resources
        .as_ref()
        .unwrap()
        .requests
        .clone()
        .unwrap();
    assert_eq!(
        requests["cpu"].0, "400m",
        "LimitRange default request applied"
    );

    let status = eventually("quota usage", Duration::from_secs(5), || async {
        let q = quotas.get("compute").await.unwrap();
        q.status
            .and_then(|s| s.used)
            .filter(|u| u.get("pods").is_some_and(|p| p.0 == "2"))
    })
    .await;
    assert_eq!(status["requests.cpu"].0, "800m");
    let rs: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let rs = rs.list(&ListParams::default()).await.unwrap().items;
    let conditions = rs[0].status.as_ref().unwrap().conditions.clone().unwrap();
    assert_eq!(conditions[0].type_, "ReplicaFailure");

    // Raising the quota lets the controller finish.
    quotas
        .patch(
            "compute",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"hard": {"pods": "3", "requests.cpu": "2"}}})),
        )
        .await
        .unwrap();
    eventually("third pod", Duration::from_secs(10), || async {
        (pods.list(&ListParams::default()).await.unwrap().items.len() == 3).then_some(())
    })
    .await;
}

/// A tiny HTTP server that answers every GET with its environment as JSON.
const ENV_SERVER: &str = r#"
import http.server, json, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"path": self.path, "host": self.headers.get("Host"), "env": {k: os.environ.get(k) for k in ["PORT", "POD_NAME", "POD_NAMESPACE", "GREETING", "SECRET"]}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

/// Pods of a mapped image run as real local processes: env and PORT reach them, the ingress
/// routes to their port, readiness follows the port, and deleting the pods stops them.
#[tokio::test]
async fn local_processes_serve_ingress_traffic() {
    use k8s_openapi::api::core::v1::Secret;
    let sim = common::sim_with(cluster::SimConfig {
        readiness_delay: Duration::from_millis(100),
        local_commands: vec![cluster::LocalCommand {
            image_prefix: "registry.local/env-server".into(),
            program: "python3".into(),
            args: vec!["-c".into(), ENV_SERVER.into()],
        }],
        ..cluster::SimConfig::default()
    })
    .await;
    let client = sim.client().await.unwrap();
    master(&client).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "creds"}, "stringData": {"token": "s3cret"}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let mut d = deployment("envy", "registry.local/env-server:1", 2);
    d["spec"]["template"]["spec"]["containers"][0]["env"] = json!([
        {"name": "GREETING", "value": "hello"},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
    ]);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deployments
        .create(&PostParams::default(), &serde_json::from_value(d).unwrap())
        .await
        .unwrap();
    expose(&client, "envy", json!({}), "/", "Prefix").await;
    tokio::time::timeout(
        Duration::from_secs(30),
        await_condition(
            deployments.clone(),
            "envy",
            conditions::is_deployment_completed(),
        ),
    )
    .await
    .expect("local processes become ready")
    .unwrap();

    let mut seen_pods = std::collections::HashSet::new();
    let mut ports = std::collections::HashSet::new();
    // Both processes are in NGINX's view once the propagation delay has passed.
    eventually(
        "both processes in the upstream",
        Duration::from_secs(10),
        || async {
            let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
            let ep = endpoints.get("envy").await.ok()?;
            (ep.subsets.map_or(0, |s| s.len()) == 2).then_some(())
        },
    )
    .await;
    // NGINX sees both a propagation delay later: wait until each process has answered through
    // the ingress (a request before then may still find none or one).
    let answered = std::cell::RefCell::new(std::collections::BTreeSet::new());
    until(
        "both processes answering through the ingress",
        Duration::from_secs(10),
        || async {
            let (status, body) = get(&sim, "apps.example.com", "/some/path?q=1").await;
            let pod = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["env"]["POD_NAME"].as_str().map(str::to_string));
            let mut answered = answered.borrow_mut();
            match pod {
                Some(pod) if status == 200 => answered.insert(pod),
                _ => return Err(format!("{status} {body}")),
            };
            if answered.len() == 2 {
                Ok(())
            } else {
                Err(format!("answered by {answered:?}"))
            }
        },
    )
    .await;
    for _ in 0..40 {
        let (status, body) = get(&sim, "apps.example.com", "/some/path?q=1").await;
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["path"], "/some/path?q=1");
        assert_eq!(v["host"], "apps.example.com");
        assert_eq!(v["env"]["GREETING"], "hello");
        assert_eq!(v["env"]["POD_NAMESPACE"], "default");
        assert_eq!(v["env"]["SECRET"], "s3cret");
        assert!(v["env"]["POD_NAME"].as_str().unwrap().starts_with("envy-"));
        seen_pods.insert(v["env"]["POD_NAME"].as_str().unwrap().to_string());
        ports.insert(v["env"]["PORT"].as_str().unwrap().to_string());
    }
    assert_eq!(
        (seen_pods.len(), ports.len()),
        (2, 2),
        "requests spread over both processes"
    );

    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let ep = endpoints.get("envy").await.unwrap();
    let subsets = ep.subsets.unwrap();
    let endpoint_ports: std::collections::HashSet<String> = subsets
        .iter()
        .map(|s| s.ports.as_ref().unwrap()[0].port.to_string())
        .collect();
    assert_eq!(endpoint_ports, ports, "Endpoints point at the processes");
    assert!(
        subsets
            .iter()
            .all(|s| s.addresses.as_ref().unwrap()[0].ip == "127.0.0.1")
    );

    deployments
        .delete("envy", &Default::default())
        .await
        .unwrap();
    eventually("processes stopped", Duration::from_secs(10), || async {
        let mut alive = false;
        for p in &ports {
            alive |= tokio::net::TcpStream::connect(format!("127.0.0.1:{p}"))
                .await
                .is_ok();
        }
        (!alive).then_some(())
    })
    .await;
}

/// `{port}` in the arguments, a static file server as the process, and a process that exits:
/// it is restarted with a back-off and reported like a crashing container.
#[tokio::test]
async fn local_process_arguments_and_restarts() {
    let dir = std::env::temp_dir().join(format!(
        "cluster-sim-static-{}",
        cluster::meta::random_suffix(8)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("hello.txt"), "hello from disk\n").unwrap();
    let sim = common::sim_with(cluster::SimConfig {
        local_commands: vec![
            cluster::LocalCommand {
                image_prefix: "registry.local/static".into(),
                program: "python3".into(),
                args: [
                    "-m",
                    "http.server",
                    "{port}",
                    "--bind",
                    "127.0.0.1",
                    "--directory",
                ]
                .into_iter()
                .map(String::from)
                .chain([dir.display().to_string()])
                .collect(),
            },
            cluster::LocalCommand {
                image_prefix: "registry.local/exits".into(),
                program: "python3".into(),
                args: vec!["-c".into(), "import sys; sys.exit(3)".into()],
            },
        ],
        ..cluster::SimConfig::default()
    })
    .await;
    let client = sim.client().await.unwrap();
    master(&client).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    for (name, image) in [
        ("files", "registry.local/static:latest"),
        ("quitter", "registry.local/exits:1"),
    ] {
        common::create_deployment(&deployments, name, image, 1).await;
    }
    expose(&client, "files", json!({}), "/", "Prefix").await;
    let (status, body) = eventually("file served", Duration::from_secs(20), || async {
        let (status, body) = get(&sim, "apps.example.com", "/hello.txt").await;
        (status == 200).then_some((status, body))
    })
    .await;
    assert_eq!((status, body.as_str()), (200, "hello from disk\n"));

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let crashed = eventually("restarts", Duration::from_secs(15), || async {
        pods.list(&ListParams::default().labels("app=quitter"))
            .await
            .unwrap()
            .items
            .into_iter()
            .next()
            .and_then(|p| p.status?.container_statuses?.into_iter().next())
            .filter(|s| s.restart_count >= 2)
    })
    .await;
    assert!(!crashed.ready);
    let last = crashed.last_state.unwrap().terminated.unwrap();
    assert_eq!(last.exit_code, 3);
    let _ = std::fs::remove_dir_all(&dir);
}

/// k8s.io/kubernetes pkg/controller/deployment/sync.go `cleanupDeployment`: once a rollout is
/// complete, old ReplicaSets beyond `spec.revisionHistoryLimit` are deleted, oldest revision
/// first; the newest old ones stay for rollbacks.
#[tokio::test]
async fn revision_history_limit_keeps_the_newest_old_replica_sets_as_sync_go_cleanup_deployment() {
    let sim = sim().await;
    let client = sim.client().await.unwrap();
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    common::create_deployment(&deploys, "hist", "nginx:1.0", 1).await;
    let limit = json!({"spec": {"revisionHistoryLimit": 2}});
    deploys
        .patch("hist", &PatchParams::default(), &Patch::Merge(&limit))
        .await
        .unwrap();
    common::rolled_out(&deploys, "hist", Duration::from_secs(15)).await;
    for minor in 1..=4 {
        let image = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": format!("nginx:1.{minor}"), "ports": [{"containerPort": 8080}]}
        ]}}}});
        let generation = deploys
            .patch("hist", &PatchParams::default(), &Patch::Merge(&image))
            .await
            .unwrap()
            .metadata
            .generation;
        // Each template's rollout completes before the next change, so each makes a revision.
        until(
            "the rollout to complete",
            Duration::from_secs(15),
            || async {
                let d = deploys.get("hist").await.unwrap();
                let s = d.status.clone().unwrap_or_default();
                let done = s.observed_generation >= generation
                    && s.updated_replicas == Some(1)
                    && s.available_replicas == Some(1)
                    && s.replicas == Some(1);
                if done { Ok(()) } else { Err(s) }
            },
        )
        .await;
    }
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let revisions = until(
        "two old ReplicaSets and the current one",
        Duration::from_secs(15),
        || async {
            let mut revisions: Vec<(String, String)> = rss
                .list(&ListParams::default().labels("app=hist"))
                .await
                .unwrap()
                .items
                .iter()
                .map(|rs| {
                    (
                        rs.metadata.annotations.as_ref().unwrap()
                            ["deployment.kubernetes.io/revision"]
                            .clone(),
                        rs.spec.clone().unwrap().template.unwrap().spec.unwrap().containers[0]
                            .image
                            .clone()
                            .unwrap(),
                    )
                })
                .collect();
            revisions.sort();
            if revisions.len() == 3 {
                Ok(revisions)
            } else {
                Err(revisions)
            }
        },
    )
    .await;
    assert_eq!(
        revisions,
        vec![
            ("3".to_string(), "nginx:1.2".to_string()),
            ("4".to_string(), "nginx:1.3".to_string()),
            ("5".to_string(), "nginx:1.4".to_string()),
        ]
    );
}

/// A private registry refuses a pull without its login, as containerd reports it
/// (core/remotes/docker/resolver.go: "unexpected status from HEAD request to ...: 401
/// Unauthorized"); the kubelet's keyring (pkg/credentialprovider/keyring.go,
/// secrets/secrets.go) takes the login from the pod's `kubernetes.io/dockerconfigjson`
/// imagePullSecrets and ignores Secrets of other types; a pulled pod keeps running when its
/// Secret goes.
#[tokio::test]
async fn private_registry_pulls_need_the_login_in_the_pods_image_pull_secrets() {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let sim = common::sim_with(cluster::SimConfig {
        readiness_delay: Duration::from_millis(200),
        private_registries: vec!["registry.example.com:5000=robot:s3cret".parse().unwrap()],
        ..cluster::SimConfig::default()
    })
    .await;
    let client = sim.client().await.unwrap();
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), "default");
    let docker_config = |user: &str, password: &str| {
        json!({"auths": {"https://registry.example.com:5000": {"auth": b64(&format!("{user}:{password}"))}}})
            .to_string()
    };
    for (name, kind, key, config) in [
        (
            "right",
            "kubernetes.io/dockerconfigjson",
            ".dockerconfigjson",
            docker_config("robot", "s3cret"),
        ),
        (
            "wrong",
            "kubernetes.io/dockerconfigjson",
            ".dockerconfigjson",
            docker_config("robot", "guess"),
        ),
        // The right login in an Opaque Secret: the kubelet does not read it.
        (
            "opaque",
            "Opaque",
            ".dockerconfigjson",
            docker_config("robot", "s3cret"),
        ),
    ] {
        let secret = json!({"metadata": {"name": name}, "type": kind, "data": {key: b64(&config)}});
        secrets
            .create(
                &PostParams::default(),
                &serde_json::from_value(secret).unwrap(),
            )
            .await
            .unwrap();
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let image = "registry.example.com:5000/team/app:1";
    for (name, pull_secrets) in [
        ("none", json!([])),
        ("wrong", json!([{"name": "wrong"}, {"name": "absent"}])),
        ("opaque", json!([{"name": "opaque"}])),
        (
            "right",
            json!([{"name": "absent"}, {"name": "wrong"}, {"name": "right"}]),
        ),
    ] {
        let pod = json!({"metadata": {"name": name}, "spec": {"imagePullSecrets": pull_secrets,
            "containers": [{"name": "app", "image": image}]}});
        pods.create(
            &PostParams::default(),
            &serde_json::from_value(pod).unwrap(),
        )
        .await
        .unwrap();
    }
    let waiting = |name: &'static str| {
        let pods = pods.clone();
        async move {
            let pod = pods.get(name).await.ok()?;
            let state = pod.status?.container_statuses?.first()?.state.clone()?;
            let w = state.waiting?;
            Some((w.reason?, w.message.unwrap_or_default()))
        }
    };
    for name in ["none", "wrong", "opaque"] {
        let (reason, message) = eventually("a refused pull", Duration::from_secs(10), || async {
            waiting(name).await.filter(|(r, _)| r == "ErrImagePull")
        })
        .await;
        assert_eq!(reason, "ErrImagePull", "{name}");
        assert_eq!(
            message,
            "failed to pull and unpack image \"registry.example.com:5000/team/app:1\": failed to resolve reference \"registry.example.com:5000/team/app:1\": unexpected status from HEAD request to https://registry.example.com:5000/v2/team/app/manifests/1: 401 Unauthorized",
            "{name}"
        );
    }
    let running = |name: &'static str| {
        let pods = pods.clone();
        async move {
            let pod = pods.get(name).await.ok()?;
            (pod.status?.phase.as_deref() == Some("Running")).then_some(())
        }
    };
    eventually(
        "the pod with the login to run",
        Duration::from_secs(10),
        || running("right"),
    )
    .await;
    // Pulled once: the Secret's removal does not stop the running pod. A pod created after the
    // removal and sorted after "right" (the kubelet visits pods in key order) shows a pass of
    // the kubelet that saw "right" without its Secret.
    secrets.delete("right", &Default::default()).await.unwrap();
    let pod = json!({"metadata": {"name": "zz-later"}, "spec": {"imagePullSecrets": [{"name": "right"}],
        "containers": [{"name": "app", "image": image}]}});
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(pod).unwrap(),
    )
    .await
    .unwrap();
    eventually(
        "the later pod's refused pull",
        Duration::from_secs(10),
        || async {
            waiting("zz-later")
                .await
                .filter(|(r, _)| r == "ErrImagePull")
        },
    )
    .await;
    assert!(running("right").await.is_some());
    assert!(waiting("right").await.is_none());
}

/// pkg/controller/deployment/progress.go syncRolloutStatus with deployment_util.go
/// DeploymentProgressing and DeploymentTimedOut: a rollout whose pod can never be scheduled makes
/// no progress, so its status is not rewritten pass after pass, and once
/// `progressDeadlineSeconds` have passed since the last progress it reports
/// `ProgressDeadlineExceeded` (what `kubectl rollout status` fails on), and stays so.
#[tokio::test]
async fn a_rollout_without_progress_keeps_its_status_and_exceeds_its_progress_deadline() {
    let sim = sim().await;
    let client = sim.client().await.unwrap();
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let mut d = deployment("stuck", "nginx:1.27", 1);
    d["spec"]["progressDeadlineSeconds"] = json!(3);
    d["spec"]["template"]["spec"]["containers"][0]["resources"] =
        json!({"requests": {"cpu": "64"}});
    deploys
        .create(&PostParams::default(), &serde_json::from_value(d).unwrap())
        .await
        .unwrap();
    let progressing = |d: &Deployment| {
        d.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Progressing"))
            .map(|c| (c.status.clone(), c.reason.clone().unwrap_or_default()))
    };
    let first = until(
        "a Progressing condition",
        Duration::from_secs(5),
        || async {
            let d = deploys.get("stuck").await.unwrap();
            match progressing(&d) {
                Some(p) if p.0 == "True" => Ok(d),
                other => Err(other),
            }
        },
    )
    .await;
    // Several controller passes (50 ms each) without progress leave the object as it was.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let later = deploys.get("stuck").await.unwrap();
    assert_eq!(
        later.metadata.resource_version, first.metadata.resource_version,
        "the status was rewritten without progress: {:?}",
        later.status
    );
    until(
        "ProgressDeadlineExceeded",
        Duration::from_secs(15),
        || async {
            let p = progressing(&deploys.get("stuck").await.unwrap());
            if p == Some(("False".into(), "ProgressDeadlineExceeded".into())) {
                Ok(())
            } else {
                Err(p)
            }
        },
    )
    .await;
    // DeploymentTimedOut: a timed-out rollout stays timed out; the condition does not flip
    // back to True while nothing progresses.
    let timed_out = deploys.get("stuck").await.unwrap();
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = deploys.get("stuck").await.unwrap();
        assert_eq!(
            progressing(&now),
            Some(("False".into(), "ProgressDeadlineExceeded".into())),
            "the timed-out rollout changed: {:?}",
            now.status
        );
        assert_eq!(
            now.metadata.resource_version, timed_out.metadata.resource_version,
            "the status was rewritten without progress: {:?}",
            now.status
        );
    }
}
