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

/// Reconciles the whole cluster every tick until the simulator stops.
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
    loop {
        ticker.tick().await;
        lifecycle::namespaces(&registry);
        lifecycle::garbage_collect(&registry);
        deployments::reconcile(&registry);
        replicasets::reconcile(&registry);
        pod_gc.reconcile(&registry);
        kubelet.reconcile(&registry);
        endpoints::reconcile(&registry, &kubelet.local_ports());
        quotas::reconcile(&registry);
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
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
        && !meta::is_deleting(pod)
}
