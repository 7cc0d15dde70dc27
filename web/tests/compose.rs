//! docker compose files (issue 16 item 2): previewed as the repositories they become and
//! deployed as one group, against the cluster simulator. What the cluster holds is observed with
//! the administrator's client (and the site's own calls through its watched client), not
//! through the site's pages.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use common::{Browser, Reply, Site, site, site_with};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{ListParams, PostParams};
use serde_json::{Value, json};
use web::config::QuotaPolicy;
use web::repositories::objects::{LABEL_COMPOSE_PROJECT, LABEL_ROUTE, ROUTE_INTERNAL};

/// A shop: a public front end and API, and an internal database the API waits for.
const SHOP: &str = r#"
name: shop
version: "3.9"
services:
  web:
    image: nginx:1.27
    ports:
      - "8080:80"
    depends_on:
      - api
    restart: unless-stopped
  api:
    image: nginx:1.27
    ports:
      - target: 80
        published: 3000
    environment:
      DATABASE_URL: postgres://db:5432/shop
      WORKERS: 4
    deploy:
      replicas: 2
    depends_on:
      db:
        condition: service_healthy
  db:
    image: nginx:1.27
    expose:
      - "5432"
    environment:
      - POSTGRES_PASSWORD=example
"#;

/// Sends a compose file to the API as YAML, with the CSRF header as the API needs.
async fn send_yaml(b: &mut Browser, path: &str, text: &str) -> Reply {
    if b.csrf.is_none() {
        b.get("/login").await;
    }
    let request = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header("x-csrf-token", b.csrf.clone().unwrap_or_default())
        .header(header::CONTENT_TYPE, "application/yaml")
        .body(Body::from(text.to_string()))
        .unwrap();
    b.send(request).await
}

async fn preview(b: &mut Browser, text: &str) -> Value {
    let r = send_yaml(b, "/api/v1/compose/preview", text).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.json()
}

/// The names of the Deployments of a namespace, as the administrator sees them.
async fn deployments(site: &Site, namespace: &str) -> Vec<String> {
    let mut names: Vec<String> = site
        .objects::<Deployment>(namespace)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|d| d.metadata.name)
        .collect();
    names.sort();
    names
}

/// The calls among `calls` that changed something (the site's reads aside).
fn writes(calls: &[String]) -> Vec<&String> {
    calls.iter().filter(|c| !c.starts_with("GET ")).collect()
}

/// The Deployments the site created, in the order it created them.
fn created_deployments(calls: &[String], namespace: &str) -> Vec<String> {
    let prefix = format!("POST /apis/apps/v1/namespaces/{namespace}/deployments");
    calls
        .iter()
        .filter(|c| c.starts_with(&prefix))
        .map(|c| c.to_string())
        .collect()
}

#[tokio::test]
async fn a_preview_lists_the_repositories_in_rollout_order_and_creates_nothing() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    let before = site.refusals.calls_made();
    let p = preview(&mut alice, SHOP).await;
    assert_eq!(p["project"], "shop");
    assert_eq!(p["deployable"], true, "{p:#}");
    let order: Vec<&str> = p["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["db", "api", "web"]);
    let service = |name: &str| {
        p["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()
            .clone()
    };
    let (web, api, db) = (service("web"), service("api"), service("db"));
    assert_eq!(web["route"], "http://lb.test/alice/web/");
    assert_eq!(web["published"], json!(["8080"]));
    assert_eq!(api["replicas"], 2);
    assert_eq!(api["port"], 80);
    assert_eq!(
        api["depends_on"],
        json!([{"service": "db", "condition": "service_healthy"}])
    );
    assert_eq!(
        api["environment"],
        json!([{"name": "DATABASE_URL", "value": "postgres://db:5432/shop"}, {"name": "WORKERS", "value": "4"}])
    );
    assert_eq!(db["route"], Value::Null);
    assert_eq!(db["public"], false);
    assert_eq!(db["internal_address"], "db:5432");
    // Keys left out are listed, never dropped silently.
    let findings = p["findings"].as_array().unwrap();
    let paths: Vec<&str> = findings
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"version"), "{findings:?}");
    assert!(paths.contains(&"services.web.restart"), "{findings:?}");
    assert!(findings.iter().all(|f| f["effect"] == "ignored"));

    // The same through a JSON body.
    let r = alice
        .post_json("/api/v1/compose/preview", json!({"compose": SHOP}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["services"], p["services"]);

    // And as a page: the table and the findings, the file kept in the textarea.
    let page = alice.post("/compose/preview", &[("compose", SHOP)]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("data-service=\"db\""), "{}", page.body);
    assert!(page.body.contains("internal only"));
    assert!(page.body.contains("http://lb.test/alice/api/"));
    assert!(page.body.contains("data-finding=\"services.web.restart\""));
    assert!(page.body.contains("postgres://db:5432/shop"));
    assert!(
        page.body
            .contains("Ready to deploy: 3 repositories, 4 pods")
    );

    let calls = site.refusals.calls_since(before);
    assert!(writes(&calls).is_empty(), "a preview wrote: {calls:?}");
    assert!(deployments(&site, "alice").await.is_empty());
}

