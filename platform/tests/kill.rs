//! The platform install killed at every one of its changing calls to the API server, then
//! `uninstall` (what `provisioner down` runs in the cluster): the cluster holds nothing of the
//! platform afterwards, judged by an observer that lists every kind the API server's discovery
//! documents name (not the platform's own list of what it makes).
//!
//! The kill sits in an HTTP proxy between the installer and the simulator: the `n`-th changing
//! request (POST, PUT, PATCH, DELETE) is forwarded and answered by the API server, then every
//! connection is dropped before the answer reaches the installer and nothing more is forwarded,
//! as when the operator's process dies right after the API server did the work.

#![allow(clippy::expect_used, clippy::unwrap_used)] // test set-up

mod common;

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cluster::{ClusterSim, RunningSim, SimConfig};
use futures::future::join_all;
use http::{Method, Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::api::networking::v1::IngressClass;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams};
use kube::discovery::{Discovery, Scope, verbs};
use platform::{install, uninstall};
use tokio::net::TcpListener;
use tokio::task::AbortHandle;

type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// Counts the changing requests it forwards and, at the `kill_at`-th, kills the connection.
struct Killer {
    upstream: String,
    client: Client<HttpConnector, Incoming>,
    kill_at: Option<usize>,
    mutating: AtomicUsize,
    killed: AtomicBool,
    connections: Mutex<Vec<AbortHandle>>,
}

impl Killer {
    fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    async fn forward(
        self: Arc<Self>,
        request: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, std::io::Error> {
        let dead = || std::io::Error::other("the installer's process is gone");
        if self.killed.load(Ordering::SeqCst) {
            return Err(dead());
        }
        let changing = request.method() != Method::GET && request.method() != Method::HEAD;
        let (mut parts, body) = request.into_parts();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        parts.uri = format!("{}{path}", self.upstream).parse().expect("uri");
        let answer = self
            .client
            .request(Request::from_parts(parts, body))
            .await
            .map_err(std::io::Error::other)?;
        if changing {
            let n = self.mutating.fetch_add(1, Ordering::SeqCst) + 1;
            if Some(n) == self.kill_at {
                // The API server did the work; the installer never hears of it.
                self.kill();
                return Err(dead());
            }
        }
        if self.killed.load(Ordering::SeqCst) {
            return Err(dead());
        }
        Ok(answer.map(BodyExt::boxed))
    }
}

/// A proxy to `upstream` (plain HTTP) that kills at the `kill_at`-th changing request.
async fn proxy(upstream: String, kill_at: Option<usize>) -> (SocketAddr, Arc<Killer>, AbortHandle) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let killer = Arc::new(Killer {
        upstream,
        client: Client::builder(TokioExecutor::new()).build_http(),
        kill_at,
        mutating: AtomicUsize::new(0),
        killed: AtomicBool::new(false),
        connections: Mutex::new(Vec::new()),
    });
    let serving = killer.clone();
    let accept = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            if serving.killed.load(Ordering::SeqCst) {
                continue; // dropped at once
            }
            let killer = serving.clone();
            let service = hyper::service::service_fn(move |request| {
                let killer = killer.clone();
                async move {
                    Ok::<_, Infallible>(match killer.forward(request).await {
                        Ok(response) => response,
                        // Never reached by the installer: the connection is aborted first.
                        Err(_) => Response::builder()
                            .status(502)
                            .body(Full::new(Bytes::new()).map_err(|e| match e {}).boxed())
                            .expect("response"),
                    })
                }
            });
            let connection = tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
            serving
                .connections
                .lock()
                .unwrap()
                .push(connection.abort_handle());
        }
    });
    (addr, killer, accept.abort_handle())
}

/// A client of the simulator that goes through the proxy at `addr`, as the admin.
async fn client_through(sim: &RunningSim, addr: SocketAddr) -> kube::Client {
    let mut config = kube::Config::new(format!("http://{addr}").parse().expect("url"));
    config.auth_info.token = Some(sim.admin_token().to_owned().into());
    kube::Client::try_from(config).expect("client")
}

