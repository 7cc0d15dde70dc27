//! Redeploy on image push (issue 16 item 3): a repository's webhook URL, made by its owner and
//! shown once, takes Docker Hub's and CNCF Distribution's push notifications and redeploys the
//! repository through the same rolling update as the Redeploy button. What the cluster holds is
//! observed with the administrator's client, not through the site.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use common::{Browser, Reply, Site, eventually, load_across, site, through_ingress};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::ListParams;
use serde_json::{Value, json};
use web::repositories::webhook::{DELIVERIES, DISTRIBUTION_MEDIA_TYPE, TOKEN_SHA256};

const DIGEST: &str = "sha256:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b";

/// Makes the repository's webhook through the API and returns its URL's path and query.
async fn make_webhook(b: &mut Browser, name: &str) -> String {
    let r = b
        .api(Method::POST, &format!("/api/v1/repos/{name}/webhook"), None)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let url = r.json()["url"].as_str().unwrap().to_string();
    url.strip_prefix("http://lb.test").unwrap().to_string()
}

fn token_of(hook: &str) -> &str {
    hook.split_once("?token=").unwrap().1
}

/// A Docker Hub push payload (docs.docker.com/docker-hub/repos/manage/webhooks/).
fn hub(repo_name: &str, tag: &str, pushed_at: i64) -> (String, Value) {
    (
        "application/json".into(),
        json!({
            "callback_url": "https://registry.hub.docker.com/u/alice/hello/hook/2141b5bi5i5b02bec211i4eeih0242eg11000a/",
            "push_data": {"pushed_at": pushed_at, "pusher": "alice", "tag": tag},
            "repository": {"repo_name": repo_name, "name": "hello", "namespace": "alice", "status": "Active"},
        }),
    )
}

/// A Distribution notification with one push event (distribution notifications/event.go).
fn distribution(
    id: &str,
    host: &str,
    repository: &str,
    tag: &str,
    digest: &str,
) -> (String, Value) {
    (
        DISTRIBUTION_MEDIA_TYPE.into(),
        json!({"events": [
            {"id": format!("{id}-pull"), "action": "pull", "target": {"repository": repository, "tag": tag}, "request": {"host": host}},
            {
                "id": id,
                "timestamp": "2026-12-03T15:00:00Z",
                "action": "push",
                "target": {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "size": 1234,
                    "digest": digest,
                    "repository": repository,
                    "tag": tag,
                },
                "request": {"id": "r1", "addr": "10.0.0.1:5000", "host": host, "method": "PUT", "useragent": "docker/27"},
                "source": {"addr": "registry-0:5000"},
            },
        ]}),
    )
}

/// POSTs a notification to a webhook path (with its query), as a registry would: no cookie.
async fn deliver(site: &Site, hook: &str, (content_type, body): &(String, Value)) -> Reply {
    deliver_raw(site, hook, content_type, body.to_string()).await
}

async fn deliver_raw(site: &Site, hook: &str, content_type: &str, body: String) -> Reply {
    let mut registry = site.browser();
    registry
        .send(
            Request::post(hook)
                .header(header::CONTENT_TYPE, content_type)
                .body(Body::from(body))
                .unwrap(),
        )
        .await
}

async fn deployment(site: &Site, ns: &str, name: &str) -> Deployment {
    site.objects::<Deployment>(ns).get(name).await.unwrap()
}

/// What a delivery may change: the generation (any change of the spec) and the pod template.
async fn spec_state(site: &Site, ns: &str, name: &str) -> (i64, Value) {
    let d = deployment(site, ns, name).await;
    (
        d.metadata.generation.unwrap(),
        serde_json::to_value(d.spec.unwrap().template).unwrap(),
    )
}

fn image(d: &Deployment) -> String {
    d.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .image
        .clone()
        .unwrap()
}

fn pull_policy(d: &Deployment) -> String {
    d.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .image_pull_policy
        .clone()
        .unwrap()
}

fn annotation(d: &Deployment, key: &str) -> Option<String> {
    d.metadata.annotations.as_ref()?.get(key).cloned()
}

