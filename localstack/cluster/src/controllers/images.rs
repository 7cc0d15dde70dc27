//! Pods run from the local OCI image store, as the kubelet and the container runtime run them:
//! the image is "pulled" (read and verified from the store) and its layers unpacked into the
//! pod's own directory; the process is the image's entrypoint and command as the container's
//! `command`/`args` override them, with the image's env plus the container's, in the image's
//! working directory, as the pod's or the image's user, on the pod's own loopback IP.
//!
//! When the simulator runs as root, the process is chrooted into the unpacked root and switched
//! to the container's user (see `processes::confine`), so its paths are the image's and a
//! statically linked image runs as in a container (without /proc, /dev or /sys, which the
//! simulator does not mount). Not as root, it runs without chroot and as the simulator's user:
//! it is started by its host path inside the unpacked root and sees the host's filesystem.
//! Either way the simulator is not a sandbox (no namespaces, no cgroups).
//!
//! The kubelet's service account token volume is written into the root (see
//! [`write_service_account_volume`]).

use crate::meta::Lookup;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use tokio::task::JoinHandle;

use super::probes::Probe;
use super::processes::{self, Launch, Readiness};
use crate::auth::Authenticator;
use crate::expansion;
use crate::images::{Image, ImageError, ImageStore, Resolved};
use crate::meta;
use crate::registry::Registry;

/// containerd's default PATH for a container whose image sets none
/// (containerd `oci/spec.go` defaultUnixEnv).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Pod IPs for image pods: a /16 of 127.0.0.0/8, 127.1.0.0/16 for the first simulator on the
/// machine. All of 127.0.0.0/8 is loopback (RFC 1122 §3.2.1.3 (g)) and Linux routes the whole
/// block to `lo` (`local 127.0.0.0/8 dev lo` in the local table), so every pod can listen on its
/// own address and port without any network setup.
///
/// Like two clusters, two simulators on one machine (parallel tests, `./dev up` beside a test
/// run) must not hand out the same pod IP: each claims its own /16 by binding
/// [`POD_NETWORK_CLAIM_PORT`] on the block's last address and holds that socket while it runs.
const FIRST_POD_NETWORK: u8 = 1;
const POD_NETWORK_CLAIM_PORT: u16 = 47_001;

/// A /16 of the loopback block held by this simulator (see [`FIRST_POD_NETWORK`]).
struct PodNetwork {
    second_octet: u8,
    _claim: Option<std::net::TcpListener>,
}

impl PodNetwork {
    fn claim() -> Self {
        for second_octet in FIRST_POD_NETWORK..=254 {
            let marker = Ipv4Addr::new(127, second_octet, 255, 254);
            if let Ok(claim) = std::net::TcpListener::bind((marker, POD_NETWORK_CLAIM_PORT)) {
                return Self {
                    second_octet,
                    _claim: Some(claim),
                };
            }
        }
        tracing::warn!("no free pod network in 127.0.0.0/8; sharing 127.1.0.0/16");
        Self::fixed(FIRST_POD_NETWORK)
    }

    fn fixed(second_octet: u8) -> Self {
        Self {
            second_octet,
            _claim: None,
        }
    }
}
const CONTAINER_LOG: &str = "container.log";
/// Where the kubelet mounts the default service account token volume
/// (https://kubernetes.io/docs/tasks/configure-pod-container/configure-service-account/).
pub(super) const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// What the kubelet needs to give a pod access to the API server: who issues tokens, and where
/// the API server listens.
#[derive(Clone)]
pub struct ApiAccess {
    pub authenticator: Arc<Authenticator>,
    pub addr: SocketAddr,
    /// The CA's PEM when the API server serves TLS (the volume's `ca.crt`).
    pub certificate_authority: Option<String>,
}

/// A service account token bound to a pod: issued when its container first starts, and no
/// longer accepted once the pod is gone (the kubelet's TokenRequest with a pod-bound audience;
/// https://kubernetes.io/docs/concepts/security/service-accounts/#bound-service-account-tokens).
pub(super) struct BoundToken {
    authenticator: Arc<Authenticator>,
    token: String,
}

impl BoundToken {
    pub(super) fn issue(api: &ApiAccess, namespace: &str, account: &str) -> Self {
        Self {
            authenticator: api.authenticator.clone(),
            token: api
                .authenticator
                .issue_service_account_token(namespace, account),
        }
    }

