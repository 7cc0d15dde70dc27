//! The compact records the mirror keeps: for each object, only the fields a page or a write
//! decision reads, decoded once when its watch event arrives.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{
    Event, LimitRange, Namespace, Pod, ResourceQuota, Secret, Service,
};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;

use crate::config::MANAGED_BY;
use crate::repositories::env::Environment;
use crate::repositories::objects::{LABEL_MANAGED_BY, RESTARTED_AT};
use crate::repositories::route::CONTROLLER_COMPONENT;
use crate::repositories::status::Replicas;

const REVISION: &str = "deployment.kubernetes.io/revision";

/// What every record carries: which object it is and which version of it was seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub uid: String,
    pub resource_version: String,
    pub created: Option<Timestamp>,
}

impl Identity {
    fn of(meta: &ObjectMeta) -> Self {
        Self {
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            resource_version: meta.resource_version.clone().unwrap_or_default(),
            created: meta.creation_timestamp.as_ref().map(|t| t.0),
        }
    }
}

fn managed(meta: &ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(LABEL_MANAGED_BY))
        .is_some_and(|v| v == MANAGED_BY)
}

fn revision(meta: &ObjectMeta) -> i64 {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// A condition that explains a failure: its reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: String,
    pub message: String,
}

/// A repository's Deployment: its spec in the site's terms and its rollout status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeploymentView {
    pub id: Identity,
    pub managed: bool,
    pub generation: i64,
    pub observed_generation: i64,
    pub revision: i64,
    pub image: String,
    pub port: i32,
    pub replicas: Replicas,
    pub restarted_at: Option<String>,
    /// `Progressing` with `ProgressDeadlineExceeded`: its message.
    pub stuck: Option<String>,
    /// `ReplicaFailure=True`.
    pub replica_failure: Option<Failure>,
    /// The repository's variables: plain values and secret names (the Deployment holds no
    /// secret value).
    pub env: Environment,
}

impl DeploymentView {
    pub fn of(d: &Deployment) -> Self {
        let spec = d.spec.as_ref();
        let template = spec.and_then(|s| s.template.spec.as_ref());
        let container = template.and_then(|t| t.containers.first());
        let status = d.status.clone().unwrap_or_default();
        let conditions = status.conditions.unwrap_or_default();
        let env = Environment::of_deployment(d);
        Self {
            env,
            id: Identity::of(&d.metadata),
            managed: managed(&d.metadata),
            generation: d.metadata.generation.unwrap_or(0),
            observed_generation: status.observed_generation.unwrap_or(0),
            revision: revision(&d.metadata),
            image: container.and_then(|c| c.image.clone()).unwrap_or_default(),
            port: container
                .and_then(|c| c.ports.as_ref()?.first())
                .map_or(80, |p| p.container_port),
            replicas: Replicas {
                desired: spec.and_then(|s| s.replicas).unwrap_or(1),
                ready: status.ready_replicas.unwrap_or(0),
                updated: status.updated_replicas.unwrap_or(0),
                total: status.replicas.unwrap_or(0),
            },
            restarted_at: spec
                .and_then(|s| s.template.metadata.as_ref()?.annotations.as_ref())
                .and_then(|a| a.get(RESTARTED_AT).cloned()),
            stuck: conditions
                .iter()
                .find(|c| {
                    c.type_ == "Progressing"
                        && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
                })
                .map(|c| c.message.clone().unwrap_or_default()),
            replica_failure: conditions
                .iter()
                .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")
                .map(|c| Failure {
                    reason: c.reason.clone().unwrap_or_else(|| "FailedCreate".into()),
                    message: c.message.clone().unwrap_or_default(),
                }),
        }
    }
}

/// A container that waits, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub reason: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodView {
    pub id: Identity,
    pub managed: bool,
    /// The `app` label: the repository the pod belongs to.
    pub app: String,
    pub phase: String,
    pub ready: bool,
    pub restarts: i32,
    pub waiting: Vec<Waiting>,
}

