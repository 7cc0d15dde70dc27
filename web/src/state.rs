//! What every handler shares: the configuration, the stores, the cookie key and the console's sender.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum_extra::extract::cookie::Key;

use crate::accounts::{Accounts, SessionSource, session};
use crate::config::Config;
use crate::console::send::Sender;
use crate::error::AppError;
use crate::mirror::{Mirror, Scope};
use crate::repositories::live::Streams;
use crate::repositories::store::RepositoryStore;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub repositories: RepositoryStore,
    pub accounts: Accounts,
    pub key: Key,
    pub sender: Sender,
    /// What pages read: the cluster's state kept from watches.
    pub mirror: Mirror,
    /// The open live-update streams, counted per user and ended at shutdown.
    pub streams: Streams,
}

impl AppState {
    /// Builds the state from a client: starts the mirror's watches (pages wait for their first
    /// sync, `/readyz` reports it) and reads (or creates) the cookie signing key in the cluster.
    pub async fn connect(client: kube::Client, config: Config) -> Result<Self, AppError> {
        let mirror = Mirror::start(
            client.clone(),
            Scope {
                system_namespace: config.system_namespace.clone(),
                platform_namespaces: config.platform_namespaces.clone(),
            },
        );
        let key = session::session_key(&client, &config).await?;
        let sender = Sender::new(config.console.clone(), config.public_url.clone());
        let config = Arc::new(config);
        Ok(Self {
            sender,
            repositories: RepositoryStore::new(client.clone(), config.clone(), mirror.clone()),
            accounts: Accounts::new(client, config.clone()).with_mirror(mirror.clone()),
            config,
            key,
            mirror,
            streams: Streams::default(),
        })
    }
}

impl axum::extract::FromRef<AppState> for Key {
    fn from_ref(state: &AppState) -> Self {
        state.key.clone()
    }
}

impl SessionSource for AppState {
    fn accounts(&self) -> &Accounts {
        &self.accounts
    }
    fn key(&self) -> Key {
        self.key.clone()
    }
}

/// The CSRF token of this browser, put in every form by the pages.
#[derive(Debug, Clone)]
pub struct CsrfToken(pub String);

impl<S: Send + Sync> FromRequestParts<S> for CsrfToken {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Self>()
            .cloned()
            .ok_or(AppError::Csrf)
    }
}
