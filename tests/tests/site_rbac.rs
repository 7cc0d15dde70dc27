//! The site's identity as the installed manifest declares it (ServiceAccount, ClusterRole, Role):
//! it can make the calls the site makes, and none outside its scope. The full-stack test runs the
//! real site under the same identity.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test set-up

use cluster::{ClusterSim, SimConfig};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Node, Secret};
use kube::Api;
use kube::api::{ListParams, ObjectMeta, PostParams};
use platform::manifests::{SiteValues, apply, deploy_site};
use platform::names::{INITIAL_ADMIN_SECRET, SITE, SYSTEM_NAMESPACE};

fn object(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        ..ObjectMeta::default()
    }
}

#[tokio::test]
async fn the_sites_service_account_can_do_its_work_and_no_more() {
    let sim = ClusterSim::start(SimConfig::default())
        .await
        .expect("simulator");
    let admin = sim.client().await.expect("client");
    let site = SiteValues {
        public_host: "kdeploy-nlb-1.ap-northeast-2.elb.amazonaws.com".into(),
        image: "ghcr.io/kdeploy/web:0.1.0".into(),
    };
    apply(&admin, &deploy_site(&site).expect("render"))
        .await
        .expect("apply the site");
    let token = sim.service_account_token(SYSTEM_NAMESPACE, SITE);
    let site = sim.client_with_token(&token).await.expect("client");

    // What the site does: its own Secrets (the first credentials among them, created once), a
    // developer's namespace and the objects in it.
    let secrets: Api<Secret> = Api::namespaced(site.clone(), SYSTEM_NAMESPACE);
    let look = secrets.get_opt(INITIAL_ADMIN_SECRET).await;
    assert!(look.expect("look for the first credentials").is_none());
    let empty = |name: &str| Secret {
        metadata: object(name),
        ..Secret::default()
    };
    let create = PostParams::default();
    let first = secrets.create(&create, &empty(INITIAL_ADMIN_SECRET)).await;
    first.expect("store the first credentials");
    let second = secrets.create(&create, &empty(INITIAL_ADMIN_SECRET)).await;
    refused(second, 409, "a second replica loses the race");
    let user = secrets.create(&create, &empty("kdeploy-user-alice")).await;
    user.expect("create its own secret");
    let ns = Namespace {
        metadata: object("alice"),
        ..Namespace::default()
    };
    let created = Api::<Namespace>::all(site.clone())
        .create(&create, &ns)
        .await;
    created.expect("create a user namespace");
    let deployments: Api<Deployment> = Api::namespaced(site.clone(), "alice");
    let listed = deployments.list(&ListParams::default()).await;
    listed.expect("list deployments");

    // Outside its scope.
    let all = ListParams::default();
    let nodes = Api::<Node>::all(site.clone()).list(&all).await;
    refused(nodes, 403, "listing nodes");
    let system = Api::<Secret>::namespaced(site.clone(), "kube-system");
    refused(system.list(&all).await, 403, "kube-system secrets");
    let users = Api::<Secret>::namespaced(site, "alice");
    refused(users.list(&all).await, 403, "a user namespace's secrets");
}

/// Asserts the API server refused the call with `code`.
fn refused<T: std::fmt::Debug>(result: Result<T, kube::Error>, code: u16, what: &str) {
    let err = result.expect_err(what);
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == code),
        "{what}: {err:?}"
    );
}
