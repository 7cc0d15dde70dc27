//! The realistic front: an HTTP proxy before moto that makes it behave like AWS in time and in
//! failure. Every SDK client reaches it through the same single endpoint setting.
//!
//! - Latency on every call.
//! - Asynchronous resources: EKS `CREATING`/`DELETING`, Auto Scaling instances `Pending`, load
//!   balancers `provisioning`, targets `initial`, for as long as the [`Profile`] says.
//! - Eventual consistency and dependency errors as AWS returns them: a new IAM role that EKS cannot
//!   assume yet; `DependencyViolation` while interfaces of deleted instances, load balancers or
//!   clusters linger; `ResourceInUse` for a target group whose load balancer is still going.
//! - EC2's eventual consistency: a new VPC, subnet, gateway, route table, security group, launch
//!   template or instance is `*.NotFound` for a while to calls that name it (see [`consistency`]).
//! - Throttling and 5xx on a configurable fraction of calls (rejected before reaching moto),
//!   rolled from a seed that the front prints, so that a failed run's faults can be had again.
//! - ECR's push rules moto does not check (part sizes, layer and manifest digests, blobs present
//!   before PutImage; see [`ecr`]), and an upload bandwidth for the bytes sent.
//! - A kill switch: after the N-th mutating call (of one service, or of any) reaches moto, that
//!   call's answer and every later call are dropped, as if the caller had died right then.

pub mod consistency;
pub mod ecr;
pub mod profile;
pub mod protocol;
pub mod rewrite;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;

pub use profile::Profile;
use protocol::{Call, Fault, error_response, fault_code, identify};

/// What the front did, for tests and the benchmark.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrontStats {
    /// `service:Operation` → calls that reached moto.
    pub forwarded: BTreeMap<String, usize>,
    /// Mutating calls that reached moto.
    pub mutating: usize,
    /// Signing name (`ecr`, `ec2`, ...) → mutating calls that reached moto.
    pub mutating_by_service: BTreeMap<String, usize>,
    /// Error code → how many times the front answered with it instead of moto.
    pub injected: BTreeMap<String, usize>,
    /// `service:Operation` → how many of its calls the front answered with an error.
    pub refused: BTreeMap<String, usize>,
    /// Calls whose fault was rolled (the profile has fault rates): the `rolls` first draws of
    /// the seeded generator (see [`Front::seed`]) decided them, in the order the calls came.
    pub rolls: usize,
    /// Of those, answered with throttling and with a 5xx (planned throttles not counted).
    pub rolled_throttles: usize,
    pub rolled_server_errors: usize,
}

impl FrontStats {
    /// Calls of `service:Operation` that reached moto.
    pub fn forwarded(&self, operation: &str) -> usize {
        self.forwarded.get(operation).copied().unwrap_or(0)
    }
}

/// Where the kill switch fires: at the `at`-th mutating call, counted over one service's calls
/// (`Some("ecr")`) or over all.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KillPoint {
    service: Option<String>,
    at: usize,
}

/// Times at which things happened, from which the states AWS would show are derived.
#[derive(Default)]
struct Timeline {
    roles_created: HashMap<String, Instant>,
    clusters_created: HashMap<String, Instant>,
    /// Cluster → (deletion started, its last DescribeCluster body).
    clusters_deleting: HashMap<String, (Instant, Bytes)>,
    cluster_bodies: HashMap<String, Bytes>,
    instances_seen: HashMap<String, Instant>,
    load_balancers_created: HashMap<String, Instant>,
    targets_registered: HashMap<String, Instant>,
    /// Until then, deleting security groups, subnets or VPCs meets lingering interfaces.
    interfaces_until: Option<Instant>,
    /// Until then, target groups are still held by a load balancer being deleted.
    target_groups_held_until: Option<Instant>,
}

/// The environment variable that seeds the front when its profile has no seed.
pub const SEED_ENV: &str = "KDEPLOY_FRONT_SEED";

