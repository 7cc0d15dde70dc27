//! The CSRF check, driven by the site's one routes table: every mutating route refuses a request
//! without the token or with another visitor's, so a route added to the table is checked too; the
//! exemptions (signing in through the API with a JSON body; a registry's webhook, whose
//! credential is the token in its URL) are checked for what makes them safe.
// Test helpers: a failed step should panic with its message, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{Browser, PASSWORD, Reply, site};
use k8s_openapi::api::apps::v1::Deployment;
use serde_json::json;
use web::app::{CSRF_EXEMPT, Exemption, SESSION_API, Verb, routes};
use web::repositories::webhook::HOOK_ROUTE;

/// What the site answers a request whose token is missing or wrong.
const REFUSAL: &str = "did not come from this site";

/// A route's path with its parameters filled in: alice's repository `hello`, its endpoint `id`,
/// the `delete` action, the first history entry.
fn concrete(path: &str, id: &str) -> String {
    let filled = path
        .replace("{name}", "hello")
        .replace("{id}", id)
        .replace("{action}", "delete")
        .replace("{index}", "0")
        .replace("{server}", "ghcr.io");
    assert!(
        !filled.contains('{'),
        "{path}: a new path parameter; give it a value here"
    );
    filled
}

/// A request of that route with the browser's cookies, carrying `token` where the route reads it:
/// the form's `csrf` field, or the API's `X-CSRF-Token` header.
async fn send(b: &mut Browser, verb: Verb, path: &str, token: Option<&str>) -> Reply {
    let request = Request::builder().method(verb.method()).uri(path);
    let request = if path.starts_with("/api/") {
        let request = request.header(header::CONTENT_TYPE, "application/json");
        let request = match token {
            Some(t) => request.header("x-csrf-token", t),
            None => request,
        };
        request.body(Body::from("{}")).unwrap()
    } else {
        let form = token.map(|t| format!("csrf={t}")).unwrap_or_default();
        request
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(form))
            .unwrap()
    };
    b.send(request).await
}

fn refused_for_csrf(r: &Reply) -> bool {
    r.status == StatusCode::FORBIDDEN && r.body.contains(REFUSAL)
}

