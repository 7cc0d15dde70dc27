//! NGINX's upstreams as NIC configures them: the ready endpoints of the backend's Service port,
//! as the controller last saw them, and peer selection with failure tracking.
//!
//! - The controller learns of an Endpoints change only after a propagation delay (the
//!   EndpointSlice watch, NIC's queue and the NGINX reload on a real cluster): [`EndpointsView`]
//!   replays every change to the data path `delay` after it happened.
//! - A Service with no ready endpoint gets NIC's default server `127.0.0.1:8181`, which refuses
//!   the connection, so NGINX answers 502 (`internal/configs/version1/config.go`
//!   NewUpstreamWithDefaultServer).
//! - Peers: `random two least_conn` (NIC's default `lb-method`), `max_fails=1 fail_timeout=10s`
//!   (`internal/configs/config_params.go` defaults) with nginx's rule that a lone server is never
//!   marked unavailable (https://nginx.org/en/docs/http/ngx_http_upstream_module.html#server).

use crate::meta::Lookup;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;

use super::servers::Backend;
use crate::meta;
use crate::registry::Registry;
use crate::resources::known;
use crate::store::ChangeKind;

const FAIL_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_FAILS: u32 = 1;

/// The Endpoints objects as the ingress data path currently knows them.
#[derive(Default)]
pub struct EndpointsView {
    known: Mutex<HashMap<(String, String), Value>>,
}

impl EndpointsView {
    fn apply(&self, key: (String, String), object: Option<Value>) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        match object {
            Some(o) => known.insert(key, o),
            None => known.remove(&key),
        };
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<Value> {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }
}

type Pending = VecDeque<(tokio::time::Instant, (String, String), Option<Value>)>;

fn snapshot(registry: &Registry, due: tokio::time::Instant, pending: &mut Pending) {
    for ep in registry.select(known::endpoints(), None, None) {
        let key = (
            meta::namespace(&ep).to_string(),
            meta::name(&ep).to_string(),
        );
        pending.push_back((due, key, Some(ep)));
    }
}

/// Replays Endpoints changes into `view`, each `delay` after it was committed, in order.
pub async fn follow_endpoints(registry: Arc<Registry>, view: Arc<EndpointsView>, delay: Duration) {
    let mut feed = registry.store.subscribe();
    let mut pending: Pending = VecDeque::new();
    snapshot(&registry, tokio::time::Instant::now(), &mut pending);
    loop {
        while let Some((due, _, _)) = pending.front() {
            if *due > tokio::time::Instant::now() {
                break;
            }
            if let Some((_, key, object)) = pending.pop_front() {
                view.apply(key, object);
            }
        }
        let next_due = pending.front().map(|(due, _, _)| *due);
        let change = tokio::select! {
            change = feed.recv() => change,
            () = async {
                match next_due {
                    Some(due) => tokio::time::sleep_until(due).await,
                    None => std::future::pending().await,
                }
            } => continue,
        };
        let due = tokio::time::Instant::now() + delay;
        match change {
            Ok(change) if change.key.resource == known::endpoints().key() => {
                let key = (change.key.namespace.clone(), change.key.name.clone());
                let object = (change.kind != ChangeKind::Deleted).then(|| change.object.clone());
                pending.push_back((due, key, object));
            }
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => snapshot(&registry, due, &mut pending),
            Err(RecvError::Closed) => return,
        }
    }
}

/// One upstream server: an endpoint address, and the pod behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct Peer {
    pub address: String,
    pub pod: String,
    pub pod_uid: String,
    /// Set when a local process serves the pod: a local command on 127.0.0.1, or a pod run
    /// from an image on its own loopback IP.
    pub local: Option<std::net::SocketAddr>,
}

/// The service port a backend names (by number or name), as NIC resolves it
/// (controller.go getEndpointsForIngressBackend).
fn service_port<'a>(service: &'a Value, backend: &Backend) -> Option<&'a Value> {
    service
        .at("/spec/ports")
        .and_then(Value::as_array)?
        .iter()
        .find(
            |p| match (backend.port.get("number"), backend.port.get("name")) {
                (Some(n), _) => p.get("port") == Some(n),
                (None, Some(name)) => p.get("name") == Some(name),
                _ => false,
            },
        )
}

