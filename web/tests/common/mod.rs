//! Test harness: a simulated cluster, the site's router over it, and a cookie-keeping browser.
#![allow(dead_code)]
// Test helpers: a failed set-up step should panic with its message, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use cluster::{ClusterSim, RunningSim, SimConfig};
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::{Api, Resource};
use platform::manifests::{SiteValues, default_site_image, deploy_site};
use platform::names::{
    HOST_INGRESS, INGRESS_CLASS, INITIAL_ADMIN_SECRET, PLATFORM_NAMESPACES, SITE, SYSTEM_NAMESPACE,
};
use serde::de::DeserializeOwned;
use tower::ServiceExt;
use web::config::{LoginLimit, PasswordCost, PublicUrl};
use web::{AppState, ClusterNames, Config};

/// The public host of most tests (the public URL is `http://lb.test`); requests through the
/// simulated load balancer carry it as their Host header.
pub const HOST: &str = "lb.test";
/// Namespace and name of the master Ingress the platform installs for the public host.
pub const MASTER_INGRESS: (&str, &str) = (SYSTEM_NAMESPACE, HOST_INGRESS);
pub const PASSWORD: &str = "correct horse battery";

pub struct Site {
    pub sim: RunningSim,
    pub state: AppState,
    /// The cluster administrator: the tests' fixtures and their look at what the site did.
    pub admin: kube::Client,
    /// The site's own identity (its ServiceAccount under the installed manifest's RBAC), which
    /// `state` talks to the cluster with.
    pub client: kube::Client,
    /// What the API server refused the site's identity.
    pub refusals: Refusals,
}

/// The names the platform's manifest passes the site (from `platform::names`, as installed).
pub fn names() -> ClusterNames {
    ClusterNames {
        namespace: SYSTEM_NAMESPACE.into(),
        ingress_class: INGRESS_CLASS.into(),
        platform_namespaces: PLATFORM_NAMESPACES.map(String::from).to_vec(),
        console_upstream: platform::names::console_upstream(),
        initial_admin_secret: INITIAL_ADMIN_SECRET.into(),
    }
}

/// `http://lb.test`: links in assertions read like the load balancer's address.
pub fn public_url() -> PublicUrl {
    PublicUrl::parse(&format!("http://{HOST}")).unwrap()
}

pub fn config() -> Config {
    let mut config = Config::new(public_url(), names());
    config.secure_cookies = false;
    // Cheap hashes keep debug-build tests fast; verification reads the cost from the hash.
    config.password_cost = PasswordCost {
        memory_kib: 64,
        iterations: 1,
        lanes: 1,
    };
    config.login_limit = LoginLimit {
        max_failures: 3,
        window: Duration::from_secs(600),
    };
    config
}

pub async fn site() -> Site {
    site_with(config()).await
}

/// Starts the simulator and the site with that configuration.
pub async fn site_with(config: Config) -> Site {
    start(config, false).await
}

/// A site whose public URL is the simulated load balancer itself,
/// `http://kdeploy.localhost:<ingress port>`, as `./dev up` sets it: its links open in a browser
/// (Chromium and curl resolve `*.localhost` to the loopback address).
pub async fn site_on_the_load_balancer() -> Site {
    start(config(), true).await
}

/// The simulator with the platform's fixtures (made as the administrator), and the site under
/// its own identity: every call it makes is one its installed role must allow.
async fn start(config: Config, on_the_load_balancer: bool) -> Site {
    start_on(
        config,
        on_the_load_balancer,
        SimConfig {
            readiness_delay: Duration::from_millis(200),
            ..SimConfig::default()
        },
    )
    .await
}

/// The site over a simulator configured as `sim_config` says (local commands for images, say).
pub async fn site_on_sim(sim_config: SimConfig) -> Site {
    start_on(config(), false, sim_config).await
}

