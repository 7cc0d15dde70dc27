//! Pure builders for the Kubernetes objects a repository and a user namespace own.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Lifecycle, LifecycleHandler, LimitRange, LimitRangeItem,
    LimitRangeSpec, Namespace, PodSpec, PodTemplateSpec, Probe, ResourceQuota, ResourceQuotaSpec,
    ResourceRequirements, Service, ServicePort, ServiceSpec, SleepAction, TCPSocketAction,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::validation::{RepositorySpec, check_dns1035_label};
use super::{env, registries};
use crate::config::{MANAGED_BY, QuotaPolicy};

pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_PART_OF: &str = "app.kubernetes.io/part-of";

/// Label on a repository's Deployment, Service and Ingress: the compose project it was deployed
/// with (`kubectl get all -l kdeploy.dev/compose-project=<name>` lists a group).
pub const LABEL_COMPOSE_PROJECT: &str = "kdeploy.dev/compose-project";
/// Label on the Deployment of a repository without a public route (`internal`): other
/// repositories of the namespace reach it by its Service name, nothing outside does.
pub const LABEL_ROUTE: &str = "kdeploy.dev/route";
pub const ROUTE_INTERNAL: &str = "internal";

/// Pod-template annotation: who made the revision (the ReplicaSet of a template keeps it).
pub const DEPLOYED_BY: &str = "kdeploy.dev/deployed-by";
/// Pod-template annotation: what the revision changed, in a short sentence.
pub const CHANGE: &str = "kdeploy.dev/change";

/// Who made a revision of the pod template and what it changed; written into the template only
/// together with a change that replaces the pods anyway, so it never causes a rollout of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    pub deployed_by: String,
    pub change: String,
}

impl Provenance {
    /// The provenance recorded in a pod template's annotations, if any.
    pub fn of_template(template: Option<&PodTemplateSpec>) -> Option<Self> {
        let annotations = template?.metadata.as_ref()?.annotations.as_ref()?;
        Some(Self {
            deployed_by: annotations.get(DEPLOYED_BY)?.clone(),
            change: annotations.get(CHANGE).cloned().unwrap_or_default(),
        })
    }

    /// Writes it into the Deployment's pod template.
    pub fn stamp(&self, deployment: &mut Deployment) {
        let Some(spec) = deployment.spec.as_mut() else {
            return;
        };
        let annotations = spec
            .template
            .metadata
            .get_or_insert_with(ObjectMeta::default)
            .annotations
            .get_or_insert_with(BTreeMap::new);
        annotations.insert(DEPLOYED_BY.to_string(), self.deployed_by.clone());
        annotations.insert(CHANGE.to_string(), self.change.clone());
    }
}

/// NIC's annotation that makes an Ingress part of a mergeable set: one `master` per host
/// (installed by the platform) and any number of `minion`s, each adding its paths.
pub const MERGEABLE_TYPE: &str = "nginx.org/mergeable-ingress-type";
/// NIC's prefix rewrite (`serviceName=<svc> rewrite=<path>`), allowed on minions.
pub const REWRITES: &str = "nginx.org/rewrites";

/// Seconds a stopping pod keeps serving before its container is asked to stop: the ingress
/// controller learns that the pod left the Service's endpoints only after the EndpointSlice
/// change reaches it and NGINX reloads, and until then it still sends requests to the pod.
pub const PRE_STOP_SLEEP_SECONDS: i64 = 5;
/// Time from the pod's deletion to SIGKILL; it covers the preStop sleep and leaves the server
/// 25 seconds after SIGTERM to finish what it is serving.
pub const TERMINATION_GRACE_SECONDS: i64 = 30;
// The grace period counts from the deletion, so the preStop sleep must fit well inside it.
const _: () = assert!(PRE_STOP_SLEEP_SECONDS < TERMINATION_GRACE_SECONDS);

const CPU_REQUEST: &str = "50m";
const MEMORY_REQUEST: &str = "64Mi";
const CPU_LIMIT: &str = "500m";
const MEMORY_LIMIT: &str = "256Mi";

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), Quantity((*v).to_string())))
        .collect()
}

/// `app: <repo>` (the selector, as in the paper) plus the recommended labels.
pub fn repository_labels(repo: &str) -> BTreeMap<String, String> {
    map(&[
        ("app", repo),
        (LABEL_NAME, repo),
        (LABEL_MANAGED_BY, MANAGED_BY),
        (LABEL_PART_OF, MANAGED_BY),
    ])
}