/// What the latency generator's seed adds to the fault generator's, so that the two sequences
/// differ and the faults do not depend on how many latencies were drawn.
const LATENCY_SEED_OFFSET: u64 = 0x9E37_79B9_7F4A_7C15;

struct Shared {
    upstream: String,
    profile: Profile,
    seed: u64,
    /// One `random::<f64>()` per call that rolls for a fault, in the order the calls come.
    fault_rolls: Mutex<StdRng>,
    latency_rolls: Mutex<StdRng>,
    client: Client<HttpConnector, Full<Bytes>>,
    timeline: Mutex<Timeline>,
    stats: Mutex<FrontStats>,
    kill_after: Mutex<Option<KillPoint>>,
    killed: watch::Sender<bool>,
    /// Operation → (code, message) it always fails with: for tests of real (not "not yet") errors.
    failures: Mutex<HashMap<String, (String, String)>>,
    /// Operation → how many of its next calls are throttled.
    throttles: Mutex<HashMap<String, usize>>,
    uploads: Mutex<ecr::Uploads>,
    /// EC2 ids created through the front, not yet visible for the profile's consistency window.
    propagation: Mutex<consistency::Propagation>,
}

/// A running front; it stops when dropped.
pub struct Front {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Front {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The connection is dropped without an answer (the kill switch).
#[derive(Debug, thiserror::Error)]
#[error("dropped by the kill switch")]
pub struct Dropped;

impl Front {
    /// Listens on 127.0.0.1 (`port` 0 picks a free one) and forwards to `upstream` (moto).
    /// The rolls follow the profile's seed, else `KDEPLOY_FRONT_SEED`, else a random one; the
    /// seed is printed to stderr, where a failing test shows it.
    pub async fn start(upstream: &str, profile: Profile, port: u16) -> std::io::Result<Self> {
        let seed = choose_seed(profile.seed)?;
        // stderr rather than tracing: a test shows what it printed when it fails, and tests
        // install no subscriber.
        eprintln!(
            "realistic front ({}): seed {seed}; {SEED_ENV}={seed} rolls the same latencies and faults again",
            profile.name
        );
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            profile,
            seed,
            fault_rolls: Mutex::new(StdRng::seed_from_u64(seed)),
            latency_rolls: Mutex::new(StdRng::seed_from_u64(seed ^ LATENCY_SEED_OFFSET)),
            client: Client::builder(TokioExecutor::new()).build_http(),
            timeline: Mutex::new(Timeline::default()),
            stats: Mutex::new(FrontStats::default()),
            kill_after: Mutex::new(None),
            killed: watch::channel(false).0,
            failures: Mutex::new(HashMap::new()),
            throttles: Mutex::new(HashMap::new()),
            uploads: Mutex::new(ecr::Uploads::default()),
            propagation: Mutex::new(consistency::Propagation::default()),
        });
        let serving = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared = serving.clone();
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req| handle(shared.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, shared, task })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn profile(&self) -> &Profile {
        &self.shared.profile
    }

    /// The seed of this front's rolls: the fault of the `n`-th call that rolls is decided by the
    /// `n`-th `random::<f64>()` of `StdRng::seed_from_u64(seed)` (throttled below the throttle
    /// rate, a 5xx below throttle + server error rate). Concurrent calls take the draws in the
    /// order they arrive, so which call meets a fault can differ between runs; the sequence of
    /// draws does not.
    pub fn seed(&self) -> u64 {
        self.shared.seed
    }

