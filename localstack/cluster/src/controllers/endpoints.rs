//! The Endpoints controller: one Endpoints object per Service listing the pods behind it.

use crate::meta::Lookup;
use serde_json::{Value, json};

use super::{log_write, pod_ready};
use crate::meta;
use crate::registry::{Registry, WriteOptions};
use crate::resources::known;
use crate::selectors::LabelSelector;

const MANAGER: &str = "endpoint-controller";

/// The container port a Service `targetPort` (number or port name) resolves to on one pod.
fn resolve_target_port(pod: &Value, target: &Value) -> Option<i64> {
    match target {
        Value::Number(n) => n.as_i64(),
        Value::String(name) => pod
            .at("/spec/containers")?
            .as_array()?
            .iter()
            .flat_map(|c| {
                c.get("ports")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            })
            .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
            .and_then(|p| p.get("containerPort").and_then(Value::as_i64)),
        _ => None,
    }
}

/// `local_ports`: pod uid → the 127.0.0.1 port of the local process running it.
pub(super) fn reconcile(
    registry: &Registry,
    scope: &super::Scope,
    local_ports: &std::collections::HashMap<String, u16>,
) {
    for svc in scope.select(registry, known::services()) {
        let Some(selector) = svc
            .at("/spec/selector")
            .filter(|s| s.as_object().is_some_and(|m| !m.is_empty()))
        else {
            continue;
        };
        let selector =
            LabelSelector::from_object(&json!({"matchLabels": selector})).unwrap_or_default();
        let ns = meta::namespace(&svc);
        let pods: Vec<Value> = registry
            .select(known::pods(), Some(ns), Some(&selector))
            .into_iter()
            // endpoints controller ShouldPodBeInEndpoints: a terminating pod leaves at once.
            .filter(|p| !meta::is_deleting(p) && p.at("/status/podIP").is_some())
            .collect();
        let address = |p: &Value| {
            json!({
                "ip": p.at("/status/podIP").cloned().unwrap_or(Value::Null),
                "nodeName": p.at("/spec/nodeName").cloned().unwrap_or(Value::Null),
                "targetRef": {"kind": "Pod", "namespace": ns, "name": meta::name(p), "uid": meta::uid(p)},
            })
        };
        let service_ports = |pods: &[&Value]| -> Vec<Value> {
            svc
            .at("/spec/ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|p| {
                let target = p.get("targetPort").cloned().unwrap_or(Value::Null);
                let local = pods.first().and_then(|pod| local_ports.get(meta::uid(pod))).map(|p| i64::from(*p));
                let number = local.or_else(|| pods.first().and_then(|pod| resolve_target_port(pod, &target))).or_else(|| target.as_i64()).or_else(|| p.get("port").and_then(Value::as_i64));
                let mut port = json!({"port": number, "protocol": p.get("protocol").cloned().unwrap_or(json!("TCP"))});
                if let Some(name) = p.get("name") {
                    port["name"] = name.clone();
                }
                port
            })
            .collect()
        };
        // Simulated pods share one subset; each local process listens on its own port, so each
        // gets a subset of its own, as pods with different container ports would.
        let (local, simulated): (Vec<&Value>, Vec<&Value>) = pods
            .iter()
            .partition(|p| local_ports.contains_key(meta::uid(p)));
        let mut groups: Vec<Vec<&Value>> = local.into_iter().map(|p| vec![p]).collect();
        if !simulated.is_empty() {
            groups.insert(0, simulated);
        }
        let subsets: Vec<Value> = groups
            .iter()
            .map(|group| {
                let ready: Vec<Value> = group
                    .iter()
                    .filter(|p| pod_ready(p))
                    .map(|p| address(p))
                    .collect();
                let not_ready: Vec<Value> = group
                    .iter()
                    .filter(|p| !pod_ready(p))
                    .map(|p| address(p))
                    .collect();
                let mut subset = json!({"ports": service_ports(group)});
                if !ready.is_empty() {
                    subset["addresses"] = json!(ready);
                }
                if !not_ready.is_empty() {
                    subset["notReadyAddresses"] = json!(not_ready);
                }
                subset
            })
            .collect();
        let subsets = Value::Array(subsets);
        let name = meta::name(&svc);
        let opts = WriteOptions::controller(MANAGER);
        match registry.try_get(known::endpoints(), ns, name) {
            None => {
                let ep = json!({"metadata": {"name": name, "labels": meta::labels(&svc)}, "subsets": subsets});
                log_write(
                    "create endpoints",
                    registry.create(known::endpoints(), ns, ep, &opts),
                );
            }
            Some(existing) if existing.get("subsets").cloned().unwrap_or(json!([])) != subsets => {
                let mut next = existing.clone();
                next["subsets"] = subsets;
                log_write(
                    "update endpoints",
                    registry.update(known::endpoints(), ns, name, next, None, &opts),
                );
            }
            Some(_) => {}
        }
    }
}