#[tokio::test]
async fn a_deploy_makes_one_repository_per_service_in_order_reaching_each_other_by_name() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    let before = site.refusals.calls_made();
    let r = send_yaml(&mut alice, "/api/v1/compose", SHOP).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(
        r.json(),
        json!({"project": "shop", "repositories": ["db", "api", "web"]})
    );
    // Created in rollout order: the database before the API that waits for it, the API before
    // the front end.
    let calls = site.refusals.calls_since(before);
    let created = created_deployments(&calls, "alice");
    assert_eq!(created.len(), 3, "{created:?}");
    let posted: Vec<String> = calls
        .iter()
        .filter(|c| c.starts_with("PATCH /api/v1/namespaces/alice/services/"))
        .map(|c| {
            c.trim_start_matches("PATCH /api/v1/namespaces/alice/services/")
                .split('?')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(posted, ["db", "api", "web"], "{calls:#?}");

    assert_eq!(deployments(&site, "alice").await, ["api", "db", "web"]);
    let group = ListParams::default().labels(&format!("{LABEL_COMPOSE_PROJECT}=shop"));
    let labelled = site
        .objects::<Deployment>("alice")
        .list(&group)
        .await
        .unwrap();
    assert_eq!(labelled.items.len(), 3);
    assert_eq!(
        site.objects::<Service>("alice")
            .list(&group)
            .await
            .unwrap()
            .items
            .len(),
        3
    );
    // One public route per service that publishes a port: none for the database.
    let mut routes: Vec<String> = site
        .objects::<Ingress>("alice")
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|i| {
            assert_eq!(
                i.metadata.labels.as_ref().unwrap()[LABEL_COMPOSE_PROJECT],
                "shop"
            );
            i.metadata.name.unwrap()
        })
        .collect();
    routes.sort();
    assert_eq!(routes, ["api", "web"]);
    let db = site.objects::<Deployment>("alice").get("db").await.unwrap();
    assert_eq!(
        db.metadata.labels.as_ref().unwrap()[LABEL_ROUTE],
        ROUTE_INTERNAL
    );
    let api = site
        .objects::<Deployment>("alice")
        .get("api")
        .await
        .unwrap();
    let spec = api.spec.unwrap();
    assert_eq!(spec.replicas, Some(2));
    let env = spec.template.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    assert!(
        env.iter()
            .any(|e| e.name == "DATABASE_URL"
                && e.value.as_deref() == Some("postgres://db:5432/shop")),
        "{env:?}"
    );
    // The database is reached by its service name: a Service `db` on port 5432 whose Endpoints
    // are the database's pods.
    let service = site.objects::<Service>("alice").get("db").await.unwrap();
    let port = &service.spec.as_ref().unwrap().ports.as_ref().unwrap()[0];
    assert_eq!(
        (port.port, port.target_port.clone()),
        (
            5432,
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(5432))
        )
    );
    let endpoints = common::eventually("the database's endpoints", || async {
        let e = site
            .objects::<Endpoints>("alice")
            .get_opt("db")
            .await
            .unwrap()?;
        let addresses: usize = e
            .subsets
            .iter()
            .flatten()
            .map(|s| s.addresses.as_ref().map_or(0, Vec::len))
            .sum();
        (addresses == 1).then_some(e)
    })
    .await;
    let target = endpoints.subsets.unwrap()[0].addresses.as_ref().unwrap()[0]
        .target_ref
        .clone()
        .unwrap();
    assert!(target.name.unwrap().starts_with("db-"));

    // The site shows the group: every repository Ready, the database with no route by design.
    let list = alice
        .poll_json("the group to be ready", "/api/v1/repos", |j| {
            j["repositories"]
                .as_array()
                .is_some_and(|r| r.len() == 3 && r.iter().all(|r| r["state"] == "Ready"))
        })
        .await;
    for r in list["repositories"].as_array().unwrap() {
        assert_eq!(r["compose_project"], "shop", "{r}");
    }
    let db = alice.get_json("/api/v1/repos/db").await;
    assert_eq!(db["route"]["verdict"], "internal", "{db}");
    let kinds: Vec<&str> = db["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["Deployment", "Service"],
        "no Ingress, and none missing"
    );
    assert_eq!(db["endpoint"], Value::Null);
    let page = alice.get("/repos").await;
    assert!(page.body.contains("compose shop"), "{}", page.body);
    // The published front end answers through the load balancer.
    site.reachable("/alice/web/").await;

    // A change to the internal repository keeps it internal: still no Ingress.
    let r = alice
        .call(Method::PATCH, "/api/v1/repos/db", json!({"replicas": 2}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(!site.exists::<Ingress>("alice", "db").await);
    let db = site.objects::<Deployment>("alice").get("db").await.unwrap();
    assert_eq!(
        db.metadata.labels.as_ref().unwrap()[LABEL_COMPOSE_PROJECT],
        "shop"
    );
}

#[tokio::test]
async fn names_that_are_repositories_already_are_refused_before_anything_is_created() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    alice.create_ok("api", "nginx", "80", "1").await;
    let mut bob = site.user("bob").await;
    bob.create_ok("web", "nginx:1.26", "80", "1").await;
    let bobs = site.objects::<Deployment>("bob").get("web").await.unwrap();

    let p = preview(&mut alice, SHOP).await;
    assert_eq!(p["deployable"], false);
    assert!(
        p["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["path"] == "services.api"
                && f["reason"].as_str().unwrap().contains("already have")),
        "{p:#}"
    );
    let before = site.refusals.calls_made();
    let r = send_yaml(&mut alice, "/api/v1/compose", SHOP).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert_eq!(r.json()["field"], "services");
    assert!(r.message().contains("api"), "{}", r.body);
    assert!(r.message().contains("Nothing was created"), "{}", r.body);
    let calls = site.refusals.calls_since(before);
    assert!(writes(&calls).is_empty(), "{calls:?}");
    assert_eq!(deployments(&site, "alice").await, ["api"]);

    // Another user's repository of the same name is no clash, and is left alone.
    let mut carol = site.user("carol").await;
    let r = send_yaml(&mut carol, "/api/v1/compose", SHOP).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(deployments(&site, "carol").await, ["api", "db", "web"]);
    let after = site.objects::<Deployment>("bob").get("web").await.unwrap();
    assert_eq!(after.metadata.uid, bobs.metadata.uid);
    assert_eq!(after.metadata.labels, bobs.metadata.labels);
    assert_eq!(deployments(&site, "bob").await, ["web"]);
    assert_eq!(deployments(&site, "alice").await, ["api"]);
}

