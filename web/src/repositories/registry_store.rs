//! The store's side of private registries ([`super::registries`]): reading, saving and removing
//! a namespace's logins, and keeping each repository's `imagePullSecrets` in step with them.
//!
//! The site reads the namespace's one login Secret by name (`get`) and writes it with server-side
//! apply (`patch`) on the version read, so two saves at once cannot lose either login; it never
//! lists Secrets (its ClusterRole has no `list` on them, manifests/deploy-site.yaml).

use std::collections::BTreeMap;
use tokio::time::Instant;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, Preconditions};

use super::objects;
use super::registries::{self, Login, Logins, PullRef, RegistryView};
use super::store::{CHANGE_ATTEMPTS, RepositoryStore, StoreError, apply_params, give_up};
use crate::config::MANAGED_BY;
use crate::field_error::FieldError;
use crate::kube_status::{is_already_exists, is_not_found};
use crate::mirror::Contents;

/// A saved login and the repositories that were rolled to pull with it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SavedRegistry {
    #[serde(flatten)]
    pub registry: RegistryView,
    /// Repositories whose pods are being replaced to pull with the new login.
    pub rolled: Vec<String>,
}

fn secret_labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            objects::LABEL_MANAGED_BY.to_string(),
            MANAGED_BY.to_string(),
        ),
        (objects::LABEL_PART_OF.to_string(), MANAGED_BY.to_string()),
    ])
}

/// The namespace's repositories whose image is on `server`, by name.
fn repositories_on(contents: &Contents, namespace: &str, server: &str) -> Vec<String> {
    contents
        .namespace(namespace)
        .into_iter()
        .flat_map(|ns| ns.deployments.values())
        .filter(|d| d.managed && registries::host_of_image(&d.image) == server)
        .map(|d| d.id.name.to_string())
        .collect()
}

impl RepositoryStore {
    /// The namespace's login Secret and what it holds (`None`: no login saved).
    async fn login_secret(
        &self,
        namespace: &str,
        deadline: Instant,
    ) -> Result<Option<(Secret, Logins)>, StoreError> {
        let secret = self
            .within(
                deadline,
                self.api::<Secret>(namespace).get_opt(registries::SECRET),
            )
            .await??;
        Ok(secret.map(|s| {
            let logins = Logins::of_secret(&s);
            (s, logins)
        }))
    }

    /// What a repository with `image` pulls with in `namespace`: the login of the image's
    /// registry, if the namespace has one.
    pub(super) async fn pull_for(
        &self,
        namespace: &str,
        image: &str,
        deadline: Instant,
    ) -> Result<Option<PullRef>, StoreError> {
        Ok(self
            .login_secret(namespace, deadline)
            .await?
            .and_then(|(_, logins)| logins.pull_for(image)))
    }

    /// The namespace's registries (servers and usernames, never passwords), each with the
    /// repositories that pull from it.
    pub async fn registries(&self, namespace: &str) -> Result<Vec<RegistryView>, StoreError> {
        self.mirror_synced().await?;
        let logins = self
            .login_secret(namespace, self.deadline())
            .await?
            .map(|(_, l)| l)
            .unwrap_or_default();
        let contents = self.mirror.read();
        Ok(logins
            .by_server
            .iter()
            .map(|(server, (username, _))| RegistryView {
                server: server.clone(),
                username: username.clone(),
                used_by: repositories_on(&contents, namespace, server),
            })
            .collect())
    }

    /// Saves (adds or replaces) a login, then rolls the repositories on its registry so their
    /// pods pull with it (a rolling update: `imagePullSecrets` and the login's digest in the pod
    /// template). Replacing a login with the same one rolls nothing.
    pub async fn save_registry(
        &self,
        namespace: &str,
        login: &Login,
    ) -> Result<SavedRegistry, StoreError> {
        self.answering()?;
        self.mirror_synced().await?;
        let deadline = self.deadline();
        self.ensure_namespace_by(namespace, deadline).await?;
        let server = &login.server;
        let mut attempts = 0;
        let logins = loop {
            attempts += 1;
            let current = self.login_secret(namespace, deadline).await?;
            let (version, mut logins) = match current {
                Some((s, l)) => (s.metadata.resource_version, l),
                None => (None, Logins::default()),
            };
            if logins.salt.is_empty() {
                logins.salt = crate::accounts::session::random_token();
            }
            if !logins.by_server.contains_key(server)
                && logins.by_server.len() >= registries::MAX_REGISTRIES
            {
                return Err(StoreError::Invalid(vec![FieldError::new(
                    "server",
                    format!(
                        "A namespace keeps at most {} registry logins: remove one you no longer need first.",
                        registries::MAX_REGISTRIES
                    ),
                )]));
            }
            logins.by_server.insert(
                server.clone(),
                (login.username.clone(), login.password.clone()),
            );
            let mut secret = logins.secret(namespace, secret_labels());
            let secrets = self.api::<Secret>(namespace);
            // A first save creates the Secret (two at once: one gets 409 and reads again); a
            // later one applies on the version read (a save in between: 409, read again).
            let written = match &version {
                None => {
                    self.within(
                        deadline,
                        secrets.create(&super::store::post_params(), &secret),
                    )
                    .await?
                }
                Some(_) => {
                    secret.metadata.resource_version.clone_from(&version);
                    self.within(
                        deadline,
                        secrets.patch(registries::SECRET, &apply_params(), &Patch::Apply(&secret)),
                    )
                    .await?
                }
            };
            match written {
                Ok(written) => break Logins::of_secret(&written),
                Err(e) if is_already_exists(&e) && attempts < CHANGE_ATTEMPTS => continue,
                Err(e) => match give_up(e, registries::SECRET, attempts) {
                    Some(error) => return Err(error),
                    None => continue,
                },
            }
        };
        tracing::info!(namespace, server = %server, username = %login.username, "registry login saved");
        let using = repositories_on(&self.mirror.read(), namespace, server);
        // Every repository on this server pulls with its login: one digest for all of them.
        let pull = logins.digest_for(server).map(|digest| PullRef { digest });
        let mut rolled = Vec::new();
        let mut pending = Vec::new();
        for name in &using {
            match self
                .set_pull(namespace, name, pull.as_ref(), server, deadline)
                .await
            {
                Ok(true) => rolled.push(name.clone()),
                Ok(false) | Err(StoreError::NotFound(_)) => {}
                Err(e) => pending.push((name.clone(), e.to_string())),
            }
        }
        if let Some((_, cause)) = pending.first() {
            return Err(StoreError::RegistryNotApplied {
                server: server.clone(),
                pending: pending.iter().map(|(n, _)| n.clone()).collect(),
                cause: cause.clone(),
            });
        }
        Ok(SavedRegistry {
            registry: RegistryView {
                server: server.clone(),
                username: login.username.clone(),
                used_by: using,
            },
            rolled,
        })
    }

