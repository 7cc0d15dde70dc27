//! The repository detail page, assembled here and only here: the repository's own sections, with
//! the API console's section plugged in.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::Markup;

use super::validation::ChangeInput;
use super::views::{self, ChangeValues, DetailView};
use crate::accounts::CurrentUser;
use crate::console::{self, views::ImportValues};
use crate::error::{AppError, FieldError};
use crate::layout::Frame;
use crate::state::AppState;

/// The longest the page waits for the endpoints' ConfigMap.
const ENDPOINTS_READ: std::time::Duration = std::time::Duration::from_secs(1);

/// What a submitted form brings back to the detail page: what was typed and why it was refused.
#[derive(Default)]
pub struct Submitted<'a> {
    /// The change or scale form as typed; `None` shows the repository's current values.
    pub change: Option<&'a ChangeInput>,
    /// Errors of the change and scale forms (`scale` for the scale control).
    pub errors: &'a [FieldError],
    pub notice: Option<&'a str>,
    pub import: ImportValues<'a>,
    /// A webhook URL just made: the one time it is shown.
    pub webhook_url: Option<&'a str>,
}

/// The detail page again after a refused form, with what was typed and why.
pub async fn refused(
    state: &AppState,
    user: &CurrentUser,
    csrf: &str,
    name: &str,
    submitted: Submitted<'_>,
) -> Result<Response, AppError> {
    let page = page(state, user, csrf, name, submitted).await?;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
}

pub async fn page(
    state: &AppState,
    user: &CurrentUser,
    csrf: &str,
    name: &str,
    submitted: Submitted<'_>,
) -> Result<Markup, AppError> {
    let detail = state
        .repositories
        .repository(user.namespace(), name)
        .await?;
    // The endpoints are read from the API server: not at all while it does not answer, and
    // never for long, so the page still answers within its bound.
    let endpoints = if state.mirror.api_answering() {
        tokio::time::timeout(
            ENDPOINTS_READ,
            console::store::endpoints(&state.repositories, user.namespace(), name),
        )
        .await
        .unwrap_or(Err(AppError::ClusterAway))
    } else {
        Err(AppError::ClusterAway)
    };
    let s = &detail.summary;
    let port = s.port.to_string();
    let replicas = s.replicas.desired.to_string();
    let change = submitted.change;
    let scale_only = change.is_some_and(|c| c.image.is_none() && c.port.is_none());
    let values = ChangeValues {
        image: change.and_then(|c| c.image.as_deref()).unwrap_or(&s.image),
        port: change.and_then(|c| c.port.as_deref()).unwrap_or(&port),
        replicas: match change.and_then(|c| c.replicas.as_deref()) {
            Some(typed) if !scale_only => typed,
            _ => &replicas,
        },
    };
    let frame = Frame::signed_in(user, csrf);
    let api_section = console::views::section(&frame, name, &endpoints, &submitted.import);
    Ok(views::repository(
        &frame,
        DetailView {
            detail: &detail,
            values,
            errors: submitted.errors,
            notice: submitted.notice,
            webhook_url: submitted.webhook_url,
            max_replicas: state.config.max_replicas,
            api_section,
        },
    ))
}