async fn replica_sets(site: &Site, ns: &str, name: &str) -> Vec<ReplicaSet> {
    site.objects::<ReplicaSet>(ns)
        .list(&ListParams::default().labels(&format!("app={name}")))
        .await
        .unwrap()
        .items
}

/// Waits until the Deployment controller has rolled the newest template out.
async fn rolled_out(site: &Site, ns: &str, name: &str, replicas: i32) {
    let deployments = site.objects::<Deployment>(ns);
    eventually("the rollout to complete", || async {
        let d = deployments.get(name).await.ok()?;
        let status = d.status.as_ref()?;
        let done = d.metadata.generation == status.observed_generation
            && status.updated_replicas == Some(replicas)
            && status.ready_replicas == Some(replicas)
            && status.replicas == Some(replicas);
        done.then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_url_is_shown_once_and_only_its_hash_is_stored() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    alice.create_ok("hello", "nginx", "80", "1").await;
    assert_eq!(
        alice.get_json("/api/v1/repos/hello").await["webhook"],
        false
    );

    let r = alice
        .api(Method::POST, "/api/v1/repos/hello/webhook", None)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
    let url = r.json()["url"].as_str().unwrap().to_string();
    let token = url
        .strip_prefix("http://lb.test/hooks/v1/alice/hello?token=")
        .unwrap_or_else(|| panic!("{url}"))
        .to_string();
    assert_eq!(token.len(), 43, "32 random bytes, URL-safe base64: {token}");

    // Never again: not in the repository's JSON, its page, its revisions, or the cluster.
    let json = alice.get_json("/api/v1/repos/hello").await;
    assert_eq!(json["webhook"], true, "{json}");
    for path in [
        "/api/v1/repos/hello",
        "/api/v1/repos",
        "/api/v1/repos/hello/revisions",
        "/repos/hello",
        "/repos",
    ] {
        let body = alice.get(path).await.body;
        assert!(!body.contains(&token), "{path} shows the token");
    }
    let d = deployment(&site, "alice", "hello").await;
    let stored = annotation(&d, TOKEN_SHA256).unwrap();
    assert_eq!(stored.len(), 64);
    assert_eq!(stored, web::repositories::webhook::token_digest(&token));
    assert!(!serde_json::to_string(&d).unwrap().contains(&token));

    // The page's button shows a new URL on the answer to its POST, and only there.
    let page = alice.post("/repos/hello/webhook", &[]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.headers[header::CACHE_CONTROL], "no-store");
    let shown = page
        .body
        .split("http://lb.test/hooks/v1/alice/hello?token=")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(shown.len(), 43);
    assert_ne!(shown, token);
    assert!(page.body.contains("shown only once"));
    let again = alice.get("/repos/hello").await.body;
    assert!(!again.contains(&shown));
    assert!(again.contains("Make a new webhook URL"));
}

#[tokio::test]
async fn a_new_url_invalidates_the_old_one_and_turning_it_off_refuses_every_token() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    alice.create_ok("hello", "nginx", "80", "1").await;
    let old = make_webhook(&mut alice, "hello").await;
    let new = make_webhook(&mut alice, "hello").await;
    assert_ne!(old, new);
    let before = spec_state(&site, "alice", "hello").await;
    let r = deliver(&site, &old, &hub("library/nginx", "latest", 1)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert_eq!(spec_state(&site, "alice", "hello").await, before);

    // A change through the site (a server-side apply of the Deployment) keeps the webhook.
    let r = alice
        .call(
            Method::PATCH,
            "/api/v1/repos/hello",
            json!({"image": "nginx:latest", "replicas": 2}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = deliver(&site, &new, &hub("library/nginx", "latest", 2)).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);

    let r = alice
        .api(Method::DELETE, "/api/v1/repos/hello/webhook", None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let d = deployment(&site, "alice", "hello").await;
    assert_eq!(annotation(&d, TOKEN_SHA256), None);
    assert_eq!(
        alice.get_json("/api/v1/repos/hello").await["webhook"],
        false
    );
    let before = spec_state(&site, "alice", "hello").await;
    let r = deliver(&site, &new, &hub("library/nginx", "latest", 3)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert_eq!(spec_state(&site, "alice", "hello").await, before);
}

#[tokio::test]
async fn a_wrong_or_missing_token_is_401_whatever_the_repository_and_changes_nothing() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    alice.create_ok("hello", "nginx", "80", "1").await;
    alice.create_ok("other", "nginx", "80", "1").await;
    let hook = make_webhook(&mut alice, "hello").await;
    let other = make_webhook(&mut alice, "other").await;
    let mut bob = site.user("bob").await;
    bob.create_ok("hello", "nginx", "80", "1").await;
    let token = token_of(&hook).to_string();
    let before = spec_state(&site, "alice", "hello").await;
    let bob_before = spec_state(&site, "bob", "hello").await;
    // The token with its last character changed (to one it surely is not).
    let last = if token.ends_with('A') { 'B' } else { 'A' };
    let wrong = format!("{}{last}", &token[..42]);
    let cases = [
        "/hooks/v1/alice/hello".to_string(),
        "/hooks/v1/alice/hello?token=".to_string(),
        format!("/hooks/v1/alice/hello?token={wrong}"),
        format!("/hooks/v1/alice/hello?token={}", token_of(&other)),
        // The right token for another repository, another user's, one that does not exist, a
        // platform namespace.
        format!("/hooks/v1/alice/missing?token={token}"),
        format!("/hooks/v1/bob/hello?token={token}"),
        format!("/hooks/v1/nobody/hello?token={token}"),
        format!("/hooks/v1/kdeploy-system/kdeploy-site?token={token}"),
    ];
    let mut messages = BTreeSet::new();
    for path in &cases {
        let r = deliver(&site, path, &hub("library/nginx", "latest", 1)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}: {}", r.body);
        assert!(
            !r.body.contains(&token) && !r.body.contains(&wrong),
            "{path}"
        );
        assert!(r.headers.get(header::SET_COOKIE).is_none(), "{path}");
        messages.insert(r.message());
    }
    assert_eq!(
        messages.len(),
        1,
        "the answer does not tell which: {messages:?}"
    );
    // A wrong token is refused before the body is read: a malformed one is 401 too.
    let r = deliver_raw(
        &site,
        &format!("/hooks/v1/alice/hello?token={wrong}"),
        "application/json",
        "{".into(),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert_eq!(spec_state(&site, "alice", "hello").await, before);
    assert_eq!(spec_state(&site, "bob", "hello").await, bob_before);
}

/// Names of the pods that answer through the ingress (the simulator's echo names its pod).
async fn pods_answering(site: &Site) -> BTreeSet<String> {
    let mut pods = BTreeSet::new();
    for _ in 0..10 {
        let (status, body) = through_ingress(&site.sim, "/alice/hello/").await;
        assert_eq!(status, 200, "{body}");
        let echo: Value = serde_json::from_str(&body).unwrap();
        pods.insert(echo["pod"].as_str().unwrap().to_owned());
    }
    pods
}

/// The same rolling update as the Redeploy button (handlers.rs
/// `requests_through_the_ingress_all_succeed_during_a_redeploy`): every request through the
/// ingress succeeds while a Docker Hub push replaces the pods, and the revision is the webhook's.
#[tokio::test]
async fn a_docker_hub_push_redeploys_without_downtime() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    alice.create_ok("hello", "nginx", "80", "2").await;
    let hook = make_webhook(&mut alice, "hello").await;
    rolled_out(&site, "alice", "hello", 2).await;
    site.reachable("/alice/hello/").await;
    let before = pods_answering(&site).await;
    let sets_before = replica_sets(&site, "alice", "hello").await.len();
    let generation = deployment(&site, "alice", "hello")
        .await
        .metadata
        .generation;

    let rollout = async {
        // Official images are `library/<name>` in Docker Hub's payload.
        let r = deliver(&site, &hook, &hub("library/nginx", "latest", 1_764_774_000)).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
        assert_eq!(
            r.json(),
            json!({"status": "redeploying", "image": "nginx:latest"})
        );
        let d = deployment(&site, "alice", "hello").await;
        assert_ne!(d.metadata.generation, generation, "the template changed");
        rolled_out(&site, "alice", "hello", 2).await;
    };
    load_across(&site.sim, "/alice/hello/ping", &before, rollout)
        .await
        .assert_served_throughout(&before);
    assert_eq!(
        replica_sets(&site, "alice", "hello").await.len(),
        sets_before + 1,
        "a new ReplicaSet"
    );
    eventually("only new pods to answer", || async {
        let after = pods_answering(&site).await;
        before.is_disjoint(&after).then_some(())
    })
    .await;
    let d = deployment(&site, "alice", "hello").await;
    assert_eq!(image(&d), "nginx:latest");
    // The push says the tag names new content: nodes that have it cached pull it again.
    assert_eq!(pull_policy(&d), "Always");
    let revisions = alice.get_json("/api/v1/repos/hello/revisions").await;
    assert_eq!(revisions[0]["deployed_by"], "webhook", "{revisions}");
    assert_eq!(
        revisions[0]["change"], "push of nginx:latest",
        "{revisions}"
    );
}

#[tokio::test]
async fn a_distribution_push_with_a_digest_pins_the_image_and_a_replay_changes_nothing() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    alice
        .create_ok("hello", "registry.example.com:5000/team/app:1.0", "80", "1")
        .await;
    let hook = make_webhook(&mut alice, "hello").await;
    let push = distribution(
        "e-1",
        "registry.example.com:5000",
        "team/app",
        "1.0",
        DIGEST,
    );
    let r = deliver(&site, &hook, &push).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let pinned = format!("registry.example.com:5000/team/app:1.0@{DIGEST}");
    assert_eq!(r.json()["image"], pinned.as_str());
    let d = deployment(&site, "alice", "hello").await;
    assert_eq!(image(&d), pinned);
    // A digest never names other content: no pull when the node has it.
    assert_eq!(pull_policy(&d), "IfNotPresent");
    let template = d.spec.as_ref().unwrap().template.metadata.clone().unwrap();
    assert_eq!(
        template.annotations.unwrap()["kdeploy.dev/deployed-by"],
        "webhook"
    );
    rolled_out(&site, "alice", "hello", 1).await;
    // The repository still shows the tag it follows, digest and all.
    let json = alice.get_json("/api/v1/repos/hello").await;
    assert_eq!(json["image"], pinned.as_str(), "{json}");

    // The same delivery again: nothing changes, and the answer says so.
    let before = spec_state(&site, "alice", "hello").await;
    let deliveries = annotation(&deployment(&site, "alice", "hello").await, DELIVERIES);
    let r = deliver(&site, &hook, &push).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["status"], "already_applied", "{}", r.body);
    assert_eq!(spec_state(&site, "alice", "hello").await, before);
    assert_eq!(
        annotation(&deployment(&site, "alice", "hello").await, DELIVERIES),
        deliveries
    );
    // A Docker Hub delivery replayed, likewise.
    alice.create_ok("hub", "alice/app:2.1", "80", "1").await;
    let hub_hook = make_webhook(&mut alice, "hub").await;
    let push = hub("alice/app", "2.1", 1_764_774_000);
    assert_eq!(
        deliver(&site, &hub_hook, &push).await.status,
        StatusCode::ACCEPTED
    );
    let before = spec_state(&site, "alice", "hub").await;
    let r = deliver(&site, &hub_hook, &push).await;
    assert_eq!(
        (r.status, r.json()["status"].clone()),
        (StatusCode::OK, json!("already_applied"))
    );
    assert_eq!(spec_state(&site, "alice", "hub").await, before);

    // A later push of the tag without a digest follows the tag again.
    let r = deliver(
        &site,
        &hook,
        &distribution(
            "e-2",
            "registry.example.com:5000",
            "team/app",
            "1.0",
            DIGEST,
        ),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let mut no_digest = distribution(
        "e-3",
        "registry.example.com:5000",
        "team/app",
        "1.0",
        DIGEST,
    )
    .1;
    no_digest["events"][1]["target"]
        .as_object_mut()
        .unwrap()
        .remove("digest");
    let r = deliver(&site, &hook, &(DISTRIBUTION_MEDIA_TYPE.into(), no_digest)).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(
        image(&deployment(&site, "alice", "hello").await),
        "registry.example.com:5000/team/app:1.0"
    );
}

#[tokio::test]
async fn a_push_of_another_image_is_422_naming_the_field_and_changes_nothing() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    alice.create_ok("hello", "nginx:1.27", "80", "1").await;
    let hook = make_webhook(&mut alice, "hello").await;
    let before = spec_state(&site, "alice", "hello").await;
    let cases = [
        (hub("library/nginx", "1.26", 1), "push_data.tag"),
        (hub("library/httpd", "1.27", 1), "repository.repo_name"),
        (hub("alice/nginx", "1.27", 1), "repository.repo_name"),
        (
            distribution("x", "ghcr.io", "library/nginx", "1.27", DIGEST),
            "events[1].request.host",
        ),
        (
            distribution("x", "docker.io", "library/redis", "1.27", DIGEST),
            "events[1].target.repository",
        ),
        (
            distribution(
                "x",
                "registry-1.docker.io",
                "library/nginx",
                "latest",
                DIGEST,
            ),
            "events[1].target.tag",
        ),
    ];
    for (push, field) in &cases {
        let r = deliver(&site, &hook, push).await;
        r.assert_refused(field);
        assert!(
            r.message().contains("docker.io/library/nginx:1.27"),
            "{}",
            r.body
        );
    }
    assert_eq!(spec_state(&site, "alice", "hello").await, before);
    // A digest the image's reference cannot take within the image field's 255 characters.
    let path = "a".repeat(200);
    alice
        .create_ok("long", &format!("r.example/{path}:1.0"), "80", "1")
        .await;
    let long_hook = make_webhook(&mut alice, "long").await;
    let long_before = spec_state(&site, "alice", "long").await;
    let r = deliver(
        &site,
        &long_hook,
        &distribution("z", "r.example", &path, "1.0", DIGEST),
    )
    .await;
    r.assert_refused("events[1].target.digest");
    assert!(r.message().contains("255"), "{}", r.body);
    assert_eq!(spec_state(&site, "alice", "long").await, long_before);
    // The same push for the right image is taken: `registry-1.docker.io` is Docker Hub.
    let r = deliver(
        &site,
        &hook,
        &distribution("y", "registry-1.docker.io", "library/nginx", "1.27", DIGEST),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
}

#[tokio::test]
async fn malformed_notifications_are_400_naming_the_field_and_change_nothing() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    alice.create_ok("hello", "nginx", "80", "1").await;
    let hook = make_webhook(&mut alice, "hello").await;
    let before = spec_state(&site, "alice", "hello").await;
    let json = "application/json";
    let cases: Vec<(&str, String, &str)> = vec![
        (json, "{not json".into(), "body"),
        (json, "[]".into(), "body"),
        (json, "{}".into(), "body"),
        ("text/plain", hub("library/nginx", "latest", 1).1.to_string(), "content-type"),
        (json, json!({"push_data": {"pushed_at": 1}, "repository": {"repo_name": "library/nginx"}}).to_string(), "push_data.tag"),
        (json, json!({"push_data": {"tag": "latest", "pushed_at": 1}}).to_string(), "repository"),
        (json, json!({"push_data": {"tag": "latest", "pushed_at": 1}, "repository": {"repo_name": 7}}).to_string(), "repository.repo_name"),
        (DISTRIBUTION_MEDIA_TYPE, json!({"events": "push"}).to_string(), "events"),
        (
            DISTRIBUTION_MEDIA_TYPE,
            json!({"events": [{"id": "x", "action": "push", "target": {"repository": "library/nginx", "tag": "latest", "digest": "sha256:ABC"}, "request": {"host": "docker.io"}}]}).to_string(),
            "events[0].target.digest",
        ),
    ];
    for (content_type, body, field) in cases {
        let r = deliver_raw(&site, &hook, content_type, body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.body);
        assert_eq!(r.json()["field"], field, "{body}: {}", r.body);
    }
    let r = deliver_raw(
        &site,
        &hook,
        json,
        format!("{{\"pad\": \"{}\"}}", "x".repeat(300 * 1024)),
    )
    .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.body);
    assert_eq!(spec_state(&site, "alice", "hello").await, before);
    // Only pulls: nothing to do, and not an error a registry would retry.
    let pulls = json!({"events": [{"id": "p", "action": "pull", "target": {"repository": "library/nginx", "tag": "latest"}, "request": {"host": "docker.io"}}]});
    let r = deliver(&site, &hook, &(DISTRIBUTION_MEDIA_TYPE.into(), pulls)).await;
    assert_eq!(
        (r.status, r.json()["status"].clone()),
        (StatusCode::OK, json!("ignored"))
    );
    assert_eq!(spec_state(&site, "alice", "hello").await, before);
}

#[tokio::test]
async fn more_than_five_deliveries_a_minute_are_429_with_retry_after() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    alice.create_ok("hello", "nginx", "80", "1").await;
    let hook = make_webhook(&mut alice, "hello").await;
    for i in 0..5 {
        let r = deliver(&site, &hook, &hub("library/nginx", "latest", 1000 + i)).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "delivery {i}: {}", r.body);
    }
    let before = spec_state(&site, "alice", "hello").await;
    let r = deliver(&site, &hook, &hub("library/nginx", "latest", 2000)).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.body);
    let retry: u64 = r.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(
        r.message().contains("at most 5 times a minute"),
        "{}",
        r.body
    );
    assert_eq!(spec_state(&site, "alice", "hello").await, before);
    // A replay of an applied delivery is still answered (it changes nothing anyway).
    let r = deliver(&site, &hook, &hub("library/nginx", "latest", 1000)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // The limit is the repository's: another repository's webhook is not held back.
    alice.create_ok("other", "nginx", "80", "1").await;
    let other = make_webhook(&mut alice, "other").await;
    let r = deliver(&site, &other, &hub("library/nginx", "latest", 2000)).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
}

