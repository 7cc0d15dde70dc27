//! Which Nodes a pod may be bound to: kube-scheduler's filter plugins that matter here, in their
//! default order (pkg/scheduler/apis/config/v1 default plugins: NodeUnschedulable,
//! TaintToleration, NodeAffinity), and its words when none fits
//! (pkg/scheduler/schedule_one.go, framework/types.go FitError).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::meta;
use crate::registry::Registry;
use crate::resources::known;

/// The Nodes that pass every filter, by name; Err is the scheduler's message when none does.
pub(super) fn feasible_nodes(registry: &Registry, pod: &Value) -> Result<Vec<String>, String> {
    let mut nodes = registry.select(known::nodes(), None, None);
    if nodes.is_empty() {
        // schedule_one.go ErrNoNodesAvailable.
        return Err("no nodes available to schedule pods".into());
    }
    nodes.sort_by(|a, b| meta::name(a).cmp(meta::name(b)));
    let mut feasible = Vec::new();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for node in &nodes {
        match filter(pod, node) {
            None => feasible.push(meta::name(node).to_string()),
            Some(reason) => *reasons.entry(reason).or_default() += 1,
        }
    }
    if !feasible.is_empty() {
        return Ok(feasible);
    }
    // FitError.Error: "0/N nodes are available: <count> <reason>, ..." (reasons sorted as
    // strings), then DefaultPreemption's PostFilter message: evicting pods cannot help a node
    // that fails these filters.
    let n = nodes.len();
    let mut histogram: Vec<String> = reasons
        .iter()
        .map(|(reason, count)| format!("{count} {reason}"))
        .collect();
    histogram.sort();
    Err(format!(
        "0/{n} nodes are available: {}. preemption: 0/{n} nodes are available: {n} Preemption is not helpful for scheduling.",
        histogram.join(", ")
    ))
}

/// The first filter `node` fails for `pod`, as its reason.
fn filter(pod: &Value, node: &Value) -> Option<String> {
    let tolerations: Vec<&Value> = pod
        .pointer("/spec/tolerations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    // plugins/nodeunschedulable: a cordoned node, unless the pod tolerates its taint.
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        let taint =
            serde_json::json!({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"});
        if !tolerations.iter().any(|t| tolerates(t, &taint)) {
            return Some("node(s) were unschedulable".into());
        }
    }
    // plugins/tainttoleration: NoSchedule and NoExecute taints. A node that is not Ready has the
    // taint the node lifecycle controller puts on it (not-ready or unreachable,
    // pkg/controller/nodelifecycle), which the simulator does not write.
    let mut taints: Vec<Value> = node
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    match ready_status(node) {
        Some("True") => {}
        Some("False") => taints.push(
            serde_json::json!({"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}),
        ),
        _ => taints.push(
            serde_json::json!({"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"}),
        ),
    }
    for taint in taints
        .iter()
        .filter(|t| matches!(t["effect"].as_str(), Some("NoSchedule" | "NoExecute")))
    {
        if !tolerations.iter().any(|t| tolerates(t, taint)) {
            return Some(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                taint["key"].as_str().unwrap_or_default(),
                taint["value"].as_str().unwrap_or_default()
            ));
        }
    }
    // plugins/nodeaffinity: `nodeSelector` (required node affinity is not modelled).
    if let Some(selector) = pod.pointer("/spec/nodeSelector").and_then(Value::as_object) {
        let labels = meta::labels(node);
        if selector
            .iter()
            .any(|(k, v)| labels.get(k).and_then(Value::as_str) != v.as_str())
        {
            return Some("node(s) didn't match Pod's node affinity/selector".into());
        }
    }
    None
}

fn ready_status(node: &Value) -> Option<&str> {
    node.pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c["type"] == "Ready")
        .and_then(|c| c["status"].as_str())
}

/// k8s.io/api core/v1 `Toleration.ToleratesTaint`.
fn tolerates(toleration: &Value, taint: &Value) -> bool {
    let effect = toleration["effect"].as_str().unwrap_or_default();
    if !effect.is_empty() && Some(effect) != taint["effect"].as_str() {
        return false;
    }
    let key = toleration["key"].as_str().unwrap_or_default();
    if !key.is_empty() && Some(key) != taint["key"].as_str() {
        return false;
    }
    match toleration["operator"].as_str().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            toleration["value"].as_str().unwrap_or_default()
                == taint["value"].as_str().unwrap_or_default()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, ready: &str, unschedulable: bool) -> Value {
        json!({"metadata": {"name": name}, "spec": {"unschedulable": unschedulable}, "status": {"conditions": [{"type": "Ready", "status": ready}]}})
    }

    #[test]
    fn cordoned_and_not_ready_nodes_are_filtered_with_the_schedulers_reasons() {
        let pod = json!({"spec": {}});
        assert_eq!(
            filter(&pod, &node("a", "True", true)).as_deref(),
            Some("node(s) were unschedulable")
        );
        assert_eq!(
            filter(&pod, &node("a", "Unknown", false)).as_deref(),
            Some("node(s) had untolerated taint {node.kubernetes.io/unreachable: }")
        );
        assert_eq!(filter(&pod, &node("a", "True", false)), None);
        let tolerant = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        assert_eq!(filter(&tolerant, &node("a", "Unknown", true)), None);
    }
}
