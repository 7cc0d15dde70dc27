//! Latency and memory of the deploy site against an in-process cluster simulator.
//!
//! `cargo run -p web --example site_bench` (dev profile). Prints one table: list page p50/p99 with
//! 200 repositories, deploy latency next to `kubectl apply` of the same three objects, and the
//! resident memory of this process (site + simulator) at idle and after the load.
// Printing the table is the point of this program.
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cluster::{ClusterSim, SimConfig};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use web::config::{PasswordCost, PublicUrl};
use web::repositories::objects::{self, PublicRoute};
use web::repositories::validation::RepositorySpec;
use web::{AppState, ClusterNames, Config};

const HOST: &str = "lb.bench";
const REPOSITORIES: usize = 200;
const LIST_REQUESTS: usize = 200;
const DEPLOYS: usize = 20;

type Http = Client<HttpConnector, Full<Bytes>>;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

struct Session {
    http: Http,
    base: String,
    cookie: String,
    csrf: String,
}

impl Session {
    async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> anyhow::Result<(u16, Bytes)> {
        let mut b = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .header("x-csrf-token", &self.csrf);
        if body.is_some() {
            b = b.header("content-type", "application/json");
        }
        let r = self
            .http
            .request(b.body(Full::new(Bytes::from(body.unwrap_or_default())))?)
            .await?;
        let status = r.status().as_u16();
        Ok((status, r.into_body().collect().await?.to_bytes()))
    }
}

async fn sign_in(http: &Http, base: &str, user: &str, password: &str) -> anyhow::Result<Session> {
    let body = serde_json::json!({"username": user, "password": password}).to_string();
    let r = http
        .request(
            http::Request::post(format!("{base}/api/v1/session"))
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))?,
        )
        .await?;
    let cookie = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_string))
        .collect::<Vec<_>>()
        .join("; ");
    let status = r.status();
    let json: serde_json::Value =
        serde_json::from_slice(&r.into_body().collect().await?.to_bytes())?;
    if !status.is_success() {
        bail!("sign-in failed: {status} {json}");
    }
    Ok(Session {
        http: http.clone(),
        base: base.to_string(),
        cookie,
        csrf: json["csrfToken"].as_str().unwrap_or_default().to_string(),
    })
}

fn spec(name: &str) -> RepositorySpec {
    RepositorySpec {
        name: name.to_string(),
        image: "nginx:latest".into(),
        port: 80,
        replicas: 1,
        env: Default::default(),
    }
}

