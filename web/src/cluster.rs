//! Everything the site asks of Kubernetes about repositories: one user namespace at a time.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, LimitRange, Namespace, Pod, ResourceQuota, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde::Serialize;

use crate::config::{Config, FIELD_MANAGER};
use crate::error::AppError;
use crate::objects::{self, RESTARTED_AT};
use crate::status::{self, Replicas, RepositoryState};
use crate::validation::{FieldError, RepositorySpec};

#[derive(Clone)]
pub struct Cluster {
    pub client: kube::Client,
    pub config: Arc<Config>,
}

/// One row of the repository list (and the JSON the list page polls).
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
    /// Present once the repository is ready.
    pub endpoint: Option<String>,
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

/// A change to a running repository; absent fields stay as they are.
#[derive(Debug, Clone, Default)]
pub struct Change {
    pub image: Option<String>,
    pub port: Option<i32>,
    pub replicas: Option<i32>,
    /// Replace every pod (same image), through the `restartedAt` template annotation.
    pub restart: bool,
}

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    }
}

fn is_managed(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(objects::LABEL_MANAGED_BY))
        .is_some_and(|v| v == crate::config::MANAGED_BY)
}

/// The repository a Deployment describes, read back from the fields the site wrote.
pub fn spec_of(deployment: &Deployment) -> Option<RepositorySpec> {
    let name = deployment.metadata.name.clone()?;
    let spec = deployment.spec.as_ref()?;
    let container = spec.template.spec.as_ref()?.containers.first()?;
    Some(RepositorySpec {
        name,
        image: container.image.clone().unwrap_or_default(),
        port: container
            .ports
            .as_ref()
            .and_then(|p| p.first())
            .map_or(80, |p| p.container_port),
        replicas: spec.replicas.unwrap_or(1),
    })
}

