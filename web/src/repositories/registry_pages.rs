//! The Registries page (`/registries`) and API (`/api/v1/registries`): a user's logins for
//! private registries, by server; a password is never shown, logged or sent back.

use axum::Form;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::registries::{
    self, LoginInput, PASSWORD_RULE, RegistryView, SERVER_RULE, USERNAME_RULE, validate_login,
};
use crate::accounts::CurrentUser;
use crate::error::{AppError, FieldError};
use crate::layout::{Frame, csrf_field, field_error, general_error, page};
use crate::state::{AppState, CsrfToken};

/// Decodes a login sent to the API; a serde message that would quote what was sent (an invalid
/// type shows the value) is replaced, so no password comes back in an error.
fn decode_login(body: &[u8]) -> Result<LoginInput, AppError> {
    if body.len() > crate::json::BODY_LIMIT {
        return Err(AppError::BodyTooLarge {
            limit_kib: crate::json::BODY_LIMIT / 1024,
        });
    }
    crate::json::decode(body).map_err(|error| {
        crate::json::redact_quoted(
            error,
            "Wrong type: server, username and password are strings.",
        )
    })
}

/// `GET /api/v1/registries`: the namespace's logins without their passwords.
pub async fn api_list(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<Vec<RegistryView>>, AppError> {
    Ok(Json(state.repositories.registries(user.namespace()).await?))
}

/// `POST /api/v1/registries`: adds or replaces the login of one server and answers with it
/// (no password) and the repositories rolled to pull with it.
pub async fn api_save(
    State(state): State<AppState>,
    user: CurrentUser,
    body: Bytes,
) -> Result<Response, AppError> {
    let input = decode_login(&body)?;
    let login = validate_login(&input).map_err(AppError::Invalid)?;
    let saved = state
        .repositories
        .save_registry(user.namespace(), &login)
        .await?;
    Ok(Json(saved).into_response())
}

/// `DELETE /api/v1/registries/{server}`.
pub async fn api_delete(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(server): Path<String>,
) -> Result<StatusCode, AppError> {
    let server = registries::normalise_server(&server)
        .map_err(|m| AppError::Invalid(vec![FieldError::new("server", m)]))?;
    state
        .repositories
        .delete_registry(user.namespace(), &server)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize)]
pub struct Done {
    saved: Option<String>,
    rolled: Option<usize>,
    removed: Option<String>,
}

impl Done {
    /// The sentence after a save or removal; servers are checked, so a crafted link cannot put
    /// arbitrary words on the page.
    fn notice(&self) -> Option<String> {
        let server = |s: &Option<String>| {
            s.as_deref()
                .and_then(|s| registries::normalise_server(s).ok())
        };
        if let Some(saved) = server(&self.saved) {
            let rolled = match self.rolled.unwrap_or(0) {
                0 => String::new(),
                1 => " 1 repository is being redeployed to pull with it.".into(),
                n => format!(" {n} repositories are being redeployed to pull with it."),
            };
            return Some(format!("The login for {saved} was saved.{rolled}"));
        }
        server(&self.removed).map(|r| format!("The login for {r} was removed."))
    }
}

/// `GET /registries`.
pub async fn page_get(
    State(state): State<AppState>,
    user: CurrentUser,
    CsrfToken(csrf): CsrfToken,
    Query(done): Query<Done>,
) -> Result<Markup, AppError> {
    let list = state.repositories.registries(user.namespace()).await?;
    Ok(registries_page(
        &Frame::signed_in(&user, &csrf),
        &list,
        &Typed::default(),
        &[],
        done.notice().as_deref(),
    ))
}

