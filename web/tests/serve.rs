//! The `web` binary as a container runs it: settings from the environment, under the
//! ServiceAccount and RBAC of the installed manifest; a refused setting named with its rule; a
//! prompt, clean stop on SIGTERM (the site is PID 1 in its container, and the kubelet sends
//! SIGTERM after the preStop sleep); and two replicas started together that act as one site.
// Test helpers: a failed step should panic with its message, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use cluster::{ClusterSim, RunningSim, SimConfig};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::ListParams;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

/// The binary cargo built for this package's tests (the same build, nothing rebuilt).
const WEB: &str = env!("CARGO_BIN_EXE_web");

struct Stack {
    sim: RunningSim,
    kubeconfig: PathBuf,
}

/// The simulator with the platform's system namespace and the site's identity from the installed
/// manifest; the site's kubeconfig holds that ServiceAccount's token.
async fn stack() -> Stack {
    let sim = ClusterSim::start(SimConfig::default()).await.unwrap();
    let admin = sim.client().await.unwrap();
    common::system_namespace(&admin, "kdeploy-system").await;
    let token = common::install_site_identity(&sim, &admin, &common::config()).await;
    let kubeconfig = std::env::temp_dir().join(format!(
        "kdeploy-web-serve-{}-{}.yaml",
        std::process::id(),
        sim.ingress_addr().port()
    ));
    write_private(&kubeconfig, &sim.kubeconfig_for_token(&token).unwrap());
    Stack { sim, kubeconfig }
}

/// A new owner-only file: the kubeconfig holds a token.
fn write_private(path: &Path, contents: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    file.write_all(contents.as_bytes()).unwrap();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `web serve` with the environment the platform's manifest gives it.
fn serve(stack: &Stack, public_url: &str, port: u16) -> Child {
    Command::new(WEB)
        .args(["serve", "--insecure-cookies"])
        .env("KUBECONFIG", &stack.kubeconfig)
        .env("RUST_LOG", "info")
        .env("KDEPLOY_NAMESPACE", "kdeploy-system")
        .env("KDEPLOY_PUBLIC_URL", public_url)
        .env("KDEPLOY_LISTEN", format!("127.0.0.1:{port}"))
        .env("KDEPLOY_INGRESS_CLASS", "nginx")
        .env(
            "KDEPLOY_PLATFORM_NAMESPACES",
            "kdeploy-system,nginx-ingress",
        )
        .env("KDEPLOY_CONSOLE_UPSTREAM", stack.sim.ingress_url())
        .env("KDEPLOY_INITIAL_ADMIN_SECRET", "kdeploy-initial-admin")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// The status of `GET path` on the site, if it answers.
async fn get(port: u16, path: &str) -> Option<u16> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.ok()?;
    raw.split_whitespace().nth(1)?.parse().ok()
}

/// Waits for the process and returns how it ended and everything it logged.
async fn finish(child: Child) -> (std::process::ExitStatus, String) {
    let out = child.wait_with_output().await.unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, log)
}

