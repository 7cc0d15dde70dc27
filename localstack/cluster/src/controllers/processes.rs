//! Pods whose image is mapped to a local command run as real child processes on 127.0.0.1:
//! the kubelet starts one per pod with the container's environment plus `PORT`, probes the port
//! for readiness, stops it the way the runtime stops a container when the pod is deleted
//! (SIGTERM, then SIGKILL), and kills it when the simulator stops.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine;
use serde_json::Value;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use crate::LocalCommand;
use crate::meta;
use crate::registry::Registry;
use crate::resources::known;

const PROBE_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("no free local port: {0}")]
    Port(std::io::Error),
    #[error("cannot start {program:?}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
}

/// A running local process standing in for a pod's container.
pub(super) struct LocalProcess {
    child: Child,
    port: u16,
    ready: Arc<AtomicBool>,
    probe: JoinHandle<()>,
}

impl Drop for LocalProcess {
    fn drop(&mut self) {
        self.probe.abort();
        // `kill_on_drop` kills the child when `self.child` drops; this only makes it immediate.
        if let Err(e) = self.child.start_kill() {
            tracing::debug!(error = %e, "local process already gone");
        }
    }
}

impl LocalProcess {
    pub(super) fn port(&self) -> u16 {
        self.port
    }

    /// Ready once the port accepts TCP connections (and as long as it does).
    pub(super) fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Asks the process to stop, as the runtime's StopContainer does first (SIGTERM).
    pub(super) fn terminate(&self) {
        let Some(pid) = self.child.id() else { return };
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        if let Err(e) = sent {
            tracing::warn!(pid, error = %e, "cannot send SIGTERM");
        }
    }

    /// SIGKILL, when the grace period has run out.
    pub(super) fn kill(&mut self) {
        if let Err(e) = self.child.start_kill() {
            tracing::debug!(error = %e, "local process already gone");
        }
    }

    /// The exit code when the process has ended.
    pub(super) fn exited(&mut self) -> Option<i32> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.code().unwrap_or(-1)),
            Ok(None) => None,
            Err(_) => Some(-1),
        }
    }

    /// Starts `command` for `pod` on a free port.
    pub(super) fn spawn(
        command: &LocalCommand,
        registry: &Registry,
        pod: &Value,
    ) -> Result<Self, ProcessError> {
        let port = free_port().map_err(ProcessError::Port)?;
        let args: Vec<String> = command
            .args
            .iter()
            .map(|a| a.replace("{port}", &port.to_string()))
            .collect();
        let mut cmd = Command::new(&command.program);
        cmd.args(&args)
            .envs(container_env(registry, pod))
            .env("PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|source| ProcessError::Spawn {
            program: command.program.clone(),
            source,
        })?;
        tracing::info!(pod = meta::name(pod), port, program = %command.program, "started local process");
        let ready = Arc::new(AtomicBool::new(false));
        let flag = ready.clone();
        let probe = tokio::spawn(async move {
            loop {
                let up = tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok();
                flag.store(up, Ordering::Relaxed);
                tokio::time::sleep(PROBE_INTERVAL).await;
            }
        });
        Ok(Self {
            child,
            port,
            ready,
            probe,
        })
    }
}

/// The command configured for the first container's image, if any (longest prefix wins).
pub(super) fn command_for<'a>(
    commands: &'a [LocalCommand],
    pod: &Value,
) -> Option<&'a LocalCommand> {
    let image = pod
        .pointer("/spec/containers/0/image")
        .and_then(Value::as_str)?;
    commands
        .iter()
        .filter(|c| image.starts_with(&c.image_prefix))
        .max_by_key(|c| c.image_prefix.len())
}

fn free_port() -> std::io::Result<u16> {
    // Bind-and-release: the port is free now; the child binds it a moment later.
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

/// The first container's `env`: literal values, `fieldRef` (name, namespace, uid, node, pod IP),
/// and `configMapKeyRef`/`secretKeyRef` read from the store. `envFrom` and `$(VAR)` expansion
/// are not supported.
fn container_env(registry: &Registry, pod: &Value) -> HashMap<String, String> {
    let mut env = HashMap::new();
    let ns = meta::namespace(pod);
    for var in pod
        .pointer("/spec/containers/0/env")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(name) = var.get("name").and_then(Value::as_str) else {
            continue;
        };
        let value = if let Some(v) = var.get("value").and_then(Value::as_str) {
            Some(v.to_string())
        } else if let Some(path) = var
            .pointer("/valueFrom/fieldRef/fieldPath")
            .and_then(Value::as_str)
        {
            match path {
                "metadata.name" => Some(meta::name(pod).to_string()),
                "metadata.namespace" => Some(ns.to_string()),
                "metadata.uid" => Some(meta::uid(pod).to_string()),
                "spec.nodeName" => pod
                    .pointer("/spec/nodeName")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                "status.podIP" | "status.hostIP" => Some("127.0.0.1".to_string()),
                other => {
                    tracing::debug!(field = other, "unsupported fieldRef for a local process");
                    None
                }
            }
        } else if let Some(r) = var.pointer("/valueFrom/configMapKeyRef") {
            key_ref(registry, known::configmaps(), ns, r, false)
        } else if let Some(r) = var.pointer("/valueFrom/secretKeyRef") {
            key_ref(registry, known::secrets(), ns, r, true)
        } else {
            None
        };
        if let Some(v) = value {
            env.insert(name.to_string(), v);
        }
    }
    env
}

fn key_ref(
    registry: &Registry,
    rt: &crate::resources::ResourceType,
    ns: &str,
    reference: &Value,
    base64_data: bool,
) -> Option<String> {
    let name = reference.get("name").and_then(Value::as_str)?;
    let key = reference.get("key").and_then(Value::as_str)?;
    let obj = registry.try_get(rt, ns, name)?;
    let raw = obj.get("data")?.get(key)?.as_str()?;
    if base64_data {
        let bytes = base64::engine::general_purpose::STANDARD.decode(raw).ok()?;
        String::from_utf8(bytes).ok()
    } else {
        Some(raw.to_string())
    }
}
