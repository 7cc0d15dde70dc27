//! The ingress data path: one listener playing the NLB in front of F5 NGINX Ingress Controller
//! (NIC) 5.5.4, the controller the platform installs. It is a model of NIC, not of Ingress in
//! general: [`controller`] judges Ingresses as NIC does (host ownership, mergeable
//! masters/minions, validation) and records NIC's Events; [`servers`] is the NGINX
//! configuration it generates; a request is then routed the way NGINX routes it ([`routing`])
//! and passed to the backend's ready endpoints as the controller last saw them ([`upstream`],
//! [`proxy`]). A simulated pod echoes the request back as JSON; a local-process pod gets it over
//! HTTP.

mod annotations;
mod configuration;
pub mod controller;
mod events;
mod proxy;
mod routing;
mod servers;
mod upstream;
mod validation;

use std::sync::{Arc, RwLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;

use crate::containers::Containers;
use crate::registry::Registry;
pub use servers::NginxConfig;
pub use upstream::{EndpointsView, follow_endpoints};

type UpstreamClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Full<Bytes>,
>;

/// The configuration NGINX currently runs, swapped by the controller after each change.
pub type Published = Arc<RwLock<Arc<NginxConfig>>>;

pub struct IngressState {
    registry: Arc<Registry>,
    config: Published,
    endpoints: Arc<EndpointsView>,
    containers: Arc<Containers>,
    balancer: upstream::Balancer,
    upstream: UpstreamClient,
}

pub fn router(
    registry: Arc<Registry>,
    config: Published,
    endpoints: Arc<EndpointsView>,
    containers: Arc<Containers>,
) -> Router {
    let state = Arc::new(IngressState {
        registry,
        config,
        endpoints,
        containers,
        balancer: upstream::Balancer::default(),
        upstream: hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http(),
    });
    Router::new().fallback(serve).with_state(state)
}

/// `$host`: the Host header's name, lowercased, without the port.
fn host_of(headers: &HeaderMap) -> String {
    let raw = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let name = if raw.starts_with('[') {
        raw.split_inclusive(']').next().unwrap_or(raw)
    } else {
        raw.split(':').next().unwrap_or("")
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

async fn serve(
    State(state): State<Arc<IngressState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let host = host_of(&headers);
    let Some(normalized) = routing::normalize(uri.path()) else {
        return proxy::nginx_page(StatusCode::BAD_REQUEST, "400 Bad Request");
    };
    let config = state
        .config
        .read()
        .map(|c| c.clone())
        .unwrap_or_else(|p| p.into_inner().clone());
    // No server for the host: NIC's default server answers 404.
    let Some(server) = config.server(&host) else {
        return proxy::nginx_page(StatusCode::NOT_FOUND, "404 Not Found");
    };
    match routing::select(server, &normalized) {
        routing::Selected::NotFound => proxy::nginx_page(StatusCode::NOT_FOUND, "404 Not Found"),
        routing::Selected::Redirect(path) => {
            // absolute_redirect on, server_name_in_redirect off, port_in_redirect on with NGINX
            // on port 80 in its pod: `http://$host<name>` without a port, whatever port the
            // client used (ngx_http_header_filter_module.c).
            let location = match uri.query() {
                Some(q) => format!("http://{host}{path}?{q}"),
                None => format!("http://{host}{path}"),
            };
            let mut response =
                proxy::nginx_page(StatusCode::MOVED_PERMANENTLY, "301 Moved Permanently");
            if let Ok(v) = http::HeaderValue::from_str(&location) {
                response.headers_mut().insert(http::header::LOCATION, v);
            }
            response
        }
        routing::Selected::Location(loc) => {
            let upstream_uri = routing::upstream_uri(loc, &normalized, uri.path(), uri.query());
            let request = proxy::Upstreamed {
                method: &method,
                uri: upstream_uri,
                host: &host,
                headers: &headers,
                body,
            };
            proxy::pass(&state, loc, request).await
        }
    }
}
