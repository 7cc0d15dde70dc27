//! When the API server is slow or away (issue 15): the site talks to it through a proxy the test
//! freezes (bytes held, as with a hung API server) or cuts (connections dropped). Pages and the
//! JSON API still answer within 2 s from the mirror, marked "as of" once it is stale; writes fail
//! within the write bound saying nothing was changed; `/readyz` answers at once; and everything
//! recovers by itself. The administrator's client, which does not go through the proxy, is the
//! independent observer of what the cluster holds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod proxy;

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use cluster::SimConfig;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use common::Browser;
use proxy::proxied_site;

/// What the issue asks of every read while the API server is away.
const READ_BOUND: Duration = Duration::from_secs(2);

async fn create(b: &mut Browser, name: &str) {
    let r = b
        .post_json(
            "/api/v1/repos",
            json!({"name": name, "image": "nginx", "port": 80, "replicas": 1}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

/// A GET that must answer within [`READ_BOUND`].
async fn quick(b: &mut Browser, path: &str) -> common::Reply {
    let started = Instant::now();
    let r = tokio::time::timeout(READ_BOUND, b.get(path))
        .await
        .unwrap_or_else(|_| panic!("{path} did not answer within {READ_BOUND:?}"));
    assert!(started.elapsed() < READ_BOUND);
    r
}

#[tokio::test]
async fn a_cut_watch_recovers_and_shows_what_changed_during_the_cut() {
    let proxied = proxied_site(common::config(), |_| {}).await;
    let site = &proxied.site;
    let mut alice = site.user("alice").await;
    create(&mut alice, "hello").await;
    // Every connection of the site drops, and new ones wait: the watches are down.
    proxied.proxy.freeze();
    proxied.proxy.cut();
    // Meanwhile someone scales the repository with kubectl.
    site.scale_with_kubectl("alice", "hello", 3).await;
    let during = alice.get_json("/api/v1/repos/hello").await;
    assert_eq!(during["replicas"]["desired"], 1, "{during}");
    proxied.proxy.thaw();
    alice
        .poll_json(
            "the change made during the cut",
            "/api/v1/repos/hello",
            |j| j["replicas"]["desired"] == 3,
        )
        .await;
}

/// The relists every watch of the site has completed, by name, from `/readyz`.
async fn lists(b: &mut Browser) -> std::collections::BTreeMap<String, u64> {
    let ready = b.get_json("/readyz").await;
    ready["watches"]
        .as_array()
        .unwrap_or_else(|| panic!("/readyz has no watches: {ready}"))
        .iter()
        .map(|w| {
            (
                w["name"].as_str().unwrap().to_string(),
                w["lists"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// k8s.io/apiserver pkg/storage/cacher watch_cache.go: a watch resumed from a resourceVersion
/// older than the watch cache's history gets `410 Gone` ("too old resource version"), and
/// client-go's reflector (kube-runtime's watcher here) lists again. The simulator keeps only 10
/// changes here, and more than that happen while the site's connections are cut.
#[tokio::test]
async fn a_watch_resumed_after_its_version_left_the_history_relists_and_shows_the_cluster() {
    let proxied = proxy::proxied_site_on(
        SimConfig {
            watch_history: 10,
            ..SimConfig::default()
        },
        common::config(),
        |_| {},
    )
    .await;
    let site = &proxied.site;
    let mut alice = site.user("alice").await;
    create(&mut alice, "hello").await;
    create(&mut alice, "gone").await;
    let before = lists(&mut alice).await;
    assert!(before.values().all(|n| *n >= 1), "{before:?}");

    proxied.proxy.freeze();
    proxied.proxy.cut();
    site.scale_with_kubectl("alice", "hello", 3).await;
    site.objects::<Deployment>("alice")
        .delete("gone", &DeleteParams::default())
        .await
        .unwrap();
    // Enough changes that whatever the site last saw has left the 10-change history.
    let maps = site.objects::<ConfigMap>("alice");
    let churn: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "churn"}})).unwrap();
    maps.create(&PostParams::default(), &churn).await.unwrap();
    for i in 0..30 {
        maps.patch(
            "churn",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"i": i.to_string()}})),
        )
        .await
        .unwrap();
    }
    proxied.proxy.thaw();

    alice
        .poll_json(
            "the scale and the delete made while the watches were away",
            "/api/v1/repos",
            |j| {
                let repos = j["repositories"].as_array().unwrap();
                repos.len() == 1
                    && repos[0]["name"] == "hello"
                    && repos[0]["replicas"]["desired"] == 3
            },
        )
        .await;
    let after = lists(&mut alice).await;
    assert!(
        after["deployments"] > before["deployments"],
        "the Deployments watch did not list again: before {before:?}, after {after:?}"
    );
}