/// Selector of every object the site manages (repositories' Deployments, Pods, ReplicaSets).
pub fn managed_selector() -> String {
    format!("{LABEL_MANAGED_BY}={MANAGED_BY}")
}

/// The labels of a repository's own objects: [`repository_labels`], its compose project and,
/// on an internal one, that it has no public route.
fn spec_labels(spec: &RepositorySpec) -> BTreeMap<String, String> {
    let mut labels = repository_labels(&spec.name);
    if let Some(group) = &spec.group {
        labels.insert(LABEL_COMPOSE_PROJECT.to_string(), group.clone());
    }
    if !spec.public {
        labels.insert(LABEL_ROUTE.to_string(), ROUTE_INTERNAL.to_string());
    }
    labels
}

fn repository_meta(namespace: &str, spec: &RepositorySpec) -> ObjectMeta {
    ObjectMeta {
        name: Some(spec.name.clone()),
        namespace: Some(namespace.to_string()),
        labels: Some(spec_labels(spec)),
        ..ObjectMeta::default()
    }
}

/// The user's namespace, labelled so the platform can tell it from its own.
pub fn namespace(name: &str) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(map(&[
                (LABEL_MANAGED_BY, MANAGED_BY),
                (LABEL_PART_OF, MANAGED_BY),
                ("kdeploy.dev/owner", name),
            ])),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

pub fn resource_quota(namespace: &str, policy: &QuotaPolicy) -> ResourceQuota {
    let pods = policy.pods.to_string();
    ResourceQuota {
        metadata: ObjectMeta {
            name: Some("kdeploy".into()),
            namespace: Some(namespace.to_string()),
            labels: Some(map(&[(LABEL_MANAGED_BY, MANAGED_BY)])),
            ..ObjectMeta::default()
        },
        spec: Some(ResourceQuotaSpec {
            hard: Some(quantities(&[
                ("pods", &pods),
                ("requests.cpu", &policy.requests_cpu),
                ("requests.memory", &policy.requests_memory),
                ("limits.cpu", &policy.limits_cpu),
                ("limits.memory", &policy.limits_memory),
            ])),
            ..ResourceQuotaSpec::default()
        }),
        ..ResourceQuota::default()
    }
}

/// Defaults for containers that do not say what they need, so the quota can account for them.
pub fn limit_range(namespace: &str) -> LimitRange {
    LimitRange {
        metadata: ObjectMeta {
            name: Some("kdeploy".into()),
            namespace: Some(namespace.to_string()),
            labels: Some(map(&[(LABEL_MANAGED_BY, MANAGED_BY)])),
            ..ObjectMeta::default()
        },
        spec: Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".into(),
                default: Some(quantities(&[("cpu", CPU_LIMIT), ("memory", MEMORY_LIMIT)])),
                default_request: Some(quantities(&[
                    ("cpu", CPU_REQUEST),
                    ("memory", MEMORY_REQUEST),
                ])),
                ..LimitRangeItem::default()
            }],
        }),
    }
}

/// The restart mark and the digest of the Secret: a change to either replaces the pods.
fn template_annotations(
    spec: &RepositorySpec,
    restarted_at: Option<&str>,
) -> Option<BTreeMap<String, String>> {
    let annotations: BTreeMap<String, String> = restarted_at
        .map(|at| (RESTARTED_AT.to_string(), at.to_string()))
        .into_iter()
        .chain(
            spec.env
                .secret_digest
                .as_ref()
                .filter(|_| spec.env.has_secrets())
                .map(|d| (env::SECRET_DIGEST.to_string(), d.clone())),
        )
        .chain(
            spec.pull
                .as_ref()
                .map(|p| (registries::DIGEST.to_string(), p.digest.clone())),
        )
        .collect();
    (!annotations.is_empty()).then_some(annotations)
}

