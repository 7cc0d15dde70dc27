//! Discovery documents: `/version`, `/api`, `/apis`, and one `APIResourceList` per group version.

use serde_json::{Value, json};

use crate::resources::{self, ResourceType};

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "34",
        "gitVersion": "v1.34.0-sim",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-08-27T00:00:00Z",
        "goVersion": "go1.24.6",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]
    })
}

pub fn group_list() -> Value {
    let groups: Vec<Value> = resources::groups().into_iter().map(group).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn group(name: &str) -> Value {
    let gv = json!({"groupVersion": format!("{name}/v1"), "version": "v1"});
    json!({"kind": "APIGroup", "apiVersion": "v1", "name": name, "versions": [gv.clone()], "preferredVersion": gv})
}

fn entry(rt: &ResourceType) -> Vec<Value> {
    let mut out = vec![json!({
        "name": rt.plural,
        "singularName": rt.singular,
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": rt.verbs,
        "shortNames": rt.short_names,
        "storageVersionHash": "",
    })];
    if let Some(first) = out.first_mut() {
        if rt.short_names.is_empty()
            && let Some(m) = first.as_object_mut()
        {
            m.remove("shortNames");
        }
        if rt.group == "apps"
            && let Some(m) = first.as_object_mut()
        {
            m.insert("categories".into(), json!(["all"]));
        }
        if matches!(rt.plural, "pods" | "services")
            && let Some(m) = first.as_object_mut()
        {
            m.insert("categories".into(), json!(["all"]));
        }
    }
    for sub in rt.subresources {
        let (kind, group, version, verbs): (&str, Option<&str>, Option<&str>, Vec<&str>) =
            match *sub {
                "status" => (rt.kind, None, None, vec!["get", "patch", "update"]),
                "scale" => (
                    "Scale",
                    Some("autoscaling"),
                    Some("v1"),
                    vec!["get", "patch", "update"],
                ),
                "log" => ("Pod", None, None, vec!["get"]),
                "token" => (
                    "TokenRequest",
                    Some("authentication.k8s.io"),
                    Some("v1"),
                    vec!["create"],
                ),
                _ => continue,
            };
        let mut e = json!({"name": format!("{}/{sub}", rt.plural), "singularName": "", "namespaced": rt.namespaced, "kind": kind, "verbs": verbs});
        if let (Some(g), Some(v)) = (group, version) {
            e["group"] = json!(g);
            e["version"] = json!(v);
        }
        out.push(e);
    }
    out
}

pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let entries: Vec<Value> = resources::in_group_version(group, version)
        .flat_map(entry)
        .collect();
    if entries.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": entries}),
    )
}
