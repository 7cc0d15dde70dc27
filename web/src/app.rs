//! The router, its state and the middleware (logging, error rendering, CSRF).

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::cookie::{Key, SignedCookieJar};

use crate::auth::{self, Accounts, CSRF_COOKIE, SessionSource};
use crate::cluster::Cluster;
use crate::config::Config;
use crate::error::{AppError, ErrorBody};
use crate::{api, console, pages, views};

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub cluster: Cluster,
    pub accounts: Accounts,
    pub key: Key,
    pub sender: crate::console::send::Sender,
}

impl AppState {
    /// Builds the state from a client; reads (or creates) the cookie signing key in the cluster.
    pub async fn connect(client: kube::Client, config: Config) -> Result<Self, AppError> {
        let key = auth::session_key(&client, &config).await?;
        let sender =
            crate::console::send::Sender::new(config.console.clone(), config.public_host.clone());
        let config = Arc::new(config);
        Ok(Self {
            sender,
            cluster: Cluster::new(client.clone(), config.clone()),
            accounts: Accounts::new(client, config.clone()),
            config,
            key,
        })
    }
}

impl axum::extract::FromRef<AppState> for Key {
    fn from_ref(state: &AppState) -> Self {
        state.key.clone()
    }
}

impl SessionSource for AppState {
    fn accounts(&self) -> &Accounts {
        &self.accounts
    }
    fn key(&self) -> Key {
        self.key.clone()
    }
}

/// The CSRF token of this browser, put in every form by the pages.
#[derive(Debug, Clone)]
pub struct CsrfToken(pub String);

impl<S: Send + Sync> FromRequestParts<S> for CsrfToken {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Self>()
            .cloned()
            .ok_or(AppError::Csrf)
    }
}

const STYLE: &str = include_str!("../static/style.css");
const SCRIPT: &str = include_str!("../static/app.js");
const OPENAPI: &str = include_str!("../static/openapi.yaml");

pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(pages::home))
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/register", get(pages::register_form).post(pages::register))
        .route(
            "/repos",
            get(pages::repositories).post(pages::create_repository),
        )
        .route("/repos/new", get(pages::new_repository))
        .route("/repos/{name}", get(pages::repository))
        .route("/repos/{name}/redeploy", post(pages::redeploy))
        .route("/repos/{name}/change", post(pages::change))
        .route("/repos/{name}/delete", post(pages::delete))
        .route("/repos/{name}/endpoints", post(console::pages::create))
        .route("/repos/{name}/endpoints/new", get(console::pages::new_form))
        .route(
            "/repos/{name}/endpoints/{id}",
            get(console::pages::console).post(console::pages::update),
        )
        .route(
            "/repos/{name}/endpoints/{id}/edit",
            get(console::pages::edit_form),
        )
        .route(
            "/repos/{name}/endpoints/{id}/send",
            post(console::pages::send),
        )
        .route(
            "/repos/{name}/endpoints/{id}/duplicate",
            post(console::pages::duplicate),
        )
        .route("/repos/{name}/endpoints/{id}/up", post(console::pages::up))
        .route(
            "/repos/{name}/endpoints/{id}/down",
            post(console::pages::down),
        )
        .route(
            "/repos/{name}/endpoints/{id}/delete",
            post(console::pages::delete),
        )
        .route(
            "/repos/{name}/endpoint-import",
            post(console::pages::import),
        )
        .route(
            "/console/history/{index}/rerun",
            post(console::pages::rerun),
        )
        .route("/admin", get(pages::admin))
        .route("/admin/users", post(pages::admin_create_user))
        .route("/admin/registration", post(pages::admin_registration))
        .route("/api/v1/session", post(api::sign_in).delete(api::sign_out))
        .route("/api/v1/repos", get(api::list).post(api::create))
        .route(
            "/api/v1/repos/{name}",
            get(api::get).patch(api::change).delete(api::delete),
        )
        .route("/api/v1/repos/{name}/redeploy", post(api::redeploy))
        .route(
            "/api/v1/repos/{name}/endpoints",
            get(console::api::list).post(console::api::create),
        )
        .route(
            "/api/v1/repos/{name}/endpoints/{id}",
            get(console::api::get)
                .put(console::api::update)
                .delete(console::api::delete),
        )
        .route(
            "/api/v1/repos/{name}/endpoints/{id}/duplicate",
            post(console::api::duplicate),
        )
        .route(
            "/api/v1/repos/{name}/endpoints/{id}/send",
            post(console::api::send_endpoint),
        )
        .route(
            "/api/v1/repos/{name}/endpoint-order",
            axum::routing::put(console::api::reorder),
        )
        .route(
            "/api/v1/repos/{name}/endpoint-import",
            post(console::api::import),
        )
        .route("/api/v1/repos/{name}/send", post(console::api::send))
        .route("/api/v1/console/history", get(console::api::history))
        .route(
            "/api/v1/console/history/{index}/rerun",
            post(console::api::rerun),
        )
        .route(
            "/api/v1/openapi.yaml",
            get(|| async { ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI) }),
        )
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

/// Ready when the Kubernetes API answers: without it the site can do nothing.
async fn readyz(State(state): State<AppState>) -> Result<&'static str, AppError> {
    state.cluster.client.apiserver_version().await?;
    Ok("ok")
}

/// The signed-in user of a request, if any; used only to decorate error pages.
async fn signed_in(state: &AppState, headers: &axum::http::HeaderMap) -> Option<auth::CurrentUser> {
    let jar = SignedCookieJar::from_headers(headers, state.key.clone());
    let claims = auth::SessionClaims::decode(jar.get(auth::SESSION_COOKIE)?.value())?;
    state.accounts.resolve(&claims).await.ok()
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
        let frame = views::Frame {
            user: user.as_ref(),
            csrf: &csrf,
        };
        (
            status,
            views::error_page(&frame, status.as_u16(), &error.message),
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
            (field, Request::from_parts(parts, Body::from(bytes)))
        };
        request = rebuilt;
        let valid = matches!((&existing, &supplied), (Some(e), Some(s)) if !e.is_empty() && e == s);
        if !valid {
            return AppError::Csrf.into_response();
        }
    }
    let token = existing.clone().unwrap_or_else(auth::random_token);
    request.extensions_mut().insert(CsrfToken(token.clone()));
    let response = next.run(request).await;
    if existing.is_some() {
        return response;
    }
    let jar = SignedCookieJar::new(state.key.clone()).add(auth::base_cookie(
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
