//! Accounts, sign-in and sessions. Users are Secrets in the site's namespace, so every replica agrees.

use std::collections::BTreeMap;
use std::sync::Arc;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum_extra::extract::cookie::{Cookie, Key, SameSite, SignedCookieJar};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use rand::RngCore;

use crate::config::{Config, FIELD_MANAGER, LoginLimit, MANAGED_BY, PasswordCost};
use crate::error::AppError;
use crate::objects::LABEL_MANAGED_BY;
use crate::validation::{FieldError, check_password, check_username};

pub const SESSION_COOKIE: &str = "kdeploy_session";
pub const CSRF_COOKIE: &str = "kdeploy_csrf";
const SESSION_KEY_SECRET: &str = "kdeploy-session-key";
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

fn now() -> i64 {
    k8s_openapi::jiff::Timestamp::now().as_second()
}

fn secret_name(username: &str) -> String {
    format!("kdeploy-user-{username}")
}

fn hasher(cost: PasswordCost) -> Result<Argon2<'static>, AppError> {
    let params = Params::new(cost.memory_kib, cost.iterations, cost.lanes, None)
        .map_err(|_| AppError::PasswordHash(argon2::password_hash::Error::ParamsInvalid))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes off the async runtime: argon2 is deliberately slow.
pub async fn hash_password(password: &str, cost: PasswordCost) -> Result<String, AppError> {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || {
        let hash = hasher(cost)?
            .hash_password(password.as_bytes())
            .map_err(AppError::PasswordHash)?;
        Ok(hash.to_string())
    })
    .await?
}

async fn verify_password(password: &str, hash: &str) -> Result<bool, AppError> {
    let password = password.to_string();
    let hash = hash.to_string();
    tokio::task::spawn_blocking(move || {
        let Ok(parsed) = PasswordHash::new(&hash) else {
            return Ok(false);
        };
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await?
}

#[derive(Clone)]
pub struct Accounts {
    client: kube::Client,
    config: Arc<Config>,
}

impl Accounts {
    pub fn new(client: kube::Client, config: Arc<Config>) -> Self {
        Self { client, config }
    }

    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.config.system_namespace)
    }

    async fn get(&self, username: &str) -> Result<Option<StoredUser>, AppError> {
        if check_username(username, &self.config.platform_namespaces).is_err() {
            return Ok(None);
        }
        let secret = self.secrets().get_opt(&secret_name(username)).await?;
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
        for _ in 0..5 {
            let Some(user) = self.get(username).await? else {
                return Ok(());
            };
            let mut secret = user.secret.clone();
            let annotations = secret
                .metadata
                .annotations
                .get_or_insert_with(BTreeMap::new);
            for (k, v) in change(&user) {
                annotations.insert(k.to_string(), v);
            }
            match self
                .secrets()
                .replace(&secret_name(username), &PostParams::default(), &secret)
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if AppError::is_conflict(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(AppError::Conflict(FieldError::new(
            "username",
            "This account is busy (many sign-ins at once): try again in a moment.",
        )))
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
        match self.secrets().create(&params, &secret).await {
            Ok(_) => {
                tracing::info!(username, admin, "user created");
                Ok(())
            }
            Err(e) if AppError::is_already_exists(&e) => Err(AppError::Conflict(FieldError::new(
                "username",
                format!("The username {username} is taken: choose another."),
            ))),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn list_users(&self) -> Result<Vec<UserRow>, AppError> {
        let params = ListParams::default().labels(&format!("{LABEL_COMPONENT}=user"));
        let mut rows: Vec<UserRow> = self
            .secrets()
            .list(&params)
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
        let Some(user) = self.get(username).await? else {
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
    pub async fn resolve(&self, session: &SessionClaims) -> Result<CurrentUser, AppError> {
        if session.expires < now() {
            return Err(AppError::Unauthenticated);
        }
        match self.get(&session.username).await? {
            Some(user) if user.epoch == session.epoch => Ok(CurrentUser {
                name: session.username.clone(),
                admin: user.admin,
            }),
            _ => Err(AppError::Unauthenticated),
        }
    }

    fn settings(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), &self.config.system_namespace)
    }

    pub async fn self_registration(&self) -> Result<bool, AppError> {
        let settings = self.settings().get_opt(SETTINGS).await?;
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
        self.settings()
            .patch(
                SETTINGS,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(settings),
            )
            .await?;
        tracing::info!(enabled, "self-registration changed");
        Ok(())
    }
}

/// Reads the cookie signing key from its Secret, creating it once; racing replicas all end up
/// with the one that won the create.
pub async fn session_key(client: &kube::Client, config: &Config) -> Result<Key, AppError> {
    if let Some(bytes) = &config.session_key {
        return key_from(bytes);
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &config.system_namespace);
    let read = |s: Secret| s.data.and_then(|d| d.get("key").map(|b| b.0.clone()));
    if let Some(bytes) = secrets.get_opt(SESSION_KEY_SECRET).await?.and_then(read) {
        return key_from(&bytes);
    }
    let mut bytes = vec![0u8; 64];
    rand::rng().fill_bytes(&mut bytes);
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(SESSION_KEY_SECRET.into()),
            namespace: Some(config.system_namespace.clone()),
            labels: Some(BTreeMap::from([(
                LABEL_MANAGED_BY.to_string(),
                MANAGED_BY.to_string(),
            )])),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            "key".to_string(),
            ByteString(bytes.clone()),
        )])),
        ..Secret::default()
    };
    match secrets.create(&PostParams::default(), &secret).await {
        Ok(_) => key_from(&bytes),
        Err(e) if AppError::is_already_exists(&e) => {
            let bytes = secrets
                .get(SESSION_KEY_SECRET)
                .await
                .map(read)?
                .unwrap_or_default();
            key_from(&bytes)
        }
        Err(e) => Err(e.into()),
    }
}

