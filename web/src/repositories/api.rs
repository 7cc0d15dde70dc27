//! The repositories' JSON API under `/api/v1`: the same validation and errors as the pages, as JSON.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};

use super::env_pages::SecretsBody;
use super::validation::{
    Change, ChangeInput, RepositoryInput, validate_change, validate_new_repository,
};
use crate::accounts::CurrentUser;
use crate::error::AppError;
use crate::json::JsonBody;
use crate::repositories::store::StoreError;
use crate::state::AppState;

/// The list page's data: the repositories and the notices about refused Ingresses.
pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(state.repositories.overview(user.namespace()).await?))
}

pub async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    SecretsBody(input): SecretsBody<RepositoryInput, { crate::json::BODY_LIMIT }>,
) -> Result<impl IntoResponse, AppError> {
    let (spec, secrets) =
        validate_new_repository(&input, state.config.max_replicas).map_err(AppError::Invalid)?;
    state
        .repositories
        .create_repository_with(user.namespace(), &spec, &secrets)
        .await?;
    let detail = match state
        .repositories
        .repository(user.namespace(), &spec.name)
        .await
    {
        // Created, but the mirror has not shown it within read-your-writes' short bound (a busy
        // API server's watch lags): it exists, so wait for it as long as a write may take rather
        // than answer 404 for what was just made.
        Err(StoreError::NotFound(_)) => {
            let (namespace, name) = (user.namespace().to_owned(), spec.name.clone());
            state
                .mirror
                .wait_for(state.config.write_timeout, move |c| {
                    c.namespace(&namespace)
                        .is_some_and(|n| n.deployments.contains_key(&name))
                })
                .await;
            state
                .repositories
                .repository(user.namespace(), &spec.name)
                .await?
        }
        other => other?,
    };
    Ok((StatusCode::CREATED, Json(detail.summary)))
}

pub async fn get(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(
        state
            .repositories
            .repository(user.namespace(), &name)
            .await?,
    ))
}

/// Applies a change and answers with the repository as it now is.
async fn apply(
    state: &AppState,
    user: &CurrentUser,
    name: &str,
    change: &Change,
) -> Result<Json<super::describe::RepositorySummary>, AppError> {
    state
        .repositories
        .change_repository(user.namespace(), name, change)
        .await?;
    let detail = state
        .repositories
        .repository(user.namespace(), name)
        .await?;
    Ok(Json(detail.summary))
}

pub async fn change(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(name): Path<String>,
    JsonBody(input): JsonBody<ChangeInput>,
) -> Result<impl IntoResponse, AppError> {
    let change = validate_change(&input, state.config.max_replicas).map_err(AppError::Invalid)?;
    apply(&state, &user, &name, &change).await
}

pub async fn redeploy(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    Ok((
        StatusCode::ACCEPTED,
        apply(&state, &user, &name, &Change::restart()).await?,
    ))
}

pub async fn delete(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    state
        .repositories
        .delete_repository(user.namespace(), &name)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The repository's revisions, newest first.
pub async fn revisions(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    let detail = state
        .repositories
        .repository(user.namespace(), &name)
        .await?;
    Ok(Json(detail.history))
}

/// What a rollback names: the revision to go back to.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackInput {
    pub revision: serde_json::Value,
}

/// A revision number: a positive integer (a JSON number, or its digits in a form field).
pub fn parse_revision(value: &serde_json::Value) -> Result<i64, AppError> {
    let parsed = match value {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    parsed.filter(|r| *r > 0).ok_or_else(|| {
        AppError::Invalid(vec![crate::error::FieldError::new(
            "revision",
            "Enter a revision number: a whole number of 1 or more, as listed under revisions.",
        )])
    })
}

/// Rolls back to an earlier revision and answers with the repository as it now is.
pub async fn rollback(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(name): Path<String>,
    JsonBody(input): JsonBody<RollbackInput>,
) -> Result<impl IntoResponse, AppError> {
    let revision = parse_revision(&input.revision)?;
    state
        .repositories
        .rollback_repository(user.namespace(), &name, revision)
        .await?;
    let detail = state
        .repositories
        .repository(user.namespace(), &name)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(detail.summary)))
}
