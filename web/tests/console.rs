//! The API console (issue 7) through `app(state)` against the cluster simulator, whose ingress
//! answers every request with a JSON echo of what reached the pod.
// Test helpers: a failed step should panic with its message, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::http::{Method, StatusCode};
use common::{Browser, eventually, site};
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{Value, json};

/// A Ready repository whose endpoint answers through the load balancer.
async fn ready_repo(site: &common::Site, b: &mut Browser, name: &str) {
    site.deploy_ready(b, name).await;
}

/// Registers an endpoint through the API and returns its id.
async fn register(b: &mut Browser, repo: &str, endpoint: Value) -> String {
    let r = b
        .post_json(&format!("/api/v1/repos/{repo}/endpoints"), endpoint)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.json()["id"].as_str().unwrap().to_string()
}

/// The names of a repository's endpoints, in their order.
async fn endpoint_names(b: &mut Browser, repo: &str) -> Vec<String> {
    let list = b.get_json(&format!("/api/v1/repos/{repo}/endpoints")).await;
    let list = list.as_array().unwrap().iter();
    list.map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

/// Sends an ad-hoc `GET /` to a repository through the console's API.
async fn send_get(b: &mut Browser, repo: &str) -> common::Reply {
    let body = json!({"method": "GET", "path": "/"});
    b.post_json(&format!("/api/v1/repos/{repo}/send"), body)
        .await
}

/// How many calls the user's console history holds.
async fn history_len(b: &mut Browser) -> usize {
    let h = b.get_json("/api/v1/console/history").await;
    h.as_array().unwrap().len()
}

#[tokio::test]
async fn registered_endpoint_is_sent_through_the_ingress_and_recorded() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    ready_repo(&site, &mut alice, "hello").await;

    let endpoint = json!({
        "name": "Create user",
        "method": "post",
        "path": "/users/{team}",
        "query": [{"name": "dry run", "value": "a&b"}],
        "headers": [{"name": "X-Trace", "value": "t-1"}],
        "body_kind": "json",
        "body": {"name": "Ana", "age": 3},
        "description": "Adds a user",
    });
    let id = register(&mut alice, "hello", endpoint).await;

    // Stored next to the repository, labelled and owned by its Deployment.
    let cm = site
        .objects::<ConfigMap>("alice")
        .get("hello-kdeploy-endpoints")
        .await
        .unwrap();
    let owner = &cm.metadata.owner_references.unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Deployment", "hello")
    );
    assert_eq!(
        cm.metadata.labels.unwrap()["app.kubernetes.io/managed-by"],
        "kdeploy"
    );

    // A missing path parameter is refused with its field.
    let r = alice
        .api(
            Method::POST,
            &format!("/api/v1/repos/hello/endpoints/{id}/send"),
            None,
        )
        .await;
    r.assert_refused("params");

    let r = alice
        .post_json(
            &format!("/api/v1/repos/hello/endpoints/{id}/send"),
            json!({"params": [{"name": "team", "value": "blue team"}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let sent = r.json();
    let outcome = &sent["outcome"];
    assert_eq!(outcome["status"], 200, "{sent}");
    assert_eq!(outcome["body"]["kind"], "json");
    let echo: Value = serde_json::from_str(outcome["body"]["text"].as_str().unwrap()).unwrap();
    // The whole trip: the repository's prefix was stripped by the ingress, the query and the
    // JSON body arrived as sent, with the public Host.
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/users/blue%20team");
    assert_eq!(echo["query"], "dry%20run=a%26b");
    assert_eq!(echo["namespace"], "alice");
    assert_eq!(echo["service"], "hello");
    assert_eq!(echo["headers"]["x-trace"], "t-1");
    assert_eq!(echo["headers"]["host"], common::HOST);
    assert_eq!(echo["headers"]["content-type"], "application/json");
    let body: Value = serde_json::from_str(echo["body"].as_str().unwrap()).unwrap();
    assert_eq!(body, json!({"name": "Ana", "age": 3}));
    assert!(outcome["elapsed_ms"].is_u64());
    assert_eq!(
        outcome["url"],
        "http://lb.test/alice/hello/users/blue%20team?dry%20run=a%26b"
    );
    let curl = sent["curl"].as_str().unwrap();
    assert!(
        curl.starts_with(
            "curl -i -X POST 'http://lb.test/alice/hello/users/blue%20team?dry%20run=a%26b'"
        ),
        "{curl}"
    );
    assert!(curl.contains("--data-raw"), "{curl}");

    // The call is in the history and can be sent again.
    let h = alice.get_json("/api/v1/console/history").await;
    assert_eq!(h.as_array().unwrap().len(), 1);
    assert_eq!(h[0]["status"], 200);
    assert_eq!(h[0]["endpoint"], id.as_str());
    let r = alice
        .api(Method::POST, "/api/v1/console/history/0/rerun", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let echo: Value =
        serde_json::from_str(r.json()["outcome"]["body"]["text"].as_str().unwrap()).unwrap();
    assert_eq!(echo["query"], "dry%20run=a%26b");
    assert_eq!(history_len(&mut alice).await, 2);

    // Deleting the repository takes its endpoints with it (owner reference).
    let r = alice.api(Method::DELETE, "/api/v1/repos/hello", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    eventually("the endpoints ConfigMap to be collected", || async {
        let gone = !site
            .exists::<ConfigMap>("alice", "hello-kdeploy-endpoints")
            .await;
        gone.then_some(())
    })
    .await;
}

#[tokio::test]
async fn edit_duplicate_reorder_delete_and_import() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    ready_repo(&site, &mut alice, "hello").await;
    let base = "/api/v1/repos/hello/endpoints";
    let a = register(
        &mut alice,
        "hello",
        json!({"name": "A", "method": "GET", "path": "/a"}),
    )
    .await;
    let b = register(
        &mut alice,
        "hello",
        json!({"name": "B", "method": "GET", "path": "/b"}),
    )
    .await;

    let r = alice
        .call(
            Method::PUT,
            &format!("{base}/{a}"),
            json!({"name": "A2", "method": "DELETE", "path": "/a/{id}", "description": "gone"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.json()["method"], "DELETE");
    let copy = alice
        .api(Method::POST, &format!("{base}/{a}/duplicate"), None)
        .await
        .json();
    assert_eq!(copy["name"], "A2 (copy)");
    let c = copy["id"].as_str().unwrap().to_string();
    assert_eq!(
        endpoint_names(&mut alice, "hello").await,
        ["A2", "A2 (copy)", "B"]
    );

    let r = alice
        .call(
            Method::PUT,
            "/api/v1/repos/hello/endpoint-order",
            json!({"ids": [b, c, a]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let r = alice
        .call(
            Method::PUT,
            "/api/v1/repos/hello/endpoint-order",
            json!({"ids": [b]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        alice
            .api(Method::DELETE, &format!("{base}/{c}"), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        alice
            .api(Method::DELETE, &format!("{base}/{c}"), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(endpoint_names(&mut alice, "hello").await, ["B", "A2"]);

    let doc = json!({
        "openapi": "3.0.0",
        "paths": {
            "/b": {"get": {"operationId": "again"}},
            "/items": {"post": {"operationId": "addItem", "requestBody": {"content": {"application/json": {"example": {"x": 1}}}}}},
            "/../escape": {"get": {}}
        }
    });
    let r = alice
        .post_json(
            "/api/v1/repos/hello/endpoint-import",
            json!({"document": doc.to_string()}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let report = r.json();
    assert_eq!(report["added"], 1);
    assert_eq!(report["already_there"], 1);
    assert_eq!(report["skipped"].as_array().unwrap().len(), 1);
    let r = alice
        .post_json(
            "/api/v1/repos/hello/endpoint-import",
            json!({"document": "swagger: '2.0'"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.message().contains("OpenAPI 3"));
}

#[tokio::test]
async fn the_console_cannot_leave_the_users_own_routes() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    ready_repo(&site, &mut alice, "hello").await;
    let mut bob = site.user("bob").await;
    ready_repo(&site, &mut bob, "secret").await;
    let send = "/api/v1/repos/hello/send";
    for (field, body) in [
        (
            "path",
            json!({"method": "GET", "path": "/../../bob/secret/"}),
        ),
        (
            "path",
            json!({"method": "GET", "path": "/%2e%2e/%2e%2e/bob/secret/"}),
        ),
        (
            "path",
            json!({"method": "GET", "path": "http://evil.example/"}),
        ),
        ("path", json!({"method": "GET", "path": "//evil.example/"})),
        (
            "headers",
            json!({"method": "GET", "path": "/", "headers": [{"name": "Host", "value": "evil"}]}),
        ),
        (
            "headers",
            json!({"method": "GET", "path": "/", "headers": [{"name": "X-A", "value": "a\r\nHost: evil"}]}),
        ),
        ("method", json!({"method": "CONNECT", "path": "/"})),
    ] {
        let r = alice.post_json(send, body.clone()).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            r.body
        );
        assert_eq!(r.json()["field"], field, "{body}");
    }
    // Another user's repository is not found for alice, through any console route.
    let r = send_get(&mut alice, "secret").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = alice
        .api(Method::GET, "/api/v1/repos/secret/endpoints", None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Nothing refused above reached the history.
    assert_eq!(history_len(&mut alice).await, 0);
}

#[tokio::test]
async fn limits_are_shown_as_limits() {
    let mut config = common::config();
    config.console.max_calls = 2;
    config.console.max_response_bytes = 100;
    let site = common::site_with(config).await;
    let mut alice = site.user("alice").await;
    ready_repo(&site, &mut alice, "hello").await;
    let send = "/api/v1/repos/hello/send";
    let r = alice
        .post_json(
            send,
            json!({"method": "GET", "path": "/", "query": [{"name": "q", "value": "x"}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let o = &r.json()["outcome"];
    // The echo is longer than 100 bytes: cut at the cap and said so.
    assert_eq!(o["truncated"], true);
    assert_eq!(o["size"], 100);
    assert_eq!(send_get(&mut alice, "hello").await.status, StatusCode::OK);
    let r = send_get(&mut alice, "hello").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers.get("retry-after").is_some());
    assert!(r.message().contains("at most 2 requests"));
    // Other users have their own allowance.
    let mut bob = site.user("bob").await;
    ready_repo(&site, &mut bob, "web").await;
    let r = send_get(&mut bob, "web").await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn an_unreachable_ingress_is_reported_and_recorded() {
    let mut config = common::config();
    config.console.timeout = std::time::Duration::from_secs(2);
    let mut site = common::site_with(config.clone()).await;
    // Point the console at a closed port on 127.0.0.1.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    config.console.upstream = format!("http://{addr}");
    site.state.sender =
        web::console::send::Sender::new(config.console.clone(), config.public_url.clone());
    let mut alice = site.user("alice").await;
    ready_repo(&site, &mut alice, "hello").await;
    let r = send_get(&mut alice, "hello").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let j = r.json();
    assert!(j["outcome"].is_null());
    assert!(
        j["error"]
            .as_str()
            .unwrap()
            .contains("could not be reached"),
        "{j}"
    );
    let h = alice.get_json("/api/v1/console/history").await;
    assert!(h[0]["status"].is_null());
}

#[tokio::test]
async fn the_pages_register_send_and_rerun() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    ready_repo(&site, &mut alice, "hello").await;
    let page = alice.get("/repos/hello").await;
    assert!(page.body.contains("API endpoints and request console"));
    assert!(page.body.contains("No endpoints yet"));

    // A bad path comes back next to the field, with everything typed kept.
    let fields = [
        ("name", "Search"),
        ("method", "POST"),
        ("path", "/../bob/"),
        ("query", "q=first"),
        ("headers", ""),
        ("body_kind", "json"),
        ("body", r#"{"term": "cats"}"#),
        ("description", "Finds things"),
    ];
    let r = alice.post("/repos/hello/endpoints", &fields).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains(r#"id="path-error""#), "{}", r.body);
    assert!(r.body.contains("Finds things"));
    assert!(r.body.contains("{&quot;term&quot;: &quot;cats&quot;}"));

    let mut fields = fields;
    fields[2] = ("path", "/search");
    let r = alice.submit("/repos/hello/endpoints", &fields).await;
    let console = r.location().to_string();
    let page = alice.get(&console).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Send request"));
    assert!(page.body.contains("requests per 60 s per user"));

    let r = alice
        .post(
            &format!("{console}/send"),
            &[
                ("query", "q=second\nlimit=5"),
                ("headers", "X-Trace: page"),
                ("body_kind", "json"),
                ("body", r#"{"term": "dogs"}"#),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // The echo, pretty-printed, shows what reached the pod.
    assert!(r.body.contains("200 OK"), "{}", r.body);
    assert!(
        r.body
            .contains("&quot;query&quot;: &quot;q=second&amp;limit=5&quot;"),
        "{}",
        r.body
    );
    assert!(
        r.body.contains(r#"\&quot;term\&quot;: \&quot;dogs\&quot;"#),
        "{}",
        r.body
    );
    assert!(r.body.contains("curl -i -X POST"));

    // A body that is not JSON is refused next to the field, nothing sent.
    let r = alice
        .post(
            &format!("{console}/send"),
            &[("body_kind", "json"), ("body", "{oops")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains(r#"id="body-error""#));

    let r = alice.post("/console/history/0/rerun", &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("q=second&amp;limit=5"));
    assert_eq!(history_len(&mut alice).await, 2);

    // Duplicate, move and delete from the detail page.
    let id = console.rsplit('/').next().unwrap().to_string();
    alice.submit(&format!("{console}/duplicate"), &[]).await;
    alice.submit(&format!("{console}/down"), &[]).await;
    let list = alice.get_json("/api/v1/repos/hello/endpoints").await;
    assert_eq!(list[1]["id"], id.as_str());
    assert_eq!(list[0]["name"], "Search (copy)");
    alice.submit(&format!("{console}/delete"), &[]).await;
    let list = alice.get_json("/api/v1/repos/hello/endpoints").await;
    assert_eq!(list.as_array().unwrap().len(), 1);

    // A bad import is shown next to its field on the detail page.
    let r = alice
        .post(
            "/repos/hello/endpoint-import",
            &[("document", "not: [openapi"), ("fetch", "")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains(r#"id="document-error""#), "{}", r.body);
    let r = alice
        .submit(
            "/repos/hello/endpoint-import",
            &[
                (
                    "document",
                    r#"{"openapi":"3.0.0","paths":{"/ping":{"get":{}}}}"#,
                ),
                ("fetch", ""),
            ],
        )
        .await;
    let page = alice.get(r.location()).await;
    assert!(page.body.contains("1 endpoints added"), "{}", page.body);
    assert!(page.body.contains("GET /ping"));
    // Fetching from the service goes through the route: the echo is JSON but not OpenAPI.
    let r = alice
        .post(
            "/repos/hello/endpoint-import",
            &[("document", ""), ("fetch", "/openapi.json")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains(r#"id="fetch-error""#), "{}", r.body);
    assert!(r.body.contains("OpenAPI 3"));
}

#[tokio::test]
async fn the_stored_list_stays_within_what_a_configmap_holds() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    ready_repo(&site, &mut alice, "hello").await;
    let body = "x".repeat(60 * 1024);
    let mut refused = None;
    for i in 0..20 {
        let r = alice.post_json("/api/v1/repos/hello/endpoints", json!({"name": format!("big {i}"), "method": "POST", "path": "/", "body_kind": "raw", "body": body}))
            .await;
        if r.status != StatusCode::CREATED {
            refused = Some((i, r));
            break;
        }
    }
    let (i, r) = refused.expect("the size limit is reached");
    assert_eq!(i, 14, "14 bodies of 60 KiB fit in 900 KiB, a 15th does not");
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.message().contains("KiB"));
    let list = alice.get_json("/api/v1/repos/hello/endpoints").await;
    assert_eq!(list.as_array().unwrap().len(), 14);
}

#[tokio::test]
async fn undecodable_stored_endpoints_are_shown_as_an_error_and_never_overwritten() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    alice.create_ok("hello", "nginx", "80", "1").await;
    register(
        &mut alice,
        "hello",
        json!({"name": "Root", "method": "GET", "path": "/"}),
    )
    .await;
    let configmaps = site.objects::<ConfigMap>("alice");
    let mut cm = configmaps.get("hello-kdeploy-endpoints").await.unwrap();
    let garbage = "[{\"id\": \"kept\", \"name\": truncated";
    cm.data
        .get_or_insert_with(Default::default)
        .insert("endpoints.json".into(), garbage.into());
    configmaps
        .replace("hello-kdeploy-endpoints", &Default::default(), &cm)
        .await
        .unwrap();

    let page = alice.get("/repos/hello").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("data-error=\"endpoints\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("cannot be read"), "{}", page.body);
    let r = alice
        .api(Method::GET, "/api/v1/repos/hello/endpoints", None)
        .await;
    assert!(r.message().contains("cannot be read"));

    // Every kind of write is refused, by the API and by the pages.
    let r = alice
        .post_json(
            "/api/v1/repos/hello/endpoints",
            json!({"name": "New", "method": "GET", "path": "/new"}),
        )
        .await;
    assert!(r.status.is_server_error(), "{}", r.body);
    assert!(r.message().contains("nothing was changed"));
    let r = alice
        .post(
            "/repos/hello/endpoints",
            &[("name", "New"), ("method", "GET"), ("path", "/new")],
        )
        .await;
    assert!(r.status.is_server_error(), "{}", r.body);
    assert!(r.body.contains("cannot be read"), "{}", r.body);
    let stored = configmaps.get("hello-kdeploy-endpoints").await.unwrap();
    assert_eq!(stored.data.unwrap()["endpoints.json"], garbage);
}