fn restarted_at(deployment: &Deployment) -> Option<String> {
    deployment
        .spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(RESTARTED_AT)
        .cloned()
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

impl Cluster {
    pub fn new(client: kube::Client, config: Arc<Config>) -> Self {
        Self { client, config }
    }

    fn api<K>(&self, namespace: &str) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Creates (or repairs) the user's namespace with its quota and default limits.
    pub async fn ensure_namespace(&self, namespace: &str) -> Result<(), AppError> {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        namespaces
            .patch(
                namespace,
                &apply_params(),
                &Patch::Apply(objects::namespace(namespace)),
            )
            .await?;
        if let Some(policy) = &self.config.quota {
            self.api::<ResourceQuota>(namespace)
                .patch(
                    "kdeploy",
                    &apply_params(),
                    &Patch::Apply(objects::resource_quota(namespace, policy)),
                )
                .await?;
            self.api::<LimitRange>(namespace)
                .patch(
                    "kdeploy",
                    &apply_params(),
                    &Patch::Apply(objects::limit_range(namespace)),
                )
                .await?;
        }
        Ok(())
    }

    /// Creates the Deployment, Service and Ingress in that order; a failed step removes the earlier ones.
    ///
    /// The Deployment is created (not applied) so that a taken name, also in a race, fails atomically.
    pub async fn create_repository(
        &self,
        namespace: &str,
        spec: &RepositorySpec,
    ) -> Result<(), AppError> {
        self.ensure_namespace(namespace).await?;
        let deployments = self.api::<Deployment>(namespace);
        let created = match deployments
            .create(&post_params(), &objects::deployment(namespace, spec, None))
            .await
        {
            Ok(d) => d,
            Err(e) if AppError::is_already_exists(&e) => {
                return Err(AppError::Conflict(FieldError::new(
                    "name",
                    format!(
                        "You already have a repository named {}: choose another name, or open it from the list to change it.",
                        spec.name
                    ),
                )));
            }
            Err(source) => {
                return Err(AppError::Deploy {
                    step: "Creating the Deployment",
                    source,
                });
            }
        };
        let owner = objects::owned_by(
            &spec.name,
            created.metadata.uid.as_deref().unwrap_or_default(),
        );
        let services = self.api::<Service>(namespace);
        if let Err(source) = services
            .patch(
                &spec.name,
                &apply_params(),
                &Patch::Apply(objects::service(namespace, spec, Some(owner.clone()))),
            )
            .await
        {
            self.roll_back(namespace, &spec.name, &["Deployment"]).await;
            return Err(AppError::Deploy {
                step: "Creating the Service",
                source,
            });
        }
        let ingresses = self.api::<Ingress>(namespace);
        if let Err(source) = ingresses
            .patch(
                &spec.name,
                &apply_params(),
                &Patch::Apply(objects::ingress(
                    namespace,
                    spec,
                    &self.config.public_host,
                    Some(owner),
                )),
            )
            .await
        {
            self.roll_back(namespace, &spec.name, &["Service", "Deployment"])
                .await;
            return Err(AppError::Deploy {
                step: "Creating the Ingress",
                source,
            });
        }
        tracing::info!(namespace, repository = %spec.name, image = %spec.image, "repository created");
        Ok(())
    }

    /// Deletes the named objects of one repository, going on after a failure; absent counts as done.
    async fn delete_objects(
        &self,
        namespace: &str,
        name: &str,
        kinds: &[&str],
    ) -> Result<(), kube::Error> {
        let mut first_error = None;
        for kind in kinds {
            let result = match *kind {
                "Service" => self
                    .api::<Service>(namespace)
                    .delete(name, &DeleteParams::default())
                    .await
                    .map(|_| ()),
                "Ingress" => self
                    .api::<Ingress>(namespace)
                    .delete(name, &DeleteParams::default())
                    .await
                    .map(|_| ()),
                _ => self
                    .api::<Deployment>(namespace)
                    .delete(name, &DeleteParams::background())
                    .await
                    .map(|_| ()),
            };
            match result {
                Ok(()) => tracing::info!(namespace, name, kind, "deleted"),
                Err(e) if AppError::is_not_found(&e) => {}
                Err(e) => {
                    tracing::error!(namespace, name, kind, error = %e, "delete failed");
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Deletes what a failed create made; failures are logged by `delete_objects`, and the
    /// original error is what the user needs to see.
    async fn roll_back(&self, namespace: &str, name: &str, kinds: &[&str]) {
        let _ = self.delete_objects(namespace, name, kinds).await;
    }

    async fn managed_deployment(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Deployment, AppError> {
        let not_found = || AppError::NotFound(format!("Repository {name}"));
        match self.api::<Deployment>(namespace).get_opt(name).await? {
            Some(d) if is_managed(&d.metadata) => Ok(d),
            _ => Err(not_found()),
        }
    }

    /// The uid of a repository's Deployment (what its other objects are owned by); also the
    /// check that `name` is a repository of this namespace.
    pub async fn repository_uid(&self, namespace: &str, name: &str) -> Result<String, AppError> {
        let d = self.managed_deployment(namespace, name).await?;
        Ok(d.metadata.uid.unwrap_or_default())
    }

    fn summary(&self, namespace: &str, deployment: &Deployment, pods: &[Pod]) -> RepositorySummary {
        let name = deployment.metadata.name.clone().unwrap_or_default();
        let spec = spec_of(deployment);
        let own_pods: Vec<Pod> = pods
            .iter()
            .filter(|p| pod_belongs(p, &name))
            .cloned()
            .collect();
        let state = status::derive_state(deployment, &own_pods);
        let replicas = status::replicas(deployment);
        let endpoint = (replicas.ready > 0)
            .then(|| objects::endpoint(&self.config.public_host, namespace, &name));
        RepositorySummary {
            image: spec.as_ref().map(|s| s.image.clone()).unwrap_or_default(),
            port: spec.as_ref().map_or(0, |s| s.port),
            advice: state.advice(),
            state,
            replicas,
            age: status::age(deployment.metadata.creation_timestamp.as_ref()),
            endpoint,
            name,
        }
    }

    pub async fn list_repositories(
        &self,
        namespace: &str,
    ) -> Result<Vec<RepositorySummary>, AppError> {
        let selector = ListParams::default().labels(&objects::managed_selector());
        let deployments = self.api::<Deployment>(namespace).list(&selector).await?;
        let pods = self.api::<Pod>(namespace).list(&selector).await?;
        let mut rows: Vec<RepositorySummary> = deployments
            .items
            .iter()
            .map(|d| self.summary(namespace, d, &pods.items))
            .collect();
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(rows)
    }

    pub async fn repository(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<RepositoryDetail, AppError> {
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
        let ingress = self.api::<Ingress>(namespace).get_opt(name).await?;

        let mut summary = self.summary(namespace, &deployment, &pods);
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
        let mut events: Vec<Event> = self
            .api::<Event>(namespace)
            .list(&ListParams::default())
            .await?
            .items
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
                Some(i) => i
                    .spec
                    .as_ref()
                    .and_then(|s| {
                        s.rules
                            .as_ref()?
                            .first()?
                            .http
                            .as_ref()?
                            .paths
                            .first()?
                            .path
                            .clone()
                    })
                    .map(|p| format!("path {p}"))
                    .unwrap_or_default(),
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

    /// Applies a change to the Deployment (a rolling update) and keeps the Service and Ingress in step.
    pub async fn change_repository(
        &self,
        namespace: &str,
        name: &str,
        change: &Change,
    ) -> Result<RepositorySpec, AppError> {
        let restart_at = change
            .restart
            .then(|| k8s_openapi::jiff::Timestamp::now().to_string());
        // Read, change, apply with the read resourceVersion; controllers update status all the
        // time, so a conflict means "read again", as client-go's RetryOnConflict does.
        let mut attempts = 0;
        let (current, spec) = loop {
            attempts += 1;
            let current = self.managed_deployment(namespace, name).await?;
            let Some(mut spec) = spec_of(&current) else {
                return Err(AppError::NotFound(format!("Repository {name}")));
            };
            if let Some(image) = &change.image {
                spec.image.clone_from(image);
            }
            if let Some(port) = change.port {
                spec.port = port;
            }
            if let Some(replicas) = change.replicas {
                spec.replicas = replicas;
            }
            let restarted = restart_at.clone().or_else(|| restarted_at(&current));
            let mut desired = objects::deployment(namespace, &spec, restarted.as_deref());
            desired.metadata.resource_version = current.metadata.resource_version.clone();
            match self
                .api::<Deployment>(namespace)
                .patch(name, &apply_params(), &Patch::Apply(desired))
                .await
            {
                Ok(_) => break (current, spec),
                Err(e) if AppError::is_conflict(&e) && attempts < 10 => continue,
                Err(e) if AppError::is_conflict(&e) => {
                    return Err(AppError::Conflict(FieldError::new(
                        "repository",
                        "The repository is changing too often to apply this: try again in a moment.",
                    )));
                }
                Err(e) => return Err(e.into()),
            }
        };
        let owner = objects::owned_by(name, current.metadata.uid.as_deref().unwrap_or_default());
        self.api::<Service>(namespace)
            .patch(
                name,
                &apply_params(),
                &Patch::Apply(objects::service(namespace, &spec, Some(owner.clone()))),
            )
            .await?;
        self.api::<Ingress>(namespace)
            .patch(
                name,
                &apply_params(),
                &Patch::Apply(objects::ingress(
                    namespace,
                    &spec,
                    &self.config.public_host,
                    Some(owner),
                )),
            )
            .await?;
        tracing::info!(namespace, repository = name, image = %spec.image, replicas = spec.replicas, restart = change.restart, "repository changed");
        Ok(spec)
    }

    /// Deletes the repository's own three objects (its pods and ReplicaSets follow the Deployment).
    pub async fn delete_repository(&self, namespace: &str, name: &str) -> Result<(), AppError> {
        self.managed_deployment(namespace, name).await?;
        self.delete_objects(namespace, name, &["Ingress", "Service", "Deployment"])
            .await?;
        tracing::info!(namespace, repository = name, "repository deleted");
        Ok(())
    }
}

fn event_time(e: &Event) -> i64 {
    e.last_timestamp
        .as_ref()
        .or(e.metadata.creation_timestamp.as_ref())
        .map_or(0, |t| t.0.as_second())
}
