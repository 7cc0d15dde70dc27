//! Pods run from the local OCI image store (OCI image-spec image-layout.md): the kubelet and the
//! runtime unpack the image and start its program with Kubernetes' command, env and user rules,
//! on a loopback pod IP of its own.
//!
//! The image holds `echo-server` (this crate's test helper, src/bin/echo-server.rs) at
//! `/bin/echo-server`, built here for x86_64-unknown-linux-musl, statically linked like the
//! site's binary, because as root the simulator chroots the process into the unpacked root.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers, like #[test] bodies, may panic.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::eventually;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Endpoints, Event, Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const REPO: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/kdeploy/web";

fn digest(bytes: &[u8]) -> String {
    let hex: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

fn put_blob(dir: &Path, bytes: &[u8]) -> (String, usize) {
    let d = digest(bytes);
    let path = dir
        .join("blobs/sha256")
        .join(d.trim_start_matches("sha256:"));
    std::fs::write(path, bytes).unwrap();
    (d, bytes.len())
}

const MUSL: &str = "x86_64-unknown-linux-musl";

/// echo-server built once per test process with rustc for x86_64-unknown-linux-musl (std only,
/// so no cargo and no build lock is involved): a static binary that runs in an empty root.
fn static_echo_server() -> &'static Path {
    static BINARY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BINARY.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("echo-server-musl-{}", std::process::id()));
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bin/echo-server.rs");
        let built = std::process::Command::new(std::env::var("RUSTC").unwrap_or("rustc".into()))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["--edition", "2024", "--crate-name", "echo_server", "--target", MUSL])
            .args(["-C", "opt-level=1", "-C", "debuginfo=0", "-C", "strip=symbols", "-o"])
            .arg(&out)
            .arg(&source)
            .output()
            .expect("run rustc");
        assert!(
            built.status.success(),
            "cannot build echo-server for {MUSL} (install the target: `rustup target add {MUSL}`, as ./dev does): {}",
            String::from_utf8_lossy(&built.stderr)
        );
        out
    })
}

/// A file that exists only in the image (the test's host has no /only-in-image).
const IMAGE_ONLY_FILE: &str = "only-in-image";
const IMAGE_ONLY_CONTENT: &str = "this file is in the image\n";

/// An OCI image layout with one image named `<REPO>:<tag>`: a gzip layer holding echo-server at
/// /bin/echo-server and /only-in-image, and the given image config (`config` is the config's
/// `config` object). Returns the manifest digest.
fn write_layout(dir: &Path, tag: &str, config: Value) -> String {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    let binary = std::fs::read(static_echo_server()).unwrap();
    let mut tar = tar::Builder::new(Vec::new());
    let mut dir_header = tar::Header::new_ustar();
    dir_header.set_entry_type(tar::EntryType::Directory);
    dir_header.set_mode(0o755);
    dir_header.set_size(0);
    dir_header.set_mtime(0);
    dir_header.set_uid(0);
    dir_header.set_gid(0);
    tar.append_data(&mut dir_header, "bin", std::io::empty())
        .unwrap();
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o755);
    header.set_size(binary.len() as u64);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    tar.append_data(&mut header, "bin/echo-server", binary.as_slice())
        .unwrap();
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_size(IMAGE_ONLY_CONTENT.len() as u64);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    tar.append_data(&mut header, IMAGE_ONLY_FILE, IMAGE_ONLY_CONTENT.as_bytes())
        .unwrap();
    let tar = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    let layer = gz.finish().unwrap();
    let (layer_digest, layer_size) = put_blob(dir, &layer);
    let image_config = json!({
        "architecture": "amd64", "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [digest(&tar)]},
    });
    let (config_digest, config_size) = put_blob(dir, &serde_json::to_vec(&image_config).unwrap());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": layer_size}],
    });
    let (manifest_digest, manifest_size) = put_blob(dir, &serde_json::to_vec(&manifest).unwrap());
    let index_path = dir.join("index.json");
    let mut index: Value = std::fs::read(&index_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(json!({"schemaVersion": 2, "manifests": []}));
    index["manifests"].as_array_mut().unwrap().push(json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": manifest_digest, "size": manifest_size,
        "annotations": {"org.opencontainers.image.ref.name": format!("{REPO}:{tag}")},
    }));
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    manifest_digest
}