fn key_from(bytes: &[u8]) -> Result<Key, AppError> {
    Key::try_from(bytes).map_err(|_| AppError::SessionKey)
}

/// What the session cookie says: who, which session generation, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionClaims {
    pub username: String,
    pub epoch: u64,
    pub expires: i64,
}

impl SessionClaims {
    pub fn encode(&self) -> String {
        format!("{}:{}:{}", self.username, self.epoch, self.expires)
    }

    pub fn decode(value: &str) -> Option<Self> {
        let mut parts = value.split(':');
        let username = parts.next()?.to_string();
        let epoch = parts.next()?.parse().ok()?;
        let expires = parts.next()?.parse().ok()?;
        parts.next().is_none().then_some(Self {
            username,
            epoch,
            expires,
        })
    }
}

pub fn session_cookie(config: &Config, user: &CurrentUser, epoch: u64) -> Cookie<'static> {
    let ttl = i64::try_from(config.session_ttl.as_secs()).unwrap_or(i64::MAX);
    let claims = SessionClaims {
        username: user.name.clone(),
        epoch,
        expires: now().saturating_add(ttl),
    };
    base_cookie(config, SESSION_COOKIE, claims.encode())
}

pub fn base_cookie(config: &Config, name: &'static str, value: String) -> Cookie<'static> {
    Cookie::build((name, value))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(config.secure_cookies)
        .build()
}

pub fn removal(name: &'static str) -> Cookie<'static> {
    Cookie::build((name, "")).path("/").build()
}

pub fn random_token() -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Anything that can answer "who is signed in" for an extractor.
pub trait SessionSource {
    fn accounts(&self) -> &Accounts;
    fn key(&self) -> Key;
}

impl<S> FromRequestParts<S> for CurrentUser
where
    S: SessionSource + Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let jar = SignedCookieJar::from_headers(&parts.headers, state.key());
        let claims = jar
            .get(SESSION_COOKIE)
            .and_then(|c| SessionClaims::decode(c.value()))
            .ok_or(AppError::Unauthenticated)?;
        state.accounts().resolve(&claims).await
    }
}

/// The admin pages' extractor: a signed-in user who is an administrator.
#[derive(Debug, Clone)]
pub struct Admin(pub CurrentUser);

impl<S> FromRequestParts<S> for Admin
where
    S: SessionSource + Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let user = CurrentUser::from_request_parts(parts, state).await?;
        if user.admin {
            Ok(Self(user))
        } else {
            Err(AppError::Forbidden(
                "Only administrators can open this page.",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn claims_round_trip_and_reject_garbage() {
        let c = SessionClaims {
            username: "alice".into(),
            epoch: 3,
            expires: 99,
        };
        assert_eq!(SessionClaims::decode(&c.encode()), Some(c));
        assert_eq!(SessionClaims::decode("alice:1"), None);
        assert_eq!(SessionClaims::decode("alice:1:2:3"), None);
        assert_eq!(SessionClaims::decode("alice:x:2"), None);
    }

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

    #[tokio::test]
    async fn hashes_are_argon2id_and_verify() {
        let cost = PasswordCost {
            memory_kib: 64,
            iterations: 1,
            lanes: 1,
        };
        let hash = hash_password("correct horse", cost).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash).await.unwrap());
        assert!(!verify_password("wrong horse", &hash).await.unwrap());
        assert!(!verify_password("x", "not a hash").await.unwrap());
    }
}