#[tokio::test]
async fn with_the_api_server_frozen_pages_answer_from_the_view_marked_stale_and_recover() {
    let proxied = proxied_site(common::config(), |_| {}).await;
    let site = &proxied.site;
    let mut alice = site.user("alice").await;
    create(&mut alice, "hello").await;
    proxied.proxy.freeze();
    let paths = [
        "/repos",
        "/api/v1/repos",
        "/repos/hello",
        "/api/v1/repos/hello",
    ];
    for path in paths {
        let r = quick(&mut alice, path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
        assert!(r.body.contains("hello"), "{path}: {}", r.body);
    }
    // Once the mirror is stale, every answer says as of when.
    let list = common::eventually("the list to be marked stale", || {
        let mut b = alice.clone();
        async move {
            let j = b.get_json("/api/v1/repos").await;
            j.get("as_of").is_some().then_some(j)
        }
    })
    .await;
    assert_eq!(list["repositories"][0]["name"], "hello", "{list}");
    let page = quick(&mut alice, "/repos").await;
    assert!(page.body.contains("As of"), "{}", page.body);
    let detail = quick(&mut alice, "/api/v1/repos/hello").await;
    assert!(detail.json().get("as_of").is_some(), "{}", detail.body);
    let detail_page = quick(&mut alice, "/repos/hello").await;
    assert!(detail_page.body.contains("As of"), "{}", detail_page.body);
    // `/readyz` answers at once from the watches' health: still ready (pages do answer), and
    // stale, with the lag.
    let ready = quick(&mut alice, "/readyz").await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    let ready = ready.json();
    assert!(ready["stale_since"].is_string(), "{ready}");
    assert!(ready["lag_ms"].as_u64().unwrap() > 2000, "{ready}");

    proxied.proxy.thaw();
    common::eventually("the stale marker to go", || {
        let mut b = alice.clone();
        async move {
            let j = b.get_json("/api/v1/repos").await;
            j.get("as_of").is_none().then_some(())
        }
    })
    .await;
    let page = alice.get("/repos").await;
    assert!(!page.body.contains("As of"), "{}", page.body);
}

#[tokio::test]
async fn with_the_api_server_frozen_writes_fail_within_the_bound_saying_nothing_changed() {
    let mut config = common::config();
    let bound = Duration::from_secs(3);
    config.write_timeout = bound;
    let proxied = proxied_site(config, |_| {}).await;
    let site = &proxied.site;
    let mut alice = site.user("alice").await;
    create(&mut alice, "hello").await;
    proxied.proxy.freeze();
    // The site notices within a probe or two; from then on a write is not even sent.
    common::eventually("the site to notice the API server is away", || {
        let mut b = alice.clone();
        async move { (b.get_json("/readyz").await["answering"] == false).then_some(()) }
    })
    .await;

    let started = Instant::now();
    let r = alice
        .post_json(
            "/api/v1/repos",
            json!({"name": "world", "image": "nginx", "port": 80, "replicas": 1}),
        )
        .await;
    let took = started.elapsed();
    assert!(took < bound + Duration::from_secs(1), "took {took:?}");
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT, "{}", r.body);
    let message = r.message();
    assert!(message.contains("not answering"), "{message}");
    assert!(message.contains("nothing was changed"), "{message}");

    let started = Instant::now();
    let r = alice.api(Method::DELETE, "/api/v1/repos/hello", None).await;
    assert!(started.elapsed() < bound + Duration::from_secs(1));
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT, "{}", r.body);
    assert!(r.message().contains("nothing was changed"), "{}", r.body);

    // The form says it too, with what was typed.
    let page = alice.create("world", "nginx", "80", "1").await;
    assert_eq!(page.status, StatusCode::GATEWAY_TIMEOUT, "{}", page.body);
    assert!(page.body.contains("not answering"), "{}", page.body);

    // Nothing changed in the cluster (the administrator reads it directly).
    assert!(!site.exists::<Deployment>("alice", "world").await);
    assert!(site.exists::<Deployment>("alice", "hello").await);

    // Once the API server answers again, writes work without a restart; the name is free, so
    // no refused write was held and applied late.
    proxied.proxy.thaw();
    common::eventually("the site to notice the API server is back", || {
        let mut b = alice.clone();
        async move { (b.get_json("/readyz").await["answering"] == true).then_some(()) }
    })
    .await;
    assert!(site.exists::<Deployment>("alice", "hello").await);
    create(&mut alice, "world").await;
    assert!(site.exists::<Deployment>("alice", "world").await);
}

