//! Field paths and field sets in the `FieldsV1` vocabulary (`f:name` for map fields, `k:{...}` for
//! items of associative lists), and reading and writing an object at a path.
//!
//! Simplification: a list is associative when its items carry a known key (`uid`,
//! `containerPort`+`protocol`, `port`+`protocol`, `mountPath`, `name`); every other list is atomic
//! and owned as a whole, and lists of scalars are atomic too (the real server treats some as sets).

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::meta;

/// A path of `FieldsV1` keys from the object root to an owned field or list item.
pub type FieldPath = Vec<String>;
pub type FieldSet = BTreeSet<FieldPath>;

/// Metadata fields that have owners; the rest of metadata is server-controlled.
const OWNED_METADATA: &[&str] = &["labels", "annotations", "finalizers", "ownerReferences"];

pub(super) fn key_fields(item: &Value) -> Option<&'static [&'static str]> {
    let obj = item.as_object()?;
    // ownerReferences are keyed by uid (x-kubernetes-list-map-keys in the OpenAPI schema); an item
    // seeded from its `k:{"uid":...}` key has no other field yet and must still match by uid.
    if obj.contains_key("uid") {
        Some(&["uid"])
    } else if obj.contains_key("containerPort") {
        Some(&["containerPort", "protocol"])
    } else if obj.contains_key("port") && !obj.contains_key("path") {
        Some(&["port", "protocol"])
    } else if obj.contains_key("mountPath") {
        Some(&["mountPath"])
    } else if obj.get("name").is_some_and(Value::is_string) {
        Some(&["name"])
    } else {
        None
    }
}

/// The `k:{...}` key of a list item, with `protocol` defaulted to TCP like the schema does.
pub(super) fn item_key(item: &Value) -> Option<String> {
    let fields = key_fields(item)?;
    let mut key = Map::new();
    for f in fields {
        match item.get(*f) {
            Some(v) => {
                key.insert((*f).to_string(), v.clone());
            }
            None if *f == "protocol" => {
                key.insert("protocol".into(), json!("TCP"));
            }
            None => return None,
        }
    }
    Some(format!("k:{}", Value::Object(key)))
}

/// A list is associative when every item has a key of the same shape.
pub(super) fn is_associative(list: &[Value]) -> bool {
    let first = list.first().and_then(key_fields);
    first.is_some() && list.iter().all(|i| key_fields(i) == first)
}

fn item_matches(item: &Value, key: &str) -> bool {
    item_key(item).as_deref() == Some(key)
}

/// Every owned leaf and list item of `obj`.
pub fn fields_of(obj: &Value, include_status: bool) -> FieldSet {
    let mut set = FieldSet::new();
    let Some(root) = obj.as_object() else {
        return set;
    };
    for (k, v) in root {
        match k.as_str() {
            "apiVersion" | "kind" => {}
            "status" if !include_status => {}
            "metadata" => {
                if let Some(m) = v.as_object() {
                    for f in OWNED_METADATA {
                        if let Some(val) = m.get(*f) {
                            collect(val, vec!["f:metadata".into(), format!("f:{f}")], &mut set);
                        }
                    }
                }
            }
            _ => collect(v, vec![format!("f:{k}")], &mut set),
        }
    }
    set
}

fn collect(v: &Value, path: FieldPath, set: &mut FieldSet) {
    match v {
        // An empty map in a configuration claims nothing (the real server would own the empty map
        // itself; merging it would then still keep other managers' entries).
        Value::Null => {}
        Value::Object(m) if m.is_empty() => {}
        Value::Object(m) => {
            for (k, child) in m {
                let mut p = path.clone();
                p.push(format!("f:{k}"));
                collect(child, p, set);
            }
        }
        Value::Array(items) if !items.is_empty() && is_associative(items) => {
            for item in items {
                if let Some(key) = item_key(item) {
                    let mut p = path.clone();
                    p.push(key);
                    set.insert(p.clone());
                    collect(item, p, set);
                }
            }
        }
        _ => {
            set.insert(path);
        }
    }
}

pub fn value_at<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = obj;
    for seg in path {
        cur = if let Some(f) = seg.strip_prefix("f:") {
            cur.get(f)?
        } else {
            cur.as_array()?.iter().find(|i| item_matches(i, seg))?
        };
    }
    Some(cur)
}

pub(super) fn set_at(obj: &mut Value, path: &[String], value: Value) {
    let Some((first, rest)) = path.split_first() else {
        *obj = value;
        return;
    };
    if let Some(f) = first.strip_prefix("f:") {
        if !obj.is_object() {
            *obj = Value::Object(Map::new());
        }
        if let Some(m) = obj.as_object_mut() {
            let child = m.entry(f.to_string()).or_insert(Value::Null);
            set_at(child, rest, value);
        }
    } else if let Some(key_json) = first.strip_prefix("k:") {
        if !obj.is_array() {
            *obj = Value::Array(Vec::new());
        }
        if let Some(items) = obj.as_array_mut() {
            let pos = match items.iter().position(|i| item_matches(i, first)) {
                Some(p) => p,
                None => {
                    items.push(serde_json::from_str(key_json).unwrap_or(Value::Object(Map::new())));
                    items.len() - 1
                }
            };
            set_at(&mut items[pos], rest, value);
        }
    }
}