/// The Deployment of a repository; `restarted_at` is kept across edits so they do not restart pods.
pub fn deployment(
    namespace: &str,
    spec: &RepositorySpec,
    restarted_at: Option<&str>,
) -> Deployment {
    let labels = repository_labels(&spec.name);
    Deployment {
        metadata: repository_meta(namespace, spec),
        spec: Some(DeploymentSpec {
            replicas: Some(spec.replicas),
            revision_history_limit: Some(10),
            selector: LabelSelector {
                match_labels: Some(map(&[("app", &spec.name)])),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::Int(1)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: template_annotations(spec, restarted_at),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: spec.name.clone(),
                        image: Some(spec.image.clone()),
                        env: env::container_env(&spec.name, &spec.env),
                        image_pull_policy: Some(
                            if spec.pulls_always() {
                                "Always"
                            } else {
                                "IfNotPresent"
                            }
                            .into(),
                        ),
                        ports: Some(vec![ContainerPort {
                            container_port: spec.port,
                            name: Some("http".into()),
                            protocol: Some("TCP".into()),
                            ..ContainerPort::default()
                        }]),
                        readiness_probe: Some(Probe {
                            tcp_socket: Some(TCPSocketAction {
                                port: IntOrString::Int(spec.port),
                                ..TCPSocketAction::default()
                            }),
                            period_seconds: Some(5),
                            failure_threshold: Some(3),
                            ..Probe::default()
                        }),
                        resources: Some(ResourceRequirements {
                            requests: Some(quantities(&[
                                ("cpu", CPU_REQUEST),
                                ("memory", MEMORY_REQUEST),
                            ])),
                            limits: Some(quantities(&[
                                ("cpu", CPU_LIMIT),
                                ("memory", MEMORY_LIMIT),
                            ])),
                            ..ResourceRequirements::default()
                        }),
                        // The `sleep` action (GA in Kubernetes 1.34) needs no shell in the image.
                        lifecycle: Some(Lifecycle {
                            pre_stop: Some(LifecycleHandler {
                                sleep: Some(SleepAction {
                                    seconds: PRE_STOP_SLEEP_SECONDS,
                                }),
                                ..LifecycleHandler::default()
                            }),
                            ..Lifecycle::default()
                        }),
                        ..Container::default()
                    }],
                    termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
                    image_pull_secrets: spec.pull.as_ref().map(|_| registries::pull_secrets()),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// Makes the Service and Ingress garbage when their Deployment goes, so a delete never leaves them.
pub fn owned_by(deployment_name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        name: deployment_name.to_string(),
        uid: uid.to_string(),
        controller: Some(false),
        block_owner_deletion: Some(false),
    }
}

pub fn service(namespace: &str, spec: &RepositorySpec, owner: Option<OwnerReference>) -> Service {
    let mut metadata = repository_meta(namespace, spec);
    metadata.owner_references = owner.map(|o| vec![o]);
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(map(&[("app", &spec.name)])),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: spec.port,
                target_port: Some(IntOrString::Int(spec.port)),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The repository's path on the public host; NIC serves it as a prefix location and redirects
/// `/<namespace>/<repo>` to it.
pub fn ingress_path(namespace: &str, repo: &str) -> String {
    format!("/{namespace}/{repo}/")
}

/// Where a repository is reached from outside: the public host, under the platform's ingress class.
#[derive(Debug, Clone, Copy)]
pub struct PublicRoute<'a> {
    pub host: &'a str,
    pub ingress_class: &'a str,
}

/// A name that may not go into an Ingress's path or annotations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {name:?} cannot be routed: {reason}")]
pub struct UnroutableName {
    pub what: &'static str,
    pub name: String,
    pub reason: String,
}

/// DNS-1123 label: what a namespace name is.
fn check_dns1123_label(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err("not a DNS-1123 label (lowercase letters, digits and '-', at most 63)".into())
    }
}

/// The repository's Ingress: a NIC minion on the public host (the platform's master Ingress
/// `kdeploy-host` owns the host), with the path `/<namespace>/<repo>/` rewritten to `/`.
///
/// Both names go into the path and into the `nginx.org/rewrites` value, which NIC copies into
/// NGINX's configuration, so they are checked here again whatever the caller did: a label has no
/// space, quote, `;`, `{` or `$` to break out of that value (CVE-2026-24512).
pub fn ingress(
    namespace: &str,
    spec: &RepositorySpec,
    route: PublicRoute,
    owner: Option<OwnerReference>,
) -> Result<Ingress, UnroutableName> {
    check_dns1123_label(namespace).map_err(|reason| UnroutableName {
        what: "namespace",
        name: namespace.to_string(),
        reason,
    })?;
    check_dns1035_label(&spec.name).map_err(|reason| UnroutableName {
        what: "repository",
        name: spec.name.clone(),
        reason,
    })?;
    let mut metadata = repository_meta(namespace, spec);
    metadata.owner_references = owner.map(|o| vec![o]);
    let rewrites = format!("serviceName={} rewrite=/", spec.name);
    metadata.annotations = Some(map(&[(MERGEABLE_TYPE, "minion"), (REWRITES, &rewrites)]));
    Ok(Ingress {
        metadata,
        spec: Some(IngressSpec {
            ingress_class_name: Some(route.ingress_class.into()),
            rules: Some(vec![IngressRule {
                host: Some(route.host.to_string()),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some(ingress_path(namespace, &spec.name)),
                        path_type: "Prefix".into(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: spec.name.clone(),
                                port: Some(ServiceBackendPort {
                                    number: Some(spec.port),
                                    ..ServiceBackendPort::default()
                                }),
                            }),
                            ..IngressBackend::default()
                        },
                    }],
                }),
            }]),
            ..IngressSpec::default()
        }),
        ..Ingress::default()
    })
}

