//! Pod termination as the API server and the kubelet do it (Kubernetes 1.34), and what it means
//! for requests through the ingress, whose view of endpoints lags by the propagation delay.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers, like #[test] bodies, may panic.

mod common;

use std::time::Duration;

use common::{deployment, eventually, sim, until};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Endpoints, Event, Namespace, Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::Condition;
use kube::runtime::wait::conditions::is_deployment_completed;
use serde_json::{Value, json};

fn with_pre_stop(mut d: Value, seconds: Option<i64>, grace: i64) -> Value {
    let spec = &mut d["spec"]["template"]["spec"];
    spec["terminationGracePeriodSeconds"] = json!(grace);
    if let Some(s) = seconds {
        spec["containers"][0]["lifecycle"] = json!({"preStop": {"sleep": {"seconds": s}}});
    }
    d
}

async fn create_app(client: &kube::Client, ns: &str, d: Value, path: Option<&str>) {
    let name = d["metadata"]["name"].as_str().unwrap().to_string();
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), ns);
    deploys
        .create(&PostParams::default(), &serde_json::from_value(d).unwrap())
        .await
        .unwrap();
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let svc = json!({"metadata": {"name": name}, "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]}});
    services
        .create(
            &PostParams::default(),
            &serde_json::from_value(svc).unwrap(),
        )
        .await
        .unwrap();
    if let Some(path) = path {
        let ingresses: Api<Ingress> = Api::namespaced(client.clone(), ns);
        let ing = json!({"metadata": {"name": name, "annotations": {"nginx.org/mergeable-ingress-type": "minion"}}, "spec": {"ingressClassName": "nginx", "rules": [{"host": "apps.example.com", "http": {"paths": [{"path": path, "pathType": "Prefix", "backend": {"service": {"name": name, "port": {"number": 80}}}}]}}]}});
        ingresses
            .create(
                &PostParams::default(),
                &serde_json::from_value(ing).unwrap(),
            )
            .await
            .unwrap();
    }
}

async fn pods(client: &kube::Client, ns: &str, app: &str) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .unwrap()
        .items
}

async fn ready_addresses(client: &kube::Client, ns: &str, name: &str) -> usize {
    let api: Api<Endpoints> = Api::namespaced(client.clone(), ns);
    api.get(name)
        .await
        .ok()
        .and_then(|e| e.subsets)
        .into_iter()
        .flatten()
        .map(|s| s.addresses.map_or(0, |a| a.len()))
        .sum()
}

