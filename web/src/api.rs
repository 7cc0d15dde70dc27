//! The JSON API under `/api/v1`: the same validation and errors as the pages, as JSON.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum_extra::extract::cookie::SignedCookieJar;
use serde_json::{Value, json};

use crate::app::{AppState, CsrfToken};
use crate::auth::{self, CurrentUser, SESSION_COOKIE};
use crate::cluster::Change;
use crate::error::AppError;
use crate::validation::{
    ChangeInput, FieldError, RepositoryInput, validate_change, validate_repository,
};

/// JSON numbers and strings both become the text the validators read, so `"80"` and `80` behave alike.
fn text(body: &Value, key: &str) -> Option<String> {
    match body.get(key)? {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Parses a JSON body by hand so a malformed body also answers with `{field, message}`.
fn object(body: &[u8]) -> Result<Value, AppError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(AppError::Invalid(vec![FieldError::new(
            "body",
            "Send a JSON object.",
        )])),
    }
}

pub async fn sign_in(
    State(state): State<AppState>,
    CsrfToken(csrf): CsrfToken,
    jar: SignedCookieJar,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, AppError> {
    let body = object(&body)?;
    let username = text(&body, "username").unwrap_or_default();
    let password = text(&body, "password").unwrap_or_default();
    let (user, epoch) = state.accounts.sign_in(username.trim(), &password).await?;
    let jar = jar.add(auth::session_cookie(&state.config, &user, epoch));
    Ok((
        jar,
        Json(json!({"username": user.name, "namespace": user.namespace(), "csrfToken": csrf})),
    ))
}

pub async fn sign_out(
    State(state): State<AppState>,
    user: CurrentUser,
    jar: SignedCookieJar,
) -> Result<impl IntoResponse, AppError> {
    state.accounts.end_sessions(&user.name).await?;
    Ok((
        jar.remove(auth::removal(SESSION_COOKIE)),
        StatusCode::NO_CONTENT,
    ))
}

pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(
        state.cluster.list_repositories(user.namespace()).await?,
    ))
}

pub async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, AppError> {
    let body = object(&body)?;
    let input = RepositoryInput {
        name: text(&body, "name").unwrap_or_default(),
        image: text(&body, "image").unwrap_or_default(),
        port: text(&body, "port").unwrap_or_default(),
        replicas: text(&body, "replicas").unwrap_or_default(),
    };
    let spec = validate_repository(&input, state.config.max_replicas).map_err(AppError::Invalid)?;
    state
        .cluster
        .create_repository(user.namespace(), &spec)
        .await?;
    let detail = state
        .cluster
        .repository(user.namespace(), &spec.name)
        .await?;
    Ok((StatusCode::CREATED, Json(detail.summary)))
}

pub async fn get(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(
        state.cluster.repository(user.namespace(), &name).await?,
    ))
}

pub async fn change(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, AppError> {
    let body = object(&body)?;
    let input = ChangeInput {
        image: text(&body, "image"),
        port: text(&body, "port"),
        replicas: text(&body, "replicas"),
    };
    let valid = validate_change(&input, state.config.max_replicas).map_err(AppError::Invalid)?;
    let change = Change {
        image: valid.image,
        port: valid.port,
        replicas: valid.replicas,
        restart: false,
    };
    state
        .cluster
        .change_repository(user.namespace(), &name, &change)
        .await?;
    Ok(Json(
        state
            .cluster
            .repository(user.namespace(), &name)
            .await?
            .summary,
    ))
}

pub async fn redeploy(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    let change = Change {
        restart: true,
        ..Change::default()
    };
    state
        .cluster
        .change_repository(user.namespace(), &name, &change)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(
            state
                .cluster
                .repository(user.namespace(), &name)
                .await?
                .summary,
        ),
    ))
}

pub async fn delete(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    state
        .cluster
        .delete_repository(user.namespace(), &name)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
