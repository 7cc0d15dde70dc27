//! Sends a console request to a repository through the ingress, with the site's limits.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;

use super::model::{Pair, RequestParts};
use super::request::{body_bytes, public_path};
use super::rules::check_path;
use crate::config::{ConsoleLimits, PublicUrl};
use crate::error::AppError;

/// What came back, ready to show.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub status: u16,
    pub reason: String,
    pub elapsed_ms: u64,
    /// Bytes received (at most the cap).
    pub size: usize,
    /// True when the body was cut at the site's response-size limit.
    pub truncated: bool,
    pub headers: Vec<Pair>,
    pub content_type: String,
    pub body: Shown,
    /// The public address of the call, for links and "copy as curl".
    pub url: String,
}

/// A response body as the console shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", content = "text", rename_all = "lowercase")]
pub enum Shown {
    Empty,
    Json(String),
    Text(String),
    Binary(String),
}

impl Shown {
    fn of(content_type: &str, bytes: &[u8], truncated: bool) -> Self {
        if bytes.is_empty() {
            return Self::Empty;
        }
        if !truncated
            && (content_type.contains("json") || bytes.first() == Some(&b'{'))
            && let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes)
            && let Ok(pretty) = serde_json::to_string_pretty(&v)
        {
            return Self::Json(pretty);
        }
        match std::str::from_utf8(bytes) {
            Ok(text) if !text.contains('\0') => Self::Text(text.to_string()),
            _ => {
                let preview: Vec<String> =
                    bytes.iter().take(32).map(|b| format!("{b:02x}")).collect();
                Self::Binary(format!(
                    "{} bytes of {}; first bytes: {}",
                    bytes.len(),
                    if content_type.is_empty() {
                        "binary data"
                    } else {
                        content_type
                    },
                    preview.join(" ")
                ))
            }
        }
    }
}

/// Per-user sliding window of sent requests; kept in memory, so each site replica counts its own.
#[derive(Clone, Default)]
pub struct RateLimiter {
    calls: Arc<Mutex<HashMap<String, VecDeque<Instant>>>>,
}

impl RateLimiter {
    /// Records a call, or says how many seconds to wait.
    pub fn check(&self, user: &str, max: u32, window: Duration) -> Result<(), u64> {
        let now = Instant::now();
        let Ok(mut calls) = self.calls.lock() else {
            return Ok(());
        };
        let q = calls.entry(user.to_string()).or_default();
        while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
            q.pop_front();
        }
        if q.len() >= max as usize {
            let wait = q
                .front()
                .map_or(window, |t| window.saturating_sub(now.duration_since(*t)));
            return Err(wait.as_secs().max(1));
        }
        q.push_back(now);
        Ok(())
    }
}

#[derive(Clone)]
pub struct Sender {
    client: Client<HttpConnector, Full<Bytes>>,
    pub limits: ConsoleLimits,
    pub limiter: RateLimiter,
    public_url: PublicUrl,
}

