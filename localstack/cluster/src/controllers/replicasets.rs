//! The ReplicaSet controller: keeps the number of owned pods at `spec.replicas`.

use crate::meta::Lookup;
use serde_json::{Value, json};

use super::{controller_ref, log_write, owned_by, pod_ready};
use crate::meta;
use crate::registry::{DeleteOptions, Registry, WriteOptions};
use crate::resources::known;

const MANAGER: &str = "kube-controller-manager";

pub(super) fn reconcile(registry: &Registry, scope: &super::Scope) {
    for rs in scope.select(registry, known::replicasets()) {
        if meta::is_deleting(&rs) {
            continue;
        }
        let desired = rs.at("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
        let mut pods: Vec<Value> = owned_by(registry, known::pods(), &rs)
            .into_iter()
            // controller_utils.go FilterActivePods: terminating pods are replaced, not counted.
            .filter(|p| !meta::is_deleting(p))
            .collect();
        let current = pods.len() as i64;
        let mut failure = None;
        if current < desired {
            for _ in current..desired {
                if let Err(e) = create_pod(registry, &rs) {
                    failure = Some(e);
                    break;
                }
            }
        } else if current > desired {
            // Delete the least useful pods first: not ready, then the youngest.
            pods.sort_by_key(|p| {
                (
                    pod_ready(p),
                    std::cmp::Reverse(
                        p.at("/metadata/creationTimestamp")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                    ),
                )
            });
            for pod in pods.iter().take((current - desired) as usize) {
                log_write(
                    "delete pod",
                    registry.delete(
                        known::pods(),
                        meta::namespace(pod),
                        meta::name(pod),
                        &DeleteOptions::default(),
                    ),
                );
            }
            pods.drain(..(current - desired) as usize);
        }
        let ready = pods.iter().filter(|p| pod_ready(p)).count() as i64;
        let mut status = json!({
            "replicas": pods.len(),
            "fullyLabeledReplicas": pods.len(),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": rs.at("/metadata/generation").cloned().unwrap_or(json!(1)),
        });
        if let Some(message) = &failure {
            let previous = rs
                .at("/status/conditions/0/lastTransitionTime")
                .cloned()
                .unwrap_or_else(|| json!(meta::now_rfc3339()));
            status["conditions"] = json!([{"type": "ReplicaFailure", "status": "True", "lastTransitionTime": previous, "reason": "FailedCreate", "message": message}]);
        }
        for k in ["fullyLabeledReplicas", "readyReplicas", "availableReplicas"] {
            if status[k] == 0
                && let Some(m) = status.as_object_mut()
            {
                m.remove(k);
            }
        }
        if rs.get("status") != Some(&status) {
            let mut next = rs.clone();
            next["status"] = status;
            log_write(
                "replicaset status",
                registry.update(
                    known::replicasets(),
                    meta::namespace(&rs),
                    meta::name(&rs),
                    next,
                    Some("status"),
                    &WriteOptions::controller(MANAGER),
                ),
            );
        }
    }
}

/// Creates one pod from the template; a rejected create (quota, LimitRange) becomes a
/// `FailedCreate` event and the error message, as the real controller reports it.
fn create_pod(registry: &Registry, rs: &Value) -> Result<(), String> {
    let template = rs.at("/spec/template").cloned().unwrap_or(json!({}));
    let mut metadata = template.get("metadata").cloned().unwrap_or(json!({}));
    metadata["generateName"] = json!(format!("{}-", meta::name(rs)));
    metadata["ownerReferences"] = json!([controller_ref(rs)]);
    if let Some(m) = metadata.as_object_mut() {
        m.remove("name");
        m.remove("creationTimestamp");
    }
    let pod =
        json!({"metadata": metadata, "spec": template.get("spec").cloned().unwrap_or(json!({}))});
    match registry.create(
        known::pods(),
        meta::namespace(rs),
        pod,
        &WriteOptions::controller(MANAGER),
    ) {
        Ok(created) => {
            super::pods::event(
                registry,
                rs,
                "Normal",
                "SuccessfulCreate",
                &format!("Created pod: {}", meta::name(&created)),
                "replicaset-controller",
            );
            Ok(())
        }
        Err(e) if e.code == 403 => {
            let message = format!("Error creating: {}", e.message);
            super::pods::event(
                registry,
                rs,
                "Warning",
                "FailedCreate",
                &message,
                "replicaset-controller",
            );
            Err(message)
        }
        Err(e) => {
            log_write::<()>("create pod", Err(e));
            Err("pod creation failed".into())
        }
    }
}