/// The site-like image: user 65532, PATH=/bin, entrypoint + cmd, working dir /work.
fn site_config() -> Value {
    json!({
        "User": "65532:65532",
        "Env": ["PATH=/bin", "GREETING=from-image", "IMAGE_ONLY=yes"],
        "Entrypoint": ["/bin/echo-server"],
        "Cmd": ["--from", "image-cmd"],
        "WorkingDir": "/work",
        "ExposedPorts": {"8080/tcp": {}},
    })
}

struct Store {
    dir: PathBuf,
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fresh layout with `(tag, config)` images; returns it and the manifest digests.
async fn store(images: Vec<(&'static str, Value)>) -> (Store, Vec<String>) {
    let dir = std::env::temp_dir().join(format!(
        "cluster-images-test-{}",
        cluster::meta::random_suffix(8)
    ));
    let d = dir.clone();
    let digests = tokio::task::spawn_blocking(move || {
        images
            .into_iter()
            .map(|(tag, config)| write_layout(&d, tag, config))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    (Store { dir }, digests)
}

async fn sim_with_store(store: &Store) -> cluster::RunningSim {
    common::sim_with(cluster::SimConfig {
        readiness_delay: Duration::from_millis(100),
        endpoint_propagation_delay: Duration::ZERO,
        image_store: Some(store.dir.clone()),
        ..cluster::SimConfig::default()
    })
    .await
}

/// The env of the site's manifest: POD_IP from the downward API, LISTEN built from it.
fn site_env() -> Value {
    json!([
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "LISTEN", "value": "$(POD_IP):8080"},
        {"name": "GREETING", "value": "from-pod"},
        // The image's env is not in the kubelet's expansion context: this stays verbatim.
        {"name": "ECHO_IMAGE_ONLY", "value": "$(IMAGE_ONLY)"},
        {"name": "ESCAPED", "value": "$$(POD_IP)"},
    ])
}

fn pod(name: &str, image: &str, container: Value) -> Value {
    let mut c = json!({"name": "web", "image": image, "env": site_env(), "ports": [{"name": "http", "containerPort": 8080}]});
    for (k, v) in container.as_object().unwrap() {
        c[k] = v.clone();
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}}, "spec": {"containers": [c]}})
}

async fn create_pod(client: &kube::Client, p: Value) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &serde_json::from_value(p).unwrap())
        .await
        .unwrap();
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn ready_pod(client: &kube::Client, name: &str) -> Pod {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    eventually(
        &format!("pod {name} ready"),
        Duration::from_secs(20),
        || async { pods.get(name).await.ok().filter(is_ready) },
    )
    .await
}