#[tokio::test]
async fn a_failure_midway_removes_what_the_group_created() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    alice.create_ok("keep", "nginx", "80", "1").await;
    // A Deployment named like the last service, made behind the site's back (not a repository,
    // so the site's view does not know it): the group's third create fails.
    let foreign: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "alice"},
        "spec": {
            "selector": {"matchLabels": {"run": "web"}},
            "template": {"metadata": {"labels": {"run": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}
        }
    }))
    .unwrap();
    site.objects::<Deployment>("alice")
        .create(&PostParams::default(), &foreign)
        .await
        .unwrap();
    let foreign_uid = site
        .objects::<Deployment>("alice")
        .get("web")
        .await
        .unwrap()
        .metadata
        .uid;

    let r = send_yaml(&mut alice, "/api/v1/compose", SHOP).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert_eq!(r.json()["field"], "services.web");
    let message = r.message();
    assert!(message.contains("creating web failed"), "{message}");
    assert!(message.contains("(db, api) were removed"), "{message}");

    // db and api were made and are gone again with their Services and routes; the repository
    // that was there and the foreign Deployment are untouched.
    common::eventually("the group's repositories to be gone", || async {
        let names = deployments(&site, "alice").await;
        (names == ["keep", "web"]).then_some(())
    })
    .await;
    for name in ["db", "api"] {
        assert!(!site.exists::<Service>("alice", name).await, "{name}");
        assert!(!site.exists::<Ingress>("alice", name).await, "{name}");
    }
    assert!(site.exists::<Service>("alice", "keep").await);
    let web = site
        .objects::<Deployment>("alice")
        .get("web")
        .await
        .unwrap();
    assert_eq!(web.metadata.uid, foreign_uid);
    assert!(!site.exists::<Service>("alice", "web").await);
}

