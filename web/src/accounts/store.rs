//! Accounts: users are Secrets in the site's namespace, so every replica agrees; sign-in
//! failures are counted on the user's Secret so the limit holds across replicas.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};

use super::password::{check_password, check_username, hash_password, verify_password};
use crate::config::{Config, FIELD_MANAGER, LoginLimit, MANAGED_BY};
use crate::error::{AppError, FieldError};
use crate::kube_status::{is_already_exists, is_conflict};
use crate::mirror::compact::AccountView;
use crate::mirror::{self, Mirror, has_seen};
use crate::repositories::objects::LABEL_MANAGED_BY;

const SETTINGS: &str = "kdeploy-settings";
const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
const ANNOTATION_ADMIN: &str = "kdeploy.dev/admin";
const ANNOTATION_FAILURES: &str = "kdeploy.dev/failed-logins";
const ANNOTATION_FIRST_FAILURE: &str = "kdeploy.dev/first-failed-login";
const ANNOTATION_EPOCH: &str = "kdeploy.dev/session-epoch";
const PASSWORD_KEY: &str = "password-hash";

/// The signed-in user, as handlers see it; the namespace is always derived, never taken from a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentUser {
    pub name: String,
    pub admin: bool,
    /// For an administrator while the first administrator's credentials are still stored: the
    /// Secret to delete once the password has been changed.
    pub initial_admin_secret: Option<InitialAdminSecret>,
}

/// Where the first administrator's generated credentials are still stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialAdminSecret {
    pub namespace: String,
    pub name: String,
}

impl CurrentUser {
    pub fn namespace(&self) -> &str {
        &self.name
    }
}

/// A user as stored; `resource_version` makes every update an optimistic one.
#[derive(Debug, Clone)]
struct StoredUser {
    secret: Secret,
    admin: bool,
    hash: String,
    failures: u32,
    first_failure: i64,
    epoch: u64,
}

impl StoredUser {
    fn from_secret(secret: Secret) -> Self {
        let annotations = secret.metadata.annotations.clone().unwrap_or_default();
        let number = |k: &str| {
            annotations
                .get(k)
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0)
        };
        let hash = secret
            .data
            .as_ref()
            .and_then(|d| d.get(PASSWORD_KEY))
            .and_then(|b| String::from_utf8(b.0.clone()).ok())
            .unwrap_or_default();
        Self {
            admin: annotations
                .get(ANNOTATION_ADMIN)
                .is_some_and(|v| v == "true"),
            hash,
            failures: u32::try_from(number(ANNOTATION_FAILURES)).unwrap_or(0),
            first_failure: number(ANNOTATION_FIRST_FAILURE),
            epoch: u64::try_from(number(ANNOTATION_EPOCH)).unwrap_or(0),
            secret,
        }
    }
}

/// The account a Secret of the site's namespace holds, if it is one (for the mirror).
pub fn account_of(secret: &Secret) -> Option<AccountView> {
    let username = secret
        .metadata
        .labels
        .as_ref()
        .filter(|l| l.get(LABEL_COMPONENT).is_some_and(|c| c == "user"))?
        .get("kdeploy.dev/username")
        .cloned()
        .or_else(|| {
            secret
                .metadata
                .name
                .as_deref()?
                .strip_prefix("kdeploy-user-")
                .map(str::to_string)
        })?;
    let user = StoredUser::from_secret(secret.clone());
    Some(AccountView {
        username,
        admin: user.admin,
        hash: user.hash,
        failures: user.failures,
        first_failure: user.first_failure,
        epoch: user.epoch,
    })
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct UserRow {
    pub name: String,
    pub admin: bool,
}

/// Whether another attempt is allowed: `Err(seconds)` until the window of failures has passed.
pub fn login_allowed(
    failures: u32,
    first_failure: i64,
    now: i64,
    limit: &LoginLimit,
) -> Result<(), u64> {
    let window = i64::try_from(limit.window.as_secs()).unwrap_or(i64::MAX);
    let elapsed = now.saturating_sub(first_failure);
    if failures >= limit.max_failures && elapsed < window {
        Err(u64::try_from(window - elapsed).unwrap_or(1).max(1))
    } else {
        Ok(())
    }
}

/// The failure count and window start after one more failure at `now`.
pub fn after_failure(
    failures: u32,
    first_failure: i64,
    now: i64,
    limit: &LoginLimit,
) -> (u32, i64) {
    let window = i64::try_from(limit.window.as_secs()).unwrap_or(i64::MAX);
    if failures == 0 || now.saturating_sub(first_failure) >= window {
        (1, now)
    } else {
        (failures.saturating_add(1), first_failure)
    }
}

pub(super) fn now() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_second()
}