    pub fn stats(&self) -> FrontStats {
        self.shared
            .stats
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// Arms the kill switch: the `n`-th mutating call from now on reaches moto, then the caller
    /// hears nothing more.
    pub fn kill_after_mutating(&self, n: usize) {
        let done = self.stats().mutating;
        self.arm(None, done + n);
    }

    /// Arms the kill switch at the `n`-th mutating call of one service (its signing name, e.g.
    /// `ecr`) from now on, however the caller interleaves it with other services' calls.
    pub fn kill_after_mutating_in(&self, service: &str, n: usize) {
        let done = self
            .stats()
            .mutating_by_service
            .get(service)
            .copied()
            .unwrap_or(0);
        self.arm(Some(service.to_owned()), done + n);
    }

    fn arm(&self, service: Option<String>, at: usize) {
        if let Ok(mut kill) = self.shared.kill_after.lock() {
            *kill = Some(KillPoint { service, at });
        }
        self.shared.killed.send_replace(false);
    }

    /// Resolves once the kill switch has fired.
    pub async fn killed(&self) {
        let mut rx = self.shared.killed.subscribe();
        let _ = rx.wait_for(|fired| *fired).await;
    }

    pub fn has_killed(&self) -> bool {
        *self.shared.killed.borrow()
    }

    /// Makes every call of `operation` (e.g. `CreateLoadBalancer`) fail with this AWS error code,
    /// before it reaches moto.
    pub fn fail(&self, operation: &str, code: &str, message: &str) {
        if let Ok(mut failures) = self.shared.failures.lock() {
            failures.insert(operation.to_owned(), (code.to_owned(), message.to_owned()));
        }
    }

    /// Answers the next `times` calls of `operation` with the service's throttling error, so a
    /// test knows the caller met throttling on that call.
    pub fn throttle(&self, operation: &str, times: usize) {
        if let Ok(mut throttles) = self.shared.throttles.lock() {
            throttles.insert(operation.to_owned(), times);
        }
    }

    /// Disarms the kill switch and serves again (the caller was "restarted").
    pub fn revive(&self) {
        if let Ok(mut kill) = self.shared.kill_after.lock() {
            *kill = None;
        }
        self.shared.killed.send_replace(false);
    }
}

/// The profile's seed, else the one in [`SEED_ENV`], else a random one.
fn choose_seed(configured: Option<u64>) -> std::io::Result<u64> {
    if let Some(seed) = configured {
        return Ok(seed);
    }
    match std::env::var(SEED_ENV) {
        Ok(text) => text.trim().parse().map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{SEED_ENV}={text:?} is not a seed (an unsigned 64-bit number): {e}"),
            )
        }),
        Err(_) => Ok(rand::rng().random()),
    }
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Dropped> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map_err(|_| Dropped)?.to_bytes();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_owned();
    let call = identify(&parts.method, &path, &parts.headers, &body);

    let (low, high) = shared.profile.latency;
    let mut pause = if high > Duration::ZERO {
        let secs = shared
            .latency_rolls
            .lock()
            .map(|mut rng| rng.random_range(low.as_secs_f64()..=high.as_secs_f64()))
            .unwrap_or(low.as_secs_f64());
        Duration::from_secs_f64(secs)
    } else {
        Duration::ZERO
    };
    if let Some(rate) = shared.profile.upload_bandwidth.filter(|r| *r > 0) {
        pause += Duration::from_secs_f64(body.len() as f64 / rate as f64);
    }
    if pause > Duration::ZERO {
        tokio::time::sleep(pause).await;
    }
    if *shared.killed.borrow() {
        return Err(Dropped);
    }
    if let Some(response) = shared.inject_fault(&call) {
        return Ok(response);
    }
    if let Some(response) = shared.before(&call) {
        return Ok(response);
    }
    if call.service == "ecr"
        && let Some(refusal) = shared.ecr_rules(&call, &parts.headers, &body).await
    {
        shared.refused(&call, refusal.code);
        return Ok(error_response(
            "ecr",
            StatusCode::BAD_REQUEST,
            refusal.code,
            &refusal.message,
        ));
    }

    let mut forward = Request::builder()
        .method(parts.method.clone())
        .uri(format!("{}{path}", shared.upstream));
    for (name, value) in &parts.headers {
        if name != http::header::HOST {
            forward = forward.header(name, value);
        }
    }
    let forward_body = body.clone();
    let forward = forward.body(Full::new(body)).map_err(|_| Dropped)?;
    let response = match shared.client.request(forward).await {
        Ok(response) => response,
        Err(err) => {
            tracing::warn!(%err, "the emulator did not answer");
            return Ok(error_response(
                &call.service,
                StatusCode::BAD_GATEWAY,
                "InternalFailure",
                "emulator unreachable",
            ));
        }
    };
    let request = forward_body;
    let (mut head, body) = response.into_parts();
    let body = body.collect().await.map_err(|_| Dropped)?.to_bytes();
    let body = if head.status.is_success() {
        shared.after(&call, &request, body)
    } else {
        body
    };
    head.headers.remove(http::header::CONTENT_LENGTH);
    head.headers.remove(http::header::TRANSFER_ENCODING);

    let fire = shared.count(&call);
    if fire {
        shared.killed.send_replace(true);
        return Err(Dropped);
    }
    Ok(Response::from_parts(head, Full::new(body)))
}