/// The add-or-replace form as submitted (the CSRF field aside).
#[derive(Default, Deserialize)]
pub struct SaveForm {
    #[serde(default)]
    server: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

/// What the form shows again after a refusal: never the password.
#[derive(Default)]
struct Typed {
    server: String,
    username: String,
}

/// `POST /registries`: on success back to the list; on a refusal the page again with the
/// server and username typed (the password is never sent back).
pub async fn page_save(
    State(state): State<AppState>,
    user: CurrentUser,
    CsrfToken(csrf): CsrfToken,
    Form(form): Form<SaveForm>,
) -> Result<Response, AppError> {
    let input = LoginInput {
        server: form.server,
        username: form.username,
        password: form.password,
    };
    let errors = match validate_login(&input) {
        Ok(login) => match state
            .repositories
            .save_registry(user.namespace(), &login)
            .await
        {
            Ok(saved) => {
                // A normalised server is a host[:port]: nothing in it needs escaping in a query.
                let query = format!(
                    "saved={}&rolled={}",
                    saved.registry.server,
                    saved.rolled.len()
                );
                return Ok(Redirect::to(&format!("/registries?{query}")).into_response());
            }
            Err(e) => AppError::from(e).into_field_errors()?,
        },
        Err(errors) => errors,
    };
    let list = state.repositories.registries(user.namespace()).await?;
    let typed = Typed {
        server: input.server.clone(),
        username: input.username.clone(),
    };
    let page = registries_page(
        &Frame::signed_in(&user, &csrf),
        &list,
        &typed,
        &errors,
        None,
    );
    Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
}

#[derive(Default, Deserialize)]
pub struct DeleteForm {
    #[serde(default)]
    server: String,
}

/// `POST /registries/delete`.
pub async fn page_delete(
    State(state): State<AppState>,
    user: CurrentUser,
    CsrfToken(csrf): CsrfToken,
    Form(form): Form<DeleteForm>,
) -> Result<Response, AppError> {
    let result = match registries::normalise_server(&form.server) {
        Ok(server) => state
            .repositories
            .delete_registry(user.namespace(), &server)
            .await
            .map(|()| server)
            .map_err(AppError::from),
        Err(m) => Err(AppError::Invalid(vec![FieldError::new("server", m)])),
    };
    let error = match result {
        Ok(server) => {
            return Ok(Redirect::to(&format!("/registries?removed={server}")).into_response());
        }
        Err(e) if e.field_errors().is_empty() => return Err(e),
        Err(e) => e,
    };
    let list = state.repositories.registries(user.namespace()).await?;
    let page = registries_page(
        &Frame::signed_in(&user, &csrf),
        &list,
        &Typed::default(),
        &[],
        None,
    );
    let message = error.field_errors().first().map(|e| e.message.clone());
    let page = with_banner(page, message.as_deref());
    Ok((error.status(), page).into_response())
}

/// The page with a refusal shown above everything (a removal's refusal has no field to sit by).
fn with_banner(page: Markup, message: Option<&str>) -> Markup {
    let Some(message) = message else {
        return page;
    };
    let banner = general_error(Some(message)).into_string();
    let html = page.into_string();
    maud::PreEscaped(match html.find("<h1") {
        Some(at) => format!("{}{banner}{}", &html[..at], &html[at..]),
        None => html,
    })
}

fn registries_page(
    frame: &Frame,
    list: &[RegistryView],
    typed: &Typed,
    errors: &[FieldError],
    notice: Option<&str>,
) -> Markup {
    let general = errors
        .iter()
        .find(|e| !matches!(e.field.as_str(), "server" | "username" | "password"))
        .map(|e| e.message.as_str());
    page(
        frame,
        "Registries",
        html! {
            h1 { "Private registries" }
            p { "Logins for registries that hold private images. A repository whose image is on one of these registries pulls with its login; saving a new login for a registry redeploys its repositories without downtime." }
            @if let Some(n) = notice { div.banner.ok role="status" data-notice="registries" { (n) } }
            (general_error(general))
            @if list.is_empty() {
                p.empty { "No logins saved: every image is pulled anonymously." }
            } @else {
                div.scroll { table.registries {
                    thead { tr { th { "Registry" } th { "Username" } th { "Used by" } th aria-label="Actions" {} } }
                    tbody {
                        @for r in list {
                            tr data-registry=(r.server) {
                                td { code { (r.server) } }
                                td { (r.username) }
                                td {
                                    @if r.used_by.is_empty() { "—" }
                                    @for (i, name) in r.used_by.iter().enumerate() {
                                        @if i > 0 { ", " }
                                        a href={ "/repos/" (name) } { (name) }
                                    }
                                }
                                td {
                                    form method="post" action="/registries/delete" {
                                        (csrf_field(frame.csrf))
                                        input type="hidden" name="server" value=(r.server);
                                        button.link type="submit" aria-label={ "Remove the login for " (r.server) } { "Remove" }
                                    }
                                }
                            }
                        }
                    }
                } }
            }
            h2 { "Add or replace a login" }
            form.stack method="post" action="/registries" data-busy novalidate {
                (csrf_field(frame.csrf))
                label for="server" { "Registry" }
                input id="server" name="server" value=(typed.server) placeholder="ghcr.io" aria-describedby="server-rule" autocomplete="off" spellcheck="false" required;
                p.rule id="server-rule" { (SERVER_RULE) }
                (field_error(errors, "server"))
                label for="username" { "Username" }
                input id="username" name="username" value=(typed.username) aria-describedby="username-rule" autocomplete="off" spellcheck="false" required;
                p.rule id="username-rule" { (USERNAME_RULE) }
                (field_error(errors, "username"))
                label for="password" { "Password or access token" }
                input id="password" name="password" type="password" aria-describedby="password-rule" autocomplete="new-password" required;
                p.rule id="password-rule" { (PASSWORD_RULE) }
                (field_error(errors, "password"))
                button.primary type="submit" { "Save login" }
            }
        },
    )
}
