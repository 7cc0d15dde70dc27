//! Reading repositories back: what the list and the detail page show, in the developer's words,
//! built from the mirror (no call to the API server).

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::Serialize;

use super::registries;
use super::route::{RouteNotice, RouteVerdict};
use super::status::{self, Replicas, RepositoryState};
use super::store::{RepositoryStore, StoreError};
use crate::mirror::compact::{DeploymentView, EventView, IngressView, PodView, Uid};
use crate::mirror::{Contents, NamespaceView};

#[derive(Debug, Clone, Serialize)]
pub struct RepositorySummary {
    pub name: String,
    pub image: String,
    pub port: i32,
    pub replicas: Replicas,
    #[serde(flatten)]
    pub state: RepositoryState,
    pub advice: Option<String>,
    pub age: String,
    /// The public URL of the repository, present once a pod is ready and the ingress controller
    /// has accepted its route (so the link works).
    pub endpoint: Option<String>,
    /// The ingress controller's verdict on the repository's Ingress.
    pub route: RouteVerdict,
    /// Plain variables with their values, secret variables by name only.
    pub environment: super::env::EnvironmentView,
    /// Whether the repository's webhook is on; its URL is shown only when it is made.
    pub webhook: bool,
    /// The compose project it was deployed with, if any.
    pub compose_project: Option<String>,
}

