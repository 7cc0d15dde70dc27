//! Controllers that run inside the simulator: nodes, Deployments → ReplicaSets → Pods, the kubelet's
//! view of pods (including graceful termination), Service endpoints, garbage collection and
//! namespace cleanup.
//!
//! They run as one loop that reconciles everything every tick; writes go through the same
//! [`Registry`] as API calls, so watchers see them like writes from a real controller manager.

mod deployments;
mod endpoints;
mod images;
mod lifecycle;
mod podgc;
mod pods;
mod probes;
mod processes;
pub(crate) mod pull_secrets;
mod quotas;
mod replicasets;
mod scheduling;
mod termination;

use crate::meta::Lookup;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::SimConfig;
use crate::containers::Containers;
use crate::meta;
use crate::registry::{Registry, WriteOptions};
use crate::resources::{ResourceType, find, known};

pub use images::ApiAccess;
pub use pods::NODE_NAMES;

const TICK: Duration = Duration::from_millis(50);

/// Objects every cluster has before anyone writes: namespaces, the nginx IngressClass, and the
/// three fixed nodes unless nodes join from the AWS emulator's instances.
pub fn bootstrap(registry: &Registry, fixed_nodes: bool) {
    let opts = WriteOptions::controller("cluster-bootstrap");
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        create_quietly(
            registry,
            known::namespaces(),
            "",
            json!({"metadata": {"name": ns}}),
            &opts,
        );
    }
    for (i, node) in NODE_NAMES.iter().enumerate().filter(|_| fixed_nodes) {
        create_quietly(
            registry,
            known::nodes(),
            "",
            pods::node_object(node, i),
            &opts,
        );
    }
    if let Some(class) = find("networking.k8s.io", "v1", "ingressclasses") {
        create_quietly(
            registry,
            class,
            "",
            json!({"metadata": {"name": "nginx"}, "spec": {"controller": "nginx.org/ingress-controller"}}),
            &opts,
        );
    }
    create_quietly(
        registry,
        known::services(),
        "default",
        json!({"metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}}, "spec": {"ports": [{"name": "https", "port": 443, "targetPort": 6443}]}}),
        &opts,
    );
}

fn create_quietly(
    registry: &Registry,
    rt: &ResourceType,
    ns: &str,
    obj: Value,
    opts: &WriteOptions,
) {
    if let Err(e) = registry.create(rt, ns, obj, opts) {
        tracing::warn!(kind = rt.kind, error = %e, "bootstrap object not created");
    }
}

/// Logs a failed controller write; the next tick retries from fresh state.
fn log_write<T>(what: &str, result: Result<T, crate::error::ApiError>) -> Option<T> {
    match result {
        Ok(v) => Some(v),
        Err(e) if e.code == 409 || e.code == 404 => {
            tracing::debug!(what, error = %e, "controller write raced; retrying next tick");
            None
        }
        Err(e) => {
            tracing::warn!(what, error = %e, "controller write failed");
            None
        }
    }
}

/// How often every controller looks at every object, whatever changed. The
/// kube-controller-manager's informers deliver changes and requeue what waits on time (a
/// Deployment's progress deadline, `pkg/controller/deployment/progress.go`
/// requeueStuckDeployment, modelled in [`run`]); kube-scheduler moves unschedulable pods back on cluster events (see
/// [`Scope::of`]) or after `podMaxInUnschedulablePodsDuration`, 5 minutes
/// (`pkg/scheduler/backend/queue/scheduling_queue.go`).
const RESYNC: Duration = Duration::from_secs(10);

/// What one pass of the loop looks at: everything (a resync, a Node changed, the history of
/// changes was compacted) or the namespaces something was written in since the last pass. A
/// controller's own writes put their namespace in the next pass, which settles it.
pub(super) enum Scope {
    All,
    Namespaces(std::collections::BTreeSet<String>),
}

impl Scope {
    /// The namespaces written in by `changes`, or everything when a cluster-scoped object other
    /// than a Namespace changed (Nodes decide where pods run) or a node's pod stopped holding
    /// its place (deleted, or finished): kube-scheduler's queue moves every unschedulable pod
    /// back on such events (`AssignedPodDelete`, `NodeAdd`, `NodeUpdate` in
    /// pkg/scheduler/framework/types.go cluster events).
    fn of(changes: &[Arc<crate::store::Change>]) -> Scope {
        let mut namespaces = std::collections::BTreeSet::new();
        for change in changes {
            let key = &change.key;
            // No controller the simulator runs acts on an Event (kube-controller-manager's
            // controllers do not watch them; the quota controller counts `count/events` on its
            // periodic resync, pkg/controller/resourcequota/resource_quota_controller.go): an
            // Ingress controller recording one per minion must not make every namespace dirty.
            if key.resource == known::events().key() {
                continue;
            }
            if key.resource == known::pods().key() && frees_a_place(change) {
                return Scope::All;
            }
            if !key.namespace.is_empty() {
                namespaces.insert(key.namespace.clone());
            } else if key.resource == known::namespaces().key() {
                namespaces.insert(key.name.clone());
            } else {
                return Scope::All;
            }
        }
        Scope::Namespaces(namespaces)
    }

    pub(super) fn covers(&self, namespace: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Namespaces(set) => set.contains(namespace),
        }
    }

    /// The objects of a namespaced type in scope, in key order.
    pub(super) fn select(&self, registry: &Registry, rt: &ResourceType) -> Vec<Value> {
        match self {
            Scope::All => registry.select(rt, None, None),
            Scope::Namespaces(set) => set
                .iter()
                .flat_map(|ns| registry.select(rt, Some(ns), None))
                .collect(),
        }
    }
}