impl Sender {
    pub fn new(limits: ConsoleLimits, public_url: PublicUrl) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(limits.timeout));
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            limits,
            limiter: RateLimiter::default(),
            public_url,
        }
    }

    /// The address a browser or curl uses for the same call: the site's public URL and the
    /// repository's route.
    pub fn public_url(&self, namespace: &str, repo: &str, path: &str, query: &[Pair]) -> String {
        format!(
            "{}{}",
            self.public_url.base(),
            public_path(namespace, repo, path, query)
        )
    }

    /// Sends `parts` (path already filled) to `/<namespace>/<repo>/<path>` on the ingress.
    ///
    /// The upstream authority and Host header (the public URL's `host[:port]`, as a browser would
    /// send it) come from the configuration only; the user's input
    /// is confined to the path after the repository's prefix, the query, the body and
    /// non-reserved headers, all validated before this point and checked again here.
    pub async fn send(
        &self,
        user: &str,
        namespace: &str,
        repo: &str,
        parts: &RequestParts,
    ) -> Result<Outcome, AppError> {
        check_path(&parts.path)
            .map_err(|m| AppError::Invalid(vec![crate::error::FieldError::new("path", m)]))?;
        self.limiter
            .check(user, self.limits.max_calls, self.limits.window)
            .map_err(|retry_after_secs| AppError::ConsoleRateLimited {
                max: self.limits.max_calls,
                window_secs: self.limits.window.as_secs(),
                retry_after_secs,
            })?;
        let path = public_path(namespace, repo, &parts.path, &parts.query);
        let uri: http::Uri = format!("{}{}", self.limits.upstream.trim_end_matches('/'), path)
            .parse()
            .map_err(|_| {
                AppError::Invalid(vec![crate::error::FieldError::new(
                    "path",
                    "This path cannot be sent: check it for unusual characters.",
                )])
            })?;
        let method = http::Method::from_bytes(parts.method.as_bytes()).map_err(|_| {
            AppError::Invalid(vec![crate::error::FieldError::new(
                "method",
                "Unknown method.",
            )])
        })?;
        let mut builder = http::Request::builder()
            .method(method)
            .uri(uri)
            .header(http::header::HOST, self.public_url.authority());
        let has_content_type = parts
            .headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("content-type"));
        if let Some(ct) = parts.body_kind.content_type()
            && !has_content_type
        {
            builder = builder.header(http::header::CONTENT_TYPE, ct);
        }
        for h in &parts.headers {
            builder = builder.header(h.name.as_str(), h.value.as_str());
        }
        let request = builder
            .body(Full::new(Bytes::from(body_bytes(
                parts.body_kind,
                &parts.body,
            ))))
            .map_err(|_| {
                AppError::Invalid(vec![crate::error::FieldError::new(
                    "headers",
                    "A header could not be sent: check names and values.",
                )])
            })?;
        let url = self.public_url(namespace, repo, &parts.path, &parts.query);
        let started = Instant::now();
        let timeout = self.limits.timeout;
        let cap = self.limits.max_response_bytes;
        let call = async {
            let response = self.client.request(request).await?;
            let (head, mut body) = response.into_parts();
            let mut bytes: Vec<u8> = Vec::new();
            let mut truncated = false;
            while let Some(frame) = body.frame().await {
                let frame = frame?;
                if let Ok(data) = frame.into_data() {
                    let room = cap.saturating_sub(bytes.len());
                    if data.len() > room {
                        bytes.extend_from_slice(&data[..room]);
                        truncated = true;
                        break;
                    }
                    bytes.extend_from_slice(&data);
                }
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>((head, bytes, truncated))
        };
        let (head, bytes, truncated) = match tokio::time::timeout(timeout, call).await {
            Err(_) => {
                return Err(AppError::ConsoleTimeout {
                    secs: timeout.as_secs(),
                });
            }
            Ok(Err(e)) => {
                tracing::info!(namespace, repo, error = %e, "console request failed");
                return Err(AppError::ConsoleUnreachable);
            }
            Ok(Ok(r)) => r,
        };
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let content_type = head
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let headers = head
            .headers
            .iter()
            .map(|(k, v)| Pair {
                name: k.as_str().to_string(),
                value: String::from_utf8_lossy(v.as_bytes()).to_string(),
            })
            .collect();
        tracing::info!(
            namespace,
            repo,
            status = head.status.as_u16(),
            elapsed_ms,
            size = bytes.len(),
            "console request"
        );
        Ok(Outcome {
            status: head.status.as_u16(),
            reason: head
                .status
                .canonical_reason()
                .unwrap_or_default()
                .to_string(),
            elapsed_ms,
            size: bytes.len(),
            truncated,
            headers,
            body: Shown::of(&content_type, &bytes, truncated),
            content_type,
            url,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_shown_by_kind() {
        assert!(
            matches!(Shown::of("application/json", br#"{"a":1}"#, false), Shown::Json(s) if s.contains("\"a\": 1"))
        );
        assert!(matches!(Shown::of("text/plain", b"hi", false), Shown::Text(s) if s == "hi"));
        assert!(
            matches!(Shown::of("image/png", &[0x89, 0x50, 0, 1], false), Shown::Binary(s) if s.starts_with("4 bytes of image/png"))
        );
        assert!(matches!(Shown::of("", b"", false), Shown::Empty));
        // A cut JSON body is shown as text, not as an error.
        assert!(matches!(
            Shown::of("application/json", br#"{"a":"#, true),
            Shown::Text(_)
        ));
    }

    /// The console sends what a browser of the public URL sends: `Host: host[:port]`.
    #[tokio::test]
    async fn the_host_header_is_the_public_urls_authority() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let limits = ConsoleLimits::new(format!("http://{}", upstream.local_addr().unwrap()));
        let url = PublicUrl::parse("http://kdeploy.localhost:8080").unwrap();
        let sender = Sender::new(limits, url);
        let received = tokio::spawn(async move {
            let (mut stream, _) = upstream.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).await.unwrap();
                head.extend_from_slice(&buf[..n]);
            }
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                .await
                .unwrap();
            String::from_utf8(head).unwrap()
        });
        let parts = RequestParts {
            method: "GET".into(),
            path: "/items".into(),
            query: Vec::new(),
            headers: Vec::new(),
            body_kind: super::super::model::BodyKind::None,
            body: String::new(),
        };
        let outcome = sender
            .send("alice", "alice", "hello", &parts)
            .await
            .unwrap();
        let head = received.await.unwrap().to_ascii_lowercase();
        assert!(head.starts_with("get /alice/hello/items "), "{head}");
        assert!(
            head.contains("\r\nhost: kdeploy.localhost:8080\r\n"),
            "{head}"
        );
        assert_eq!(outcome.status, 200);
        assert_eq!(
            outcome.url,
            "http://kdeploy.localhost:8080/alice/hello/items"
        );
    }

    /// A service that answers with a redirect leaves the console where it was: the redirect is
    /// shown (status and `Location`), and nothing is sent to another host or to another route's
    /// path prefix on the same ingress.
    #[tokio::test]
    async fn redirects_are_shown_and_never_followed() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        /// Answers every connection with `answer` and sends each request's first line.
        async fn serve(
            listener: tokio::net::TcpListener,
            answer: String,
            seen: tokio::sync::mpsc::UnboundedSender<String>,
        ) {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&head)
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                let _ = seen.send(line);
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        }
        let elsewhere = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let elsewhere_url = format!("http://{}/steal", elsewhere.local_addr().unwrap());
        let (elsewhere_seen, mut elsewhere_log) = tokio::sync::mpsc::unbounded_channel();
        let trap = tokio::spawn(serve(elsewhere, String::new(), elsewhere_seen));

        let url = PublicUrl::parse("http://kdeploy.localhost:8080").unwrap();
        for (status, location) in [
            ("302 Found", elsewhere_url.as_str()),
            ("301 Moved Permanently", "/bob/secret/"),
            (
                "307 Temporary Redirect",
                "http://kdeploy.localhost:8080/bob/secret/",
            ),
            ("308 Permanent Redirect", "/alice/hello/elsewhere"),
        ] {
            let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let limits = ConsoleLimits::new(format!("http://{}", upstream.local_addr().unwrap()));
            let (seen, mut log) = tokio::sync::mpsc::unbounded_channel();
            let answer = format!(
                "HTTP/1.1 {status}\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            let server = tokio::spawn(serve(upstream, answer, seen));
            let parts = RequestParts {
                method: "GET".into(),
                path: "/items".into(),
                query: Vec::new(),
                headers: Vec::new(),
                body_kind: super::super::model::BodyKind::None,
                body: String::new(),
            };
            let outcome = Sender::new(limits, url.clone())
                .send("alice", "alice", "hello", &parts)
                .await
                .unwrap();
            let code: u16 = status[..3].parse().unwrap();
            assert_eq!(outcome.status, code, "{status}");
            assert!(
                outcome
                    .headers
                    .iter()
                    .any(|h| h.name == "location" && h.value == location),
                "{status}: the redirect is shown: {:?}",
                outcome.headers
            );
            server.abort();
            let _ = server.await;
            let mut requests = Vec::new();
            while let Ok(line) = log.try_recv() {
                requests.push(line);
            }
            assert_eq!(
                requests,
                ["GET /alice/hello/items HTTP/1.1"],
                "{status} to {location}: only the user's own route was called"
            );
        }
        trap.abort();
        let _ = trap.await;
        assert!(
            elsewhere_log.try_recv().is_err(),
            "the other host was never called"
        );
    }

    #[test]
    fn rate_limit_counts_per_user_in_a_window() {
        let l = RateLimiter::default();
        let w = Duration::from_secs(60);
        assert!(l.check("a", 2, w).is_ok());
        assert!(l.check("a", 2, w).is_ok());
        assert!(l.check("a", 2, w).unwrap_err() >= 1);
        assert!(l.check("b", 2, w).is_ok());
        assert!(l.check("c", 1, Duration::ZERO).is_ok());
        assert!(l.check("c", 1, Duration::ZERO).is_ok());
    }
}