impl Shared {
    /// Counts a call that reached moto; true when it trips the kill switch.
    fn count(&self, call: &Call) -> bool {
        let Ok(mut stats) = self.stats.lock() else {
            return false;
        };
        *stats
            .forwarded
            .entry(format!("{}:{}", call.service, call.operation))
            .or_default() += 1;
        if !call.is_mutating() {
            return false;
        }
        stats.mutating += 1;
        let of_service = stats
            .mutating_by_service
            .entry(call.service.clone())
            .or_default();
        *of_service += 1;
        let of_service = *of_service;
        let kill_after = self.kill_after.lock().ok().and_then(|k| k.clone());
        match kill_after {
            Some(KillPoint { service: None, at }) => at == stats.mutating,
            Some(KillPoint {
                service: Some(service),
                at,
            }) => service == call.service && at == of_service,
            None => false,
        }
    }

    fn injected(&self, code: &str) {
        if let Ok(mut stats) = self.stats.lock() {
            *stats.injected.entry(code.to_owned()).or_default() += 1;
        }
    }

    /// Counts an error the front answered `call` with.
    fn refused(&self, call: &Call, code: &str) {
        self.injected(code);
        if let Ok(mut stats) = self.stats.lock() {
            *stats
                .refused
                .entry(format!("{}:{}", call.service, call.operation))
                .or_default() += 1;
        }
    }

    /// ECR's push rules moto lacks (see [`ecr`]); PutImage asks moto which referenced blobs the
    /// repository has, so blobs pushed before this front started count too.
    async fn ecr_rules(
        &self,
        call: &Call,
        headers: &http::HeaderMap,
        body: &Bytes,
    ) -> Option<ecr::Refusal> {
        match call.operation.as_str() {
            "UploadLayerPart" => ecr::check_part(body),
            "CompleteLayerUpload" => self.uploads.lock().ok()?.check_complete(body),
            "PutImage" => {
                let referenced = match ecr::check_manifest(body) {
                    Ok(referenced) => referenced,
                    Err(refusal) => return Some(refusal),
                };
                let missing = self.missing_blobs(call, headers, &referenced).await?;
                (!missing.is_empty()).then(|| ecr::layers_not_found(&missing))
            }
            _ => None,
        }
    }

