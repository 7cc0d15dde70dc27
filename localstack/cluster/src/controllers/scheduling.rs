//! Which Nodes a pod may be bound to: kube-scheduler's filter plugins that matter here, in their
//! default order (pkg/scheduler/apis/config/v1 default plugins: NodeUnschedulable,
//! TaintToleration, NodeAffinity, NodeResourcesFit), and its words when none fits
//! (pkg/scheduler/schedule_one.go, framework/types.go FitError, and DefaultPreemption's
//! PostFilter message, pkg/scheduler/framework/preemption/preemption.go).

use crate::meta::Lookup;
use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use crate::meta;
use crate::quantity::parse_value;

/// What the pods bound to one node request: kube-scheduler's `NodeInfo.Requested` and its pod
/// count, in thousandths (as [`parse_value`] gives them).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Requested {
    pods: i64,
    cpu: i128,
    memory: i128,
}

impl Requested {
    pub(super) fn add(&mut self, pod: &Value) {
        let (cpu, memory) = pod_requests(pod);
        self.pods += 1;
        self.cpu += cpu;
        self.memory += memory;
    }
}

/// What each node's bound pods request.
pub(super) type Usage = HashMap<String, Requested>;

/// The requests of the pods bound to each node, from `pods` (any superset of the bound ones):
/// the scheduler's cache holds every assigned pod that is not terminal (its assigned-pod
/// informer selects `status.phase!=Succeeded,status.phase!=Failed`, pkg/scheduler/scheduler.go),
/// terminating ones until they are gone.
pub(super) fn usage(pods: &[Value]) -> Usage {
    let mut usage = Usage::new();
    for pod in pods {
        let node = pod
            .at("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !node.is_empty() && !meta::is_terminal_pod(pod) {
            usage.entry(node.to_string()).or_default().add(pod);
        }
    }
    usage
}

