//! The console's page handlers: forms in, pages or redirects out, nothing lost on a failed submit.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::model::EndpointInput;
use super::views::{self, ConsoleView, ImportValues};
use super::{SendInput, Sent, store};
use crate::accounts::CurrentUser;
use crate::error::{AppError, FieldError};
use crate::layout::Frame;
use crate::repositories::detail::{self, Submitted};
use crate::state::{AppState, CsrfToken};

fn back(repo: &str) -> Redirect {
    Redirect::to(&format!("/repos/{repo}#api"))
}

pub async fn new_form(
    State(state): State<AppState>,
    user: CurrentUser,
    CsrfToken(csrf): CsrfToken,
    Path(repo): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    state
        .repositories
        .repository_uid(user.namespace(), &repo)
        .await?;
    Ok(views::endpoint_form(
        &Frame::signed_in(&user, &csrf),
        &repo,
        None,
        &EndpointInput {
            path: "/".into(),
            ..EndpointInput::default()
        },
        &[],
    ))
}

pub async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    CsrfToken(csrf): CsrfToken,
    Path(repo): Path<String>,
    Form(input): Form<EndpointInput>,
) -> Result<Response, AppError> {
    match super::add(&state, user.namespace(), &repo, &input).await {
        Ok(e) => Ok(Redirect::to(&format!("/repos/{repo}/endpoints/{}", e.id)).into_response()),
        Err(AppError::Invalid(errors)) => Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            views::endpoint_form(
                &Frame::signed_in(&user, &csrf),
                &repo,
                None,
                &input,
                &errors,
            ),
        )
            .into_response()),
        Err(e) => Err(e),
    }
}

pub async fn edit_form(
    State(state): State<AppState>,
    user: CurrentUser,
    CsrfToken(csrf): CsrfToken,
    Path((repo, id)): Path<(String, String)>,
) -> Result<impl IntoResponse, AppError> {
    let e = super::find(&state, user.namespace(), &repo, &id).await?;
    Ok(views::endpoint_form(
        &Frame::signed_in(&user, &csrf),
        &repo,
        Some(&id),
        &EndpointInput::from_endpoint(&e),
        &[],
    ))
}

pub async fn update(
    State(state): State<AppState>,
    user: CurrentUser,
    CsrfToken(csrf): CsrfToken,
    Path((repo, id)): Path<(String, String)>,
    Form(input): Form<EndpointInput>,
) -> Result<Response, AppError> {
    let errors = match super::edit(&state, user.namespace(), &repo, &id, &input).await {
        Ok(_) => return Ok(Redirect::to(&format!("/repos/{repo}/endpoints/{id}")).into_response()),
        Err(AppError::Invalid(errors)) => errors,
        Err(AppError::Conflict(e)) => vec![e],
        Err(e) => return Err(e),
    };
    Ok((
        StatusCode::UNPROCESSABLE_ENTITY,
        views::endpoint_form(
            &Frame::signed_in(&user, &csrf),
            &repo,
            Some(&id),
            &input,
            &errors,
        ),
    )
        .into_response())
}

pub async fn duplicate(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((repo, id)): Path<(String, String)>,
) -> Result<impl IntoResponse, AppError> {
    super::duplicate(&state, user.namespace(), &repo, &id).await?;
    Ok(back(&repo))
}

pub async fn up(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((repo, id)): Path<(String, String)>,
) -> Result<impl IntoResponse, AppError> {
    super::shift(&state, user.namespace(), &repo, &id, -1).await?;
    Ok(back(&repo))
}

pub async fn down(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((repo, id)): Path<(String, String)>,
) -> Result<impl IntoResponse, AppError> {
    super::shift(&state, user.namespace(), &repo, &id, 1).await?;
    Ok(back(&repo))
}

pub async fn delete(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((repo, id)): Path<(String, String)>,
) -> Result<impl IntoResponse, AppError> {
    super::remove(&state, user.namespace(), &repo, &id).await?;
    Ok(back(&repo))
}

/// An OpenAPI document to import: pasted, or a path of the service to fetch it from.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportForm {
    #[serde(default)]
    pub document: String,
    #[serde(default)]
    pub fetch: String,
}

/// Imports a pasted (or fetched) document; failures come back on the detail page, next to the field.
pub async fn import(
    State(state): State<AppState>,
    user: CurrentUser,
    CsrfToken(csrf): CsrfToken,
    Path(repo): Path<String>,
    Form(form): Form<ImportForm>,
) -> Result<Response, AppError> {
    let fetched = if form.fetch.trim().is_empty() {
        Ok(form.document.clone())
    } else {
        super::fetch_document(&state, &user, &repo, form.fetch.trim()).await
    };
    let field = if form.fetch.trim().is_empty() {
        "document"
    } else {
        "fetch"
    };
    let result = match fetched {
        Ok(doc) => super::import(&state, user.namespace(), &repo, &doc).await,
        Err(e) => Err(e),
    };
    let errors = match result {
        Ok(r) => {
            let notice = format!(
                "imported-{}-{}-{}",
                r.added,
                r.already_there,
                r.skipped.len()
            );
            return Ok(Redirect::to(&format!("/repos/{repo}?done={notice}#api")).into_response());
        }
        Err(AppError::Invalid(errors)) => errors,
        Err(e @ (AppError::Import(_) | AppError::ConsoleRateLimited { .. })) => {
            vec![FieldError::new(field, e.to_string())]
        }
        Err(e) => return Err(e),
    };
    let submitted = Submitted {
        import: ImportValues {
            document: &form.document,
            fetch: &form.fetch,
            errors: &errors,
        },
        ..Submitted::default()
    };
    let page = detail::page(&state, &user, &csrf, &repo, submitted).await?;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
}