    pub(super) fn token(&self) -> &str {
        &self.token
    }
}

impl Drop for BoundToken {
    fn drop(&mut self) {
        self.authenticator.revoke_service_account_token(&self.token);
    }
}

/// The pod's ServiceAccount when the kubelet mounts its token, None when automounting is off.
/// The ServiceAccount admission plugin defaults `serviceAccountName` to `default`; the pod's
/// `automountServiceAccountToken` wins over the ServiceAccount's, and either being false turns
/// the volume off (https://kubernetes.io/docs/tasks/configure-pod-container/configure-service-account/#opt-out-of-api-credential-automounting;
/// plugin/pkg/admission/serviceaccount/admission.go shouldAutomount).
pub(super) fn service_account(registry: &Registry, pod: &Value) -> Option<String> {
    let spec = pod.get("spec")?;
    let account = spec
        .get("serviceAccountName")
        .or_else(|| spec.get("serviceAccount"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("default");
    let from_pod = spec
        .get("automountServiceAccountToken")
        .and_then(Value::as_bool);
    let automount = from_pod.unwrap_or_else(|| {
        registry
            .try_get(
                crate::resources::known::serviceaccounts(),
                meta::namespace(pod),
                account,
            )
            .and_then(|sa| {
                sa.get("automountServiceAccountToken")
                    .and_then(Value::as_bool)
            })
            .unwrap_or(true)
    });
    automount.then(|| account.to_string())
}

/// The per-pod IP allocator: the next free address after the last one handed out (CNI
/// host-local IPAM's round robin, plugins/ipam/host-local/backend/allocator), so a released IP
/// is not reused at once while a lagging ingress may still route to it.
pub(super) struct PodIps {
    network: PodNetwork,
    by_pod: HashMap<String, Ipv4Addr>,
    last: u16,
}

impl Default for PodIps {
    /// The allocator of a pod network this simulator claims for itself.
    fn default() -> Self {
        Self::on(PodNetwork::claim())
    }
}

impl PodIps {
    fn on(network: PodNetwork) -> Self {
        Self {
            network,
            by_pod: HashMap::new(),
            last: 0,
        }
    }

    pub(super) fn get(&self, uid: &str) -> Option<Ipv4Addr> {
        self.by_pod.get(uid).copied()
    }

    /// The pod's IP, allocated on first use; None when all 65534 are taken.
    pub(super) fn allocate(&mut self, uid: &str) -> Option<Ipv4Addr> {
        if let Some(ip) = self.get(uid) {
            return Some(ip);
        }
        let used: std::collections::HashSet<Ipv4Addr> = self.by_pod.values().copied().collect();
        let mut n = self.last;
        for _ in 0..u16::MAX {
            n = if n >= u16::MAX - 1 { 1 } else { n + 1 };
            let [hi, lo] = n.to_be_bytes();
            let ip = Ipv4Addr::new(127, self.network.second_octet, hi, lo);
            if hi == 255 && lo == 254 {
                continue; // the network's claim
            }
            if !used.contains(&ip) {
                self.last = n;
                self.by_pod.insert(uid.to_string(), ip);
                return Some(ip);
            }
        }
        None
    }

    /// Releases the IPs of pods that are gone.
    pub(super) fn retain(&mut self, live: impl Fn(&str) -> bool) {
        self.by_pod.retain(|uid, _| live(uid));
    }
}

/// The runtime's state directory: one directory per pod under a temporary directory the
/// simulator owns, all removed when the simulator stops.
pub(super) struct Runtime {
    pub(super) store: Arc<ImageStore>,
    root: PathBuf,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.root)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.root.display(), error = %e, "cannot remove the pods' directory");
        }
    }
}

/// A pod's directory (its root filesystem and container log); removed when dropped, that is
/// when the pod is gone.
pub(super) struct PodDir {
    path: PathBuf,
}

impl Drop for PodDir {
    fn drop(&mut self) {
        let path = std::mem::take(&mut self.path);
        let remove = move || {
            if let Err(e) = std::fs::remove_dir_all(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(dir = %path.display(), error = %e, "cannot remove a pod's directory");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn_blocking(remove);
            }
            Err(_) => remove(),
        }
    }
}

