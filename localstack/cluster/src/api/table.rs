//! `meta.k8s.io/v1 Table` responses, which `kubectl get` asks for to print its columns.

use crate::meta::Lookup;
use serde_json::{Value, json};

use crate::meta;
use crate::resources::ResourceType;

fn age(obj: &Value) -> String {
    let Some(created) = obj
        .at("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(meta::parse_rfc3339)
    else {
        return "<unknown>".into();
    };
    let secs = meta::unix_now().saturating_sub(created);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn int(obj: &Value, pointer: &str) -> i64 {
    obj.at(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn string(obj: &Value, pointer: &str) -> String {
    obj.at(pointer)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// Kind-specific columns between NAME and AGE, as the real server's printers define them (abridged).
fn columns(rt: &ResourceType) -> Vec<&'static str> {
    match rt.kind {
        "Deployment" => vec!["Ready", "Up-to-date", "Available"],
        "ReplicaSet" => vec!["Desired", "Current", "Ready"],
        "Pod" => vec!["Ready", "Status", "Restarts"],
        "Service" => vec!["Type", "Cluster-IP", "Ports"],
        "Namespace" => vec!["Status"],
        "Node" => vec!["Status", "Version"],
        "ConfigMap" | "Secret" => vec!["Data"],
        "Ingress" => vec!["Class", "Hosts"],
        _ => vec![],
    }
}

fn cells(rt: &ResourceType, obj: &Value) -> Vec<Value> {
    let mut cells = vec![json!(meta::name(obj))];
    match rt.kind {
        "Deployment" => {
            cells.push(json!(format!(
                "{}/{}",
                int(obj, "/status/readyReplicas"),
                int(obj, "/spec/replicas")
            )));
            cells.push(json!(int(obj, "/status/updatedReplicas")));
            cells.push(json!(int(obj, "/status/availableReplicas")));
        }
        "ReplicaSet" => {
            cells.push(json!(int(obj, "/spec/replicas")));
            cells.push(json!(int(obj, "/status/replicas")));
            cells.push(json!(int(obj, "/status/readyReplicas")));
        }
        "Pod" => {
            let statuses = obj
                .at("/status/containerStatuses")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let total = obj
                .at("/spec/containers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let ready = statuses
                .iter()
                .filter(|s| s.get("ready").and_then(Value::as_bool) == Some(true))
                .count();
            let waiting = statuses
                .iter()
                .find_map(|s| s.at("/state/waiting/reason").and_then(Value::as_str))
                .map(str::to_string);
            let restarts: i64 = statuses
                .iter()
                .map(|s| s.get("restartCount").and_then(Value::as_i64).unwrap_or(0))
                .sum();
            cells.push(json!(format!("{ready}/{total}")));
            cells.push(json!(
                waiting.unwrap_or_else(|| string(obj, "/status/phase"))
            ));
            cells.push(json!(restarts));
        }
        "Service" => {
            let ports: Vec<String> = obj
                .at("/spec/ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|p| {
                    format!(
                        "{}/{}",
                        p.get("port").and_then(Value::as_i64).unwrap_or(0),
                        p.get("protocol").and_then(Value::as_str).unwrap_or("TCP")
                    )
                })
                .collect();
            cells.push(json!(string(obj, "/spec/type")));
            cells.push(json!(string(obj, "/spec/clusterIP")));
            cells.push(json!(if ports.is_empty() {
                "<none>".to_string()
            } else {
                ports.join(",")
            }));
        }
        "Namespace" => cells.push(json!(string(obj, "/status/phase"))),
        "Node" => {
            let ready = obj
                .at("/status/conditions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            cells.push(json!(if ready { "Ready" } else { "NotReady" }));
            cells.push(json!(string(obj, "/status/nodeInfo/kubeletVersion")));
        }
        "ConfigMap" | "Secret" => {
            let n = obj
                .get("data")
                .and_then(Value::as_object)
                .map_or(0, |m| m.len())
                + obj
                    .get("binaryData")
                    .and_then(Value::as_object)
                    .map_or(0, |m| m.len());
            cells.push(json!(n));
        }
        "Ingress" => {
            let hosts: Vec<String> = obj
                .at("/spec/rules")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|r| r.get("host").and_then(Value::as_str).map(str::to_string))
                .collect();
            let class = string(obj, "/spec/ingressClassName");
            cells.push(json!(if class.is_empty() {
                "<none>".to_string()
            } else {
                class
            }));
            cells.push(json!(if hosts.is_empty() {
                "*".to_string()
            } else {
                hosts.join(",")
            }));
        }
        _ => {}
    }
    cells.push(json!(age(obj)));
    cells
}

/// The columns kubectl shows only with `-o wide` (priority 1), after Age, as the real server sends.
fn wide_columns(rt: &ResourceType) -> Vec<&'static str> {
    match rt.kind {
        "Pod" => vec!["IP", "Node", "Nominated Node", "Readiness Gates"],
        "Deployment" | "ReplicaSet" => vec!["Containers", "Images", "Selector"],
        "Service" => vec!["Selector"],
        "Node" => vec!["Internal-IP"],
        _ => vec![],
    }
}

fn joined(obj: &Value, list: &str, field: &str) -> String {
    obj.at(list)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get(field).and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join(",")
}

fn selector(map: Option<&Value>) -> String {
    let pairs: Vec<String> = map
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    if pairs.is_empty() {
        "<none>".to_string()
    } else {
        pairs.join(",")
    }
}

fn wide_cells(rt: &ResourceType, obj: &Value) -> Vec<Value> {
    let or_none = |s: String| {
        if s.is_empty() {
            "<none>".to_string()
        } else {
            s
        }
    };
    match rt.kind {
        "Pod" => vec![
            json!(or_none(string(obj, "/status/podIP"))),
            json!(or_none(string(obj, "/spec/nodeName"))),
            json!("<none>"),
            json!("<none>"),
        ],
        "Deployment" | "ReplicaSet" => vec![
            json!(joined(obj, "/spec/template/spec/containers", "name")),
            json!(joined(obj, "/spec/template/spec/containers", "image")),
            json!(selector(obj.at("/spec/selector/matchLabels"))),
        ],
        "Service" => vec![json!(selector(obj.at("/spec/selector")))],
        "Node" => {
            let ip = obj
                .at("/status/addresses")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|a| a["type"] == "InternalIP")
                .and_then(|a| a.get("address").and_then(Value::as_str))
                .unwrap_or("<none>");
            vec![json!(ip)]
        }
        _ => vec![],
    }
}

pub fn table(rt: &ResourceType, items: &[Value], list_metadata: Option<&Value>) -> Value {
    let mut defs = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0}),
    ];
    for c in columns(rt) {
        defs.push(
            json!({"name": c, "type": "string", "format": "", "description": "", "priority": 0}),
        );
    }
    defs.push(json!({"name": "Age", "type": "string", "format": "", "description": "CreationTimestamp", "priority": 0}));
    for c in wide_columns(rt) {
        defs.push(
            json!({"name": c, "type": "string", "format": "", "description": "", "priority": 1}),
        );
    }
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let partial = json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o.get("metadata").cloned().unwrap_or_default()});
            let mut row = cells(rt, o);
            row.extend(wide_cells(rt, o));
            json!({"cells": row, "object": partial})
        })
        .collect();
    let metadata = list_metadata.cloned().unwrap_or_else(|| json!({"resourceVersion": items.first().and_then(|o| o.at("/metadata/resourceVersion")).cloned().unwrap_or(Value::Null)}));
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata, "columnDefinitions": defs, "rows": rows})
}
