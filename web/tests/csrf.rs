//! The CSRF check, driven by the site's one routes table: every mutating route refuses a request
//! without the token or with another visitor's, so a route added to the table is checked too; the
//! one exemption (signing in through the API with a JSON body) is checked for what makes it safe.
// Test helpers: a failed step should panic with its message, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{Browser, PASSWORD, Reply, site};
use k8s_openapi::api::apps::v1::Deployment;
use serde_json::json;
use web::app::{CSRF_EXEMPT, SESSION_API, Verb, routes};

/// What the site answers a request whose token is missing or wrong.
const REFUSAL: &str = "did not come from this site";

/// A route's path with its parameters filled in: alice's repository `hello`, its endpoint `id`,
/// the `delete` action, the first history entry.
fn concrete(path: &str, id: &str) -> String {
    let filled = path
        .replace("{name}", "hello")
        .replace("{id}", id)
        .replace("{action}", "delete")
        .replace("{index}", "0");
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
    for exempt in CSRF_EXEMPT {
        assert!(
            mutating.contains(&exempt),
            "{exempt:?} is exempt but no mutating route"
        );
    }
    let checked: Vec<(Verb, &str)> = mutating
        .into_iter()
        .filter(|row| !CSRF_EXEMPT.contains(row))
        .collect();
    // Forms and API calls of accounts, repositories and the console, at the time of writing.
    assert!(checked.len() >= 30, "{checked:?}");
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
        [(Verb::Post, SESSION_API)],
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