/// Waits until the process answers `/healthz` (for up to 60 s), failing with its log if it exits
/// or never answers.
async fn up(mut child: Child, port: u16) -> Child {
    let limit = Duration::from_secs(60);
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "web serve exited early ({status}): {}",
                finish(child).await.1
            );
        }
        let seen = get(port, "/healthz").await;
        if seen == Some(200) {
            return child;
        }
        if tokio::time::Instant::now() >= deadline {
            child.start_kill().unwrap();
            panic!(
                "web serve did not answer /healthz with 200 within {limit:?} (last: {}): {}",
                seen.map_or("no answer".to_owned(), |s| s.to_string()),
                finish(child).await.1
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends SIGTERM and returns how the process ended and its log, within 5 s.
async fn stop(child: Child) -> (std::process::ExitStatus, String) {
    let pid = child.id().unwrap().to_string();
    let kill = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(kill.success());
    tokio::time::timeout(Duration::from_secs(5), finish(child))
        .await
        .expect("web serve stopped within 5 s of SIGTERM")
}

#[tokio::test]
async fn web_serve_stops_promptly_and_cleanly_on_sigterm() {
    let stack = stack().await;
    let port = free_port();
    let child = up(serve(&stack, "http://kdeploy.localhost:8080", port), port).await;
    let (status, log) = stop(child).await;
    assert!(
        status.success(),
        "a clean exit, not a kill: {status}: {log}"
    );
    assert!(log.contains("SIGTERM"), "{log}");
    assert_eq!(
        get(port, "/healthz").await,
        None,
        "nothing listens any more"
    );
    let _ = tokio::fs::remove_file(&stack.kubeconfig).await;
}

#[tokio::test]
async fn a_wrong_public_url_is_refused_naming_the_variable_and_the_rule() {
    let stack = stack().await;
    for (url, says) in [
        ("kdeploy.localhost:8080", "no scheme"),
        ("http://kdeploy.localhost:8080/site", "has a path"),
        ("http://Kdeploy.localhost", "lowercase"),
    ] {
        let child = serve(&stack, url, free_port());
        let (status, log) = tokio::time::timeout(Duration::from_secs(20), finish(child))
            .await
            .expect("web serve gave up at once");
        assert!(!status.success(), "{url}: {log}");
        assert!(
            log.contains("KDEPLOY_PUBLIC_URL")
                && log.contains(says)
                && log.contains("scheme://host[:port]"),
            "{url}: {log}"
        );
    }
    let _ = tokio::fs::remove_file(&stack.kubeconfig).await;
}

/// A visitor keeping cookies and the CSRF token, sent to either replica as a load balancer would.
struct Visitor {
    client: Client<HttpConnector, Full<Bytes>>,
    cookies: BTreeMap<String, String>,
    csrf: Option<String>,
}

impl Visitor {
    fn new() -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            cookies: BTreeMap::new(),
            csrf: None,
        }
    }

    /// One request to the replica listening on `port`; returns the status and the body.
    async fn send(
        &mut self,
        port: u16,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: String,
    ) -> (u16, String) {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("http://127.0.0.1:{port}{path}"));
        if !self.cookies.is_empty() {
            let cookies: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            request = request.header(http::header::COOKIE, cookies.join("; "));
        }
        if let Some(t) = content_type {
            request = request.header(http::header::CONTENT_TYPE, t);
        }
        if let Some(token) = &self.csrf {
            request = request.header("x-csrf-token", token);
        }
        let response = self
            .client
            .request(request.body(Full::new(Bytes::from(body))).unwrap())
            .await
            .unwrap_or_else(|e| panic!("{method} {path} on port {port}: {e}"));
        let status = response.status().as_u16();
        for set in response.headers().get_all(http::header::SET_COOKIE) {
            let set = set.to_str().unwrap();
            let (name, value) = set.split(';').next().unwrap().split_once('=').unwrap();
            if value.is_empty() || set.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), value.to_string());
            }
        }
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    async fn get(&mut self, port: u16, path: &str) -> (u16, String) {
        self.send(port, "GET", path, None, String::new()).await
    }

    /// Signs in through the API, keeping the session cookie and the CSRF token on success.
    async fn sign_in(&mut self, port: u16, username: &str, password: &str) -> u16 {
        let body = serde_json::json!({"username": username, "password": password}).to_string();
        let (status, body) = self
            .send(
                port,
                "POST",
                "/api/v1/session",
                Some("application/json"),
                body,
            )
            .await;
        if status == 200 {
            let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
            self.csrf = reply["csrfToken"].as_str().map(str::to_string);
        }
        status
    }

    /// Posts a form with the CSRF token in its `csrf` field, as the site's pages do.
    async fn post_form(&mut self, port: u16, path: &str, fields: &str) -> (u16, String) {
        let csrf = self.csrf.clone().unwrap();
        self.send(
            port,
            "POST",
            path,
            Some("application/x-www-form-urlencoded"),
            format!("csrf={csrf}&{fields}"),
        )
        .await
    }
}