#[tokio::test]
async fn every_mutating_route_refuses_a_missing_or_a_wrong_token() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    alice.create_ok("hello", "nginx", "80", "1").await;
    let r = alice
        .post_json(
            "/api/v1/repos/hello/endpoints",
            json!({"name": "Items", "method": "GET", "path": "/items"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.json()["id"].as_str().unwrap().to_string();
    // A real token, signed by this site, but another visitor's.
    let mut stranger = site.browser();
    stranger.get("/login").await;
    let foreign = stranger.csrf.clone().unwrap();
    assert_ne!(Some(&foreign), alice.csrf.as_ref());

    let table = routes();
    let mutating: Vec<(Verb, &str)> = table
        .iter()
        .filter(|r| r.verb.is_mutating())
        .map(|r| (r.verb, r.path))
        .collect();
    let exempt: Vec<(Verb, &str)> = CSRF_EXEMPT.iter().map(|(v, p, _)| (*v, *p)).collect();
    for row in &exempt {
        assert!(
            mutating.contains(row),
            "{row:?} is exempt but no mutating route"
        );
    }
    let checked: Vec<(Verb, &str)> = mutating
        .into_iter()
        .filter(|row| !exempt.contains(row))
        .collect();
    // Forms and API calls of accounts, repositories and the console, at the time of writing.
    assert!(checked.len() >= 30, "{checked:?}");
    // The compose file's preview and deploy, as a form and through the API (issue 16 item 2).
    for path in [
        "/compose",
        "/compose/preview",
        "/api/v1/compose",
        "/api/v1/compose/preview",
    ] {
        assert!(
            checked.contains(&(Verb::Post, path)),
            "{path} is not checked"
        );
    }
    for &(verb, path) in &checked {
        let uri = concrete(path, &id);
        for (what, token) in [("no", None), ("another visitor's", Some(foreign.as_str()))] {
            let r = send(&mut alice, verb, &uri, token).await;
            assert!(
                refused_for_csrf(&r),
                "{verb:?} {uri} with {what} token: {} {}",
                r.status,
                r.body
            );
        }
    }

    // Nothing above happened: alice is signed in with the same password, her repository and its
    // endpoint are there.
    assert_eq!(alice.get("/repos").await.status, StatusCode::OK);
    assert!(site.exists::<Deployment>("alice", "hello").await);
    let endpoints = alice.get_json("/api/v1/repos/hello/endpoints").await;
    assert_eq!(endpoints.as_array().unwrap().len(), 1, "{endpoints}");
    assert_eq!(
        site.browser().sign_in("alice", PASSWORD).await.status,
        StatusCode::SEE_OTHER
    );

    // With the right token each of them gets past the check (whatever the handler then says), so
    // the refusals above were the token's doing.
    for &(verb, path) in &checked {
        let uri = concrete(path, &id);
        let token = alice.csrf.clone();
        let r = send(&mut alice, verb, &uri, token.as_deref()).await;
        assert!(
            !refused_for_csrf(&r),
            "{verb:?} {uri} with the right token: {} {}",
            r.status,
            r.body
        );
    }
}

/// Signing in through the API needs no token (there is no session yet), but only with a JSON
/// body, which another site's page cannot send without a CORS preflight: the same credentials as
/// a form's text/plain or urlencoded body are refused, so no page can sign a visitor in as its
/// own user (login CSRF).
#[tokio::test]
async fn signing_in_through_the_api_is_exempt_only_for_json() {
    assert_eq!(
        CSRF_EXEMPT,
        [
            (Verb::Post, SESSION_API, Exemption::JsonBody),
            (Verb::Post, HOOK_ROUTE, Exemption::OwnCredential),
        ],
        "exemptions are explained in web::app"
    );
    let site = site().await;
    site.account("alice", false).await;
    let credentials = json!({"username": "alice", "password": PASSWORD}).to_string();
    for content_type in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let mut visitor = site.browser();
        let r = visitor
            .send(
                Request::post(SESSION_API)
                    .header(header::CONTENT_TYPE, content_type)
                    .body(Body::from(credentials.clone()))
                    .unwrap(),
            )
            .await;
        assert!(
            refused_for_csrf(&r),
            "{content_type}: {} {}",
            r.status,
            r.body
        );
        assert!(
            !visitor.cookies.contains_key("kdeploy_session"),
            "{content_type}: signed in"
        );
    }
    // As JSON, without any token or cookie: the handler decides.
    let mut api = site.browser();
    let json = |body: String| {
        Request::post(SESSION_API)
            .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
            .body(Body::from(body))
            .unwrap()
    };
    let wrong = json!({"username": "alice", "password": "not the password"}).to_string();
    assert_eq!(api.send(json(wrong)).await.status, StatusCode::UNAUTHORIZED);
    let r = api.send(json(credentials)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(api.cookies.contains_key("kdeploy_session"));
    // Signing out is a change like any other: it needs the token.
    let r = api
        .send(Request::delete(SESSION_API).body(Body::empty()).unwrap())
        .await;
    assert!(refused_for_csrf(&r), "{} {}", r.status, r.body);
}

/// A registry's webhook needs no CSRF token: it reads no cookie and acts for no session, its
/// credential is the secret token in its URL. So a page of another site that makes a signed-in
/// visitor's browser POST to it (with the visitor's cookies, as a form) gets the same 401 as
/// anyone without the token, and changes nothing; the answer hands out no CSRF cookie either.
#[tokio::test]
async fn the_webhook_is_exempt_because_its_token_is_its_credential() {
    let reasons: Vec<Exemption> = CSRF_EXEMPT
        .iter()
        .filter(|(verb, path, _)| *verb == Verb::Post && *path == HOOK_ROUTE)
        .map(|(_, _, why)| *why)
        .collect();
    assert_eq!(reasons, [Exemption::OwnCredential]);
    let site = site().await;
    let mut alice = site.user("alice").await;
    alice.create_ok("hello", "nginx", "80", "1").await;
    let r = alice
        .api(
            axum::http::Method::POST,
            "/api/v1/repos/hello/webhook",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let deployments = site.objects::<Deployment>("alice");
    let generation = deployments.get("hello").await.unwrap().metadata.generation;
    let form = "push_data%5Btag%5D=latest";
    for content_type in [
        "application/x-www-form-urlencoded",
        "text/plain",
        "application/json",
    ] {
        let r = alice
            .send(
                Request::post("/hooks/v1/alice/hello")
                    .header(header::CONTENT_TYPE, content_type)
                    .body(Body::from(form))
                    .unwrap(),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "{content_type}: {}",
            r.body
        );
        assert!(!refused_for_csrf(&r));
        assert!(
            r.headers.get(header::SET_COOKIE).is_none(),
            "{content_type}"
        );
    }
    assert_eq!(
        deployments.get("hello").await.unwrap().metadata.generation,
        generation
    );
}
