//! The accounts' JSON API: signing in and out, and changing one's own password.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum_extra::extract::cookie::SignedCookieJar;
use serde_json::json;

use super::pages::{Credentials, PasswordChange};
use super::session::{self, SESSION_COOKIE};
use super::store::CurrentUser;
use crate::error::AppError;
use crate::json::JsonBody;
use crate::state::{AppState, CsrfToken};

pub async fn sign_in(
    State(state): State<AppState>,
    CsrfToken(csrf): CsrfToken,
    jar: SignedCookieJar,
    JsonBody(credentials): JsonBody<Credentials>,
) -> Result<impl IntoResponse, AppError> {
    let (user, epoch) = state
        .accounts
        .sign_in(credentials.username.trim(), &credentials.password)
        .await?;
    let jar = jar.add(session::session_cookie(&state.config, &user, epoch));
    Ok((
        jar,
        Json(json!({"username": user.name, "namespace": user.namespace(), "csrfToken": csrf})),
    ))
}

pub async fn sign_out(
    State(state): State<AppState>,
    user: CurrentUser,
    jar: SignedCookieJar,
) -> Result<impl IntoResponse, AppError> {
    state.accounts.end_sessions(&user.name).await?;
    Ok((
        jar.remove(session::removal(SESSION_COOKIE)),
        StatusCode::NO_CONTENT,
    ))
}

pub async fn change_password(
    State(state): State<AppState>,
    user: CurrentUser,
    JsonBody(change): JsonBody<PasswordChange>,
) -> Result<impl IntoResponse, AppError> {
    state
        .accounts
        .change_password(&user.name, &change.current, &change.new)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