fn secret_name(username: &str) -> String {
    format!("kdeploy-user-{username}")
}

#[derive(Clone)]
pub struct Accounts {
    client: kube::Client,
    config: Arc<Config>,
    /// Where sessions are resolved without an API call; without it (a one-off command), every
    /// read goes to the API server.
    mirror: Option<Mirror>,
}

impl Accounts {
    pub fn new(client: kube::Client, config: Arc<Config>) -> Self {
        Self {
            client,
            config,
            mirror: None,
        }
    }

    /// Accounts that read users from the mirror (the site's).
    pub fn with_mirror(mut self, mirror: Mirror) -> Self {
        self.mirror = Some(mirror);
        self
    }

    /// The mirror, once it has synced (briefly waited for).
    pub(super) async fn synced_mirror(&self) -> Option<&Mirror> {
        let mirror = self.mirror.as_ref()?;
        mirror
            .wait_synced(mirror::FIRST_SYNC)
            .await
            .then_some(mirror)
    }

    /// One API call of the accounts, bounded as the repositories' writes are: refused at once
    /// while the API server does not answer the mirror's probe (nothing is sent, so nothing can be
    /// applied late), and given the write timeout otherwise; either way the user reads that the
    /// cluster is not answering and nothing was changed.
    async fn bounded<T>(
        &self,
        call: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, AppError> {
        self.within(call).await?.map_err(AppError::from)
    }

    /// As [`Self::bounded`], keeping the API server's own answer apart from the bound's.
    async fn within<T>(
        &self,
        call: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<Result<T, kube::Error>, AppError> {
        let away = || AppError::ClusterNotAnswering {
            secs: self.config.write_timeout.as_secs(),
        };
        if self.mirror.as_ref().is_some_and(|m| !m.api_answering()) {
            return Err(away());
        }
        tokio::time::timeout(self.config.write_timeout, call)
            .await
            .map_err(|_| away())
    }

    /// A user's sign-in fields: from the mirror when it has them, else from the API server (a
    /// user just made by another replica may not have reached this one's mirror yet).
    async fn account(&self, username: &str) -> Result<Option<AccountView>, AppError> {
        if let Some(mirror) = self.synced_mirror().await {
            let found = mirror
                .read()
                .secrets
                .get(&secret_name(username))
                .and_then(|s| s.account.clone());
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(self
            .get(username)
            .await?
            .and_then(|u| account_of(&u.secret)))
    }

    /// Waits until the mirror shows a write to the user's Secret (read-your-writes).
    async fn seen(&self, username: &str, written: Option<String>) {
        let (Some(mirror), Some(written)) = (&self.mirror, written) else {
            return;
        };
        let name = secret_name(username);
        let shown = mirror
            .wait_for(mirror::READ_YOUR_WRITES, |c| {
                c.secrets
                    .get(&name)
                    .is_some_and(|s| has_seen(&s.id.resource_version, &written))
            })
            .await;
        if !shown {
            tracing::warn!(
                username,
                "the mirror did not show the account's change in time"
            );
        }
    }

    pub(super) fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.config.system_namespace)
    }

    pub(super) fn config(&self) -> &Config {
        &self.config
    }

    async fn get(&self, username: &str) -> Result<Option<StoredUser>, AppError> {
        if check_username(username, &self.config.platform_namespaces).is_err() {
            return Ok(None);
        }
        let secret = self
            .bounded(self.secrets().get_opt(&secret_name(username)))
            .await?;
        Ok(secret
            .filter(|s| {
                s.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(LABEL_COMPONENT))
                    .is_some_and(|c| c == "user")
            })
            .map(StoredUser::from_secret))
    }

    /// Changes a user's annotations with the read resourceVersion, retrying when another replica won.
    async fn update_annotations(
        &self,
        username: &str,
        change: impl Fn(&StoredUser) -> BTreeMap<&'static str, String>,
    ) -> Result<(), AppError> {
        self.update_secret(username, |user, secret| {
            let annotations = secret
                .metadata
                .annotations
                .get_or_insert_with(BTreeMap::new);
            for (k, v) in change(user) {
                annotations.insert(k.to_string(), v);
            }
        })
        .await
    }