#[tokio::test]
async fn a_dependency_that_never_gets_ready_fails_the_group_and_is_removed() {
    let mut config = common::config();
    config.write_timeout = Duration::from_secs(3);
    let site = site_with(config).await;
    let mut alice = site.user("alice").await;
    let text = SHOP.replace(
        "  db:\n    image: nginx:1.27",
        "  db:\n    image: example/does-not-exist:1",
    );
    let r = send_yaml(&mut alice, "/api/v1/compose", &text).await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT, "{}", r.body);
    let message = r.message();
    assert!(
        message.contains("api waits until db is healthy"),
        "{message}"
    );
    assert!(message.contains("(db) were removed"), "{message}");
    common::eventually("db to be gone", || async {
        deployments(&site, "alice").await.is_empty().then_some(())
    })
    .await;
    assert!(!site.exists::<Service>("alice", "db").await);
}

#[tokio::test]
async fn unsupported_keys_are_listed_and_refused_and_nothing_is_created() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    let text = "services:\n  web:\n    image: nginx\n    ports: [\"80:80\"]\n    build: .\n    volumes: [\"./html:/usr/share/nginx/html\"]\n    privileged: true\n    network_mode: host\n    cap_add: [NET_ADMIN]\n    container_name: front\n  db:\n    image: postgres\n    expose: [\"5432\"]\n    secrets: [password]\n    env_file: .env\nsecrets:\n  password:\n    file: ./password.txt\n";
    let p = preview(&mut alice, text).await;
    assert_eq!(p["deployable"], false);
    let findings = p["findings"].as_array().unwrap();
    let effect = |path: &str| {
        findings
            .iter()
            .find(|f| f["path"] == path)
            .unwrap_or_else(|| panic!("{path} not listed: {findings:#?}"))
            .clone()
    };
    for path in [
        "services.web.build",
        "services.web.volumes",
        "services.web.privileged",
        "services.web.network_mode",
        "services.web.cap_add",
        "services.db.secrets",
        "services.db.env_file",
        "secrets",
    ] {
        let f = effect(path);
        assert_eq!(f["effect"], "unsupported", "{f}");
        assert!(!f["reason"].as_str().unwrap().is_empty());
    }
    assert_eq!(effect("services.web.build")["line"], 5);
    assert_eq!(effect("services.web.container_name")["effect"], "ignored");

    let before = site.refusals.calls_made();
    let r = send_yaml(&mut alice, "/api/v1/compose", text).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let errors = r.json()["errors"].as_array().unwrap().clone();
    let fields: Vec<&str> = errors
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    for path in [
        "services.web.build",
        "services.web.privileged",
        "services.db.secrets",
    ] {
        assert!(fields.contains(&path), "{fields:?}");
    }
    assert!(
        !fields.contains(&"services.web.container_name"),
        "ignored keys do not block"
    );
    assert!(
        errors.iter().any(|e| e["message"]
            .as_str()
            .unwrap()
            .contains("building images is not supported")),
        "{errors:?}"
    );
    assert!(writes(&site.refusals.calls_since(before)).is_empty());
    assert!(deployments(&site, "alice").await.is_empty());

    // The page refuses the same way, keeping the file and listing the keys.
    let page = alice.post("/compose", &[("compose", text)]).await;
    assert_eq!(
        page.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("data-finding=\"services.web.privileged\"")
    );
    assert!(page.body.contains("privileged containers are not allowed"));
    assert!(
        page.body.contains("./html:/usr/share/nginx/html"),
        "the file is kept"
    );
    assert!(deployments(&site, "alice").await.is_empty());
}

