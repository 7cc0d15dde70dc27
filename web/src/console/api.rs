//! The console's JSON API under `/api/v1`: the same rules and errors as its pages.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use serde::Deserialize;

use super::calls::{self, AdhocRequest, SendInput};
use super::model::EndpointInput;
use super::pages::ImportForm;
use super::{endpoints, store};
use crate::accounts::CurrentUser;
use crate::error::AppError;
use crate::json::JsonBody;
use crate::state::AppState;

pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(repo): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(
        store::endpoints(&state.repositories, user.namespace(), &repo).await?,
    ))
}

pub async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(repo): Path<String>,
    JsonBody(input): JsonBody<EndpointInput>,
) -> Result<impl IntoResponse, AppError> {
    let e = endpoints::add(&state, user.namespace(), &repo, &input).await?;
    Ok((StatusCode::CREATED, Json(e)))
}

pub async fn get(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((repo, id)): Path<(String, String)>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(
        endpoints::find(&state, user.namespace(), &repo, &id).await?,
    ))
}

pub async fn update(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((repo, id)): Path<(String, String)>,
    JsonBody(input): JsonBody<EndpointInput>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(
        endpoints::edit(&state, user.namespace(), &repo, &id, &input).await?,
    ))
}

pub async fn delete(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((repo, id)): Path<(String, String)>,
) -> Result<impl IntoResponse, AppError> {
    endpoints::remove(&state, user.namespace(), &repo, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn duplicate(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((repo, id)): Path<(String, String)>,
) -> Result<impl IntoResponse, AppError> {
    let e = endpoints::duplicate(&state, user.namespace(), &repo, &id).await?;
    Ok((StatusCode::CREATED, Json(e)))
}

/// The new order of a repository's endpoints.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointOrder {
    pub ids: Vec<String>,
}

pub async fn reorder(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(repo): Path<String>,
    JsonBody(order): JsonBody<EndpointOrder>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(
        endpoints::reorder(&state, user.namespace(), &repo, &order.ids).await?,
    ))
}

pub async fn import(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(repo): Path<String>,
    JsonBody(form): JsonBody<ImportForm>,
) -> Result<impl IntoResponse, AppError> {
    let document = match form.fetch.trim() {
        "" => form.document,
        path => calls::fetch_document(&state, &user, &repo, path).await?,
    };
    let report = endpoints::import(&state, user.namespace(), &repo, &document).await?;
    Ok(Json(report))
}

pub async fn send_endpoint(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((repo, id)): Path<(String, String)>,
    JsonBody(input): JsonBody<SendInput>,
) -> Result<impl IntoResponse, AppError> {
    let endpoint = endpoints::find(&state, user.namespace(), &repo, &id).await?;
    let parts = calls::request_for(&endpoint, &input)?;
    Ok(Json(
        calls::send(&state, &user, &repo, Some(&id), &parts).await?,
    ))
}

pub async fn send(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(repo): Path<String>,
    JsonBody(request): JsonBody<AdhocRequest>,
) -> Result<impl IntoResponse, AppError> {
    let parts = calls::adhoc(request)?;
    Ok(Json(calls::send(&state, &user, &repo, None, &parts).await?))
}

pub async fn history(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(
        store::history(&state.repositories, user.namespace()).await?,
    ))
}

pub async fn rerun(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(index): Path<usize>,
) -> Result<impl IntoResponse, AppError> {
    let (_, sent) = calls::rerun(&state, &user, index).await?;
    Ok(Json(sent))
}