    /// Which of `digests` moto's repository lacks (BatchCheckLayerAvailability, sent with the
    /// caller's credentials so moto picks the same account and region); `None` when moto cannot
    /// say, and then moto answers the call itself.
    async fn missing_blobs(
        &self,
        call: &Call,
        headers: &http::HeaderMap,
        digests: &[String],
    ) -> Option<Vec<String>> {
        let mut query = serde_json::json!({
            "repositoryName": call.params.get("repositoryName")?,
            "layerDigests": digests,
        });
        if let Some(registry) = call.params.get("registryId") {
            query["registryId"] = registry.clone().into();
        }
        let mut request = Request::builder()
            .method(http::Method::POST)
            .uri(format!("{}/", self.upstream))
            .header(http::header::CONTENT_TYPE, "application/x-amz-json-1.1")
            .header(
                "x-amz-target",
                "AmazonEC2ContainerRegistry_V20150921.BatchCheckLayerAvailability",
            );
        for name in [http::header::AUTHORIZATION.as_str(), "x-amz-date"] {
            if let Some(value) = headers.get(name) {
                request = request.header(name, value);
            }
        }
        let request = request
            .body(Full::new(Bytes::from(query.to_string())))
            .ok()?;
        let response = self.client.request(request).await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        let body = response.into_body().collect().await.ok()?.to_bytes();
        let answer: serde_json::Value = serde_json::from_slice(&body).ok()?;
        let available: Vec<&str> = answer
            .get("layers")?
            .as_array()?
            .iter()
            .filter(|l| l.get("layerAvailability").and_then(|a| a.as_str()) == Some("AVAILABLE"))
            .filter_map(|l| l.get("layerDigest").and_then(|d| d.as_str()))
            .collect();
        Some(
            digests
                .iter()
                .filter(|d| !available.contains(&d.as_str()))
                .cloned()
                .collect(),
        )
    }

    fn inject_fault(&self, call: &Call) -> Option<Response<Full<Bytes>>> {
        let planned = self.throttles.lock().ok().is_some_and(|mut t| {
            t.get_mut(&call.operation)
                .filter(|left| **left > 0)
                .map(|left| *left -= 1)
                .is_some()
        });
        let fault = if planned {
            Fault::Throttle
        } else {
            self.roll()?
        };
        let (code, status) = fault_code(&call.service, fault);
        self.refused(call, code);
        Some(error_response(
            &call.service,
            status,
            code,
            "injected by the local realistic front",
        ))
    }

    /// The next draw of the seeded generator decides whether this call meets a fault; no draw
    /// when the profile has no fault rates.
    fn roll(&self) -> Option<Fault> {
        let (throttle, server) = (self.profile.throttle_rate, self.profile.server_error_rate);
        if throttle <= 0.0 && server <= 0.0 {
            return None;
        }
        // Draw and count under the generator's lock, so that the counts always describe the
        // first `rolls` draws.
        let mut rolls = self.fault_rolls.lock().ok()?;
        let roll: f64 = rolls.random();
        let fault = if roll < throttle {
            Some(Fault::Throttle)
        } else if roll < throttle + server {
            Some(Fault::ServerError)
        } else {
            None
        };
        if let Ok(mut stats) = self.stats.lock() {
            stats.rolls += 1;
            match fault {
                Some(Fault::Throttle) => stats.rolled_throttles += 1,
                Some(Fault::ServerError) => stats.rolled_server_errors += 1,
                None => {}
            }
        }
        drop(rolls);
        fault
    }

