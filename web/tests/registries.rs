//! Private images (issue 16 item 1): a user's registry logins, kept as one
//! `kubernetes.io/dockerconfigjson` Secret of their namespace and named in `imagePullSecrets` of the
//! repositories on those registries. The simulator's registries refuse a pull without the right
//! login as a registry does (localstack/cluster `controllers/pull_secrets.rs`); what the cluster
//! holds is observed with the administrator's client, not through the site.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::{Browser, Site, site_on_sim};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use serde_json::{Value, json};
use web::repositories::registries::{DIGEST, SECRET, SECRET_TYPE};

const PRIVATE: &str = "registry.example.com:5000";
const OTHER: &str = "other.example.com";
const PASSWORD: &str = "s3cret-Token";

async fn private_site() -> Site {
    site_on_sim(cluster::SimConfig {
        readiness_delay: Duration::from_millis(200),
        private_registries: vec![
            format!("{PRIVATE}=robot:{PASSWORD}").parse().unwrap(),
            format!("{OTHER}=bot:other-{PASSWORD}").parse().unwrap(),
        ],
        ..cluster::SimConfig::default()
    })
    .await
}

async fn create(b: &mut Browser, name: &str, image: &str) {
    let r = b
        .post_json(
            "/api/v1/repos",
            json!({"name": name, "image": image, "port": 80, "replicas": 1}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

async fn save(b: &mut Browser, server: &str, username: &str, password: &str) -> Value {
    let r = b
        .post_json(
            "/api/v1/registries",
            json!({"server": server, "username": username, "password": password}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(!r.body.contains(password), "{}", r.body);
    r.json()
}

/// The Deployment's pull secrets and login digest, as the administrator reads them.
async fn pull_of(site: &Site, namespace: &str, name: &str) -> (Vec<String>, Option<String>) {
    let d = site
        .objects::<Deployment>(namespace)
        .get(name)
        .await
        .unwrap();
    let template = d.spec.unwrap().template;
    let secrets = template
        .spec
        .unwrap()
        .image_pull_secrets
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.name)
        .collect();
    let digest = template
        .metadata
        .and_then(|m| m.annotations)
        .and_then(|a| a.get(DIGEST).cloned());
    (secrets, digest)
}

async fn state_of(b: &Browser, name: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    b.poll_json(what, &format!("/api/v1/repos/{name}"), done)
        .await
}

fn failing_to_pull(j: &Value) -> bool {
    j["state"] == "Failing"
        && matches!(
            j["reason"].as_str(),
            Some("ErrImagePull" | "ImagePullBackOff")
        )
}

#[tokio::test]
async fn a_private_image_fails_with_advice_then_pulls_once_its_login_is_saved() {
    let site = private_site().await;
    let mut alice = site.user("alice").await;
    let image = format!("{PRIVATE}/team/app:1");
    create(&mut alice, "app", &image).await;
    create(&mut alice, "public", "nginx:1.27").await;

    // No login: the registry's 401 is shown with the advice to add one.
    let j = state_of(&alice, "app", "a pull error", failing_to_pull).await;
    let advice = j["advice"].as_str().unwrap();
    assert!(
        advice.contains("Registries page") && advice.contains(PRIVATE),
        "{advice}"
    );
    assert!(j["message"].as_str().unwrap().contains("401"), "{j}");
    assert_eq!(pull_of(&site, "alice", "app").await, (vec![], None));

    // A wrong login: saved (as typed with a scheme), the repository rolls to it, and the advice
    // now says the saved login was refused.
    let saved = save(
        &mut alice,
        &format!("https://{PRIVATE}/"),
        "robot",
        "wrong-guess",
    )
    .await;
    assert_eq!(saved["server"], PRIVATE);
    assert_eq!(saved["rolled"], json!(["app"]));
    let (secrets, wrong_digest) = pull_of(&site, "alice", "app").await;
    assert_eq!(secrets, [SECRET]);
    assert!(wrong_digest.is_some());
    let j = state_of(&alice, "app", "the saved login refused", |j| {
        failing_to_pull(j) && j["advice"].as_str().unwrap().contains("refused the login")
    })
    .await;
    assert!(j["advice"].as_str().unwrap().contains(PRIVATE), "{j}");

    // The right login replaces it: the repository rolls again and runs.
    let saved = save(&mut alice, PRIVATE, "robot", PASSWORD).await;
    assert_eq!(saved["rolled"], json!(["app"]));
    let (_, right_digest) = pull_of(&site, "alice", "app").await;
    assert_ne!(right_digest, wrong_digest);
    state_of(&alice, "app", "the repository to be ready", |j| {
        j["state"] == "Ready"
    })
    .await;
    site.reachable("/alice/app/").await;

    // The cluster holds one docker config Secret with the login; the public image pulls
    // without it.
    let secret = site.objects::<Secret>("alice").get(SECRET).await.unwrap();
    assert_eq!(secret.type_.as_deref(), Some(SECRET_TYPE));
    let config: Value =
        serde_json::from_slice(&secret.data.unwrap()[".dockerconfigjson"].0).unwrap();
    assert_eq!(config["auths"][PRIVATE]["username"], "robot");
    assert_eq!(config["auths"][PRIVATE]["password"], PASSWORD);
    assert_eq!(pull_of(&site, "alice", "public").await, (vec![], None));

    // Shown by server and username, never by password: the API and the page.
    let list = alice.api(Method::GET, "/api/v1/registries", None).await;
    assert_eq!(
        list.json(),
        json!([{"server": PRIVATE, "username": "robot", "used_by": ["app"]}])
    );
    let page = alice.get("/registries").await;
    assert!(page.body.contains(PRIVATE) && page.body.contains("robot"));
    assert!(!page.body.contains(PASSWORD) && !list.body.contains(PASSWORD));

    // A login a repository pulls with is kept: removing it is refused and names the repository.
    let r = alice
        .api(
            Method::DELETE,
            &format!("/api/v1/registries/{PRIVATE}"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert!(r.message().contains("app"), "{}", r.body);
    assert!(site.exists::<Secret>("alice", SECRET).await);
    // Everything above ran under the site's own role.
    assert!(site.refusals.take().is_empty());
}

#[tokio::test]
async fn replacing_a_login_rolls_only_the_repositories_on_its_registry() {
    let site = private_site().await;
    let mut alice = site.user("alice").await;
    // Both first saves at once: neither login is lost.
    let (a, b) = tokio::join!(
        {
            let mut alice = alice.clone();
            async move { save(&mut alice, PRIVATE, "robot", PASSWORD).await }
        },
        {
            let mut alice = alice.clone();
            async move { save(&mut alice, OTHER, "bot", &format!("other-{PASSWORD}")).await }
        },
    );
    assert_eq!(
        (a["rolled"].clone(), b["rolled"].clone()),
        (json!([]), json!([]))
    );
    let listed = alice.get_json("/api/v1/registries").await;
    let servers: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["server"].as_str().unwrap())
        .collect();
    assert_eq!(servers, [OTHER, PRIVATE]);

    create(&mut alice, "one", &format!("{PRIVATE}/team/one:1")).await;
    create(&mut alice, "two", &format!("{OTHER}/team/two:1")).await;
    create(&mut alice, "hub", "nginx:1.27").await;
    for name in ["one", "two", "hub"] {
        state_of(&alice, name, "the repository to be ready", |j| {
            j["state"] == "Ready"
        })
        .await;
    }
    let generation = |d: Deployment| d.metadata.generation.unwrap();
    let deployments = site.objects::<Deployment>("alice");
    let before: Vec<i64> = futures::future::join_all(["one", "two", "hub"].map(|n| {
        let deployments = deployments.clone();
        async move { generation(deployments.get(n).await.unwrap()) }
    }))
    .await;

    // The same login again rolls nothing; a new token for the first registry rolls only its
    // repository (the simulator's registry refuses it, and the old pod keeps serving).
    let saved = save(&mut alice, PRIVATE, "robot", PASSWORD).await;
    assert_eq!(saved["rolled"], json!([]));
    let saved = save(&mut alice, PRIVATE, "robot", "a-new-token").await;
    assert_eq!(saved["rolled"], json!(["one"]));
    let after: Vec<i64> = futures::future::join_all(["one", "two", "hub"].map(|n| {
        let deployments = deployments.clone();
        async move { generation(deployments.get(n).await.unwrap()) }
    }))
    .await;
    assert!(after[0] > before[0], "{before:?} → {after:?}");
    assert_eq!(after[1..], before[1..], "{before:?} → {after:?}");
}

#[tokio::test]
async fn an_image_moved_off_the_registry_drops_the_login_and_a_rollback_takes_it_again() {
    let site = private_site().await;
    let mut alice = site.user("alice").await;
    save(&mut alice, PRIVATE, "robot", PASSWORD).await;
    create(&mut alice, "app", &format!("{PRIVATE}/team/app:1")).await;
    state_of(&alice, "app", "the repository to be ready", |j| {
        j["state"] == "Ready"
    })
    .await;
    let (secrets, digest) = pull_of(&site, "alice", "app").await;
    assert_eq!(
        (secrets, digest.is_some()),
        (vec![SECRET.to_string()], true)
    );

    let r = alice
        .call(
            Method::PATCH,
            "/api/v1/repos/app",
            json!({"image": "nginx:1.27"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(pull_of(&site, "alice", "app").await, (vec![], None));
    state_of(&alice, "app", "the public image to run", |j| {
        j["state"] == "Ready" && j["image"] == "nginx:1.27"
    })
    .await;

    let r = alice
        .post_json("/api/v1/repos/app/rollback", json!({"revision": 1}))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(pull_of(&site, "alice", "app").await.0, [SECRET]);
    state_of(&alice, "app", "the private image to run again", |j| {
        j["state"] == "Ready" && j["image"].as_str().unwrap().starts_with(PRIVATE)
    })
    .await;
}

#[tokio::test]
async fn bad_logins_are_refused_naming_the_field_without_repeating_the_password() {
    let site = private_site().await;
    let mut alice = site.user("alice").await;
    for (body, field) in [
        (
            json!({"server": PRIVATE, "username": "robot", "password": format!("{PASSWORD}\n")}),
            "password",
        ),
        (
            json!({"server": PRIVATE, "username": "ro\u{7}bot", "password": PASSWORD}),
            "username",
        ),
        (
            json!({"server": PRIVATE, "username": "ro:bot", "password": PASSWORD}),
            "username",
        ),
        (
            json!({"server": "ghcr.io/org", "username": "robot", "password": PASSWORD}),
            "server",
        ),
        (
            json!({"server": "bad_host", "username": "robot", "password": PASSWORD}),
            "server",
        ),
        (
            json!({"server": PRIVATE, "username": "robot", "password": ""}),
            "password",
        ),
        (
            json!({"server": PRIVATE, "username": "robot", "password": "x".repeat(9000)}),
            "password",
        ),
        (
            json!({"server": PRIVATE, "username": "robot", "password": [PASSWORD]}),
            "password",
        ),
        (
            json!({"server": PRIVATE, "username": "robot", "password": PASSWORD, "email": "a@b"}),
            "email",
        ),
    ] {
        let r = alice.post_json("/api/v1/registries", body.clone()).await;
        r.assert_refused(field);
        assert!(!r.body.contains(PASSWORD), "{body}: {}", r.body);
    }
    // The form: the page again with the server and username, never the password.
    let r = alice
        .post(
            "/registries",
            &[
                ("server", PRIVATE),
                ("username", "robot"),
                ("password", &format!("{PASSWORD}\t")),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.body.contains("control characters") && r.body.contains(PRIVATE));
    assert!(!r.body.contains(PASSWORD));
    // Nothing was stored.
    assert!(!site.exists::<Secret>("alice", SECRET).await);

    // At most twenty registries; the twenty-first is refused and the twenty kept.
    for i in 0..20 {
        save(
            &mut alice,
            &format!("r{i}.example.com"),
            "u",
            &format!("token-{i}-x"),
        )
        .await;
    }
    let r = alice
        .post_json(
            "/api/v1/registries",
            json!({"server": "r20.example.com", "username": "u", "password": "p"}),
        )
        .await;
    r.assert_refused("server");
    assert!(r.message().contains("20"), "{}", r.body);
    assert_eq!(
        alice
            .get_json("/api/v1/registries")
            .await
            .as_array()
            .unwrap()
            .len(),
        20
    );
}

#[tokio::test]
async fn a_login_is_its_owners_alone() {
    let site = private_site().await;
    let mut alice = site.user("alice").await;
    let mut bob = site.user("bob").await;
    save(&mut alice, PRIVATE, "robot", PASSWORD).await;

    assert_eq!(bob.get_json("/api/v1/registries").await, json!([]));
    let r = bob
        .api(
            Method::DELETE,
            &format!("/api/v1/registries/{PRIVATE}"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    // Bob's repository on the same registry does not pull with Alice's login.
    create(&mut bob, "app", &format!("{PRIVATE}/team/app:1")).await;
    let j = state_of(&bob, "app", "a pull error", failing_to_pull).await;
    assert!(
        j["advice"]
            .as_str()
            .unwrap()
            .contains("add your credentials")
    );
    assert_eq!(pull_of(&site, "bob", "app").await, (vec![], None));
    assert!(!site.exists::<Secret>("bob", SECRET).await);

    // Alice removes her unused login through the page.
    let r = alice
        .post("/registries/delete", &[("server", PRIVATE)])
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(!site.exists::<Secret>("alice", SECRET).await);
    let page = alice.get(r.location()).await;
    assert!(page.body.contains("was removed"), "{}", page.body);
}