/// `GET path` on `addr` with `Host: host`; (status, body).
async fn http_get(addr: &str, host: &str, path: &str) -> (u16, String) {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let req = http::Request::get(format!("http://{addr}{path}"))
        .header("Host", host)
        .body(http_body_util::Empty::new())
        .unwrap();
    let res = client.request(req).await.unwrap();
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn report(p: &Pod) -> Value {
    let ip = p.status.as_ref().unwrap().pod_ip.clone().unwrap();
    let (status, body) = http_get(&format!("{ip}:8080"), "pod", "/").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The working directory as the process sees it: the image's path when chrooted (as root), the
/// host path inside the unpacked root otherwise.
fn assert_cwd(report: &Value, in_image: &str) {
    let cwd = report["cwd"].as_str().unwrap();
    if running_as_root() {
        assert_eq!(cwd, in_image);
    } else {
        assert!(cwd.ends_with(&format!("/rootfs{in_image}")), "{cwd}");
    }
}

/// The pod's directory on the host: `<tmp>/cluster-sim-<pid>-<suffix>/pods/<uid>`.
fn pod_dir(p: &Pod) -> PathBuf {
    let uid = p.metadata.uid.clone().unwrap();
    let prefix = format!("cluster-sim-{}-", std::process::id());
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path().join("pods").join(&uid))
        .find(|d| d.exists())
        .unwrap()
}

fn waiting(p: &Pod) -> Option<(String, String)> {
    let w = p
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()?
        .waiting
        .clone()?;
    Some((w.reason?, w.message.unwrap_or_default()))
}

/// Two replicas of one digest-pinned image (as `up` deploys the site): each runs the image's
/// entrypoint and Cmd as the image's user 65532, with the image's env overridden by the
/// container's (`$(VAR)` expanded against earlier container variables only), in the image's
/// working directory, listening on its own loopback pod IP at the same container port; both are
/// reached through the Service's Endpoints (podIP:containerPort) and through the ingress.
#[tokio::test]
async fn replicas_of_a_stored_image_run_side_by_side_on_their_own_pod_ips() {
    let (store, digests) = store(vec![("1.0", site_config())]).await;
    let sim = sim_with_store(&store).await;
    let client = sim.client().await.unwrap();
    let image = format!("{REPO}@{}", digests[0]);
    let mut d = common::deployment("site", &image, 2);
    let template = pod(
        "site",
        &image,
        json!({"readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 1}}),
    );
    d["spec"]["template"]["spec"] = template["spec"].clone();
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deploys
        .create(&PostParams::default(), &serde_json::from_value(d).unwrap())
        .await
        .unwrap();
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    services.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "site"}, "spec": {"selector": {"app": "site"}, "ports": [{"port": 80, "targetPort": "http"}]}})).unwrap()).await.unwrap();
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), "default");
    ingresses.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "site"}, "spec": {"ingressClassName": "nginx", "rules": [{"host": "site.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "site", "port": {"number": 80}}}}]}}]}})).unwrap()).await.unwrap();
    common::rolled_out(&deploys, "site", Duration::from_secs(30)).await;

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let list = pods
        .list(&ListParams::default().labels("app=site"))
        .await
        .unwrap()
        .items;
    assert_eq!(list.len(), 2);
    let mut ips = Vec::new();
    for p in &list {
        let status = p.status.as_ref().unwrap();
        let ip: std::net::Ipv4Addr = status.pod_ip.as_ref().unwrap().parse().unwrap();
        // A /16 of the loopback block other than the host's 127.0.0.0/16: 127.1.0.0/16 for the
        // first simulator on the machine, the next free one while another runs (parallel tests;
        // src/controllers/images.rs PodNetwork::claim).
        assert!(ip.is_loopback() && ip.octets()[1] != 0, "{ip}");
        assert_eq!(
            status.pod_ips.as_ref().unwrap()[0].ip,
            ip.to_string(),
            "podIPs"
        );
        let cs = &status.container_statuses.as_ref().unwrap()[0];
        assert_eq!(cs.image_id, format!("{REPO}@{}", digests[0]));
        let r = report(p).await;
        assert_eq!(
            r["argv"],
            json!(["/bin/echo-server", "--from", "image-cmd"]),
            "Entrypoint + Cmd"
        );
        assert_eq!(r["env"]["LISTEN"], format!("{ip}:8080"));
        assert_eq!(r["env"]["POD_IP"], ip.to_string());
        assert_eq!(r["env"]["GREETING"], "from-pod", "the container's env wins");
        assert_eq!(r["env"]["IMAGE_ONLY"], "yes", "the image's env is kept");
        assert_eq!(r["env"]["ECHO_IMAGE_ONLY"], "$(IMAGE_ONLY)");
        assert_eq!(r["env"]["ESCAPED"], "$(POD_IP)");
        assert_eq!(r["env"]["PATH"], "/bin");
        assert_eq!(r["env"]["HOSTNAME"], p.metadata.name.clone().unwrap());
        assert_cwd(&r, "/work");
        if running_as_root() {
            assert_eq!(
                (r["uid"].as_str(), r["gid"].as_str()),
                (Some("65532"), Some("65532"))
            );
        }
        ips.push(ip.to_string());
    }
    assert_ne!(ips[0], ips[1], "each pod has its own IP");
    let network = |ip: &str| ip.split('.').take(2).map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(
        network(&ips[0]),
        network(&ips[1]),
        "one pod network: {ips:?}"
    );

    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let ep = eventually("two ready endpoints", Duration::from_secs(5), || async {
        let ep = endpoints.get("site").await.ok()?;
        let n: usize = ep
            .subsets
            .iter()
            .flatten()
            .map(|s| s.addresses.as_ref().map_or(0, Vec::len))
            .sum();
        (n == 2).then_some(ep)
    })
    .await;
    let subset = &ep.subsets.unwrap()[0];
    let mut addresses: Vec<String> = subset
        .addresses
        .as_ref()
        .unwrap()
        .iter()
        .map(|a| a.ip.clone())
        .collect();
    addresses.sort();
    ips.sort();
    assert_eq!(addresses, ips);
    assert_eq!(subset.ports.as_ref().unwrap()[0].port, 8080);

    let mut hosts = std::collections::HashSet::new();
    for _ in 0..30 {
        let (status, body) = http_get(
            &sim.ingress_addr().to_string(),
            "site.example.com",
            "/anything",
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let r: Value = serde_json::from_str(&body).unwrap();
        hosts.insert(r["env"]["HOSTNAME"].as_str().unwrap().to_string());
    }
    assert_eq!(hosts.len(), 2, "the ingress reaches both replicas");
}

/// define-command-argument-container/#notes: `command` replaces Entrypoint and drops Cmd; `args`
/// alone replaces Cmd; both are `$(VAR)`-expanded against the container's env; a bare program
/// name is searched in the image's PATH; runAsUser/runAsGroup override the image's user.
#[tokio::test]
async fn command_and_args_override_the_image_as_kubernetes_documents() {
    let (store, _) = store(vec![("1.0", site_config())]).await;
    let sim = sim_with_store(&store).await;
    let client = sim.client().await.unwrap();
    let image = format!("{REPO}:1.0");
    create_pod(
        &client,
        pod(
            "command",
            &image,
            json!({"command": ["echo-server", "--cmd", "$(GREETING)"]}),
        ),
    )
    .await;
    let mut args = pod(
        "args",
        &image,
        json!({"args": ["--args", "$(POD_IP)", "$(UNDEFINED)"], "workingDir": "/elsewhere"}),
    );
    args["spec"]["securityContext"] = json!({"runAsUser": 1234, "runAsGroup": 5678});
    create_pod(&client, args).await;

    let command = report(&ready_pod(&client, "command").await).await;
    assert_eq!(command["argv"], json!(["echo-server", "--cmd", "from-pod"]));
    let args_pod = ready_pod(&client, "args").await;
    let ip = args_pod.status.as_ref().unwrap().pod_ip.clone().unwrap();
    let args = report(&args_pod).await;
    assert_eq!(
        args["argv"],
        json!(["/bin/echo-server", "--args", ip, "$(UNDEFINED)"])
    );
    assert_cwd(&args, "/elsewhere");
    if running_as_root() {
        assert_eq!(
            (args["uid"].as_str(), args["gid"].as_str()),
            (Some("1234"), Some("5678"))
        );
    }
}

/// security_context_others.go verifyRunAsNonRoot: an image without a user runs as root, so
/// runAsNonRoot refuses to create the container (CreateContainerConfigError, pod Pending).
#[tokio::test]
async fn run_as_non_root_refuses_an_image_that_runs_as_root() {
    let mut config = site_config();
    config["User"] = json!("");
    let (store, _) = store(vec![("root", config)]).await;
    let sim = sim_with_store(&store).await;
    let client = sim.client().await.unwrap();
    let mut p = pod("rooty", &format!("{REPO}:root"), json!({}));
    p["spec"]["securityContext"] = json!({"runAsNonRoot": true});
    create_pod(&client, p).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let (reason, message) = eventually("config error", Duration::from_secs(10), || async {
        waiting(&pods.get("rooty").await.ok()?).filter(|(r, _)| r != "ContainerCreating")
    })
    .await;
    assert_eq!(reason, "CreateContainerConfigError");
    assert!(
        message.starts_with(
            "container has runAsNonRoot and image will run as root (pod: \"rooty_default("
        ),
        "{message}"
    );
    let p = pods.get("rooty").await.unwrap();
    assert_eq!(p.status.unwrap().phase.as_deref(), Some("Pending"));
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let failed = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|e| e.reason.as_deref() == Some("Failed"))
        .unwrap();
    assert!(
        failed
            .message
            .unwrap()
            .starts_with("Error: container has runAsNonRoot")
    );
}

/// descriptor.md: a blob whose content does not match its digest is refused; the pod fails as
/// on an image pull error. An image that is not in the store keeps the simulated container.
#[tokio::test]
async fn a_corrupt_blob_fails_the_pull_and_other_images_keep_the_old_behaviour() {
    let (store, digests) = store(vec![("1.0", site_config())]).await;
    // Corrupt the layer: the biggest blob.
    let blobs = store.dir.join("blobs/sha256");
    let layer = std::fs::read_dir(&blobs)
        .unwrap()
        .flatten()
        .max_by_key(|e| e.metadata().unwrap().len())
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&layer).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&layer, bytes).unwrap();
    let sim = sim_with_store(&store).await;
    let client = sim.client().await.unwrap();
    create_pod(
        &client,
        pod("corrupt", &format!("{REPO}@{}", digests[0]), json!({})),
    )
    .await;
    create_pod(&client, pod("simulated", "nginx:1.27", json!({}))).await;
    // A digest of the right repository that the store does not hold: not resolvable either.
    let absent = format!("{REPO}@sha256:{}", "0".repeat(64));
    create_pod(&client, pod("absent", &absent, json!({}))).await;

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let (reason, message) = eventually("pull error", Duration::from_secs(10), || async {
        waiting(&pods.get("corrupt").await.ok()?).filter(|(r, _)| r != "ContainerCreating")
    })
    .await;
    assert!(
        reason == "ErrImagePull" || reason == "ImagePullBackOff",
        "{reason}"
    );
    if reason == "ErrImagePull" {
        assert!(message.contains("is corrupt"), "{message}");
    }
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let failed = events
        .list(&ListParams::default().fields("involvedObject.name=corrupt"))
        .await
        .unwrap()
        .items
        .into_iter()
        .find(|e| e.reason.as_deref() == Some("Failed"))
        .unwrap();
    assert!(failed.message.unwrap().contains("is corrupt"));
    assert!(!is_ready(&pods.get("corrupt").await.unwrap()));

    for name in ["simulated", "absent"] {
        let p = ready_pod(&client, name).await;
        let ip = p.status.unwrap().pod_ip.unwrap();
        assert!(
            ip.starts_with("192.168."),
            "{name} is a simulated pod: {ip}"
        );
    }
}

