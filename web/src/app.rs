//! The one routes table and the middleware around it (logging, error rendering, CSRF).

use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::handler::Handler;
use axum::http::HeaderMap;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Redirect, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
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

/// The HTTP methods the site routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Verb {
    pub fn method(self) -> Method {
        match self {
            Self::Get => Method::GET,
            Self::Post => Method::POST,
            Self::Put => Method::PUT,
            Self::Patch => Method::PATCH,
            Self::Delete => Method::DELETE,
        }
    }

    fn filter(self) -> MethodFilter {
        match self {
            Self::Get => MethodFilter::GET,
            Self::Post => MethodFilter::POST,
            Self::Put => MethodFilter::PUT,
            Self::Patch => MethodFilter::PATCH,
            Self::Delete => MethodFilter::DELETE,
        }
    }

    /// Whether requests of this method change something, and so must carry the CSRF token.
    pub fn is_mutating(self) -> bool {
        self != Self::Get
    }
}

/// One row of the routes table: a method on a path and its handler.
pub struct Route {
    pub verb: Verb,
    pub path: &'static str,
    handler: MethodRouter<AppState>,
}

impl Route {
    fn new<H, T>(verb: Verb, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        Self {
            verb,
            path,
            handler: on(verb.filter(), handler),
        }
    }
}

