//! Environment and secret variables of a repository (issue 16 item 4): stored in the Deployment
//! and an owned Secret, observed with the administrator's client; secret values never come back
//! in a response, a page or a log line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use axum::http::{Method, StatusCode};
use common::{Site, eventually, site};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{EnvVar, Secret};
use kube::api::ListParams;
use serde_json::{Value, json};

const MARKER: &str = "S3CRET-MARKER-5f2d";

/// Every log line of this test process, at debug level and above (the site logs at info).
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = buffer.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
            .with_writer(move || Capture(sink.clone()))
            .try_init();
        buffer
    })
    .clone()
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn assert_no_marker(what: &str, text: &str) {
    assert!(
        !text.contains(MARKER),
        "{what} shows a secret value: {text}"
    );
}

async fn deployment(site: &Site, ns: &str, name: &str) -> Deployment {
    site.objects::<Deployment>(ns).get(name).await.unwrap()
}

fn container_env(d: &Deployment) -> Vec<EnvVar> {
    d.spec.clone().unwrap().template.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap_or_default()
}

fn digest(d: &Deployment) -> Option<String> {
    d.spec
        .clone()?
        .template
        .metadata?
        .annotations?
        .get("kdeploy.dev/env-secret-digest")
        .cloned()
}

async fn secret_data(site: &Site, ns: &str, name: &str) -> Option<Vec<(String, String)>> {
    let s = site.objects::<Secret>(ns).get_opt(name).await.unwrap()?;
    Some(
        s.data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8(v.0).unwrap()))
            .collect(),
    )
}

async fn replica_sets(site: &Site, ns: &str) -> usize {
    site.objects::<ReplicaSet>(ns)
        .list(&ListParams::default().labels("app=hello"))
        .await
        .unwrap()
        .items
        .len()
}