impl PodView {
    pub fn of(p: &Pod) -> Self {
        let status = p.status.clone().unwrap_or_default();
        let containers = status.container_statuses.unwrap_or_default();
        Self {
            id: Identity::of(&p.metadata),
            managed: managed(&p.metadata),
            app: p
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("app").cloned())
                .unwrap_or_default(),
            phase: status.phase.unwrap_or_else(|| "Pending".into()),
            ready: !containers.is_empty() && containers.iter().all(|c| c.ready),
            restarts: containers.iter().map(|c| c.restart_count).sum(),
            waiting: containers
                .iter()
                .filter_map(|c| c.state.as_ref()?.waiting.as_ref())
                .filter_map(|w| {
                    Some(Waiting {
                        reason: w.reason.clone()?,
                        message: w.message.clone().unwrap_or_default(),
                    })
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaSetView {
    pub id: Identity,
    pub app: String,
    /// The Deployment that owns it, by name.
    pub owner: Option<String>,
    pub revision: i64,
    pub image: String,
    pub replicas: i32,
    pub ready: i32,
    pub replica_failure: Option<Failure>,
}

impl ReplicaSetView {
    pub fn of(rs: &ReplicaSet) -> Self {
        let status = rs.status.clone().unwrap_or_default();
        Self {
            id: Identity::of(&rs.metadata),
            app: rs
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("app").cloned())
                .unwrap_or_default(),
            owner: rs
                .metadata
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.kind == "Deployment")
                .map(|o| o.name.clone()),
            revision: revision(&rs.metadata),
            image: rs
                .spec
                .as_ref()
                .and_then(|s| {
                    s.template
                        .as_ref()?
                        .spec
                        .as_ref()?
                        .containers
                        .first()?
                        .image
                        .clone()
                })
                .unwrap_or_default(),
            replicas: status.replicas,
            ready: status.ready_replicas.unwrap_or(0),
            replica_failure: status
                .conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")
                .map(|c| Failure {
                    reason: c.reason.clone().unwrap_or_else(|| "FailedCreate".into()),
                    message: c.message.clone().unwrap_or_default(),
                }),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceView {
    pub id: Identity,
    pub cluster_ip: Option<String>,
}

impl ServiceView {
    pub fn of(s: &Service) -> Self {
        Self {
            id: Identity::of(&s.metadata),
            cluster_ip: s.spec.as_ref().and_then(|s| s.cluster_ip.clone()),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngressView {
    pub id: Identity,
    pub managed: bool,
    /// `nginx.org/mergeable-ingress-type`, if any.
    pub mergeable: Option<String>,
    pub host: String,
    pub path: String,
}

impl IngressView {
    pub fn of(i: &Ingress) -> Self {
        let rule = i.spec.as_ref().and_then(|s| s.rules.as_ref()?.first());
        Self {
            id: Identity::of(&i.metadata),
            managed: managed(&i.metadata),
            mergeable: i
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(crate::repositories::objects::MERGEABLE_TYPE).cloned()),
            host: rule.and_then(|r| r.host.clone()).unwrap_or_default(),
            path: rule
                .and_then(|r| r.http.as_ref()?.paths.first()?.path.clone())
                .unwrap_or_default(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventView {
    pub id: Identity,
    pub kind: String,
    pub object_kind: String,
    pub object_name: String,
    pub object_uid: String,
    pub reason: String,
    pub message: String,
    pub count: i32,
    /// Written by the ingress controller (NIC).
    pub from_controller: bool,
    pub last_timestamp: Option<Timestamp>,
    pub event_time: Option<Timestamp>,
}

impl EventView {
    pub fn of(e: &Event) -> Self {
        Self {
            id: Identity::of(&e.metadata),
            kind: e.type_.clone().unwrap_or_default(),
            object_kind: e.involved_object.kind.clone().unwrap_or_default(),
            object_name: e.involved_object.name.clone().unwrap_or_default(),
            object_uid: e.involved_object.uid.clone().unwrap_or_default(),
            reason: e.reason.clone().unwrap_or_default(),
            message: e.message.clone().unwrap_or_default(),
            count: e.count.unwrap_or(1),
            from_controller: e
                .source
                .as_ref()
                .and_then(|s| s.component.as_deref())
                .is_some_and(|c| c == CONTROLLER_COMPONENT),
            last_timestamp: e.last_timestamp.as_ref().map(|t| t.0),
            event_time: e.event_time.as_ref().map(|t| t.0),
        }
    }

    /// When it last happened, for sorting and ages.
    pub fn when(&self) -> Option<Timestamp> {
        self.last_timestamp.or(self.id.created)
    }
}

/// The site's own objects of a namespace that decide what creating a repository must write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PresenceView {
    pub id: Identity,
    pub managed: bool,
}

impl PresenceView {
    pub fn namespace(n: &Namespace) -> Self {
        Self {
            id: Identity::of(&n.metadata),
            managed: managed(&n.metadata),
        }
    }
    pub fn quota(q: &ResourceQuota) -> Self {
        Self {
            id: Identity::of(&q.metadata),
            managed: managed(&q.metadata),
        }
    }
    pub fn limits(l: &LimitRange) -> Self {
        Self {
            id: Identity::of(&l.metadata),
            managed: managed(&l.metadata),
        }
    }
}

/// A Secret of the site's namespace: an account (its sign-in fields) or another of the site's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecretView {
    pub id: Identity,
    pub account: Option<AccountView>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountView {
    pub username: String,
    pub admin: bool,
    pub hash: String,
    pub failures: u32,
    pub first_failure: i64,
    pub epoch: u64,
}

impl SecretView {
    pub fn of(s: &Secret, account: impl Fn(&Secret) -> Option<AccountView>) -> Self {
        Self {
            id: Identity::of(&s.metadata),
            account: account(s),
        }
    }
}
