//! The deploy site against the cluster simulator, each its own release process (issue 15).
//!
//! `just bench` builds both release binaries (`cargo build --release -p web -p cluster`) and
//! runs this program, which starts `cluster-sim` and `web serve` from that build on 127.0.0.1,
//! drives the site over HTTP as browsers and API clients do, and prints one table:
//! - the list page and its JSON, p50/p99, with 200 repositories in the user's namespace;
//! - a deploy (`POST /api/v1/repos`) next to `kubectl apply -f` of the same three objects;
//! - the site's VmRSS (from `/proc/<pid>/status`) idle and after 1,000 users x 10 repositories;
//! - the list p99 at 10, 100, 1,000 repositories in one namespace, and at 10, 100, 1,000 user
//!   namespaces in the cluster (the measured user's list stays 10 repositories);
//! - how long a change made with kubectl takes to show in the site's JSON.
//!
//! Every user and repository is created through the site's own API (sign-in, then
//! `POST /api/v1/repos`), so the site's mirror holds them as it would in production. The
//! simulator runs three fixed nodes of 17 pods each: beyond those, the repositories' pods stay
//! Pending (Unschedulable), which the mirror holds like any other pod.
//!
//! Settings (environment): BENCH_USERS (default 1000), BENCH_REPOS_PER_USER (10),
//! BENCH_WIDE_REPOS (1000: the one-namespace series), BENCH_CONCURRENCY (16 users at a time),
//! BENCH_BIN_DIR (where `web` and `cluster-sim` are; default the release build next to this
//! program's target directory), BENCH_SITE_BINARY (another `web`, e.g. the musl image binary).
// Printing the table is the point of this program; its set-up failing is a bench failure.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::process::{Child, Command};
use web::config::{PasswordCost, PublicUrl};
use web::repositories::objects::{self, PublicRoute};
use web::repositories::validation::RepositorySpec;
use web::{ClusterNames, Config};

const HOST: &str = "kdeploy.localhost";
const SYSTEM_NAMESPACE: &str = "kdeploy-system";
const PASSWORD: &str = "bench password 123";
const LIST_REQUESTS: usize = 200;
const SERIES_REQUESTS: usize = 100;
const DEPLOYS: usize = 20;
const CHANGES: usize = 10;
/// The image of every bench repository: a simulated container (nothing is pulled or run).
const IMAGE: &str = "nginx:1.27";

type Http = Client<HttpConnector, Full<Bytes>>;

fn setting(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name}={v:?} is not a whole number")),
        Err(_) => Ok(default),
    }
}

/// A process's resident memory, peak resident memory, and the resident memory that is its own
/// (anonymous: heap and stacks, not the binary's mapped pages) in KiB, from `/proc/<pid>/status`.
fn memory_kib(pid: u32) -> anyhow::Result<(u64, u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?, field("RssAnon:")?))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Latencies of one measured request, sorted.
struct Timings(Vec<Duration>);

impl Timings {
    fn p(&self, p: f64) -> Duration {
        percentile(&self.0, p)
    }
}

