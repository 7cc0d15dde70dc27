//! Sessions: signed cookies, the CSRF token, and the extractors that say who is signed in.

use std::collections::BTreeMap;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum_extra::extract::cookie::{Cookie, Key, SameSite, SignedCookieJar};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::PostParams;
use rand::RngCore;

use super::store::{Accounts, CurrentUser, now};
use crate::config::{Config, MANAGED_BY};
use crate::error::AppError;
use crate::kube_status::is_already_exists;
use crate::repositories::objects::LABEL_MANAGED_BY;

pub const SESSION_COOKIE: &str = "kdeploy_session";
pub const CSRF_COOKIE: &str = "kdeploy_csrf";
const SESSION_KEY_SECRET: &str = "kdeploy-session-key";

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
        Err(e) if is_already_exists(&e) => {
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

/// Resolves a session cookie's claims against the stored user.
pub async fn resolve(
    accounts: &Accounts,
    session: &SessionClaims,
) -> Result<CurrentUser, AppError> {
    if session.expires < now() {
        return Err(AppError::Unauthenticated);
    }
    let mut user = accounts
        .signed_in(&session.username, session.epoch)
        .await?
        .ok_or(AppError::Unauthenticated)?;
    if user.admin {
        user.initial_admin_secret = accounts.initial_admin_secret().await?;
    }
    Ok(user)
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
        resolve(state.accounts(), &claims).await
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
}
