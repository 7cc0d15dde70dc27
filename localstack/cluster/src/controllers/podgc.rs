//! The pod garbage collector's orphan rule (kubernetes pkg/controller/podgc/gc_controller.go
//! gcOrphaned): a pod bound to a Node that no longer exists, still missing after a quarantine,
//! is marked Failed with a `DisruptionTarget` condition and force-deleted (grace period 0), so
//! that its ReplicaSet makes a replacement.

use crate::meta::Lookup;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::log_write;
use crate::meta;
use crate::registry::{DeleteOptions, Registry, WriteOptions};
use crate::resources::known;

const MANAGER: &str = "pod-garbage-collector";

pub(super) struct PodGc {
    quarantine: Duration,
    /// Missing node names and when they were first seen missing.
    missing_since: HashMap<String, Instant>,
}

impl PodGc {
    pub(super) fn new(quarantine: Duration) -> Self {
        Self {
            quarantine,
            missing_since: HashMap::new(),
        }
    }

    pub(super) fn reconcile(&mut self, registry: &Registry) {
        let nodes: std::collections::HashSet<String> = registry
            .select(known::nodes(), None, None)
            .iter()
            .map(|n| meta::name(n).to_string())
            .collect();
        let now = Instant::now();
        // Only pods bound to a Node that is gone are copied.
        let pods = registry
            .store
            .list_where(known::pods().key(), None, |p| {
                p.at("/spec/nodeName")
                    .and_then(Value::as_str)
                    .is_some_and(|n| !n.is_empty() && !nodes.contains(n))
            })
            .0;
        let mut missing = HashMap::new();
        for pod in &pods {
            let Some(node) = pod
                .at("/spec/nodeName")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty() && !nodes.contains(*n))
            else {
                continue;
            };
            let since = *self.missing_since.get(node).unwrap_or(&now);
            missing.insert(node.to_string(), since);
            if now.duration_since(since) >= self.quarantine {
                delete_orphan(registry, pod);
            }
        }
        self.missing_since = missing;
    }
}

/// markFailedAndDeletePodWithCondition.
fn delete_orphan(registry: &Registry, pod: &Value) {
    let (ns, name) = (meta::namespace(pod), meta::name(pod));
    let node = pod
        .at("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    tracing::info!(pod = %format!("{ns}/{name}"), node, "found orphaned Pod assigned to the Node, deleting");
    let mut next = pod.clone();
    let terminal = matches!(
        pod.at("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    );
    if !terminal {
        next["status"]["phase"] = json!("Failed");
    }
    let mut conditions: Vec<Value> = pod
        .at("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    conditions.retain(|c| c["type"] != "DisruptionTarget");
    conditions.push(json!({
        "type": "DisruptionTarget",
        "status": "True",
        "reason": "DeletionByPodGC",
        "message": "PodGC: node no longer exists",
        "lastProbeTime": null,
        "lastTransitionTime": meta::now_rfc3339(),
    }));
    next["status"]["conditions"] = json!(conditions);
    log_write(
        "mark orphaned pod failed",
        registry.update(
            known::pods(),
            ns,
            name,
            next,
            Some("status"),
            &WriteOptions::controller(MANAGER),
        ),
    );
    let opts = DeleteOptions {
        grace_period_seconds: Some(0),
        precondition_uid: Some(meta::uid(pod).to_string()),
        ..DeleteOptions::default()
    };
    log_write(
        "delete orphaned pod",
        registry.delete(known::pods(), ns, name, &opts),
    );
}
