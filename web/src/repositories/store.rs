//! Everything the site asks of Kubernetes to create, change and delete a repository, one user
//! namespace at a time; reading repositories back is in `describe`.

use std::future::Future;
use std::sync::Arc;

use tokio::time::Instant;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota, Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};

use super::env::{self, EnvChange, EnvSource, Environment, SecretValues};
use super::objects::{self, Provenance, RESTARTED_AT};
use super::registries;
use super::validation::{Change, RepositorySpec};
use crate::config::{Config, FIELD_MANAGER, MANAGED_BY};
use crate::field_error::FieldError;
use crate::kube_status::{is_already_exists, is_conflict, is_not_found};
use crate::mirror::{self, Contents, Mirror, has_seen};

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
    #[error("the cluster did not answer within {secs} s; nothing was changed")]
    NotAnswering { secs: u64 },
    #[error("the cluster stopped answering within {secs} s of a create; it is being rolled back")]
    StoppedMidway { secs: u64 },
    #[error("the mirror of the cluster has not synced yet")]
    Starting,
    /// Input that is valid on its own but not with what is stored (a kept secret value that is
    /// gone, a total that the kept values make too large).
    #[error("{}", .0.first().map_or("invalid input", |e| e.message.as_str()))]
    Invalid(Vec<FieldError>),
    /// A rollback to a revision the repository does not have (never had, or garbage-collected
    /// beyond `revisionHistoryLimit`); `existing` lists those it has, newest first.
    #[error("revision {revision} does not exist")]
    NoSuchRevision { revision: i64, existing: Vec<i64> },
    /// A rollback to the revision that is running now.
    #[error("revision {0} is already running")]
    AlreadyRunning(i64),
    /// A rollback to a revision whose secret variables' values are no longer stored.
    #[error("revision {revision} needs secret values that are no longer stored")]
    SecretsGone { revision: i64, missing: Vec<String> },
    /// A webhook request for no repository with a webhook, or with the wrong token (which of
    /// them is not said).
    #[error("the webhook URL is not valid")]
    WebhookRefused,
    /// A webhook's notification that could not be read.
    #[error("{}", .0.message)]
    WebhookMalformed(FieldError),
    /// More webhook deliveries than `webhook::RATE_MAX` within its window.
    #[error("too many webhook deliveries")]
    WebhookRateLimited { retry_after_secs: u64 },
    /// No login for this registry is saved in the namespace.
    #[error("no login for registry {0} is saved")]
    NoSuchRegistry(String),
    /// A login that repositories pull with cannot be removed.
    #[error("repositories {repositories:?} pull from {server}")]
    RegistryInUse {
        server: String,
        repositories: Vec<String>,
    },
    /// Repositories of these names exist already: a compose file's group is refused whole.
    #[error("repositories {0:?} exist already")]
    GroupNamesTaken(Vec<String>),
    /// A compose file's group needs more pods than the namespace's quota leaves room for (the
    /// sentence names the quota).
    #[error("{0}")]
    GroupOverQuota(String),
    /// Creating one repository of a compose file's group failed; those made before it
    /// (`removed`) were deleted again.
    #[error("creating {service} failed: {source}")]
    GroupFailed {
        service: String,
        removed: Vec<String>,
        source: Box<StoreError>,
    },
    /// A service waits (`service_healthy`) for a dependency whose pods did not become Ready.
    #[error("{dependency} was not ready within {secs} s")]
    DependencyNotReady {
        dependency: String,
        dependent: String,
        secs: u64,
    },
    /// A task of the store's ended without an answer (it panicked).
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
    /// A login was saved, but some repositories could not yet be changed to pull with it.
    #[error("the login for {server} was saved, but {pending:?} could not be updated: {cause}")]
    RegistryNotApplied {
        server: String,
        pending: Vec<String>,
        cause: String,
    },
}

/// The ReplicaSet annotation the Deployment controller numbers revisions with
/// (k8s.io/kubernetes pkg/controller/deployment/util/deployment_util.go `RevisionAnnotation`).
pub const REVISION: &str = "deployment.kubernetes.io/revision";

fn revision_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> i64 {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// Who writes to a namespace: a namespace is one user's (`CurrentUser::namespace` is the
/// user's name) and only that user's requests write to it.
fn writer(namespace: &str) -> String {
    namespace.to_string()
}

/// Whether a client error means the API server could not be reached (refused or cut connection).
fn unreachable(error: &kube::Error) -> bool {
    matches!(error, kube::Error::HyperError(_) | kube::Error::Service(_))
}

/// The objects of a new repository, in the order they are created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateStep {
    Deployment,
    Service,
    Ingress,
    Secret,
}

/// The annotation that marks the create request a Deployment came from.
const CREATE_REQUEST: &str = "kdeploy.dev/create-request";

/// How many times a change is read and applied again while controllers keep updating the Deployment.
pub(super) const CHANGE_ATTEMPTS: u32 = 10;

/// The end of one try of a read-change-write loop that the API server refused: a conflict (the
/// object changed since it was read) is read again, as client-go's `RetryOnConflict` does, until
/// [`CHANGE_ATTEMPTS`] tries were made; `None` says "read again".
pub(super) fn give_up(error: kube::Error, name: &str, attempts: u32) -> Option<StoreError> {
    if !is_conflict(&error) {
        return Some(error.into());
    }
    (attempts >= CHANGE_ATTEMPTS).then(|| StoreError::Busy {
        name: name.to_string(),
        attempts,
    })
}

