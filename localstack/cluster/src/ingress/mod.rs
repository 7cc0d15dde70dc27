//! The ingress data path: one listener playing the NLB plus the NGINX Ingress Controller.
//! Requests are routed by Host and path over Ingresses of class `nginx`, rewritten the way the
//! `nginx.org/*` annotations say, and answered by a simulated pod chosen round-robin among the
//! Service's ready endpoints. A simulated pod echoes the request back as JSON.

mod routing;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::registry::Registry;
use crate::resources::known;
pub use routing::{RouteMatch, Routed, route};

type Upstream = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Full<Bytes>,
>;

pub struct IngressState {
    registry: Arc<Registry>,
    round_robin: Mutex<HashMap<String, usize>>,
    upstream: Upstream,
}

pub fn router(registry: Arc<Registry>) -> Router {
    let state = Arc::new(IngressState {
        registry,
        round_robin: Mutex::new(HashMap::new()),
        upstream: hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http(),
    });
    Router::new().fallback(serve).with_state(state)
}

fn nginx_page(code: StatusCode, title: &str) -> Response {
    let body = format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    );
    (
        code,
        [
            (http::header::CONTENT_TYPE, "text/html"),
            (http::header::SERVER, "nginx"),
        ],
        body,
    )
        .into_response()
}

async fn serve(
    State(state): State<Arc<IngressState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let host = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .split(':')
        .next()
        .unwrap_or("")
        .to_string();
    let ingresses = state.registry.select(known::ingresses(), None, None);
    let target = match route(&ingresses, &host, uri.path()) {
        Routed::NoMatch => return nginx_page(StatusCode::NOT_FOUND, "404 Not Found"),
        Routed::Redirect(location) => {
            let location = match uri.query() {
                Some(q) => format!("{location}?{q}"),
                None => location,
            };
            let mut response = nginx_page(StatusCode::MOVED_PERMANENTLY, "301 Moved Permanently");
            if let Ok(v) = http::HeaderValue::from_str(&location) {
                response.headers_mut().insert(http::header::LOCATION, v);
            }
            return response;
        }
        Routed::Backend(m) => m,
    };
    let Some(picked) = pick_endpoint(&state, &target) else {
        return nginx_page(
            StatusCode::SERVICE_UNAVAILABLE,
            "503 Service Temporarily Unavailable",
        );
    };
    if let Some(addr) = picked.local {
        return proxy(&state, addr, &method, &uri, &target, &headers, body).await;
    }
    let pod = picked.pod;
    let header_map: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                json!(v.to_str().unwrap_or_default()),
            )
        })
        .collect();
    let echo = json!({
        "method": method.as_str(),
        "path": target.upstream_path,
        "query": uri.query().unwrap_or(""),
        "headers": header_map,
        "body": String::from_utf8_lossy(&body),
        "pod": pod,
        "namespace": target.namespace,
        "service": target.service,
    });
    (
        StatusCode::OK,
        [(http::header::CONTENT_TYPE, "application/json")],
        echo.to_string(),
    )
        .into_response()
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1); a proxy drops them.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
];

/// Forwards the request to a local process, like NGINX's `proxy_pass` (Host kept, X-Forwarded-* added).
async fn proxy(
    state: &IngressState,
    addr: std::net::SocketAddr,
    method: &Method,
    uri: &Uri,
    target: &RouteMatch,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    let mut request = http::Request::builder()
        .method(method.clone())
        .uri(format!("http://{addr}{}{query}", target.upstream_path));
    for (k, v) in headers {
        if !HOP_BY_HOP.contains(&k.as_str()) {
            request = request.header(k, v);
        }
    }
    request = request
        .header("x-forwarded-proto", "http")
        .header("x-real-ip", "127.0.0.1");
    let request = match request.body(http_body_util::Full::new(body)) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "cannot build the upstream request");
            return nginx_page(StatusCode::BAD_GATEWAY, "502 Bad Gateway");
        }
    };
    let response = match state.upstream.request(request).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(%addr, error = %e, "upstream request failed");
            return nginx_page(StatusCode::BAD_GATEWAY, "502 Bad Gateway");
        }
    };
    let (parts, incoming) = response.into_parts();
    use http_body_util::BodyExt;
    let bytes = match incoming.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            tracing::debug!(%addr, error = %e, "upstream response failed");
            return nginx_page(StatusCode::BAD_GATEWAY, "502 Bad Gateway");
        }
    };
    let mut out = Response::new(axum::body::Body::from(bytes));
    *out.status_mut() = parts.status;
    for (k, v) in &parts.headers {
        if !HOP_BY_HOP.contains(&k.as_str()) {
            out.headers_mut().append(k, v.clone());
        }
    }
    out
}

/// The endpoint a request goes to: a pod name, and its address when a local process serves it.
struct Picked {
    pod: String,
    local: Option<std::net::SocketAddr>,
}

/// Round-robin over the ready addresses of the Service's Endpoints; None when there are none.
fn pick_endpoint(state: &IngressState, target: &RouteMatch) -> Option<Picked> {
    let endpoints =
        state
            .registry
            .try_get(known::endpoints(), &target.namespace, &target.service)?;
    let ready: Vec<Picked> = endpoints
        .get("subsets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|s| {
            let port = s
                .pointer("/ports/0/port")
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok());
            s.get("addresses")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |a| (a, port))
        })
        .filter_map(|(a, port)| {
            let pod = a.pointer("/targetRef/name").and_then(Value::as_str)?;
            let local = (a.get("ip").and_then(Value::as_str) == Some("127.0.0.1"))
                .then_some(port)
                .flatten()
                .map(|p| std::net::SocketAddr::from(([127, 0, 0, 1], p)));
            Some(Picked {
                pod: pod.to_string(),
                local,
            })
        })
        .collect();
    if ready.is_empty() {
        return None;
    }
    let key = format!("{}/{}", target.namespace, target.service);
    let mut counters = state.round_robin.lock().unwrap_or_else(|p| p.into_inner());
    let counter = counters.entry(key).or_insert(0);
    let index = *counter % ready.len();
    *counter = counter.wrapping_add(1);
    ready.into_iter().nth(index)
}