async fn start_on(mut config: Config, on_the_load_balancer: bool, sim_config: SimConfig) -> Site {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
    let sim = ClusterSim::start(sim_config)
        .await
        .expect("simulator starts");
    // The console goes through the simulated ingress, as it would through the real one.
    config.console.upstream = sim.ingress_url();
    if on_the_load_balancer {
        let port = sim.ingress_addr().port();
        config.public_url = PublicUrl::parse(&format!("http://kdeploy.localhost:{port}")).unwrap();
    }
    let admin = sim.client().await.unwrap();
    system_namespace(&admin, &config.system_namespace).await;
    master_ingress(&admin, config.public_url.host(), &config.ingress_class).await;
    let refusals = Refusals::default();
    let client = site_identity(&sim, &admin, &config, refusals.clone()).await;
    let state = AppState::connect(client.clone(), config).await.unwrap();
    Site {
        sim,
        state,
        admin,
        client,
        refusals,
    }
}

/// The kinds of the site's identity in its manifest.
const RBAC_KINDS: [&str; 5] = [
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "ClusterRole",
    "ClusterRoleBinding",
];

/// The site's identity as the platform installs it: the ServiceAccount, Role, ClusterRole and
/// bindings of the rendered `manifests/deploy-site.yaml`, applied by the administrator (as
/// `platform::install` does). Returns a token of that ServiceAccount.
pub async fn install_site_identity(
    sim: &RunningSim,
    admin: &kube::Client,
    config: &Config,
) -> String {
    assert_eq!(
        config.system_namespace, SYSTEM_NAMESPACE,
        "the installed Role and ServiceAccount live in the platform's system namespace"
    );
    let values = SiteValues {
        public_url: platform::PublicUrl::parse(&config.public_url.base()).unwrap(),
        image: default_site_image(),
    };
    let rbac: Vec<DynamicObject> = deploy_site(&values)
        .unwrap()
        .into_iter()
        .filter(|o| {
            o.types
                .as_ref()
                .is_some_and(|t| RBAC_KINDS.contains(&t.kind.as_str()))
        })
        .collect();
    for kind in RBAC_KINDS {
        assert!(
            rbac.iter()
                .any(|o| o.types.as_ref().is_some_and(|t| t.kind == kind)),
            "the site's manifest has no {kind}"
        );
    }
    platform::manifests::apply(admin, &rbac).await.unwrap();
    sim.service_account_token(SYSTEM_NAMESPACE, SITE)
}

/// A client of the site's installed identity (see [`install_site_identity`]). The simulator's
/// RBAC refuses (403) any call the site's role does not allow, which fails the test that made it
/// (the refusal is noted in `refusals` even when the site copes with it).
pub async fn site_identity(
    sim: &RunningSim,
    admin: &kube::Client,
    config: &Config,
    refusals: Refusals,
) -> kube::Client {
    let token = install_site_identity(sim, admin, config).await;
    let kubeconfig: kube::config::Kubeconfig =
        serde_yaml::from_str(&sim.kubeconfig_for_token(&token).unwrap()).unwrap();
    let options = kube::config::KubeConfigOptions::default();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .unwrap();
    watched_client(config, refusals)
}

/// A client for `config` that notes in `refusals` each call it makes and each the API server
/// refuses (403).
pub fn watched_client(config: kube::Config, refusals: Refusals) -> kube::Client {
    let layer = tower::layer::layer_fn(move |inner| Watched {
        inner,
        refusals: refusals.clone(),
    });
    kube::client::ClientBuilder::try_from(config)
        .unwrap()
        .with_layer(&layer)
        .build()
}

/// Every call of the site to the API server, and those it refused as forbidden (`METHOD path?query`), however the
/// site handled the refusal: a refusal the site turns into a warning or a fallback still fails
/// the test (see `Site`'s `Drop`).
#[derive(Clone, Default)]
pub struct Refusals {
    refused: Arc<Mutex<Vec<String>>>,
    /// Every call the site made, refused or not, in order (`METHOD path?query`).
    calls: Arc<Mutex<Vec<String>>>,
}

impl Refusals {
    /// The refusals so far, forgotten (a test that provokes one on purpose takes it).
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.refused.lock().unwrap())
    }

    /// How many calls the site has made so far.
    pub fn calls_made(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    /// The calls the site made after the first `from`.
    pub fn calls_since(&self, from: usize) -> Vec<String> {
        self.calls.lock().unwrap()[from..].to_vec()
    }
}

/// The site's client service, noting each call it makes and each 403 it gets.
#[derive(Clone)]
struct Watched<S> {
    inner: S,
    refusals: Refusals,
}

