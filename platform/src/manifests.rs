//! The YAML under `manifests/`, rendered with the stack's values and the names of
//! [`crate::names`], and applied with server-side apply under one field manager, so re-running
//! `up` converges instead of fighting other writers.

use std::time::Duration;

use kube::api::{Api, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::{Scope, pinned_kind};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::ingress::CONTROLLER_IMAGE;
use crate::names;
use crate::public_url::PublicUrl;
use crate::targets::{self, Settings};
use crate::wait::{self, Patience};

pub use crate::names::FIELD_MANAGER;

pub const INGRESS_CONTROLLER_TEMPLATE: &str =
    include_str!("../../manifests/ingress-controller.yaml");
pub const DEPLOY_SITE_TEMPLATE: &str = include_str!("../../manifests/deploy-site.yaml");
pub const TARGETS_CONTROLLER_TEMPLATE: &str =
    include_str!("../../manifests/targets-controller.yaml");

/// Where each rollout to wait for lives (namespace, Deployment).
pub const INGRESS_CONTROLLER_DEPLOYMENT: (&str, &str) =
    (names::INGRESS_NAMESPACE, names::INGRESS_CONTROLLER);
pub const DEPLOY_SITE_DEPLOYMENT: (&str, &str) = (names::SYSTEM_NAMESPACE, names::SITE);
pub const TARGETS_CONTROLLER_DEPLOYMENT: (&str, &str) =
    (names::SYSTEM_NAMESPACE, names::TARGETS_CONTROLLER);

/// The deploy site's settings that go into its manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteValues {
    /// Where developers open the site (on AWS `http://<the NLB's DNS name>`): its host is the
    /// host of the public Ingresses, the whole URL the base of every endpoint the site shows.
    pub public_url: PublicUrl,
    pub image: String,
}

/// The default image of the site: the project's published name and this crate's version.
pub fn default_site_image() -> String {
    format!("ghcr.io/kdeploy/web:{}", env!("CARGO_PKG_VERSION"))
}

fn check(
    field: &'static str,
    value: &str,
    ok: impl Fn(char) -> bool,
    rule: &'static str,
) -> Result<()> {
    if value.is_empty() || value.len() > 253 || !value.chars().all(ok) {
        return Err(Error::Value {
            field,
            value: value.to_owned(),
            rule,
        });
    }
    Ok(())
}

/// Replaces `{{NAME}}` placeholders; every placeholder must be given.
pub fn render(template: &str, values: &[(&str, String)]) -> Result<String> {
    let mut out = template.to_owned();
    for (name, value) in values {
        out = out.replace(&format!("{{{{{name}}}}}"), value);
    }
    if let Some(start) = out.find("{{") {
        let end = out[start..].find("}}").map_or(out.len(), |e| start + e + 2);
        return Err(Error::Placeholder(out[start..end].to_owned()));
    }
    Ok(out)
}

/// The names both manifests may use, from [`crate::names`].
fn name_placeholders() -> Vec<(&'static str, String)> {
    vec![
        ("SYSTEM_NAMESPACE", names::SYSTEM_NAMESPACE.to_owned()),
        ("INGRESS_NAMESPACE", names::INGRESS_NAMESPACE.to_owned()),
        ("INGRESS_CONTROLLER", names::INGRESS_CONTROLLER.to_owned()),
        ("INGRESS_CONTROLLER_IMAGE", CONTROLLER_IMAGE.to_owned()),
        ("INGRESS_CONFIG", names::INGRESS_CONFIG.to_owned()),
        ("INGRESS_CLASS", names::INGRESS_CLASS.to_owned()),
        ("HTTP_NODE_PORT", names::HTTP_NODE_PORT.to_string()),
        ("HEALTH_NODE_PORT", names::HEALTH_NODE_PORT.to_string()),
        ("HEALTH_PORT", names::HEALTH_PORT.to_string()),
        ("HEALTH_PATH", names::HEALTH_PATH.to_owned()),
        ("SITE", names::SITE.to_owned()),
        ("TARGETS_CONTROLLER", names::TARGETS_CONTROLLER.to_owned()),
        ("HOST_INGRESS", names::HOST_INGRESS.to_owned()),
        ("SITE_PORT", names::SITE_PORT.to_string()),
        (
            "INITIAL_ADMIN_SECRET",
            names::INITIAL_ADMIN_SECRET.to_owned(),
        ),
        ("PLATFORM_NAMESPACES", names::PLATFORM_NAMESPACES.join(",")),
        ("CONSOLE_UPSTREAM", names::console_upstream()),
    ]
}