    /// Answers AWS would give without doing the work: "not yet" and "still in use".
    fn before(&self, call: &Call) -> Option<Response<Full<Bytes>>> {
        let failure = self
            .failures
            .lock()
            .ok()
            .and_then(|f| f.get(&call.operation).cloned());
        if let Some((code, message)) = failure {
            self.injected(&code);
            return Some(error_response(
                &call.service,
                StatusCode::BAD_REQUEST,
                &code,
                &message,
            ));
        }
        let now = Instant::now();
        if let Some(response) = self.not_yet_visible(call, now) {
            return Some(response);
        }
        let Ok(mut timeline) = self.timeline.lock() else {
            return None;
        };
        match (call.service.as_str(), call.operation.as_str()) {
            ("eks", "CreateCluster") => {
                let arn = call.params.get("roleArn")?;
                let role = arn.rsplit('/').next()?;
                let created = timeline.roles_created.get(role)?;
                if now.duration_since(*created) < self.profile.iam_propagation {
                    let code = "InvalidParameterException";
                    drop(timeline);
                    self.injected(code);
                    return Some(error_response(
                        "eks",
                        StatusCode::BAD_REQUEST,
                        code,
                        &format!(
                            "Role with arn: {arn}, could not be assumed because it does not exist or the trusted entity is not correct"
                        ),
                    ));
                }
                None
            }
            ("eks", "DescribeCluster") => {
                let name = call.cluster.as_deref()?;
                let (started, body) = timeline.clusters_deleting.get(name)?.clone();
                if now.duration_since(started) >= self.profile.cluster_delete {
                    timeline.clusters_deleting.remove(name);
                    return None;
                }
                let body = rewrite::cluster_status(&body, "DELETING")?;
                let mut response = Response::new(Full::new(Bytes::from(body)));
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                Some(response)
            }
            ("ec2", "DeleteSecurityGroup" | "DeleteSubnet" | "DeleteVpc") => {
                if timeline.interfaces_until.is_none_or(|until| now >= until) {
                    return None;
                }
                let id = ["GroupId", "SubnetId", "VpcId"]
                    .iter()
                    .find_map(|k| call.params.get(*k))
                    .cloned()
                    .unwrap_or_default();
                drop(timeline);
                self.injected("DependencyViolation");
                Some(error_response(
                    "ec2",
                    StatusCode::BAD_REQUEST,
                    "DependencyViolation",
                    &format!("resource {id} has a dependent object"),
                ))
            }
            ("elasticloadbalancing", "DeleteTargetGroup") => {
                if timeline
                    .target_groups_held_until
                    .is_none_or(|until| now >= until)
                {
                    return None;
                }
                drop(timeline);
                self.injected("ResourceInUse");
                Some(error_response(
                    "elasticloadbalancing",
                    StatusCode::BAD_REQUEST,
                    "ResourceInUse",
                    "Target group is currently in use by a listener or a rule",
                ))
            }
            _ => None,
        }
    }

    /// "Eventual consistency in the Amazon EC2 API"
    /// (<https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html>): a call naming
    /// an EC2 resource created less than the profile's window ago meets its `*.NotFound` code.
    fn not_yet_visible(&self, call: &Call, now: Instant) -> Option<Response<Full<Bytes>>> {
        let window = self.profile.ec2_consistency_window;
        if call.service != "ec2" || window.is_zero() {
            return None;
        }
        let refusal =
            self.propagation
                .lock()
                .ok()?
                .check(&call.operation, &call.params, window, now)?;
        self.refused(call, refusal.code);
        Some(error_response(
            "ec2",
            StatusCode::BAD_REQUEST,
            refusal.code,
            &refusal.message,
        ))
    }

