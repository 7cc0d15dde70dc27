//! Reading repositories back: what the list and the detail page show, in the developer's words.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::ListParams;
use serde::Serialize;

use super::objects;
use super::route::{RouteNotice, RouteVerdict};
use super::status::{self, Replicas, RepositoryState};
use super::store::{RepositoryStore, StoreError, is_managed, spec_of};

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
}

/// The list page: the user's repositories, and refused Ingresses of theirs that are no
/// repository's own.
#[derive(Debug, Clone, Serialize)]
pub struct RepositoryOverview {
    pub repositories: Vec<RepositorySummary>,
    pub notices: Vec<RouteNotice>,
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
    pub replicas: i32,
    pub ready: i32,
    pub current: bool,
    pub age: String,
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
}

fn pod_belongs(pod: &Pod, repo: &str) -> bool {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("app"))
        .is_some_and(|a| a == repo)
}

fn pod_info(pod: &Pod) -> PodInfo {
    let status = pod.status.clone().unwrap_or_default();
    let containers = status.container_statuses.clone().unwrap_or_default();
    let reason = containers
        .iter()
        .find_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone());
    PodInfo {
        name: pod.metadata.name.clone().unwrap_or_default(),
        phase: status.phase.clone().unwrap_or_else(|| "Pending".into()),
        ready: !containers.is_empty() && containers.iter().all(|c| c.ready),
        restarts: containers.iter().map(|c| c.restart_count).sum(),
        reason,
        age: status::age(pod.metadata.creation_timestamp.as_ref()),
    }
}

fn rs_revision(rs: &ReplicaSet) -> i64 {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("deployment.kubernetes.io/revision"))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// Whether an Ingress is the route of the repository `name` (the site made it, under that name).
fn is_route_of(ingress: &Ingress, name: &str) -> bool {
    ingress.metadata.name.as_deref() == Some(name) && is_managed(&ingress.metadata)
}