/// A pod bound to a node that was deleted or reached a terminal phase.
fn frees_a_place(change: &crate::store::Change) -> bool {
    let bound = |pod: &Value| {
        pod.at("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty())
    };
    bound(&change.object)
        && match change.kind {
            crate::store::ChangeKind::Deleted => true,
            _ => {
                meta::is_terminal_pod(&change.object)
                    && !change.previous.as_ref().is_some_and(meta::is_terminal_pod)
            }
        }
}

/// Whether the garbage collector has work: an object went or is going (its dependents are
/// orphaned or wait for a foreground deletion). A dependent created with an owner that never
/// existed waits for the next resync.
fn deletes(changes: &[Arc<crate::store::Change>]) -> bool {
    changes
        .iter()
        .any(|c| c.kind == crate::store::ChangeKind::Deleted || meta::is_deleting(&c.object))
}

/// Reconciles what changed every tick, and everything every [`RESYNC`], until the simulator stops.
pub async fn run(
    registry: Arc<Registry>,
    config: Arc<SimConfig>,
    containers: Arc<Containers>,
    machines: Arc<crate::cloud::Machines>,
    api: ApiAccess,
    logs: Arc<crate::logs::ContainerLogs>,
) {
    let mut pod_gc = podgc::PodGc::new(config.orphaned_pod_quarantine);
    let mut kubelet = pods::Kubelet::new(config.clone(), containers, machines, api, logs);
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first pass looks at everything.
    let mut seen = 0;
    let mut resynced: Option<std::time::Instant> = None;
    let mut ports = std::collections::HashMap::new();
    // The earliest moment each namespace's Deployments must be looked at again.
    let mut waiting: std::collections::HashMap<String, std::time::Instant> = Default::default();
    loop {
        ticker.tick().await;
        let due = resynced.is_none_or(|at| at.elapsed() >= RESYNC);
        let (scope, collect) = match registry.store.changes_since(seen) {
            Some((changes, revision)) => {
                seen = revision;
                let scope = if due { Scope::All } else { Scope::of(&changes) };
                (scope, due || deletes(&changes))
            }
            None => {
                seen = registry.store.revision();
                (Scope::All, true)
            }
        };
        let mut scope = scope;
        match &mut scope {
            Scope::All => {
                resynced = Some(std::time::Instant::now());
                waiting.clear();
            }
            // What waits on time (progress.go requeueStuckDeployment) is looked at when due.
            Scope::Namespaces(set) => {
                let now = std::time::Instant::now();
                waiting.retain(|namespace, due| {
                    if *due <= now {
                        set.insert(namespace.clone());
                    }
                    *due > now
                });
            }
        }
        lifecycle::namespaces(&registry);
        if collect {
            lifecycle::garbage_collect(&registry);
        }
        for (namespace, at) in deployments::reconcile(&registry, &scope) {
            let due = waiting.entry(namespace).or_insert(at);
            *due = (*due).min(at);
        }
        replicasets::reconcile(&registry, &scope);
        pod_gc.reconcile(&registry);
        kubelet.reconcile(&registry, &scope);
        // A local process's port is the kubelet's, not the API's: when one changes, every
        // Service is looked at again.
        let local = kubelet.local_ports();
        let endpoints_scope = if local == ports { &scope } else { &Scope::All };
        endpoints::reconcile(&registry, endpoints_scope, &local);
        ports = local;
        quotas::reconcile(&registry, &scope);
    }
}

/// An ownerReference marking `owner` as the managing controller.
fn controller_ref(owner: &Value) -> Value {
    json!({
        "apiVersion": owner.get("apiVersion").cloned().unwrap_or(Value::Null),
        "kind": owner.get("kind").cloned().unwrap_or(Value::Null),
        "name": meta::name(owner),
        "uid": meta::uid(owner),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// Objects in `ns` whose controller is `owner`.
fn owned_by(registry: &Registry, rt: &ResourceType, owner: &Value) -> Vec<Value> {
    let uid = meta::uid(owner);
    registry.select_where(rt, meta::namespace(owner), |o| {
        meta::controller_uid(o) == Some(uid)
    })
}

fn pod_ready(pod: &Value) -> bool {
    pod.at("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
        && !meta::is_deleting(pod)
}
