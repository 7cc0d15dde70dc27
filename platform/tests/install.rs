//! The manifests against the cluster simulator, with validation and RBAC on: they apply, both
//! rollouts complete, re-applying changes nothing, and the site's ServiceAccount can make the calls
//! the site makes and none outside its scope.

#![allow(clippy::expect_used)] // test set-up

use std::time::Duration;

use cluster_sim::{ClusterSim, SimConfig};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Node, Secret};
use kube::Api;
use kube::api::{ListParams, ObjectMeta, PostParams};
use platform::manifests::{
    DEPLOY_SITE_DEPLOYMENT, INGRESS_CONTROLLER_DEPLOYMENT, SiteValues, apply, deploy_site,
    ingress_controller, wait_rollout,
};

fn site() -> SiteValues {
    SiteValues {
        public_host: "kdeploy-nlb-1.ap-northeast-2.elb.amazonaws.com".into(),
        image: "ghcr.io/kdeploy/web:0.1.0".into(),
    }
}

#[tokio::test]
async fn the_platform_installs_and_rolls_out() {
    let sim = ClusterSim::start(SimConfig::default())
        .await
        .expect("simulator");
    let admin = sim.client().await.expect("client");
    let controller = ingress_controller().expect("render");
    let website = deploy_site(&site()).expect("render");
    apply(&admin, &controller)
        .await
        .expect("apply the ingress controller");
    apply(&admin, &website).await.expect("apply the site");
    for deployment in [INGRESS_CONTROLLER_DEPLOYMENT, DEPLOY_SITE_DEPLOYMENT] {
        wait_rollout(&admin, deployment, Duration::from_secs(30))
            .await
            .expect("rollout");
    }

    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), "kdeploy-system");
    let before = deployments
        .get("kdeploy-web")
        .await
        .expect("site deployment");
    apply(&admin, &website).await.expect("re-apply");
    let after = deployments
        .get("kdeploy-web")
        .await
        .expect("site deployment");
    assert_eq!(
        before.metadata.generation, after.metadata.generation,
        "re-applying changed the spec"
    );
    let managers: Vec<String> = after
        .metadata
        .managed_fields
        .unwrap_or_default()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert!(
        managers.contains(&"kdeploy-platform".to_owned()),
        "{managers:?}"
    );
}

#[tokio::test]
async fn the_sites_service_account_can_do_its_work_and_no_more() {
    let sim = ClusterSim::start(SimConfig::default())
        .await
        .expect("simulator");
    let admin = sim.client().await.expect("client");
    apply(&admin, &deploy_site(&site()).expect("render"))
        .await
        .expect("apply the site");
    let token = sim.service_account_token("kdeploy-system", "kdeploy-web");
    let site = sim.client_with_token(&token).await.expect("client");

    // What the site does: its own Secrets, a developer's namespace and the objects in it.
    let secrets: Api<Secret> = Api::namespaced(site.clone(), "kdeploy-system");
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("kdeploy-user-alice".into()),
            ..ObjectMeta::default()
        },
        ..Secret::default()
    };
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("create its own secret");
    let namespaces: Api<Namespace> = Api::all(site.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some("alice".into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("create a user namespace");
    let deployments: Api<Deployment> = Api::namespaced(site.clone(), "alice");
    deployments
        .list(&ListParams::default())
        .await
        .expect("list deployments");

    // Outside its scope.
    let nodes: Api<Node> = Api::all(site.clone());
    let denied = nodes
        .list(&ListParams::default())
        .await
        .expect_err("listing nodes is denied");
    assert!(
        matches!(denied, kube::Error::Api(ref s) if s.code == 403),
        "{denied:?}"
    );
    let system_secrets: Api<Secret> = Api::namespaced(site.clone(), "kube-system");
    let denied = system_secrets
        .list(&ListParams::default())
        .await
        .expect_err("kube-system secrets are denied");
    assert!(
        matches!(denied, kube::Error::Api(ref s) if s.code == 403),
        "{denied:?}"
    );
    let alice_secrets: Api<Secret> = Api::namespaced(site, "alice");
    let denied = alice_secrets
        .list(&ListParams::default())
        .await
        .expect_err("user secrets are denied");
    assert!(
        matches!(denied, kube::Error::Api(ref s) if s.code == 403),
        "{denied:?}"
    );
}