/// Two `web serve` processes started at the same moment against one cluster, under the site's
/// installed identity: they race for the cookie key and the first administrator and end up with
/// one of each, a session made by one is accepted by the other, and sign-in failures count
/// across both.
#[tokio::test]
async fn two_site_processes_started_together_act_as_one_site() {
    let stack = stack().await;
    let admin = stack.sim.client().await.unwrap();
    let url = "http://kdeploy.localhost:8080";
    let (port_a, port_b) = (free_port(), free_port());
    let (a, b) = (serve(&stack, url, port_a), serve(&stack, url, port_b));
    let (a, b) = tokio::join!(up(a, port_a), up(b, port_b));

    // One cookie key and one administrator, whose password is the one in the Secret.
    let secrets: Api<Secret> = Api::namespaced(admin, "kdeploy-system");
    let all = secrets.list(&ListParams::default()).await.unwrap().items;
    let named = |name: &str| {
        all.iter()
            .filter(|s| s.metadata.name.as_deref() == Some(name))
            .count()
    };
    assert_eq!(named("kdeploy-session-key"), 1);
    let admins: Vec<&str> = all
        .iter()
        .filter(|s| {
            s.metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.get("kdeploy.dev/admin").is_some_and(|v| v == "true"))
        })
        .filter_map(|s| s.metadata.name.as_deref())
        .collect();
    assert_eq!(
        admins,
        ["kdeploy-user-operator"],
        "exactly one administrator"
    );
    let initial = secrets.get("kdeploy-initial-admin").await.unwrap();
    let password = String::from_utf8(initial.data.unwrap()["password"].0.clone()).unwrap();
    for port in [port_a, port_b] {
        let status = Visitor::new().sign_in(port, "operator", &password).await;
        assert_eq!(status, 200, "the Secret's password signs in on port {port}");
    }

    // A session and a CSRF token made by A are good on B: both sign with the one key.
    let mut operator = Visitor::new();
    assert_eq!(operator.sign_in(port_a, "operator", &password).await, 200);
    let (status, body) = operator.get(port_b, "/api/v1/repos").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = operator.get(port_b, "/repos").await;
    assert!(
        status == 200 && body.contains("<strong>operator</strong>"),
        "{status} {body}"
    );
    let (status, body) = operator
        .post_form(
            port_b,
            "/admin/users",
            "username=alice&password=alice+password+1",
        )
        .await;
    assert_eq!(status, 303, "a form of A's session posted to B: {body}");

    // Failed sign-ins alternate between the replicas: five in all, at most three on either,
    // reach the limit (five in 15 minutes), and then both refuse even the right password.
    for port in [port_a, port_b, port_a, port_b, port_a] {
        assert_eq!(
            Visitor::new()
                .sign_in(port, "alice", "not her password")
                .await,
            401
        );
    }
    for port in [port_a, port_b] {
        let status = Visitor::new()
            .sign_in(port, "alice", "alice password 1")
            .await;
        assert_eq!(status, 429, "the limit holds on port {port}");
    }

    // Signing out on B ends the session on A too.
    let (status, _) = operator
        .send(port_b, "DELETE", "/api/v1/session", None, String::new())
        .await;
    assert_eq!(status, 204);
    let mut stolen = Visitor::new();
    stolen.cookies = operator.cookies.clone();
    assert_eq!(stolen.get(port_a, "/api/v1/repos").await.0, 401);

    let (a, b) = tokio::join!(stop(a), stop(b));
    let logs = [a.1, b.1];
    let creators = logs
        .iter()
        .filter(|log| log.contains("first administrator created"))
        .count();
    assert_eq!(
        creators, 1,
        "one replica created the administrator: {logs:#?}"
    );
    for log in &logs {
        assert!(
            !log.contains("forbidden"),
            "a call outside the site's role: {log}"
        );
    }
    let _ = tokio::fs::remove_file(&stack.kubeconfig).await;
}