/// pkg/registry/core/pod/strategy.go CheckGracefulDelete + rest/delete.go BeforeDelete: the pod
/// is marked with deletionTimestamp = now + grace and deletionGracePeriodSeconds; it leaves the
/// ready endpoints at once (endpoints controller: terminating pods are not ready); the kubelet
/// records Killing, sleeps the preStop, and deletes the object when the container has stopped.
#[tokio::test]
async fn a_deleted_pod_terminates_gracefully_through_its_pre_stop_sleep() {
    let sim = sim().await;
    let client = sim.client().await.unwrap();
    create_app(
        &client,
        "default",
        with_pre_stop(deployment("web", "echo:1", 1), Some(2), 30),
        None,
    )
    .await;
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    common::rolled_out(&deploys, "web", Duration::from_secs(15)).await;
    eventually("ready endpoint", Duration::from_secs(5), || async {
        (ready_addresses(&client, "default", "web").await == 1).then_some(())
    })
    .await;
    let pod = pods(&client, "default", "web").await.remove(0);
    let name = pod.metadata.name.clone().unwrap();
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let started = std::time::Instant::now();
    api.delete(&name, &DeleteParams::default()).await.unwrap();
    let marked = api.get(&name).await.unwrap();
    assert_eq!(marked.metadata.deletion_grace_period_seconds, Some(30));
    let deadline = marked.metadata.deletion_timestamp.unwrap().0;
    let now = k8s_openapi::jiff::Timestamp::now();
    let ahead = deadline.as_second() - now.as_second();
    assert!(
        (28..=31).contains(&ahead),
        "deletionTimestamp is now + grace: {ahead}s ahead"
    );
    eventually(
        "endpoint removed at once",
        Duration::from_secs(2),
        || async { (ready_addresses(&client, "default", "web").await == 0).then_some(()) },
    )
    .await;
    // The preStop sleep is 2 s of real time: the pod must still be there half-way through it,
    // counted from the DELETE (not from when the endpoint check above happened to finish).
    tokio::time::sleep_until(tokio::time::Instant::from_std(started) + Duration::from_secs(1))
        .await;
    assert!(
        api.get(&name).await.is_ok(),
        "still terminating during the preStop sleep ({:?} after the DELETE)",
        started.elapsed()
    );
    eventually("pod gone", Duration::from_secs(10), || async {
        api.get(&name).await.is_err().then_some(())
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "not before the preStop sleep ended"
    );
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let killing = events
        .list(&ListParams::default().fields(&format!("involvedObject.name={name},reason=Killing")))
        .await
        .unwrap()
        .items;
    assert_eq!(
        killing[0].message.as_deref(),
        Some("Stopping container app")
    );
}

/// pkg/apis/core/validation/validation.go validateSleepAction (1.34): a preStop sleep longer
/// than terminationGracePeriodSeconds is refused.
#[tokio::test]
async fn a_pre_stop_sleep_longer_than_the_grace_period_is_invalid() {
    let sim = sim().await;
    let client = sim.client().await.unwrap();
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d = with_pre_stop(deployment("web", "echo:1", 1), Some(40), 30);
    let err = deploys
        .create(&PostParams::default(), &serde_json::from_value(d).unwrap())
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("{err}")
    };
    assert_eq!(status.code, 422);
    assert!(
        status.message.contains("spec.template.spec.containers[0].lifecycle.preStop.sleep: Invalid value: 40: must be non-negative and less than terminationGracePeriodSeconds (30)"),
        "{}",
        status.message
    );
}

/// pkg/controller/controller_utils.go IsPodActive / replicaset calculateStatus: a terminating pod
/// is not counted; scale-down and namespace deletion go through the same graceful deletion, and
/// the namespace waits for its pods (namespaced_resources_deleter.go).
#[tokio::test]
async fn scale_down_and_namespace_deletion_terminate_pods_gracefully() {
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
    create_app(
        &client,
        "team",
        with_pre_stop(deployment("web", "echo:1", 2), Some(2), 30),
        None,
    )
    .await;
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "team");
    common::rolled_out(&deploys, "web", Duration::from_secs(15)).await;
    deploys
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 1}})),
        )
        .await
        .unwrap();
    eventually("one pod terminating", Duration::from_secs(5), || async {
        let all = pods(&client, "team", "web").await;
        (all.len() == 2 && all.iter().any(|p| p.metadata.deletion_timestamp.is_some()))
            .then_some(())
    })
    .await;
    eventually(
        "status counts the active pod only",
        Duration::from_secs(5),
        || async {
            let s = deploys.get("web").await.ok()?.status?;
            (s.replicas == Some(1) && s.available_replicas == Some(1)).then_some(())
        },
    )
    .await;
    let active = pods(&client, "team", "web")
        .await
        .into_iter()
        .find(|p| p.metadata.deletion_timestamp.is_none())
        .and_then(|p| p.metadata.name)
        .unwrap();
    namespaces
        .delete("team", &DeleteParams::default())
        .await
        .unwrap();
    // The namespace's deletion reaches the active pod: it terminates gracefully (2 s preStop).
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), "team");
    until(
        "the active pod terminating with the namespace",
        Duration::from_secs(5),
        || async {
            let left = pods(&client, "team", "web").await;
            let marked = left
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_some())
                .count();
            let terminating = left.iter().any(|p| {
                p.metadata.name.as_ref() == Some(&active) && p.metadata.deletion_timestamp.is_some()
            });
            if terminating && marked == left.len() {
                Ok(())
            } else {
                Err(format!(
                    "{marked} of {} pods marked for deletion",
                    left.len()
                ))
            }
        },
    )
    .await;
    // Read in this order, a pod still there after the namespace was read was there before it.
    let namespace_there = namespaces.get_opt("team").await.unwrap().is_some();
    assert!(
        pod_api.get_opt(&active).await.unwrap().is_some(),
        "inconclusive: the pod's 2 s preStop ended before the namespace was read"
    );
    assert!(namespace_there, "the namespace waits for its pods");
    eventually("namespace gone", Duration::from_secs(10), || async {
        namespaces.get("team").await.is_err().then_some(())
    })
    .await;
}

