//! Support for the end-to-end tests: the workspace's binaries found through cargo, eventual waits,
//! the local stack (AWS emulator, cluster simulator running the site's real binary), and a
//! browser that reaches the site and the developers' endpoints through the simulated NLB.

#![allow(clippy::expect_used, clippy::panic)] // test support: a failed set-up is a failed test

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use cluster::{AwsJoin, ClusterSim, LocalCommand, RunningSim, SimConfig, TlsIdentity};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::api::networking::v1::Ingress;
use kube::Api;
use kube::api::ListParams;
use platform::verdict::{self, Verdict};
use serde_json::Value;

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

/// The deploy site's static binary for its image, as `./dev site-binary` builds it (which
/// `./dev test` runs first, so nothing is rebuilt here): release profile `site`, target
/// `x86_64-unknown-linux-musl`. Fails naming what is missing when the target or musl-gcc is not
/// installed (`./dev` installs both).
pub fn site_binary() -> PathBuf {
    const TARGET: &str = "x86_64-unknown-linux-musl";
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["build", "--profile", "site", "--target", TARGET])
        .args(["-p", "web", "--bin", "web", "--quiet"])
        .arg("--message-format=json-render-diagnostics")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("running cargo to build the site's static binary: {e}"));
    assert!(
        output.status.success(),
        "cargo could not build the site's static binary (needs `rustup target add {TARGET}` and \
         musl-gcc from Debian's musl-tools; `./dev site-binary` installs both): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "web")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo built no static `web` executable"))
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
        {
            // It holds the site's token: owner-only from the first byte.
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&kubeconfig)
                .and_then(|mut f| {
                    f.write_all(
                        sim.kubeconfig_for_token(&token)
                            .expect("kubeconfig")
                            .as_bytes(),
                    )
                })
                .expect("write the site's kubeconfig");
        }
        Self { sim, kubeconfig }
    }
}

impl SiteCluster {
    /// The simulator running the site's pods from the images in the OCI image layout `store`
    /// (the one `provisioner up --image-layout` writes): the pod gets its ServiceAccount's token
    /// from the kubelet's token volume, as on a cluster.
    pub async fn from_image_store(store: &std::path::Path) -> Self {
        Self::from_image_store_with(store, None, None).await
    }

    /// As [`Self::from_image_store`], as the control plane of `join`'s EKS cluster in the
    /// emulator (the simulator's `--tls --aws-endpoint --eks-cluster`): nodes join from the
    /// emulator's instances of that cluster instead of being fixed, EKS tokens are authenticated
    /// as EKS does, and the API is served over HTTPS at the endpoint and with the CA that the
    /// emulator's DescribeCluster then reports for the cluster (registered now, before or after
    /// the cluster is created), so clients reach it as they reach EKS.
    pub async fn from_image_store_joining(store: &std::path::Path, join: AwsJoin) -> Self {
        let (emulator, cluster) = (join.endpoint.clone(), join.cluster_name.clone());
        let tls = TlsIdentity::generate().expect("the cluster's certificates");
        let site = Self::from_image_store_with(store, Some(join), Some(tls)).await;
        site.sim
            .announce_to_emulator(&emulator, &cluster)
            .await
            .expect("the emulator takes the cluster's endpoint");
        site
    }

    async fn from_image_store_with(
        store: &std::path::Path,
        aws: Option<AwsJoin>,
        tls: Option<TlsIdentity>,
    ) -> Self {
        let sim = ClusterSim::start(SimConfig {
            readiness_delay: Duration::from_millis(100),
            admin_token: Some(format!("test-{}", rand_suffix())),
            image_store: Some(store.to_path_buf()),
            aws,
            tls,
            ..SimConfig::default()
        })
        .await
        .expect("simulator");
        Self {
            sim,
            kubeconfig: PathBuf::new(),
        }
    }
}

impl Drop for SiteCluster {
    fn drop(&mut self) {
        if !self.kubeconfig.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.kubeconfig);
        }
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// The ingress controller's latest verdict on Ingress `namespace/name` (NIC's Event for its current
/// uid), or `None` while it has not judged it.
pub async fn route_verdict(kube: &kube::Client, namespace: &str, name: &str) -> Option<Verdict> {
    let ingress = Api::<Ingress>::namespaced(kube.clone(), namespace)
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("Ingress {namespace}/{name}: {e}"));
    let uid = ingress.metadata.uid.expect("an Ingress has a uid");
    let events = Api::<Event>::namespaced(kube.clone(), namespace)
        .list(&ListParams::default().fields("involvedObject.kind=Ingress"))
        .await
        .unwrap_or_else(|e| panic!("Events in {namespace}: {e}"))
        .items;
    verdict::latest(&events, &uid).map(Verdict::of)
}