/// The one routes table: `app` serves exactly these rows, and tests walk them (every mutating
/// row must refuse a request without the CSRF token, unless [`CSRF_EXEMPT`] lists it).
pub fn routes() -> Vec<Route> {
    use Verb::{Delete, Get, Patch, Post, Put};
    use accounts::{api as account_api, pages as account_pages};
    use console::{api as console_api, pages as console_pages};
    use repositories::{api as repo_api, pages as repo_pages, webhook};
    vec![
        Route::new(Get, "/", account_pages::home),
        Route::new(Get, "/login", account_pages::login_form),
        Route::new(Post, "/login", account_pages::login),
        Route::new(Post, "/logout", account_pages::logout),
        Route::new(Get, "/register", account_pages::register_form),
        Route::new(Post, "/register", account_pages::register),
        Route::new(Get, "/account", account_pages::account),
        Route::new(Post, "/account/password", account_pages::change_password),
        Route::new(Get, "/admin", account_pages::admin),
        Route::new(Post, "/admin/users", account_pages::admin_create_user),
        Route::new(
            Post,
            "/admin/registration",
            account_pages::admin_registration,
        ),
        Route::new(Get, "/registries", repositories::registry_pages::page_get),
        Route::new(Post, "/registries", repositories::registry_pages::page_save),
        Route::new(
            Post,
            "/registries/delete",
            repositories::registry_pages::page_delete,
        ),
        Route::new(Get, "/compose", repositories::compose_pages::page_get),
        Route::new(Post, "/compose", repositories::compose_pages::page_deploy),
        Route::new(
            Post,
            "/compose/preview",
            repositories::compose_pages::page_preview,
        ),
        Route::new(Get, "/repos", repo_pages::list),
        Route::new(Post, "/repos", repo_pages::create),
        Route::new(Get, "/repos/new", repo_pages::new_form),
        Route::new(Get, "/repos/{name}", repo_pages::detail),
        Route::new(Post, "/repos/{name}/redeploy", repo_pages::redeploy),
        Route::new(Post, "/repos/{name}/rollback", repo_pages::rollback),
        Route::new(Post, "/repos/{name}/change", repo_pages::change),
        Route::new(Post, "/repos/{name}/delete", repo_pages::delete),
        Route::new(Post, "/repos/{name}/webhook", webhook::page_create),
        Route::new(Post, "/repos/{name}/webhook/delete", webhook::page_delete),
        Route::new(Get, "/repos/{name}/env", repositories::env_pages::page_get),
        Route::new(
            Post,
            "/repos/{name}/env",
            repositories::env_pages::page_post,
        ),
        Route::new(Get, "/repos/{name}/logs", repositories::logs::page_handler),
        Route::new(Get, "/repos/{name}/logs/stream", repositories::logs::stream),
        Route::new(Post, "/repos/{name}/endpoints", console_pages::create),
        Route::new(Get, "/repos/{name}/endpoints/new", console_pages::new_form),
        Route::new(Get, "/repos/{name}/endpoints/{id}", console_pages::console),
        Route::new(Post, "/repos/{name}/endpoints/{id}", console_pages::update),
        Route::new(
            Get,
            "/repos/{name}/endpoints/{id}/edit",
            console_pages::edit_form,
        ),
        Route::new(
            Post,
            "/repos/{name}/endpoints/{id}/send",
            console_pages::send,
        ),
        // duplicate, up, down and delete
        Route::new(
            Post,
            "/repos/{name}/endpoints/{id}/{action}",
            console_pages::act,
        ),
        Route::new(Post, "/repos/{name}/endpoint-import", console_pages::import),
        Route::new(Post, "/console/history/{index}/rerun", console_pages::rerun),
        Route::new(Post, SESSION_API, account_api::sign_in),
        Route::new(Delete, SESSION_API, account_api::sign_out),
        Route::new(
            Put,
            "/api/v1/account/password",
            account_api::change_password,
        ),
        Route::new(
            Get,
            "/api/v1/registries",
            repositories::registry_pages::api_list,
        ),
        Route::new(
            Post,
            "/api/v1/registries",
            repositories::registry_pages::api_save,
        ),
        Route::new(
            Delete,
            "/api/v1/registries/{server}",
            repositories::registry_pages::api_delete,
        ),
        Route::new(
            Post,
            "/api/v1/compose/preview",
            repositories::compose_pages::api_preview,
        ),
        Route::new(
            Post,
            "/api/v1/compose",
            repositories::compose_pages::api_deploy,
        ),
        Route::new(Get, "/api/v1/repos", repo_api::list),
        Route::new(Post, "/api/v1/repos", repo_api::create),
        Route::new(Get, "/api/v1/repos/{name}", repo_api::get),
        Route::new(Patch, "/api/v1/repos/{name}", repo_api::change),
        Route::new(Delete, "/api/v1/repos/{name}", repo_api::delete),
        Route::new(Post, "/api/v1/repos/{name}/redeploy", repo_api::redeploy),
        Route::new(Get, "/api/v1/repos/{name}/revisions", repo_api::revisions),
        Route::new(Post, "/api/v1/repos/{name}/rollback", repo_api::rollback),
        Route::new(Post, "/api/v1/repos/{name}/webhook", webhook::api_create),
        Route::new(Delete, "/api/v1/repos/{name}/webhook", webhook::api_delete),
        // A registry's push notification: no session, its own token (see `CSRF_EXEMPT`).
        Route::new(Post, webhook::HOOK_ROUTE, webhook::deliver),
        // Server-sent events for the list and detail pages (under their own prefix: a
        // repository may be called `live`).
        Route::new(Get, "/api/v1/live/repos", repositories::live::list),
        Route::new(Get, "/api/v1/live/repos/{name}", repositories::live::detail),
        Route::new(
            Get,
            "/api/v1/repos/{name}/env",
            repositories::env_pages::api_get,
        ),
        Route::new(
            Put,
            "/api/v1/repos/{name}/env",
            repositories::env_pages::api_put,
        ),
        Route::new(Get, "/api/v1/repos/{name}/logs", repositories::logs::api),
        Route::new(Get, "/api/v1/repos/{name}/endpoints", console_api::list),
        Route::new(Post, "/api/v1/repos/{name}/endpoints", console_api::create),
        Route::new(Get, "/api/v1/repos/{name}/endpoints/{id}", console_api::get),
        Route::new(
            Put,
            "/api/v1/repos/{name}/endpoints/{id}",
            console_api::update,
        ),
        Route::new(
            Delete,
            "/api/v1/repos/{name}/endpoints/{id}",
            console_api::delete,
        ),
        Route::new(
            Post,
            "/api/v1/repos/{name}/endpoints/{id}/duplicate",
            console_api::duplicate,
        ),
        Route::new(
            Post,
            "/api/v1/repos/{name}/endpoints/{id}/send",
            console_api::send_endpoint,
        ),
        Route::new(
            Put,
            "/api/v1/repos/{name}/endpoint-order",
            console_api::reorder,
        ),
        Route::new(
            Post,
            "/api/v1/repos/{name}/endpoint-import",
            console_api::import,
        ),
        Route::new(Post, "/api/v1/repos/{name}/send", console_api::send),
        Route::new(Get, "/api/v1/console/history", console_api::history),
        Route::new(
            Post,
            "/api/v1/console/history/{index}/rerun",
            console_api::rerun,
        ),
        Route::new(Get, "/api/v1/openapi.yaml", openapi),
        Route::new(Get, "/static/style.css", || async {
            ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE)
        }),
        Route::new(Get, "/static/app.js", || async {
            (
                [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                SCRIPT,
            )
        }),
        Route::new(Get, "/healthz", || async { "ok" }),
        Route::new(Get, "/readyz", readyz),
        Route::new(Get, "/metrics", metrics),
    ]
}