impl RepositoryStore {
    /// One repository's row; `route` is its Ingress (if any) and `events` the namespace's
    /// Ingress Events, where the controller's verdict is.
    fn summary(
        &self,
        namespace: &str,
        deployment: &Deployment,
        pods: &[Pod],
        route: Option<&Ingress>,
        events: &[Event],
    ) -> RepositorySummary {
        let name = deployment.metadata.name.clone().unwrap_or_default();
        let spec = spec_of(deployment);
        let own_pods: Vec<Pod> = pods
            .iter()
            .filter(|p| pod_belongs(p, &name))
            .cloned()
            .collect();
        let public_url = &self.config.public_url;
        let route = RouteVerdict::of(route, events, public_url.host());
        let state = status::derive_state(deployment, &own_pods, &route);
        let replicas = status::replicas(deployment);
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
            _ => state.advice(),
        };
        RepositorySummary {
            image: spec.as_ref().map(|s| s.image.clone()).unwrap_or_default(),
            port: spec.as_ref().map_or(0, |s| s.port),
            advice,
            state,
            replicas,
            age: status::age(deployment.metadata.creation_timestamp.as_ref()),
            endpoint,
            route,
            name,
        }
    }

    /// The namespace's Events about Ingresses, in one list call: the controller's verdicts.
    async fn ingress_events(&self, namespace: &str) -> Result<Vec<Event>, StoreError> {
        let about_ingresses = ListParams::default().fields("involvedObject.kind=Ingress");
        Ok(self
            .api::<Event>(namespace)
            .list(&about_ingresses)
            .await?
            .items)
    }

    /// The repositories of a namespace with their states, and notices about refused Ingresses
    /// that belong to no repository; four list calls whatever the number of repositories.
    pub async fn overview(&self, namespace: &str) -> Result<RepositoryOverview, StoreError> {
        let selector = ListParams::default().labels(&objects::managed_selector());
        let deployments = self.api::<Deployment>(namespace).list(&selector).await?;
        let pods = self.api::<Pod>(namespace).list(&selector).await?;
        // Every Ingress, not only the site's: a hand-made one may be what the controller refused.
        let ingresses = self
            .api::<Ingress>(namespace)
            .list(&ListParams::default())
            .await?
            .items;
        let events = self.ingress_events(namespace).await?;
        let mut rows: Vec<RepositorySummary> = deployments
            .items
            .iter()
            .map(|d| {
                let name = d.metadata.name.as_deref().unwrap_or_default();
                let route = ingresses.iter().find(|i| is_route_of(i, name));
                self.summary(namespace, d, &pods.items, route, &events)
            })
            .collect();
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        let host = self.config.public_url.host();
        let mut notices: Vec<RouteNotice> = ingresses
            .iter()
            .filter(|i| !rows.iter().any(|r| is_route_of(i, &r.name)))
            .filter_map(|i| RouteNotice::of(i, &events, namespace, host))
            .collect();
        notices.sort_by(|a, b| a.ingress.cmp(&b.ingress));
        Ok(RepositoryOverview {
            repositories: rows,
            notices,
        })
    }

    pub async fn repository(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<RepositoryDetail, StoreError> {
        let deployment = self.managed_deployment(namespace, name).await?;
        let by_app = ListParams::default().labels(&format!("app={name}"));
        let pods: Vec<Pod> = self
            .api::<Pod>(namespace)
            .list(&by_app)
            .await?
            .items
            .into_iter()
            .filter(|p| is_managed(&p.metadata))
            .collect();
        let mut replica_sets: Vec<ReplicaSet> = self
            .api::<ReplicaSet>(namespace)
            .list(&by_app)
            .await?
            .items
            .into_iter()
            .filter(|rs| {
                rs.metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.kind == "Deployment" && o.name == name)
            })
            .collect();
        replica_sets.sort_by_key(|rs| std::cmp::Reverse(rs_revision(rs)));
        let service = self.api::<Service>(namespace).get_opt(name).await?;
        let ingress = self
            .api::<Ingress>(namespace)
            .get_opt(name)
            .await?
            .filter(|i| is_route_of(i, name));
        // All of the namespace's Events: the recent ones below, and the controller's verdict.
        let namespace_events = self
            .api::<Event>(namespace)
            .list(&ListParams::default())
            .await?
            .items;

        let mut summary = self.summary(
            namespace,
            &deployment,
            &pods,
            ingress.as_ref(),
            &namespace_events,
        );
        // Kubernetes copies a ReplicaSet's ReplicaFailure to its Deployment, but not every
        // cluster (or simulator) does: the newest ReplicaSet says it first-hand.
        if !matches!(summary.state, RepositoryState::Failing { .. })
            && let Some(c) = replica_sets.first().and_then(|rs| {
                rs.status
                    .as_ref()?
                    .conditions
                    .iter()
                    .flatten()
                    .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")
                    .cloned()
            })
        {
            summary.state = RepositoryState::Failing {
                reason: c.reason.unwrap_or_else(|| "FailedCreate".into()),
                message: c.message.unwrap_or_default(),
            };
            summary.advice = summary.state.advice();
        }
        let current_revision = replica_sets.first().map(rs_revision);
        let history = replica_sets
            .iter()
            .map(|rs| RevisionInfo {
                revision: rs_revision(rs),
                replica_set: rs.metadata.name.clone().unwrap_or_default(),
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
                replicas: rs.status.as_ref().map_or(0, |s| s.replicas),
                ready: rs
                    .status
                    .as_ref()
                    .and_then(|s| s.ready_replicas)
                    .unwrap_or(0),
                current: Some(rs_revision(rs)) == current_revision,
                age: status::age(rs.metadata.creation_timestamp.as_ref()),
            })
            .collect();

        let mut related: BTreeSet<String> = BTreeSet::from([name.to_string()]);
        related.extend(
            replica_sets
                .iter()
                .filter_map(|rs| rs.metadata.name.clone()),
        );
        related.extend(pods.iter().filter_map(|p| p.metadata.name.clone()));
        let mut events: Vec<Event> = namespace_events
            .into_iter()
            .filter(|e| {
                e.involved_object
                    .name
                    .as_ref()
                    .is_some_and(|n| related.contains(n))
            })
            .collect();
        events.sort_by_key(|e| std::cmp::Reverse(event_time(e)));
        events.truncate(20);
        let events = events
            .iter()
            .map(|e| EventInfo {
                kind: e.type_.clone().unwrap_or_default(),
                reason: e.reason.clone().unwrap_or_default(),
                message: e.message.clone().unwrap_or_default(),
                object: format!(
                    "{}/{}",
                    e.involved_object.kind.clone().unwrap_or_default(),
                    e.involved_object.name.clone().unwrap_or_default()
                ),
                count: e.count.unwrap_or(1),
                age: status::age(
                    e.last_timestamp
                        .as_ref()
                        .or(e.metadata.creation_timestamp.as_ref()),
                ),
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
            status: match &service {
                Some(s) => format!(
                    "ClusterIP {}",
                    s.spec
                        .as_ref()
                        .and_then(|s| s.cluster_ip.clone())
                        .unwrap_or_else(|| "pending".into())
                ),
                None => "missing: redeploy to recreate it".into(),
            },
        });
        objects.push(ObjectInfo {
            kind: "Ingress",
            name: name.to_string(),
            status: match &ingress {
                Some(i) => {
                    let rule = i.spec.as_ref().and_then(|s| s.rules.as_ref()?.first());
                    let host = rule.and_then(|r| r.host.clone()).unwrap_or_default();
                    let path = rule
                        .and_then(|r| r.http.as_ref()?.paths.first()?.path.clone())
                        .unwrap_or_default();
                    format!(
                        "minion for {host}, path {path}; {}",
                        summary.route.summary()
                    )
                }
                None => "missing: redeploy to recreate it".into(),
            },
        });

        Ok(RepositoryDetail {
            summary,
            namespace: namespace.to_string(),
            pods: pods.iter().map(pod_info).collect(),
            events,
            history,
            objects,
        })
    }
}

fn event_time(e: &Event) -> i64 {
    e.last_timestamp
        .as_ref()
        .or(e.metadata.creation_timestamp.as_ref())
        .map_or(0, |t| t.0.as_second())
}