/// Pod deletion stops the image's process like any container (SIGTERM first: echo-server ends
/// on it, well before the 30 s grace period) and removes the pod's directory.
#[tokio::test]
async fn deleting_an_image_pod_stops_its_process_and_removes_its_directory() {
    let (store, _) = store(vec![("1.0", site_config())]).await;
    let sim = sim_with_store(&store).await;
    let client = sim.client().await.unwrap();
    let mut p = pod("doomed", &format!("{REPO}:1.0"), json!({}));
    p["spec"]["terminationGracePeriodSeconds"] = json!(30);
    create_pod(&client, p).await;
    let p = ready_pod(&client, "doomed").await;
    let ip = p.status.as_ref().unwrap().pod_ip.clone().unwrap();
    let _ = report(&p).await;
    let pod_dir = pod_dir(&p);
    assert!(pod_dir.join("container.log").exists());
    let log = tokio::fs::read_to_string(pod_dir.join("container.log"))
        .await
        .unwrap();
    assert!(log.contains(&format!("listening on {ip}:8080")), "{log}");

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let started = std::time::Instant::now();
    pods.delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    eventually("pod gone", Duration::from_secs(10), || async {
        pods.get("doomed").await.is_err().then_some(())
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "SIGTERM stopped it, not SIGKILL after the grace period"
    );
    assert!(
        tokio::net::TcpStream::connect(format!("{ip}:8080"))
            .await
            .is_err(),
        "the process is gone"
    );
    eventually("pod directory removed", Duration::from_secs(5), || async {
        (!pod_dir.exists()).then_some(())
    })
    .await;
}

/// The readiness probe decides: a probe on a path answering 500 keeps the pod unready while
/// its process runs (probe docs: success is 200 <= status < 400).
#[tokio::test]
async fn a_failing_http_readiness_probe_keeps_the_pod_unready() {
    let (store, _) = store(vec![("1.0", site_config())]).await;
    let sim = sim_with_store(&store).await;
    let client = sim.client().await.unwrap();
    create_pod(
        &client,
        pod(
            "unready",
            &format!("{REPO}:1.0"),
            json!({"readinessProbe": {"httpGet": {"path": "/fail", "port": 8080}, "periodSeconds": 1}}),
        ),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let p = eventually("running", Duration::from_secs(10), || async {
        let p = pods.get("unready").await.ok()?;
        let running = p.status.as_ref()?.container_statuses.as_ref()?[0]
            .state
            .as_ref()?
            .running
            .is_some();
        running.then_some(p)
    })
    .await;
    // The process answers (once it listens), but not 2xx/3xx on the probe's path.
    let ip = p.status.as_ref().unwrap().pod_ip.clone().unwrap();
    eventually("listening", Duration::from_secs(5), || async {
        tokio::net::TcpStream::connect(format!("{ip}:8080"))
            .await
            .ok()
    })
    .await;
    let listening = tokio::time::Instant::now();
    let _ = report(&p).await;
    // The probe runs every periodSeconds (1 s of real time) with a 1 s timeout, and the simulator
    // records no Unhealthy event to wait for: so the pod is watched for two periods plus the
    // timeout after the process listens (two probes have hit it by then, and their results
    // reached the pod's status), and must stay unready all along.
    let window = Duration::from_secs(2) + Duration::from_secs(1);
    while listening.elapsed() < window {
        let p = pods.get("unready").await.unwrap();
        assert!(
            !is_ready(&p),
            "ready {:?} after the process listened, with a probe answering 500: {:?}",
            listening.elapsed(),
            p.status
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// As root the process is chrooted into the unpacked image (runc's rootfs): `/` holds exactly
/// the image's entries (plus the kubelet's service account volume under /var), the image's own
/// file is at its image path, and none of the host's files (no /etc, no /proc: the simulator
/// mounts nothing) are visible. Not as root there is no chroot, and the process sees the host.
#[tokio::test]
async fn as_root_the_process_is_chrooted_into_the_image() {
    let (store, _) = store(vec![("1.0", site_config())]).await;
    let sim = sim_with_store(&store).await;
    let client = sim.client().await.unwrap();
    create_pod(&client, pod("jailed", &format!("{REPO}:1.0"), json!({}))).await;
    let p = ready_pod(&client, "jailed").await;
    let r = report(&p).await;
    let ip = p.status.as_ref().unwrap().pod_ip.clone().unwrap();
    let addr = format!("{ip}:8080");
    assert!(
        !Path::new("/").join(IMAGE_ONLY_FILE).exists(),
        "the host has no /{IMAGE_ONLY_FILE}"
    );
    let (status, hostname) = http_get(&addr, "pod", "/file/etc/hostname").await;
    if running_as_root() {
        assert_eq!(r["root"], json!(["bin", IMAGE_ONLY_FILE, "var", "work"]));
        assert_eq!(
            http_get(&addr, "pod", &format!("/file/{IMAGE_ONLY_FILE}")).await,
            (200, IMAGE_ONLY_CONTENT.to_string())
        );
        assert_eq!(
            status, 404,
            "the host's /etc/hostname is out of reach: {hostname}"
        );
        assert_eq!(
            http_get(&addr, "pod", "/file/proc/self/status").await.0,
            404
        );
        assert_eq!(
            r["env"]["KUBECONFIG"],
            "/var/run/secrets/kubernetes.io/serviceaccount/kubeconfig"
        );
    } else {
        assert!(r["root"].as_array().unwrap().contains(&json!("proc")));
        assert!(
            r["env"]["KUBECONFIG"]
                .as_str()
                .unwrap()
                .ends_with("/rootfs/var/run/secrets/kubernetes.io/serviceaccount/kubeconfig")
        );
    }
}

/// The kubelet's service account token volume (configure-service-account docs): the pod's
/// container reads `token`, `namespace` and (the simulator's deviation for its plain-HTTP API)
/// `kubeconfig` from /var/run/secrets/kubernetes.io/serviceaccount, as the pod's user; the token
/// authenticates as system:serviceaccount:<ns>:<serviceAccountName> and RBAC decides: a Role
/// that grants `get pods` lets it read pods and not list secrets (403). The token is bound to
/// the pod: once the pod is gone the API refuses it (401).
#[tokio::test]
async fn an_image_pod_gets_its_service_account_token_volume_and_rbac_decides() {
    use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    let (store, _) = store(vec![("1.0", site_config())]).await;
    let sim = sim_with_store(&store).await;
    let client = sim.client().await.unwrap();
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    accounts
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "site"}})).unwrap(),
        )
        .await
        .unwrap();
    let roles: Api<Role> = Api::namespaced(client.clone(), "default");
    roles.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "pod-reader"}, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]})).unwrap()).await.unwrap();
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), "default");
    bindings.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "site-reads-pods"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"}, "subjects": [{"kind": "ServiceAccount", "name": "site", "namespace": "default"}]})).unwrap()).await.unwrap();
    let mut p = pod("sa", &format!("{REPO}:1.0"), json!({}));
    p["spec"]["serviceAccountName"] = json!("site");
    create_pod(&client, p).await;
    let p = ready_pod(&client, "sa").await;
    let r = report(&p).await;
    let ip = p.status.as_ref().unwrap().pod_ip.clone().unwrap();
    let addr = format!("{ip}:8080");
    let dir = "/var/run/secrets/kubernetes.io/serviceaccount";
    // The process reads its volume as the pod's user (65532 when the simulator is root).
    let kubeconfig_path = r["env"]["KUBECONFIG"].as_str().unwrap().to_string();
    let in_root = if running_as_root() {
        assert_eq!(kubeconfig_path, format!("{dir}/kubeconfig"));
        assert_eq!(r["uid"], "65532");
        dir.to_string()
    } else {
        kubeconfig_path.trim_end_matches("/kubeconfig").to_string()
    };
    let read = |name: &'static str| {
        let path = format!("/file{in_root}/{name}");
        let addr = addr.clone();
        async move {
            let (status, body) = http_get(&addr, "pod", &path).await;
            assert_eq!(status, 200, "{name}: {body}");
            body
        }
    };
    let token = read("token").await;
    assert_eq!(read("namespace").await, "default");
    let kubeconfig: Value = serde_yaml::from_str(&read("kubeconfig").await).unwrap();
    let port = sim.api_url().rsplit(':').next().unwrap().to_string();
    assert_eq!(
        kubeconfig["clusters"][0]["cluster"]["server"],
        format!("http://127.0.0.1:{port}")
    );
    assert_eq!(kubeconfig["users"][0]["user"]["token"], token.as_str());
    assert_eq!(kubeconfig["contexts"][0]["context"]["namespace"], "default");
    assert_eq!(r["env"]["KUBERNETES_SERVICE_HOST"], "127.0.0.1");
    assert_eq!(r["env"]["KUBERNETES_SERVICE_PORT"], port.as_str());
    // Readable by the pod's user, not writable by it.
    let host_dir = pod_dir(&p).join("rootfs").join(dir.trim_start_matches('/'));
    for name in ["token", "namespace", "kubeconfig"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(host_dir.join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644, "{name}");
    }

    // The token, as the site would use it through its kubeconfig.
    let as_site = sim.client_with_token(&token).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(as_site.clone(), "default");
    assert_eq!(
        pods.get("sa").await.unwrap().metadata.name.as_deref(),
        Some("sa")
    );
    let secrets: Api<Secret> = Api::namespaced(as_site.clone(), "default");
    match secrets.list(&ListParams::default()).await {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 403);
            assert!(
                e.message.contains("system:serviceaccount:default:site"),
                "{}",
                e.message
            );
        }
        other => panic!("listing secrets must be forbidden: {other:?}"),
    }

    // Bound to the pod: gone with it.
    Api::<Pod>::namespaced(client.clone(), "default")
        .delete("sa", &DeleteParams::default())
        .await
        .unwrap();
    eventually("token refused", Duration::from_secs(15), || async {
        match pods.get("sa").await {
            Err(kube::Error::Api(e)) if e.code == 401 => Some(()),
            _ => None,
        }
    })
    .await;
}