/// Signing in and out through the API.
pub const SESSION_API: &str = "/api/v1/session";

/// Why a mutating route may go without the CSRF token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exemption {
    /// Signing in through the API, which has no session to ride on yet, and only with a JSON
    /// body. A page of another site can send a cookie-less or cookie-carrying POST here only as
    /// a form (urlencoded, multipart or text/plain bodies); `Content-Type: application/json`
    /// from another origin needs a CORS preflight, which this site never grants. So without the
    /// token a form cannot sign a visitor in as someone else (login CSRF): a text/plain body
    /// shaped as JSON still needs the token.
    JsonBody,
    /// A registry's webhook: it reads no cookie and acts for no session; its credential is the
    /// secret token in its URL, which a page of another site does not know. Registries cannot
    /// send the site's CSRF token (Docker Hub cannot even send a header).
    OwnCredential,
}

/// The mutating routes that need no CSRF token, and why (see [`Exemption`]).
pub const CSRF_EXEMPT: [(Verb, &str, Exemption); 2] = [
    (Verb::Post, SESSION_API, Exemption::JsonBody),
    (
        Verb::Post,
        repositories::webhook::HOOK_ROUTE,
        Exemption::OwnCredential,
    ),
];

/// Whether a path matches a route's path, each `{parameter}` standing for one segment.
pub fn path_matches(route: &str, path: &str) -> bool {
    let (route, path): (Vec<&str>, Vec<&str>) =
        (route.split('/').collect(), path.split('/').collect());
    route.len() == path.len()
        && route.iter().zip(&path).all(|(r, p)| {
            if r.starts_with('{') && r.ends_with('}') {
                !p.is_empty()
            } else {
                r == p
            }
        })
}

/// The exemption of a request from the CSRF check, if it has one (see [`CSRF_EXEMPT`]).
fn csrf_exemption(method: &Method, path: &str, headers: &HeaderMap) -> Option<Exemption> {
    CSRF_EXEMPT
        .iter()
        .find(|(verb, exempt, _)| verb.method() == *method && path_matches(exempt, path))
        .map(|(_, _, why)| *why)
        .filter(|why| *why != Exemption::JsonBody || is_json(headers))
}

/// Whether the body is declared `application/json` (parameters such as `charset` aside).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

