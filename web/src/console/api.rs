//! The console's JSON API under `/api/v1`: the same rules and errors as its pages.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use serde_json::{Value, json};

use super::model::{EndpointInput, Pair, pairs_to_lines};
use super::{SendInput, store};
use crate::app::AppState;
use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::validation::FieldError;

fn object(body: &[u8]) -> Result<Value, AppError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(AppError::Invalid(vec![FieldError::new(
            "body",
            "Send a JSON object.",
        )])),
    }
}

/// Query parameters and headers as `[{name, value}]` (or as the form's lines).
fn pairs(body: &Value, key: &str) -> Result<Vec<Pair>, AppError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(super::model::lines_to_pairs(
            s,
            if key == "headers" { ':' } else { '=' },
        )),
        Some(v) => serde_json::from_value::<Vec<Pair>>(v.clone()).map_err(|_| {
            AppError::Invalid(vec![FieldError::new(
                key,
                "Send a list of {\"name\": ..., \"value\": ...} objects.",
            )])
        }),
    }
}

fn lines(body: &Value, key: &str) -> Result<String, AppError> {
    let list = pairs(body, key)?;
    if list
        .iter()
        .any(|p| p.name.contains(['\r', '\n']) || p.value.contains(['\r', '\n']))
    {
        return Err(AppError::Invalid(vec![FieldError::new(
            key,
            "Names and values cannot contain line breaks.",
        )]));
    }
    Ok(pairs_to_lines(
        &list,
        if key == "headers" { ':' } else { '=' },
    ))
}

fn string(body: &Value, key: &str) -> String {
    match body.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// A JSON body may be given as JSON itself rather than as a string holding JSON.
fn body_text(body: &Value) -> String {
    match body.get("body") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => serde_json::to_string_pretty(other).unwrap_or_default(),
    }
}

fn endpoint_input(body: &Value) -> Result<EndpointInput, AppError> {
    Ok(EndpointInput {
        name: string(body, "name"),
        method: string(body, "method"),
        path: string(body, "path"),
        query: lines(body, "query")?,
        headers: lines(body, "headers")?,
        body_kind: string(body, "body_kind"),
        body: body_text(body),
        description: string(body, "description"),
    })
}

pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(repo): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(
        store::endpoints(&state.cluster, user.namespace(), &repo).await?,
    ))
}

pub async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(repo): Path<String>,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, AppError> {
    let input = endpoint_input(&object(&body)?)?;
    let e = super::add(&state, user.namespace(), &repo, &input).await?;
    Ok((StatusCode::CREATED, Json(e)))
}

pub async fn get(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((repo, id)): Path<(String, String)>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(
        super::find(&state, user.namespace(), &repo, &id).await?,
    ))
}

pub async fn update(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((repo, id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, AppError> {
    let input = endpoint_input(&object(&body)?)?;
    Ok(Json(
        super::edit(&state, user.namespace(), &repo, &id, &input).await?,
    ))
}

pub async fn delete(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((repo, id)): Path<(String, String)>,
) -> Result<impl IntoResponse, AppError> {
    super::remove(&state, user.namespace(), &repo, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn duplicate(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((repo, id)): Path<(String, String)>,
) -> Result<impl IntoResponse, AppError> {
    let e = super::duplicate(&state, user.namespace(), &repo, &id).await?;
    Ok((StatusCode::CREATED, Json(e)))
}

pub async fn reorder(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(repo): Path<String>,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, AppError> {
    let body = object(&body)?;
    let ids: Vec<String> = body
        .get("ids")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .ok_or_else(|| AppError::Invalid(vec![FieldError::new("ids", "Send {\"ids\": [...]}.")]))?;
    Ok(Json(
        super::reorder(&state, user.namespace(), &repo, &ids).await?,
    ))
}

pub async fn import(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(repo): Path<String>,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, AppError> {
    let body = object(&body)?;
    let document = match body.get("fetch").and_then(Value::as_str) {
        Some(path) => super::fetch_document(&state, &user, &repo, path).await?,
        None => string(&body, "document"),
    };
    let report = super::import(&state, user.namespace(), &repo, &document).await?;
    Ok(Json(report))
}

pub async fn send_endpoint(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((repo, id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, AppError> {
    let endpoint = super::find(&state, user.namespace(), &repo, &id).await?;
    let body = if body.is_empty() {
        json!({})
    } else {
        object(&body)?
    };
    // Absent fields keep the endpoint's registered values.
    let defaults = SendInput::from_endpoint(&endpoint);
    let input = SendInput {
        params: if body.get("params").is_some() {
            lines(&body, "params")?
        } else {
            defaults.params
        },
        query: if body.get("query").is_some() {
            lines(&body, "query")?
        } else {
            defaults.query
        },
        headers: if body.get("headers").is_some() {
            lines(&body, "headers")?
        } else {
            defaults.headers
        },
        body_kind: body
            .get("body_kind")
            .map_or(defaults.body_kind, |_| string(&body, "body_kind")),
        body: if body.get("body").is_some() {
            body_text(&body)
        } else {
            defaults.body
        },
    };
    let parts = super::request_for(&endpoint, &input)?;
    Ok(Json(
        super::send(&state, &user, &repo, Some(&id), &parts).await?,
    ))
}

pub async fn send(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(repo): Path<String>,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, AppError> {
    let body = object(&body)?;
    let parts = super::adhoc(
        &string(&body, "method"),
        &string(&body, "path"),
        pairs(&body, "query")?,
        pairs(&body, "headers")?,
        &string(&body, "body_kind"),
        body_text(&body),
    )?;
    Ok(Json(super::send(&state, &user, &repo, None, &parts).await?))
}

pub async fn history(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(
        store::history(&state.cluster, user.namespace()).await?,
    ))
}

pub async fn rerun(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(index): Path<usize>,
) -> Result<impl IntoResponse, AppError> {
    let (_, sent) = super::rerun(&state, &user, index).await?;
    Ok(Json(sent))
}
