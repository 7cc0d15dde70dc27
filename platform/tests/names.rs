//! The rendered manifests take every cluster-wide name from `platform::names`, and the templates
//! spell none of them, so changing a constant changes the cluster and nothing drifts.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test assertions

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, EnvVar, Service};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::DynamicObject;
use platform::PublicUrl;
use platform::manifests::{
    DEPLOY_SITE_TEMPLATE, INGRESS_CONTROLLER_TEMPLATE, SiteValues, TARGETS_CONTROLLER_TEMPLATE,
    deploy_site, ingress_controller, targets_controller,
};
use platform::names::*;

fn site() -> SiteValues {
    SiteValues {
        public_url: PublicUrl::parse("http://kdeploy-nlb-1.ap-northeast-2.elb.amazonaws.com")
            .unwrap(),
        image: "ghcr.io/kdeploy/web:0.1.0".into(),
    }
}

fn targets() -> platform::targets::Settings {
    platform::targets::Settings {
        target_group_arn: "arn:aws:elasticloadbalancing:ap-northeast-2:123456789012:targetgroup/kdeploy-http/50dc6c495c0c9188".into(),
        port: HTTP_NODE_PORT,
        region: "ap-northeast-2".into(),
        endpoint: None,
    }
}

fn find<K: serde::de::DeserializeOwned>(objects: &[DynamicObject], kind: &str) -> K {
    let object = objects
        .iter()
        .find(|o| o.types.as_ref().is_some_and(|t| t.kind == kind))
        .unwrap_or_else(|| panic!("no {kind}"));
    serde_json::from_value(serde_json::to_value(object).unwrap()).unwrap()
}

fn container(deployment: &Deployment) -> Container {
    let pod = deployment.spec.clone().unwrap().template.spec.unwrap();
    pod.containers[0].clone()
}

fn value(env: &[EnvVar], name: &str) -> Option<String> {
    env.iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("no {name}"))
        .value
        .clone()
}

/// Whether `name` occurs as a whole word (`nginx-config`, not the flag `-nginx-configmaps`).
fn spells(code: &str, name: &str) -> bool {
    let part = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-');
    code.match_indices(name).any(|(at, _)| {
        !part(code[..at].chars().next_back()) && !part(code[at + name.len()..].chars().next())
    })
}

#[test]
fn the_templates_spell_no_name_that_the_names_module_defines() {
    for (file, template) in [
        ("ingress-controller.yaml", INGRESS_CONTROLLER_TEMPLATE),
        ("deploy-site.yaml", DEPLOY_SITE_TEMPLATE),
        ("targets-controller.yaml", TARGETS_CONTROLLER_TEMPLATE),
    ] {
        let code: String = template
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        for name in [
            SYSTEM_NAMESPACE,
            INGRESS_NAMESPACE,
            INGRESS_CONTROLLER,
            INGRESS_CONFIG,
            SITE,
            TARGETS_CONTROLLER,
            HOST_INGRESS,
            INITIAL_ADMIN_SECRET,
            HEALTH_PATH,
            PART_OF_LABEL,
            MANAGED_BY_LABEL,
            &HTTP_NODE_PORT.to_string(),
            &HEALTH_NODE_PORT.to_string(),
            &HEALTH_PORT.to_string(),
            &SITE_PORT.to_string(),
            &format!("ingressClassName: {INGRESS_CLASS}"),
            &format!("-ingress-class={INGRESS_CLASS}"),
        ] {
            assert!(!spells(&code, name), "{file} spells {name:?}");
        }
    }
}

