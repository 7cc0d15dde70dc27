//! The `web` binary as a container runs it: settings from the environment, a refused setting
//! named with its rule, and a prompt, clean stop on SIGTERM (the site is PID 1 in its container,
//! and the kubelet sends SIGTERM after the preStop sleep).
// Test helpers: a failed step should panic with its message, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use cluster::{ClusterSim, RunningSim, SimConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

/// The binary cargo built for this package's tests (the same build, nothing rebuilt).
const WEB: &str = env!("CARGO_BIN_EXE_web");

struct Stack {
    sim: RunningSim,
    kubeconfig: PathBuf,
}

async fn stack() -> Stack {
    let sim = ClusterSim::start(SimConfig::default()).await.unwrap();
    let admin = sim.client().await.unwrap();
    common::system_namespace(&admin, "kdeploy-system").await;
    let kubeconfig = std::env::temp_dir().join(format!(
        "kdeploy-web-serve-{}-{}.yaml",
        std::process::id(),
        sim.ingress_addr().port()
    ));
    tokio::fs::write(&kubeconfig, sim.kubeconfig_yaml().unwrap())
        .await
        .unwrap();
    Stack { sim, kubeconfig }
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

#[tokio::test]
async fn web_serve_stops_promptly_and_cleanly_on_sigterm() {
    let stack = stack().await;
    let port = free_port();
    let mut child = serve(&stack, "http://kdeploy.localhost:8080", port);
    let mut up = false;
    for _ in 0..300 {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "web serve exited early ({status}): {}",
                finish(child).await.1
            );
        }
        if get(port, "/healthz").await == Some(200) {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !up {
        child.start_kill().unwrap();
        panic!(
            "web serve did not answer /healthz: {}",
            finish(child).await.1
        );
    }

    let pid = child.id().unwrap().to_string();
    let kill = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(kill.success());
    let (status, log) = tokio::time::timeout(Duration::from_secs(5), finish(child))
        .await
        .expect("web serve stopped within 5 s of SIGTERM");
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