impl<S, B, R> tower::Service<http::Request<R>> for Watched<S>
where
    S: tower::Service<http::Request<R>, Response = http::Response<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<R>) -> Self::Future {
        let call = format!("{} {}", request.method(), request.uri());
        let refusals = self.refusals.clone();
        refusals.calls.lock().unwrap().push(call.clone());
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            if response.status() == StatusCode::FORBIDDEN {
                refusals.refused.lock().unwrap().push(call);
            }
            Ok(response)
        })
    }
}

impl Drop for Site {
    /// A test whose site made a call its installed role does not allow fails, even when the
    /// site coped with the refusal.
    fn drop(&mut self) {
        let refused = self.refusals.take();
        if !std::thread::panicking() {
            assert!(
                refused.is_empty(),
                "the site made calls its role in manifests/deploy-site.yaml does not allow: {refused:#?}"
            );
        }
    }
}

/// The master Ingress the platform installs for the public host (`kdeploy-host` in
/// `manifests/deploy-site.yaml`), spelled here as the test's own fixture: NIC serves a
/// repository's minion only under a master for its host.
pub fn master_ingress_object(host: &str, ingress_class: &str) -> Ingress {
    let (namespace, name) = MASTER_INGRESS;
    serde_json::from_value(serde_json::json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/name": "kdeploy-web",
                "app.kubernetes.io/part-of": "kdeploy",
                "app.kubernetes.io/managed-by": "kdeploy"
            },
            "annotations": {"nginx.org/mergeable-ingress-type": "master"}
        },
        "spec": {"ingressClassName": ingress_class, "rules": [{"host": host}]}
    }))
    .unwrap()
}

/// Applies the platform's master Ingress, as `platform::install` does.
pub async fn master_ingress(client: &kube::Client, host: &str, ingress_class: &str) {
    let (namespace, name) = MASTER_INGRESS;
    Api::<Ingress>::namespaced(client.clone(), namespace)
        .patch(
            name,
            &PatchParams::apply("kdeploy-platform").force(),
            &Patch::Apply(master_ingress_object(host, ingress_class)),
        )
        .await
        .unwrap();
}

pub async fn system_namespace(client: &kube::Client, name: &str) {
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}
    }))
    .unwrap();
    Api::<Namespace>::all(client.clone())
        .patch(name, &PatchParams::apply("test").force(), &Patch::Apply(ns))
        .await
        .unwrap();
}

impl Site {
    pub fn app(&self) -> Router {
        web::app(self.state.clone())
    }

    pub fn browser(&self) -> Browser {
        Browser {
            app: self.app(),
            cookies: HashMap::new(),
            csrf: None,
        }
    }

    /// An account with the test password, not signed in anywhere.
    pub async fn account(&self, name: &str, admin: bool) {
        self.state
            .accounts
            .create_user(name, PASSWORD, admin)
            .await
            .unwrap();
    }

    /// A developer's account, signed in.
    pub async fn user(&self, name: &str) -> Browser {
        self.account(name, false).await;
        let mut b = self.browser();
        let r = b.sign_in(name, PASSWORD).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
        b
    }

    /// The objects of one kind in a namespace, as the cluster administrator sees them.
    pub fn objects<K>(&self, namespace: &str) -> Api<K>
    where
        K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.admin.clone(), namespace)
    }

    /// Scales a Deployment as `kubectl scale deployment <name> --replicas <n>` would: the
    /// administrator's merge patch, straight to the API server, not through the site.
    pub async fn scale_with_kubectl(&self, namespace: &str, name: &str, replicas: u32) {
        self.objects::<k8s_openapi::api::apps::v1::Deployment>(namespace)
            .patch(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(serde_json::json!({"spec": {"replicas": replicas}})),
            )
            .await
            .unwrap_or_else(|e| panic!("scaling {namespace}/{name} to {replicas}: {e}"));
    }

    /// Whether an object of that kind and name exists in the namespace.
    pub async fn exists<K>(&self, namespace: &str, name: &str) -> bool
    where
        K: Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        self.objects::<K>(namespace)
            .get_opt(name)
            .await
            .unwrap()
            .is_some()
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    /// Asserts a JSON answer that refuses the input and names the field at fault.
    pub fn assert_refused(&self, field: &str) {
        assert_eq!(
            self.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            self.body
        );
        assert_eq!(self.json()["field"], field, "{}", self.body);
    }

    /// The `message` of a JSON error body.
    pub fn message(&self) -> String {
        match &self.json()["message"] {
            serde_json::Value::String(m) => m.clone(),
            _ => panic!("no message: {}", self.body),
        }
    }
}

