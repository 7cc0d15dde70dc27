//! The platform's manifests are applied with `fieldValidation=Strict`: a field the API server does
//! not declare fails the install and is named, instead of being dropped with a warning (the API
//! server's behaviour: k8s.io/apiserver pkg/endpoints/handlers, `fieldValidation` query parameter;
//! the simulator models it in localstack/cluster/src/api/mod.rs `validate_fields`).

#![allow(clippy::expect_used, clippy::unwrap_used)] // test set-up

use cluster::{ClusterSim, SimConfig};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use platform::manifests::{apply, parse};

#[tokio::test]
async fn a_misspelled_field_in_a_manifest_fails_the_apply_naming_the_field() {
    let sim = ClusterSim::start(SimConfig::default())
        .await
        .expect("simulator");
    let kube = sim.client().await.expect("client");
    let misspelled = parse(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: strict\n  namespace: default\ndataa:\n  key: value\n",
    )
    .expect("the YAML parses");
    let err = apply(&kube, &misspelled)
        .await
        .expect_err("an undeclared field is refused");
    let message = format!("{err:#}");
    assert!(message.contains("dataa"), "{message}");
    let stored = Api::<ConfigMap>::namespaced(kube.clone(), "default")
        .get_opt("strict")
        .await
        .expect("get");
    assert!(stored.is_none(), "nothing was created: {stored:?}");

    // The same object spelled right is applied.
    let right = parse(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: strict\n  namespace: default\ndata:\n  key: value\n",
    )
    .expect("the YAML parses");
    apply(&kube, &right)
        .await
        .expect("a declared field is applied");
}

#[tokio::test]
async fn every_manifest_the_platform_installs_passes_strict_validation() {
    let sim = ClusterSim::start(SimConfig::default())
        .await
        .expect("simulator");
    let kube = sim.client().await.expect("client");
    let site = platform::manifests::SiteValues {
        public_url: platform::PublicUrl::parse("http://kdeploy.localhost:8080").unwrap(),
        image: platform::manifests::default_site_image(),
    };
    let settings = platform::targets::Settings {
        target_group_arn: "arn:aws:elasticloadbalancing:ap-northeast-2:123456789012:targetgroup/kdeploy-http/0123456789abcdef".into(),
        port: 30080,
        region: "ap-northeast-2".into(),
        endpoint: Some("http://127.0.0.1:5000".into()),
    };
    for objects in [
        platform::manifests::ingress_controller().unwrap(),
        platform::manifests::deploy_site(&site).unwrap(),
        platform::manifests::targets_controller(&settings, &site.image).unwrap(),
    ] {
        apply(&kube, &objects)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
    }
}
