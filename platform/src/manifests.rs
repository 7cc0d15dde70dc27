//! The YAML under `manifests/`, rendered with the stack's values and applied with server-side
//! apply under one field manager, so re-running `up` converges instead of fighting other writers.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::{Scope, pinned_kind};
use kube::runtime::wait::{await_condition, conditions};

use crate::ingress::{HEALTH_NODE_PORT, HEALTH_PATH, HTTP_NODE_PORT};

/// The field manager of everything the platform installs.
pub const FIELD_MANAGER: &str = "kdeploy-platform";

pub const INGRESS_CONTROLLER: &str = include_str!("../../manifests/ingress-controller.yaml");
pub const DEPLOY_SITE: &str = include_str!("../../manifests/deploy-site.yaml");

/// Where each rollout to wait for lives.
pub const INGRESS_CONTROLLER_DEPLOYMENT: (&str, &str) = ("nginx-ingress", "nginx-ingress");
pub const DEPLOY_SITE_DEPLOYMENT: (&str, &str) = ("kdeploy-system", "kdeploy-web");

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{field} = {value:?}: {rule}")]
    Value {
        field: &'static str,
        value: String,
        rule: &'static str,
    },
    #[error("the manifest still has a placeholder {0} after rendering")]
    Placeholder(String),
    #[error("document {index} is not a Kubernetes object: {message}")]
    Parse { index: usize, message: String },
    #[error("applying {kind} {name}: {source}")]
    Apply {
        kind: String,
        name: String,
        source: kube::Error,
    },
    #[error("waiting for deployment {namespace}/{name}: {reason}")]
    Rollout {
        namespace: String,
        name: String,
        reason: String,
    },
}

/// The deploy site's settings that go into its manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteValues {
    /// The NLB's DNS name: the site's Ingress host and the host of every endpoint it shows.
    pub public_host: String,
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
) -> Result<(), ManifestError> {
    if value.is_empty() || value.len() > 253 || !value.chars().all(ok) {
        return Err(ManifestError::Value {
            field,
            value: value.to_owned(),
            rule,
        });
    }
    Ok(())
}

/// Replaces `{{NAME}}` placeholders; every placeholder must be given.
pub fn render(template: &str, values: &[(&str, String)]) -> Result<String, ManifestError> {
    let mut out = template.to_owned();
    for (name, value) in values {
        out = out.replace(&format!("{{{{{name}}}}}"), value);
    }
    if let Some(start) = out.find("{{") {
        let end = out[start..].find("}}").map_or(out.len(), |e| start + e + 2);
        return Err(ManifestError::Placeholder(out[start..end].to_owned()));
    }
    Ok(out)
}

pub fn ingress_controller() -> Result<Vec<DynamicObject>, ManifestError> {
    parse(&render(
        INGRESS_CONTROLLER,
        &[
            ("HTTP_NODE_PORT", HTTP_NODE_PORT.to_string()),
            ("HEALTH_NODE_PORT", HEALTH_NODE_PORT.to_string()),
            ("HEALTH_PATH", HEALTH_PATH.to_owned()),
        ],
    )?)
}

pub fn deploy_site(values: &SiteValues) -> Result<Vec<DynamicObject>, ManifestError> {
    // Both end up inside YAML scalars: allow only what a DNS name or an image reference can hold.
    check(
        "public_host",
        &values.public_host,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-',
        "must be a DNS name (lowercase letters, digits, '.', '-')",
    )?;
    check(
        "image",
        &values.image,
        |c| c.is_ascii_alphanumeric() || "./:@_-".contains(c),
        "must be an image reference such as registry/name:tag",
    )?;
    parse(&render(
        DEPLOY_SITE,
        &[
            ("PUBLIC_HOST", values.public_host.clone()),
            ("IMAGE", values.image.clone()),
        ],
    )?)
}

