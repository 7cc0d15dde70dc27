//! The one routes table and the middleware around it (logging, error rendering, CSRF).

use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Redirect, Response};
use axum::routing::{get, post, put};
use axum_extra::extract::cookie::SignedCookieJar;

use crate::accounts::session::{self, CSRF_COOKIE, SESSION_COOKIE, SessionClaims};
use crate::accounts::{self, CurrentUser};
use crate::console;
use crate::error::{AppError, ErrorBody};
use crate::layout::{self, Frame};
use crate::repositories;
use crate::state::{AppState, CsrfToken};

const STYLE: &str = include_str!("../static/style.css");
const SCRIPT: &str = include_str!("../static/app.js");
const OPENAPI: &str = include_str!("../static/openapi.yaml");
/// The public URL the OpenAPI document's examples are written with; served, it is the site's own.
const OPENAPI_EXAMPLE_URL: &str = "http://lb.example.com";

pub fn app(state: AppState) -> Router {
    use accounts::{api as account_api, pages as account_pages};
    use console::{api as console_api, pages as console_pages};
    use repositories::{api as repo_api, pages as repo_pages};
    Router::new()
        .route("/", get(account_pages::home))
        .route(
            "/login",
            get(account_pages::login_form).post(account_pages::login),
        )
        .route("/logout", post(account_pages::logout))
        .route(
            "/register",
            get(account_pages::register_form).post(account_pages::register),
        )
        .route("/account", get(account_pages::account))
        .route("/account/password", post(account_pages::change_password))
        .route("/admin", get(account_pages::admin))
        .route("/admin/users", post(account_pages::admin_create_user))
        .route(
            "/admin/registration",
            post(account_pages::admin_registration),
        )
        .route("/repos", get(repo_pages::list).post(repo_pages::create))
        .route("/repos/new", get(repo_pages::new_form))
        .route("/repos/{name}", get(repo_pages::detail))
        .route("/repos/{name}/redeploy", post(repo_pages::redeploy))
        .route("/repos/{name}/change", post(repo_pages::change))
        .route("/repos/{name}/delete", post(repo_pages::delete))
        .route("/repos/{name}/endpoints", post(console_pages::create))
        .route("/repos/{name}/endpoints/new", get(console_pages::new_form))
        .route(
            "/repos/{name}/endpoints/{id}",
            get(console_pages::console).post(console_pages::update),
        )
        .route(
            "/repos/{name}/endpoints/{id}/edit",
            get(console_pages::edit_form),
        )
        .route(
            "/repos/{name}/endpoints/{id}/send",
            post(console_pages::send),
        )
        // duplicate, up, down and delete
        .route(
            "/repos/{name}/endpoints/{id}/{action}",
            post(console_pages::act),
        )
        .route("/repos/{name}/endpoint-import", post(console_pages::import))
        .route("/console/history/{index}/rerun", post(console_pages::rerun))
        .route(
            "/api/v1/session",
            post(account_api::sign_in).delete(account_api::sign_out),
        )
        .route(
            "/api/v1/account/password",
            put(account_api::change_password),
        )
        .route("/api/v1/repos", get(repo_api::list).post(repo_api::create))
        .route(
            "/api/v1/repos/{name}",
            get(repo_api::get)
                .patch(repo_api::change)
                .delete(repo_api::delete),
        )
        .route("/api/v1/repos/{name}/redeploy", post(repo_api::redeploy))
        .route(
            "/api/v1/repos/{name}/endpoints",
            get(console_api::list).post(console_api::create),
        )
        .route(
            "/api/v1/repos/{name}/endpoints/{id}",
            get(console_api::get)
                .put(console_api::update)
                .delete(console_api::delete),
        )
        .route(
            "/api/v1/repos/{name}/endpoints/{id}/duplicate",
            post(console_api::duplicate),
        )
        .route(
            "/api/v1/repos/{name}/endpoints/{id}/send",
            post(console_api::send_endpoint),
        )
        .route(
            "/api/v1/repos/{name}/endpoint-order",
            put(console_api::reorder),
        )
        .route(
            "/api/v1/repos/{name}/endpoint-import",
            post(console_api::import),
        )
        .route("/api/v1/repos/{name}/send", post(console_api::send))
        .route("/api/v1/console/history", get(console_api::history))
        .route(
            "/api/v1/console/history/{index}/rerun",
            post(console_api::rerun),
        )
        .route("/api/v1/openapi.yaml", get(openapi))
        .route(
            "/static/style.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE) }),
        )
        .route(
            "/static/app.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    SCRIPT,
                )
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .fallback(|| async { AppError::NotFound("This page".into()) })
        .layer(middleware::from_fn_with_state(state.clone(), csrf))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// The API's OpenAPI document, its example endpoints under this site's public URL.
async fn openapi(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/yaml")],
        OPENAPI.replace(OPENAPI_EXAMPLE_URL, &state.config.public_url.base()),
    )
}

