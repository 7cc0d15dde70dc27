//! Pods whose image is mapped to a local command, or found in the local image store, run as real
//! child processes: the kubelet starts one per pod with the container's environment, probes it
//! for readiness, stops it the way the runtime stops a container when the pod is deleted
//! (SIGTERM, then SIGKILL), and kills it when the simulator stops.
//!
//! A local command runs on 127.0.0.1 with `PORT` set to a free port; an image's program runs on
//! its pod's own loopback IP and container port (see [`super::images`]).

use crate::meta::Lookup;
use std::collections::HashMap;
use std::ffi::CString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine;
use serde_json::Value;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use super::probes::Probe;
use crate::LocalCommand;
use crate::expansion;
use crate::logs::{ContainerLog, MAX_LINE};
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

/// When a started process counts as ready.
pub(super) enum Readiness {
    /// While this address accepts TCP connections.
    Accepts(SocketAddr),
    /// As the container's readiness probe says.
    Probe(Probe),
    /// As long as it runs (a container without a readiness probe or a port).
    Running,
}

/// How to start one process.
pub(super) struct Launch {
    pub program: PathBuf,
    /// `argv[0]` when it differs from `program` (an image's own name for its program).
    pub arg0: Option<String>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// A local command sees the simulator's environment; a container only its own.
    pub inherit_env: bool,
    /// Variables of the simulator's environment a local command must not inherit.
    pub env_remove: Vec<String>,
    /// The working directory (a path inside `chroot` when there is one).
    pub cwd: Option<PathBuf>,
    /// The root directory the process is confined to (only when the simulator runs as root).
    pub chroot: Option<PathBuf>,
    /// uid and gid to run as (only applied when the simulator runs as root).
    pub user: Option<(u32, u32)>,
    /// A file that also gets stdout and stderr (they always go to the container's log).
    pub log: Option<PathBuf>,
    pub readiness: Readiness,
    /// The 127.0.0.1 port a local command serves on (Endpoints and ingress use it).
    pub local_port: Option<u16>,
}

/// A running local process standing in for a pod's container.
pub(super) struct LocalProcess {
    child: Child,
    output: Arc<ContainerLog>,
    local_port: Option<u16>,
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
    /// The 127.0.0.1 port of a local command (None for a pod run from an image).
    pub(super) fn local_port(&self) -> Option<u16> {
        self.local_port
    }

    /// Where its stdout and stderr go.
    pub(super) fn output(&self) -> Arc<ContainerLog> {
        self.output.clone()
    }

    /// Ready as its [`Readiness`] says.
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

    /// The exit code when the process has ended (128 + the signal when a signal ended it, as
    /// container runtimes report it).
    pub(super) fn exited(&mut self) -> Option<i32> {
        use std::os::unix::process::ExitStatusExt;
        match self.child.try_wait() {
            Ok(Some(status)) => Some(
                status
                    .code()
                    .or_else(|| status.signal().map(|s| 128 + s))
                    .unwrap_or(-1),
            ),
            Ok(None) => None,
            Err(_) => Some(-1),
        }
    }

    /// Starts `command` for `pod` on a free port; `imds` is the node's metadata service when
    /// the pod could reach it.
    pub(super) fn spawn(
        command: &LocalCommand,
        registry: &Registry,
        pod: &Value,
        imds: Option<&str>,
        output: Arc<ContainerLog>,
    ) -> Result<Self, ProcessError> {
        let port = free_port().map_err(ProcessError::Port)?;
        let args: Vec<String> = command
            .args
            .iter()
            .map(|a| a.replace("{port}", &port.to_string()))
            .collect();
        let mut env = container_env(registry, pod, "127.0.0.1");
        env.push(("PORT".into(), port.to_string()));
        let mut launch = Launch {
            program: PathBuf::from(&command.program),
            arg0: None,
            args,
            env,
            inherit_env: true,
            env_remove: Vec::new(),
            cwd: None,
            chroot: None,
            user: None,
            log: None,
            readiness: Readiness::Accepts(SocketAddr::from(([127, 0, 0, 1], port))),
            local_port: Some(port),
        };
        if let Some(endpoint) = imds {
            reach_metadata_service(&mut launch, endpoint);
        }
        Self::start(launch, pod, output)
    }