/// Every object in the cluster, as `group/kind namespace/name`, over every listable kind the
/// discovery documents name. Events are left out: they record what happened (and expire after
/// an hour on a real cluster, kube-apiserver `--event-ttl`), they are not something installed.
async fn everything(client: &kube::Client) -> BTreeSet<String> {
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .expect("discovery");
    let mut seen = BTreeSet::new();
    for group in discovery.groups() {
        for (resource, capabilities) in group.recommended_resources() {
            if !capabilities.supports_operation(verbs::LIST) || resource.kind == "Event" {
                continue;
            }
            let api: Api<DynamicObject> = match capabilities.scope {
                Scope::Cluster | Scope::Namespaced => Api::all_with(client.clone(), &resource),
            };
            let list = api
                .list(&ListParams::default())
                .await
                .unwrap_or_else(|e| panic!("listing {}: {e}", resource.kind));
            for item in list.items {
                seen.insert(format!(
                    "{}/{} {}/{}",
                    resource.group,
                    resource.kind,
                    item.metadata.namespace.unwrap_or_default(),
                    item.metadata.name.unwrap_or_default()
                ));
            }
        }
    }
    seen
}

/// Waits until the cluster holds exactly `baseline` (a namespace's contents go some time after
/// the namespace is deleted); answers the difference at the deadline.
async fn settles_to(client: &kube::Client, baseline: &BTreeSet<String>) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = everything(client).await;
        let extra: Vec<String> = now
            .symmetric_difference(baseline)
            .map(|line| {
                let sign = if now.contains(line) { "+" } else { "-" };
                format!("{sign} {line}")
            })
            .collect();
        if extra.is_empty() || Instant::now() > deadline {
            return extra;
        }
        // The simulator's namespace controller has no signal to wait on: poll, with the deadline.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A fresh simulator, its admin client, and everything it holds before anything is installed.
/// The simulator's bootstrap makes IngressClass `nginx` for its built-in controller model; a new
/// EKS cluster has no IngressClass (the ingress controller's install makes it), so it is deleted
/// first, as the cluster the provisioner installs into would not have it.
async fn fresh() -> (RunningSim, kube::Client, BTreeSet<String>) {
    let sim = ClusterSim::start(SimConfig::default())
        .await
        .expect("simulator");
    let client = sim.client().await.expect("client");
    Api::<IngressClass>::all(client.clone())
        .delete(platform::names::INGRESS_CLASS, &DeleteParams::default())
        .await
        .expect("the simulator's bootstrap IngressClass");
    let baseline = everything(&client).await;
    (sim, client, baseline)
}

/// How long a killed install may wait: long enough for the simulated rollouts of a whole one.
const WAIT_LIMIT: Duration = Duration::from_secs(30);

/// How many changing calls a whole install makes (no kill; the site's first credentials stored
/// directly, not through the proxy, as the site's pod would).
async fn changing_calls_of_a_whole_install() -> usize {
    let (sim, client, _) = fresh().await;
    let (addr, killer, _accept) = proxy(sim.api_url(), None).await;
    let through = client_through(&sim, addr).await;
    let site = common::play_the_site(client, None);
    install(&through, &common::spec(WAIT_LIMIT), None)
        .await
        .expect("a whole install through the proxy");
    site.await.expect("the site's part");
    killer.mutating.load(Ordering::SeqCst)
}

async fn killed_then_uninstalled(kill_at: usize, whole: usize) {
    let (sim, client, baseline) = fresh().await;
    let (addr, killer, _accept) = proxy(sim.api_url(), Some(kill_at)).await;
    let through = client_through(&sim, addr).await;
    let result = install(&through, &common::spec(WAIT_LIMIT), None).await;
    assert!(
        killer.killed.load(Ordering::SeqCst),
        "kill point {kill_at} of {whole} was reached ({} changing calls made)",
        killer.mutating.load(Ordering::SeqCst)
    );
    assert!(
        result.is_err(),
        "an install killed at {kill_at} reports failure"
    );
    let made = everything(&client).await;
    assert!(
        made.difference(&baseline).next().is_some(),
        "kill point {kill_at}: a changing call reached the API server, yet nothing is new"
    );

    uninstall(&client)
        .await
        .unwrap_or_else(|e| panic!("uninstall after a kill at {kill_at}: {e}"));
    let left = settles_to(&client, &baseline).await;
    assert!(
        left.is_empty(),
        "after an install killed at changing call {kill_at} of {whole} and uninstall, the cluster differs from a fresh one:\n  {}",
        left.join("\n  ")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uninstall_after_an_install_killed_at_every_changing_call_leaves_nothing() {
    let whole = changing_calls_of_a_whole_install().await;
    assert!(
        whole >= 22,
        "a whole install applies at least its 22 objects: {whole} changing calls"
    );
    // Four kill points at a time: each has its own simulator.
    let points: Vec<usize> = (1..=whole).collect();
    for chunk in points.chunks(4) {
        join_all(chunk.iter().map(|&n| killed_then_uninstalled(n, whole))).await;
    }
}