pub(super) fn remove_at(obj: &mut Value, path: &[String]) {
    let Some((last, parent_path)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for seg in parent_path {
        let next = if let Some(f) = seg.strip_prefix("f:") {
            cur.get_mut(f)
        } else {
            cur.as_array_mut()
                .and_then(|items| items.iter_mut().find(|i| item_matches(i, seg)))
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let Some(f) = last.strip_prefix("f:") {
        if let Some(m) = cur.as_object_mut() {
            m.remove(f);
        }
    } else if let Some(items) = cur.as_array_mut() {
        items.retain(|i| !item_matches(i, last));
    }
}

/// `.spec.template.spec.containers[name="app"].image`, the way conflicts are reported.
pub fn display_path(path: &[String]) -> String {
    let mut out = String::new();
    for seg in path {
        if let Some(f) = seg.strip_prefix("f:") {
            out.push('.');
            out.push_str(f);
        } else if let Some(k) = seg.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let parts: Vec<String> = key.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!("[{}]", parts.join(",")));
        }
    }
    out
}

/// The `FieldsV1` trie of a set, as structured-merge-diff's `fieldpath/serialize.go` writes it: a
/// member without children is `{}`, a member with children also carries `".": {}`.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut cur = &mut root;
        for seg in path {
            cur = meta::object_entry(cur, seg);
        }
    }
    for path in set {
        let mut cur = &mut root;
        for seg in path {
            cur = meta::object_entry(cur, seg);
        }
        if !cur.is_empty() {
            cur.insert(".".into(), json!({}));
        }
    }
    Value::Object(root)
}

/// Reads a `FieldsV1` trie the way structured-merge-diff's `fieldpath/serialize.go`
/// (`readIterV1`) and `serialize-pe.go` (`DeserializePathElement`) do: every value is an object
/// (or null), `"."` marks the path itself as a member, and a key is `f:`, `k:` (a JSON object of
/// at least one field), `v:` (a JSON value) or `i:` (an index). Keys of another type are dropped,
/// as a newer version may know them; a malformed key of a known type is an error.
pub fn decode_fields_v1(v: &Value) -> Result<FieldSet, String> {
    fn walk(v: &Value, path: &mut FieldPath, set: &mut FieldSet) -> Result<(), String> {
        let m = match v {
            Value::Null => {
                leaf(path, set);
                return Ok(());
            }
            Value::Object(m) => m,
            other => return Err(format!("expected an object in fieldsV1, got {other}")),
        };
        let mut children = false;
        for (k, child) in m {
            if k == "." {
                leaf(path, set);
                continue;
            }
            if known_path_element(k)? {
                children = true;
                path.push(k.clone());
                walk(child, path, set)?;
                path.pop();
            }
        }
        if !children {
            leaf(path, set);
        }
        Ok(())
    }
    fn leaf(path: &FieldPath, set: &mut FieldSet) {
        if !path.is_empty() {
            set.insert(path.clone());
        }
    }
    let mut set = FieldSet::new();
    walk(v, &mut Vec::new(), &mut set)?;
    Ok(set)
}

/// Whether `key` is a path element of a known type (and then well formed).
fn known_path_element(key: &str) -> Result<bool, String> {
    let Some((kind, content)) = key.split_at_checked(2) else {
        return Err(format!(
            "parsing key as path element: key must be 2 characters long: {key:?}"
        ));
    };
    let known = match kind {
        "f:" => true,
        "k:" => serde_json::from_str::<Map<String, Value>>(content)
            .map_err(|e| format!("parsing key as path element: {key:?}: {e}"))
            .and_then(|fields| {
                if fields.is_empty() {
                    Err(format!("parsing key as path element: {key:?}: an associative list key needs at least one field"))
                } else {
                    Ok(true)
                }
            })?,
        "v:" => serde_json::from_str::<Value>(content)
            .map(|_| true)
            .map_err(|e| format!("parsing key as path element: {key:?}: {e}"))?,
        "i:" => content
            .parse::<i64>()
            .map(|_| true)
            .map_err(|e| format!("parsing key as path element: {key:?}: {e}"))?,
        _ => false,
    };
    Ok(known)
}

/// A key field of a list item (`port` in `k:{"port":80,...}`): it goes with the item, never alone.
pub(super) fn is_key_field(path: &[String]) -> bool {
    let [.., item, leaf] = path else {
        return false;
    };
    match (item.strip_prefix("k:"), leaf.strip_prefix("f:")) {
        (Some(key), Some(field)) => {
            serde_json::from_str::<Map<String, Value>>(key).is_ok_and(|k| k.contains_key(field))
        }
        _ => false,
    }
}

pub(super) fn is_item(path: &[String]) -> bool {
    path.last().is_some_and(|s| s.starts_with("k:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owner_reference_applied_field_by_field_stays_one_item() {
        let mut obj = json!({});
        let key = r#"k:{"uid":"u-1"}"#.to_string();
        for (field, value) in [
            ("f:uid", json!("u-1")),
            ("f:kind", json!("Deployment")),
            ("f:name", json!("web")),
            ("f:apiVersion", json!("apps/v1")),
        ] {
            set_at(
                &mut obj,
                &[
                    "f:ownerReferences".to_string(),
                    key.clone(),
                    field.to_string(),
                ],
                value,
            );
        }
        assert_eq!(
            obj["ownerReferences"],
            json!([{"uid": "u-1", "kind": "Deployment", "name": "web", "apiVersion": "apps/v1"}])
        );
    }

    #[test]
    fn fields_v1_round_trip() {
        let obj = json!({"metadata": {"labels": {"a": "b"}}, "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "app", "image": "x"}]}}}});
        let set = fields_of(&obj, false);
        assert!(set.contains(&vec!["f:spec".to_string(), "f:replicas".to_string()]));
        assert_eq!(decode_fields_v1(&to_fields_v1(&set)).unwrap(), set);
    }
}
