//! The site answers from its mirror of the cluster (issue 15): its own writes show on the next
//! page, changes made with kubectl show by themselves, a new replica rebuilds the mirror from the
//! cluster, and `/readyz` waits for the first sync. The independent observer is the cluster
//! administrator's client, which reads the API server directly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod proxy;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use k8s_openapi::api::apps::v1::Deployment;
use serde_json::json;
use web::AppState;

use common::{Browser, site};

fn names(list: &serde_json::Value) -> Vec<String> {
    list["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect()
}

async fn create(b: &mut Browser, name: &str) {
    let r = b
        .post_json(
            "/api/v1/repos",
            json!({"name": name, "image": "nginx", "port": 80, "replicas": 1}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

#[tokio::test]
async fn a_created_repository_is_listed_at_once_and_a_deleted_one_is_gone_at_once() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    create(&mut alice, "hello").await;
    // The very next reads, with no waiting: the JSON list, the page, and the repository.
    assert_eq!(names(&alice.get_json("/api/v1/repos").await), ["hello"]);
    let page = alice.get("/repos").await;
    assert!(page.body.contains("/repos/hello"), "{}", page.body);
    let detail = alice.get_json("/api/v1/repos/hello").await;
    assert_eq!(detail["name"], "hello", "{detail}");
    assert!(site.exists::<Deployment>("alice", "hello").await);

    // A change shows at once too.
    let r = alice
        .call(Method::PATCH, "/api/v1/repos/hello", json!({"replicas": 2}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let detail = alice.get_json("/api/v1/repos/hello").await;
    assert_eq!(detail["replicas"]["desired"], 2, "{detail}");

    let r = alice.api(Method::DELETE, "/api/v1/repos/hello", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert!(names(&alice.get_json("/api/v1/repos").await).is_empty());
    let page = alice.get("/repos").await;
    assert!(!page.body.contains("/repos/hello"), "{}", page.body);
    assert!(!site.exists::<Deployment>("alice", "hello").await);
}

#[tokio::test]
async fn a_change_made_with_kubectl_appears_on_the_page() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    create(&mut alice, "hello").await;
    // As `kubectl scale deployment hello --replicas 3` would, straight to the API server.
    site.scale_with_kubectl("alice", "hello", 3).await;
    let j = alice
        .poll_json("the scale to show", "/api/v1/repos/hello", |j| {
            j["replicas"]["desired"] == 3
        })
        .await;
    assert_eq!(j["name"], "hello");
    // And deleting it with kubectl takes it off the list.
    site.objects::<Deployment>("alice")
        .delete("hello", &Default::default())
        .await
        .unwrap();
    alice
        .poll_json("the repository to leave the list", "/api/v1/repos", |j| {
            j["repositories"].as_array().is_some_and(Vec::is_empty)
        })
        .await;
}

#[tokio::test]
async fn a_new_replica_rebuilds_its_view_from_the_cluster_and_agrees() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    create(&mut alice, "hello").await;
    create(&mut alice, "world").await;
    // A second replica, started afresh: it has only the cluster to learn from.
    let replica = AppState::connect(site.client.clone(), common::config())
        .await
        .unwrap();
    assert!(
        replica.mirror.wait_synced(Duration::from_secs(10)).await,
        "{:?}",
        replica.mirror.readiness()
    );
    let mut other = Browser {
        app: web::app(replica),
        cookies: alice.cookies.clone(),
        csrf: alice.csrf.clone(),
    };
    // The session cookie is signed with the key both replicas read from the cluster.
    let mine = alice.get_json("/api/v1/repos").await;
    let theirs = other.get_json("/api/v1/repos").await;
    assert_eq!(names(&theirs), ["hello", "world"]);
    assert_eq!(names(&mine), names(&theirs));
}

#[tokio::test]
async fn readyz_is_not_ready_until_every_watch_has_synced() {
    let mut config = common::config();
    // The cookie key from the configuration: starting needs no call to the frozen API server.
    config.session_key = Some(vec![7; 64]);
    let proxied = proxy::proxied_site(config, proxy::Proxy::freeze).await;
    let mut b = proxied.site.browser();
    let r = b.get("/readyz").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    let j = r.json();
    assert_eq!(j["ready"], false, "{j}");
    assert!(
        j["watches"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["synced"] == false),
        "{j}"
    );
    let metrics = prometheus(&mut b).await;
    assert_eq!(metrics["kdeploy_mirror_synced"], 0.0, "{metrics:?}");
    assert_eq!(
        metrics[r#"kdeploy_mirror_watch_lists_total{watch="deployments"}"#], 0.0,
        "{metrics:?}"
    );
    proxied.proxy.thaw();
    let j = common::eventually("the site to be ready", || {
        let mut b = b.clone();
        async move {
            let r = b.get("/readyz").await;
            (r.status == StatusCode::OK).then(|| r.json())
        }
    })
    .await;
    assert_eq!(j["ready"], true, "{j}");
    assert!(
        j["watches"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["synced"] == true),
        "{j}"
    );
    let metrics = prometheus(&mut b).await;
    assert_eq!(metrics["kdeploy_mirror_synced"], 1.0, "{metrics:?}");
    assert_eq!(metrics["kdeploy_api_server_answering"], 1.0, "{metrics:?}");
    for watch in j["watches"].as_array().unwrap() {
        let name = watch["name"].as_str().unwrap();
        let lists = format!(r#"kdeploy_mirror_watch_lists_total{{watch="{name}"}}"#);
        assert_eq!(metrics[&lists], 1.0, "{metrics:?}");
    }
}

/// `/metrics`, a Prometheus text exposition, as series -> value (comments skipped).
async fn prometheus(b: &mut common::Browser) -> std::collections::HashMap<String, f64> {
    let r = b.get("/metrics").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_string(), value.parse().unwrap())
        })
        .collect()
}