#[derive(Clone)]
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

    /// `GET path` `n` times; every answer must be 200.
    async fn time_gets(&self, path: &str, n: usize) -> anyhow::Result<(Timings, usize)> {
        let mut times = Vec::with_capacity(n);
        let mut bytes = 0;
        for _ in 0..n {
            let t = Instant::now();
            let (status, body) = self.request("GET", path, None).await?;
            times.push(t.elapsed());
            if status != 200 {
                bail!(
                    "GET {path} answered {status}: {}",
                    String::from_utf8_lossy(&body)
                );
            }
            bytes = body.len();
        }
        times.sort();
        Ok((Timings(times), bytes))
    }

    /// Creates a repository through the site's API and returns how long the request took.
    ///
    /// A create whose read-your-writes wait (2 s) ran out answers 404 although the cluster has
    /// the repository: that is counted in `late` and the repository waited for (10 s), so the
    /// table says how often it happened instead of the bench stopping.
    async fn deploy(&self, name: &str, late: &AtomicUsize) -> anyhow::Result<Duration> {
        let body = serde_json::json!({"name": name, "image": IMAGE, "port": 80, "replicas": 1});
        let t = Instant::now();
        let (status, answer) = self
            .request("POST", "/api/v1/repos", Some(body.to_string()))
            .await?;
        let took = t.elapsed();
        if status == 404 {
            late.fetch_add(1, Ordering::Relaxed);
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let (status, _) = self
                    .request("GET", &format!("/api/v1/repos/{name}"), None)
                    .await?;
                if status == 200 {
                    return Ok(took);
                }
                if Instant::now() >= deadline {
                    bail!("{name} was created (404 after the create) but never shown within 10 s");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        if status != 201 {
            bail!(
                "deploy of {name} answered {status}: {}",
                String::from_utf8_lossy(&answer)
            );
        }
        Ok(took)
    }
}

async fn sign_in(http: &Http, base: &str, user: &str) -> anyhow::Result<Session> {
    let body = serde_json::json!({"username": user, "password": PASSWORD}).to_string();
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
        bail!("sign-in of {user} failed: {status} {json}");
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
        image: IMAGE.into(),
        port: 80,
        replicas: 1,
        env: Default::default(),
        pull: None,
        public: true,
        group: None,
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

/// A child process that is killed when the bench ends, however it ends.
struct Process {
    child: Child,
    name: &'static str,
    log: PathBuf,
}

impl Process {
    fn spawn(name: &'static str, command: &mut Command, log: PathBuf) -> anyhow::Result<Self> {
        let out = std::fs::File::create(&log)?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        Ok(Self { child, name, log })
    }

    fn pid(&self) -> anyhow::Result<u32> {
        self.child.id().context("the process has ended")
    }

    /// Fails with the process's log if it has exited.
    fn alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}): {}",
                self.name,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
        Ok(())
    }
}

/// Waits until `ready` holds, at most `limit`, failing if the process exits meanwhile.
async fn wait_until<F, Fut>(process: &mut Process, limit: Duration, ready: F) -> anyhow::Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        process.alive()?;
        if ready().await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{} was not ready within {limit:?}: {}",
                process.name,
                std::fs::read_to_string(&process.log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn status_of(http: &Http, url: &str) -> Option<u16> {
    let r = http
        .request(http::Request::get(url).body(Full::new(Bytes::new())).ok()?)
        .await
        .ok()?;
    Some(r.status().as_u16())
}

fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("BENCH_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|_| {
            // <target>/<profile>/examples/site_bench
            std::env::current_exe()?
                .ancestors()
                .nth(3)
                .map(Path::to_path_buf)
                .context("no target directory above this program")
        })?;
    Ok(target.join("release"))
}

/// The public host's Ingresses as `up` installs them (`manifests/deploy-site.yaml`: the mergeable
/// master and the site's own minion), so every repository's minion joins a master and the ingress
/// controller does for each what it does on EKS.
async fn install_public_host(client: &kube::Client) -> anyhow::Result<()> {
    use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
    let values = platform::manifests::SiteValues {
        public_url: platform::PublicUrl::parse(&format!("http://{HOST}"))?,
        image: platform::manifests::default_site_image(),
    };
    let gvk = GroupVersionKind::gvk("networking.k8s.io", "v1", "Ingress");
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        SYSTEM_NAMESPACE,
        &ApiResource::from_gvk(&gvk),
    );
    let mut made = 0;
    for object in platform::manifests::deploy_site(&values)? {
        if object.types.as_ref().is_some_and(|t| t.kind == "Ingress") {
            api.create(&PostParams::default(), &object).await?;
            made += 1;
        }
    }
    if made == 0 {
        bail!("the site's manifest has no Ingress");
    }
    Ok(())
}