/// The ingress controller's objects, in apply order.
pub fn ingress_controller() -> Result<Vec<DynamicObject>> {
    labelled(parse(&render(
        INGRESS_CONTROLLER_TEMPLATE,
        &name_placeholders(),
    )?)?)
}

/// The image ends up inside a YAML scalar: allow only what an image reference can hold.
fn check_image(image: &str) -> Result<()> {
    check(
        "image",
        image,
        |c| c.is_ascii_alphanumeric() || "./:@_-".contains(c),
        "must be an image reference such as registry/name:tag",
    )
}

/// The deploy site's objects, in apply order.
pub fn deploy_site(values: &SiteValues) -> Result<Vec<DynamicObject>> {
    // The public URL was checked when it was parsed.
    check_image(&values.image)?;
    let mut placeholders = name_placeholders();
    placeholders.push(("PUBLIC_URL", values.public_url.to_string()));
    placeholders.push(("PUBLIC_HOST", values.public_url.host().to_owned()));
    placeholders.push(("IMAGE", values.image.clone()));
    labelled(parse(&render(DEPLOY_SITE_TEMPLATE, &placeholders)?)?)
}

/// The targets controller's objects, in apply order: `web targets` from the site's `image`,
/// keeping `settings`' target group; the endpoint, when there is one, goes into its environment
/// as the SDKs' `AWS_ENDPOINT_URL`.
pub fn targets_controller(settings: &Settings, image: &str) -> Result<Vec<DynamicObject>> {
    check_image(image)?;
    settings.check()?;
    let mut placeholders = name_placeholders();
    placeholders.push(("IMAGE", image.to_owned()));
    placeholders.push(("TARGET_GROUP_ARN", settings.target_group_arn.clone()));
    placeholders.push(("TARGET_PORT", settings.port.to_string()));
    placeholders.push(("AWS_REGION", settings.region.clone()));
    let mut objects = labelled(parse(&render(TARGETS_CONTROLLER_TEMPLATE, &placeholders)?)?)?;
    if let Some(endpoint) = &settings.endpoint {
        let env = objects
            .iter_mut()
            .filter_map(|o| o.data.pointer_mut("/spec/template/spec/containers/0/env"))
            .find_map(Value::as_array_mut)
            .ok_or(Error::Incomplete {
                index: 0,
                missing: "the targets controller's container env",
            })?;
        env.push(serde_json::json!({ "name": targets::ENDPOINT_ENV, "value": endpoint }));
    }
    Ok(objects)
}

/// Puts the recommended labels on every object and pod template, so that no template spells them.
fn labelled(mut objects: Vec<DynamicObject>) -> Result<Vec<DynamicObject>> {
    for object in &mut objects {
        let labels = object.metadata.labels.get_or_insert_with(Default::default);
        for (key, value) in names::recommended_labels() {
            labels.insert(key.to_owned(), value.to_owned());
        }
        if let Some(template) = object.data.pointer_mut("/spec/template") {
            let labels = entry(entry(template, "metadata"), "labels");
            for (key, value) in names::recommended_labels() {
                if let Value::Object(map) = labels {
                    map.insert(key.to_owned(), value.into());
                }
            }
        }
    }
    Ok(objects)
}

/// The object under `key`, created empty if absent.
fn entry<'v>(value: &'v mut Value, key: &str) -> &'v mut Value {
    if !value.is_object() {
        *value = Value::Object(Map::new());
    }
    match value {
        Value::Object(map) => map.entry(key).or_insert_with(|| Value::Object(Map::new())),
        other => other,
    }
}

/// Every document of a multi-document YAML stream, as objects with apiVersion, kind and name.
pub fn parse(yaml: &str) -> Result<Vec<DynamicObject>> {
    use serde::Deserialize;
    let mut objects = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(yaml).enumerate() {
        let value = serde_yaml::Value::deserialize(document)
            .map_err(|source| Error::Parse { index, source })?;
        if value.is_null() {
            continue;
        }
        let object: DynamicObject =
            serde_yaml::from_value(value).map_err(|source| Error::Parse { index, source })?;
        if object.types.is_none() {
            return Err(Error::Incomplete {
                index,
                missing: "apiVersion or kind",
            });
        }
        if object.metadata.name.is_none() {
            return Err(Error::Incomplete {
                index,
                missing: "metadata.name",
            });
        }
        objects.push(object);
    }
    Ok(objects)
}