/// One HTTP answer, read whole.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

impl Reply {
    /// The body as JSON; fails the test when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }
}

/// A browser pointed at a public host: every request goes to the simulated NLB with that `Host`
/// (as a browser would send it for `http://<host>/...`), keeping cookies and the site's CSRF token
/// between requests.
pub struct Browser {
    ingress: SocketAddr,
    host: String,
    client: Client<HttpConnector, Full<Bytes>>,
    cookies: Mutex<BTreeMap<String, String>>,
    csrf: Mutex<Option<String>>,
}

impl Browser {
    /// `host` is the Host header: `host[:port]` as in the public URL.
    pub fn new(ingress: SocketAddr, host: impl Into<String>) -> Self {
        Self {
            ingress,
            host: host.into(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            cookies: Mutex::new(BTreeMap::new()),
            csrf: Mutex::new(None),
        }
    }

    /// Sends one request; `headers` come on top of Host and the cookies.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Reply {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.ingress))
            .header(http::header::HOST, &self.host);
        let cookies = self.cookie_header();
        if !cookies.is_empty() {
            request = request.header(http::header::COOKIE, cookies);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .expect("a valid request");
        let response = self
            .client
            .request(request)
            .await
            .unwrap_or_else(|e| panic!("{method} {path} through the load balancer: {e}"));
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        for cookie in response.headers().get_all(http::header::SET_COOKIE) {
            self.keep_cookie(cookie.to_str().unwrap_or_default());
        }
        let body = response
            .into_body()
            .collect()
            .await
            .unwrap_or_else(|e| panic!("reading the answer to {method} {path}: {e}"))
            .to_bytes();
        Reply {
            status,
            location,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.request("GET", path, &[], Vec::new()).await
    }

    /// Signs in through the JSON API and keeps the session cookie and the CSRF token.
    pub async fn sign_in(&self, username: &str, password: &str) -> Reply {
        let body = serde_json::json!({"username": username, "password": password});
        let reply = self
            .request(
                "POST",
                "/api/v1/session",
                &[("content-type", "application/json")],
                body.to_string().into_bytes(),
            )
            .await;
        if reply.status == 200 {
            let token = reply.json()["csrfToken"].as_str().map(str::to_owned);
            *self.csrf.lock().expect("lock") = token;
        }
        reply
    }

    /// A JSON API call with the CSRF header, as the site's own pages make it.
    pub async fn send_json(&self, method: &str, path: &str, body: &Value) -> Reply {
        let csrf = self.csrf_token();
        let headers = [
            ("content-type", "application/json"),
            ("x-csrf-token", csrf.as_str()),
        ];
        self.request(method, path, &headers, body.to_string().into_bytes())
            .await
    }

    /// A form post with the CSRF field, as a page's form sends it.
    pub async fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> Reply {
        let csrf = self.csrf_token();
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .append_pair("csrf", &csrf)
            .finish();
        let headers = [("content-type", "application/x-www-form-urlencoded")];
        self.request("POST", path, &headers, body.into_bytes())
            .await
    }

    fn csrf_token(&self) -> String {
        self.csrf
            .lock()
            .expect("lock")
            .clone()
            .expect("sign in first: the CSRF token comes with the session")
    }

    fn cookie_header(&self) -> String {
        let cookies = self.cookies.lock().expect("lock");
        let pairs: Vec<String> = cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
        pairs.join("; ")
    }

    fn keep_cookie(&self, set_cookie: &str) {
        let pair = set_cookie.split(';').next().unwrap_or_default();
        let Some((name, value)) = pair.split_once('=') else {
            return;
        };
        let expired = set_cookie
            .split(';')
            .any(|a| a.trim().eq_ignore_ascii_case("max-age=0"));
        let mut cookies = self.cookies.lock().expect("lock");
        if expired || value.is_empty() {
            cookies.remove(name.trim());
        } else {
            cookies.insert(name.trim().to_owned(), value.trim().to_owned());
        }
    }
}