/// A pod's cpu and memory requests as the scheduler counts them
/// (k8s.io/component-helpers/resource `PodRequests`): the sum over its containers, at least the
/// largest of its init containers, plus `spec.overhead`.
fn pod_requests(pod: &Value) -> (i128, i128) {
    let request = |c: &Value, resource: &str| {
        c.at(&format!("/resources/requests/{resource}"))
            .and_then(parse_value)
            .unwrap_or(0)
    };
    let list = |field: &str| -> Vec<Value> {
        pod.at(&format!("/spec/{field}"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let (containers, init) = (list("containers"), list("initContainers"));
    let total = |resource: &str| {
        let sum: i128 = containers.iter().map(|c| request(c, resource)).sum();
        let init = init.iter().map(|c| request(c, resource)).max().unwrap_or(0);
        let overhead = pod
            .at(&format!("/spec/overhead/{resource}"))
            .and_then(parse_value)
            .unwrap_or(0);
        sum.max(init) + overhead
    };
    (total("cpu"), total("memory"))
}

/// Why a node does not fit, and whether preempting lower-priority pods could change that
/// (`Unschedulable`) or not (`UnschedulableAndUnresolvable`).
struct Misfit {
    reasons: Vec<String>,
    resolvable: bool,
}

/// The Nodes that pass every filter, by name; Err is the scheduler's message when none does.
/// `usage` is what the pods already bound request, node by node.
pub(super) fn feasible_nodes(
    nodes: &[Value],
    usage: &Usage,
    pod: &Value,
) -> Result<Vec<String>, String> {
    if nodes.is_empty() {
        // schedule_one.go ErrNoNodesAvailable.
        return Err("no nodes available to schedule pods".into());
    }
    let mut nodes: Vec<&Value> = nodes.iter().collect();
    nodes.sort_by(|a, b| meta::name(a).cmp(meta::name(b)));
    let mut feasible = Vec::new();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut preemption: BTreeMap<&str, usize> = BTreeMap::new();
    let none = Requested::default();
    for node in &nodes {
        let used = usage.get(meta::name(node)).unwrap_or(&none);
        let misfit = filter(pod, node).map_or_else(
            || {
                fit(pod, node, used).map(|reasons| Misfit {
                    reasons,
                    resolvable: true,
                })
            },
            |reason| {
                Some(Misfit {
                    reasons: vec![reason],
                    resolvable: false,
                })
            },
        );
        match misfit {
            None => feasible.push(meta::name(node).to_string()),
            Some(misfit) => {
                for reason in misfit.reasons {
                    *reasons.entry(reason).or_default() += 1;
                }
                // DefaultPreemption: a node whose misfit preemption cannot resolve is "not
                // helpful"; on one that it could, every pod here has the default priority, so
                // none is a victim (preemption.go SelectVictimsOnNode).
                let why = if misfit.resolvable {
                    "No preemption victims found for incoming pod"
                } else {
                    "Preemption is not helpful for scheduling"
                };
                *preemption.entry(why).or_default() += 1;
            }
        }
    }
    if !feasible.is_empty() {
        return Ok(feasible);
    }
    // FitError.Error: "0/N nodes are available: <count> <reason>, ..." (reasons sorted as
    // strings), then DefaultPreemption's PostFilter message in the same form.
    let n = nodes.len();
    let histogram = |counts: Vec<(String, usize)>| {
        let mut parts: Vec<String> = counts
            .into_iter()
            .map(|(reason, count)| format!("{count} {reason}"))
            .collect();
        parts.sort();
        parts.join(", ")
    };
    Err(format!(
        "0/{n} nodes are available: {}. preemption: 0/{n} nodes are available: {}.",
        histogram(reasons.into_iter().collect()),
        histogram(
            preemption
                .into_iter()
                .map(|(why, count)| (why.to_string(), count))
                .collect()
        ),
    ))
}

/// plugins/noderesources/fit.go `fitsRequest`: the node's allocatable pods, cpu and memory
/// against what its pods request plus this pod's request; every shortfall is a reason ("Too many
/// pods", "Insufficient cpu", "Insufficient memory"). A request of zero is not checked, except
/// the pod count.
fn fit(pod: &Value, node: &Value, used: &Requested) -> Option<Vec<String>> {
    let allocatable = |resource: &str| {
        node.at(&format!("/status/allocatable/{resource}"))
            .and_then(parse_value)
    };
    let mut reasons = Vec::new();
    if let Some(max) = allocatable("pods")
        && i128::from(used.pods + 1) * 1000 > max
    {
        reasons.push("Too many pods".to_string());
    }
    let (cpu, memory) = pod_requests(pod);
    if cpu > 0
        && let Some(max) = allocatable("cpu")
        && used.cpu + cpu > max
    {
        reasons.push("Insufficient cpu".to_string());
    }
    if memory > 0
        && let Some(max) = allocatable("memory")
        && used.memory + memory > max
    {
        reasons.push("Insufficient memory".to_string());
    }
    (!reasons.is_empty()).then_some(reasons)
}

/// The first filter `node` fails for `pod`, as its reason.
fn filter(pod: &Value, node: &Value) -> Option<String> {
    let tolerations: Vec<&Value> = pod
        .at("/spec/tolerations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    // plugins/nodeunschedulable: a cordoned node, unless the pod tolerates its taint.
    if node.at("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
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
        .at("/spec/taints")
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
    if let Some(selector) = pod.at("/spec/nodeSelector").and_then(Value::as_object) {
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
    node.at("/status/conditions")
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

    fn sized(name: &str, pods: &str, cpu: &str) -> Value {
        json!({"metadata": {"name": name}, "spec": {}, "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "allocatable": {"pods": pods, "cpu": cpu, "memory": "3300Mi"},
        }})
    }

    fn bound(node: &str, cpu: &str, phase: &str) -> Value {
        json!({"spec": {"nodeName": node, "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]}, "status": {"phase": phase}})
    }

    /// plugins/noderesources/fit.go: a node holds at most its allocatable pods (17 on a t3.medium
    /// with the VPC CNI), and the requests of its pods fit its allocatable cpu; a terminal pod
    /// frees its place. The message is kube-scheduler's FitError with DefaultPreemption's
    /// PostFilter message (no pod has a lower priority, so there are no victims).
    #[test]
    fn node_resources_fit_counts_the_pods_and_requests_already_bound() {
        let nodes = vec![sized("a", "2", "1"), sized("b", "17", "1")];
        let pod = json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "500m"}}}]}});
        let mut pods = vec![bound("a", "100m", "Running"), bound("a", "100m", "Running")];
        let usage_now = usage(&pods);
        assert_eq!(
            feasible_nodes(&nodes, &usage_now, &pod),
            Ok(vec!["b".to_string()])
        );
        pods.push(bound("b", "600m", "Running"));
        assert_eq!(
            feasible_nodes(&nodes, &usage(&pods), &pod),
            Err("0/2 nodes are available: 1 Insufficient cpu, 1 Too many pods. preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod.".to_string())
        );
        // A pod that finished no longer counts.
        pods[0] = bound("a", "100m", "Succeeded");
        assert_eq!(
            feasible_nodes(&nodes, &usage(&pods), &pod),
            Ok(vec!["a".to_string()])
        );
    }

    #[test]
    fn a_node_preemption_cannot_help_is_named_apart_from_a_full_one() {
        let mut cordoned = sized("a", "1", "1");
        cordoned["spec"]["unschedulable"] = json!(true);
        let nodes = vec![cordoned, sized("b", "1", "1")];
        let pods = vec![bound("b", "0", "Running")];
        let pod = json!({"spec": {"containers": [{"name": "c"}]}});
        assert_eq!(
            feasible_nodes(&nodes, &usage(&pods), &pod),
            Err("0/2 nodes are available: 1 Too many pods, 1 node(s) were unschedulable. preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling.".to_string())
        );
    }

    /// component-helpers resource.PodRequests: containers summed, at least the largest init
    /// container, plus the overhead.
    #[test]
    fn a_pods_request_is_its_containers_or_its_largest_init_container_plus_overhead() {
        let pod = json!({"spec": {
            "containers": [{"resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}, {"resources": {"requests": {"cpu": "200m"}}}],
            "initContainers": [{"resources": {"requests": {"cpu": "1", "memory": "32Mi"}}}],
            "overhead": {"cpu": "10m"},
        }});
        assert_eq!(pod_requests(&pod), (1010, 64 * 1024 * 1024 * 1000));
    }
}
