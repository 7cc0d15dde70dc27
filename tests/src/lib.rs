//! Support for the end-to-end tests: the workspace's binaries found through cargo, eventual waits,
//! and the local stack (AWS emulator, cluster simulator running the site's real binary).

#![allow(clippy::expect_used, clippy::panic)] // test support: a failed set-up is a failed test

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use cluster::{ClusterSim, LocalCommand, RunningSim, SimConfig};

/// A binary of this workspace, as cargo itself reports it. The build asked for is the one
/// `./dev test` (nextest) makes, `cargo test --no-run --workspace`, so that under the test command
/// it is already fresh and has the same features: nothing is rebuilt, and the path is cargo's
/// rather than a guess about the target directory.
pub fn workspace_binary(package: &str, bin: &str) -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "test",
            "--no-run",
            "--workspace",
            "--quiet",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("running cargo to build {package}'s {bin}: {e}"));
    assert!(
        output.status.success(),
        "cargo could not build the workspace: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| {
            m["reason"] == "compiler-artifact"
                && m["target"]["name"] == bin
                && m["target"]["kind"] == serde_json::json!(["bin"])
                && m["profile"]["test"] == false
                && m["package_id"].as_str().is_some_and(|id| {
                    id.contains(&format!("#{package}@")) || id.contains(&format!("/{package}#"))
                })
        })
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo built no executable {bin} of package {package}"))
}

/// Polls `check` until it returns `Some`, failing the test with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The local AWS emulator (moto from the project's venv) on a free port.
pub async fn aws_emulator() -> aws::AwsEmulator {
    aws::AwsEmulator::start(aws::Port::Any)
        .await
        .expect("the AWS emulator starts (needs python3; the venv is created on first use)")
}

/// The cluster simulator with the deploy site's pods running as our real `web` binary, which
/// reaches the API server with its own ServiceAccount's token (the identity and RBAC the
/// installed manifest gives it), never as the cluster admin.
pub struct SiteCluster {
    pub sim: RunningSim,
    kubeconfig: PathBuf,
}

/// The image the platform installs the site from; the simulator runs our binary for it.
pub const SITE_IMAGE_PREFIX: &str = "ghcr.io/kdeploy/web";

impl SiteCluster {
    /// `namespace`/`service_account` is the site's identity as the manifest declares it.
    pub async fn start(namespace: &str, service_account: &str) -> Self {
        let web = workspace_binary("web", "web");
        let kubeconfig = std::env::temp_dir().join(format!(
            "kdeploy-e2e-{}-{}.kubeconfig",
            std::process::id(),
            rand_suffix()
        ));
        let sim = ClusterSim::start(SimConfig {
            readiness_delay: Duration::from_millis(100),
            admin_token: Some(format!("test-{}", rand_suffix())),
            local_commands: vec![LocalCommand {
                image_prefix: SITE_IMAGE_PREFIX.into(),
                program: "env".into(),
                args: vec![
                    format!("KUBECONFIG={}", kubeconfig.display()),
                    web.display().to_string(),
                    "serve".into(),
                    "--listen".into(),
                    "127.0.0.1:{port}".into(),
                    "--insecure-cookies".into(),
                ],
            }],
            ..SimConfig::default()
        })
        .await
        .expect("simulator");
        let token = sim.service_account_token(namespace, service_account);
        std::fs::write(
            &kubeconfig,
            sim.kubeconfig_for_token(&token).expect("kubeconfig"),
        )
        .expect("write the site's kubeconfig");
        Self { sim, kubeconfig }
    }
}

impl Drop for SiteCluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.kubeconfig);
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}