/// The list page: the user's repositories, and refused Ingresses of theirs that are no
/// repository's own.
#[derive(Debug, Clone, Serialize)]
pub struct RepositoryOverview {
    pub repositories: Vec<RepositorySummary>,
    pub notices: Vec<RouteNotice>,
    /// Set once the mirror is stale (the cluster has not been answering): the moment it was
    /// last known current, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_of: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PodInfo {
    pub name: String,
    pub phase: String,
    pub ready: bool,
    pub restarts: i32,
    pub reason: Option<String>,
    pub age: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventInfo {
    pub kind: String,
    pub reason: String,
    pub message: String,
    pub object: String,
    pub count: i32,
    pub age: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RevisionInfo {
    pub revision: i64,
    pub replica_set: String,
    pub image: String,
    /// The image's digest as the running pods report it (`sha256:...`); known for the current
    /// revision once a pod of it has started, else `None`.
    pub digest: Option<String>,
    pub replicas: i32,
    pub ready: i32,
    pub current: bool,
    /// When the revision was made, RFC 3339.
    pub created: Option<String>,
    pub age: String,
    /// The user who made the revision; `None` for revisions made before the site recorded it.
    pub deployed_by: Option<String>,
    /// What the revision changed ("image nginx:1.25 → nginx:1.27", "redeploy", "variables",
    /// "rollback to revision 3").
    pub change: Option<String>,
}

/// The digest in a container's `imageID` (`docker-pullable://nginx@sha256:…`, `sha256:…`).
fn digest_of(image_id: &str) -> Option<String> {
    image_id
        .find("sha256:")
        .map(|at| image_id[at..].to_string())
}

#[derive(Debug, Clone, Serialize)]
pub struct ObjectInfo {
    pub kind: &'static str,
    pub name: String,
    pub status: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RepositoryDetail {
    #[serde(flatten)]
    pub summary: RepositorySummary,
    pub namespace: String,
    pub pods: Vec<PodInfo>,
    pub events: Vec<EventInfo>,
    pub history: Vec<RevisionInfo>,
    pub objects: Vec<ObjectInfo>,
    /// As in [`RepositoryOverview::as_of`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_of: Option<String>,
}

fn pod_info(pod: &PodView) -> PodInfo {
    PodInfo {
        name: pod.id.name.to_string(),
        phase: pod.phase.to_string(),
        ready: pod.ready,
        restarts: pod.restarts,
        reason: pod.waiting.first().map(|w| w.reason.to_string()),
        age: status::age(pod.id.created.get()),
    }
}

/// Whether an Ingress is the route of the repository `name` (the site made it, under that name).
fn is_route_of(ingress: &IngressView, name: &str) -> bool {
    &*ingress.id.name == name && ingress.managed
}

/// The namespace's Events about Ingresses: where the controller's verdicts are.
fn ingress_events(ns: &NamespaceView) -> Vec<&EventView> {
    ns.events
        .values()
        .filter(|e| e.object_kind == "Ingress" && e.from_controller)
        .collect()
}

/// The namespace's repositories: its managed Deployments.
fn repositories(ns: &NamespaceView) -> impl Iterator<Item = &DeploymentView> {
    ns.deployments.values().filter(|d| d.managed)
}

impl RepositoryStore {
    /// One repository's row; `route` is its Ingress (if any) and `events` the namespace's
    /// Ingress Events, where the controller's verdict is.
    fn summary(
        &self,
        namespace: &str,
        deployment: &DeploymentView,
        own_pods: &[&PodView],
        route: Option<&IngressView>,
        events: &[&EventView],
    ) -> RepositorySummary {
        let name = deployment.id.name.to_string();
        let own_pods = own_pods.iter().copied();
        let public_url = &self.config.public_url;
        let route = if deployment.internal {
            RouteVerdict::Internal
        } else {
            RouteVerdict::of(route, events.iter().copied(), public_url.host())
        };
        let state = status::derive_state(deployment, own_pods, &route);
        let replicas = deployment.replicas;
        let endpoint = (replicas.ready > 0 && route.is_accepted())
            .then(|| public_url.endpoint(namespace, &name));
        let advice = match (&state, &route) {
            (
                RepositoryState::Failing { reason, .. },
                RouteVerdict::Failed {
                    reason: refused,
                    advice,
                    ..
                },
            ) if reason == refused => Some(advice.clone()),
            (RepositoryState::Failing { reason, message }, _)
                if matches!(reason.as_str(), "ErrImagePull" | "ImagePullBackOff")
                    && registries::says_unauthorised(message) =>
            {
                Some(registries::pull_advice(
                    &deployment.image,
                    deployment.registry_login,
                ))
            }
            _ => state.advice(),
        };
        RepositorySummary {
            image: deployment.image.to_string(),
            port: deployment.port,
            advice,
            state,
            replicas,
            age: status::age(deployment.id.created.get()),
            endpoint,
            route,
            environment: deployment.env().view(),
            webhook: deployment.webhook,
            compose_project: deployment.group().map(|g| g.as_str().to_string()),
            name,
        }
    }

    /// The mirror's "as of" time, once it is stale.
    fn as_of(&self) -> Option<String> {
        self.mirror.as_of().map(|t| t.to_string())
    }

    /// The repositories of a namespace with their states, and notices about refused Ingresses
    /// that belong to no repository; read from the mirror.
    pub async fn overview(&self, namespace: &str) -> Result<RepositoryOverview, StoreError> {
        self.mirror_synced().await?;
        let contents = self.mirror.read();
        Ok(self.overview_of(&contents, namespace))
    }

    fn overview_of(&self, contents: &Contents, namespace: &str) -> RepositoryOverview {
        let empty = NamespaceView::default();
        let ns = contents.namespace(namespace).unwrap_or(&empty);
        // Pods grouped by repository and verdicts by Ingress in one pass each, so a page costs
        // repositories + pods + events rather than repositories x (pods + events).
        let mut pods_of: HashMap<&str, Vec<&PodView>> = HashMap::new();
        for pod in ns.pods.values().filter(|p| p.managed) {
            pods_of.entry(&*pod.app).or_default().push(pod);
        }
        let mut verdicts_of: HashMap<&Uid, Vec<&EventView>> = HashMap::new();
        for event in ingress_events(ns) {
            verdicts_of
                .entry(&event.object_uid)
                .or_default()
                .push(event);
        }
        let verdicts = |ingress: Option<&IngressView>| -> &[&EventView] {
            ingress
                .and_then(|i| verdicts_of.get(&i.id.uid))
                .map_or(&[], Vec::as_slice)
        };
        let mut rows: Vec<RepositorySummary> = repositories(ns)
            .map(|d| {
                let route = ns.ingresses.get(&d.id.name).filter(|i| i.managed);
                let pods = pods_of.get(&*d.id.name).map_or(&[][..], Vec::as_slice);
                self.summary(namespace, d, pods, route, verdicts(route))
            })
            .collect();
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        let host = self.config.public_url.host();
        let routed: HashSet<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        let notices: Vec<RouteNotice> = ns
            .ingresses
            .values()
            .filter(|i| !(i.managed && routed.contains(&*i.id.name)))
            .filter_map(|i| RouteNotice::of(i, verdicts(Some(i)).iter().copied(), namespace, host))
            .collect();
        RepositoryOverview {
            repositories: rows,
            notices,
            as_of: self.as_of(),
        }
    }

    pub async fn repository(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<RepositoryDetail, StoreError> {
        self.mirror_synced().await?;
        let contents = self.mirror.read();
        self.repository_of(&contents, namespace, name)
            .ok_or_else(|| StoreError::NotFound(name.to_string()))
    }

    fn repository_of(
        &self,
        contents: &Contents,
        namespace: &str,
        name: &str,
    ) -> Option<RepositoryDetail> {
        let ns = contents.namespace(namespace)?;
        let deployment = ns.deployments.get(name).filter(|d| d.managed)?;
        let pods: Vec<&PodView> = ns
            .pods
            .values()
            .filter(|p| p.managed && &*p.app == name)
            .collect();
        let mut replica_sets: Vec<_> = ns
            .replica_sets
            .values()
            .filter(|rs| &*rs.app == name && rs.owner.as_deref() == Some(name))
            .collect();
        replica_sets.sort_by_key(|rs| std::cmp::Reverse(rs.revision));
        let service = ns.services.get(name);
        let ingress = ns.ingresses.get(name).filter(|i| is_route_of(i, name));
        let events = ingress_events(ns);
        let mut summary = self.summary(namespace, deployment, &pods, ingress, &events);
        // Kubernetes copies a ReplicaSet's ReplicaFailure to its Deployment, but not every
        // cluster (or simulator) does: the newest ReplicaSet says it first-hand.
        if !matches!(summary.state, RepositoryState::Failing { .. })
            && let Some(f) = replica_sets
                .first()
                .and_then(|rs| rs.replica_failure.clone())
        {
            summary.state = RepositoryState::Failing {
                reason: f.reason.into(),
                message: f.message.into(),
            };
            summary.advice = summary.state.advice();
        }
        // The Deployment names its current revision; until the controller has written it, the
        // newest ReplicaSet is the current one.
        let current_revision = Some(deployment.revision)
            .filter(|r| *r > 0 && replica_sets.iter().any(|rs| rs.revision == *r))
            .or_else(|| replica_sets.first().map(|rs| rs.revision));
        let history = replica_sets
            .iter()
            .map(|rs| {
                let current = Some(rs.revision) == current_revision;
                let digest = current
                    .then(|| {
                        pods.iter()
                            .filter(|p| {
                                p.template_hash.is_some() && p.template_hash == rs.template_hash
                            })
                            .find_map(|p| p.image_id.as_deref().and_then(digest_of))
                    })
                    .flatten();
                RevisionInfo {
                    revision: rs.revision,
                    replica_set: rs.id.name.to_string(),
                    image: rs.image.to_string(),
                    digest,
                    replicas: rs.replicas,
                    ready: rs.ready,
                    current,
                    created: rs.id.created.get().map(|t| t.to_string()),
                    age: status::age(rs.id.created.get()),
                    deployed_by: rs.provenance.as_ref().map(|p| p.deployed_by.clone()),
                    change: rs
                        .provenance
                        .as_ref()
                        .map(|p| p.change.clone())
                        .filter(|c| !c.is_empty()),
                }
            })
            .collect();

        let mut related: BTreeSet<&str> = BTreeSet::from([name]);
        related.extend(replica_sets.iter().map(|rs| &*rs.id.name));
        related.extend(pods.iter().map(|p| &*p.id.name));
        let mut recent: Vec<&EventView> = ns
            .events
            .values()
            .filter(|e| related.contains(e.object_name()))
            .collect();
        recent.sort_by_key(|e| std::cmp::Reverse(e.when().map_or(0, |t| t.as_second())));
        recent.truncate(20);
        let events = recent
            .iter()
            .map(|e| EventInfo {
                kind: e.kind.to_string(),
                reason: e.reason.to_string(),
                message: e.message.to_string(),
                object: format!("{}/{}", e.object_kind, e.object_name()),
                count: e.count,
                age: status::age(e.when()),
            })
            .collect();

        let r = summary.replicas;
        let mut objects = vec![ObjectInfo {
            kind: "Deployment",
            name: name.to_string(),
            status: format!(
                "{} of {} ready, {} up to date",
                r.ready, r.desired, r.updated
            ),
        }];
        objects.push(ObjectInfo {
            kind: "Service",
            name: name.to_string(),
            status: match service {
                Some(s) => format!(
                    "ClusterIP {}",
                    s.cluster_ip.clone().unwrap_or_else(|| "pending".into())
                ),
                None => "missing: redeploy to recreate it".into(),
            },
        });
        // An internal repository has no Ingress by design.
        let internal = matches!(summary.route, RouteVerdict::Internal);
        objects.extend((!internal).then(|| ObjectInfo {
            kind: "Ingress",
            name: name.to_string(),
            status: match ingress {
                Some(i) => format!(
                    "minion for {}, path {}; {}",
                    i.host,
                    i.path,
                    summary.route.summary()
                ),
                None => "missing: redeploy to recreate it".into(),
            },
        }));

        Some(RepositoryDetail {
            summary,
            namespace: namespace.to_string(),
            pods: pods.iter().map(|p| pod_info(p)).collect(),
            events,
            history,
            objects,
            as_of: self.as_of(),
        })
    }
}