pub fn app(state: AppState) -> Router {
    let mut router = Router::new();
    for route in routes() {
        // Rows of one path with different methods merge into one method router.
        router = router.route(route.path, route.handler);
    }
    router
        .fallback(|| async { AppError::NotFound("This page".into()) })
        .layer(middleware::from_fn_with_state(state.clone(), csrf))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Serves the site on `listener` until `stop` resolves; then the live-update streams end (they
/// never finish by themselves, and graceful shutdown waits for every open answer) and the
/// requests under way finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let streams = state.streams.clone();
    // `into_make_service` shares the router with each connection; serving the `Router` itself
    // rebuilds its route table for every connection accepted (axum 0.8 `Router::with_state`).
    axum::serve(listener, app(state).into_make_service())
        .with_graceful_shutdown(async move {
            stop.await;
            streams.stop();
        })
        .await
}

/// The API's OpenAPI document, its example endpoints under this site's public URL.
async fn openapi(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/yaml")],
        OPENAPI.replace(OPENAPI_EXAMPLE_URL, &state.config.public_url.base()),
    )
}

/// Ready once every watch of the mirror has synced (until then pages have nothing to show);
/// answered at once from the watches' health, with the mirror's lag, whether the API server
/// answers or not: a stale mirror still serves pages, marked "as of" its last sync.
async fn readyz(State(state): State<AppState>) -> Response {
    let readiness = state.mirror.readiness();
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness)).into_response()
}

/// `/readyz`'s facts for a Prometheus scrape: the mirror's lag, whether it has synced and the API
/// server answers, and each watch's state, events and lists (relists after `410 Gone` show here).
async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.mirror.readiness().to_prometheus(),
    )
        .into_response()
}

/// The signed-in user of a request, if any; used only to decorate error pages.
async fn signed_in(state: &AppState, headers: &axum::http::HeaderMap) -> Option<CurrentUser> {
    let jar = SignedCookieJar::from_headers(headers, state.key.clone());
    let claims = SessionClaims::decode(jar.get(SESSION_COOKIE)?.value())?;
    session::resolve(&state.accounts, &claims).await.ok()
}

/// Paths whose errors are JSON: the API, and the webhooks registries call.
fn is_api(path: &str) -> bool {
    path.starts_with("/api/") || path.starts_with("/hooks/")
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
/// or for the API in the `X-CSRF-Token` header, on every mutating request but those of
/// [`CSRF_EXEMPT`].
async fn csrf(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let jar = SignedCookieJar::from_headers(request.headers(), state.key.clone());
    let existing = jar.get(CSRF_COOKIE).map(|c| c.value().to_string());
    let unsafe_method = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let path = request.uri().path().to_string();
    let exemption = csrf_exemption(request.method(), &path, request.headers());
    if unsafe_method && exemption == Some(Exemption::OwnCredential) {
        // No session, so no CSRF cookie to hand out either.
        return next.run(request).await;
    }
    let mut request = request;
    if unsafe_method && exemption.is_none() {
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

#[cfg(test)]
mod tests {
    use super::{path_matches, routes};
    use crate::accounts::password::SITE_PATHS;

    /// Users' endpoints are `http://<host>/<namespace>/<repo>/` on the site's own host, and a
    /// namespace is named after its user: a route whose first segment no username may take
    /// would otherwise be shadowed by, or shadow, someone's repositories.
    #[test]
    fn every_routes_first_segment_is_a_name_nobody_can_register() {
        for route in routes() {
            let first = route.path.split('/').nth(1).unwrap_or_default();
            assert!(
                first.is_empty() || SITE_PATHS.contains(&first),
                "{} begins with {first:?}, which is not in SITE_PATHS",
                route.path
            );
        }
    }

    #[test]
    fn a_route_parameter_stands_for_one_non_empty_segment() {
        let route = "/hooks/v1/{namespace}/{repo}";
        assert!(path_matches(route, "/hooks/v1/alice/hello"));
        for path in [
            "/hooks/v1/alice",
            "/hooks/v1/alice/hello/more",
            "/hooks/v1//hello",
            "/hooks/v2/alice/hello",
            "/api/v1/alice/hello",
        ] {
            assert!(!path_matches(route, path), "{path}");
        }
        assert!(path_matches("/api/v1/session", "/api/v1/session"));
        assert!(!path_matches("/api/v1/session", "/api/v1/session/"));
    }
}
