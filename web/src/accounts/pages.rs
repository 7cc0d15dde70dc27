//! The account pages: sign-in, registration, sign-out, the user's own account and administration.

use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::SignedCookieJar;
use serde::Deserialize;

use super::session::{self, Admin, SESSION_COOKIE};
use super::store::CurrentUser;
use super::views;
use crate::error::{AppError, FieldError};
use crate::layout::Frame;
use crate::state::{AppState, CsrfToken};

pub async fn home(user: Result<CurrentUser, AppError>) -> Redirect {
    match user {
        Ok(_) => Redirect::to("/repos"),
        Err(_) => Redirect::to("/login"),
    }
}

/// A username and password, as typed on the sign-in and registration forms or sent to the API.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
}

pub async fn login_form(
    State(state): State<AppState>,
    CsrfToken(csrf): CsrfToken,
) -> Result<impl IntoResponse, AppError> {
    let registration = state.accounts.self_registration().await?;
    Ok(views::login(
        &Frame::anonymous(&csrf),
        "",
        None,
        registration,
    ))
}

pub async fn login(
    State(state): State<AppState>,
    CsrfToken(csrf): CsrfToken,
    jar: SignedCookieJar,
    Form(form): Form<Credentials>,
) -> Result<Response, AppError> {
    let username = form.username.trim();
    match state.accounts.sign_in(username, &form.password).await {
        Ok((user, epoch)) => {
            let jar = jar.add(session::session_cookie(&state.config, &user, epoch));
            Ok((jar, Redirect::to("/repos")).into_response())
        }
        Err(e @ (AppError::BadCredentials | AppError::TooManyAttempts { .. })) => {
            let registration = state.accounts.self_registration().await?;
            let page = views::login(
                &Frame::anonymous(&csrf),
                username,
                Some(&e.to_string()),
                registration,
            );
            Ok((e.status(), page).into_response())
        }
        Err(e) => Err(e),
    }
}

pub async fn logout(
    State(state): State<AppState>,
    user: Result<CurrentUser, AppError>,
    jar: SignedCookieJar,
) -> Result<impl IntoResponse, AppError> {
    if let Ok(user) = user {
        state.accounts.end_sessions(&user.name).await?;
        tracing::info!(username = %user.name, "signed out");
    }
    Ok((
        jar.remove(session::removal(SESSION_COOKIE)),
        Redirect::to("/login"),
    ))
}

pub async fn register_form(
    State(state): State<AppState>,
    CsrfToken(csrf): CsrfToken,
) -> Result<impl IntoResponse, AppError> {
    if !state.accounts.self_registration().await? {
        return Err(AppError::Forbidden(
            "Self-registration is turned off: ask an administrator for an account.",
        ));
    }
    Ok(views::register(&Frame::anonymous(&csrf), "", &[]))
}

pub async fn register(
    State(state): State<AppState>,
    CsrfToken(csrf): CsrfToken,
    jar: SignedCookieJar,
    Form(form): Form<Credentials>,
) -> Result<Response, AppError> {
    if !state.accounts.self_registration().await? {
        return Err(AppError::Forbidden(
            "Self-registration is turned off: ask an administrator for an account.",
        ));
    }
    let username = form.username.trim();
    match state
        .accounts
        .create_user(username, &form.password, false)
        .await
    {
        Ok(()) => {
            let (user, epoch) = state.accounts.sign_in(username, &form.password).await?;
            let jar = jar.add(session::session_cookie(&state.config, &user, epoch));
            Ok((jar, Redirect::to("/repos")).into_response())
        }
        Err(AppError::Invalid(errors)) => Ok(form_failed(views::register(
            &Frame::anonymous(&csrf),
            username,
            &errors,
        ))),
        Err(AppError::Conflict(e)) => Ok((
            StatusCode::CONFLICT,
            views::register(&Frame::anonymous(&csrf), username, &[e]),
        )
            .into_response()),
        Err(e) => Err(e),
    }
}

fn form_failed(page: maud::Markup) -> Response {
    (StatusCode::UNPROCESSABLE_ENTITY, page).into_response()
}

#[derive(Debug, Deserialize)]
pub struct AccountNotice {
    pub done: Option<String>,
}

pub async fn account(
    user: CurrentUser,
    CsrfToken(csrf): CsrfToken,
    Query(q): Query<AccountNotice>,
) -> impl IntoResponse {
    let notice = (q.done.as_deref() == Some("password")).then_some("Your password was changed.");
    views::account(&Frame::signed_in(&user, &csrf), &[], notice)
}

/// The user's own password, as typed on the account page or sent to the API.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    #[serde(default)]
    pub current: String,
    #[serde(default)]
    pub new: String,
}

pub async fn change_password(
    State(state): State<AppState>,
    user: CurrentUser,
    CsrfToken(csrf): CsrfToken,
    Form(form): Form<PasswordChange>,
) -> Result<Response, AppError> {
    match state
        .accounts
        .change_password(&user.name, &form.current, &form.new)
        .await
    {
        Ok(()) => Ok(Redirect::to("/account?done=password").into_response()),
        Err(AppError::Invalid(errors)) => Ok(form_failed(views::account(
            &Frame::signed_in(&user, &csrf),
            &errors,
            None,
        ))),
        Err(e) => Err(e),
    }
}

#[derive(Debug, Deserialize)]
pub struct AdminNotice {
    pub created: Option<String>,
}

pub async fn admin(
    State(state): State<AppState>,
    Admin(user): Admin,
    CsrfToken(csrf): CsrfToken,
    Query(q): Query<AdminNotice>,
) -> Result<impl IntoResponse, AppError> {
    let users = state.accounts.list_users().await?;
    let registration = state.accounts.self_registration().await?;
    let notice = q
        .created
        .map(|u| format!("User {u} created; they can sign in now."));
    Ok(views::admin(
        &Frame::signed_in(&user, &csrf),
        &users,
        registration,
        "",
        &[],
        notice.as_deref(),
    ))
}

#[derive(Debug, Deserialize)]
pub struct NewUserForm {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    pub admin: Option<String>,
}

pub async fn admin_create_user(
    State(state): State<AppState>,
    Admin(user): Admin,
    CsrfToken(csrf): CsrfToken,
    Form(form): Form<NewUserForm>,
) -> Result<Response, AppError> {
    let username = form.username.trim();
    let errors: Vec<FieldError> = match state
        .accounts
        .create_user(username, &form.password, form.admin.is_some())
        .await
    {
        Ok(()) => return Ok(Redirect::to(&format!("/admin?created={username}")).into_response()),
        Err(AppError::Invalid(errors)) => errors,
        Err(AppError::Conflict(e)) => vec![e],
        Err(e) => return Err(e),
    };
    let users = state.accounts.list_users().await?;
    let registration = state.accounts.self_registration().await?;
    Ok(form_failed(views::admin(
        &Frame::signed_in(&user, &csrf),
        &users,
        registration,
        username,
        &errors,
        None,
    )))
}

#[derive(Debug, Deserialize)]
pub struct RegistrationForm {
    #[serde(default)]
    pub enabled: String,
}

pub async fn admin_registration(
    State(state): State<AppState>,
    Admin(_): Admin,
    Form(form): Form<RegistrationForm>,
) -> Result<impl IntoResponse, AppError> {
    state
        .accounts
        .set_self_registration(form.enabled == "true")
        .await?;
    Ok(Redirect::to("/admin"))
}
