//! The site's first administrator: created once at start-up with a generated password that is left
//! in a Secret (as Argo CD's `argocd-initial-admin-secret`), so the installer can show it.
//!
//! Creating the Secret is the lock: of several replicas starting together, the one whose create
//! succeeds chooses the password, and every replica creates the user from the Secret's password,
//! so there is one administrator and one password whoever gets there first.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::PostParams;

use super::password::generate_password;
use super::store::{Accounts, InitialAdminSecret};
use crate::config::{FIELD_MANAGER, MANAGED_BY};
use crate::error::AppError;
use crate::kube_status::is_already_exists;
use crate::repositories::objects::{LABEL_MANAGED_BY, LABEL_PART_OF};

/// Username of the first administrator.
pub const INITIAL_ADMIN: &str = "operator";
const USERNAME_KEY: &str = "username";
const PASSWORD_KEY: &str = "password";

/// What start-up found and did about the first administrator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bootstrap {
    /// An administrator already existed; nothing was touched.
    AdminExists,
    /// This replica created the administrator (with its own or another replica's password).
    Created,
    /// Another replica created the administrator first.
    CreatedElsewhere,
}

/// The stored first credentials.
struct InitialCredentials {
    username: String,
    password: String,
}

impl InitialCredentials {
    fn from_secret(secret: &Secret) -> Option<Self> {
        let data = secret.data.as_ref()?;
        let text = |k: &str| String::from_utf8(data.get(k)?.0.clone()).ok();
        Some(Self {
            username: text(USERNAME_KEY)?,
            password: text(PASSWORD_KEY)?,
        })
    }
}

impl Accounts {
    /// Creates the first administrator when there is none; safe to run from every replica at once.
    pub async fn ensure_initial_admin(&self) -> Result<Bootstrap, AppError> {
        if self.has_admin().await? {
            return Ok(Bootstrap::AdminExists);
        }
        let credentials = self.initial_credentials().await?;
        match self
            .create_user(&credentials.username, &credentials.password, true)
            .await
        {
            Ok(()) => {
                tracing::info!(
                    username = %credentials.username,
                    secret = %self.config().initial_admin_secret,
                    "first administrator created; the password is in the Secret"
                );
                Ok(Bootstrap::Created)
            }
            Err(AppError::Conflict(_)) => Ok(Bootstrap::CreatedElsewhere),
            Err(e) => Err(e),
        }
    }

    /// The credentials in the Secret, creating the Secret with a new password if nobody has yet.
    async fn initial_credentials(&self) -> Result<InitialCredentials, AppError> {
        let name = &self.config().initial_admin_secret;
        if let Some(secret) = self.secrets().get_opt(name).await? {
            return self.read_credentials(&secret);
        }
        let credentials = InitialCredentials {
            username: INITIAL_ADMIN.to_string(),
            password: generate_password(),
        };
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PostParams::default()
        };
        match self
            .secrets()
            .create(&params, &self.credentials_secret(&credentials))
            .await
        {
            Ok(_) => Ok(credentials),
            // Another replica won the lock: its password is the one.
            Err(e) if is_already_exists(&e) => {
                let secret = self.secrets().get(name).await?;
                self.read_credentials(&secret)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn read_credentials(&self, secret: &Secret) -> Result<InitialCredentials, AppError> {
        InitialCredentials::from_secret(secret).ok_or_else(|| AppError::StoredDataUnreadable {
            what: "first administrator's credentials",
            object: format!("Secret {}", self.config().initial_admin_secret),
            reason: format!("the keys {USERNAME_KEY} and {PASSWORD_KEY} are missing"),
        })
    }

    fn credentials_secret(&self, credentials: &InitialCredentials) -> Secret {
        let config = self.config();
        Secret {
            metadata: ObjectMeta {
                name: Some(config.initial_admin_secret.clone()),
                namespace: Some(config.system_namespace.clone()),
                labels: Some(BTreeMap::from([
                    (LABEL_PART_OF.to_string(), MANAGED_BY.to_string()),
                    (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
                ])),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".into()),
            data: Some(BTreeMap::from([
                (
                    USERNAME_KEY.to_string(),
                    ByteString(credentials.username.clone().into_bytes()),
                ),
                (
                    PASSWORD_KEY.to_string(),
                    ByteString(credentials.password.clone().into_bytes()),
                ),
            ])),
            ..Secret::default()
        }
    }

    /// The initial-admin Secret's name while it still exists, for the reminder administrators see.
    pub async fn initial_admin_secret(&self) -> Result<Option<InitialAdminSecret>, AppError> {
        let config = self.config();
        if let Some(mirror) = self.synced_mirror().await {
            let stored = mirror
                .read()
                .secrets
                .contains_key(&config.initial_admin_secret);
            return Ok(stored.then(|| InitialAdminSecret {
                namespace: config.system_namespace.clone(),
                name: config.initial_admin_secret.clone(),
            }));
        }
        Ok(self
            .secrets()
            .get_opt(&config.initial_admin_secret)
            .await?
            .map(|_| InitialAdminSecret {
                namespace: config.system_namespace.clone(),
                name: config.initial_admin_secret.clone(),
            }))
    }
}