/// `Deployment kdeploy-system/kdeploy-web`, `ClusterRole kdeploy-web`: how errors name an object.
pub fn describe(object: &DynamicObject) -> String {
    let kind = object.types.as_ref().map_or("object", |t| t.kind.as_str());
    let name = object.metadata.name.as_deref().unwrap_or("(unnamed)");
    match &object.metadata.namespace {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

fn gvk(object: &DynamicObject) -> Option<GroupVersionKind> {
    let types = object.types.as_ref()?;
    let (group, version) = match types.api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", types.api_version.as_str()),
    };
    Some(GroupVersionKind::gvk(group, version, &types.kind))
}

/// Server-side applies each object in order (namespaces and RBAC come first in the files).
/// Returns the objects as the API server stored them, in the same order.
pub async fn apply(client: &kube::Client, objects: &[DynamicObject]) -> Result<Vec<DynamicObject>> {
    // Strict: a field the API server does not know (a misspelling in a manifest) fails the install
    // instead of being dropped with a warning (`?fieldValidation=Strict`).
    let params = PatchParams::apply(FIELD_MANAGER)
        .force()
        .validation_strict();
    let mut applied = Vec::with_capacity(objects.len());
    for (index, object) in objects.iter().enumerate() {
        let resource = describe(object);
        let (Some(gvk), Some(name)) = (gvk(object), object.metadata.name.as_deref()) else {
            return Err(Error::Incomplete {
                index,
                missing: "apiVersion, kind or metadata.name",
            });
        };
        let (api_resource, capabilities) = pinned_kind(client, &gvk)
            .await
            .map_err(|e| Error::api("looking up the API of", &resource, e))?;
        let api: Api<DynamicObject> = match (&capabilities.scope, &object.metadata.namespace) {
            (Scope::Namespaced, Some(ns)) => {
                Api::namespaced_with(client.clone(), ns, &api_resource)
            }
            (Scope::Namespaced, None) => {
                Api::default_namespaced_with(client.clone(), &api_resource)
            }
            (Scope::Cluster, _) => Api::all_with(client.clone(), &api_resource),
        };
        let stored = api
            .patch(name, &params, &Patch::Apply(object))
            .await
            .map_err(|e| Error::api("applying", &resource, e))?;
        applied.push(stored);
    }
    Ok(applied)
}

/// Waits until the Deployment's rollout is complete; kept for callers that predate
/// [`crate::wait::rollout_complete`], which it calls.
pub async fn wait_rollout(
    client: &kube::Client,
    (namespace, name): (&str, &str),
    deadline: Duration,
) -> Result<()> {
    wait::rollout_complete(client, namespace, name, Patience::new(deadline)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::Deployment;

    fn site() -> SiteValues {
        SiteValues {
            public_url: PublicUrl::parse("http://kdeploy-nlb-1.ap-northeast-2.elb.amazonaws.com")
                .unwrap(),
            image: "ghcr.io/kdeploy/web:0.1.0".into(),
        }
    }

    fn settings() -> Settings {
        Settings {
            target_group_arn: "arn:aws:elasticloadbalancing:ap-northeast-2:123456789012:targetgroup/kdeploy-http/50dc6c495c0c9188".into(),
            port: names::HTTP_NODE_PORT,
            region: "ap-northeast-2".into(),
            endpoint: None,
        }
    }

    fn ingress(objects: &[DynamicObject], name: &str) -> k8s_openapi::api::networking::v1::Ingress {
        typed(
            objects
                .iter()
                .find(|o| {
                    o.types.as_ref().unwrap().kind == "Ingress"
                        && o.metadata.name.as_deref() == Some(name)
                })
                .unwrap_or_else(|| panic!("no Ingress {name}")),
        )
    }

    /// Every object converts into its k8s-openapi type (so the YAML matches the real schema).
    fn typed<K: serde::de::DeserializeOwned>(object: &DynamicObject) -> K {
        let value = serde_json::to_value(object).unwrap();
        serde_json::from_value(value).unwrap_or_else(|e| panic!("{:?}: {e}", object.metadata.name))
    }

    #[test]
    fn every_object_parses_into_its_kubernetes_type() {
        use k8s_openapi::api::{core::v1 as core, networking::v1 as net, rbac::v1 as rbac};
        let mut all = ingress_controller().unwrap();
        all.extend(deploy_site(&site()).unwrap());
        all.extend(targets_controller(&settings(), "ghcr.io/kdeploy/web:0.1.0").unwrap());
        for object in &all {
            match object.types.as_ref().unwrap().kind.as_str() {
                "Namespace" => drop(typed::<core::Namespace>(object)),
                "ServiceAccount" => drop(typed::<core::ServiceAccount>(object)),
                "ConfigMap" => drop(typed::<core::ConfigMap>(object)),
                "Service" => drop(typed::<core::Service>(object)),
                "Deployment" => drop(typed::<Deployment>(object)),
                "ClusterRole" => drop(typed::<rbac::ClusterRole>(object)),
                "ClusterRoleBinding" => drop(typed::<rbac::ClusterRoleBinding>(object)),
                "Role" => drop(typed::<rbac::Role>(object)),
                "RoleBinding" => drop(typed::<rbac::RoleBinding>(object)),
                "IngressClass" => drop(typed::<net::IngressClass>(object)),
                "Ingress" => drop(typed::<net::Ingress>(object)),
                other => panic!("unexpected kind {other}"),
            }
        }
        assert_eq!(all.len(), 22);
    }

    #[test]
    fn the_public_host_has_a_master_and_the_site_is_its_minion() {
        let objects = deploy_site(&site()).unwrap();
        let host = "kdeploy-nlb-1.ap-northeast-2.elb.amazonaws.com";
        let master = ingress(&objects, names::HOST_INGRESS);
        let annotations = master.metadata.annotations.clone().unwrap();
        assert_eq!(
            annotations
                .get("nginx.org/mergeable-ingress-type")
                .map(String::as_str),
            Some("master")
        );
        // Host-wide settings only: none of the annotations NIC refuses on a master.
        assert_eq!(annotations.len(), 1, "{annotations:?}");
        let spec = master.spec.unwrap();
        assert_eq!(
            spec.ingress_class_name.as_deref(),
            Some(names::INGRESS_CLASS)
        );
        let rules = spec.rules.unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].host.as_deref(), Some(host));
        assert!(rules[0].http.is_none(), "a master has no paths");

        let minion = ingress(&objects, names::SITE);
        assert_eq!(
            minion.metadata.annotations.unwrap()["nginx.org/mergeable-ingress-type"],
            "minion"
        );
        let spec = minion.spec.unwrap();
        assert_eq!(
            spec.ingress_class_name.as_deref(),
            Some(names::INGRESS_CLASS)
        );
        let rule = &spec.rules.unwrap()[0];
        assert_eq!(rule.host.as_deref(), Some(host));
        let path = &rule.http.as_ref().unwrap().paths[0];
        assert_eq!(
            (path.path.as_deref(), path.path_type.as_str()),
            (Some("/"), "Prefix")
        );
        let backend = path.backend.service.as_ref().unwrap();
        assert_eq!(backend.name, names::SITE);
        assert_eq!(backend.port.as_ref().unwrap().name.as_deref(), Some("http"));

        // The master comes first, so the minion never waits for one.
        let position = |name: &str| {
            objects
                .iter()
                .position(|o| {
                    o.metadata.name.as_deref() == Some(name)
                        && o.types.as_ref().unwrap().kind == "Ingress"
                })
                .unwrap()
        };
        assert!(position(names::HOST_INGRESS) < position(names::SITE));
    }

    #[test]
    fn the_site_stays_in_service_until_the_ingress_has_let_go_of_it() {
        let objects = deploy_site(&site()).unwrap();
        let deployment: Deployment = typed(
            objects
                .iter()
                .find(|o| o.types.as_ref().unwrap().kind == "Deployment")
                .unwrap(),
        );
        let spec = deployment.spec.unwrap();
        assert_eq!(spec.replicas, Some(2));
        let pod = spec.template.spec.unwrap();
        let container = &pod.containers[0];
        assert_eq!(
            container.image.as_deref(),
            Some("ghcr.io/kdeploy/web:0.1.0")
        );
        assert!(container.readiness_probe.is_some() && container.liveness_probe.is_some());
        let sleep = container
            .lifecycle
            .as_ref()
            .and_then(|l| l.pre_stop.as_ref())
            .and_then(|h| h.sleep.as_ref())
            .expect("a preStop sleep");
        assert_eq!(sleep.seconds, 5);
        let grace = pod.termination_grace_period_seconds.unwrap();
        assert!(
            grace > sleep.seconds + 10,
            "{grace}s covers the sleep and a graceful stop"
        );
        let env = container.env.clone().unwrap();
        let url = env.iter().find(|e| e.name == "KDEPLOY_PUBLIC_URL").unwrap();
        assert_eq!(
            url.value.as_deref(),
            Some("http://kdeploy-nlb-1.ap-northeast-2.elb.amazonaws.com")
        );
        assert!(!env.iter().any(|e| e.name == "KDEPLOY_PUBLIC_HOST"));
    }

    #[test]
    fn the_targets_controller_runs_once_on_the_host_network_as_nobody() {
        use k8s_openapi::api::rbac::v1::ClusterRole;
        let objects = targets_controller(&settings(), "ghcr.io/kdeploy/web:0.1.0").unwrap();
        let find = |kind: &str| {
            objects
                .iter()
                .find(|o| o.types.as_ref().unwrap().kind == kind)
                .unwrap_or_else(|| panic!("no {kind}"))
        };
        let deployment: Deployment = typed(find("Deployment"));
        let spec = deployment.spec.unwrap();
        assert_eq!(spec.replicas, Some(1));
        assert_eq!(
            spec.strategy.and_then(|s| s.type_).as_deref(),
            Some("Recreate")
        );
        let pod = spec.template.spec.unwrap();
        // Only host-network pods reach IMDS with the launch template's hop limit of 1.
        assert_eq!(pod.host_network, Some(true));
        assert_eq!(pod.dns_policy.as_deref(), Some("ClusterFirstWithHostNet"));
        assert_eq!(
            pod.service_account_name.as_deref(),
            Some(names::TARGETS_CONTROLLER)
        );
        let security = pod.security_context.unwrap();
        assert_eq!(
            (security.run_as_non_root, security.run_as_user),
            (Some(true), Some(65532))
        );
        let container = &pod.containers[0];
        assert_eq!(
            container.image.as_deref(),
            Some("ghcr.io/kdeploy/web:0.1.0")
        );
        assert_eq!(container.args.as_deref(), Some(&["targets".to_owned()][..]));
        let security = container.security_context.clone().unwrap();
        assert_eq!(security.allow_privilege_escalation, Some(false));
        assert_eq!(security.read_only_root_filesystem, Some(true));
        let resources = container.resources.clone().unwrap();
        assert!(resources.requests.is_some() && resources.limits.is_some());
        let env: Vec<(String, Option<String>)> = container
            .env
            .clone()
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.value))
            .collect();
        let value = |name: &str| {
            env.iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, v)| v.clone())
        };
        assert_eq!(
            value(targets::TARGET_GROUP_ARN_ENV),
            Some(settings().target_group_arn)
        );
        assert_eq!(
            value(targets::TARGET_PORT_ENV),
            Some(names::HTTP_NODE_PORT.to_string())
        );
        assert_eq!(
            value(targets::REGION_ENV).as_deref(),
            Some("ap-northeast-2")
        );
        assert!(
            !env.iter().any(|(n, _)| n == targets::ENDPOINT_ENV),
            "no endpoint on AWS: the SDK finds the regional one"
        );

        // Reading Nodes is all it may do in the cluster.
        let role: ClusterRole = typed(find("ClusterRole"));
        let rules = role.rules.unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(
            rules[0].resources.as_deref(),
            Some(&["nodes".to_owned()][..])
        );
        assert_eq!(rules[0].verbs, ["get", "list", "watch"]);

        // The local stack's emulator endpoint goes into the env.
        let local = Settings {
            endpoint: Some("http://127.0.0.1:5000".into()),
            ..settings()
        };
        let objects = targets_controller(&local, "ghcr.io/kdeploy/web:0.1.0").unwrap();
        let deployment: Deployment = typed(
            objects
                .iter()
                .find(|o| o.types.as_ref().unwrap().kind == "Deployment")
                .unwrap(),
        );
        let env = deployment.spec.unwrap().template.spec.unwrap().containers[0]
            .env
            .clone()
            .unwrap();
        let endpoint = env
            .iter()
            .find(|e| e.name == targets::ENDPOINT_ENV)
            .unwrap();
        assert_eq!(endpoint.value.as_deref(), Some("http://127.0.0.1:5000"));
    }

    #[test]
    fn values_that_could_break_the_yaml_are_refused() {
        assert!(matches!(
            PublicUrl::parse("http://x\"\n  evil: true"),
            Err(Error::Value {
                field: "public_url",
                ..
            })
        ));
        let bad_image = SiteValues {
            image: "nginx latest".into(),
            ..site()
        };
        assert!(matches!(
            deploy_site(&bad_image),
            Err(Error::Value { field: "image", .. })
        ));
        assert!(
            matches!(render("a: {{MISSING}}", &[]), Err(Error::Placeholder(p)) if p == "{{MISSING}}")
        );
        let bad_arn = Settings {
            target_group_arn: "arn:x\"\n  evil: true".into(),
            ..settings()
        };
        assert!(matches!(
            targets_controller(&bad_arn, "ghcr.io/kdeploy/web:0.1.0"),
            Err(Error::Value {
                field: targets::TARGET_GROUP_ARN_ENV,
                ..
            })
        ));
        assert!(matches!(
            targets_controller(&settings(), "web latest"),
            Err(Error::Value { field: "image", .. })
        ));
    }
}
