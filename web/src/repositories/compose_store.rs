//! Deploying a compose file's plan as a group: checked against the namespace (names taken,
//! quota) before anything is created, then one repository per service in rollout order; a
//! failure midway removes every repository the group made.

use serde::Serialize;

use super::compose::{self, Condition, Finding, Plan, PlannedService};
use super::env::{EnvSource, EnvVar, Environment, SecretValues};
use super::store::{RepositoryStore, StoreError};
use super::validation::RepositorySpec;
use crate::mirror::Contents;

/// What a group deploy made.
#[derive(Debug, Clone, Serialize)]
pub struct Deployed {
    pub project: String,
    /// The repositories, in the order they were created.
    pub repositories: Vec<String>,
}

/// The repository a planned service becomes.
pub fn spec_of_service(project: &str, service: &PlannedService) -> RepositorySpec {
    RepositorySpec {
        name: service.name.clone(),
        image: service.image.clone(),
        port: service.port,
        replicas: service.replicas,
        env: Environment {
            vars: service
                .environment
                .iter()
                .map(|v| EnvVar {
                    name: v.name.clone(),
                    source: EnvSource::Plain(v.value.clone()),
                })
                .collect(),
            secret_digest: None,
        },
        pull: None,
        public: service.public,
        group: Some(project.to_string()),
    }
}

/// The planned names that are repositories of the namespace already.
fn taken(contents: &Contents, namespace: &str, plan: &Plan) -> Vec<String> {
    let Some(ns) = contents.namespace(namespace) else {
        return Vec::new();
    };
    plan.services
        .iter()
        .filter(|s| ns.deployments.get(&s.name).is_some_and(|d| d.managed))
        .map(|s| s.name.clone())
        .collect()
}

/// Pods the namespace's repositories run (their desired replicas).
fn pods_in_use(contents: &Contents, namespace: &str) -> i64 {
    contents.namespace(namespace).map_or(0, |ns| {
        ns.deployments
            .values()
            .filter(|d| d.managed)
            .map(|d| i64::from(d.replicas.desired))
            .sum()
    })
}

impl RepositoryStore {
    /// The plan's findings about this namespace: planned names that are repositories already,
    /// and a group larger than the quota leaves room for. Read from the mirror.
    pub async fn compose_conflicts(
        &self,
        namespace: &str,
        plan: &Plan,
    ) -> Result<(Vec<String>, Option<String>), StoreError> {
        self.mirror_synced().await?;
        let contents = self.mirror.read();
        let taken = taken(&contents, namespace, plan);
        let quota = self.config.quota.as_ref().and_then(|policy| {
            compose::check_quota(policy, pods_in_use(&contents, namespace), plan.pods()).err()
        });
        Ok((taken, quota))
    }

    /// The plan's findings plus those about the namespace, as the preview lists them.
    pub async fn compose_findings(
        &self,
        namespace: &str,
        plan: &Plan,
    ) -> Result<Vec<Finding>, StoreError> {
        let (taken, quota) = self.compose_conflicts(namespace, plan).await?;
        let mut findings = plan.findings.clone();
        findings.extend(taken.iter().map(|name| Finding {
            path: format!("services.{name}"),
            line: None,
            effect: compose::Effect::Invalid,
            reason: format!(
                "you already have a repository named {name}: rename the service (and where others use it) or delete that repository first"
            ),
        }));
        findings.extend(quota.map(|reason| Finding {
            path: "services".into(),
            line: None,
            effect: compose::Effect::Invalid,
            reason,
        }));
        Ok(findings)
    }

    /// Deploys a plan whose own findings allow it: refused as a whole while a planned name is a
    /// repository already or the quota has no room; otherwise each service in rollout order
    /// (waiting, for `service_healthy`, until its dependency's pods are Ready, at most
    /// [`crate::config::Config::write_timeout`]). On any failure the repositories the group
    /// made are deleted again and the error names the service that failed.
    ///
    /// The group is made, or removed again, to the end in a task of its own: a request that goes
    /// away meanwhile (a closed browser tab) does not leave half a group behind.
    pub async fn deploy_compose(
        &self,
        namespace: &str,
        plan: &Plan,
    ) -> Result<Deployed, StoreError> {
        let (store, namespace, plan) = (self.clone(), namespace.to_string(), plan.clone());
        tokio::spawn(async move { store.deploy_group(&namespace, &plan).await }).await?
    }