    /// Starts a process as `launch` describes, for `pod`.
    /// Its stdout and stderr go, line by line, to `output`.
    pub(super) fn start(
        launch: Launch,
        pod: &Value,
        output: Arc<ContainerLog>,
    ) -> Result<Self, ProcessError> {
        let mut cmd = Command::new(&launch.program);
        if !launch.inherit_env {
            cmd.env_clear();
        }
        for name in &launch.env_remove {
            cmd.env_remove(name);
        }
        if let Some(arg0) = &launch.arg0 {
            cmd.arg0(arg0);
        }
        match &launch.chroot {
            Some(root) => confine(&mut cmd, root, launch.cwd.as_deref(), launch.user)?,
            None => {
                if let Some(cwd) = &launch.cwd {
                    cmd.current_dir(cwd);
                }
                if let Some((uid, gid)) = launch.user {
                    cmd.uid(uid).gid(gid);
                }
            }
        }
        cmd.args(&launch.args)
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let program = launch.program.display().to_string();
        let mut child = cmd.spawn().map_err(|source| ProcessError::Spawn {
            program: program.clone(),
            source,
        })?;
        // The runtime reads both streams into the container's log; the image's log file gets
        // the same bytes.
        match child.stdout.take() {
            Some(stdout) => drop(tokio::spawn(keep_output(
                stdout,
                output.clone(),
                launch.log.clone(),
            ))),
            None => output.writer_done(),
        }
        match child.stderr.take() {
            Some(stderr) => drop(tokio::spawn(keep_output(
                stderr,
                output.clone(),
                launch.log.clone(),
            ))),
            None => output.writer_done(),
        }
        tracing::info!(pod = meta::name(pod), port = ?launch.local_port, %program, "started local process");
        let ready = Arc::new(AtomicBool::new(false));
        let flag = ready.clone();
        let probe = match launch.readiness {
            Readiness::Accepts(addr) => tokio::spawn(async move {
                loop {
                    let up = tokio::net::TcpStream::connect(addr).await.is_ok();
                    flag.store(up, Ordering::Relaxed);
                    tokio::time::sleep(PROBE_INTERVAL).await;
                }
            }),
            Readiness::Probe(probe) => tokio::spawn(probe.run(flag)),
            Readiness::Running => {
                flag.store(true, Ordering::Relaxed);
                tokio::spawn(async {})
            }
        };
        Ok(Self {
            child,
            output,
            local_port: launch.local_port,
            ready,
            probe,
        })
    }
}

/// Copies one of the process's streams into its log, one entry per line (a line longer than
/// [`MAX_LINE`] in several), and into `file` when there is one; the stream's end is the
/// writer's end.
async fn keep_output(
    stream: impl tokio::io::AsyncRead + Unpin,
    output: Arc<ContainerLog>,
    file: Option<PathBuf>,
) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let mut file = match file {
        Some(path) => match tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .await
        {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot open the container log file");
                None
            }
        },
        None => None,
    };
    let mut reader = tokio::io::BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        let buf = match reader.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(buf) => buf,
        };
        let room = MAX_LINE - line.len();
        let (take, complete) = match buf.iter().take(room).position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len().min(room), false),
        };
        line.extend_from_slice(&buf[..take]);
        reader.consume(take);
        if complete || line.len() >= MAX_LINE {
            if let Some(f) = file.as_mut()
                && let Err(e) = f.write_all(&line).await
            {
                tracing::debug!(error = %e, "container log file write failed");
            }
            output.append(std::mem::take(&mut line));
        }
    }
    if !line.is_empty() {
        if let Some(f) = file.as_mut() {
            let _ = f.write_all(&line).await;
        }
        output.append(line);
    }
    output.writer_done();
}