    /// Records what a successful call started, and shows states that are not final yet.
    fn after(&self, call: &Call, request: &[u8], body: Bytes) -> Bytes {
        let now = Instant::now();
        let p = &self.profile;
        if call.service == "ec2"
            && !p.ec2_consistency_window.is_zero()
            && let Ok(mut propagation) = self.propagation.lock()
        {
            propagation.created(&call.operation, &String::from_utf8_lossy(&body), now);
        }
        let Ok(mut timeline) = self.timeline.lock() else {
            return body;
        };
        let text = || String::from_utf8_lossy(&body).into_owned();
        let linger = |until: &mut Option<Instant>, d: Duration| {
            let end = now + d;
            *until = Some(until.map_or(end, |u| u.max(end)));
        };
        match (call.service.as_str(), call.operation.as_str()) {
            ("iam", "CreateRole") => {
                if let Some(role) = call.params.get("RoleName") {
                    timeline.roles_created.insert(role.clone(), now);
                }
                body
            }
            ("eks", "CreateCluster") => {
                if let Some(name) = call.params.get("name") {
                    timeline.clusters_created.insert(name.clone(), now);
                }
                body
            }
            ("eks", "DescribeCluster") => {
                let Some(name) = call.cluster.clone() else {
                    return body;
                };
                timeline.cluster_bodies.insert(name.clone(), body.clone());
                let creating = timeline
                    .clusters_created
                    .get(&name)
                    .is_some_and(|t| now.duration_since(*t) < p.cluster_create);
                if creating {
                    rewrite::cluster_status(&body, "CREATING")
                        .map(Bytes::from)
                        .unwrap_or(body)
                } else {
                    body
                }
            }
            ("eks", "DeleteCluster") => {
                if let Some(name) = call.cluster.clone() {
                    let last = timeline
                        .cluster_bodies
                        .get(&name)
                        .cloned()
                        .unwrap_or_else(|| body.clone());
                    timeline.clusters_deleting.insert(name, (now, last));
                    linger(
                        &mut timeline.interfaces_until,
                        p.cluster_delete + p.interfaces_linger,
                    );
                }
                body
            }
            ("autoscaling", "DescribeAutoScalingGroups") => {
                let xml = text();
                for id in rewrite::values(&xml, "InstanceId") {
                    timeline.instances_seen.entry(id.to_owned()).or_insert(now);
                }
                let seen = &timeline.instances_seen;
                let out = rewrite::rewrite_states(
                    &xml,
                    "InstanceId",
                    "LifecycleState",
                    "InService",
                    "Pending",
                    |id| {
                        seen.get(id)
                            .is_some_and(|t| now.duration_since(*t) < p.instance_start)
                    },
                );
                Bytes::from(out)
            }
            ("autoscaling", "DeleteAutoScalingGroup") | ("ec2", "TerminateInstances") => {
                linger(&mut timeline.interfaces_until, p.interfaces_linger);
                body
            }
            ("elasticloadbalancing", "CreateLoadBalancer") => {
                for arn in rewrite::values(&text(), "LoadBalancerArn") {
                    timeline
                        .load_balancers_created
                        .entry(arn.to_owned())
                        .or_insert(now);
                }
                body
            }
            ("elasticloadbalancing", "DescribeLoadBalancers") => {
                let created = &timeline.load_balancers_created;
                let out = rewrite::rewrite_states(
                    &text(),
                    "LoadBalancerArn",
                    "Code",
                    "active",
                    "provisioning",
                    |arn| {
                        created
                            .get(arn)
                            .is_some_and(|t| now.duration_since(*t) < p.load_balancer_start)
                    },
                );
                Bytes::from(out)
            }
            ("elasticloadbalancing", "DeleteLoadBalancer") => {
                linger(&mut timeline.interfaces_until, p.interfaces_linger);
                linger(
                    &mut timeline.target_groups_held_until,
                    p.interfaces_linger / 2,
                );
                body
            }
            ("elasticloadbalancing", "RegisterTargets") => {
                let group = call
                    .params
                    .get("TargetGroupArn")
                    .cloned()
                    .unwrap_or_default();
                for (key, value) in &call.params {
                    if key.starts_with("Targets.member.") && key.ends_with(".Id") {
                        timeline
                            .targets_registered
                            .insert(format!("{group} {value}"), now);
                    }
                }
                body
            }
            ("elasticloadbalancing", "DescribeTargetHealth") => {
                let group = call
                    .params
                    .get("TargetGroupArn")
                    .cloned()
                    .unwrap_or_default();
                let registered = &timeline.targets_registered;
                let out =
                    rewrite::rewrite_states(&text(), "Id", "State", "healthy", "initial", |id| {
                        registered
                            .get(&format!("{group} {id}"))
                            .is_some_and(|t| now.duration_since(*t) < p.target_registration)
                    });
                Bytes::from(out)
            }
            ("ecr", "UploadLayerPart") => {
                drop(timeline);
                if let Ok(mut uploads) = self.uploads.lock() {
                    uploads.part_accepted(request);
                }
                body
            }
            ("ecr", "CompleteLayerUpload") => {
                drop(timeline);
                if let Ok(mut uploads) = self.uploads.lock() {
                    uploads.completed(request);
                }
                body
            }
            _ => body,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used, clippy::unwrap_used)]

