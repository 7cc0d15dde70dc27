//! The kubelet's readiness prober for pods run from images (pkg/kubelet/prober/worker.go and
//! pkg/probe/{http,tcp}; https://kubernetes.io/docs/tasks/configure-pod-container/configure-liveness-readiness-startup-probes/):
//! the first probe after `initialDelaySeconds`, then one every `periodSeconds`, each limited to
//! `timeoutSeconds`; the container starts unready and changes state after `successThreshold`
//! consecutive successes or `failureThreshold` consecutive failures. `httpGet` succeeds on a
//! status from 200 to 399, `tcpSocket` when the connection opens.
//!
//! Not modelled: HTTPS probes (they fail), redirects (a 3xx is success without following it),
//! `exec` and `grpc` probes (never succeed).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The kubelet's User-Agent for HTTP probes (pkg/probe/http/request.go).
const USER_AGENT: &str = "kube-probe/1.34";

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Action {
    Http {
        addr: SocketAddr,
        path: String,
        headers: Vec<(String, String)>,
    },
    Tcp(SocketAddr),
    /// A probe the simulator cannot run (exec, grpc, HTTPS): always fails.
    Unsupported(String),
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Probe {
    pub action: Action,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

/// A probe's `port` (number or the name of one of the container's ports).
fn port(container: &Value, port: Option<&Value>) -> Option<u16> {
    match port? {
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(name) => container
            .get("ports")
            .and_then(Value::as_array)?
            .iter()
            .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
            .and_then(|p| p.get("containerPort").and_then(Value::as_u64))
            .and_then(|n| u16::try_from(n).ok()),
        _ => None,
    }
}

impl Probe {
    /// The container's probe `spec` (e.g. its `readinessProbe`), aimed at `pod_ip` unless it
    /// names a host; defaults from the API (pkg/apis/core/v1/defaults.go SetDefaults_Probe).
    pub(super) fn from_spec(spec: &Value, container: &Value, pod_ip: IpAddr) -> Self {
        let seconds = |field: &str, default: u64| {
            Duration::from_secs(spec.get(field).and_then(Value::as_u64).unwrap_or(default))
        };
        let count = |field: &str, default: u32| {
            spec.get(field)
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(default)
        };
        let host = |handler: &Value| {
            handler
                .get("host")
                .and_then(Value::as_str)
                .and_then(|h| h.parse::<IpAddr>().ok())
                .unwrap_or(pod_ip)
        };
        let action = if let Some(http) = spec.get("httpGet") {
            let scheme = http.get("scheme").and_then(Value::as_str).unwrap_or("HTTP");
            match port(container, http.get("port")) {
                Some(p) if scheme.eq_ignore_ascii_case("HTTP") => Action::Http {
                    addr: SocketAddr::new(host(http), p),
                    path: http
                        .get("path")
                        .and_then(Value::as_str)
                        .filter(|p| !p.is_empty())
                        .unwrap_or("/")
                        .to_string(),
                    headers: http
                        .get("httpHeaders")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|h| {
                            Some((
                                h.get("name")?.as_str()?.to_string(),
                                h.get("value")?.as_str()?.to_string(),
                            ))
                        })
                        .collect(),
                },
                Some(_) => Action::Unsupported(format!("{scheme} probe")),
                None => Action::Unsupported("httpGet probe without a resolvable port".into()),
            }
        } else if let Some(tcp) = spec.get("tcpSocket") {
            match port(container, tcp.get("port")) {
                Some(p) => Action::Tcp(SocketAddr::new(host(tcp), p)),
                None => Action::Unsupported("tcpSocket probe without a resolvable port".into()),
            }
        } else {
            Action::Unsupported("exec or grpc probe".into())
        };
        Self {
            action,
            initial_delay: seconds("initialDelaySeconds", 0),
            period: seconds("periodSeconds", 10).max(Duration::from_secs(1)),
            timeout: seconds("timeoutSeconds", 1).max(Duration::from_secs(1)),
            success_threshold: count("successThreshold", 1).max(1),
            failure_threshold: count("failureThreshold", 3).max(1),
        }
    }

    /// One probe: pkg/probe/http DoHTTPProbe (200 <= status < 400) or pkg/probe/tcp.
    async fn once(&self) -> bool {
        let attempt = async {
            match &self.action {
                Action::Tcp(addr) => TcpStream::connect(addr).await.is_ok(),
                Action::Http {
                    addr,
                    path,
                    headers,
                } => http_status(*addr, path, headers)
                    .await
                    .is_some_and(|s| (200..400).contains(&s)),
                Action::Unsupported(_) => false,
            }
        };
        tokio::time::timeout(self.timeout, attempt)
            .await
            .unwrap_or(false)
    }

    /// Runs until aborted, keeping `ready` as worker.go would (starts unready).
    pub(super) async fn run(self, ready: Arc<AtomicBool>) {
        if let Action::Unsupported(what) = &self.action {
            tracing::warn!(probe = %what, "the simulator cannot run this readiness probe; the pod stays unready");
        }
        ready.store(false, Ordering::Relaxed);
        tokio::time::sleep(self.initial_delay).await;
        let mut last: Option<bool> = None;
        let mut run = 0u32;
        let mut ticker = tokio::time::interval(self.period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let result = self.once().await;
            run = if last == Some(result) { run + 1 } else { 1 };
            last = Some(result);
            let threshold = if result {
                self.success_threshold
            } else {
                self.failure_threshold
            };
            if run >= threshold {
                ready.store(result, Ordering::Relaxed);
            }
        }
    }
}

/// The status code of `GET path` on `addr`, as a minimal HTTP/1.1 client.
async fn http_status(addr: SocketAddr, path: &str, headers: &[(String, String)]) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    let mut request = format!("GET {path} HTTP/1.1\r\n");
    if !has("host") {
        request.push_str(&format!("Host: {addr}\r\n"));
    }
    if !has("user-agent") {
        request.push_str(&format!("User-Agent: {USER_AGENT}\r\n"));
    }
    if !has("accept") {
        request.push_str("Accept: */*\r\n");
    }
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut head = Vec::new();
    let mut buf = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let mut words = line.split_whitespace();
    words.next().filter(|v| v.starts_with("HTTP/"))?;
    words.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// SetDefaults_Probe: period 10 s, timeout 1 s, success 1, failure 3; a named port is the
    /// container port of that name.
    #[test]
    fn defaults_and_named_ports_follow_the_api() {
        let container = json!({"ports": [{"name": "http", "containerPort": 8080}]});
        let ip: IpAddr = "127.1.0.7".parse().unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let probe = Probe::from_spec(
            &json!({"httpGet": {"path": "/readyz", "port": "http"}}),
            &container,
            ip,
        );
        assert_eq!(
            probe.action,
            Action::Http {
                addr: SocketAddr::new(ip, 8080),
                path: "/readyz".into(),
                headers: vec![]
            }
        );
        assert_eq!(
            (
                probe.period,
                probe.timeout,
                probe.success_threshold,
                probe.failure_threshold
            ),
            (Duration::from_secs(10), Duration::from_secs(1), 1, 3)
        );
        let tcp = Probe::from_spec(&json!({"tcpSocket": {"port": 9000}}), &container, ip);
        assert_eq!(tcp.action, Action::Tcp(SocketAddr::new(ip, 9000)));
    }
}