#[cfg(test)]
pub mod fixtures {
    use crate::repositories::validation::RepositorySpec;

    /// `repo("hello").image("nginx:1.27").replicas(3)`
    pub fn repo(name: &str) -> RepositorySpec {
        RepositorySpec {
            name: name.into(),
            image: "nginx:latest".into(),
            port: 80,
            replicas: 1,
            env: Default::default(),
            pull: None,
            public: true,
            group: None,
        }
    }

    pub trait RepositorySpecExt {
        fn image(self, image: &str) -> Self;
        fn port(self, port: i32) -> Self;
        fn replicas(self, replicas: i32) -> Self;
    }

    impl RepositorySpecExt for RepositorySpec {
        fn image(mut self, image: &str) -> Self {
            self.image = image.into();
            self
        }
        fn port(mut self, port: i32) -> Self {
            self.port = port;
            self
        }
        fn replicas(mut self, replicas: i32) -> Self {
            self.replicas = replicas;
            self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{RepositorySpecExt, repo};
    use super::*;

    #[test]
    fn deployment_has_labels_probe_strategy_and_resources() {
        let d = deployment("alice", &repo("hello").port(8080).replicas(3), None);
        assert_eq!(d.metadata.name.as_deref(), Some("hello"));
        assert_eq!(d.metadata.namespace.as_deref(), Some("alice"));
        let labels = d.metadata.labels.clone().unwrap();
        assert_eq!(labels["app"], "hello");
        assert_eq!(labels[LABEL_NAME], "hello");
        assert_eq!(labels[LABEL_MANAGED_BY], "kdeploy");
        assert_eq!(labels[LABEL_PART_OF], "kdeploy");
        let spec = d.spec.unwrap();
        assert_eq!(spec.replicas, Some(3));
        assert_eq!(spec.selector.match_labels.unwrap()["app"], "hello");
        let strategy = spec.strategy.unwrap();
        assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
        let rolling = strategy.rolling_update.unwrap();
        assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(0)));
        assert_eq!(rolling.max_surge, Some(IntOrString::Int(1)));
        let template = spec.template;
        assert_eq!(
            template.metadata.clone().unwrap().labels.unwrap()["app"],
            "hello"
        );
        assert!(template.metadata.unwrap().annotations.is_none());
        let container = &template.spec.unwrap().containers[0];
        assert_eq!(container.name, "hello");
        assert_eq!(container.image.as_deref(), Some("nginx:latest"));
        assert_eq!(container.image_pull_policy.as_deref(), Some("Always"));
        assert_eq!(container.ports.as_ref().unwrap()[0].container_port, 8080);
        let probe = container.readiness_probe.as_ref().unwrap();
        assert_eq!(
            probe.tcp_socket.as_ref().unwrap().port,
            IntOrString::Int(8080)
        );
        let requests = container
            .resources
            .as_ref()
            .unwrap()
            .requests
            .as_ref()
            .unwrap();
        assert!(requests.contains_key("cpu") && requests.contains_key("memory"));
    }

    #[test]
    fn pinned_tags_are_not_pulled_always_and_restarts_are_kept() {
        let d = deployment(
            "alice",
            &repo("hello").image("nginx:1.27"),
            Some("2026-01-01T00:00:00Z"),
        );
        let template = d.spec.unwrap().template;
        let container = &template.spec.unwrap().containers[0];
        assert_eq!(container.image_pull_policy.as_deref(), Some("IfNotPresent"));
        assert_eq!(
            template.metadata.unwrap().annotations.unwrap()[RESTARTED_AT],
            "2026-01-01T00:00:00Z"
        );
    }