    async fn deploy_group(&self, namespace: &str, plan: &Plan) -> Result<Deployed, StoreError> {
        self.answering()?;
        if !plan.deployable() {
            return Err(StoreError::Invalid(plan.problems()));
        }
        let (taken, quota) = self.compose_conflicts(namespace, plan).await?;
        if !taken.is_empty() {
            return Err(StoreError::GroupNamesTaken(taken));
        }
        if let Some(reason) = quota {
            return Err(StoreError::GroupOverQuota(reason));
        }
        let mut created: Vec<String> = Vec::new();
        for service in &plan.services {
            let step = async {
                for dependency in service
                    .depends_on
                    .iter()
                    .filter(|d| d.condition == Condition::ServiceHealthy)
                {
                    self.wait_ready(namespace, &dependency.service, &service.name)
                        .await?;
                }
                let spec = spec_of_service(&plan.project, service);
                self.create_repository_with(namespace, &spec, &SecretValues::new())
                    .await
            };
            if let Err(error) = step.await {
                self.remove_group(namespace, &created).await;
                tracing::warn!(namespace, project = %plan.project, service = %service.name, error = %error, removed = created.len(), "compose deploy failed and was rolled back");
                return Err(StoreError::GroupFailed {
                    service: service.name.clone(),
                    removed: created,
                    source: Box::new(error),
                });
            }
            created.push(service.name.clone());
        }
        tracing::info!(namespace, project = %plan.project, repositories = created.len(), "compose file deployed");
        Ok(Deployed {
            project: plan.project.clone(),
            repositories: created,
        })
    }

    /// Waits until the mirror shows every pod of `dependency` Ready, at most the write timeout.
    async fn wait_ready(
        &self,
        namespace: &str,
        dependency: &str,
        dependent: &str,
    ) -> Result<(), StoreError> {
        let timeout = self.config.write_timeout;
        let ready = self
            .mirror
            .wait_for(timeout, |c| {
                c.namespace(namespace)
                    .and_then(|ns| ns.deployments.get(dependency))
                    .is_some_and(|d| {
                        d.replicas.ready >= d.replicas.desired.max(1)
                            && d.observed_generation >= d.generation
                    })
            })
            .await;
        if ready {
            Ok(())
        } else {
            Err(StoreError::DependencyNotReady {
                dependency: dependency.to_string(),
                dependent: dependent.to_string(),
                secs: timeout.as_secs(),
            })
        }
    }

    /// Deletes the group's repositories made so far, all at once; one the cluster does not let
    /// go of now is removed in the background once it answers (see `remove_when_back`).
    async fn remove_group(&self, namespace: &str, created: &[String]) {
        let removals = created.iter().map(|name| async move {
            let uid = self
                .mirror
                .read()
                .namespace(namespace)
                .and_then(|ns| ns.deployments.get(name))
                .map(|d| d.id.uid.to_string());
            let removed = tokio::time::timeout(
                self.config.write_timeout,
                self.roll_back(namespace, name, &["Ingress", "Service", "Deployment"]),
            )
            .await;
            let gone = removed.is_ok()
                && self
                    .within(
                        self.deadline(),
                        self.api::<k8s_openapi::api::apps::v1::Deployment>(namespace)
                            .get_opt(name),
                    )
                    .await
                    .is_ok_and(|r| r.is_ok_and(|d| d.is_none()));
            if !gone && let Some(uid) = uid {
                let store = self.clone();
                let (namespace, name) = (namespace.to_string(), name.clone());
                tokio::spawn(async move { store.remove_when_back(&namespace, &name, &uid).await });
            }
        });
        futures::future::join_all(removals).await;
    }
}
