//! The console's page handlers: forms in, pages or redirects out, nothing lost on a failed submit.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::calls::{self, SendInput, Sent};
use super::model::EndpointInput;
use super::views::{self, ConsoleView, ImportValues};
use super::{endpoints, store};
use crate::accounts::CurrentUser;
use crate::error::{AppError, FieldError};
use crate::layout::Frame;
use crate::repositories::detail::{self, Submitted};
use crate::state::{AppState, CsrfToken};

fn back(repo: &str) -> Redirect {
    Redirect::to(&format!("/repos/{repo}#api"))
}

/// The endpoint form, blank, filled from a stored endpoint, or as typed with its errors.
fn form(
    user: &CurrentUser,
    csrf: &str,
    repo: &str,
    id: Option<&str>,
    input: &EndpointInput,
    errors: &[FieldError],
) -> maud::Markup {
    views::endpoint_form(&Frame::signed_in(user, csrf), repo, id, input, errors)
}

/// The form again, as typed, next to the reasons it was refused.
fn refused(
    user: &CurrentUser,
    csrf: &str,
    repo: &str,
    id: Option<&str>,
    input: &EndpointInput,
    errors: &[FieldError],
) -> Response {
    let page = form(user, csrf, repo, id, input, errors);
    (StatusCode::UNPROCESSABLE_ENTITY, page).into_response()
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
    let blank = EndpointInput {
        path: "/".into(),
        ..EndpointInput::default()
    };
    Ok(form(&user, &csrf, &repo, None, &blank, &[]))
}

pub async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    CsrfToken(csrf): CsrfToken,
    Path(repo): Path<String>,
    Form(input): Form<EndpointInput>,
) -> Result<Response, AppError> {
    let errors = match endpoints::add(&state, user.namespace(), &repo, &input).await {
        Ok(e) => {
            let to = format!("/repos/{repo}/endpoints/{}", e.id);
            return Ok(Redirect::to(&to).into_response());
        }
        Err(AppError::Invalid(errors)) => errors,
        Err(e) => return Err(e),
    };
    Ok(refused(&user, &csrf, &repo, None, &input, &errors))
}

pub async fn edit_form(
    State(state): State<AppState>,
    user: CurrentUser,
    CsrfToken(csrf): CsrfToken,
    Path((repo, id)): Path<(String, String)>,
) -> Result<impl IntoResponse, AppError> {
    let e = endpoints::find(&state, user.namespace(), &repo, &id).await?;
    let stored = EndpointInput::from_endpoint(&e);
    Ok(form(&user, &csrf, &repo, Some(&id), &stored, &[]))
}

pub async fn update(
    State(state): State<AppState>,
    user: CurrentUser,
    CsrfToken(csrf): CsrfToken,
    Path((repo, id)): Path<(String, String)>,
    Form(input): Form<EndpointInput>,
) -> Result<Response, AppError> {
    let errors = match endpoints::edit(&state, user.namespace(), &repo, &id, &input).await {
        Ok(_) => return Ok(Redirect::to(&format!("/repos/{repo}/endpoints/{id}")).into_response()),
        Err(AppError::Invalid(errors)) => errors,
        Err(AppError::Conflict(e)) => vec![e],
        Err(e) => return Err(e),
    };
    Ok(refused(&user, &csrf, &repo, Some(&id), &input, &errors))
}

/// The buttons next to each endpoint on the detail page, named by the last segment of their path.
#[derive(Debug, Clone, Copy)]
pub enum Action {
    Duplicate,
    Up,
    Down,
    Delete,
}

impl Action {
    fn from_segment(segment: &str) -> Option<Self> {
        match segment {
            "duplicate" => Some(Self::Duplicate),
            "up" => Some(Self::Up),
            "down" => Some(Self::Down),
            "delete" => Some(Self::Delete),
            _ => None,
        }
    }
}

/// Duplicates, moves or deletes an endpoint, then goes back to the list on the detail page.
pub async fn act(
    State(state): State<AppState>,
    user: CurrentUser,
    Path((repo, id, action)): Path<(String, String, String)>,
) -> Result<impl IntoResponse, AppError> {
    let action =
        Action::from_segment(&action).ok_or_else(|| AppError::NotFound("This page".into()))?;
    let (namespace, repo, id) = (user.namespace(), repo.as_str(), id.as_str());
    match action {
        Action::Duplicate => endpoints::duplicate(&state, namespace, repo, id)
            .await
            .map(drop)?,
        Action::Up => endpoints::shift(&state, namespace, repo, id, -1).await?,
        Action::Down => endpoints::shift(&state, namespace, repo, id, 1).await?,
        Action::Delete => endpoints::remove(&state, namespace, repo, id).await?,
    }
    Ok(back(repo))
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
        calls::fetch_document(&state, &user, &repo, form.fetch.trim()).await
    };
    let field = if form.fetch.trim().is_empty() {
        "document"
    } else {
        "fetch"
    };
    let result = match fetched {
        Ok(doc) => endpoints::import(&state, user.namespace(), &repo, &doc).await,
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
    detail::refused(&state, &user, &csrf, &repo, submitted).await
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
    let e = endpoints::find(&state, user.namespace(), &repo, &id).await?;
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
    let e = endpoints::find(&state, user.namespace(), &repo, &id).await?;
    let outcome = match calls::request_for(&e, &input) {
        Ok(parts) => calls::send(&state, &user, &repo, Some(&id), &parts).await,
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
        Some(id) => endpoints::find(&state, user.namespace(), &call.repo, id)
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
    let (status, refused, sent) = match calls::rerun(&state, &user, index).await {
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