async fn history_for(
    state: &AppState,
    user: &CurrentUser,
    repo: &str,
) -> Result<Vec<(usize, store::Call)>, AppError> {
    Ok(store::history(&state.repositories, user.namespace())
        .await?
        .into_iter()
        .enumerate()
        .filter(|(_, c)| c.repo == repo)
        .collect())
}

/// The form and result part of the console page.
struct Panel<'a> {
    input: &'a SendInput,
    errors: &'a [FieldError],
    refused: Option<&'a str>,
    sent: Option<&'a Sent>,
}

async fn render(
    state: &AppState,
    user: &CurrentUser,
    csrf: &str,
    repo: &str,
    endpoint: Option<&super::model::Endpoint>,
    panel: Panel<'_>,
) -> Result<maud::Markup, AppError> {
    let history = history_for(state, user, repo).await?;
    let public_url = state.sender.public_url(user.namespace(), repo, "/", &[]);
    Ok(views::console(
        &Frame::signed_in(user, csrf),
        &ConsoleView {
            repo,
            endpoint,
            input: panel.input,
            errors: panel.errors,
            refused: panel.refused,
            sent: panel.sent,
            history: &history,
            limits: &state.config.console,
            public_url: &public_url,
        },
    ))
}

pub async fn console(
    State(state): State<AppState>,
    user: CurrentUser,
    CsrfToken(csrf): CsrfToken,
    Path((repo, id)): Path<(String, String)>,
) -> Result<impl IntoResponse, AppError> {
    let e = super::find(&state, user.namespace(), &repo, &id).await?;
    render(
        &state,
        &user,
        &csrf,
        &repo,
        Some(&e),
        Panel {
            input: &SendInput::from_endpoint(&e),
            errors: &[],
            refused: None,
            sent: None,
        },
    )
    .await
}

pub async fn send(
    State(state): State<AppState>,
    user: CurrentUser,
    CsrfToken(csrf): CsrfToken,
    Path((repo, id)): Path<(String, String)>,
    Form(input): Form<SendInput>,
) -> Result<Response, AppError> {
    let e = super::find(&state, user.namespace(), &repo, &id).await?;
    let outcome = match super::request_for(&e, &input) {
        Ok(parts) => super::send(&state, &user, &repo, Some(&id), &parts).await,
        Err(err) => Err(err),
    };
    let (status, errors, refused, sent) = match outcome {
        Ok(sent) => (StatusCode::OK, Vec::new(), None, Some(sent)),
        Err(AppError::Invalid(errors)) => (StatusCode::UNPROCESSABLE_ENTITY, errors, None, None),
        Err(err @ AppError::ConsoleRateLimited { .. }) => (
            StatusCode::TOO_MANY_REQUESTS,
            Vec::new(),
            Some(err.to_string()),
            None,
        ),
        Err(err) => return Err(err),
    };
    let page = render(
        &state,
        &user,
        &csrf,
        &repo,
        Some(&e),
        Panel {
            input: &input,
            errors: &errors,
            refused: refused.as_deref(),
            sent: sent.as_ref(),
        },
    )
    .await?;
    Ok((status, page).into_response())
}

pub async fn rerun(
    State(state): State<AppState>,
    user: CurrentUser,
    CsrfToken(csrf): CsrfToken,
    Path(index): Path<usize>,
) -> Result<Response, AppError> {
    let calls = store::history(&state.repositories, user.namespace()).await?;
    let call = calls
        .get(index)
        .cloned()
        .ok_or_else(|| AppError::NotFound("That history entry".into()))?;
    let endpoint = match &call.endpoint {
        Some(id) => super::find(&state, user.namespace(), &call.repo, id)
            .await
            .ok(),
        None => None,
    };
    let input = SendInput {
        params: endpoint
            .as_ref()
            .and_then(|e| SendInput::from_endpoint(e).params),
        query: Some(super::model::pairs_to_lines(&call.query, '=')),
        headers: Some(super::model::pairs_to_lines(&call.headers, ':')),
        body_kind: Some(call.body_kind.as_str().into()),
        body: Some(call.body.clone()),
    };
    let (status, refused, sent) = match super::rerun(&state, &user, index).await {
        Ok((_, sent)) => (StatusCode::OK, None, Some(sent)),
        Err(err @ AppError::ConsoleRateLimited { .. }) => {
            (StatusCode::TOO_MANY_REQUESTS, Some(err.to_string()), None)
        }
        Err(err) => return Err(err),
    };
    let page = render(
        &state,
        &user,
        &csrf,
        &call.repo,
        endpoint.as_ref(),
        Panel {
            input: &input,
            errors: &[],
            refused: refused.as_deref(),
            sent: sent.as_ref(),
        },
    )
    .await?;
    Ok((status, page).into_response())
}