#[tokio::test]
async fn with_the_api_server_frozen_the_account_pages_answer_and_account_writes_fail_within_the_bound()
 {
    let mut config = common::config();
    let bound = Duration::from_secs(3);
    config.write_timeout = bound;
    let proxied = proxied_site(config, |_| {}).await;
    let site = &proxied.site;
    site.account("olivia", true).await;
    let mut admin = site.browser();
    let r = admin.sign_in("olivia", common::PASSWORD).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let before = admin.get("/admin").await;
    assert_eq!(before.status, StatusCode::OK, "{}", before.body);
    proxied.proxy.freeze();

    // Before the site notices, an account write is given the bound, no more.
    let started = Instant::now();
    let r = admin
        .post(
            "/admin/users",
            &[("username", "dave"), ("password", "a-long-enough-password")],
        )
        .await;
    let took = started.elapsed();
    assert!(took < bound + Duration::from_secs(1), "took {took:?}");
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT, "{}", r.body);
    assert!(r.body.contains("nothing was changed"), "{}", r.body);

    common::eventually("the site to notice the API server is away", || {
        let mut b = admin.clone();
        async move { (b.get_json("/readyz").await["answering"] == false).then_some(()) }
    })
    .await;
    // Then writes are refused at once, and the session is still recognised from the mirror.
    let started = Instant::now();
    let r = admin
        .post(
            "/admin/users",
            &[("username", "erin"), ("password", "a-long-enough-password")],
        )
        .await;
    assert!(started.elapsed() < READ_BOUND, "{:?}", started.elapsed());
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT, "{}", r.body);
    assert!(r.body.contains("not answering"), "{}", r.body);
    let r = quick(&mut admin, "/admin").await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT, "{}", r.body);
    assert!(r.body.contains("not answering"), "{}", r.body);

    // Nothing was made, seen by the administrator's own client; after the thaw both names are free.
    proxied.proxy.thaw();
    common::eventually("the site to notice the API server is back", || {
        let mut b = admin.clone();
        async move { (b.get_json("/readyz").await["answering"] == true).then_some(()) }
    })
    .await;
    for name in ["dave", "erin"] {
        assert!(
            !site
                .exists::<k8s_openapi::api::core::v1::Secret>(
                    "kdeploy-system",
                    &format!("kdeploy-user-{name}")
                )
                .await,
            "{name} was created late"
        );
    }
    let page = admin.get("/admin").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("olivia"), "{}", page.body);
}