/// Keeps cookies between requests and the CSRF token pages hand out, like a browser would.
#[derive(Clone)]
pub struct Browser {
    pub app: Router,
    pub cookies: HashMap<String, String>,
    pub csrf: Option<String>,
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Browser {
    pub async fn send(&mut self, request: Request<Body>) -> Reply {
        let mut request = request;
        if !self.cookies.is_empty() {
            let cookie = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            request
                .headers_mut()
                .insert(header::COOKIE, cookie.parse().unwrap());
        }
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        for set in headers.get_all(header::SET_COOKIE) {
            let set = set.to_str().unwrap();
            let pair = set.split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            if v.is_empty() || set.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_string(), v.to_string());
            }
        }
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8_lossy(&bytes).to_string();
        if let Some(token) = body
            .split("data-csrf=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
        {
            self.csrf = Some(token.to_string());
        }
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&mut self, path: &str) -> Reply {
        self.send(Request::get(path).body(Body::empty()).unwrap())
            .await
    }

    /// Posts a form the way the page would, with the CSRF token it was given.
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Reply {
        if self.csrf.is_none() {
            self.get("/login").await;
        }
        let token = self.csrf.clone().unwrap_or_default();
        let mut all: Vec<(&str, &str)> = vec![("csrf", token.as_str())];
        all.extend_from_slice(fields);
        self.post_raw(path, &all).await
    }

    /// Posts a form and expects the redirect that follows a success.
    pub async fn submit(&mut self, path: &str, fields: &[(&str, &str)]) -> Reply {
        let r = self.post(path, fields).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{path}: {}", r.body);
        r
    }

    pub async fn post_raw(&mut self, path: &str, fields: &[(&str, &str)]) -> Reply {
        let body = fields
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.send(
            Request::post(path)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(body))
                .unwrap(),
        )
        .await
    }

    pub async fn api(
        &mut self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Reply {
        if self.csrf.is_none() {
            self.get("/login").await;
        }
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("x-csrf-token", self.csrf.clone().unwrap_or_default());
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let body = body.map_or(Body::empty(), |b| Body::from(b.to_string()));
        self.send(request.body(body).unwrap()).await
    }

    /// Calls the JSON API with a body.
    pub async fn call(&mut self, method: Method, path: &str, body: serde_json::Value) -> Reply {
        self.api(method, path, Some(body)).await
    }

    /// Posts a JSON body to the API.
    pub async fn post_json(&mut self, path: &str, body: serde_json::Value) -> Reply {
        self.call(Method::POST, path, body).await
    }

    /// The JSON the API answers to a GET.
    pub async fn get_json(&mut self, path: &str) -> serde_json::Value {
        self.api(Method::GET, path, None).await.json()
    }

    /// Polls a GET of the JSON API until `done` holds for its answer, and returns that answer.
    pub async fn poll_json(
        &self,
        what: &str,
        path: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let done = &done;
        eventually(what, || {
            let mut b = self.clone();
            async move { Some(b.get_json(path).await).filter(done) }
        })
        .await
    }

    pub async fn sign_in(&mut self, username: &str, password: &str) -> Reply {
        self.get("/login").await;
        self.post("/login", &[("username", username), ("password", password)])
            .await
    }

    pub async fn create(&mut self, name: &str, image: &str, port: &str, replicas: &str) -> Reply {
        self.post(
            "/repos",
            &[
                ("name", name),
                ("image", image),
                ("port", port),
                ("replicas", replicas),
            ],
        )
        .await
    }

    /// Creates a repository through the form and expects the redirect to its page.
    pub async fn create_ok(&mut self, name: &str, image: &str, port: &str, replicas: &str) {
        let r = self.create(name, image, port, replicas).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    }
}

/// Polls `check` until it returns Some, for up to 20 s (the shared end-to-end helper).
pub async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    tests::eventually(what, Duration::from_secs(20), check).await
}