    #[test]
    fn service_targets_the_container_port() {
        let s = service(
            "alice",
            &repo("hello").port(3000),
            Some(owned_by("hello", "uid-1")),
        );
        let spec = s.spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(spec.selector.unwrap()["app"], "hello");
        let port = &spec.ports.unwrap()[0];
        assert_eq!(port.port, 3000);
        assert_eq!(port.target_port, Some(IntOrString::Int(3000)));
        assert_eq!(s.metadata.owner_references.unwrap()[0].uid, "uid-1");
        assert_eq!(s.metadata.labels.unwrap()[LABEL_MANAGED_BY], "kdeploy");
    }

    #[test]
    fn ingress_is_a_minion_with_the_prefix_rewrite_on_the_public_host() {
        let url = crate::config::PublicUrl::parse("http://kdeploy.localhost:8080").unwrap();
        let route = PublicRoute {
            host: url.host(),
            ingress_class: "nginx",
        };
        let i = ingress(
            "alice",
            &repo("hello").port(3000),
            route,
            Some(owned_by("hello", "uid-1")),
        )
        .unwrap();
        let annotations = i.metadata.annotations.unwrap();
        assert_eq!(
            annotations,
            BTreeMap::from([
                (MERGEABLE_TYPE.to_string(), "minion".to_string()),
                (
                    REWRITES.to_string(),
                    "serviceName=hello rewrite=/".to_string()
                ),
            ]),
            "only annotations NIC allows on a minion, and no regex form"
        );
        assert_eq!(i.metadata.name.as_deref(), Some("hello"));
        assert_eq!(i.metadata.namespace.as_deref(), Some("alice"));
        assert_eq!(i.metadata.labels.unwrap()["app"], "hello");
        let owner = &i.metadata.owner_references.unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Deployment", "uid-1")
        );
        let spec = i.spec.unwrap();
        assert_eq!(spec.ingress_class_name.as_deref(), Some("nginx"));
        let rules = spec.rules.unwrap();
        assert_eq!(rules.len(), 1, "a mergeable Ingress has exactly one host");
        assert_eq!(
            rules[0].host.as_deref(),
            Some("kdeploy.localhost"),
            "the host without the port"
        );
        let paths = &rules[0].http.as_ref().unwrap().paths;
        assert_eq!(paths.len(), 1);
        assert_eq!(paths[0].path.as_deref(), Some("/alice/hello/"));
        assert_eq!(paths[0].path_type, "Prefix");
        let backend = paths[0].backend.service.as_ref().unwrap();
        assert_eq!(backend.name, "hello");
        assert_eq!(backend.port.as_ref().unwrap().number, Some(3000));
    }

    #[test]
    fn names_that_could_break_out_of_an_annotation_are_refused() {
        let route = PublicRoute {
            host: "lb.example.com",
            ingress_class: "nginx",
        };
        for name in [
            "hello rewrite=/etc",
            "a;b",
            "x\"y",
            "${host}",
            "Hello",
            "",
            "-x",
        ] {
            let e = ingress("alice", &repo(name), route, None).unwrap_err();
            assert_eq!(e.what, "repository", "{name:?}");
        }
        for ns in ["al ice", "alice;", "Alice", "", "a-"] {
            let e = ingress(ns, &repo("hello"), route, None).unwrap_err();
            assert_eq!(e.what, "namespace", "{ns:?}");
        }
        assert!(ingress("7eleven", &repo("a1"), route, None).is_ok());
    }

    #[test]
    fn pods_keep_serving_through_the_ingress_propagation_window() {
        let d = deployment("alice", &repo("hello"), None);
        let pod = d.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.termination_grace_period_seconds, Some(30));
        let pre_stop = pod.containers[0]
            .lifecycle
            .as_ref()
            .unwrap()
            .pre_stop
            .as_ref()
            .unwrap();
        assert_eq!(pre_stop.sleep.as_ref().unwrap().seconds, 5);
        assert!(pre_stop.exec.is_none(), "no shell needed in the image");
    }

    #[test]
    fn namespace_quota_and_limits() {
        let ns = namespace("alice");
        assert_eq!(ns.metadata.labels.unwrap()[LABEL_MANAGED_BY], "kdeploy");
        let q = resource_quota("alice", &QuotaPolicy::default());
        assert_eq!(q.spec.unwrap().hard.unwrap()["pods"], Quantity("20".into()));
        let l = limit_range("alice");
        assert_eq!(l.spec.unwrap().limits[0].type_, "Container");
    }
}
