//! OpenAPI v3 (`/openapi/v3` and `/openapi/v3/<api|apis/group>/<version>`), enough for kubectl:
//! its validation looks for a PATCH operation of the kind that accepts `fieldValidation` and then
//! lets the server validate (see [`super::protobuf::unknown_fields`]); `kubectl explain` reads the
//! component schemas. The PATCH operations declare no request body, so client-side `kubectl apply`
//! computes strategic merge patches from its compiled-in types, as it does for built-in kinds
//! when OpenAPI gives it nothing better.
//!
//! Not served: `/openapi/v2` (clients fetch it as gnostic protobuf), and descriptions/required lists.

use serde_json::{Map, Value, json};

use super::protobuf;
use crate::resources::{self, ResourceType};

/// `api/v1`, `apis/apps/v1`: the keys of the `/openapi/v3` discovery document.
fn group_versions() -> Vec<(String, &'static str, &'static str)> {
    let mut out: Vec<(String, &'static str, &'static str)> = Vec::new();
    for rt in resources::RESOURCES {
        let key = if rt.group.is_empty() {
            format!("api/{}", rt.version)
        } else {
            format!("apis/{}/{}", rt.group, rt.version)
        };
        if !out.iter().any(|(k, _, _)| *k == key) {
            out.push((key, rt.group, rt.version));
        }
    }
    out
}

pub fn root() -> Value {
    let mut paths = Map::new();
    for (key, group, version) in group_versions() {
        let hash = crate::meta::fnv32(group_version(group, version).to_string().as_bytes());
        paths.insert(
            key.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={hash:08X}")}),
        );
    }
    json!({"paths": paths})
}

/// The document of one group version, when it is served.
pub fn document(path: &str) -> Option<Value> {
    let (_, group, version) = group_versions()
        .into_iter()
        .find(|(key, _, _)| key == path.trim_matches('/'))?;
    Some(group_version(group, version))
}

fn query(name: &str) -> Value {
    json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}})
}

fn operation(rt: &ResourceType, action: &str, with_params: &[&str]) -> Value {
    json!({
        "operationId": format!("{action}{}", rt.kind),
        "tags": [rt.api_version()],
        "parameters": with_params.iter().map(|p| query(p)).collect::<Vec<_>>(),
        "responses": {"200": {"description": "OK"}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
    })
}

fn group_version(group: &str, version: &str) -> Value {
    let prefix = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for rt in resources::in_group_version(group, version) {
        let collection = if rt.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", rt.plural)
        } else {
            format!("{prefix}/{}", rt.plural)
        };
        let writes = ["dryRun", "fieldManager", "fieldValidation"];
        let mut collection_ops = Map::new();
        if rt.verbs.contains(&"create") {
            collection_ops.insert("post".into(), operation(rt, "post", &writes));
        }
        if rt.verbs.contains(&"list") {
            collection_ops.insert(
                "get".into(),
                operation(rt, "list", &["labelSelector", "fieldSelector", "limit"]),
            );
        }
        paths.insert(collection.clone(), Value::Object(collection_ops));
        if rt.verbs.contains(&"get") {
            paths.insert(
                format!("{collection}/{{name}}"),
                json!({
                    "get": operation(rt, "get", &[]),
                    "put": operation(rt, "put", &writes),
                    "patch": operation(rt, "patch", &["dryRun", "fieldManager", "fieldValidation", "force"]),
                    "delete": operation(rt, "delete", &["dryRun", "propagationPolicy"]),
                }),
            );
        }
        protobuf::openapi_schemas(&rt.api_version(), rt.kind, &mut schemas);
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.34.0-sim"},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}