/// automountServiceAccountToken: false, on the pod or on its ServiceAccount (the pod's setting
/// wins when both are set): no token volume, no KUBECONFIG.
#[tokio::test]
async fn automount_false_mounts_no_service_account_token() {
    use k8s_openapi::api::core::v1::ServiceAccount;
    let (store, _) = store(vec![("1.0", site_config())]).await;
    let sim = sim_with_store(&store).await;
    let client = sim.client().await.unwrap();
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    accounts
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "quiet"}, "automountServiceAccountToken": false}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let mut by_pod = pod("by-pod", &format!("{REPO}:1.0"), json!({}));
    by_pod["spec"]["automountServiceAccountToken"] = json!(false);
    create_pod(&client, by_pod).await;
    let mut by_account = pod("by-account", &format!("{REPO}:1.0"), json!({}));
    by_account["spec"]["serviceAccountName"] = json!("quiet");
    create_pod(&client, by_account).await;
    let mut pod_wins = pod("pod-wins", &format!("{REPO}:1.0"), json!({}));
    pod_wins["spec"]["serviceAccountName"] = json!("quiet");
    pod_wins["spec"]["automountServiceAccountToken"] = json!(true);
    create_pod(&client, pod_wins).await;
    for name in ["by-pod", "by-account"] {
        let p = ready_pod(&client, name).await;
        let r = report(&p).await;
        assert!(r["env"].get("KUBECONFIG").is_none(), "{name}: {}", r["env"]);
        assert!(r["env"].get("KUBERNETES_SERVICE_HOST").is_none(), "{name}");
        assert!(
            !pod_dir(&p).join("rootfs/var").exists(),
            "{name}: no volume"
        );
    }
    let p = ready_pod(&client, "pod-wins").await;
    assert!(report(&p).await["env"].get("KUBECONFIG").is_some());
    assert!(
        pod_dir(&p)
            .join("rootfs/var/run/secrets/kubernetes.io/serviceaccount/token")
            .exists()
    );
}
