//! Everything the site asks of Kubernetes to create, change and delete a repository, one user
//! namespace at a time; reading repositories back is in `describe`.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};

use super::objects::{self, RESTARTED_AT};
use super::validation::{Change, RepositorySpec};
use crate::config::{Config, FIELD_MANAGER, MANAGED_BY};
use crate::kube_status::{is_already_exists, is_conflict, is_not_found};

/// What went wrong in the repository store, in the store's terms; handlers turn it into a page or JSON.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("repository {0} does not exist in this namespace")]
    NotFound(String),
    #[error("a repository named {0} already exists")]
    NameTaken(String),
    #[error("repository {name} kept changing for {attempts} attempts")]
    Busy { name: String, attempts: u32 },
    #[error(transparent)]
    Unroutable(#[from] objects::UnroutableName),
    #[error("{step:?} of a new repository failed: {source}")]
    Create {
        step: CreateStep,
        source: kube::Error,
    },
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

/// The objects of a new repository, in the order they are created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateStep {
    Deployment,
    Service,
    Ingress,
}

/// How many times a change is read and applied again while controllers keep updating the Deployment.
const CHANGE_ATTEMPTS: u32 = 10;

#[derive(Clone)]
pub struct RepositoryStore {
    pub client: kube::Client,
    pub config: Arc<Config>,
}

/// Strict: a field the API server does not know fails the write instead of being dropped with a
/// warning (`?fieldValidation=Strict`), so a typo in what the site builds cannot go unnoticed.
fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER)
        .force()
        .validation_strict()
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PostParams::default()
    }
}

