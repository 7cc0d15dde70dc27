//! A repository's variables through the JSON API (`/api/v1/repos/{name}/env`) and the
//! Environment page (`/repos/{name}/env`): plain values shown, secret values never.

use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Redirect, Response};
use maud::{Markup, html};
use serde::de::DeserializeOwned;

use super::env::{
    self, EnvInput, EnvironmentView, FormRows, NAME_RULE, SECRET_RULE, VALUE_RULE,
    validate_environment,
};
use crate::accounts::CurrentUser;
use crate::error::{AppError, FieldError};
use crate::layout::{Frame, csrf_field, field_error, general_error, page};
use crate::state::{AppState, CsrfToken};

/// Largest JSON body with variables: 256 KiB of values may need up to six bytes each once
/// escaped in JSON.
pub const BODY_LIMIT: usize = 2 * 1024 * 1024;

/// A JSON body that may carry secret values: decoded like every body of the API, but a message
/// that quotes what was sent (serde's "invalid type: string \"…\"") is replaced, so no value
/// comes back in an error.
/// `LIMIT` is the largest body read: the create call keeps the API's usual 64 KiB.
#[derive(Debug)]
pub struct SecretsBody<T, const LIMIT: usize = BODY_LIMIT>(pub T);

impl<S: Send + Sync, T: DeserializeOwned, const LIMIT: usize> FromRequest<S>
    for SecretsBody<T, LIMIT>
{
    type Rejection = AppError;

    async fn from_request(request: Request, _: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::to_bytes(request.into_body(), LIMIT)
            .await
            .map_err(|_| AppError::BodyTooLarge {
                limit_kib: LIMIT / 1024,
            })?;
        crate::json::decode(&bytes).map(Self).map_err(redact)
    }
}

fn redact(error: AppError) -> AppError {
    crate::json::redact_quoted(
        error,
        "Wrong type: env is a list of {\"name\", \"value\"} objects, secrets a list of {\"name\", \"value\"} objects whose value may be left out to keep the stored one.",
    )
}

/// The names of the repository's secret variables now (from the mirror).
async fn stored_secrets(
    state: &AppState,
    user: &CurrentUser,
    name: &str,
) -> Result<EnvironmentView, AppError> {
    Ok(state
        .repositories
        .repository(user.namespace(), name)
        .await?
        .summary
        .environment)
}

pub async fn api_get(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    Ok(Json(stored_secrets(&state, &user, &name).await?))
}

/// Replaces the variables and answers with them as stored (secret names only).
pub async fn api_put(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(name): Path<String>,
    SecretsBody(input): SecretsBody<EnvInput>,
) -> Result<impl IntoResponse, AppError> {
    let current = stored_secrets(&state, &user, &name).await?;
    let stored: Vec<&str> = current.secrets.iter().map(|s| s.name.as_str()).collect();
    let change = validate_environment(&input, &stored).map_err(AppError::Invalid)?;
    let environment = state
        .repositories
        .change_environment(user.namespace(), &name, &change)
        .await?;
    Ok(Json(environment.view()))
}