const GRACEFUL_SERVER: &str = r#"
import http.server, os, signal, sys
marker = os.environ["MARKER"]
def on_term(*_):
    open(marker, "w").write("SIGTERM")
    if os.environ.get("IGNORE_TERM") != "1":
        sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

/// kuberuntime_container.go killContainer + the runtime's StopContainer: a local process gets
/// SIGTERM after the preStop sleep, and SIGKILL when the rest of the grace period runs out.
#[tokio::test]
async fn local_processes_get_sigterm_then_sigkill() {
    let dir = std::env::temp_dir().join(format!("sim-term-{}", cluster::meta::random_suffix(8)));
    std::fs::create_dir_all(&dir).unwrap();
    let sim = common::sim_with(cluster::SimConfig {
        readiness_delay: Duration::from_millis(100),
        local_commands: vec![cluster::LocalCommand {
            image_prefix: "registry.local/graceful".into(),
            program: "python3".into(),
            args: vec!["-c".into(), GRACEFUL_SERVER.into()],
        }],
        ..cluster::SimConfig::default()
    })
    .await;
    let client = sim.client().await.unwrap();
    for (name, ignore) in [("polite", "0"), ("stubborn", "1")] {
        let mut d = with_pre_stop(deployment(name, "registry.local/graceful:1", 1), Some(1), 3);
        d["spec"]["template"]["spec"]["containers"][0]["env"] = json!([
            {"name": "MARKER", "value": dir.join(name).display().to_string()},
            {"name": "IGNORE_TERM", "value": ignore},
        ]);
        create_app(&client, "default", d, None).await;
    }
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    for name in ["polite", "stubborn"] {
        common::rolled_out(&deploys, name, Duration::from_secs(30)).await;
    }
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut names = Vec::new();
    let started = std::time::Instant::now();
    for app in ["polite", "stubborn"] {
        let pod = pods(&client, "default", app).await.remove(0);
        let name = pod.metadata.name.unwrap();
        api.delete(&name, &DeleteParams::default()).await.unwrap();
        names.push(name);
    }
    let gone = |name: String| {
        let api = api.clone();
        async move {
            eventually("pod gone", Duration::from_secs(15), || async {
                api.get(&name).await.is_err().then_some(())
            })
            .await;
        }
    };
    gone(names[0].clone()).await;
    let polite = started.elapsed();
    assert_eq!(
        std::fs::read_to_string(dir.join("polite")).unwrap(),
        "SIGTERM"
    );
    gone(names[1].clone()).await;
    let stubborn = started.elapsed();
    assert_eq!(
        std::fs::read_to_string(dir.join("stubborn")).unwrap(),
        "SIGTERM"
    );
    assert!(
        polite >= Duration::from_secs(1) && polite < Duration::from_millis(2900),
        "{polite:?}"
    );
    // preStop 1 s, then the 2 s left of the 3 s grace period before SIGKILL.
    assert!(stubborn >= Duration::from_secs(3), "{stubborn:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Redeploys one-replica Deployments under load with the default 1 s propagation delay: a pod
/// without a preStop delay stops while NGINX still sends to it (502s, the only upstream server is
/// dead), one whose preStop sleep outlasts the delay loses no request.
#[tokio::test]
async fn a_pre_stop_sleep_longer_than_the_propagation_delay_keeps_redeploys_lossless() {
    let sim = sim().await;
    let client = sim.client().await.unwrap();
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), "default");
    let master = json!({"metadata": {"name": "apps", "annotations": {"nginx.org/mergeable-ingress-type": "master"}}, "spec": {"ingressClassName": "nginx", "rules": [{"host": "apps.example.com"}]}});
    ingresses
        .create(
            &PostParams::default(),
            &serde_json::from_value(master).unwrap(),
        )
        .await
        .unwrap();
    create_app(
        &client,
        "default",
        with_pre_stop(deployment("bare", "app:1", 1), None, 30),
        Some("/bare/"),
    )
    .await;
    create_app(
        &client,
        "default",
        with_pre_stop(deployment("careful", "app:1", 1), Some(2), 30),
        Some("/careful/"),
    )
    .await;
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    for name in ["bare", "careful"] {
        common::rolled_out(&deploys, name, Duration::from_secs(15)).await;
    }
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let status = |path: &'static str| {
        let http = http.clone();
        let url = format!("{}{path}", sim.ingress_url());
        async move {
            let req = http::Request::get(url)
                .header("Host", "apps.example.com")
                .body(http_body_util::Empty::new())
                .unwrap();
            http.request(req).await.map_or(0, |r| r.status().as_u16())
        }
    };
    eventually("both served", Duration::from_secs(10), || async {
        (status("/bare/").await == 200 && status("/careful/").await == 200).then_some(())
    })
    .await;
    let mut old_pods = Vec::new();
    for name in ["bare", "careful"] {
        old_pods.extend(
            pods(&client, "default", name)
                .await
                .into_iter()
                .filter_map(|p| p.metadata.name),
        );
    }
    assert_eq!(old_pods.len(), 2, "{old_pods:?}");
    for name in ["bare", "careful"] {
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:2"}]}}}});
        deploys
            .patch(name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
            .unwrap();
    }
    // The load runs until the redeploys are over for NGINX too: both rollouts complete, the old
    // pods gone, and then one propagation delay (the ingress's view of a pod's endpoint lags
    // its removal by that much, and the removal precedes the pod's deletion).
    let propagation = cluster::SimConfig::default().endpoint_propagation_delay;
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), "default");
    let limit = Duration::from_secs(30);
    let deadline = tokio::time::Instant::now() + limit;
    let mut settled_at = None;
    let (mut bare_failed, mut careful_failed) = (0, 0);
    loop {
        bare_failed += usize::from(status("/bare/").await != 200);
        careful_failed += usize::from(status("/careful/").await != 200);
        let now = tokio::time::Instant::now();
        if settled_at.is_none() {
            let mut old_left = Vec::new();
            for name in &old_pods {
                if pod_api.get_opt(name).await.unwrap().is_some() {
                    old_left.push(name.clone());
                }
            }
            let mut rolled_out = true;
            for name in ["bare", "careful"] {
                let d = deploys.get(name).await.unwrap();
                rolled_out &= is_deployment_completed().matches_object(Some(&d))
                    && d.metadata.generation
                        == d.status.as_ref().and_then(|s| s.observed_generation)
                    && d.status.as_ref().and_then(|s| s.replicas) == Some(1);
            }
            if rolled_out && old_left.is_empty() {
                settled_at = Some(now);
            } else {
                assert!(
                    now < deadline,
                    "waited {limit:?} for both redeploys to end; rolled out: {rolled_out}, old \
                     pods left: {old_left:?}"
                );
            }
        }
        if settled_at.is_some_and(|at| now >= at + propagation) {
            break;
        }
        // Pacing of the load; the loop ends on the condition above or its deadline.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        bare_failed > 0,
        "without a preStop delay the model must lose requests"
    );
    assert_eq!(
        careful_failed, 0,
        "a preStop sleep over the delay loses none"
    );
}