/// One plain HTTP/1.1 request to the simulated load balancer, for the public host `lb.test`.
pub async fn through_ingress(sim: &RunningSim, path: &str) -> (u16, String) {
    through_ingress_as(sim, HOST, path).await
}

/// What requests through the ingress saw across a rollout.
pub struct LoadAcross {
    pub ok: usize,
    pub failed: Vec<String>,
    /// The pods (the simulator's echo names its pod) that answered.
    pub answered: std::collections::BTreeSet<String>,
}

/// Sends requests to `path` through the ingress across `rollout`, whatever the machine's speed:
/// `rollout` starts once a request has been answered, and the load stops only once `rollout` is
/// over and a pod not in `before` has answered. So the traffic spans the change from the old pods
/// to the new ones; the caller asserts on failures and on who answered.
pub async fn load_across(
    sim: &RunningSim,
    path: &str,
    before: &std::collections::BTreeSet<String>,
    rollout: impl std::future::Future<Output = ()>,
) -> LoadAcross {
    let (rolled, rolled_out) = tokio::sync::watch::channel(false);
    let (answering, mut first_answer) = tokio::sync::watch::channel(false);
    let load = async move {
        let mut seen = LoadAcross {
            ok: 0,
            failed: Vec::new(),
            answered: std::collections::BTreeSet::new(),
        };
        // Bounded: at most 20,000 requests (over three minutes of pacing).
        for _ in 0..20_000 {
            if *rolled_out.borrow() && !seen.answered.is_subset(before) {
                break;
            }
            let (status, body) = through_ingress(sim, path).await;
            if status == 200 {
                seen.ok += 1;
                let echo: serde_json::Value = serde_json::from_str(&body).unwrap();
                seen.answered
                    .insert(echo["pod"].as_str().unwrap().to_owned());
                answering.send_replace(true);
            } else {
                seen.failed.push(format!("{status} {body}"));
            }
            // Pacing of the load, not a wait: the loop ends when the rollout is over.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        seen
    };
    let change = async {
        first_answer.wait_for(|a| *a).await.unwrap();
        rollout.await;
        rolled.send_replace(true);
    };
    tokio::join!(load, change).0
}

impl LoadAcross {
    /// No request failed, and old pods and then new ones answered.
    pub fn assert_served_throughout(&self, before: &std::collections::BTreeSet<String>) {
        assert!(
            self.failed.is_empty(),
            "{} of {} requests failed: {:?}",
            self.failed.len(),
            self.ok + self.failed.len(),
            self.failed
        );
        assert!(
            !self.answered.is_disjoint(before) && !self.answered.is_subset(before),
            "the load was answered by old pods {before:?} and then new ones: {:?}",
            self.answered
        );
    }
}

/// One plain HTTP/1.1 request to the simulated load balancer with that Host header.
pub async fn through_ingress_as(sim: &RunningSim, host: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(sim.ingress_addr())
        .await
        .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

impl Site {
    /// Waits until `path` answers 200 through the load balancer at the site's public URL, and
    /// returns the body. A repository is Ready once its pods are and the controller accepted its
    /// route, but NGINX learns of new endpoints a moment later (the simulator's endpoint
    /// propagation delay, as on a cluster), so a test that calls it right away waits for that.
    pub async fn reachable(&self, path: &str) -> String {
        let host = self.state.config.public_url.authority();
        eventually(
            &format!("{path} to answer through the load balancer"),
            || {
                let host = host.clone();
                async move {
                    let (status, body) = through_ingress_as(&self.sim, &host, path).await;
                    (status == 200).then_some(body)
                }
            },
        )
        .await
    }

    /// Creates a repository, waits until it is Ready and its endpoint answers, and returns its JSON.
    pub async fn deploy_ready(&self, b: &mut Browser, name: &str) -> serde_json::Value {
        b.create_ok(name, "nginx", "80", "1").await;
        let j = b
            .poll_json(
                "the repository to be ready",
                &format!("/api/v1/repos/{name}"),
                |j| j["state"] == "Ready",
            )
            .await;
        self.reachable(&format!("/{}/{name}/", j["namespace"].as_str().unwrap()))
            .await;
        j
    }
}