#[test]
fn the_rendered_manifests_use_the_names_module() {
    let controller = ingress_controller().unwrap();
    let website = deploy_site(&site()).unwrap();
    let keeper = targets_controller(&targets(), &site().image).unwrap();

    let deployment: Deployment = find(&controller, "Deployment");
    assert_eq!(
        deployment.metadata.name.as_deref(),
        Some(INGRESS_CONTROLLER)
    );
    assert_eq!(
        deployment.metadata.namespace.as_deref(),
        Some(INGRESS_NAMESPACE)
    );
    let controller_container = container(&deployment);
    assert_eq!(
        controller_container.image.as_deref(),
        Some(platform::ingress::CONTROLLER_IMAGE)
    );
    let args = controller_container.args.clone().unwrap();
    assert!(args.contains(&format!("-ingress-class={INGRESS_CLASS}")));
    assert!(args.contains(&format!("-ready-status-port={HEALTH_PORT}")));
    assert!(args.contains(&"-enable-custom-resources=false".to_owned()));
    let probe = controller_container
        .readiness_probe
        .clone()
        .unwrap()
        .http_get
        .unwrap();
    assert_eq!(probe.path.as_deref(), Some(HEALTH_PATH));
    let service: Service = find(&controller, "Service");
    assert_eq!(service.metadata.name.as_deref(), Some(INGRESS_CONTROLLER));
    let ports = service.spec.unwrap().ports.unwrap();
    assert_eq!(ports[0].node_port, Some(HTTP_NODE_PORT));
    assert_eq!(ports[1].node_port, Some(HEALTH_NODE_PORT));
    let class: IngressClass = find(&controller, "IngressClass");
    assert_eq!(class.metadata.name.as_deref(), Some(INGRESS_CLASS));

    let deployment: Deployment = find(&website, "Deployment");
    assert_eq!(deployment.metadata.name.as_deref(), Some(SITE));
    assert_eq!(
        deployment.metadata.namespace.as_deref(),
        Some(SYSTEM_NAMESPACE)
    );
    let env = container(&deployment).env.unwrap();
    assert_eq!(
        value(&env, "KDEPLOY_PUBLIC_URL"),
        Some(site().public_url.to_string())
    );
    // The pod's own IP, defined before the variable that expands it (Kubernetes expands `$(VAR)`
    // only against the variables before it).
    assert_eq!(
        value(&env, "KDEPLOY_LISTEN"),
        Some(format!("$(POD_IP):{SITE_PORT}"))
    );
    let at = |name: &str| env.iter().position(|e| e.name == name).unwrap();
    assert!(at("POD_IP") < at("KDEPLOY_LISTEN"));
    let pod_ip = env[at("POD_IP")]
        .value_from
        .clone()
        .unwrap()
        .field_ref
        .unwrap();
    assert_eq!(pod_ip.field_path, "status.podIP");
    assert_eq!(
        value(&env, "KDEPLOY_INGRESS_CLASS").as_deref(),
        Some(INGRESS_CLASS)
    );
    assert_eq!(
        value(&env, "KDEPLOY_PLATFORM_NAMESPACES"),
        Some(format!("{SYSTEM_NAMESPACE},{INGRESS_NAMESPACE}"))
    );
    assert_eq!(
        value(&env, "KDEPLOY_CONSOLE_UPSTREAM"),
        Some(format!(
            "http://{INGRESS_CONTROLLER}.{INGRESS_NAMESPACE}.svc"
        ))
    );
    assert_eq!(
        value(&env, "KDEPLOY_INITIAL_ADMIN_SECRET").as_deref(),
        Some(INITIAL_ADMIN_SECRET)
    );
    let namespace = env.iter().find(|e| e.name == "KDEPLOY_NAMESPACE").unwrap();
    let field = namespace.value_from.clone().unwrap().field_ref.unwrap();
    assert_eq!(field.field_path, "metadata.namespace");
    let ingresses: Vec<Ingress> = website
        .iter()
        .filter(|o| o.types.as_ref().is_some_and(|t| t.kind == "Ingress"))
        .map(|o| serde_json::from_value(serde_json::to_value(o).unwrap()).unwrap())
        .collect();
    let named: Vec<&str> = ingresses
        .iter()
        .filter_map(|i| i.metadata.name.as_deref())
        .collect();
    assert_eq!(named, [HOST_INGRESS, SITE]);
    for ingress in &ingresses {
        let spec = ingress.spec.clone().unwrap();
        assert_eq!(spec.ingress_class_name.as_deref(), Some(INGRESS_CLASS));
        assert_eq!(
            spec.rules.unwrap()[0].host.as_deref(),
            Some(site().public_url.host())
        );
    }

    // The targets controller: its objects by the names module's name, in the site's namespace,
    // with the environment that `web targets` reads (platform::targets' variable names).
    for object in &keeper {
        assert_eq!(object.metadata.name.as_deref(), Some(TARGETS_CONTROLLER));
        if let Some(ns) = &object.metadata.namespace {
            assert_eq!(ns, SYSTEM_NAMESPACE);
        }
    }
    let deployment: Deployment = find(&keeper, "Deployment");
    let pod = deployment.spec.clone().unwrap().template.spec.unwrap();
    assert_eq!(
        pod.service_account_name.as_deref(),
        Some(TARGETS_CONTROLLER)
    );
    let env = container(&deployment).env.unwrap();
    assert_eq!(
        value(&env, platform::targets::TARGET_GROUP_ARN_ENV),
        Some(targets().target_group_arn)
    );
    assert_eq!(
        value(&env, platform::targets::TARGET_PORT_ENV),
        Some(HTTP_NODE_PORT.to_string())
    );
    assert_eq!(
        value(&env, platform::targets::REGION_ENV).as_deref(),
        Some("ap-northeast-2")
    );
    let binding: k8s_openapi::api::rbac::v1::ClusterRoleBinding =
        find(&keeper, "ClusterRoleBinding");
    let subject = &binding.subjects.unwrap()[0];
    assert_eq!(
        (subject.name.as_str(), subject.namespace.as_deref()),
        (TARGETS_CONTROLLER, Some(SYSTEM_NAMESPACE))
    );
    assert_eq!(binding.role_ref.name, TARGETS_CONTROLLER);

    // Every object and every pod template carries the recommended labels, and nothing lands
    // outside the platform's namespaces.
    for object in controller.iter().chain(&website).chain(&keeper) {
        let labels = object.metadata.labels.clone().unwrap_or_default();
        for (key, value) in recommended_labels() {
            assert_eq!(
                labels.get(key).map(String::as_str),
                Some(value),
                "{object:?}"
            );
        }
        if let Some(ns) = &object.metadata.namespace {
            assert!(PLATFORM_NAMESPACES.contains(&ns.as_str()), "{ns}");
        }
        if let Some(template) = object.data.pointer("/spec/template/metadata/labels") {
            for (key, value) in recommended_labels() {
                assert_eq!(template[key], value, "{object:?}");
            }
        }
    }
}