/// An image unpacked for a pod.
pub(super) struct Unpacked {
    pub(super) dir: PodDir,
    rootfs: PathBuf,
    image: Image,
}

impl Unpacked {
    pub(super) fn log_path(&self) -> PathBuf {
        self.dir.path.join(CONTAINER_LOG)
    }
}

/// Where a pod run from an image is.
pub(super) enum Stage {
    /// Reading, verifying and unpacking the image (on a blocking thread).
    Pulling(JoinHandle<Result<Unpacked, ImageError>>),
    Pulled(Box<Unpacked>),
    /// The image could not be used; the pod stays in ErrImagePull / ImagePullBackOff.
    Failed(String),
}

pub(super) struct ImagePod {
    pub(super) resolved: Resolved,
    pub(super) stage: Stage,
    /// The message of a CreateContainerConfigError, once the kubelet met one.
    pub(super) config_error: Option<String>,
    /// The pod's service account token, once its container started (revoked when dropped).
    pub(super) token: Option<BoundToken>,
}

fn make_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path)?;
    // Readable and searchable by the container's user, who may not be the simulator's.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

impl Runtime {
    pub(super) fn new(store: ImageStore) -> Self {
        let root = std::env::temp_dir().join(format!(
            "cluster-sim-{}-{}",
            std::process::id(),
            meta::random_suffix(6)
        ));
        Self {
            store: Arc::new(store),
            root,
        }
    }

    /// Starts pulling `resolved` for pod `uid` into the pod's directory.
    pub(super) fn pull(&self, uid: &str, resolved: Resolved) -> ImagePod {
        let store = self.store.clone();
        let root = self.root.clone();
        let path = self.root.join("pods").join(uid);
        let target = resolved.clone();
        let task = tokio::task::spawn_blocking(move || {
            // Dropped (so removed) on any failure below.
            let dir = PodDir { path: path.clone() };
            let rootfs = path.join("rootfs");
            for d in [&root, &root.join("pods"), &path, &rootfs] {
                make_dir(d).map_err(|source| ImageError::Read {
                    path: d.clone(),
                    source,
                })?;
            }
            let image = store.image(&target)?;
            store.unpack(&image, &rootfs)?;
            Ok(Unpacked { dir, rootfs, image })
        });
        ImagePod {
            resolved,
            stage: Stage::Pulling(task),
            config_error: None,
            token: None,
        }
    }
}

/// Why a container could not be started.
#[derive(Debug, PartialEq)]
pub(super) enum StartFailure {
    /// CreateContainerConfigError: the kubelet refused to create it.
    Config(String),
    /// RunContainerError: the runtime could not start it.
    Run(String),
}

/// pkg/kubelet/util/format Pod: `name_namespace(uid)`.
fn format_pod(pod: &Value) -> String {
    format!(
        "{}_{}({})",
        meta::name(pod),
        meta::namespace(pod),
        meta::uid(pod)
    )
}

/// A field of the effective security context: the container's, else the pod's
/// (pkg/securitycontext/util.go DetermineEffectiveSecurityContext).
fn security<'a>(pod: &'a Value, container: &'a Value, field: &str) -> Option<&'a Value> {
    container
        .at(&format!("/securityContext/{field}"))
        .or_else(|| pod.at(&format!("/spec/securityContext/{field}")))
        .filter(|v| !v.is_null())
}

/// The image's `User` as numeric uid and optional gid; None for a name (the simulator reads no
/// /etc/passwd).
fn image_user(user: &str) -> Option<(u32, Option<u32>)> {
    if user.is_empty() {
        // kuberuntime_image.go getImageUser: an image without a user runs as root.
        return Some((0, None));
    }
    let (uid, gid) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let uid = uid.parse().ok()?;
    match gid {
        Some(g) => Some((uid, Some(g.parse().ok()?))),
        None => Some((uid, None)),
    }
}