    /// Read-modify-write of a user's Secret with the read resourceVersion, retried on conflicts.
    async fn update_secret(
        &self,
        username: &str,
        change: impl Fn(&StoredUser, &mut Secret),
    ) -> Result<(), AppError> {
        for _ in 0..5 {
            let Some(user) = self.get(username).await? else {
                return Ok(());
            };
            let mut secret = user.secret.clone();
            change(&user, &mut secret);
            match self
                .within(self.secrets().replace(
                    &secret_name(username),
                    &PostParams::default(),
                    &secret,
                ))
                .await?
            {
                Ok(written) => {
                    self.seen(username, written.metadata.resource_version).await;
                    return Ok(());
                }
                Err(e) if is_conflict(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(AppError::Conflict(FieldError::new(
            "username",
            "This account is busy (many sign-ins at once): try again in a moment.",
        )))
    }

    /// Changes the user's own password after checking the current one; other sessions stay signed in.
    pub async fn change_password(
        &self,
        username: &str,
        current: &str,
        new: &str,
    ) -> Result<(), AppError> {
        let Some(user) = self.get(username).await? else {
            return Err(AppError::Unauthenticated);
        };
        let mut errors = Vec::new();
        if !verify_password(current, &user.hash).await? {
            errors.push(FieldError::new(
                "current",
                "This is not your current password.",
            ));
        }
        if let Err(m) = check_password(new) {
            errors.push(FieldError::new("new", m));
        } else if new == current {
            errors.push(FieldError::new(
                "new",
                "Choose a password different from the current one.",
            ));
        }
        if !errors.is_empty() {
            return Err(AppError::Invalid(errors));
        }
        let hash = hash_password(new, self.config.password_cost).await?;
        self.update_secret(username, |_, secret| {
            secret.data.get_or_insert_with(BTreeMap::new).insert(
                PASSWORD_KEY.to_string(),
                ByteString(hash.clone().into_bytes()),
            );
        })
        .await?;
        tracing::info!(username, "password changed");
        Ok(())
    }

    /// True when at least one administrator exists.
    pub async fn has_admin(&self) -> Result<bool, AppError> {
        Ok(self.list_users().await?.iter().any(|u| u.admin))
    }

    /// Creates a user; a taken username fails atomically (the Secret already exists).
    pub async fn create_user(
        &self,
        username: &str,
        password: &str,
        admin: bool,
    ) -> Result<(), AppError> {
        let mut errors = Vec::new();
        if let Err(m) = check_username(username, &self.config.platform_namespaces) {
            errors.push(FieldError::new("username", m));
        }
        if let Err(m) = check_password(password) {
            errors.push(FieldError::new("password", m));
        }
        if !errors.is_empty() {
            return Err(AppError::Invalid(errors));
        }
        let hash = hash_password(password, self.config.password_cost).await?;
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(secret_name(username)),
                namespace: Some(self.config.system_namespace.clone()),
                labels: Some(BTreeMap::from([
                    (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
                    (LABEL_COMPONENT.to_string(), "user".to_string()),
                    ("kdeploy.dev/username".to_string(), username.to_string()),
                ])),
                annotations: Some(BTreeMap::from([
                    (ANNOTATION_ADMIN.to_string(), admin.to_string()),
                    (ANNOTATION_EPOCH.to_string(), "0".to_string()),
                ])),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".into()),
            data: Some(BTreeMap::from([(
                PASSWORD_KEY.to_string(),
                ByteString(hash.into_bytes()),
            )])),
            ..Secret::default()
        };
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PostParams::default()
        };
        match self.within(self.secrets().create(&params, &secret)).await? {
            Ok(written) => {
                self.seen(username, written.metadata.resource_version).await;
                tracing::info!(username, admin, "user created");
                Ok(())
            }
            Err(e) if is_already_exists(&e) => Err(AppError::Conflict(FieldError::new(
                "username",
                format!("The username {username} is taken: choose another."),
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// The users, from the mirror once it has synced (no API call), else from the API server.
    pub async fn list_users(&self) -> Result<Vec<UserRow>, AppError> {
        if let Some(mirror) = self.synced_mirror().await {
            let mut rows: Vec<UserRow> = mirror
                .read()
                .secrets
                .values()
                .filter_map(|s| s.account.as_ref())
                .map(|a| UserRow {
                    name: a.username.clone(),
                    admin: a.admin,
                })
                .collect();
            rows.sort_by(|a, b| a.name.cmp(&b.name));
            return Ok(rows);
        }
        let params = ListParams::default().labels(&format!("{LABEL_COMPONENT}=user"));
        let mut rows: Vec<UserRow> = self
            .bounded(self.secrets().list(&params))
            .await?
            .items
            .into_iter()
            .filter_map(|s| {
                let name = s
                    .metadata
                    .labels
                    .as_ref()?
                    .get("kdeploy.dev/username")?
                    .clone();
                Some(UserRow {
                    admin: StoredUser::from_secret(s).admin,
                    name,
                })
            })
            .collect();
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(rows)
    }

    /// Checks the password, counting failures on the user's Secret so the limit holds across replicas.
    pub async fn sign_in(
        &self,
        username: &str,
        password: &str,
    ) -> Result<(CurrentUser, u64), AppError> {
        if check_username(username, &self.config.platform_namespaces).is_err() {
            let _ = hash_password(password, self.config.password_cost).await;
            return Err(AppError::BadCredentials);
        }
        let Some(user) = self.account(username).await? else {
            // Same work as a real check, so response time does not tell which usernames exist.
            let _ = hash_password(password, self.config.password_cost).await;
            return Err(AppError::BadCredentials);
        };
        let limit = self.config.login_limit;
        if let Err(retry_after_secs) =
            login_allowed(user.failures, user.first_failure, now(), &limit)
        {
            return Err(AppError::TooManyAttempts { retry_after_secs });
        }
        if !verify_password(password, &user.hash).await? {
            self.update_annotations(username, |u| {
                let (failures, first) = after_failure(u.failures, u.first_failure, now(), &limit);
                BTreeMap::from([
                    (ANNOTATION_FAILURES, failures.to_string()),
                    (ANNOTATION_FIRST_FAILURE, first.to_string()),
                ])
            })
            .await?;
            tracing::warn!(username, "failed sign-in");
            return Err(AppError::BadCredentials);
        }
        if user.failures > 0 {
            self.update_annotations(username, |_| {
                BTreeMap::from([(ANNOTATION_FAILURES, "0".to_string())])
            })
            .await?;
        }
        tracing::info!(username, "signed in");
        Ok((
            CurrentUser {
                name: username.to_string(),
                admin: user.admin,
                initial_admin_secret: None,
            },
            user.epoch,
        ))
    }

    /// Ends every session of the user (signed cookies cannot be revoked one by one).
    pub async fn end_sessions(&self, username: &str) -> Result<(), AppError> {
        self.update_annotations(username, |u| {
            BTreeMap::from([(ANNOTATION_EPOCH, (u.epoch + 1).to_string())])
        })
        .await
    }

    /// Resolves a session cookie's claims against the stored user.
    /// The user of a session of generation `epoch`, if that session is still current.
    pub async fn signed_in(
        &self,
        username: &str,
        epoch: u64,
    ) -> Result<Option<CurrentUser>, AppError> {
        if check_username(username, &self.config.platform_namespaces).is_err() {
            return Ok(None);
        }
        Ok(self
            .account(username)
            .await?
            .filter(|user| user.epoch == epoch)
            .map(|user| CurrentUser {
                name: username.to_string(),
                admin: user.admin,
                initial_admin_secret: None,
            }))
    }

    fn settings(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), &self.config.system_namespace)
    }

    pub async fn self_registration(&self) -> Result<bool, AppError> {
        let settings = self.bounded(self.settings().get_opt(SETTINGS)).await?;
        Ok(settings
            .and_then(|c| c.data?.get("self-registration").cloned())
            .is_some_and(|v| v == "true"))
    }

    pub async fn set_self_registration(&self, enabled: bool) -> Result<(), AppError> {
        let settings = ConfigMap {
            metadata: ObjectMeta {
                name: Some(SETTINGS.into()),
                namespace: Some(self.config.system_namespace.clone()),
                labels: Some(BTreeMap::from([(
                    LABEL_MANAGED_BY.to_string(),
                    MANAGED_BY.to_string(),
                )])),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(
                "self-registration".to_string(),
                enabled.to_string(),
            )])),
            ..ConfigMap::default()
        };
        self.bounded(
            self.settings().patch(
                SETTINGS,
                &PatchParams::apply(FIELD_MANAGER)
                    .force()
                    .validation_strict(),
                &Patch::Apply(settings),
            ),
        )
        .await?;
        tracing::info!(enabled, "self-registration changed");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn login_limit_window() {
        let limit = LoginLimit {
            max_failures: 3,
            window: Duration::from_secs(100),
        };
        assert!(login_allowed(2, 0, 10, &limit).is_ok());
        assert_eq!(login_allowed(3, 0, 10, &limit), Err(90));
        assert!(login_allowed(3, 0, 100, &limit).is_ok());
        assert_eq!(after_failure(0, 0, 50, &limit), (1, 50));
        assert_eq!(after_failure(1, 50, 60, &limit), (2, 50));
        assert_eq!(after_failure(5, 50, 150, &limit), (1, 150));
    }
}