/// Users created with a cheap password hash (the hash carries its cost, so sign-in stays cheap
/// too): the bench measures the site's pages and memory, not argon2.
async fn create_users(client: &kube::Client, names: &[String]) -> anyhow::Result<()> {
    let cluster = ClusterNames {
        namespace: SYSTEM_NAMESPACE.into(),
        ingress_class: "nginx".into(),
        platform_namespaces: vec![SYSTEM_NAMESPACE.into(), "nginx-ingress".into()],
        console_upstream: String::new(),
        initial_admin_secret: "kdeploy-initial-admin".into(),
    };
    let mut config = Config::new(PublicUrl::parse(&format!("http://{HOST}:8080"))?, cluster);
    config.password_cost = PasswordCost {
        memory_kib: 64,
        iterations: 1,
        lanes: 1,
    };
    let accounts = web::accounts::Accounts::new(client.clone(), Arc::new(config));
    for chunk in names.chunks(16) {
        let made = futures::future::join_all(
            chunk
                .iter()
                .map(|name| accounts.create_user(name, PASSWORD, false)),
        )
        .await;
        for (name, result) in chunk.iter().zip(made) {
            result.map_err(|e| anyhow::anyhow!("user {name}: {e}"))?;
        }
    }
    Ok(())
}

/// Signs each user in and creates `repos` repositories for each, `concurrency` users at a time.
async fn fill(
    http: &Http,
    base: &str,
    users: &[String],
    repos: std::ops::Range<usize>,
    concurrency: usize,
    late: &Arc<AtomicUsize>,
) -> anyhow::Result<()> {
    let queue = Arc::new(tokio::sync::Mutex::new(users.to_vec()));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (queue, http, base, repos) =
            (queue.clone(), http.clone(), base.to_string(), repos.clone());
        let late = late.clone();
        workers.spawn(async move {
            loop {
                let Some(user) = queue.lock().await.pop() else {
                    return Ok::<_, anyhow::Error>(());
                };
                let session = sign_in(&http, &base, &user).await?;
                for i in repos.clone() {
                    session.deploy(&format!("app-{i:04}"), &late).await?;
                }
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done??;
    }
    Ok(())
}

/// The same repository count for one namespace's creates, spread over `concurrency` tasks.
async fn fill_one(
    session: &Session,
    repos: std::ops::Range<usize>,
    concurrency: usize,
    late: &AtomicUsize,
) -> anyhow::Result<()> {
    let names: Vec<String> = repos.map(|i| format!("app-{i:04}")).collect();
    for chunk in names.chunks(concurrency.max(1)) {
        let done = futures::future::join_all(chunk.iter().map(|n| session.deploy(n, late))).await;
        for d in done {
            d?;
        }
    }
    Ok(())
}

struct Row {
    what: String,
    p50: String,
    p99: String,
    note: String,
}

fn row(
    what: impl Into<String>,
    p50: impl Into<String>,
    p99: impl Into<String>,
    note: impl Into<String>,
) -> Row {
    Row {
        what: what.into(),
        p50: p50.into(),
        p99: p99.into(),
        note: note.into(),
    }
}

async fn kubectl(kubeconfig: &Path, args: &[&str]) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env_remove("KUBECONFIG")
        .kill_on_drop(true)
        .output()
        .await
        .context("kubectl runs")?;
    let took = t.elapsed();
    if !out.status.success() {
        bail!(
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(took)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let users = setting("BENCH_USERS", 1000)?;
    let per_user = setting("BENCH_REPOS_PER_USER", 10)?;
    let wide = setting("BENCH_WIDE_REPOS", 1000)?;
    let concurrency = setting("BENCH_CONCURRENCY", 16)?;
    let bins = bin_dir()?;
    let site_binary = std::env::var("BENCH_SITE_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|_| bins.join("web"));
    let sim_binary = bins.join("cluster-sim");
    for b in [&site_binary, &sim_binary] {
        if !b.is_file() {
            bail!(
                "{} is missing: run `cargo build --release -p web -p cluster` first (or `just bench`)",
                b.display()
            );
        }
    }
    let dir = std::env::temp_dir().join(format!("kdeploy-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let kubeconfig = dir.join("kubeconfig");
    let http: Http = Client::builder(TokioExecutor::new()).build(HttpConnector::new());

    // The simulator: plain HTTP on 127.0.0.1, pods Ready after 50 ms, Endpoints used at once.
    let (api_port, ingress_port, site_port) = (free_port()?, free_port()?, free_port()?);
    let mut sim = Process::spawn(
        "cluster-sim",
        Command::new(&sim_binary)
            .args(["--port", &api_port.to_string()])
            .args(["--ingress-port", &ingress_port.to_string()])
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args([
                "--readiness-delay-ms",
                "50",
                "--endpoint-propagation-ms",
                "0",
            ])
            .env("RUST_LOG", "warn"),
        dir.join("cluster-sim.log"),
    )?;
    let api = format!("http://127.0.0.1:{api_port}");
    wait_until(&mut sim, Duration::from_secs(30), || async {
        kubeconfig.is_file() && status_of(&http, &format!("{api}/version")).await == Some(200)
    })
    .await?;
    let admin = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&kubeconfig)?,
            &kube::config::KubeConfigOptions::default(),
        )
        .await?,
    )?;
    kubectl(&kubeconfig, &["create", "namespace", SYSTEM_NAMESPACE]).await?;
    install_public_host(&admin).await?;

    // The site, as its manifest runs it (without quotas: the simulator's three nodes hold 51
    // pods, and Pending pods are what this bench wants to keep cheap, not quota refusals).
    let base = format!("http://127.0.0.1:{site_port}");
    let mut site = Process::spawn(
        "web serve",
        Command::new(&site_binary)
            .args(["serve", "--insecure-cookies", "--no-quota"])
            .env("KUBECONFIG", &kubeconfig)
            .env("RUST_LOG", "warn")
            .env("KDEPLOY_NAMESPACE", SYSTEM_NAMESPACE)
            .env("KDEPLOY_PUBLIC_URL", format!("http://{HOST}:8080"))
            .env("KDEPLOY_LISTEN", format!("127.0.0.1:{site_port}"))
            .env("KDEPLOY_INGRESS_CLASS", "nginx")
            .env(
                "KDEPLOY_PLATFORM_NAMESPACES",
                format!("{SYSTEM_NAMESPACE},nginx-ingress"),
            )
            .env(
                "KDEPLOY_CONSOLE_UPSTREAM",
                format!("http://127.0.0.1:{ingress_port}"),
            )
            .env("KDEPLOY_INITIAL_ADMIN_SECRET", "kdeploy-initial-admin")
            .env("MIMALLOC_PURGE_DELAY", "0")
            .env("MIMALLOC_ARENA_EAGER_COMMIT", "0"),
        dir.join("web.log"),
    )?;
    wait_until(&mut site, Duration::from_secs(60), || async {
        status_of(&http, &format!("{base}/readyz")).await == Some(200)
    })
    .await?;
    let site_pid = site.pid()?;

    let bench = "bench".to_string();
    let crowd: Vec<String> = (0..users).map(|i| format!("user-{i:04}")).collect();
    let started = Instant::now();
    create_users(&admin, std::slice::from_ref(&bench)).await?;
    let session = sign_in(&http, &base, &bench).await?;
    session.time_gets("/repos", 20).await?;
    // Idle: the site synced, one user signed in and served, nothing else.
    let idle = memory_kib(site_pid)?;

    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let late = Arc::new(AtomicUsize::new(0));

    // Deploy against kubectl apply of the same objects, in the bench user's namespace.
    let mut deploys = Vec::with_capacity(DEPLOYS);
    for i in 0..DEPLOYS {
        deploys.push(session.deploy(&format!("site-{i:02}"), &late).await?);
    }
    deploys.sort();
    let mut applies = Vec::with_capacity(DEPLOYS);
    for i in 0..DEPLOYS {
        let file = dir.join(format!("kubectl-{i:02}.yaml"));
        std::fs::write(&file, manifest(&bench, &format!("cli-{i:02}"))?)?;
        let path = file.to_string_lossy().into_owned();
        applies.push(kubectl(&kubeconfig, &["apply", "--validate=false", "-f", &path]).await?);
    }
    applies.sort();
    let (deploys, applies) = (Timings(deploys), Timings(applies));
    rows.push(row(
        format!("deploy: POST /api/v1/repos ({DEPLOYS}, until the site shows it)"),
        ms(deploys.p(50.0)),
        ms(deploys.p(99.0)),
        "",
    ));
    rows.push(row(
        format!("kubectl apply -f of the same 3 objects ({DEPLOYS})"),
        ms(applies.p(50.0)),
        ms(applies.p(99.0)),
        format!(
            "site {:.1}x faster (p50)",
            applies.p(50.0).as_secs_f64() / deploys.p(50.0).as_secs_f64()
        ),
    ));

    // The namespace series: 10 repositories each for 10, 100, 1,000 users; the list measured is
    // the first user's (10 repositories) while the mirror grows.
    let mut namespace_series = Vec::new();
    let mut done = 0;
    for step in [10, 100, 1000] {
        let upto = step.min(users);
        if upto <= done {
            continue;
        }
        create_users(&admin, &crowd[done..upto]).await?;
        fill(
            &http,
            &base,
            &crowd[done..upto],
            0..per_user,
            concurrency,
            &late,
        )
        .await?;
        done = upto;
        sim.alive()?;
        site.alive()?;
        let first = sign_in(&http, &base, &crowd[0]).await?;
        let (list, _) = first.time_gets("/repos", SERIES_REQUESTS).await?;
        namespace_series.push((upto, list));
    }
    let filled = started.elapsed();
    let loaded = memory_kib(site_pid)?;

    // A change made with kubectl, as the site's JSON shows it.
    let target = &crowd[0];
    let watcher = sign_in(&http, &base, target).await?;
    let mut delays = Vec::with_capacity(CHANGES);
    let mut kubectl_times = Vec::with_capacity(CHANGES);
    for i in 0..CHANGES {
        let image = format!("nginx:1.{}", 10 + i);
        let t = Instant::now();
        let poll = {
            let (watcher, image) = (watcher.clone(), image.clone());
            tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    let (status, body) = watcher
                        .request("GET", "/api/v1/repos/app-0000", None)
                        .await?;
                    if status == 200 && String::from_utf8_lossy(&body).contains(&image) {
                        return Ok::<_, anyhow::Error>(Instant::now());
                    }
                    if Instant::now() >= deadline {
                        bail!("the site did not show {image} within 10 s (last answer {status})");
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        };
        let ran = kubectl(
            &kubeconfig,
            &[
                "-n",
                target,
                "set",
                "image",
                "deployment/app-0000",
                &format!("app-0000={image}"),
            ],
        )
        .await?;
        match poll.await? {
            Ok(seen) => delays.push(seen.duration_since(t)),
            Err(e) => notes.push(format!("kubectl change {i}: {e}")),
        }
        kubectl_times.push(ran);
    }
    delays.sort();
    kubectl_times.sort();
    let (delays, kubectl_times) = (Timings(delays), Timings(kubectl_times));
    rows.push(row(
        format!(
            "kubectl set image -> visible in the site's JSON ({} of {CHANGES})",
            delays.0.len()
        ),
        ms(delays.p(50.0)),
        ms(delays.p(99.0)),
        format!(
            "from kubectl's start; kubectl itself took {} ms (p50)",
            ms(kubectl_times.p(50.0))
        ),
    ));

    // The one-namespace series: the bench user's namespace grows to `wide` repositories; the
    // headline list figures are taken at 200.
    let mut wide_series = Vec::new();
    let mut have = 0;
    let mut headline = None;
    for step in [10, 100, 200, 1000] {
        let upto = step.min(wide);
        if upto <= have {
            continue;
        }
        fill_one(&session, have..upto, concurrency, &late).await?;
        have = upto;
        let (page, page_bytes) = session.time_gets("/repos", LIST_REQUESTS).await?;
        let (json, json_bytes) = session.time_gets("/api/v1/repos", LIST_REQUESTS).await?;
        if step == 200 {
            headline = Some((page, page_bytes, json, json_bytes));
        } else {
            wide_series.push((upto, page, json));
        }
    }
    let after_wide = memory_kib(site_pid)?;
    if let Some((page, page_bytes, json, json_bytes)) = headline {
        rows.insert(
            0,
            row(
                format!(
                    "GET /repos, 200 repos (HTML, {} KiB, {LIST_REQUESTS} req)",
                    page_bytes / 1024
                ),
                ms(page.p(50.0)),
                ms(page.p(99.0)),
                "goal p99 < 20 ms",
            ),
        );
        rows.insert(
            1,
            row(
                format!(
                    "GET /api/v1/repos, 200 repos (JSON, {} KiB)",
                    json_bytes / 1024
                ),
                ms(json.p(50.0)),
                ms(json.p(99.0)),
                "goal p99 < 20 ms",
            ),
        );
    }
    for (n, page, json) in &wide_series {
        rows.push(row(
            format!("list, {n} repos in one namespace (HTML | JSON)"),
            format!("{} | {}", ms(page.p(50.0)), ms(json.p(50.0))),
            format!("{} | {}", ms(page.p(99.0)), ms(json.p(99.0))),
            "",
        ));
    }
    for (n, list) in &namespace_series {
        rows.push(row(
            format!("list (HTML, 10 repos) with {n} user namespaces"),
            ms(list.p(50.0)),
            ms(list.p(99.0)),
            format!("{} repositories in the cluster", n * per_user + 2 * DEPLOYS),
        ));
    }
    notes.push(format!(
        "set-up: {users} users x {per_user} repositories through the site's API in {:.0} s",
        filled.as_secs_f64()
    ));

    println!(
        "kdeploy deploy-site benchmark: release `web serve` and `cluster-sim` as separate processes on 127.0.0.1"
    );
    println!("site binary: {}", site_binary.display());
    println!(
        "{:<62} {:>15} {:>15}  note",
        "measurement", "p50 ms", "p99 ms"
    );
    for r in &rows {
        println!("{:<62} {:>15} {:>15}  {}", r.what, r.p50, r.p99, r.note);
    }
    println!(
        "{:<62} {:>15} {:>15} {:>12}",
        "site memory", "VmRSS MiB", "VmHWM MiB", "RssAnon MiB"
    );
    println!(
        "{:<62} {:>15} {:>15} {:>12}",
        "idle (synced, one user signed in)",
        mib(idle.0),
        mib(idle.1),
        mib(idle.2)
    );
    println!(
        "{:<62} {:>15} {:>15} {:>12}  goal VmRSS < 40 MiB",
        format!("after {users} users x {per_user} repositories"),
        mib(loaded.0),
        mib(loaded.1),
        mib(loaded.2)
    );
    println!(
        "{:<62} {:>15} {:>15} {:>12}",
        format!("after that and {have} more repositories in one namespace"),
        mib(after_wide.0),
        mib(after_wide.1),
        mib(after_wide.2)
    );
    notes.push(format!(
        "creates answered 404 after their read-your-writes wait ran out (then shown later): {}",
        late.load(Ordering::Relaxed)
    ));
    for n in &notes {
        println!("{n}");
    }
    drop(site);
    drop(sim);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