pub(super) fn is_managed(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> bool {
    meta.labels
        .as_ref()
        .and_then(|l| l.get(objects::LABEL_MANAGED_BY))
        .is_some_and(|v| v == MANAGED_BY)
}

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

impl RepositoryStore {
    pub fn new(client: kube::Client, config: Arc<Config>) -> Self {
        Self { client, config }
    }

    pub(super) fn api<K>(&self, namespace: &str) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), namespace)
    }

    fn route(&self) -> objects::PublicRoute<'_> {
        objects::PublicRoute {
            host: self.config.public_url.host(),
            ingress_class: &self.config.ingress_class,
        }
    }

    /// The repository's Ingress as the site wants it now.
    fn desired_ingress(
        &self,
        namespace: &str,
        spec: &RepositorySpec,
        owner: OwnerReference,
    ) -> Result<Ingress, StoreError> {
        Ok(objects::ingress(
            namespace,
            spec,
            self.route(),
            Some(owner),
        )?)
    }

    /// Applies a repository's Ingress; server-side apply under the site's field manager replaces
    /// whatever the site wrote before, so an Ingress of an older form (a plain Ingress with
    /// `nginx.org/path-regex` and `nginx.org/rewrite-target`, before issue 11) loses those
    /// annotations and becomes a minion.
    async fn apply_ingress(&self, namespace: &str, ingress: &Ingress) -> Result<(), kube::Error> {
        let name = ingress.metadata.name.as_deref().unwrap_or_default();
        self.api::<Ingress>(namespace)
            .patch(name, &apply_params(), &Patch::Apply(ingress))
            .await
            .map(|_| ())
    }

    /// Brings every repository's Ingress in the cluster to the current form, once at start-up.
    ///
    /// Needed for an upgrade: NIC gives a host to its oldest plain Ingress, and the platform's
    /// master Ingress is newer than the repositories' Ingresses of the older, plain form, so until
    /// they are minions the master (and with it every route on the host) is rejected. Each is
    /// re-applied from its Deployment, as a change would; failures are logged and left to the
    /// repository's next change.
    pub async fn upgrade_routes(&self) -> Result<usize, StoreError> {
        let managed = ListParams::default().labels(&objects::managed_selector());
        let ingresses = Api::<Ingress>::all(self.client.clone())
            .list(&managed)
            .await?;
        // The platform labels its own objects the same way (the master, the site's minion):
        // only developers' namespaces hold repositories.
        let platform = |ns: &str| {
            ns == self.config.system_namespace
                || self.config.platform_namespaces.iter().any(|p| p == ns)
        };
        let mut upgraded = 0;
        for old in ingresses.items.iter().filter(|i| {
            !i.metadata.namespace.as_deref().is_none_or(platform)
                && i.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(objects::MERGEABLE_TYPE))
                    .is_none_or(|t| t != "minion")
        }) {
            let (Some(namespace), Some(name)) = (&old.metadata.namespace, &old.metadata.name)
            else {
                continue;
            };
            let result = async {
                let deployment = self.managed_deployment(namespace, name).await?;
                let spec =
                    spec_of(&deployment).ok_or_else(|| StoreError::NotFound(name.clone()))?;
                let owner =
                    objects::owned_by(name, deployment.metadata.uid.as_deref().unwrap_or_default());
                let ingress = self.desired_ingress(namespace, &spec, owner)?;
                self.apply_ingress(namespace, &ingress).await?;
                Ok::<_, StoreError>(())
            }
            .await;
            match result {
                Ok(()) => {
                    upgraded += 1;
                    tracing::info!(namespace, repository = name, "route upgraded to a minion");
                }
                Err(e) => {
                    tracing::warn!(namespace, repository = name, error = %e, "route not upgraded");
                }
            }
        }
        Ok(upgraded)
    }

    /// Creates (or repairs) the user's namespace with its quota and default limits.
    pub async fn ensure_namespace(&self, namespace: &str) -> Result<(), StoreError> {
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
    ) -> Result<(), StoreError> {
        self.ensure_namespace(namespace).await?;
        let deployments = self.api::<Deployment>(namespace);
        let created = match deployments
            .create(&post_params(), &objects::deployment(namespace, spec, None))
            .await
        {
            Ok(d) => d,
            Err(e) if is_already_exists(&e) => {
                return Err(StoreError::NameTaken(spec.name.clone()));
            }
            Err(source) => {
                return Err(StoreError::Create {
                    step: CreateStep::Deployment,
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
            return Err(StoreError::Create {
                step: CreateStep::Service,
                source,
            });
        }
        let ingress = match self.desired_ingress(namespace, spec, owner) {
            Ok(i) => i,
            Err(e) => {
                self.roll_back(namespace, &spec.name, &["Service", "Deployment"])
                    .await;
                return Err(e);
            }
        };
        if let Err(source) = self.apply_ingress(namespace, &ingress).await {
            self.roll_back(namespace, &spec.name, &["Service", "Deployment"])
                .await;
            return Err(StoreError::Create {
                step: CreateStep::Ingress,
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
                Err(e) if is_not_found(&e) => {}
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

    pub(super) async fn managed_deployment(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Deployment, StoreError> {
        match self.api::<Deployment>(namespace).get_opt(name).await? {
            Some(d) if is_managed(&d.metadata) => Ok(d),
            _ => Err(StoreError::NotFound(name.to_string())),
        }
    }

    /// The uid of a repository's Deployment (what its other objects are owned by); also the
    /// check that `name` is a repository of this namespace.
    pub async fn repository_uid(&self, namespace: &str, name: &str) -> Result<String, StoreError> {
        let d = self.managed_deployment(namespace, name).await?;
        Ok(d.metadata.uid.unwrap_or_default())
    }
    /// Applies a change to the Deployment (a rolling update) and keeps the Service and Ingress in
    /// step (an Ingress of an older form is brought to the current one here too).
    pub async fn change_repository(
        &self,
        namespace: &str,
        name: &str,
        change: &Change,
    ) -> Result<RepositorySpec, StoreError> {
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
                return Err(StoreError::NotFound(name.to_string()));
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
                Err(e) if is_conflict(&e) && attempts < CHANGE_ATTEMPTS => continue,
                Err(e) if is_conflict(&e) => {
                    return Err(StoreError::Busy {
                        name: name.to_string(),
                        attempts,
                    });
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
        let ingress = self.desired_ingress(namespace, &spec, owner)?;
        self.apply_ingress(namespace, &ingress).await?;
        tracing::info!(namespace, repository = name, image = %spec.image, replicas = spec.replicas, restart = change.restart, "repository changed");
        Ok(spec)
    }

    /// Deletes the repository's own three objects (its pods and ReplicaSets follow the Deployment).
    /// The Ingress goes first, so the route stops before its pods do; should its delete fail, the
    /// Ingress is still owned by the Deployment and the garbage collector removes it, so no minion
    /// is left behind on the public host.
    pub async fn delete_repository(&self, namespace: &str, name: &str) -> Result<(), StoreError> {
        self.managed_deployment(namespace, name).await?;
        self.delete_objects(namespace, name, &["Ingress", "Service", "Deployment"])
            .await?;
        tracing::info!(namespace, repository = name, "repository deleted");
        Ok(())
    }
}
