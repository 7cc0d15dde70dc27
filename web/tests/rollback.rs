//! Revisions and rollback of a repository (issue 16 item 6): every change of the pods is a
//! ReplicaSet the Deployment controller numbers; the site lists them with who made them and what
//! they changed, and rolls back to one through the same rolling update. The cluster is observed
//! with the administrator's client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::http::{Method, StatusCode};
use common::{Browser, Site, eventually, site};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::api::ListParams;
use serde_json::{Value, json};

const REVISION: &str = "deployment.kubernetes.io/revision";

async fn replica_sets(site: &Site, ns: &str, name: &str) -> Vec<ReplicaSet> {
    site.objects::<ReplicaSet>(ns)
        .list(&ListParams::default().labels(&format!("app={name}")))
        .await
        .unwrap()
        .items
}

fn revision_of(rs: &ReplicaSet) -> i64 {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn image_of(rs: &ReplicaSet) -> String {
    rs.spec
        .clone()
        .unwrap()
        .template
        .unwrap()
        .spec
        .unwrap()
        .containers[0]
        .image
        .clone()
        .unwrap()
}

async fn deployment_image(site: &Site, ns: &str, name: &str) -> String {
    let d: Deployment = site.objects::<Deployment>(ns).get(name).await.unwrap();
    d.spec.unwrap().template.spec.unwrap().containers[0]
        .image
        .clone()
        .unwrap()
}

/// Waits until the repository's rollout is over: Ready, every pod of the newest template.
async fn rolled_out(b: &Browser, name: &str) -> Value {
    b.poll_json(
        "the rollout to complete",
        &format!("/api/v1/repos/{name}"),
        |j| {
            j["state"] == "Ready"
                && j["replicas"]["updated"] == j["replicas"]["desired"]
                && j["replicas"]["ready"] == j["replicas"]["desired"]
                && j["replicas"]["total"] == j["replicas"]["desired"]
        },
    )
    .await
}

/// Waits until the API lists `count` revisions and returns them.
async fn revisions(b: &Browser, name: &str, count: usize) -> Vec<Value> {
    b.poll_json(
        &format!("{count} revisions to be listed"),
        &format!("/api/v1/repos/{name}/revisions"),
        |j| j.as_array().is_some_and(|a| a.len() == count),
    )
    .await
    .as_array()
    .unwrap()
    .clone()
}

/// Deploys nginx:1.25, changes it to nginx:1.27 and waits for both revisions.
async fn two_revisions(site: &Site, b: &mut Browser) {
    let r = b
        .post_json(
            "/api/v1/repos",
            json!({"name": "web", "image": "nginx:1.25", "port": 80, "replicas": 1}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    rolled_out(b, "web").await;
    let r = b
        .call(
            Method::PATCH,
            "/api/v1/repos/web",
            json!({"image": "nginx:1.27"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // The Deployment controller made a second ReplicaSet for the new template.
    let sets = eventually("a second ReplicaSet", || async {
        let sets = replica_sets(site, "alice", "web").await;
        (sets.len() == 2).then_some(sets)
    })
    .await;
    let newest = sets.iter().max_by_key(|rs| revision_of(rs)).unwrap();
    assert_eq!(revision_of(newest), 2);
    assert_eq!(image_of(newest), "nginx:1.27");
    rolled_out(b, "web").await;
}

#[tokio::test]
async fn revisions_list_who_changed_what_newest_first_and_rollback_to_revision_1_makes_revision_3()
{
    let site = site().await;
    let mut alice = site.user("alice").await;
    two_revisions(&site, &mut alice).await;

    let listed = revisions(&alice, "web", 2).await;
    assert_eq!(listed[0]["revision"], 2, "{listed:?}");
    assert_eq!(listed[0]["image"], "nginx:1.27");
    assert_eq!(listed[0]["current"], true);
    assert_eq!(listed[0]["deployed_by"], "alice");
    assert_eq!(listed[0]["change"], "image nginx:1.25 → nginx:1.27");
    assert!(listed[0]["created"].as_str().is_some(), "{listed:?}");
    assert_eq!(listed[1]["revision"], 1);
    assert_eq!(listed[1]["image"], "nginx:1.25");
    assert_eq!(listed[1]["current"], false);
    assert_eq!(listed[1]["deployed_by"], "alice");
    assert!(
        listed[1]["change"].as_str().unwrap().contains("nginx:1.25"),
        "{listed:?}"
    );

    let r = alice
        .post_json("/api/v1/repos/web/rollback", json!({"revision": 1}))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    assert_eq!(deployment_image(&site, "alice", "web").await, "nginx:1.25");

    let listed = revisions(&alice, "web", 3).await;
    assert_eq!(listed[0]["revision"], 3, "{listed:?}");
    assert_eq!(listed[0]["image"], "nginx:1.25");
    assert_eq!(listed[0]["change"], "rollback to revision 1");
    assert_eq!(listed[0]["deployed_by"], "alice");
    assert_eq!(listed[0]["current"], true);
    assert!(listed[1..].iter().all(|r| r["current"] == false));

    // The rollout completes: the new revision's pods are ready and the old ones are gone.
    rolled_out(&alice, "web").await;
    let sets = eventually("only revision 3 to have pods", || async {
        let sets = replica_sets(&site, "alice", "web").await;
        sets.iter()
            .all(|rs| {
                let status = rs.status.clone().unwrap_or_default();
                if revision_of(rs) == 3 {
                    status.ready_replicas == Some(1)
                } else {
                    status.replicas == 0
                }
            })
            .then_some(sets)
    })
    .await;
    let newest = sets.iter().max_by_key(|rs| revision_of(rs)).unwrap();
    assert_eq!(image_of(newest), "nginx:1.25");

    // The page lists them, with a Roll back button for each old revision.
    let page = alice.get("/repos/web").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Revisions"), "{}", page.body);
    assert!(
        page.body.contains("rollback to revision 1"),
        "{}",
        page.body
    );
    assert_eq!(
        page.body.matches("action=\"/repos/web/rollback\"").count(),
        2,
        "{}",
        page.body
    );
    // Rolled back from the page to revision 2: a fourth revision with 1.27 again.
    let r = alice
        .submit("/repos/web/rollback", &[("revision", "2")])
        .await;
    assert_eq!(r.location(), "/repos/web?done=rollback");
    assert_eq!(deployment_image(&site, "alice", "web").await, "nginx:1.27");
    let listed = revisions(&alice, "web", 4).await;
    assert_eq!(listed[0]["change"], "rollback to revision 2");
}

#[tokio::test]
async fn a_scale_makes_no_revision() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    two_revisions(&site, &mut alice).await;
    let template = |d: Deployment| serde_json::to_value(d.spec.unwrap().template).unwrap();
    let before = template(
        site.objects::<Deployment>("alice")
            .get("web")
            .await
            .unwrap(),
    );
    let r = alice
        .call(Method::PATCH, "/api/v1/repos/web", json!({"replicas": 2}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let after = site
        .objects::<Deployment>("alice")
        .get("web")
        .await
        .unwrap();
    assert_eq!(after.spec.as_ref().unwrap().replicas, Some(2));
    assert_eq!(template(after), before, "a scale changed the pod template");
    alice
        .poll_json("two ready pods", "/api/v1/repos/web", |j| {
            j["replicas"]["ready"] == 2 && j["replicas"]["total"] == 2
        })
        .await;
    let sets = replica_sets(&site, "alice", "web").await;
    assert_eq!(sets.len(), 2, "a scale made a ReplicaSet");
    let listed = revisions(&alice, "web", 2).await;
    assert_eq!(listed[0]["change"], "image nginx:1.25 → nginx:1.27");
}

#[tokio::test]
async fn rollback_to_a_revision_that_no_longer_exists_is_404_naming_revision() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    two_revisions(&site, &mut alice).await;
    let before = replica_sets(&site, "alice", "web").await.len();
    let r = alice
        .post_json("/api/v1/repos/web/rollback", json!({"revision": 7}))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    assert_eq!(r.json()["field"], "revision", "{}", r.body);
    assert!(r.message().contains("2, 1"), "{}", r.body);
    assert_eq!(deployment_image(&site, "alice", "web").await, "nginx:1.27");
    assert_eq!(replica_sets(&site, "alice", "web").await.len(), before);

    // The page shows the reason next to the revisions.
    let r = alice
        .post("/repos/web/rollback", &[("revision", "7")])
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert!(r.body.contains("id=\"revision-error\""), "{}", r.body);
}

#[tokio::test]
async fn rollback_to_the_current_revision_is_refused() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    two_revisions(&site, &mut alice).await;
    let r = alice
        .post_json("/api/v1/repos/web/rollback", json!({"revision": 2}))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert_eq!(r.json()["field"], "revision", "{}", r.body);
    assert!(r.message().contains("already running"), "{}", r.body);
    assert_eq!(replica_sets(&site, "alice", "web").await.len(), 2);
}

#[tokio::test]
async fn another_users_repository_is_404_and_bad_bodies_are_422() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    two_revisions(&site, &mut alice).await;
    let mut bob = site.user("bob").await;
    let r = bob
        .post_json("/api/v1/repos/web/rollback", json!({"revision": 1}))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    let r = bob
        .api(Method::GET, "/api/v1/repos/web/revisions", None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);

    for body in [
        json!({"revision": "one"}),
        json!({"revision": -1}),
        json!({"revision": 0}),
        json!({"revision": 1.5}),
    ] {
        let r = alice.post_json("/api/v1/repos/web/rollback", body).await;
        r.assert_refused("revision");
    }
    let r = alice
        .post_json("/api/v1/repos/web/rollback", json!({}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(deployment_image(&site, "alice", "web").await, "nginx:1.27");
    assert_eq!(replica_sets(&site, "alice", "web").await.len(), 2);
}

fn env_of(d: &Deployment) -> Vec<(String, Option<String>)> {
    d.spec.clone().unwrap().template.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.name, e.value))
        .collect()
}

#[tokio::test]
async fn a_rollback_restores_the_revisions_variables_and_refuses_one_whose_secrets_are_gone() {
    let site = site().await;
    let mut alice = site.user("alice").await;
    let r = alice
        .post_json(
            "/api/v1/repos",
            json!({"name": "web", "image": "nginx:1.25", "port": 80,
                   "env": [{"name": "MODE", "value": "prod"}],
                   "secrets": [{"name": "TOKEN", "value": "t0ken"}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    rolled_out(&alice, "web").await;

    // Variables changed, the secret one kept: a revision whose change says so.
    let r = alice
        .call(
            Method::PUT,
            "/api/v1/repos/web/env",
            json!({"env": [{"name": "MODE", "value": "test"}], "secrets": [{"name": "TOKEN"}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let listed = revisions(&alice, "web", 2).await;
    assert_eq!(listed[0]["change"], "variables", "{listed:?}");
    assert_eq!(listed[0]["deployed_by"], "alice");
    rolled_out(&alice, "web").await;

    let r = alice
        .post_json("/api/v1/repos/web/rollback", json!({"revision": 1}))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let d: Deployment = site
        .objects::<Deployment>("alice")
        .get("web")
        .await
        .unwrap();
    assert_eq!(
        env_of(&d),
        vec![
            ("MODE".to_string(), Some("prod".to_string())),
            ("TOKEN".to_string(), None)
        ]
    );
    revisions(&alice, "web", 3).await;
    rolled_out(&alice, "web").await;

    // The secret variable removed (its value with it): revision 1 can no longer run.
    let r = alice
        .call(
            Method::PUT,
            "/api/v1/repos/web/env",
            json!({"env": [{"name": "MODE", "value": "prod"}]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    revisions(&alice, "web", 4).await;
    let before: Deployment = site
        .objects::<Deployment>("alice")
        .get("web")
        .await
        .unwrap();
    let r = alice
        .post_json("/api/v1/repos/web/rollback", json!({"revision": 2}))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert_eq!(r.json()["field"], "revision", "{}", r.body);
    assert!(r.message().contains("TOKEN"), "{}", r.body);
    let after: Deployment = site
        .objects::<Deployment>("alice")
        .get("web")
        .await
        .unwrap();
    assert_eq!(after.metadata.generation, before.metadata.generation);
}