/// The uid and gid the container runs as, or the kubelet's refusal.
///
/// - runAsNonRoot: pkg/kubelet/kuberuntime/security_context_others.go verifyRunAsNonRoot, with
///   its messages (the image user as kuberuntime_container.go generateContainerConfig gets it).
/// - The user: runAsUser (else the image's uid), runAsGroup (else the image's gid, else 0), as
///   containerd's CRI plugin builds the OCI process user (internal/cri/server
///   container_create_linux.go: `WithUser`/`WithUserID`; the gid of a uid-only user comes from
///   the image's /etc/passwd, which the simulator does not read: 0).
fn user(pod: &Value, container: &Value, image: &Image) -> Result<Option<(u32, u32)>, String> {
    let name = container
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let run_as_user = security(pod, container, "runAsUser").and_then(Value::as_u64);
    let run_as_group = security(pod, container, "runAsGroup").and_then(Value::as_u64);
    let non_root = security(pod, container, "runAsNonRoot").and_then(Value::as_bool) == Some(true);
    let from_image = image_user(&image.config.config.user);
    if non_root {
        match (run_as_user, from_image) {
            (Some(0), _) => {
                return Err(format!(
                    "container's runAsUser breaks non-root policy (pod: {:?}, container: {name})",
                    format_pod(pod)
                ));
            }
            (Some(_), _) => {}
            (None, Some((0, _))) => {
                return Err(format!(
                    "container has runAsNonRoot and image will run as root (pod: {:?}, container: {name})",
                    format_pod(pod)
                ));
            }
            (None, None) => {
                return Err(format!(
                    "container has runAsNonRoot and image has non-numeric user ({}), cannot verify user is non-root (pod: {:?}, container: {name})",
                    image.config.config.user,
                    format_pod(pod)
                ));
            }
            (None, Some(_)) => {}
        }
    }
    let to_id = |n: u64| u32::try_from(n).ok();
    let resolved = match (run_as_user, from_image) {
        (Some(uid), _) => to_id(uid).map(|uid| (uid, run_as_group.and_then(to_id).unwrap_or(0))),
        (None, Some((uid, gid))) => Some((uid, run_as_group.and_then(to_id).or(gid).unwrap_or(0))),
        (None, None) => None,
    };
    if resolved.is_none() {
        tracing::warn!(pod = meta::name(pod), user = %image.config.config.user, "the image's user is a name; running the container as the simulator's user");
    }
    Ok(resolved)
}

/// `$(VAR)` in the container's command and args, against its env
/// (pkg/kubelet/container/helpers.go ExpandContainerCommandAndArgs).
fn expanded(list: Option<&Value>, env: &HashMap<&str, &str>) -> Option<Vec<String>> {
    let list = list?.as_array()?;
    Some(
        list.iter()
            .filter_map(Value::as_str)
            .map(|s| expansion::expand(s, |n| env.get(n).map(|v| (*v).to_string())))
            .collect(),
    )
}

/// The process's argv from the image and the container (https://kubernetes.io/docs/tasks/inject-data-application/define-command-argument-container/#notes):
/// `command` replaces the entrypoint and drops the image's Cmd; `args` replaces Cmd.
pub(super) fn argv(
    entrypoint: &[String],
    cmd: &[String],
    command: Option<Vec<String>>,
    args: Option<Vec<String>>,
) -> Vec<String> {
    let (entry, default_args) = match command.filter(|c| !c.is_empty()) {
        Some(command) => (command, Vec::new()),
        None => (entrypoint.to_vec(), cmd.to_vec()),
    };
    let args = args.filter(|a| !a.is_empty()).unwrap_or(default_args);
    entry.into_iter().chain(args).collect()
}