/// The same three objects the site creates, as one YAML stream for kubectl.
fn manifest(namespace: &str, name: &str) -> anyhow::Result<String> {
    let s = spec(name);
    Ok([
        serde_yaml::to_string(&objects::deployment(namespace, &s, None))?,
        serde_yaml::to_string(&objects::service(namespace, &s, None))?,
        serde_yaml::to_string(&objects::ingress(
            namespace,
            &s,
            PublicRoute {
                host: HOST,
                ingress_class: "nginx",
            },
            None,
        )?)?,
    ]
    .join("---\n"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rss_start = rss_kib();
    let sim = ClusterSim::start(SimConfig {
        readiness_delay: Duration::from_millis(50),
        anonymous_is_admin: true,
        ..SimConfig::default()
    })
    .await?;
    let admin = sim.client().await?;
    let names = ClusterNames {
        namespace: "kdeploy-system".into(),
        ingress_class: "nginx".into(),
        platform_namespaces: vec!["kdeploy-system".into(), "nginx-ingress".into()],
        console_upstream: sim.ingress_url(),
        initial_admin_secret: "kdeploy-initial-admin".into(),
    };
    let mut config = Config::new(PublicUrl::parse(&format!("http://{HOST}"))?, names);
    config.secure_cookies = false;
    config.quota = None;
    config.password_cost = PasswordCost {
        memory_kib: 64,
        iterations: 1,
        lanes: 1,
    };
    let ns: k8s_openapi::api::core::v1::Namespace = serde_json::from_value(
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": config.system_namespace}}),
    )?;
    kube::Api::<k8s_openapi::api::core::v1::Namespace>::all(admin.clone())
        .patch(
            &config.system_namespace.clone(),
            &kube::api::PatchParams::apply("bench").force(),
            &kube::api::Patch::Apply(ns),
        )
        .await?;
    let state = AppState::connect(admin.clone(), config).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let app = web::app(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let password = "bench password 123";
    state.accounts.create_user("bench", password, false).await?;
    let http: Http = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let session = sign_in(&http, &base, "bench", password).await?;
    let (status, _) = session.request("GET", "/repos", None).await?;
    if status != 200 {
        bail!("list page answered {status}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_idle = rss_kib();

    // 200 repositories, created the way the site creates them.
    let started = Instant::now();
    for i in 0..REPOSITORIES {
        state
            .repositories
            .create_repository("bench", &spec(&format!("repo-{i:03}")))
            .await?;
    }
    let setup = started.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut list = Vec::with_capacity(LIST_REQUESTS);
    let mut list_bytes = 0;
    for _ in 0..LIST_REQUESTS {
        let t = Instant::now();
        let (status, body) = session.request("GET", "/repos", None).await?;
        list.push(t.elapsed());
        if status != 200 {
            bail!("list page answered {status}");
        }
        list_bytes = body.len();
    }
    list.sort();
    // The same data as JSON: the difference to the page is the rendering.
    let mut api_list = Vec::with_capacity(LIST_REQUESTS);
    for _ in 0..LIST_REQUESTS {
        let t = Instant::now();
        let (status, _) = session.request("GET", "/api/v1/repos", None).await?;
        api_list.push(t.elapsed());
        if status != 200 {
            bail!("list API answered {status}");
        }
    }
    api_list.sort();

    let mut deploys = Vec::with_capacity(DEPLOYS);
    for i in 0..DEPLOYS {
        let body = serde_json::json!({"name": format!("site-{i:02}"), "image": "nginx", "port": 80, "replicas": 1});
        let t = Instant::now();
        let (status, body) = session
            .request("POST", "/api/v1/repos", Some(body.to_string()))
            .await?;
        deploys.push(t.elapsed());
        if status != 201 {
            bail!(
                "deploy answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
    }
    deploys.sort();

    let dir = std::env::temp_dir().join(format!("kdeploy-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, sim.kubeconfig_yaml()?)?;
    let mut kubectl = Vec::with_capacity(DEPLOYS);
    for i in 0..DEPLOYS {
        let file = dir.join(format!("kubectl-{i:02}.yaml"));
        std::fs::write(&file, manifest("bench", &format!("cli-{i:02}"))?)?;
        let t = Instant::now();
        let out = tokio::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["apply", "--validate=false", "-f"])
            .arg(&file)
            .env_remove("KUBECONFIG")
            .kill_on_drop(true)
            .output()
            .await
            .context("kubectl runs")?;
        kubectl.push(t.elapsed());
        if !out.status.success() {
            bail!(
                "kubectl apply failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    kubectl.sort();
    let _ = std::fs::remove_dir_all(&dir);
    let rss_after = rss_kib();

    println!("kdeploy web benchmark (dev profile, in-process cluster-sim, 127.0.0.1)");
    println!(
        "{:<52} {:>9} {:>9} {:>9}",
        "measurement", "p50 ms", "p99 ms", "max ms"
    );
    println!(
        "{:<52} {:>9} {:>9} {:>9}",
        format!(
            "GET /repos, {REPOSITORIES} repos ({LIST_REQUESTS} req, {} KiB page)",
            list_bytes / 1024
        ),
        ms(percentile(&list, 50.0)),
        ms(percentile(&list, 99.0)),
        ms(percentile(&list, 100.0))
    );
    println!(
        "{:<52} {:>9} {:>9} {:>9}",
        format!("GET /api/v1/repos, same data as JSON ({LIST_REQUESTS} req)"),
        ms(percentile(&api_list, 50.0)),
        ms(percentile(&api_list, 99.0)),
        ms(percentile(&api_list, 100.0))
    );
    println!(
        "{:<52} {:>9} {:>9} {:>9}",
        format!("POST /api/v1/repos (deploy, {DEPLOYS} req)"),
        ms(percentile(&deploys, 50.0)),
        ms(percentile(&deploys, 99.0)),
        ms(percentile(&deploys, 100.0))
    );
    println!(
        "{:<52} {:>9} {:>9} {:>9}",
        format!("kubectl apply of the same 3 objects ({DEPLOYS} runs)"),
        ms(percentile(&kubectl, 50.0)),
        ms(percentile(&kubectl, 99.0)),
        ms(percentile(&kubectl, 100.0))
    );
    println!(
        "{:<52} {:>9}",
        "setup: 200 repositories via Cluster (s)",
        format!("{:.1}", setup.as_secs_f64())
    );
    println!("{:<52} {:>9}", "VmRSS at start (KiB)", rss_start);
    println!(
        "{:<52} {:>9}",
        "VmRSS idle, site + simulator running (KiB)", rss_idle
    );
    println!("{:<52} {:>9}", "VmRSS after the load (KiB)", rss_after);
    println!(
        "(VmRSS is this process: the site and the simulator together; the simulator keeps every object in memory.)"
    );
    Ok(())
}
