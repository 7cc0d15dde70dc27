//! The Deployment controller: one ReplicaSet per pod template, rolling updates bounded by
//! maxSurge/maxUnavailable, and the status `kubectl rollout status` reads.

use crate::meta::Lookup;
use serde_json::{Value, json};
use std::time::Duration;

use super::{controller_ref, log_write, owned_by, pod_ready};
use crate::meta;
use crate::registry::{Registry, WriteOptions};
use crate::resources::known;
use crate::selectors::LabelSelector;

const MANAGER: &str = "kube-controller-manager";
const REVISION: &str = "deployment.kubernetes.io/revision";

/// `pod-template-hash` of a template, FNV-32 of its JSON encoded like `rand.SafeEncodeString`.
pub fn template_hash(template: &Value) -> String {
    meta::safe_encode(meta::fnv32(template.to_string().as_bytes()))
}

/// Resolves an int-or-percent against `total`, rounding up (surge) or down (unavailable).
fn scaled_value(v: Option<&Value>, total: i64, round_up: bool) -> i64 {
    match v {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(s)) => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            let x = pct * total;
            if round_up { (x + 99) / 100 } else { x / 100 }
        }
        _ => 0,
    }
}

fn replicas(obj: &Value, pointer: &str) -> i64 {
    obj.at(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn revision_of(rs: &Value) -> i64 {
    meta::annotation(rs, REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// Reconciles the Deployments in scope; returns the namespaces of those whose rollout waits on
/// time, with when to look again (progress.go requeueStuckDeployment).
pub(super) fn reconcile(
    registry: &Registry,
    scope: &super::Scope,
) -> Vec<(String, std::time::Instant)> {
    let mut requeue = Vec::new();
    for deployment in scope.select(registry, known::deployments()) {
        if meta::is_deleting(&deployment) {
            continue;
        }
        if let Some(after) = reconcile_one(registry, &deployment) {
            requeue.push((
                meta::namespace(&deployment).to_string(),
                std::time::Instant::now() + after,
            ));
        }
    }
    requeue
}

fn set_rs_replicas(registry: &Registry, rs: &Value, n: i64) {
    if replicas(rs, "/spec/replicas") == n {
        return;
    }
    let patch = json!({"spec": {"replicas": n}}).to_string();
    log_write(
        "scale replicaset",
        registry.patch(
            known::replicasets(),
            meta::namespace(rs),
            meta::name(rs),
            crate::registry::PatchKind::Merge,
            patch.as_bytes(),
            None,
            &WriteOptions::controller(MANAGER),
        ),
    );
}

fn reconcile_one(registry: &Registry, deployment: &Value) -> Option<Duration> {
    let ns = meta::namespace(deployment);
    let name = meta::name(deployment);
    let template = deployment.at("/spec/template").cloned()?;
    let hash = template_hash(&template);
    let desired = replicas(deployment, "/spec/replicas");
    let all_rs = owned_by(registry, known::replicasets(), deployment);
    let max_revision = all_rs.iter().map(revision_of).max().unwrap_or(0);
    let new_name = format!("{name}-{hash}");

    let mut created_new_rs = false;
    let new_rs = match all_rs.iter().find(|rs| meta::name(rs) == new_name) {
        Some(rs) if revision_of(rs) < max_revision || revision_of(rs) == 0 => {
            // Rolling back to an older template makes its ReplicaSet the newest revision again.
            let patch =
                json!({"metadata": {"annotations": {REVISION: (max_revision + 1).to_string()}}})
                    .to_string();
            log_write(
                "bump revision",
                registry.patch(
                    known::replicasets(),
                    ns,
                    &new_name,
                    crate::registry::PatchKind::Merge,
                    patch.as_bytes(),
                    None,
                    &WriteOptions::controller(MANAGER),
                ),
            )
        }
        Some(rs) => Some(rs.clone()),
        None => {
            let mut pod_template = template.clone();
            meta::object_entry(
                meta::object_entry(
                    pod_template
                        .as_object_mut()
                        .map_or(&mut serde_json::Map::new(), |m| m),
                    "metadata",
                ),
                "labels",
            );
            pod_template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
            let mut selector = deployment
                .at("/spec/selector")
                .cloned()
                .unwrap_or(json!({}));
            selector["matchLabels"]["pod-template-hash"] = json!(hash);
            let mut labels = template
                .at("/metadata/labels")
                .cloned()
                .unwrap_or(json!({}));
            labels["pod-template-hash"] = json!(hash);
            let is_first = all_rs.is_empty();
            let recreate =
                deployment.at("/spec/strategy/type").and_then(Value::as_str) == Some("Recreate");
            let initial = if is_first && !recreate { desired } else { 0 };
            let rs = json!({
                "metadata": {
                    "name": new_name,
                    "labels": labels,
                    "annotations": {
                        REVISION: (max_revision + 1).to_string(),
                        "deployment.kubernetes.io/desired-replicas": desired.to_string(),
                        "deployment.kubernetes.io/max-replicas": (desired + scaled_value(deployment.at("/spec/strategy/rollingUpdate/maxSurge"), desired, true)).to_string(),
                    },
                    "ownerReferences": [controller_ref(deployment)],
                },
                "spec": {"replicas": initial, "selector": selector, "template": pod_template, "minReadySeconds": deployment.at("/spec/minReadySeconds").cloned().unwrap_or(json!(0))},
            });
            let created = log_write(
                "create replicaset",
                registry.create(
                    known::replicasets(),
                    ns,
                    rs,
                    &WriteOptions::controller(MANAGER),
                ),
            );
            if created.is_some() {
                created_new_rs = true;
                record_event(
                    registry,
                    deployment,
                    "ScalingReplicaSet",
                    &format!("Scaled up replica set {new_name} from 0 to {initial}"),
                );
            }
            created
        }
    };
    let new_rs = new_rs?;
    sync_revision_annotations(registry, deployment, &new_rs);
    let old_rs: Vec<&Value> = all_rs
        .iter()
        .filter(|rs| meta::name(rs) != new_name)
        .collect();

    let selector = deployment
        .at("/spec/selector")
        .and_then(|s| LabelSelector::from_object(s).ok())
        .unwrap_or_default();
    let pods: Vec<Value> = registry
        .select(known::pods(), Some(ns), Some(&selector))
        .into_iter()
        // controller_utils.go IsPodActive: a terminating pod is neither a replica nor available.
        .filter(|p| !meta::is_deleting(p))
        .collect();
    let pods_of = |rs: &Value| -> Vec<Value> {
        pods.iter()
            .filter(|p| meta::controller_uid(p) == Some(meta::uid(rs)))
            .cloned()
            .collect()
    };
    let available_of = |rs: &Value| pods_of(rs).into_iter().filter(pod_ready).count() as i64;

    let paused = deployment.at("/spec/paused").and_then(Value::as_bool) == Some(true);
    if !paused {
        if deployment.at("/spec/strategy/type").and_then(Value::as_str) == Some("Recreate") {
            let old_pods: usize = old_rs.iter().map(|rs| pods_of(rs).len()).sum();
            for rs in &old_rs {
                set_rs_replicas(registry, rs, 0);
            }
            if old_pods == 0 {
                set_rs_replicas(registry, &new_rs, desired);
            }
        } else {
            rolling_update(
                registry,
                deployment,
                &new_rs,
                &old_rs,
                desired,
                &available_of,
            );
        }
    }
    // rolling.go `rolloutRolling` (and `rolloutRecreate`) clean up once the rollout is complete
    // (`DeploymentComplete`); sync.go `sync` does so for a paused Deployment.
    let updated = pods_of(&new_rs).len() as i64;
    let total: i64 = all_rs.iter().map(|rs| pods_of(rs).len() as i64).sum();
    let complete = updated == desired && total == desired && available_of(&new_rs) == desired;
    if paused || complete {
        cleanup_old_replica_sets(registry, deployment, &old_rs);
    }
    update_status(
        registry,
        deployment,
        &new_rs,
        &all_rs,
        &pods_of,
        desired,
        created_new_rs,
    )
}

/// Keeps at most `spec.revisionHistoryLimit` old ReplicaSets, deleting the oldest revisions
/// first, and only those scaled to zero with no replicas left (k8s.io/kubernetes
/// pkg/controller/deployment/sync.go `cleanupDeployment`). Without a limit nothing is removed
/// (`HasRevisionHistoryLimit`); the API server defaults it to 10 for apps/v1.
fn cleanup_old_replica_sets(registry: &Registry, deployment: &Value, old_rs: &[&Value]) {
    let Some(limit) = deployment
        .at("/spec/revisionHistoryLimit")
        .and_then(Value::as_i64)
    else {
        return;
    };
    // aliveFilter: a ReplicaSet being deleted is not counted.
    let mut cleanable: Vec<&Value> = old_rs
        .iter()
        .copied()
        .filter(|rs| !meta::is_deleting(rs))
        .collect();
    let diff = cleanable.len() as i64 - limit;
    if diff <= 0 {
        return;
    }
    // ReplicaSetsByRevision: oldest revision first.
    cleanable.sort_by_key(|rs| revision_of(rs));
    for rs in cleanable.into_iter().take(diff as usize) {
        let generation = rs.at("/metadata/generation").and_then(Value::as_i64);
        let observed = rs.at("/status/observedGeneration").and_then(Value::as_i64);
        if replicas(rs, "/status/replicas") != 0
            || replicas(rs, "/spec/replicas") != 0
            || generation > observed
        {
            continue;
        }
        let opts = crate::registry::DeleteOptions {
            precondition_uid: Some(meta::uid(rs).to_string()),
            ..crate::registry::DeleteOptions::default()
        };
        log_write(
            "clean up old replicaset",
            registry.delete(
                known::replicasets(),
                meta::namespace(rs),
                meta::name(rs),
                &opts,
            ),
        );
    }
}

/// Deployment annotations the controller does not copy to its ReplicaSets (`skipCopyAnnotation`).
fn copied_annotation(key: &str) -> bool {
    !matches!(
        key,
        "kubectl.kubernetes.io/last-applied-configuration"
            | REVISION
            | "deployment.kubernetes.io/revision-history"
            | "deployment.kubernetes.io/desired-replicas"
            | "deployment.kubernetes.io/max-replicas"
            | "deprecated.deployment.rollback.to"
    )
}

/// The newest ReplicaSet carries the Deployment's annotations (so `kubernetes.io/change-cause`
/// shows in `kubectl rollout history`), and the Deployment carries the newest revision number.
fn sync_revision_annotations(registry: &Registry, deployment: &Value, new_rs: &Value) {
    let opts = WriteOptions::controller(MANAGER);
    let missing: serde_json::Map<String, Value> = deployment
        .at("/metadata/annotations")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(k, v)| copied_annotation(k) && meta::annotation(new_rs, k) != v.as_str())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !missing.is_empty() {
        let patch = json!({"metadata": {"annotations": missing}}).to_string();
        log_write(
            "copy annotations to replicaset",
            registry.patch(
                known::replicasets(),
                meta::namespace(new_rs),
                meta::name(new_rs),
                crate::registry::PatchKind::Merge,
                patch.as_bytes(),
                None,
                &opts,
            ),
        );
    }
    let revision = revision_of(new_rs).to_string();
    if revision != "0" && meta::annotation(deployment, REVISION) != Some(revision.as_str()) {
        let patch = json!({"metadata": {"annotations": {REVISION: revision}}}).to_string();
        log_write(
            "deployment revision",
            registry.patch(
                known::deployments(),
                meta::namespace(deployment),
                meta::name(deployment),
                crate::registry::PatchKind::Merge,
                patch.as_bytes(),
                None,
                &opts,
            ),
        );
    }
}

fn rolling_update(
    registry: &Registry,
    deployment: &Value,
    new_rs: &Value,
    old_rs: &[&Value],
    desired: i64,
    available_of: &dyn Fn(&Value) -> i64,
) {
    let max_surge = scaled_value(
        deployment.at("/spec/strategy/rollingUpdate/maxSurge"),
        desired,
        true,
    );
    let mut max_unavailable = scaled_value(
        deployment.at("/spec/strategy/rollingUpdate/maxUnavailable"),
        desired,
        false,
    );
    if max_surge == 0 && max_unavailable == 0 {
        max_unavailable = 1;
    }
    let new_replicas = replicas(new_rs, "/spec/replicas");
    let old_total: i64 = old_rs.iter().map(|rs| replicas(rs, "/spec/replicas")).sum();

    // Scale up the new ReplicaSet within the surge budget.
    if new_replicas < desired {
        let room = desired + max_surge - (new_replicas + old_total);
        if room > 0 {
            set_rs_replicas(registry, new_rs, desired.min(new_replicas + room));
        }
    } else if new_replicas > desired {
        set_rs_replicas(registry, new_rs, desired);
    }

    // Scale down old ReplicaSets while keeping desired - maxUnavailable pods available.
    let min_available = desired - max_unavailable;
    let new_unavailable = (new_replicas - available_of(new_rs)).max(0);
    let all_total = new_replicas + old_total;
    let mut budget = all_total - min_available - new_unavailable;
    // Old pods that are not available can always go: they do not count towards availability.
    for rs in old_rs {
        let unhealthy = replicas(rs, "/spec/replicas") - available_of(rs);
        if unhealthy > 0 {
            set_rs_replicas(registry, rs, replicas(rs, "/spec/replicas") - unhealthy);
        }
    }
    for rs in old_rs {
        if budget <= 0 {
            break;
        }
        let current = replicas(rs, "/spec/replicas").min(available_of(rs));
        let cut = current.min(budget);
        if cut > 0 {
            set_rs_replicas(registry, rs, current - cut);
            budget -= cut;
            record_event(
                registry,
                deployment,
                "ScalingReplicaSet",
                &format!(
                    "Scaled down replica set {} from {current} to {}",
                    meta::name(rs),
                    current - cut
                ),
            );
        }
    }
}

fn condition(
    kind: &str,
    status: bool,
    reason: &str,
    message: &str,
    previous: Option<&Value>,
) -> Value {
    let now = meta::now_rfc3339();
    let status = if status { "True" } else { "False" };
    let same = previous.is_some_and(|p| p["status"] == status && p["reason"] == reason);
    // deployment_util.go SetDeploymentCondition: the same status and reason change nothing.
    if let (true, Some(p)) = (same, previous) {
        return p.clone();
    }
    let transition = if previous.is_some_and(|p| p["status"] == status) {
        previous
            .and_then(|p| p.get("lastTransitionTime").cloned())
            .unwrap_or(json!(now))
    } else {
        json!(now)
    };
    json!({"type": kind, "status": status, "lastUpdateTime": now, "lastTransitionTime": transition, "reason": reason, "message": message})
}

fn update_status(
    registry: &Registry,
    deployment: &Value,
    new_rs: &Value,
    all_rs: &[Value],
    pods_of: &dyn Fn(&Value) -> Vec<Value>,
    desired: i64,
    created_new_rs: bool,
) -> Option<Duration> {
    let all_pods: Vec<Value> = all_rs.iter().flat_map(pods_of).collect();
    let updated = pods_of(new_rs).len() as i64;
    let total = all_pods.len() as i64;
    let ready = all_pods.iter().filter(|p| pod_ready(p)).count() as i64;
    let available = ready;
    let max_unavailable = scaled_value(
        deployment.at("/spec/strategy/rollingUpdate/maxUnavailable"),
        desired,
        false,
    );
    let previous = |kind: &str| {
        deployment
            .at("/status/conditions")
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
            .cloned()
    };
    let prev_available = previous("Available");
    let rs_name = meta::name(new_rs);
    // sync.go getNewReplicaSet sets the Progressing condition before the rollout is looked at:
    // NewReplicaSetCreated when it created the new ReplicaSet, FoundNewReplicaSet when there was
    // none yet.
    let prev_progressing = match previous("Progressing") {
        p if created_new_rs => Some(condition(
            "Progressing",
            true,
            "NewReplicaSetCreated",
            &format!("Created new replica set {rs_name:?}"),
            p.as_ref(),
        )),
        None => Some(condition(
            "Progressing",
            true,
            "FoundNewReplicaSet",
            &format!("Found new replica set {rs_name:?}"),
            None,
        )),
        p => p,
    };
    let available_cond = if available >= desired - max_unavailable {
        condition(
            "Available",
            true,
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            prev_available.as_ref(),
        )
    } else {
        condition(
            "Available",
            false,
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            prev_available.as_ref(),
        )
    };
    // pkg/controller/deployment/progress.go syncRolloutStatus: the Progressing condition is
    // carried over from the current status unless one of its cases applies.
    let complete = updated == desired && total == desired && available == desired;
    let deadline = deployment
        .at("/spec/progressDeadlineSeconds")
        .and_then(Value::as_u64)
        .unwrap_or(600);
    let reason_is = |r: &str| prev_progressing.as_ref().is_some_and(|p| p["reason"] == r);
    // deployment/util/deployment_util.go DeploymentProgressing: more updated, ready or
    // available replicas, or fewer old ones, than the status says (a zero count is omitted
    // from the status, so absent reads 0). Only progress moves lastUpdateTime, which the
    // progress deadline counts from.
    let old = |k: &str| {
        deployment
            .at(&format!("/status/{k}"))
            .and_then(Value::as_i64)
            .unwrap_or(0)
    };
    let progressing = updated > old("updatedReplicas")
        || total - updated < old("replicas") - old("updatedReplicas")
        || ready > old("readyReplicas")
        || available > old("availableReplicas");
    // DeploymentTimedOut: once timed out a rollout stays timed out (until progress or a new
    // rollout); a complete one never times out.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let left = |c: &Value| {
        c["lastUpdateTime"]
            .as_str()
            .and_then(meta::parse_rfc3339)
            .map(|t| Duration::from_secs(t + deadline).saturating_sub(now))
    };
    let timed_out = reason_is("ProgressDeadlineExceeded")
        || (!reason_is("NewReplicaSetAvailable")
            && prev_progressing
                .as_ref()
                .and_then(left)
                .is_some_and(|l| l.is_zero()));
    // isCompleteDeployment: a finished rollout is not looked at again.
    let finished = total == updated && reason_is("NewReplicaSetAvailable");
    let progressing_cond = match &prev_progressing {
        _ if finished => prev_progressing.clone(),
        _ if complete => Some(condition(
            "Progressing",
            true,
            "NewReplicaSetAvailable",
            &format!("ReplicaSet {rs_name:?} has successfully progressed."),
            prev_progressing.as_ref(),
        )),
        Some(p) if progressing => {
            // A Progressing condition that is already True keeps its lastTransitionTime and
            // gets a new lastUpdateTime even though the reason stays the same.
            let mut c = condition(
                "Progressing",
                true,
                "ReplicaSetUpdated",
                &format!("ReplicaSet {rs_name:?} is progressing."),
                None,
            );
            if p["status"] == "True" {
                c["lastTransitionTime"] = p["lastTransitionTime"].clone();
            }
            Some(c)
        }
        Some(_) if timed_out => Some(condition(
            "Progressing",
            false,
            "ProgressDeadlineExceeded",
            &format!("ReplicaSet {rs_name:?} has timed out progressing."),
            prev_progressing.as_ref(),
        )),
        _ => prev_progressing.clone(),
    };
    // progress.go requeueStuckDeployment: a rollout neither complete nor timed out is looked at
    // again a second after its deadline would pass.
    let requeue = progressing_cond
        .as_ref()
        .filter(|c| !complete && c["reason"] != "ProgressDeadlineExceeded")
        .and_then(left)
        .map(|l| l + Duration::from_secs(1));
    let conditions: Vec<Value> = [Some(available_cond), progressing_cond]
        .into_iter()
        .flatten()
        .collect();
    let mut status = json!({
        "observedGeneration": deployment.at("/metadata/generation").cloned().unwrap_or(json!(1)),
        "replicas": total,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": available,
        "conditions": conditions,
    });
    let unavailable = (desired - available).max(0);
    if unavailable > 0 {
        status["unavailableReplicas"] = json!(unavailable);
    }
    // Zero counts are omitted on the wire, as the real API's `omitempty` does.
    for k in [
        "replicas",
        "updatedReplicas",
        "readyReplicas",
        "availableReplicas",
    ] {
        if status[k] == 0
            && let Some(m) = status.as_object_mut()
        {
            m.remove(k);
        }
    }
    if deployment.get("status") == Some(&status) {
        return requeue;
    }
    let mut next = deployment.clone();
    next["status"] = status;
    log_write(
        "deployment status",
        registry.update(
            known::deployments(),
            meta::namespace(deployment),
            meta::name(deployment),
            next,
            Some("status"),
            &WriteOptions::controller(MANAGER),
        ),
    );
    requeue
}

/// Records an Event about `obj`, folding repeats into one object with a count, like the event recorder.
pub(super) fn record_event(registry: &Registry, obj: &Value, reason: &str, message: &str) {
    super::pods::event(
        registry,
        obj,
        "Normal",
        reason,
        message,
        "deployment-controller",
    );
}