/// Ready when the Kubernetes API answers: without it the site can do nothing.
async fn readyz(State(state): State<AppState>) -> Result<&'static str, AppError> {
    state.repositories.client.apiserver_version().await?;
    Ok("ok")
}

/// The signed-in user of a request, if any; used only to decorate error pages.
async fn signed_in(state: &AppState, headers: &axum::http::HeaderMap) -> Option<CurrentUser> {
    let jar = SignedCookieJar::from_headers(headers, state.key.clone());
    let claims = SessionClaims::decode(jar.get(SESSION_COOKIE)?.value())?;
    session::resolve(&state.accounts, &claims).await.ok()
}

fn is_api(path: &str) -> bool {
    path.starts_with("/api/")
}

/// Logs every request and renders `AppError`s as a page or JSON, depending on where they happened.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let csrf = request
        .headers()
        .get(header::COOKIE)
        .map(|_| SignedCookieJar::from_headers(request.headers(), state.key.clone()))
        .and_then(|jar| jar.get(CSRF_COOKIE))
        .map(|c| c.value().to_string())
        .unwrap_or_default();
    let headers = request.headers().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status();
    let elapsed_ms = started.elapsed().as_millis();
    let Some(error) = response.extensions().get::<ErrorBody>().cloned() else {
        tracing::info!(%method, %path, status = status.as_u16(), elapsed_ms, "request");
        return response;
    };
    if error.internal {
        tracing::error!(%method, %path, status = status.as_u16(), elapsed_ms, error = %error.message, "request failed");
    } else {
        tracing::info!(%method, %path, status = status.as_u16(), elapsed_ms, error = %error.message, "request refused");
    }
    let retry_after = response.headers().get(header::RETRY_AFTER).cloned();
    let set_cookies: Vec<HeaderValue> = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .cloned()
        .collect();
    let mut rendered = if is_api(&path) {
        (status, Json(error)).into_response()
    } else if error.redirect_to_login {
        Redirect::to("/login").into_response()
    } else {
        // The top bar still says who is signed in, so the way back is obvious.
        let user = signed_in(&state, &headers).await;
        let frame = Frame {
            user: user.as_ref(),
            csrf: &csrf,
        };
        (
            status,
            layout::error_page(&frame, status.as_u16(), &error.message),
        )
            .into_response()
    };
    if let Some(v) = retry_after {
        rendered.headers_mut().insert(header::RETRY_AFTER, v);
    }
    for c in set_cookies {
        rendered.headers_mut().append(header::SET_COOKIE, c);
    }
    rendered
}

/// Double-submit CSRF check: the token in a signed cookie must come back in the form's `csrf` field,
/// or for the API in the `X-CSRF-Token` header. Signing in through the API is exempt (no session yet,
/// and a JSON body cannot be sent cross-site without CORS).
async fn csrf(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let jar = SignedCookieJar::from_headers(request.headers(), state.key.clone());
    let existing = jar.get(CSRF_COOKIE).map(|c| c.value().to_string());
    let unsafe_method = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let path = request.uri().path().to_string();
    let mut request = request;
    if unsafe_method && path != "/api/v1/session" {
        let (supplied, rebuilt) = if is_api(&path) {
            let header = request
                .headers()
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            (header, request)
        } else {
            let (parts, body) = request.into_parts();
            let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
                return (StatusCode::PAYLOAD_TOO_LARGE, "The form is too large.").into_response();
            };
            let field = form_field(&bytes, "csrf");
            // Handlers see only their own fields, so their forms can refuse unknown ones.
            let rest = without_field(&bytes, "csrf");
            (field, Request::from_parts(parts, Body::from(rest)))
        };
        request = rebuilt;
        let valid = matches!((&existing, &supplied), (Some(e), Some(s)) if !e.is_empty() && e == s);
        if !valid {
            return AppError::Csrf.into_response();
        }
    }
    let token = existing.clone().unwrap_or_else(session::random_token);
    request.extensions_mut().insert(CsrfToken(token.clone()));
    let response = next.run(request).await;
    if existing.is_some() {
        return response;
    }
    let jar = SignedCookieJar::new(state.key.clone()).add(session::base_cookie(
        &state.config,
        CSRF_COOKIE,
        token,
    ));
    (jar, response).into_response()
}

/// One field of an `application/x-www-form-urlencoded` body (the token is hex, so no decoding).
fn form_field(body: &[u8], name: &str) -> Option<String> {
    let body = std::str::from_utf8(body).ok()?;
    body.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

/// The form body without one field (the token, once checked).
fn without_field(body: &[u8], name: &str) -> Vec<u8> {
    body.split(|b| *b == b'&')
        .filter(|pair| {
            !pair.is_empty() && pair.split(|b| *b == b'=').next() != Some(name.as_bytes())
        })
        .collect::<Vec<_>>()
        .join(&b'&')
}