/// `path` inside `rootfs`, every symlink on the way resolved inside the root, as runc resolves
/// paths in a container's root (github.com/cyphar/filepath-securejoin `SecureJoin`): `..` and
/// absolute link targets stop at the root, so the result never leaves it (an image's
/// `/var/run -> /run` is the image's /run, never the host's).
fn in_root(rootfs: &Path, path: &Path) -> PathBuf {
    use std::collections::VecDeque;
    use std::ffi::OsString;
    use std::path::Component;
    fn parts(path: &Path) -> impl DoubleEndedIterator<Item = OsString> + '_ {
        path.components().filter_map(|c| match c {
            Component::Normal(p) => Some(p.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
    }
    let mut pending: VecDeque<OsString> = parts(path).collect();
    let mut current = PathBuf::new();
    let mut links = 0;
    while let Some(part) = pending.pop_front() {
        if part == ".." {
            current.pop();
            continue;
        }
        let candidate = current.join(&part);
        let host = rootfs.join(&candidate);
        let is_link = std::fs::symlink_metadata(&host).is_ok_and(|m| m.file_type().is_symlink());
        // SecureJoin's limit of 255 links, as ELOOP.
        match std::fs::read_link(&host) {
            Ok(target) if is_link && links < 255 => {
                links += 1;
                if target.has_root() {
                    current = PathBuf::new();
                }
                for p in parts(&target).rev() {
                    pending.push_front(p);
                }
            }
            _ => current = candidate,
        }
    }
    rootfs.join(current)
}

/// `host` (inside `rootfs`) as the process sees it once chrooted into `rootfs`.
fn image_path(rootfs: &Path, host: &Path) -> PathBuf {
    Path::new("/").join(host.strip_prefix(rootfs).unwrap_or(host))
}

/// Creates `dir` and its missing parents inside `rootfs`, each 0755 (readable and searchable by
/// the container's user, writable only by the simulator's).
fn make_dirs_in(rootfs: &Path, dir: &Path) -> std::io::Result<()> {
    let relative = dir.strip_prefix(rootfs).unwrap_or(dir);
    let mut current = rootfs.to_path_buf();
    for part in relative.components() {
        current.push(part);
        if !current.is_dir() {
            make_dir(&current)?;
        }
    }
    Ok(())
}

/// The kubelet's default service account volume, at [`SERVICE_ACCOUNT_DIR`] in the pod's root
/// (https://kubernetes.io/docs/reference/access-authn-authz/service-accounts-admin/#bound-service-account-token-volume):
/// `token` (the pod's bound token) and `namespace`, files of mode 0644 (the projected volume's
/// default mode) owned by the simulator, and `ca.crt` when the API server serves TLS (without
/// it the simulator's API server speaks plain HTTP and there is no CA). In-cluster configuration
/// cannot be used (kube-rs `Config::incluster` and client-go `rest.InClusterConfig` build an
/// `https://` URL from KUBERNETES_SERVICE_HOST/PORT and read `ca.crt` at the absolute path, which
/// is outside an unchrooted pod's root), so — a deviation — the volume also holds a `kubeconfig`
/// for `http(s)://127.0.0.1:<API port>` with the CA, the token and the pod's namespace, which
/// KUBECONFIG points at. Returns the host path of the directory.
fn write_service_account_volume(
    rootfs: &Path,
    namespace: &str,
    token: &str,
    api: &ApiAccess,
) -> std::io::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = in_root(rootfs, Path::new(SERVICE_ACCOUNT_DIR));
    make_dirs_in(rootfs, &dir)?;
    use base64::Engine;
    let mut cluster =
        serde_json::json!({"server": format!("http://127.0.0.1:{}", api.addr.port())});
    if let Some(ca) = &api.certificate_authority {
        cluster["server"] = format!("https://127.0.0.1:{}", api.addr.port()).into();
        cluster["certificate-authority-data"] =
            base64::engine::general_purpose::STANDARD.encode(ca).into();
    }
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "in-cluster", "cluster": cluster}],
        "users": [{"name": "service-account", "user": {"token": token}}],
        "contexts": [{"name": "in-cluster", "context": {"cluster": "in-cluster", "user": "service-account", "namespace": namespace}}],
        "current-context": "in-cluster",
        "preferences": {},
    });
    let kubeconfig = serde_yaml::to_string(&kubeconfig).map_err(std::io::Error::other)?;
    let ca = api.certificate_authority.as_deref();
    for (name, content) in [
        ("token", Some(token)),
        ("namespace", Some(namespace)),
        ("ca.crt", ca),
        ("kubeconfig", Some(kubeconfig.as_str())),
    ] {
        let Some(content) = content else { continue };
        let path = dir.join(name);
        // A link planted in the image is replaced, never followed.
        if std::fs::symlink_metadata(&path).is_ok() {
            std::fs::remove_file(&path)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)?;
        file.write_all(content.as_bytes())?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
    }
    Ok(dir)
}