#[derive(Clone)]
pub struct RepositoryStore {
    pub client: kube::Client,
    pub config: Arc<Config>,
    /// What pages read; writes wait until it shows them.
    pub mirror: Mirror,
}

/// Strict: a field the API server does not know fails the write instead of being dropped with a
/// warning (`?fieldValidation=Strict`), so a typo in what the site builds cannot go unnoticed.
pub(super) fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER)
        .force()
        .validation_strict()
}

pub(super) fn post_params() -> PostParams {
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
    let annotations = spec.template.metadata.as_ref()?.annotations.as_ref();
    let pull_secrets = spec.template.spec.as_ref()?.image_pull_secrets.as_deref();
    let labels = deployment.metadata.labels.as_ref();
    let label = |key: &str| labels.and_then(|l| l.get(key));
    Some(RepositorySpec {
        public: label(objects::LABEL_ROUTE).is_none_or(|r| r != objects::ROUTE_INTERNAL),
        group: label(objects::LABEL_COMPOSE_PROJECT).cloned(),
        pull: registries::PullRef::of_template(pull_secrets, annotations),
        env: env::environment_of(&name, Some(container), annotations),
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

pub(super) fn restarted_at(deployment: &Deployment) -> Option<String> {
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

/// The Deployment's variables as a JSON merge patch (RFC 7386) on the version read: it replaces
/// the whole container list, so a removed variable goes. Server-side apply cannot remove one
/// that the create (a POST, an `Update` in managedFields) wrote: an applier only removes fields
/// it alone owns (kubernetes.io/docs/reference/using-api/server-side-apply/, "Merge strategy").
/// The resourceVersion makes it a precondition: a Deployment changed meanwhile answers 409.
fn env_patch(
    current: &Deployment,
    spec: &RepositorySpec,
    by: &str,
) -> Result<serde_json::Value, StoreError> {
    let not_found = || StoreError::NotFound(spec.name.clone());
    let template = &current.spec.as_ref().ok_or_else(not_found)?.template;
    let mut containers = template
        .spec
        .as_ref()
        .ok_or_else(not_found)?
        .containers
        .clone();
    let first = containers.first_mut().ok_or_else(not_found)?;
    let env = env::container_env(&spec.name, &spec.env);
    let digest = spec
        .env
        .secret_digest
        .as_ref()
        .filter(|_| spec.env.has_secrets());
    let current_digest = template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(env::SECRET_DIGEST));
    // The provenance is written only when the pods change anyway, so sending the same
    // variables again makes no revision.
    let replaces_pods = first.env != env || current_digest != digest;
    first.env = env;
    let mut annotations = serde_json::json!({ env::SECRET_DIGEST: digest });
    if replaces_pods {
        annotations[objects::DEPLOYED_BY] = by.into();
        annotations[objects::CHANGE] = "variables".into();
    }
    Ok(serde_json::json!({
        "metadata": { "resourceVersion": current.metadata.resource_version },
        "spec": { "template": {
            "metadata": { "annotations": annotations },
            "spec": { "containers": containers },
        } },
    }))
}

/// What a change does to the pods, in a short sentence; `None` when it leaves them alone.
fn describe_change(
    before: &RepositorySpec,
    after: &RepositorySpec,
    restart: bool,
) -> Option<String> {
    let mut parts = Vec::new();
    if before.image != after.image {
        parts.push(format!("image {} → {}", before.image, after.image));
    }
    if before.port != after.port {
        parts.push(format!("port {} → {}", before.port, after.port));
    }
    if before.pull != after.pull && after.pull.is_some() {
        parts.push(format!(
            "registry login for {}",
            registries::host_of_image(&after.image)
        ));
    }
    if restart {
        parts.push("redeploy".to_string());
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

pub(super) fn env_patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    }
}

impl RepositoryStore {
    pub fn new(client: kube::Client, config: Arc<Config>, mirror: Mirror) -> Self {
        Self {
            client,
            config,
            mirror,
        }
    }

    /// Waits (briefly) for the mirror's first sync; a page asked before it says the site starts.
    pub(super) async fn mirror_synced(&self) -> Result<(), StoreError> {
        if self.mirror.wait_synced(mirror::FIRST_SYNC).await {
            Ok(())
        } else {
            Err(StoreError::Starting)
        }
    }

    /// The moment a write that starts now must have finished by.
    pub(super) fn deadline(&self) -> Instant {
        Instant::now() + self.config.write_timeout
    }

    /// Refuses a write at once while the API server does not answer the mirror's probe: then
    /// nothing is sent, so nothing can be applied late.
    pub(super) fn answering(&self) -> Result<(), StoreError> {
        if self.mirror.api_answering() {
            Ok(())
        } else {
            Err(self.not_answering())
        }
    }

    fn not_answering(&self) -> StoreError {
        StoreError::NotAnswering {
            secs: self.config.write_timeout.as_secs(),
        }
    }

    /// One API call of a write, given until `deadline`: the outer error says the cluster did not
    /// answer (or could not be reached), the inner one is the API server's own answer.
    pub(super) async fn within<T>(
        &self,
        deadline: Instant,
        call: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<Result<T, kube::Error>, StoreError> {
        match tokio::time::timeout_at(deadline, call).await {
            Ok(Err(e)) if unreachable(&e) => {
                tracing::warn!(error = %e, "the API server cannot be reached");
                Err(self.not_answering())
            }
            Ok(answer) => Ok(answer),
            Err(_) => Err(self.not_answering()),
        }
    }

    /// Waits until the mirror shows a write (read-your-writes), at most
    /// [`mirror::READ_YOUR_WRITES`]; if it does not, the answer is built without it and a
    /// warning says so.
    pub(super) async fn seen(&self, what: &str, seen: impl Fn(&Contents) -> bool) {
        if !self.mirror.wait_for(mirror::READ_YOUR_WRITES, seen).await {
            tracing::warn!(what, "the mirror did not show the site's own write in time");
        }
    }

    /// A JSON merge patch (RFC 7386) of a repository's Deployment under the site's field
    /// manager, given until `deadline` (see [`Self::within`]).
    pub(super) async fn merge_deployment(
        &self,
        namespace: &str,
        name: &str,
        patch: serde_json::Value,
        deadline: Instant,
    ) -> Result<Result<Deployment, kube::Error>, StoreError> {
        self.within(
            deadline,
            self.api::<Deployment>(namespace).patch(
                name,
                &env_patch_params(),
                &Patch::Merge(patch),
            ),
        )
        .await
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

    /// Applies a repository's Service and, when it is public, its Ingress, as the spec says now.
    async fn apply_routes(
        &self,
        namespace: &str,
        spec: &RepositorySpec,
        owner: OwnerReference,
        deadline: Instant,
    ) -> Result<(), StoreError> {
        let service = objects::service(namespace, spec, Some(owner.clone()));
        let ingress = spec
            .public
            .then(|| self.desired_ingress(namespace, spec, owner))
            .transpose()?;
        let services = self.api::<Service>(namespace);
        let (params, patch) = (apply_params(), Patch::Apply(&service));
        let ingress_apply = async {
            match &ingress {
                Some(i) => self
                    .within(deadline, self.apply_ingress(namespace, i))
                    .await
                    .map(|r| r.map(|_| ())),
                None => Ok(Ok(())),
            }
        };
        let (service, ingress) = tokio::join!(
            self.within(deadline, services.patch(&spec.name, &params, &patch)),
            ingress_apply,
        );
        service??;
        ingress??;
        Ok(())
    }

    /// Applies a repository's Ingress; server-side apply under the site's field manager replaces
    /// whatever the site wrote before, so an Ingress of an older form (a plain Ingress with
    /// `nginx.org/path-regex` and `nginx.org/rewrite-target`, before issue 11) loses those
    /// annotations and becomes a minion.
    async fn apply_ingress(
        &self,
        namespace: &str,
        ingress: &Ingress,
    ) -> Result<Ingress, kube::Error> {
        let name = ingress.metadata.name.as_deref().unwrap_or_default();
        self.api::<Ingress>(namespace)
            .patch(name, &apply_params(), &Patch::Apply(ingress))
            .await
    }

    /// Applies a repository's Secret (under the site's field manager, so keys it no longer lists
    /// are removed). Its values are in the request only; neither the call nor its error is logged
    /// with the object.
    async fn apply_secret(&self, namespace: &str, secret: &Secret) -> Result<Secret, kube::Error> {
        let name = secret.metadata.name.as_deref().unwrap_or_default();
        self.api::<Secret>(namespace)
            .patch(name, &apply_params(), &Patch::Apply(secret))
            .await
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

    /// Creates (or repairs) the user's namespace with its quota and default limits, writing only
    /// what the mirror does not already show.
    pub async fn ensure_namespace(&self, namespace: &str) -> Result<(), StoreError> {
        let deadline = self.deadline();
        self.ensure_namespace_by(namespace, deadline).await
    }

    pub(super) async fn ensure_namespace_by(
        &self,
        namespace: &str,
        deadline: Instant,
    ) -> Result<(), StoreError> {
        let (has_namespace, has_quota, has_limits) = {
            let contents = self.mirror.read();
            let ns = contents.namespace(namespace);
            let own =
                |p: Option<&crate::mirror::compact::PresenceView>| p.is_some_and(|p| p.managed);
            (
                own(ns.and_then(|n| n.namespace.as_ref())),
                own(ns.and_then(|n| n.quota.as_ref())),
                own(ns.and_then(|n| n.limits.as_ref())),
            )
        };
        if !has_namespace {
            let namespaces: Api<Namespace> = Api::all(self.client.clone());
            let ns = objects::namespace(namespace);
            self.within(
                deadline,
                namespaces.patch(namespace, &apply_params(), &Patch::Apply(&ns)),
            )
            .await??;
        }
        let Some(policy) = &self.config.quota else {
            return Ok(());
        };
        let quota = async {
            if has_quota {
                return Ok(());
            }
            let quota = objects::resource_quota(namespace, policy);
            self.within(
                deadline,
                self.api::<ResourceQuota>(namespace).patch(
                    "kdeploy",
                    &apply_params(),
                    &Patch::Apply(&quota),
                ),
            )
            .await??;
            Ok::<_, StoreError>(())
        };
        let limits = async {
            if has_limits {
                return Ok(());
            }
            let limits = objects::limit_range(namespace);
            self.within(
                deadline,
                self.api::<LimitRange>(namespace).patch(
                    "kdeploy",
                    &apply_params(),
                    &Patch::Apply(&limits),
                ),
            )
            .await??;
            Ok::<_, StoreError>(())
        };
        let (quota, limits) = tokio::join!(quota, limits);
        quota.and(limits)
    }

    /// Creates the Deployment, then its Service and Ingress together (both owned by it, so
    /// deleting the Deployment removes them); a failed step removes what was made.
    ///
    /// The Deployment is created (not applied) so that a taken name, also in a race, fails
    /// atomically. The whole create is given [`Config::write_timeout`]; should the cluster stop
    /// answering after the Deployment exists, it is removed in the background.
    pub async fn create_repository(
        &self,
        namespace: &str,
        spec: &RepositorySpec,
    ) -> Result<(), StoreError> {
        self.create_repository_with(namespace, spec, &SecretValues::new())
            .await
    }

    /// [`Self::create_repository`] with the values of the spec's secret variables, which go into
    /// the repository's Secret, made together with its Service and Ingress.
    pub async fn create_repository_with(
        &self,
        namespace: &str,
        spec: &RepositorySpec,
        secrets: &SecretValues,
    ) -> Result<(), StoreError> {
        self.answering()?;
        let salt = crate::accounts::session::random_token();
        let mut spec = spec.clone();
        spec.env.secret_digest = spec.env.has_secrets().then(|| env::digest(&salt, secrets));
        let deadline = self.deadline();
        // The namespace's registry login for the image, if it has one, is read meanwhile.
        let (made, pull) = tokio::join!(
            self.ensure_namespace_by(namespace, deadline),
            self.pull_for(namespace, &spec.image, deadline),
        );
        made?;
        spec.pull = pull?;
        let spec = &spec;
        let deployments = self.api::<Deployment>(namespace);
        let mut desired = objects::deployment(namespace, spec, None);
        Provenance {
            deployed_by: writer(namespace),
            change: format!("created with image {}", spec.image),
        }
        .stamp(&mut desired);
        // Marks this very create, so a create the cluster applies after it stopped answering
        // can be told from a later one of the same name and undone.
        let request = crate::accounts::session::random_token();
        desired
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(CREATE_REQUEST.to_string(), request.clone());
        let sent = self
            .within(deadline, deployments.create(&post_params(), &desired))
            .await;
        let sent = match sent {
            Ok(answer) => answer,
            Err(e) => {
                let store = self.clone();
                let (namespace, name) = (namespace.to_string(), spec.name.clone());
                tokio::spawn(
                    async move { store.undo_late_create(&namespace, &name, &request).await },
                );
                return Err(e);
            }
        };
        let created = match sent {
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
        let uid = created.metadata.uid.clone().unwrap_or_default();
        let owner = objects::owned_by(&spec.name, &uid);
        let service = objects::service(namespace, spec, Some(owner.clone()));
        // An internal repository has no route: only its Service name reaches it.
        let ingress = match spec
            .public
            .then(|| self.desired_ingress(namespace, spec, owner.clone()))
            .transpose()
        {
            Ok(i) => i,
            Err(e) => {
                self.roll_back(namespace, &spec.name, &["Deployment"]).await;
                return Err(e);
            }
        };
        let secret = spec.env.has_secrets().then(|| {
            env::secret(
                namespace,
                &spec.name,
                &salt,
                secrets,
                owner.clone(),
                objects::repository_labels(&spec.name),
            )
        });
        let services = self.api::<Service>(namespace);
        let (params, patch) = (apply_params(), Patch::Apply(&service));
        let secret_apply = async {
            match &secret {
                Some(s) => self.within(deadline, self.apply_secret(namespace, s)).await,
                None => Ok(Ok(Secret::default())),
            }
        };
        let ingress_apply = async {
            match &ingress {
                Some(i) => {
                    self.within(deadline, self.apply_ingress(namespace, i))
                        .await
                }
                None => Ok(Ok(Ingress::default())),
            }
        };
        let (service_result, ingress_result, secret_result) = tokio::join!(
            self.within(deadline, services.patch(&spec.name, &params, &patch)),
            ingress_apply,
            secret_apply,
        );
        let failure = match (service_result, ingress_result, secret_result) {
            (Ok(Ok(service)), Ok(Ok(ingress)), Ok(Ok(_))) => {
                let written = [
                    created.metadata.resource_version.unwrap_or_default(),
                    service.metadata.resource_version.unwrap_or_default(),
                    ingress.metadata.resource_version.unwrap_or_default(),
                ];
                self.seen("created repository", |c| {
                    let Some(ns) = c.namespace(namespace) else {
                        return false;
                    };
                    ns.deployments.get(&spec.name).is_some_and(|d| {
                        d.id.uid == uid && has_seen(&d.id.resource_version, &written[0])
                    }) && ns
                        .services
                        .get(&spec.name)
                        .is_some_and(|s| has_seen(&s.id.resource_version, &written[1]))
                        && (!spec.public
                            || ns
                                .ingresses
                                .get(&spec.name)
                                .is_some_and(|i| has_seen(&i.id.resource_version, &written[2])))
                })
                .await;
                tracing::info!(namespace, repository = %spec.name, image = %spec.image, variables = spec.env.vars.len(), "repository created");
                return Ok(());
            }
            (Err(_), _, _) | (_, Err(_), _) | (_, _, Err(_)) => None,
            (Ok(Err(source)), _, _) => Some((CreateStep::Service, source)),
            (_, Ok(Err(source)), _) => Some((CreateStep::Ingress, source)),
            (_, _, Ok(Err(source))) => Some((CreateStep::Secret, source)),
        };
        match failure {
            Some((step, source)) => {
                // The Secret, if made, is owned by the Deployment and goes with it.
                self.roll_back(namespace, &spec.name, &["Ingress", "Service", "Deployment"])
                    .await;
                Err(StoreError::Create { step, source })
            }
            None => {
                // The cluster is not answering: remove the Deployment once it does (its Service
                // and Ingress, if made, are owned by it and go with it).
                let store = self.clone();
                let (namespace, name) = (namespace.to_string(), spec.name.clone());
                tokio::spawn(async move { store.remove_when_back(&namespace, &name, &uid).await });
                Err(StoreError::StoppedMidway {
                    secs: self.config.write_timeout.as_secs(),
                })
            }
        }
    }

    /// Removes the Deployment of a create that timed out, should the cluster apply it late:
    /// once the API server answers, looks for it (by the create's mark) for half a minute.
    async fn undo_late_create(&self, namespace: &str, name: &str, request: &str) {
        let until = Instant::now() + std::time::Duration::from_secs(600);
        let mut seen_answering = None;
        while Instant::now() < until {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let api = self.api::<Deployment>(namespace);
            let found =
                match tokio::time::timeout(std::time::Duration::from_secs(5), api.get_opt(name))
                    .await
                {
                    Ok(Ok(found)) => found,
                    _ => continue,
                };
            let answering_since = *seen_answering.get_or_insert_with(Instant::now);
            let ours = found.filter(|d| {
                d.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(CREATE_REQUEST))
                    .is_some_and(|r| r == request)
            });
            if let Some(d) = ours {
                let uid = d.metadata.uid.unwrap_or_default();
                tracing::warn!(
                    namespace,
                    name,
                    "a create that timed out was applied late; undoing it"
                );
                self.remove_when_back(namespace, name, &uid).await;
                return;
            }
            if answering_since.elapsed() > std::time::Duration::from_secs(30) {
                return;
            }
        }
    }

    /// Deletes a half-created repository's Deployment (that very one, by uid) once the cluster
    /// answers again, trying for up to ten minutes.
    pub(super) async fn remove_when_back(&self, namespace: &str, name: &str, uid: &str) {
        let params = DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..DeleteParams::background()
        };
        let give_up = Instant::now() + std::time::Duration::from_secs(600);
        let mut wait = std::time::Duration::from_secs(1);
        while Instant::now() < give_up {
            let deployments = self.api::<Deployment>(namespace);
            let call = deployments.delete(name, &params);
            match tokio::time::timeout(std::time::Duration::from_secs(10), call).await {
                Ok(Ok(_)) => {
                    tracing::info!(namespace, name, "half-created repository removed");
                    return;
                }
                Ok(Err(e)) if is_not_found(&e) || is_conflict(&e) => return,
                Ok(Err(e)) => {
                    tracing::warn!(namespace, name, error = %e, "removing a half-created repository failed; retrying")
                }
                Err(_) => tracing::warn!(
                    namespace,
                    name,
                    "removing a half-created repository: no answer; retrying"
                ),
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(std::time::Duration::from_secs(30));
        }
        tracing::error!(
            namespace,
            name,
            "a half-created repository was left: delete its Deployment"
        );
    }

    /// Deletes the named objects of one repository together, going on after a failure; absent
    /// counts as done.
    async fn delete_objects(
        &self,
        namespace: &str,
        name: &str,
        kinds: &[&str],
    ) -> Result<(), kube::Error> {
        let deletes = kinds.iter().map(|kind| async move {
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
                Ok(()) => {
                    tracing::info!(namespace, name, kind, "deleted");
                    Ok(())
                }
                Err(e) if is_not_found(&e) => Ok(()),
                Err(e) => {
                    tracing::error!(namespace, name, kind, error = %e, "delete failed");
                    Err(e)
                }
            }
        });
        futures::future::join_all(deletes)
            .await
            .into_iter()
            .collect::<Result<Vec<()>, _>>()
            .map(|_| ())
    }

    /// Deletes what a failed create made; failures are logged by `delete_objects`, and the
    /// original error is what the user needs to see.
    pub(super) async fn roll_back(&self, namespace: &str, name: &str, kinds: &[&str]) {
        let _ = self.delete_objects(namespace, name, kinds).await;
    }

    pub(super) async fn managed_deployment(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Deployment, StoreError> {
        self.managed_deployment_by(namespace, name, self.deadline())
            .await
    }

    pub(super) async fn managed_deployment_by(
        &self,
        namespace: &str,
        name: &str,
        deadline: Instant,
    ) -> Result<Deployment, StoreError> {
        let api = self.api::<Deployment>(namespace);
        match self.within(deadline, api.get_opt(name)).await?? {
            Some(d) if is_managed(&d.metadata) => Ok(d),
            _ => Err(StoreError::NotFound(name.to_string())),
        }
    }

    /// The uid of a repository's Deployment (what its other objects are owned by); also the
    /// check that `name` is a repository of this namespace. Read from the mirror.
    pub async fn repository_uid(&self, namespace: &str, name: &str) -> Result<String, StoreError> {
        self.mirror_synced().await?;
        self.mirror
            .read()
            .namespace(namespace)
            .and_then(|ns| ns.deployments.get(name))
            .filter(|d| d.managed)
            .map(|d| d.id.uid.to_string())
            .ok_or_else(|| StoreError::NotFound(name.to_string()))
    }
    /// Applies a change to the Deployment (a rolling update) and keeps the Service and Ingress in
    /// step (an Ingress of an older form is brought to the current one here too).
    pub async fn change_repository(
        &self,
        namespace: &str,
        name: &str,
        change: &Change,
    ) -> Result<RepositorySpec, StoreError> {
        self.answering()?;
        let restart_at = change
            .restart
            .then(|| k8s_openapi::jiff::Timestamp::now().to_string());
        // Read, change, apply with the read resourceVersion; controllers update status all the
        // time, so a conflict means "read again", as client-go's RetryOnConflict does.
        let deadline = self.deadline();
        let mut attempts = 0;
        let (current, spec, written) = loop {
            attempts += 1;
            let current = self
                .managed_deployment_by(namespace, name, deadline)
                .await?;
            let Some(mut spec) = spec_of(&current) else {
                return Err(StoreError::NotFound(name.to_string()));
            };
            let before = spec.clone();
            if let Some(image) = &change.image {
                spec.image.clone_from(image);
            }
            if let Some(port) = change.port {
                spec.port = port;
            }
            if let Some(replicas) = change.replicas {
                spec.replicas = replicas;
            }
            spec.pull = self.pull_for(namespace, &spec.image, deadline).await?;
            let restarted = restart_at.clone().or_else(|| restarted_at(&current));
            let mut desired = objects::deployment(namespace, &spec, restarted.as_deref());
            // A change that replaces the pods records who made it and what it changed; one that
            // does not (a scale) keeps the template's provenance, so it makes no revision.
            let provenance = match describe_change(&before, &spec, change.restart) {
                Some(change) => Some(Provenance {
                    deployed_by: writer(namespace),
                    change,
                }),
                None => Provenance::of_template(current.spec.as_ref().map(|s| &s.template)),
            };
            if let Some(p) = provenance {
                p.stamp(&mut desired);
            }
            desired.metadata.resource_version = current.metadata.resource_version.clone();
            let deployments = self.api::<Deployment>(namespace);
            match self
                .within(
                    deadline,
                    deployments.patch(name, &apply_params(), &Patch::Apply(desired)),
                )
                .await?
            {
                Ok(applied) => break (current, spec, applied.metadata.resource_version),
                Err(e) => match give_up(e, name, attempts) {
                    Some(error) => return Err(error),
                    None => continue,
                },
            }
        };
        // Server-side apply cannot drop `imagePullSecrets` that the create (an `Update`) wrote
        // (see `env_patch`): an image moved off the registry of the namespace's login loses the
        // reference through a merge patch.
        let mut written = written;
        let before = spec_of(&current);
        if spec.pull.is_none()
            && let Some(before) = before.filter(|b| b.pull.is_some())
        {
            let server = registries::host_of_image(&before.image);
            self.set_pull(namespace, name, None, &server, deadline)
                .await?;
            written = self
                .managed_deployment_by(namespace, name, deadline)
                .await?
                .metadata
                .resource_version;
        }
        let owner = objects::owned_by(name, current.metadata.uid.as_deref().unwrap_or_default());
        self.apply_routes(namespace, &spec, owner, deadline).await?;
        let written = written.unwrap_or_default();
        self.seen("changed repository", |c| {
            c.namespace(namespace)
                .and_then(|ns| ns.deployments.get(name))
                .is_some_and(|d| has_seen(&d.id.resource_version, &written))
        })
        .await;
        tracing::info!(namespace, repository = name, image = %spec.image, replicas = spec.replicas, restart = change.restart, "repository changed");
        Ok(spec)
    }

    /// Rolls the repository back to an earlier revision, as `kubectl rollout undo --to-revision`
    /// does (k8s.io/kubectl pkg/polymorphichelpers/rollback.go: the ReplicaSet's pod template is
    /// copied into the Deployment): the revision's containers (image, variables, ports) and
    /// template annotations replace the Deployment's, through the same rolling update as any
    /// change, with `rollback to revision N` as its provenance. The provenance differs from the
    /// old template's, so the Deployment controller makes a new revision for it.
    pub async fn rollback_repository(
        &self,
        namespace: &str,
        name: &str,
        revision: i64,
    ) -> Result<RepositorySpec, StoreError> {
        self.answering()?;
        let deadline = self.deadline();
        let mut attempts = 0;
        let (current, spec, written) = loop {
            attempts += 1;
            let current = self
                .managed_deployment_by(namespace, name, deadline)
                .await?;
            let uid = current.metadata.uid.clone().unwrap_or_default();
            let listed = self
                .within(
                    deadline,
                    self.api::<ReplicaSet>(namespace)
                        .list(&ListParams::default().labels(&format!("app={name}"))),
                )
                .await??;
            let owned: Vec<&ReplicaSet> = listed
                .items
                .iter()
                .filter(|rs| {
                    rs.metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .any(|o| o.uid == uid && o.controller == Some(true))
                })
                .collect();
            let mut existing: Vec<i64> = owned
                .iter()
                .map(|rs| revision_of(&rs.metadata))
                .filter(|r| *r > 0)
                .collect();
            existing.sort_unstable_by_key(|r| std::cmp::Reverse(*r));
            let running = Some(revision_of(&current.metadata))
                .filter(|r| *r > 0)
                .or_else(|| existing.first().copied());
            let Some(target) = owned
                .iter()
                .find(|rs| revision_of(&rs.metadata) == revision)
            else {
                return Err(StoreError::NoSuchRevision { revision, existing });
            };
            if running == Some(revision) {
                return Err(StoreError::AlreadyRunning(revision));
            }
            let Some(template) = target.spec.as_ref().and_then(|s| s.template.as_ref()) else {
                return Err(StoreError::NoSuchRevision { revision, existing });
            };
            let containers = template
                .spec
                .as_ref()
                .map(|s| s.containers.clone())
                .unwrap_or_default();
            let old_annotations = template
                .metadata
                .as_ref()
                .and_then(|m| m.annotations.clone())
                .unwrap_or_default();
            // Secret variables of the revision must still have their values in the Secret.
            let old_env = env::environment_of(name, containers.first(), Some(&old_annotations));
            if old_env.has_secrets() {
                let stored = self
                    .within(
                        deadline,
                        self.api::<Secret>(namespace)
                            .get_opt(&env::secret_name(name)),
                    )
                    .await??;
                let values = stored.as_ref().map(env::values_of).unwrap_or_default();
                let missing: Vec<String> = old_env
                    .secret_names()
                    .filter(|n| !values.contains_key(*n))
                    .map(str::to_string)
                    .collect();
                if !missing.is_empty() {
                    return Err(StoreError::SecretsGone { revision, missing });
                }
            }
            let mut annotations = serde_json::Map::new();
            let current_annotations = current
                .spec
                .as_ref()
                .and_then(|s| s.template.metadata.as_ref())
                .and_then(|m| m.annotations.clone())
                .unwrap_or_default();
            for key in current_annotations.keys() {
                if !old_annotations.contains_key(key) {
                    annotations.insert(key.clone(), serde_json::Value::Null);
                }
            }
            for (key, value) in &old_annotations {
                annotations.insert(key.clone(), value.clone().into());
            }
            annotations.insert(objects::DEPLOYED_BY.into(), writer(namespace).into());
            annotations.insert(
                objects::CHANGE.into(),
                format!("rollback to revision {revision}").into(),
            );
            // The revision's image pulls with the namespace's login for its registry as it is
            // now (the revision's own may have been replaced since).
            let image = containers
                .first()
                .and_then(|c| c.image.clone())
                .unwrap_or_default();
            let pull = self.pull_for(namespace, &image, deadline).await?;
            annotations.insert(
                registries::DIGEST.into(),
                pull.as_ref().map(|p| p.digest.clone()).into(),
            );
            // A JSON merge patch (RFC 7386) on the version read, as for variables: it replaces the
            // container list whole, so variables the revision did not have go.
            let patch = serde_json::json!({
                "metadata": { "resourceVersion": current.metadata.resource_version },
                "spec": { "template": {
                    "metadata": { "annotations": annotations },
                    "spec": {
                        "containers": containers,
                        "imagePullSecrets": pull.map(|_| registries::pull_secrets()),
                    },
                } },
            });
            match self
                .merge_deployment(namespace, name, patch, deadline)
                .await?
            {
                Ok(applied) => {
                    let spec =
                        spec_of(&applied).ok_or_else(|| StoreError::NotFound(name.to_string()))?;
                    break (current, spec, applied.metadata.resource_version);
                }
                Err(e) => match give_up(e, name, attempts) {
                    Some(error) => return Err(error),
                    None => continue,
                },
            }
        };
        // The revision's port may differ: the Service and Ingress follow it.
        let owner = objects::owned_by(name, current.metadata.uid.as_deref().unwrap_or_default());
        self.apply_routes(namespace, &spec, owner, deadline).await?;
        let written = written.unwrap_or_default();
        self.seen("rolled back repository", |c| {
            c.namespace(namespace)
                .and_then(|ns| ns.deployments.get(name))
                .is_some_and(|d| has_seen(&d.id.resource_version, &written))
        })
        .await;
        tracing::info!(namespace, repository = name, revision, image = %spec.image, "repository rolled back");
        Ok(spec)
    }

    /// Replaces the repository's variables with a rolling update: the Secret is written first
    /// with every key the old and new pods need, then the Deployment (its template's digest of
    /// the Secret changes whenever a value does, so pods are replaced even when only a secret
    /// value changed), then keys no variable uses any more are removed from the Secret (or the
    /// Secret is deleted). A secret variable sent without a value keeps the stored one.
    pub async fn change_environment(
        &self,
        namespace: &str,
        name: &str,
        change: &EnvChange,
    ) -> Result<Environment, StoreError> {
        self.answering()?;
        let deadline = self.deadline();
        let secrets = self.api::<Secret>(namespace);
        let secret_name = env::secret_name(name);
        let mut attempts = 0;
        let (spec, written, final_data, stored, owner) = loop {
            attempts += 1;
            let current = self
                .managed_deployment_by(namespace, name, deadline)
                .await?;
            let Some(mut spec) = spec_of(&current) else {
                return Err(StoreError::NotFound(name.to_string()));
            };
            let stored = self
                .within(deadline, secrets.get_opt(&secret_name))
                .await??;
            let stored_values = stored.as_ref().map(env::values_of).unwrap_or_default();
            let mut final_data = SecretValues::new();
            let mut errors = Vec::new();
            for var in change.vars.iter().filter(|v| v.source == EnvSource::Secret) {
                let value = change.values.get(&var.name).or_else(|| {
                    // Kept only if the Deployment refers to it now: a stale key left in the
                    // Secret is not a stored value.
                    spec.env
                        .secret_names()
                        .any(|n| n == var.name)
                        .then(|| stored_values.get(&var.name))
                        .flatten()
                });
                match value {
                    Some(v) => {
                        final_data.insert(var.name.clone(), v.clone());
                    }
                    None => errors.push(FieldError::new(
                        &format!("secrets[{}].value", change.secret_index(&var.name)),
                        format!("Enter a value: no value of {} is stored to keep.", var.name),
                    )),
                }
            }
            let total: usize = change
                .vars
                .iter()
                .map(|v| {
                    v.name.len()
                        + match &v.source {
                            EnvSource::Plain(value) => value.len(),
                            EnvSource::Secret => {
                                final_data.get(&v.name).map_or(0, |s| s.expose().len())
                            }
                        }
                })
                .sum();
            if total > env::MAX_TOTAL_BYTES {
                errors.push(FieldError::new(
                    "env",
                    format!(
                        "Use at most {} KiB for all names and values together, kept secret values included (this has {} KiB).",
                        env::MAX_TOTAL_BYTES / 1024,
                        total.div_ceil(1024)
                    ),
                ));
            }
            if !errors.is_empty() {
                return Err(StoreError::Invalid(errors));
            }
            let owner =
                objects::owned_by(name, current.metadata.uid.as_deref().unwrap_or_default());
            let salt = stored
                .as_ref()
                .and_then(env::salt_of)
                .unwrap_or_else(crate::accounts::session::random_token);
            if !final_data.is_empty() {
                // Old pods (and their restarts) still read the keys of the old template until
                // the rollout is over: they stay until the Deployment no longer names them.
                let mut union: SecretValues = stored_values
                    .iter()
                    .filter(|(k, _)| spec.env.secret_names().any(|n| n == k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                union.extend(final_data.iter().map(|(k, v)| (k.clone(), v.clone())));
                let mut desired = env::secret(
                    namespace,
                    name,
                    &salt,
                    &union,
                    owner.clone(),
                    objects::repository_labels(name),
                );
                desired.metadata.resource_version = stored
                    .as_ref()
                    .and_then(|s| s.metadata.resource_version.clone());
                match self
                    .within(deadline, self.apply_secret(namespace, &desired))
                    .await?
                {
                    Ok(_) => {}
                    Err(e) => match give_up(e, name, attempts) {
                        Some(error) => return Err(error),
                        None => continue,
                    },
                }
            }
            spec.env = Environment {
                vars: change.vars.clone(),
                secret_digest: (!final_data.is_empty()).then(|| env::digest(&salt, &final_data)),
            };
            let patch = env_patch(&current, &spec, &writer(namespace))?;
            let deployments = self.api::<Deployment>(namespace);
            match self
                .within(
                    deadline,
                    deployments.patch(name, &env_patch_params(), &Patch::Merge(patch)),
                )
                .await?
            {
                Ok(applied) => {
                    break (
                        spec,
                        applied.metadata.resource_version,
                        final_data,
                        stored.is_some(),
                        owner,
                    );
                }
                Err(e) => match give_up(e, name, attempts) {
                    Some(error) => return Err(error),
                    None => continue,
                },
            }
        };
        self.prune_secret(namespace, name, &final_data, stored, owner, deadline)
            .await?;
        let written = written.unwrap_or_default();
        self.seen("changed variables", |c| {
            c.namespace(namespace)
                .and_then(|ns| ns.deployments.get(name))
                .is_some_and(|d| has_seen(&d.id.resource_version, &written))
        })
        .await;
        tracing::info!(
            namespace,
            repository = name,
            variables = spec.env.vars.len(),
            secret = final_data.len(),
            "variables changed"
        );
        Ok(spec.env)
    }

    /// After the Deployment stopped naming them, removes the keys no variable uses from the
    /// repository's Secret, or the Secret itself once there are no secret variables.
    async fn prune_secret(
        &self,
        namespace: &str,
        name: &str,
        final_data: &SecretValues,
        existed: bool,
        owner: OwnerReference,
        deadline: Instant,
    ) -> Result<(), StoreError> {
        let secrets = self.api::<Secret>(namespace);
        let secret_name = env::secret_name(name);
        if final_data.is_empty() {
            if existed {
                match self
                    .within(
                        deadline,
                        secrets.delete(&secret_name, &DeleteParams::default()),
                    )
                    .await?
                {
                    Ok(_) => {}
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            return Ok(());
        }
        let Some(stored) = self
            .within(deadline, secrets.get_opt(&secret_name))
            .await??
        else {
            return Ok(());
        };
        let keys: Vec<String> = stored
            .data
            .iter()
            .flatten()
            .map(|(k, _)| k.clone())
            .collect();
        if keys.iter().all(|k| final_data.contains_key(k)) {
            return Ok(());
        }
        let salt = env::salt_of(&stored).unwrap_or_default();
        let mut desired = env::secret(
            namespace,
            name,
            &salt,
            final_data,
            owner,
            objects::repository_labels(name),
        );
        desired.metadata.resource_version = stored.metadata.resource_version.clone();
        // A conflict means someone else wrote it meanwhile; the next change prunes again.
        match self
            .within(deadline, self.apply_secret(namespace, &desired))
            .await?
        {
            Ok(_) => Ok(()),
            Err(e) if is_conflict(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes the repository's own three objects (its pods and ReplicaSets follow the Deployment).
    /// The Ingress goes first, so the route stops before its pods do; should its delete fail, the
    /// Ingress is still owned by the Deployment and the garbage collector removes it, so no minion
    /// is left behind on the public host.
    pub async fn delete_repository(&self, namespace: &str, name: &str) -> Result<(), StoreError> {
        self.answering()?;
        let deadline = self.deadline();
        let uid = self
            .managed_deployment_by(namespace, name, deadline)
            .await?
            .metadata
            .uid
            .unwrap_or_default();
        // The route stops first; should its delete fail, the Deployment still goes and the
        // garbage collector removes what it owns.
        let routes = self
            .within(
                deadline,
                self.delete_objects(namespace, name, &["Ingress", "Service"]),
            )
            .await?;
        let deployment = self
            .within(
                deadline,
                self.delete_objects(namespace, name, &["Deployment"]),
            )
            .await?;
        routes.and(deployment)?;
        self.seen("deleted repository", |c| {
            c.namespace(namespace).is_none_or(|ns| {
                ns.deployments.get(name).is_none_or(|d| d.id.uid != uid)
                    && !ns.services.contains_key(name)
                    && !ns.ingresses.get(name).is_some_and(|i| i.managed)
            })
        })
        .await;
        tracing::info!(namespace, repository = name, "repository deleted");
        Ok(())
    }
}