/// Confines the child to `root` as runc does before it executes a container's process
/// (libcontainer/rootfs_linux.go, then init_linux.go finalizeNamespace: the working directory,
/// then `setgroups`, `setgid`, `setuid`): `chroot(root)` and `chdir(cwd)` — `cwd` is a path
/// inside the root — then the user switch. All of it happens in the child between fork and exec,
/// in this order because `chroot` needs CAP_SYS_CHROOT, which `setuid` to a non-root user drops;
/// std's own `uid`/`gid` (and `current_dir`) would run before the `pre_exec` closure
/// (std/src/sys/process/unix/unix.rs `do_exec`), so they are not used here.
/// runc uses pivot_root in a mount namespace instead of chroot; for a process's view of its
/// files the two are alike, and the simulator mounts nothing (no /proc, /dev or /sys).
fn confine(
    cmd: &mut Command,
    root: &Path,
    cwd: Option<&Path>,
    user: Option<(u32, u32)>,
) -> Result<(), ProcessError> {
    use std::os::unix::ffi::OsStrExt;
    let c_string = |path: &Path| {
        CString::new(path.as_os_str().as_bytes()).map_err(|e| ProcessError::Spawn {
            program: path.display().to_string(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
        })
    };
    // Allocated here: the closure runs after fork, where only async-signal-safe calls are sound.
    let root = c_string(root)?;
    let cwd = c_string(cwd.unwrap_or(Path::new("/")))?;
    let check = |rc: libc::c_int| {
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    #[allow(unsafe_code)]
    // SAFETY: the closure only makes the async-signal-safe system calls chroot, chdir,
    // setgroups, setgid and setuid (signal-safety(7)) on pointers to strings owned by the
    // closure, and reads errno; it neither allocates nor takes locks.
    unsafe {
        cmd.pre_exec(move || {
            check(libc::chroot(root.as_ptr()))?;
            check(libc::chdir(cwd.as_ptr()))?;
            if let Some((uid, gid)) = user {
                check(libc::setgroups(0, std::ptr::null()))?;
                check(libc::setgid(gid))?;
                check(libc::setuid(uid))?;
            }
            Ok(())
        });
    }
    Ok(())
}

/// Variables of the simulator's own environment that would keep a process from the node's
/// metadata service or put other credentials before it in the SDKs' default chain: a pod on EC2
/// sees none of its node's environment.
const NOT_FROM_THE_HOST: [&str; 5] = [
    "AWS_EC2_METADATA_DISABLED",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
];

/// Points the process at its node's metadata service, `endpoint`, with
/// `AWS_EC2_METADATA_SERVICE_ENDPOINT` (the SDKs' setting for the IMDS address; on EC2 it is
/// 169.254.169.254, which the simulator cannot serve per node), unless the container sets it.
pub(super) fn reach_metadata_service(launch: &mut Launch, endpoint: &str) {
    const VARIABLE: &str = "AWS_EC2_METADATA_SERVICE_ENDPOINT";
    if !launch.env.iter().any(|(k, _)| k == VARIABLE) {
        launch.env.push((VARIABLE.into(), endpoint.into()));
    }
    if launch.inherit_env {
        launch
            .env_remove
            .extend(NOT_FROM_THE_HOST.iter().map(|v| (*v).to_string()));
    }
}

/// The command configured for the first container's image, if any (longest prefix wins).
pub(super) fn command_for<'a>(
    commands: &'a [LocalCommand],
    pod: &Value,
) -> Option<&'a LocalCommand> {
    let image = pod.at("/spec/containers/0/image").and_then(Value::as_str)?;
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

/// The first container's `env` as the kubelet builds it (pkg/kubelet/kubelet_pods.go
/// makeEnvironmentVariables): in order, literal values with `$(VAR)` expanded against the
/// variables defined before them, `fieldRef` (name, namespace, uid, node, pod IP, host IP) and
/// `configMapKeyRef`/`secretKeyRef` read from the store; a later entry of the same name wins.
/// `envFrom`, `resourceFieldRef` and the Service link variables are not supported.
pub(super) fn container_env(
    registry: &Registry,
    pod: &Value,
    pod_ip: &str,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    let ns = meta::namespace(pod);
    for var in pod
        .at("/spec/containers/0/env")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(name) = var.get("name").and_then(Value::as_str) else {
            continue;
        };
        let value = if let Some(v) = var.get("value").and_then(Value::as_str) {
            let defined: HashMap<&str, &str> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            Some(expansion::expand(v, |n| {
                defined.get(n).map(|v| (*v).to_string())
            }))
        } else if let Some(path) = var
            .at("/valueFrom/fieldRef/fieldPath")
            .and_then(Value::as_str)
        {
            match path {
                "metadata.name" => Some(meta::name(pod).to_string()),
                "metadata.namespace" => Some(ns.to_string()),
                "metadata.uid" => Some(meta::uid(pod).to_string()),
                "spec.nodeName" => pod
                    .at("/spec/nodeName")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                "spec.serviceAccountName" => pod
                    .at("/spec/serviceAccountName")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                "status.podIP" | "status.podIPs" => Some(pod_ip.to_string()),
                "status.hostIP" | "status.hostIPs" => Some("127.0.0.1".to_string()),
                other => {
                    tracing::debug!(field = other, "unsupported fieldRef for a local process");
                    None
                }
            }
        } else if let Some(r) = var.at("/valueFrom/configMapKeyRef") {
            key_ref(registry, known::configmaps(), ns, r, false)
        } else if let Some(r) = var.at("/valueFrom/secretKeyRef") {
            key_ref(registry, known::secrets(), ns, r, true)
        } else {
            None
        };
        if let Some(v) = value {
            match env.iter_mut().find(|(k, _)| k == name) {
                Some(slot) => slot.1 = v,
                None => env.push((name.to_string(), v)),
            }
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