fn executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The host path of the program `name` inside the root: a path as is (relative to the working
/// directory), a bare name searched in the container's PATH, as runc's exec does.
fn program(rootfs: &Path, cwd: &Path, name: &str, path_env: &str) -> Result<PathBuf, String> {
    if name.contains('/') {
        let inside = if name.starts_with('/') {
            PathBuf::from(name)
        } else {
            cwd.join(name)
        };
        let found = in_root(rootfs, &inside);
        return if executable(&found) {
            Ok(found)
        } else {
            Err(format!(
                "exec: {name:?}: stat {name}: no such file or directory"
            ))
        };
    }
    path_env
        .split(':')
        .filter(|d| d.starts_with('/'))
        .map(|d| in_root(rootfs, &Path::new(d).join(name)))
        .find(|p| executable(p))
        .ok_or_else(|| format!("exec: {name:?}: executable file not found in $PATH"))
}

/// How to start the pod's first container from its unpacked image; `service_account` is the
/// pod's bound token and the API server's address when its token volume is mounted.
pub(super) fn launch(
    unpacked: &Unpacked,
    registry: &Registry,
    pod: &Value,
    ip: Ipv4Addr,
    as_root: bool,
    service_account: Option<(&str, &ApiAccess)>,
) -> Result<Launch, StartFailure> {
    let container = pod.at("/spec/containers/0").unwrap_or(&Value::Null);
    let config = &unpacked.image.config.config;
    let user = user(pod, container, &unpacked.image).map_err(StartFailure::Config)?;
    let container_env = processes::container_env(registry, pod, &ip.to_string());
    let env_map: HashMap<&str, &str> = container_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let argv = argv(
        &config.entrypoint,
        &config.cmd,
        expanded(container.get("command"), &env_map),
        expanded(container.get("args"), &env_map),
    );
    let Some((name, args)) = argv.split_first() else {
        return Err(StartFailure::Run(
            "failed to generate container spec: no command specified".into(),
        ));
    };
    // The runtime's env: its default PATH, the image's Env, then the container's (which wins),
    // and HOSTNAME (containerd CRI container_create_linux.go).
    let mut env: Vec<(String, String)> = vec![("PATH".into(), DEFAULT_PATH.into())];
    let image_env = config
        .env
        .iter()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()));
    let hostname = ("HOSTNAME".to_string(), meta::name(pod).to_string());
    // The kubelet's variables for the `kubernetes` Service (pkg/kubelet/kubelet_pods.go
    // getServiceEnvVarMap), here the simulator's API server, and KUBECONFIG for the volume's
    // kubeconfig (see write_service_account_volume); the container's own env wins over them.
    let mut api_env = Vec::new();
    if let Some((token, api)) = service_account {
        let dir = write_service_account_volume(&unpacked.rootfs, meta::namespace(pod), token, api)
            .map_err(|e| {
                StartFailure::Run(format!(
                    "cannot write the service account volume {SERVICE_ACCOUNT_DIR}: {e}"
                ))
            })?;
        let kubeconfig = if as_root {
            image_path(&unpacked.rootfs, &dir.join("kubeconfig"))
        } else {
            dir.join("kubeconfig")
        };
        api_env = vec![
            (
                "KUBERNETES_SERVICE_HOST".to_string(),
                "127.0.0.1".to_string(),
            ),
            (
                "KUBERNETES_SERVICE_PORT".to_string(),
                api.addr.port().to_string(),
            ),
            ("KUBECONFIG".to_string(), kubeconfig.display().to_string()),
        ];
    }
    for (k, v) in image_env
        .chain([hostname])
        .chain(api_env)
        .chain(container_env)
    {
        match env.iter_mut().find(|(name, _)| *name == k) {
            Some(slot) => slot.1 = v,
            None => env.push((k, v)),
        }
    }
    let working_dir = container
        .get("workingDir")
        .and_then(Value::as_str)
        .filter(|d| !d.is_empty())
        .unwrap_or(if config.working_dir.is_empty() {
            "/"
        } else {
            &config.working_dir
        });
    let cwd = in_root(&unpacked.rootfs, Path::new(working_dir));
    // runc creates a missing working directory.
    make_dir(&cwd).map_err(|e| {
        StartFailure::Run(format!(
            "cannot create the working directory {working_dir}: {e}"
        ))
    })?;
    let path_env = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let program = program(&unpacked.rootfs, Path::new(working_dir), name, &path_env)
        .map_err(StartFailure::Run)?;
    // Chrooted, the process sees the image's paths.
    let (program, cwd, chroot) = if as_root {
        (
            image_path(&unpacked.rootfs, &program),
            image_path(&unpacked.rootfs, &cwd),
            Some(unpacked.rootfs.clone()),
        )
    } else {
        (program, cwd, None)
    };
    let applied = match user {
        Some(user) if as_root => Some(user),
        Some((uid, gid)) => {
            tracing::info!(
                pod = meta::name(pod),
                uid,
                gid,
                "not running as root: the container runs as the simulator's user instead"
            );
            None
        }
        None => None,
    };
    let pod_ip = IpAddr::V4(ip);
    let readiness = match container.get("readinessProbe").filter(|p| p.is_object()) {
        Some(spec) => Readiness::Probe(Probe::from_spec(spec, container, pod_ip)),
        None => match container
            .at("/ports/0/containerPort")
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
        {
            Some(port) => Readiness::Accepts(SocketAddr::new(pod_ip, port)),
            None => Readiness::Running,
        },
    };
    Ok(Launch {
        program,
        arg0: Some(name.clone()),
        args: args.to_vec(),
        env,
        inherit_env: false,
        env_remove: Vec::new(),
        cwd: Some(cwd),
        chroot,
        user: applied,
        log: Some(unpacked.log_path()),
        readiness,
        local_port: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    /// The table in define-command-argument-container/#notes.
    #[test]
    fn command_and_args_override_entrypoint_and_cmd_like_the_kubernetes_docs() {
        let (ep, cmd) = (v(&["/ep-1"]), v(&["foo", "bar"]));
        assert_eq!(argv(&ep, &cmd, None, None), v(&["/ep-1", "foo", "bar"]));
        assert_eq!(argv(&ep, &cmd, Some(v(&["/ep-2"])), None), v(&["/ep-2"]));
        assert_eq!(
            argv(&ep, &cmd, None, Some(v(&["zoo", "boo"]))),
            v(&["/ep-1", "zoo", "boo"])
        );
        assert_eq!(
            argv(&ep, &cmd, Some(v(&["/ep-2"])), Some(v(&["zoo", "boo"]))),
            v(&["/ep-2", "zoo", "boo"])
        );
    }

    #[test]
    fn pod_ips_are_loopback_round_robin_and_released() {
        let mut ips = PodIps::on(PodNetwork::fixed(1));
        let a = ips.allocate("a");
        let b = ips.allocate("b");
        assert_eq!(a, Some(Ipv4Addr::new(127, 1, 0, 1)));
        assert_eq!(b, Some(Ipv4Addr::new(127, 1, 0, 2)));
        assert!(a.is_some_and(|ip| ip.is_loopback()));
        assert_eq!(ips.allocate("a"), a);
        ips.retain(|uid| uid != "a");
        assert_eq!(ips.get("a"), None);
        assert_eq!(ips.allocate("c"), Some(Ipv4Addr::new(127, 1, 0, 3)));
    }

    #[test]
    fn two_simulators_on_one_machine_get_pod_networks_of_their_own() {
        let (mut one, mut two) = (PodIps::default(), PodIps::default());
        let (a, b) = (one.allocate("a"), two.allocate("a"));
        assert!(a.is_some() && b.is_some() && a != b, "{a:?} {b:?}");
        let net = |ip: Option<Ipv4Addr>| ip.map(|ip| ip.octets()[1]);
        assert_ne!(net(a), net(b));
        drop(one);
        // A released network is claimed again.
        let three = PodIps::default();
        assert_ne!(Some(three.network.second_octet), net(b));
    }

    /// filepath-securejoin SecureJoin: absolute links and `..` stay inside the root.
    #[test]
    fn paths_in_the_root_resolve_symlinks_inside_it() {
        let root = std::env::temp_dir().join(format!("in-root-{}", meta::random_suffix(8)));
        std::fs::create_dir_all(root.join("var")).unwrap();
        std::os::unix::fs::symlink("/run", root.join("var/run")).unwrap();
        std::os::unix::fs::symlink("../../..", root.join("up")).unwrap();
        let resolved = in_root(&root, Path::new("/var/run/secrets/x"));
        let via_up = in_root(&root, Path::new("/up/etc/passwd"));
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(resolved, root.join("run/secrets/x"));
        assert_eq!(via_up, root.join("etc/passwd"));
    }

    #[test]
    fn image_users_are_numeric_uid_and_optional_gid() {
        assert_eq!(image_user("65532:65532"), Some((65532, Some(65532))));
        assert_eq!(image_user("1000"), Some((1000, None)));
        assert_eq!(image_user(""), Some((0, None)));
        assert_eq!(image_user("nobody"), None);
    }
}