pub async fn page_get(
    State(state): State<AppState>,
    user: CurrentUser,
    CsrfToken(csrf): CsrfToken,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, AppError> {
    let current = stored_secrets(&state, &user, &name).await?;
    let rows = Rows::stored(&current);
    Ok(environment_page(
        &Frame::signed_in(&user, &csrf),
        &name,
        &rows,
        &[],
        None,
    ))
}

/// The form: on success back to the detail page; on a refusal the page again with what was
/// typed, except secret values, which are never sent back.
pub async fn page_post(
    State(state): State<AppState>,
    user: CurrentUser,
    CsrfToken(csrf): CsrfToken,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, AppError> {
    let current = stored_secrets(&state, &user, &name).await?;
    let stored: Vec<&str> = current.secrets.iter().map(|s| s.name.as_str()).collect();
    let (input, form_rows) = env::from_form(&body);
    let errors = match validate_environment(&input, &stored) {
        Ok(change) => match state
            .repositories
            .change_environment(user.namespace(), &name, &change)
            .await
        {
            Ok(_) => {
                return Ok(Redirect::to(&format!("/repos/{name}?done=change")).into_response());
            }
            Err(e) => AppError::from(e).into_field_errors()?,
        },
        Err(errors) => errors,
    };
    let errors: Vec<FieldError> = errors
        .into_iter()
        .map(|e| FieldError {
            field: form_rows.field_of(&e.field),
            message: e.message,
        })
        .collect();
    let typed_secret = input.secrets.iter().any(|s| s.value.is_some());
    let rows = Rows::typed(&input, &form_rows, &stored);
    let page = environment_page(
        &Frame::signed_in(&user, &csrf),
        &name,
        &rows,
        &errors,
        typed_secret.then_some(
            "Nothing was changed. Secret values you typed are not sent back to the page: type them again.",
        ),
    );
    Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
}

/// The rows the page shows: plain name and value, secret name and whether a value is stored.
struct Rows {
    plain: Vec<(String, String)>,
    secrets: Vec<(String, bool)>,
}

/// Empty rows offered for new variables.
const BLANK_ROWS: usize = 3;

impl Rows {
    fn stored(view: &EnvironmentView) -> Self {
        Self {
            plain: view
                .env
                .iter()
                .map(|v| (v.name.clone(), v.value.clone()))
                .collect(),
            secrets: view
                .secrets
                .iter()
                .map(|s| (s.name.clone(), true))
                .collect(),
        }
    }

    /// What was typed, each variable in the row it was typed in.
    fn typed(input: &EnvInput, rows: &FormRows, stored: &[&str]) -> Self {
        let place = |count: usize, at: &[usize]| at.iter().copied().max().map_or(count, |m| m + 1);
        let mut plain = vec![(String::new(), String::new()); place(0, &rows.env)];
        for (var, row) in input.env.iter().zip(&rows.env) {
            plain[*row] = (var.name.clone(), var.value.clone());
        }
        let mut secrets = vec![(String::new(), false); place(0, &rows.secrets)];
        for (var, row) in input.secrets.iter().zip(&rows.secrets) {
            secrets[*row] = (var.name.clone(), stored.contains(&var.name.as_str()));
        }
        Self { plain, secrets }
    }
}

fn environment_page(
    frame: &Frame,
    repo: &str,
    rows: &Rows,
    errors: &[FieldError],
    general: Option<&str>,
) -> Markup {
    let plain_rows = rows.plain.len() + BLANK_ROWS;
    let secret_rows = rows.secrets.len() + BLANK_ROWS;
    let whole = errors
        .iter()
        .find(|e| e.field == "env" || e.field == "secrets" || e.field == "repository")
        .map(|e| e.message.as_str());
    page(
        frame,
        &format!("{repo}: environment"),
        html! {
            p { a href={ "/repos/" (repo) } { "← " (repo) } }
            h1 { "Environment of " (repo) }
            p { "Variables your container sees. Saving replaces the pods one at a time (a rolling update), so the new values apply without downtime." }
            (general_error(general.or(whole)))
            form.stack method="post" action={ "/repos/" (repo) "/env" } data-busy novalidate {
                (csrf_field(frame.csrf))
                h2 { "Variables" }
                p.rule id="env-rule" { (NAME_RULE) " " (VALUE_RULE) " Clear a name to remove its variable." }
                div.scroll { table.env {
                    thead { tr { th { "Name" } th { "Value" } } }
                    tbody {
                        @for i in 0..plain_rows {
                            @let (name, value) = rows.plain.get(i).cloned().unwrap_or_default();
                            tr {
                                td {
                                    input name="env_name" id={ "env-" (i) "-name" } aria-label={ "Name of variable " (i + 1) } value=(name) aria-describedby="env-rule" autocomplete="off" spellcheck="false";
                                    (field_error(errors, &format!("env-{i}-name")))
                                }
                                td {
                                    input name="env_value" id={ "env-" (i) "-value" } aria-label={ "Value of variable " (i + 1) } value=(value) autocomplete="off" spellcheck="false";
                                    (field_error(errors, &format!("env-{i}-value")))
                                }
                            }
                        }
                    }
                } }
                h2 { "Secret variables" }
                p.rule id="secret-rule" { (SECRET_RULE) " Clear a name to remove its variable." }
                div.scroll { table.env {
                    thead { tr { th { "Name" } th { "Value" } } }
                    tbody {
                        @for i in 0..secret_rows {
                            @let (name, stored) = rows.secrets.get(i).cloned().unwrap_or_default();
                            tr {
                                td {
                                    input name="secret_name" id={ "secret-" (i) "-name" } aria-label={ "Name of secret variable " (i + 1) } value=(name) aria-describedby="env-rule" autocomplete="off" spellcheck="false";
                                    (field_error(errors, &format!("secret-{i}-name")))
                                }
                                td {
                                    input name="secret_value" type="password" id={ "secret-" (i) "-value" } aria-label={ "Value of secret variable " (i + 1) } placeholder=(if stored { "stored: leave empty to keep" } else { "" }) autocomplete="new-password" aria-describedby="secret-rule";
                                    (field_error(errors, &format!("secret-{i}-value")))
                                }
                            }
                        }
                    }
                } }
                button.primary type="submit" { "Save and roll out" }
            }
        },
    )
}
