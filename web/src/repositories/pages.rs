//! The repositories' page handlers: forms in, pages or redirects out, nothing typed lost on a failure.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::detail::{self, Submitted};
use super::validation::{
    Change, ChangeInput, RepositoryInput, validate_change, validate_repository,
};
use super::views;
use crate::accounts::CurrentUser;
use crate::error::{AppError, FieldError};
use crate::layout::Frame;
use crate::state::{AppState, CsrfToken};

pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
    CsrfToken(csrf): CsrfToken,
) -> Result<impl IntoResponse, AppError> {
    let overview = state.repositories.overview(user.namespace()).await?;
    Ok(views::repositories(
        &Frame::signed_in(&user, &csrf),
        &overview,
    ))
}

pub async fn new_form(
    State(state): State<AppState>,
    user: CurrentUser,
    CsrfToken(csrf): CsrfToken,
) -> impl IntoResponse {
    views::new_repository(
        &Frame::signed_in(&user, &csrf),
        &RepositoryInput::default(),
        &[],
        None,
        state.config.max_replicas,
    )
}

/// Creates a repository; on any failure the form comes back with what was typed and the reason.
pub async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    CsrfToken(csrf): CsrfToken,
    Form(input): Form<RepositoryInput>,
) -> Result<Response, AppError> {
    let max = state.config.max_replicas;
    let frame = Frame::signed_in(&user, &csrf);
    let spec = match validate_repository(&input, max) {
        Ok(spec) => spec,
        Err(errors) => {
            let page = views::new_repository(&frame, &input, &errors, None, max);
            return Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response());
        }
    };
    let error = match state
        .repositories
        .create_repository(user.namespace(), &spec)
        .await
    {
        Ok(()) => return Ok(Redirect::to(&format!("/repos/{}", spec.name)).into_response()),
        Err(e) => AppError::from(e),
    };
    let status = error.status();
    let errors = error.field_errors();
    let page = if errors.is_empty() {
        let message =
            format!("{error}. Nothing was left half-created; check the values and try again.");
        views::new_repository(&frame, &input, &[], Some(&message), max)
    } else {
        views::new_repository(&frame, &input, &errors, None, max)
    };
    Ok((status, page).into_response())
}

#[derive(Debug, Deserialize)]
pub struct Notice {
    pub done: Option<String>,
}

/// The banner after a redirect: `redeploy`, `change`, or `imported-3-1-0` (added, already there, skipped).
fn notice_text(done: &str) -> Option<String> {
    match done {
        "redeploy" => Some("Redeploy started: new pods replace the old ones one at a time.".into()),
        "change" => Some("Changes applied: the rollout is under way.".into()),
        "webhook-off" => Some("The webhook is off: its URL no longer redeploys anything.".into()),
        "rollback" => Some(
            "Rollback started: pods of the earlier revision replace the current ones one at a time."
                .into(),
        ),
        other => {
            let mut n = other.strip_prefix("imported-")?.split('-');
            let (added, there, skipped) = (n.next()?, n.next()?, n.next()?);
            Some(format!(
                "Import done: {added} endpoints added, {there} already registered, {skipped} skipped for breaking a rule."
            ))
        }
    }
}

pub async fn detail(
    State(state): State<AppState>,
    user: CurrentUser,
    CsrfToken(csrf): CsrfToken,
    Path(name): Path<String>,
    Query(notice): Query<Notice>,
) -> Result<impl IntoResponse, AppError> {
    let notice = notice.done.as_deref().and_then(notice_text);
    let submitted = Submitted {
        notice: notice.as_deref(),
        ..Submitted::default()
    };
    detail::page(&state, &user, &csrf, &name, submitted).await
}

pub async fn redeploy(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    state
        .repositories
        .change_repository(user.namespace(), &name, &Change::restart())
        .await?;
    Ok(Redirect::to(&format!("/repos/{name}?done=redeploy")))
}

/// Image, port and replicas from the detail page; errors re-render the page with what was typed.
pub async fn change(
    State(state): State<AppState>,
    user: CurrentUser,
    CsrfToken(csrf): CsrfToken,
    Path(name): Path<String>,
    Form(input): Form<ChangeInput>,
) -> Result<Response, AppError> {
    let errors = match validate_change(&input, state.config.max_replicas) {
        Ok(change) => match state
            .repositories
            .change_repository(user.namespace(), &name, &change)
            .await
        {
            Ok(_) => {
                return Ok(Redirect::to(&format!("/repos/{name}?done=change")).into_response());
            }
            Err(e) => AppError::from(e).into_field_errors()?,
        },
        Err(errors) => errors,
    };
    // The scale control sends only `replicas`: its errors belong next to it, not the change form.
    let scale_only = input.image.is_none() && input.port.is_none();
    let errors: Vec<FieldError> = errors
        .into_iter()
        .map(|mut e| {
            if scale_only && e.field == "replicas" {
                e.field = "scale".into();
            }
            e
        })
        .collect();
    let submitted = Submitted {
        change: Some(&input),
        errors: &errors,
        ..Submitted::default()
    };
    detail::refused(&state, &user, &csrf, &name, submitted).await
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
    Ok(Redirect::to("/repos"))
}

#[derive(Debug, Deserialize)]
pub struct RollbackForm {
    #[serde(default)]
    pub revision: String,
}

/// The detail page's "Roll back" button; a refused rollback shows the page again with the reason
/// above the revisions.
pub async fn rollback(
    State(state): State<AppState>,
    user: CurrentUser,
    CsrfToken(csrf): CsrfToken,
    Path(name): Path<String>,
    Form(form): Form<RollbackForm>,
) -> Result<Response, AppError> {
    let result = match super::api::parse_revision(&serde_json::Value::String(form.revision)) {
        Ok(revision) => state
            .repositories
            .rollback_repository(user.namespace(), &name, revision)
            .await
            .map_err(AppError::from),
        Err(e) => Err(e),
    };
    let errors = match result {
        Ok(_) => return Ok(Redirect::to(&format!("/repos/{name}?done=rollback")).into_response()),
        Err(e) => e.into_field_errors()?,
    };
    let submitted = Submitted {
        errors: &errors,
        ..Submitted::default()
    };
    detail::refused(&state, &user, &csrf, &name, submitted).await
}