    /// Removes a login. Refused while a repository's image is on its registry: its next pod
    /// would fail to pull (change the image or delete the repository first).
    pub async fn delete_registry(&self, namespace: &str, server: &str) -> Result<(), StoreError> {
        self.answering()?;
        self.mirror_synced().await?;
        let deadline = self.deadline();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let using = repositories_on(&self.mirror.read(), namespace, server);
            if !using.is_empty() {
                return Err(StoreError::RegistryInUse {
                    server: server.to_string(),
                    repositories: using,
                });
            }
            let Some((secret, mut logins)) = self.login_secret(namespace, deadline).await? else {
                return Err(StoreError::NoSuchRegistry(server.to_string()));
            };
            if logins.by_server.remove(server).is_none() {
                return Err(StoreError::NoSuchRegistry(server.to_string()));
            }
            let version = secret.metadata.resource_version.clone();
            let answer = if logins.by_server.is_empty() {
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        resource_version: version,
                        uid: None,
                    }),
                    ..DeleteParams::default()
                };
                self.within(
                    deadline,
                    self.api::<Secret>(namespace)
                        .delete(registries::SECRET, &params),
                )
                .await?
                .map(|_| ())
            } else {
                let mut desired = logins.secret(namespace, secret_labels());
                desired.metadata.resource_version = version;
                self.within(
                    deadline,
                    self.api::<Secret>(namespace).patch(
                        registries::SECRET,
                        &apply_params(),
                        &Patch::Apply(&desired),
                    ),
                )
                .await?
                .map(|_| ())
            };
            match answer {
                Ok(()) => {
                    tracing::info!(namespace, server, "registry login removed");
                    return Ok(());
                }
                Err(e) if is_not_found(&e) => {
                    return Err(StoreError::NoSuchRegistry(server.to_string()));
                }
                Err(e) => match give_up(e, registries::SECRET, attempts) {
                    Some(error) => return Err(error),
                    None => continue,
                },
            }
        }
    }

    /// Makes the repository pull with `pull` (or with no login): a JSON merge patch (RFC 7386)
    /// on the version read that sets or removes `imagePullSecrets` and the login's digest in
    /// the pod template, so the Deployment rolls. `Ok(false)`: it already did.
    pub(super) async fn set_pull(
        &self,
        namespace: &str,
        name: &str,
        pull: Option<&PullRef>,
        server: &str,
        deadline: Instant,
    ) -> Result<bool, StoreError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let current = self
                .managed_deployment_by(namespace, name, deadline)
                .await?;
            let template = current.spec.as_ref().map(|s| &s.template);
            let now = PullRef::of_template(
                template
                    .and_then(|t| t.spec.as_ref())
                    .and_then(|s| s.image_pull_secrets.as_deref()),
                template
                    .and_then(|t| t.metadata.as_ref())
                    .and_then(|m| m.annotations.as_ref()),
            );
            if now.as_ref() == pull {
                return Ok(false);
            }
            let patch = serde_json::json!({
                "metadata": { "resourceVersion": current.metadata.resource_version },
                "spec": { "template": {
                    "metadata": { "annotations": {
                        registries::DIGEST: pull.map(|p| p.digest.clone()),
                        objects::DEPLOYED_BY: namespace,
                        objects::CHANGE: if pull.is_some() {
                            format!("registry login for {server}")
                        } else {
                            format!("no registry login for {server}")
                        },
                    } },
                    "spec": { "imagePullSecrets": pull.map(|_| registries::pull_secrets()) },
                } },
            });
            match self
                .merge_deployment(namespace, name, patch, deadline)
                .await?
            {
                Ok(_) => {
                    tracing::info!(
                        namespace,
                        repository = name,
                        server,
                        login = pull.is_some(),
                        "repository pulls with the namespace's registry login"
                    );
                    return Ok(true);
                }
                Err(e) => match give_up(e, name, attempts) {
                    Some(error) => return Err(error),
                    None => continue,
                },
            }
        }
    }
}
