//! What NGINX does with a request once a location is chosen: pass it to a peer, and on an
//! `error` (connection refused, reset before the response header) try the next peer
//! (`proxy_next_upstream error timeout`, nginx's default, which NIC does not override; tries
//! unlimited), except that a non-idempotent request (POST, LOCK, PATCH) already sent is not
//! passed again (https://nginx.org/en/docs/http/ngx_http_proxy_module.html#proxy_next_upstream).
//! NIC's proxy headers: `Host $host`, `X-Real-IP`, `X-Forwarded-For`, `X-Forwarded-Host $host`,
//! `X-Forwarded-Port $server_port` (80 inside the controller pod), `X-Forwarded-Proto $scheme`
//! (`internal/configs/version1/nginx.ingress.tmpl`).

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use super::IngressState;
use super::servers::Location;
use super::upstream::{self, Peer};

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

/// The port NIC's NGINX listens on inside its pod (what `$server_port` is).
pub const SERVER_PORT: u16 = 80;

/// An nginx error page, byte for byte what NGINX writes.
pub fn nginx_page(code: StatusCode, title: &str) -> Response {
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

pub fn bad_gateway() -> Response {
    nginx_page(StatusCode::BAD_GATEWAY, "502 Bad Gateway")
}

/// A request as NGINX passes it upstream.
pub struct Upstreamed<'a> {
    pub method: &'a Method,
    pub uri: String,
    pub host: &'a str,
    pub headers: &'a HeaderMap,
    pub body: Bytes,
}

impl Upstreamed<'_> {
    fn proxy_headers(&self) -> Vec<(String, String)> {
        let forwarded_for = match self
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
        {
            Some(prior) => format!("{prior}, 127.0.0.1"),
            None => "127.0.0.1".into(),
        };
        let replaced = [
            "host",
            "x-real-ip",
            "x-forwarded-for",
            "x-forwarded-host",
            "x-forwarded-port",
            "x-forwarded-proto",
        ];
        let mut out: Vec<(String, String)> = self
            .headers
            .iter()
            .filter(|(k, _)| !HOP_BY_HOP.contains(&k.as_str()) && !replaced.contains(&k.as_str()))
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    v.to_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        out.extend([
            ("host".into(), self.host.to_string()),
            ("x-real-ip".into(), "127.0.0.1".into()),
            ("x-forwarded-for".into(), forwarded_for),
            ("x-forwarded-host".into(), self.host.to_string()),
            ("x-forwarded-port".into(), SERVER_PORT.to_string()),
            ("x-forwarded-proto".into(), "http".into()),
        ]);
        out
    }
}

/// How one attempt ended.
enum Attempt {
    Answered(Response),
    /// Failed before anything was sent: always worth the next peer.
    ConnectFailed,
    /// Failed after the request was sent, before a response header.
    FailedAfterSend,
}

/// nginx's non-idempotent methods (ngx_http_upstream.c: POST, LOCK, PATCH).
fn idempotent(method: &Method) -> bool {
    !matches!(method.as_str(), "POST" | "LOCK" | "PATCH")
}

/// Passes the request to the location's upstream, peer after peer while errors allow it.
pub async fn pass(state: &IngressState, loc: &Location, request: Upstreamed<'_>) -> Response {
    let peers = upstream::peers(&state.registry, &state.endpoints, &loc.backend);
    let mut tried: Vec<String> = Vec::new();
    loop {
        let Some(peer) = state.balancer.pick(&loc.backend.upstream, &peers, &tried) else {
            // No endpoints: NIC's default server refuses. All tried or down: no live upstreams.
            return bad_gateway();
        };
        tried.push(peer.address.clone());
        let outcome = attempt(state, loc, &peer, &request).await;
        let failed = !matches!(outcome, Attempt::Answered(_));
        state.balancer.done(&loc.backend.upstream, &peer, failed);
        match outcome {
            Attempt::Answered(response) => return response,
            Attempt::ConnectFailed => {}
            Attempt::FailedAfterSend if idempotent(request.method) => {}
            Attempt::FailedAfterSend => return bad_gateway(),
        }
    }
}

async fn attempt(
    state: &IngressState,
    loc: &Location,
    peer: &Peer,
    request: &Upstreamed<'_>,
) -> Attempt {
    // A host-network pod's endpoint is the node's IP; its process listens on loopback.
    let host_network = state
        .containers
        .host_network_address(&peer.pod_uid)
        .zip(
            peer.address
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok()),
        )
        .map(|(ip, port)| std::net::SocketAddr::new(ip, port));
    match peer.local.or(host_network) {
        Some(addr) => forward(state, addr, request).await,
        None if state.containers.is_running(&peer.pod_uid) => {
            Attempt::Answered(echo(loc, peer, request))
        }
        // The simulated container has exited (or its sandbox is gone): connection refused.
        None => Attempt::ConnectFailed,
    }
}

/// A simulated pod's answer: the request it received, as JSON.
fn echo(loc: &Location, peer: &Peer, request: &Upstreamed<'_>) -> Response {
    let (path, query) = match request.uri.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (request.uri.clone(), String::new()),
    };
    let headers: serde_json::Map<String, Value> = request
        .proxy_headers()
        .into_iter()
        .map(|(k, v)| (k, json!(v)))
        .collect();
    let body = json!({
        "method": request.method.as_str(),
        "path": path,
        "query": query,
        "headers": headers,
        "body": String::from_utf8_lossy(&request.body),
        "pod": peer.pod,
        "namespace": loc.backend.namespace,
        "service": loc.backend.service,
    });
    (
        StatusCode::OK,
        [(http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Forwards to a local process, like `proxy_pass`.
async fn forward(
    state: &IngressState,
    addr: std::net::SocketAddr,
    request: &Upstreamed<'_>,
) -> Attempt {
    let mut builder = http::Request::builder()
        .method(request.method.clone())
        .uri(format!("http://{addr}{}", request.uri));
    for (k, v) in request.proxy_headers() {
        builder = builder.header(k, v);
    }
    let Ok(outgoing) = builder.body(http_body_util::Full::new(request.body.clone())) else {
        return Attempt::ConnectFailed;
    };
    let response = match state.upstream.request(outgoing).await {
        Ok(r) => r,
        Err(e) if e.is_connect() => return Attempt::ConnectFailed,
        Err(e) => {
            tracing::debug!(%addr, error = %e, "upstream failed before the response header");
            return Attempt::FailedAfterSend;
        }
    };
    let (parts, incoming) = response.into_parts();
    let bytes = match incoming.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            // The header was already relayed: nginx can only cut the response short.
            tracing::debug!(%addr, error = %e, "upstream response body failed");
            return Attempt::Answered(bad_gateway());
        }
    };
    let mut out = Response::new(axum::body::Body::from(bytes));
    *out.status_mut() = parts.status;
    for (k, v) in &parts.headers {
        if !HOP_BY_HOP.contains(&k.as_str()) {
            out.headers_mut().append(k, v.clone());
        }
    }
    Attempt::Answered(out)
}
