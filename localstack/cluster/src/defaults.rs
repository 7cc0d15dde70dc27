//! Defaulting the real API server performs on write, limited to the fields clients of these kinds observe.

use base64::Engine;
use serde_json::{Map, Value, json};

use crate::meta;
use crate::resources::ResourceType;

fn set_default(map: &mut Map<String, Value>, key: &str, value: Value) {
    if map.get(key).is_none_or(Value::is_null) {
        map.insert(key.to_string(), value);
    }
}

fn object_at<'a>(obj: &'a mut Value, pointer: &str) -> Option<&'a mut Map<String, Value>> {
    obj.pointer_mut(pointer).and_then(Value::as_object_mut)
}

pub fn apply_defaults(rt: &ResourceType, obj: &mut Value) {
    match (rt.group, rt.plural) {
        ("", "namespaces") => {
            let name = meta::name(obj).to_string();
            meta::object_entry(meta::metadata_mut(obj), "labels")
                .insert("kubernetes.io/metadata.name".into(), json!(name));
            if let Some(root) = obj.as_object_mut() {
                set_default(
                    meta::object_entry(root, "spec"),
                    "finalizers",
                    json!(["kubernetes"]),
                );
                set_default(meta::object_entry(root, "status"), "phase", json!("Active"));
            }
        }
        ("", "pods") => {
            if let Some(spec) = object_at(obj, "/spec") {
                pod_spec(spec);
                requests_from_limits(spec);
            }
        }
        ("", "limitranges") => limit_range(obj),
        ("apps", "deployments") => {
            if let Some(spec) = object_at(obj, "/spec") {
                set_default(spec, "replicas", json!(1));
                set_default(spec, "revisionHistoryLimit", json!(10));
                set_default(spec, "progressDeadlineSeconds", json!(600));
                let strategy = meta::object_entry(spec, "strategy");
                set_default(strategy, "type", json!("RollingUpdate"));
                if strategy.get("type") == Some(&json!("RollingUpdate")) {
                    let ru = meta::object_entry(strategy, "rollingUpdate");
                    set_default(ru, "maxSurge", json!("25%"));
                    set_default(ru, "maxUnavailable", json!("25%"));
                }
            }
            template(obj);
        }
        ("apps", "replicasets") => {
            if let Some(spec) = object_at(obj, "/spec") {
                set_default(spec, "replicas", json!(1));
            }
            template(obj);
        }
        ("", "services") => {
            if let Some(spec) = object_at(obj, "/spec") {
                set_default(spec, "type", json!("ClusterIP"));
                set_default(spec, "sessionAffinity", json!("None"));
                set_default(spec, "ipFamilies", json!(["IPv4"]));
                set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
                set_default(spec, "internalTrafficPolicy", json!("Cluster"));
                if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                    for port in ports.iter_mut().filter_map(Value::as_object_mut) {
                        set_default(port, "protocol", json!("TCP"));
                        if let Some(p) = port.get("port").cloned() {
                            set_default(port, "targetPort", p);
                        }
                    }
                }
            }
        }
        ("", "secrets") => secret(obj),
        _ => {}
    }
}

fn template(obj: &mut Value) {
    if let Some(spec) = object_at(obj, "/spec/template/spec") {
        pod_spec(spec);
    }
}

fn pod_spec(spec: &mut Map<String, Value>) {
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "securityContext", json!({}));
    for list in ["containers", "initContainers"] {
        if let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in containers.iter_mut().filter_map(Value::as_object_mut) {
                let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
                let untagged_or_latest = {
                    let last = image.rsplit('/').next().unwrap_or(image);
                    !last.contains(':') && !last.contains('@') || last.ends_with(":latest")
                };
                set_default(
                    c,
                    "imagePullPolicy",
                    json!(if untagged_or_latest {
                        "Always"
                    } else {
                        "IfNotPresent"
                    }),
                );
                set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
                set_default(c, "terminationMessagePolicy", json!("File"));
                set_default(c, "resources", json!({}));
                if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
                    for port in ports.iter_mut().filter_map(Value::as_object_mut) {
                        set_default(port, "protocol", json!("TCP"));
                    }
                }
            }
        }
    }
}

/// `SetDefaults_Pod`: a container that sets a limit but no request requests its limit.
fn requests_from_limits(spec: &mut Map<String, Value>) {
    for list in ["containers", "initContainers"] {
        for c in spec
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object_mut)
        {
            let resources = meta::object_entry(c, "resources");
            let limits = resources
                .get("limits")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            if limits.is_empty() {
                continue;
            }
            let requests = meta::object_entry(resources, "requests");
            for (k, v) in limits {
                requests.entry(k).or_insert(v);
            }
        }
    }
}

/// `stringData` is write-only: it is folded into base64 `data`, as the real server does.
fn secret(obj: &mut Value) {
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    set_default(root, "type", json!("Opaque"));
    if let Some(Value::Object(string_data)) = root.remove("stringData") {
        let data = meta::object_entry(root, "data");
        for (k, v) in string_data {
            let plain = v.as_str().unwrap_or_default();
            data.insert(
                k,
                json!(base64::engine::general_purpose::STANDARD.encode(plain)),
            );
        }
    }
}

/// `SetDefaults_LimitRangeItem`: for containers, `default` falls back to `max`, and
/// `defaultRequest` to `default`, then to `min`.
fn limit_range(obj: &mut Value) {
    let Some(items) = obj
        .pointer_mut("/spec/limits")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for item in items {
        if item.get("type").and_then(Value::as_str) != Some("Container") {
            continue;
        }
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        let part = |item: &serde_json::Map<String, Value>, k: &str| {
            item.get(k)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        };
        let (max, min) = (part(item, "max"), part(item, "min"));
        let mut default = part(item, "default");
        for (k, v) in max {
            default.entry(k).or_insert(v);
        }
        let mut request = part(item, "defaultRequest");
        for (k, v) in default.clone().into_iter().chain(min) {
            request.entry(k).or_insert(v);
        }
        if !default.is_empty() {
            item.insert("default".into(), Value::Object(default));
        }
        if !request.is_empty() {
            item.insert("defaultRequest".into(), Value::Object(request));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::known;

    #[test]
    fn deployment_and_service_defaults() {
        let mut d = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]}}}});
        apply_defaults(known::deployments(), &mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["protocol"],
            "TCP"
        );
        let mut s = json!({"spec": {"ports": [{"port": 80}]}});
        apply_defaults(known::services(), &mut s);
        assert_eq!(s["spec"]["ports"][0]["targetPort"], 80);
        let mut secret = json!({"stringData": {"k": "v"}});
        apply_defaults(known::secrets(), &mut secret);
        assert_eq!(secret["data"]["k"], "dg==");
        assert!(secret.get("stringData").is_none());
    }
}