#[tokio::test]
async fn malformed_files_are_refused_naming_the_problem() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    // Bad YAML: the line is named.
    let r = send_yaml(
        &mut alice,
        "/api/v1/compose",
        "services:\n  web:\n    image: nginx\n   ports: [80\n",
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert_eq!(r.json()["field"], "compose");
    assert!(r.message().contains("line"), "{}", r.body);
    for (text, words) in [
        ("", "empty"),
        ("services:\n", "no services"),
        ("name: shop\n", "no services"),
        ("just text\n", "YAML"),
        ("services:\n  web: nginx\n", "line 2"),
        ("services:\n  a: {image: x}\n  a: {image: y}\n", "YAML"),
    ] {
        let r = send_yaml(&mut alice, "/api/v1/compose/preview", text).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{text:?}: {}", r.body);
        assert!(r.message().contains(words), "{text:?}: {}", r.body);
    }
    // Valid YAML, invalid values: a bad service name, a bad image, a second port, a cycle, a
    // dependency that is not in the file, a variable that is not an identifier.
    let text = "services:\n  my_db:\n    image: postgres\n    expose: [5432]\n  a:\n    image: \"ngi nx\"\n    ports: [\"80\", \"443\"]\n    depends_on: [b]\n    environment: {\"1BAD\": x}\n  b:\n    image: nginx\n    expose: [80]\n    depends_on: [a, ghost]\n";
    let r = send_yaml(&mut alice, "/api/v1/compose", text).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let body = r.json();
    let messages: Vec<String> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{}: {}", e["field"], e["message"]))
        .collect();
    for words in [
        "\"services.my_db\"",
        "\"services.a.image\"",
        "\"services.a.ports\"",
        "cycle (a → b → a)",
        "\"services.b.depends_on.ghost\"",
        "\"services.a.environment.1BAD\"",
    ] {
        assert!(
            messages.iter().any(|m| m.contains(words)),
            "{words} not in {messages:#?}"
        );
    }
    // Bodies the API does not read.
    let r = alice
        .post_json("/api/v1/compose/preview", json!({"compose": 5}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(r.json()["field"], "compose");
    let r = alice
        .post_json("/api/v1/compose/preview", json!({"file": SHOP}))
        .await;
    assert_eq!(r.json()["field"], "file", "{}", r.body);
    let big = format!("# {}\n{SHOP}", "x".repeat(300 * 1024));
    let r = send_yaml(&mut alice, "/api/v1/compose/preview", &big).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.message().contains("256 KiB"), "{}", r.body);
    // The page keeps what was typed and says what is wrong.
    let page = alice
        .post("/compose/preview", &[("compose", "services:\n  web: [\n")])
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{}", page.body);
    assert!(page.body.contains("compose-error"), "{}", page.body);
    assert!(page.body.contains("services:\n  web: ["), "{}", page.body);
    assert!(deployments(&site, "alice").await.is_empty());
}

/// A file of `n` internal services, each depending on the one before, every tenth published.
fn many(n: usize) -> String {
    let mut text = String::from("name: many\nservices:\n");
    for i in 0..n {
        text.push_str(&format!("  svc{i}:\n    image: nginx:1.27\n"));
        if i % 10 == 0 {
            text.push_str("    ports: [\"80\"]\n");
        } else {
            text.push_str("    expose: [\"80\"]\n");
        }
        if i > 0 {
            text.push_str(&format!("    depends_on: [svc{}]\n", i - 1));
        }
    }
    text
}

#[tokio::test]
async fn fifty_services_are_refused_with_the_quota_named() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    alice.create_ok("keep", "nginx", "80", "2").await;
    let p = preview(&mut alice, &many(50)).await;
    assert_eq!(p["deployable"], false);
    let before = site.refusals.calls_made();
    let r = send_yaml(&mut alice, "/api/v1/compose", &many(50)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let message = r.message();
    assert!(message.contains("ResourceQuota kdeploy"), "{message}");
    assert!(message.contains("allows 20 pods"), "{message}");
    assert!(message.contains("run 2, so 18 more fit"), "{message}");
    assert!(message.contains("needs 50"), "{message}");
    assert!(writes(&site.refusals.calls_since(before)).is_empty());
    assert_eq!(deployments(&site, "alice").await, ["keep"]);
    // Eighteen fit.
    let r = send_yaml(&mut alice, "/api/v1/compose", &many(18)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

#[tokio::test]
async fn fifty_services_deploy_where_the_quota_allows_them() {
    let mut config = common::config();
    config.quota = Some(QuotaPolicy {
        pods: 60,
        requests_cpu: "4".into(),
        requests_memory: "6Gi".into(),
        limits_cpu: "30".into(),
        limits_memory: "16Gi".into(),
    });
    let site = site_with(config).await;
    let mut alice = site.user("alice").await;
    let r = send_yaml(&mut alice, "/api/v1/compose", &many(50)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let made = r.json()["repositories"].as_array().unwrap().clone();
    assert_eq!(made.len(), 50);
    assert_eq!(made[0], "svc0");
    assert_eq!(made[49], "svc49");
    let group = ListParams::default().labels(&format!("{LABEL_COMPOSE_PROJECT}=many"));
    assert_eq!(
        site.objects::<Deployment>("alice")
            .list(&group)
            .await
            .unwrap()
            .items
            .len(),
        50
    );
    assert_eq!(
        site.objects::<Service>("alice")
            .list(&group)
            .await
            .unwrap()
            .items
            .len(),
        50
    );
    assert_eq!(
        site.objects::<Ingress>("alice")
            .list(&group)
            .await
            .unwrap()
            .items
            .len(),
        5
    );
    alice
        .poll_json("fifty ready repositories", "/api/v1/repos", |j| {
            j["repositories"]
                .as_array()
                .is_some_and(|r| r.len() == 50 && r.iter().all(|r| r["state"] == "Ready"))
        })
        .await;
}

#[tokio::test]
async fn the_page_deploys_a_pasted_file() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    let page = alice.get("/compose").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("textarea"), "{}", page.body);
    assert!(page.body.contains("type=\"file\""));
    assert!(page.body.contains("formaction=\"/compose/preview\""));
    assert!(alice.get("/repos").await.body.contains("href=\"/compose\""));
    let openapi = alice.get("/api/v1/openapi.yaml").await.body;
    assert!(openapi.contains("/compose/preview:") && openapi.contains("ComposePreview"));
    let r = alice.post("/compose", &[("compose", SHOP)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location(), "/repos");
    assert_eq!(deployments(&site, "alice").await, ["api", "db", "web"]);
    // Deploying the same file again is refused whole, naming every repository that exists.
    let again = alice.post("/compose", &[("compose", SHOP)]).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    assert!(
        again
            .body
            .contains("You already have repositories named db, api, web"),
        "{}",
        again.body
    );
}