/// Every document of a multi-document YAML stream, as objects with apiVersion, kind and name.
pub fn parse(yaml: &str) -> Result<Vec<DynamicObject>, ManifestError> {
    use serde::Deserialize;
    let mut objects = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(yaml).enumerate() {
        let value = serde_yaml::Value::deserialize(document).map_err(|e| ManifestError::Parse {
            index,
            message: e.to_string(),
        })?;
        if value.is_null() {
            continue;
        }
        let object: DynamicObject =
            serde_yaml::from_value(value).map_err(|e| ManifestError::Parse {
                index,
                message: e.to_string(),
            })?;
        if object.types.is_none() || object.metadata.name.is_none() {
            return Err(ManifestError::Parse {
                index,
                message: "apiVersion, kind and metadata.name are required".into(),
            });
        }
        objects.push(object);
    }
    Ok(objects)
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
/// Returns how many objects it applied.
pub async fn apply(
    client: &kube::Client,
    objects: &[DynamicObject],
) -> Result<usize, ManifestError> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for object in objects {
        let name = object.metadata.name.clone().unwrap_or_default();
        let kind = object
            .types
            .as_ref()
            .map(|t| t.kind.clone())
            .unwrap_or_default();
        let failed = |source| ManifestError::Apply {
            kind: kind.clone(),
            name: name.clone(),
            source,
        };
        let gvk = gvk(object).ok_or_else(|| ManifestError::Parse {
            index: 0,
            message: format!("{kind} {name} has no apiVersion"),
        })?;
        let (resource, capabilities) = pinned_kind(client, &gvk).await.map_err(failed)?;
        let api: Api<DynamicObject> = match (&capabilities.scope, &object.metadata.namespace) {
            (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, &resource),
            (Scope::Namespaced, None) => Api::default_namespaced_with(client.clone(), &resource),
            (Scope::Cluster, _) => Api::all_with(client.clone(), &resource),
        };
        api.patch(&name, &params, &Patch::Apply(object))
            .await
            .map_err(failed)?;
    }
    Ok(objects.len())
}

/// Waits until the Deployment's rollout is complete (all replicas updated and available).
pub async fn wait_rollout(
    client: &kube::Client,
    (namespace, name): (&str, &str),
    deadline: Duration,
) -> Result<(), ManifestError> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let failed = |reason: String| ManifestError::Rollout {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        reason,
    };
    match tokio::time::timeout(
        deadline,
        await_condition(api, name, conditions::is_deployment_completed()),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(failed(e.to_string())),
        Err(_) => Err(failed(format!(
            "not complete after {}s",
            deadline.as_secs()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Service;

    fn site() -> SiteValues {
        SiteValues {
            public_host: "kdeploy-nlb-1.ap-northeast-2.elb.amazonaws.com".into(),
            image: "ghcr.io/kdeploy/web:0.1.0".into(),
        }
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
        assert_eq!(all.len(), 17);
    }

    #[test]
    fn the_controller_service_uses_the_pinned_node_ports() {
        let objects = ingress_controller().unwrap();
        let service = objects
            .iter()
            .find(|o| o.types.as_ref().unwrap().kind == "Service")
            .unwrap();
        let service: Service = typed(service);
        let ports = service.spec.unwrap().ports.unwrap();
        assert_eq!(ports[0].node_port, Some(HTTP_NODE_PORT));
        assert_eq!(ports[1].node_port, Some(HEALTH_NODE_PORT));
        let deployment: Deployment = typed(
            objects
                .iter()
                .find(|o| o.types.as_ref().unwrap().kind == "Deployment")
                .unwrap(),
        );
        let container = &deployment.spec.unwrap().template.spec.unwrap().containers[0];
        assert!(
            container
                .args
                .as_ref()
                .unwrap()
                .contains(&"-enable-custom-resources=false".to_owned())
        );
        let probe = container
            .readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(probe.path.as_deref(), Some(HEALTH_PATH));
    }

    #[test]
    fn the_site_ingress_host_is_the_load_balancer() {
        let objects = deploy_site(&site()).unwrap();
        let ingress: k8s_openapi::api::networking::v1::Ingress = typed(
            objects
                .iter()
                .find(|o| o.types.as_ref().unwrap().kind == "Ingress")
                .unwrap(),
        );
        let spec = ingress.spec.unwrap();
        assert_eq!(spec.ingress_class_name.as_deref(), Some("nginx"));
        assert_eq!(
            spec.rules.unwrap()[0].host.as_deref(),
            Some(site().public_host.as_str())
        );
        let deployment: Deployment = typed(
            objects
                .iter()
                .find(|o| o.types.as_ref().unwrap().kind == "Deployment")
                .unwrap(),
        );
        let spec = deployment.spec.unwrap();
        assert_eq!(spec.replicas, Some(2));
        let container = &spec.template.spec.unwrap().containers[0];
        assert_eq!(
            container.image.as_deref(),
            Some("ghcr.io/kdeploy/web:0.1.0")
        );
        assert!(container.readiness_probe.is_some() && container.liveness_probe.is_some());
    }

    #[test]
    fn values_that_could_break_the_yaml_are_refused() {
        let bad_host = SiteValues {
            public_host: "x\"\n  evil: true".into(),
            ..site()
        };
        assert!(matches!(
            deploy_site(&bad_host),
            Err(ManifestError::Value {
                field: "public_host",
                ..
            })
        ));
        let bad_image = SiteValues {
            image: "nginx latest".into(),
            ..site()
        };
        assert!(matches!(
            deploy_site(&bad_image),
            Err(ManifestError::Value { field: "image", .. })
        ));
        assert!(
            matches!(render("a: {{MISSING}}", &[]), Err(ManifestError::Placeholder(p)) if p == "{{MISSING}}")
        );
    }
}