    use super::*;

    /// An EC2 query call as the SDK signs it (the front reads the service from the credential
    /// scope), sent to a front whose upstream is closed: what the front does not answer itself
    /// comes back as 502 (emulator unreachable).
    async fn statuses(front: &Front, calls: usize) -> Vec<u16> {
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let mut statuses = Vec::new();
        for _ in 0..calls {
            let request = Request::builder()
                .method(http::Method::POST)
                .uri(format!("{}/", front.endpoint()))
                .header(
                    http::header::AUTHORIZATION,
                    "AWS4-HMAC-SHA256 Credential=test/20261203/ap-northeast-2/ec2/aws4_request",
                )
                .header(
                    http::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(Full::new(Bytes::from_static(
                    b"Action=DescribeVpcs&Version=2016-11-15",
                )))
                .unwrap();
            statuses.push(client.request(request).await.unwrap().status().as_u16());
        }
        statuses
    }

    /// A port nothing listens on: bound, then released.
    async fn closed_upstream() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn the_seed_decides_the_faults_as_its_generator_draws_them() {
        let (throttle, server) = (0.3, 0.2);
        let profile = Profile::instant()
            .with_faults(throttle, server)
            .with_seed(42);
        let upstream = closed_upstream().await;
        let calls = 40;

        // What seed 42 implies, drawn here from the same generator: EC2's
        // RequestLimitExceeded (503) below the throttle rate, InternalError (500) below both
        // rates, else the call goes on (502: the closed upstream).
        let mut rng = StdRng::seed_from_u64(42);
        let expected: Vec<u16> = (0..calls)
            .map(|_| {
                let roll: f64 = rng.random();
                if roll < throttle {
                    503
                } else if roll < throttle + server {
                    500
                } else {
                    502
                }
            })
            .collect();
        assert!(expected.contains(&503) && expected.contains(&500) && expected.contains(&502));

        let front = Front::start(&upstream, profile.clone(), 0).await.unwrap();
        assert_eq!(front.seed(), 42);
        assert_eq!(statuses(&front, calls).await, expected, "seed 42");
        let stats = front.stats();
        assert_eq!(stats.rolls, calls);
        assert_eq!(
            stats.rolled_throttles,
            expected.iter().filter(|s| **s == 503).count()
        );
        assert_eq!(
            stats.rolled_server_errors,
            expected.iter().filter(|s| **s == 500).count()
        );
        assert_eq!(
            stats.injected.get("RequestLimitExceeded").copied(),
            Some(stats.rolled_throttles)
        );

        // Another front with the same seed rolls the same faults; another seed, others.
        let again = Front::start(&upstream, profile.clone(), 0).await.unwrap();
        assert_eq!(statuses(&again, calls).await, expected, "seed 42, again");
        let other = Front::start(&upstream, profile.with_seed(43), 0)
            .await
            .unwrap();
        assert_ne!(statuses(&other, calls).await, expected, "seed 43");
    }

    #[tokio::test]
    async fn a_front_without_fault_rates_draws_no_rolls_and_planned_throttles_take_none() {
        let upstream = closed_upstream().await;
        let front = Front::start(&upstream, Profile::instant().with_seed(7), 0)
            .await
            .unwrap();
        front.throttle("DescribeVpcs", 2);
        assert_eq!(statuses(&front, 4).await, [503, 503, 502, 502]);
        let stats = front.stats();
        assert_eq!(stats.rolls, 0);
        assert_eq!(stats.injected.get("RequestLimitExceeded"), Some(&2));
    }
}