/// The ready endpoints of a backend as the data path knows them; empty means NIC's default
/// server (502).
pub fn peers(registry: &Registry, view: &EndpointsView, backend: &Backend) -> Vec<Peer> {
    let Some(service) = registry.try_get(known::services(), &backend.namespace, &backend.service)
    else {
        return Vec::new();
    };
    let Some(port) = service_port(&service, backend) else {
        return Vec::new();
    };
    let port_name = port.get("name").and_then(Value::as_str).unwrap_or("");
    let Some(endpoints) = view.get(&backend.namespace, &backend.service) else {
        return Vec::new();
    };
    let mut peers = Vec::new();
    for subset in endpoints
        .get("subsets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let number = subset
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|p| p.get("name").and_then(Value::as_str).unwrap_or("") == port_name)
            .and_then(|p| p.get("port").and_then(Value::as_u64))
            .and_then(|p| u16::try_from(p).ok());
        let Some(number) = number else { continue };
        for address in subset
            .get("addresses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let ip = address.get("ip").and_then(Value::as_str).unwrap_or("");
            let field = |k: &str| {
                address
                    .at(&format!("/targetRef/{k}"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            peers.push(Peer {
                address: format!("{ip}:{number}"),
                pod: field("name"),
                pod_uid: field("uid"),
                local: ip
                    .parse::<std::net::Ipv4Addr>()
                    .ok()
                    .filter(std::net::Ipv4Addr::is_loopback)
                    .map(|ip| std::net::SocketAddr::from((ip, number))),
            });
        }
    }
    // createUpstream sorts the servers by address.
    peers.sort_by(|a, b| a.address.cmp(&b.address));
    peers
}

#[derive(Default)]
struct PeerState {
    conns: usize,
    fails: u32,
    failed_at: Option<Instant>,
}

/// The shared state of every upstream (`zone` is configured, so it is one for all workers).
#[derive(Default)]
pub struct Balancer {
    upstreams: Mutex<HashMap<String, HashMap<String, PeerState>>>,
}

impl Balancer {
    fn with<T>(&self, upstream: &str, f: impl FnOnce(&mut HashMap<String, PeerState>) -> T) -> T {
        let mut all = self.upstreams.lock().unwrap_or_else(|p| p.into_inner());
        f(all.entry(upstream.to_string()).or_default())
    }

    /// ngx_http_upstream_get_random2_peer: of two random available peers not yet tried, the one
    /// with fewer active connections; None is "no live upstreams".
    pub fn pick(&self, upstream: &str, peers: &[Peer], tried: &[String]) -> Option<Peer> {
        let now = Instant::now();
        let single = peers.len() == 1;
        self.with(upstream, |states| {
            let available: Vec<&Peer> = peers
                .iter()
                .filter(|p| !tried.contains(&p.address))
                .filter(|p| {
                    single
                        || states.get(&p.address).is_none_or(|s| {
                            s.fails < MAX_FAILS
                                || s.failed_at
                                    .is_none_or(|t| now.duration_since(t) > FAIL_TIMEOUT)
                        })
                })
                .collect();
            let chosen = match available.len() {
                0 => return None,
                1 => available[0],
                n => {
                    let mut rng = rand::rng();
                    let a = available[rng.random_range(0..n)];
                    let b = available[rng.random_range(0..n)];
                    let conns = |p: &Peer| states.get(&p.address).map_or(0, |s| s.conns);
                    if conns(b) < conns(a) { b } else { a }
                }
            };
            states.entry(chosen.address.clone()).or_default().conns += 1;
            Some(chosen.clone())
        })
    }

    /// Ends one attempt: frees the connection and records a failure or a success.
    pub fn done(&self, upstream: &str, peer: &Peer, failed: bool) {
        let now = Instant::now();
        self.with(upstream, |states| {
            let state = states.entry(peer.address.clone()).or_default();
            state.conns = state.conns.saturating_sub(1);
            if failed {
                state.fails += 1;
                state.failed_at = Some(now);
            } else if state
                .failed_at
                .is_none_or(|t| now.duration_since(t) > FAIL_TIMEOUT)
            {
                state.fails = 0;
            }
        });
    }
}