#[tokio::test]
async fn variables_go_to_the_deployment_and_an_owned_secret_and_secret_values_never_come_back() {
    let logs = logs();
    let site = site().await;
    let mut alice = site.user("alice").await;
    let r = alice
        .post_json(
            "/api/v1/repos",
            json!({"name": "hello", "image": "nginx", "port": 80,
                   "env": [{"name": "MODE", "value": "prod"}],
                   "secrets": [{"name": "TOKEN", "value": MARKER}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_no_marker("the create response", &r.body);
    assert_eq!(
        r.json()["environment"],
        json!({"env": [{"name": "MODE", "value": "prod"}], "secrets": [{"name": "TOKEN"}]})
    );
    let ns = r.json()["namespace"]
        .as_str()
        .unwrap_or("alice")
        .to_string();

    // What the cluster holds, as its administrator sees it.
    let d = deployment(&site, &ns, "hello").await;
    let env = container_env(&d);
    assert_eq!(env[0].name, "MODE");
    assert_eq!(env[0].value.as_deref(), Some("prod"));
    assert_eq!(env[1].name, "TOKEN");
    assert!(env[1].value.is_none());
    let key_ref = env[1].value_from.clone().unwrap().secret_key_ref.unwrap();
    assert_eq!(
        (key_ref.name.as_str(), key_ref.key.as_str()),
        ("hello-env", "TOKEN")
    );
    let digest = digest(&d).expect("the template carries the Secret's digest");
    assert!(!digest.contains(MARKER));
    let secret = site.objects::<Secret>(&ns).get("hello-env").await.unwrap();
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));
    let owner = &secret.metadata.owner_references.clone().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("Deployment", d.metadata.uid.as_deref().unwrap())
    );
    assert_eq!(
        secret_data(&site, &ns, "hello-env").await.unwrap(),
        [("TOKEN".to_string(), MARKER.to_string())]
    );

    // Every way of reading the repository back shows the name only.
    for path in [
        "/api/v1/repos/hello",
        "/api/v1/repos/hello/env",
        "/api/v1/repos",
    ] {
        let r = alice.api(Method::GET, path, None).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
        assert_no_marker(path, &r.body);
        assert!(r.body.contains("TOKEN"), "{path}: {}", r.body);
    }
    let page = alice.get("/repos/hello/env").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_no_marker("the Environment page", &page.body);
    assert!(page.body.contains(r#"name="secret_value" type="password""#));
    assert!(page.body.contains(r#"value="TOKEN""#));
    assert!(page.body.contains(r#"value="prod""#));
    let detail = alice.get("/repos/hello").await;
    assert!(detail.body.contains(r#"href="/repos/hello/env""#));
    assert_no_marker("the detail page", &detail.body);

    // Refused input with the value in it: the error names the field and the rule only.
    let r = alice
        .call(
            Method::PUT,
            "/api/v1/repos/hello/env",
            json!({"secrets": [{"name": "TOKEN", "value": format!("{MARKER}\u{0}")}]}),
        )
        .await;
    r.assert_refused("secrets[0].value");
    assert_no_marker("a refusal", &r.body);
    let r = alice
        .call(
            Method::PUT,
            "/api/v1/repos/hello/env",
            json!({"secrets": [{"name": "TOKEN", "value": {"nested": MARKER}}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_no_marker("a wrong-type refusal", &r.body);
    let r = alice
        .call(
            Method::PUT,
            "/api/v1/repos/hello/env",
            json!({"secrets": MARKER}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_no_marker("a wrong-type refusal", &r.body);
    let form = alice
        .post(
            "/repos/hello/env",
            &[
                ("env_name", "A-B"),
                ("env_value", "x"),
                ("secret_name", "TOKEN"),
                ("secret_value", &format!("{MARKER}\u{0}")),
            ],
        )
        .await;
    assert_eq!(
        form.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        form.body
    );
    assert_no_marker("the refused form", &form.body);
    assert!(
        form.body.contains(r#"id="env-0-name-error""#),
        "{}",
        form.body
    );
    assert!(
        form.body.contains(r#"id="secret-0-value-error""#),
        "{}",
        form.body
    );

    // Another developer sees nothing of it and changes nothing.
    let mut bob = site.user("bob").await;
    let r = bob.api(Method::GET, "/api/v1/repos/hello/env", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    let r = bob
        .call(
            Method::PUT,
            "/api/v1/repos/hello/env",
            json!({"secrets": [{"name": "TOKEN", "value": "bob"}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    assert_eq!(
        bob.get("/repos/hello/env").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        secret_data(&site, &ns, "hello-env").await.unwrap(),
        [("TOKEN".to_string(), MARKER.to_string())]
    );

    // No log line of the whole test carries the value (the site logs every request).
    let written = String::from_utf8_lossy(&logs.lock().unwrap()).to_string();
    assert!(written.contains("repository created"), "logs were captured");
    assert_no_marker("the logs", &written);

    // Deleting the repository removes the Secret with it (owner reference, garbage collector).
    let r = alice.api(Method::DELETE, "/api/v1/repos/hello", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    eventually("the garbage collector to remove the Secret", || async {
        secret_data(&site, &ns, "hello-env")
            .await
            .is_none()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn changing_variables_rolls_the_pods_keeps_unsent_secret_values_and_removes_dropped_keys() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    let r = alice
        .post_json(
            "/api/v1/repos",
            json!({"name": "hello", "image": "nginx", "port": 80,
                   "env": [{"name": "MODE", "value": "prod"}],
                   "secrets": [{"name": "TOKEN", "value": "t1"}, {"name": "KEY", "value": "k1"}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let ns = "alice";
    alice
        .poll_json("the repository to be ready", "/api/v1/repos/hello", |j| {
            j["state"] == "Ready"
        })
        .await;
    site.reachable(&format!("/{ns}/hello/")).await;
    let before = deployment(&site, ns, "hello").await;
    assert_eq!(replica_sets(&site, ns).await, 1);

    // Sending every secret without a value keeps them all: nothing changes, nothing rolls.
    let same = json!({"env": [{"name": "MODE", "value": "prod"}],
                      "secrets": [{"name": "TOKEN"}, {"name": "KEY", "value": ""}]});
    let r = alice
        .call(Method::PUT, "/api/v1/repos/hello/env", same)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let unchanged = deployment(&site, ns, "hello").await;
    assert_eq!(digest(&unchanged), digest(&before));
    assert_eq!(unchanged.metadata.generation, before.metadata.generation);

    // A new value of one secret, the other kept: the Secret holds both, the template rolls.
    let r = alice
        .call(
            Method::PUT,
            "/api/v1/repos/hello/env",
            json!({"env": [{"name": "MODE", "value": "prod"}],
                   "secrets": [{"name": "TOKEN", "value": "t2"}, {"name": "KEY"}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.json(),
        json!({"env": [{"name": "MODE", "value": "prod"}], "secrets": [{"name": "TOKEN"}, {"name": "KEY"}]})
    );
    let mut data = secret_data(&site, ns, "hello-env").await.unwrap();
    data.sort();
    assert_eq!(
        data,
        [
            ("KEY".to_string(), "k1".to_string()),
            ("TOKEN".to_string(), "t2".to_string())
        ]
    );
    let rolled = deployment(&site, ns, "hello").await;
    assert_ne!(
        digest(&rolled),
        digest(&before),
        "a secret change must roll the pods"
    );
    eventually("a new ReplicaSet for the new template", || async {
        (replica_sets(&site, ns).await >= 2).then_some(())
    })
    .await;
    alice
        .poll_json("the rollout to finish", "/api/v1/repos/hello", |j| {
            j["state"] == "Ready"
        })
        .await;
    site.reachable(&format!("/{ns}/hello/")).await;

    // A secret left out is removed from the Deployment and its key from the Secret.
    let r = alice
        .call(
            Method::PUT,
            "/api/v1/repos/hello/env",
            json!({"env": [{"name": "MODE", "value": "test"}], "secrets": [{"name": "TOKEN"}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        secret_data(&site, ns, "hello-env").await.unwrap(),
        [("TOKEN".to_string(), "t2".to_string())]
    );
    let env = container_env(&deployment(&site, ns, "hello").await);
    let names: Vec<&str> = env.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["MODE", "TOKEN"]);
    assert_eq!(env[0].value.as_deref(), Some("test"));

    // A change of image keeps the variables (the Deployment is rebuilt from what it holds).
    let r = alice
        .call(Method::PATCH, "/api/v1/repos/hello", json!({"replicas": 2}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(container_env(&deployment(&site, ns, "hello").await), env);

    // No secret left: the Secret goes, and nothing refers to it.
    let r = alice
        .call(Method::PUT, "/api/v1/repos/hello/env", json!({"env": []}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(secret_data(&site, ns, "hello-env").await.is_none());
    let d = deployment(&site, ns, "hello").await;
    assert!(container_env(&d).is_empty());
    assert!(digest(&d).is_none());

    // Through the page: a secret added with the form, then kept by leaving its field empty.
    alice.get("/repos/hello/env").await;
    let r = alice
        .post(
            "/repos/hello/env",
            &[
                ("env_name", "MODE"),
                ("env_value", "prod"),
                ("env_name", ""),
                ("env_value", ""),
                ("secret_name", "PASSWORD"),
                ("secret_value", "p1"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let r = alice
        .post(
            "/repos/hello/env",
            &[("secret_name", "PASSWORD"), ("secret_value", "")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(
        secret_data(&site, ns, "hello-env").await.unwrap(),
        [("PASSWORD".to_string(), "p1".to_string())]
    );
}

#[tokio::test]
async fn bad_variables_are_refused_naming_the_field_and_nothing_changes() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    let r = alice
        .post_json(
            "/api/v1/repos",
            json!({"name": "hello", "image": "nginx", "port": 80,
                   "env": [{"name": "MODE", "value": "prod"}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let before = container_env(&deployment(&site, "alice", "hello").await);
    let var = |name: &str, value: &str| json!({"name": name, "value": value});
    let too_many: Vec<Value> = (0..101).map(|i| var(&format!("V{i}"), "x")).collect();
    let large = "x".repeat(32 * 1024 + 1);
    let cases: Vec<(Value, &str)> = vec![
        (json!({"env": [var("1ABC", "x")]}), "env[0].name"),
        (
            json!({"env": [var("OK", "x"), var("A-B", "x")]}),
            "env[1].name",
        ),
        (json!({"env": [var("", "x")]}), "env[0].name"),
        (
            json!({"env": [var("A", "1"), var("A", "2")]}),
            "env[1].name",
        ),
        (
            json!({"env": [var("A", "1")], "secrets": [var("A", "2")]}),
            "secrets[0].name",
        ),
        (
            json!({"env": [var("KUBERNETES_SERVICE_HOST", "x")]}),
            "env[0].name",
        ),
        (json!({"env": too_many}), "env"),
        (json!({"env": [var("BIG", &large)]}), "env[0].value"),
        (json!({"env": [var("NUL", "a\u{0}b")]}), "env[0].value"),
        (json!({"secrets": [{"name": "NEW"}]}), "secrets[0].value"),
        (
            json!({"secrets": [{"name": "NEW", "value": ""}]}),
            "secrets[0].value",
        ),
    ];
    for (body, field) in cases {
        let r = alice
            .call(Method::PUT, "/api/v1/repos/hello/env", body.clone())
            .await;
        r.assert_refused(field);
    }
    // The same rules on create: nothing is made.
    let r = alice
        .post_json(
            "/api/v1/repos",
            json!({"name": "other", "image": "nginx", "port": 80, "env": [var("1ABC", "x")]}),
        )
        .await;
    r.assert_refused("env[0].name");
    assert!(!site.exists::<Deployment>("alice", "other").await);
    assert_eq!(
        container_env(&deployment(&site, "alice", "hello").await),
        before
    );
    assert!(secret_data(&site, "alice", "hello-env").await.is_none());
}
