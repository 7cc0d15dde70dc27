//! The first administrator the site bootstraps, and the account page where users change their password.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use common::site;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use serde_json::json;
use web::accounts::Accounts;

const SECRET: &str = "kdeploy-initial-admin";

fn secrets(site: &common::Site) -> Api<Secret> {
    Api::namespaced(site.admin.clone(), "kdeploy-system")
}

async fn stored_password(site: &common::Site) -> String {
    let secret = secrets(site).get(SECRET).await.unwrap();
    let data = secret.data.unwrap();
    assert_eq!(data["username"].0, b"operator");
    String::from_utf8(data["password"].0.clone()).unwrap()
}

#[tokio::test]
async fn replicas_starting_together_make_one_administrator_with_one_password() {
    let site = site().await;
    let config = Arc::new(common::config());
    let replicas: Vec<_> = (0..6)
        .map(|_| {
            let accounts = Accounts::new(site.client.clone(), config.clone());
            tokio::spawn(async move { accounts.ensure_initial_admin().await })
        })
        .collect();
    for replica in replicas {
        replica.await.unwrap().unwrap();
    }
    // The cluster holds exactly one account (observed with a plain list, not through the site).
    let stored = secrets(&site)
        .list(&kube::api::ListParams::default().labels("app.kubernetes.io/component=user"))
        .await
        .unwrap()
        .items;
    assert_eq!(stored.len(), 1, "{stored:?}");
    // The site's view learns of other replicas' writes from its watch, a moment later.
    let users = common::eventually("the site's view to show the administrator", || async {
        let users = site.state.accounts.list_users().await.unwrap();
        (!users.is_empty()).then_some(users)
    })
    .await;
    let admins: Vec<_> = users.iter().filter(|u| u.admin).collect();
    assert_eq!((users.len(), admins.len()), (1, 1), "{users:?}");
    assert_eq!(admins[0].name, "operator");
    let secret = secrets(&site).get(SECRET).await.unwrap();
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));
    let labels = secret.metadata.labels.unwrap();
    assert_eq!(labels["app.kubernetes.io/part-of"], "kdeploy");
    assert_eq!(labels["app.kubernetes.io/managed-by"], "kdeploy");
    let password = stored_password(&site).await;
    assert_eq!(password.len(), 20);
    let mut browser = site.browser();
    let r = browser.sign_in("operator", &password).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);

    // Once an administrator exists and the Secret is gone, nothing is recreated.
    secrets(&site)
        .delete(SECRET, &Default::default())
        .await
        .unwrap();
    site.state.accounts.ensure_initial_admin().await.unwrap();
    assert!(secrets(&site).get_opt(SECRET).await.unwrap().is_none());
}

#[tokio::test]
async fn a_crashed_winner_leaves_the_secret_and_the_next_replica_creates_the_user_from_it() {
    let site = site().await;
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": SECRET, "namespace": "kdeploy-system"},
        "type": "Opaque",
        "stringData": {},
        "data": {"username": "b3BlcmF0b3I=", "password": "c2F2ZWQgYmVmb3JlIGNyYXNo"}
    }))
    .unwrap();
    secrets(&site)
        .create(&Default::default(), &secret)
        .await
        .unwrap();
    site.state.accounts.ensure_initial_admin().await.unwrap();
    let mut browser = site.browser();
    let r = browser.sign_in("operator", "saved before crash").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
}

#[tokio::test]
async fn the_administrator_is_told_to_change_the_password_and_delete_the_secret() {
    let site = site().await;
    site.state.accounts.ensure_initial_admin().await.unwrap();
    let password = stored_password(&site).await;
    let mut operator = site.browser();
    operator.sign_in("operator", &password).await;
    let page = operator.get("/repos").await;
    assert!(
        page.body.contains("data-notice=\"initial-admin\""),
        "{}",
        page.body
    );
    assert!(
        page.body
            .contains("kubectl -n kdeploy-system delete secret kdeploy-initial-admin")
    );
    // A developer never sees it.
    let mut alice = site.user("alice").await;
    assert!(!alice.get("/repos").await.body.contains("initial-admin"));

    // Wrong current password and a too short new one: both inline, nothing changed.
    let r = operator
        .post(
            "/account/password",
            &[("current", "nope"), ("new", "short")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body.contains("id=\"current-error\""), "{}", r.body);
    assert!(r.body.contains("id=\"new-error\""), "{}", r.body);
    let new_password = "a much better password";
    let r = operator
        .submit(
            "/account/password",
            &[("current", password.as_str()), ("new", new_password)],
        )
        .await;
    assert_eq!(r.location(), "/account?done=password");

    secrets(&site)
        .delete(SECRET, &Default::default())
        .await
        .unwrap();
    let page = operator.get("/repos").await;
    assert!(!page.body.contains("initial-admin"), "{}", page.body);
    let mut again = site.browser();
    assert_eq!(
        again.sign_in("operator", &password).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        again.sign_in("operator", new_password).await.status,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn the_password_changes_through_the_api_with_typed_errors() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    let path = "/api/v1/account/password";
    let r = alice
        .call(
            Method::PUT,
            path,
            json!({"current": common::PASSWORD, "new": "x", "extra": 1}),
        )
        .await;
    r.assert_refused("extra");
    let r = alice
        .call(
            Method::PUT,
            path,
            json!({"current": "wrong", "new": "long enough now"}),
        )
        .await;
    r.assert_refused("current");
    let r = alice
        .call(
            Method::PUT,
            path,
            json!({"current": common::PASSWORD, "new": "long enough now"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let mut again = site.browser();
    assert_eq!(
        again.sign_in("alice", "long enough now").await.status,
        StatusCode::SEE_OTHER
    );
}