/// Everything the site logs, kept for a look.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Self;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// The token is a credential in a URL: no log line, at any level, holds it or the query string,
/// whatever the delivery's outcome.
#[tokio::test]
async fn no_log_line_holds_the_token() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(logs.clone())
        .finish();
    // This thread's (the test's current-thread runtime runs the site's tasks on it too).
    let _guard = tracing::subscriber::set_default(subscriber);
    let site = site().await;
    let mut alice = site.user("alice").await;
    alice.create_ok("hello", "nginx", "80", "1").await;
    let hook = make_webhook(&mut alice, "hello").await;
    let token = token_of(&hook).to_string();
    // The token with its last character changed (to one it surely is not).
    let last = if token.ends_with('A') { 'B' } else { 'A' };
    let wrong = format!("{}{last}", &token[..42]);
    let wrong_hook = format!("/hooks/v1/alice/hello?token={wrong}");
    for (path, body) in [
        (&hook, hub("library/nginx", "latest", 1)),
        (&hook, hub("library/nginx", "latest", 1)),
        (&hook, hub("library/nginx", "1.0", 2)),
        (&wrong_hook, hub("library/nginx", "latest", 3)),
    ] {
        deliver(&site, path, &body).await;
    }
    deliver_raw(&site, &hook, "application/json", "{".into()).await;
    let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        logged.contains("/hooks/v1/alice/hello") && logged.contains("webhook redeploy"),
        "the capture sees the site's log: {logged}"
    );
    for secret in [token.as_str(), wrong.as_str(), "token="] {
        assert!(!logged.contains(secret), "{secret} logged: {logged}");
    }
}
