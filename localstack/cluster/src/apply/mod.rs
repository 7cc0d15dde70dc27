//! Field ownership (`metadata.managedFields`), server-side apply, and the strategic merge patch.
//! Field sets and paths are in [`fields`].

mod fields;

use serde_json::{Map, Value, json};

use crate::meta;
pub use fields::{
    FieldPath, FieldSet, display_path, fields_of, from_fields_v1, to_fields_v1, value_at,
};
use fields::{is_associative, is_item, is_key_field, item_key, remove_at, set_at};

/// One `managedFields` entry.
#[derive(Debug, Clone)]
pub struct ManagedEntry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: Option<String>,
    pub fields: FieldSet,
}

pub fn read_managed(obj: &Value) -> Vec<ManagedEntry> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|entries| {
            entries
                .iter()
                .map(|e| ManagedEntry {
                    manager: e
                        .get("manager")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    operation: e
                        .get("operation")
                        .and_then(Value::as_str)
                        .unwrap_or("Update")
                        .to_string(),
                    api_version: e
                        .get("apiVersion")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    time: e
                        .get("time")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    subresource: e
                        .get("subresource")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    fields: e.get("fieldsV1").map(from_fields_v1).unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn write_managed(obj: &mut Value, entries: &[ManagedEntry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager,
                "operation": e.operation,
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": to_fields_v1(&e.fields),
            });
            if let Some(s) = &e.subresource {
                v["subresource"] = json!(s);
            }
            v
        })
        .collect();
    let metadata = meta::metadata_mut(obj);
    if list.is_empty() {
        metadata.remove("managedFields");
    } else {
        metadata.insert("managedFields".into(), Value::Array(list));
    }
}

/// Records a non-apply write (create, update, patch): the writer owns what it changed, others lose it.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    subresource: Option<&str>,
) {
    let mut entries = old.map(read_managed).unwrap_or_default();
    let include_status = subresource == Some("status");
    let new_fields = fields_of(new, include_status);
    let changed: FieldSet = new_fields
        .iter()
        .filter(|p| !is_item(p))
        .filter(|p| old.and_then(|o| value_at(o, p)) != value_at(new, p))
        .cloned()
        .collect();
    let all_now = fields_of(new, true);
    for e in &mut entries {
        e.fields.retain(|p| all_now.contains(p));
        if e.manager != manager {
            e.fields.retain(|p| !changed.contains(p));
        }
    }
    if !changed.is_empty() {
        let subresource = subresource.map(str::to_string);
        let pos = entries.iter().position(|e| {
            e.manager == manager && e.operation == "Update" && e.subresource == subresource
        });
        let entry = match pos {
            Some(p) => &mut entries[p],
            None => {
                entries.push(ManagedEntry {
                    manager: manager.to_string(),
                    operation: "Update".into(),
                    api_version: api_version.to_string(),
                    time: String::new(),
                    subresource,
                    fields: FieldSet::new(),
                });
                let last = entries.len() - 1;
                &mut entries[last]
            }
        };
        entry.time = meta::now_rfc3339();
        for p in &changed {
            entry.fields.insert(p.clone());
            // Owning a field inside a list item implies owning the item.
            for i in 1..p.len() {
                if p[i - 1].starts_with("k:") {
                    entry.fields.insert(p[..i].to_vec());
                }
            }
        }
    }
    write_managed(new, &entries);
}

/// Contested fields: (other manager, field path) pairs.
pub type Conflicts = Vec<(String, String)>;

/// Applies `config` as `manager` over `live` (None when the object does not exist yet).
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    force: bool,
    api_version: &str,
) -> Result<Value, Conflicts> {
    let mut result = live.cloned().unwrap_or_else(|| json!({}));
    let mut entries = live.map(read_managed).unwrap_or_default();
    let applied = fields_of(config, false);

    let mut conflicts = Conflicts::new();
    let mut contested = FieldSet::new();
    for e in entries.iter().filter(|e| e.manager != manager) {
        for p in e.fields.intersection(&applied).filter(|p| !is_item(p)) {
            if value_at(&result, p) != value_at(config, p) {
                conflicts.push((e.manager.clone(), display_path(p)));
                contested.insert(p.clone());
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    for e in entries.iter_mut().filter(|e| e.manager != manager) {
        e.fields.retain(|p| !contested.contains(p));
    }

    let previous: FieldSet = entries
        .iter()
        .find(|e| e.manager == manager && e.operation == "Apply")
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let owned_by_others = |p: &FieldPath| {
        entries
            .iter()
            .filter(|e| !(e.manager == manager && e.operation == "Apply"))
            .any(|e| e.fields.iter().any(|q| q.starts_with(p)))
    };
    let mut dropped: Vec<&FieldPath> = previous
        .difference(&applied)
        .filter(|p| !owned_by_others(p) && !is_key_field(p))
        .collect();
    // Whole items go first: their leaves then no longer resolve, and removing a key leaf first
    // would leave an item its key no longer finds (an old port without `port`, then a 422).
    dropped.sort_by_key(|p| p.len());
    for p in dropped {
        remove_at(&mut result, p);
    }

    for p in applied.iter().filter(|p| !is_item(p)) {
        if let Some(v) = value_at(config, p) {
            set_at(&mut result, p, v.clone());
        }
    }
    // Items given with only their key produce no leaves; make sure they exist.
    for p in applied.iter().filter(|p| is_item(p)) {
        if value_at(&result, p).is_none() {
            set_at(
                &mut result,
                p,
                value_at(config, p).cloned().unwrap_or(Value::Null),
            );
        }
    }
    for top in ["apiVersion", "kind"] {
        if let Some(v) = config.get(top) {
            result[top] = v.clone();
        }
    }
    if let Some(name) = config.pointer("/metadata/name") {
        meta::metadata_mut(&mut result).insert("name".into(), name.clone());
    }

    entries.retain(|e| !(e.manager == manager && e.operation == "Apply"));
    entries.push(ManagedEntry {
        manager: manager.to_string(),
        operation: "Apply".into(),
        api_version: api_version.to_string(),
        time: meta::now_rfc3339(),
        subresource: None,
        fields: applied,
    });
    write_managed(&mut result, &entries);
    Ok(result)
}

/// Strategic merge patch, simplified: a JSON merge patch, except that lists whose items carry a
/// known key (containers and volumes by `name`, ports by port number) are merged item by item.
/// `$patch`/`$setElementOrder` directives are ignored.
pub fn strategic_merge(target: &mut Value, patch: &Value) {
    let Some(patch_map) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Some(target_map) = target.as_object_mut() else {
        return;
    };
    for (k, pv) in patch_map {
        if k.starts_with('$') {
            continue;
        }
        if pv.is_null() {
            target_map.remove(k);
            continue;
        }
        let tv = target_map.entry(k.clone()).or_insert(Value::Null);
        match (tv.as_array_mut(), pv.as_array()) {
            (Some(items), Some(patch_items))
                if is_associative(patch_items) && items.iter().all(|i| item_key(i).is_some()) =>
            {
                for pi in patch_items {
                    let key = item_key(pi);
                    match items.iter_mut().find(|i| item_key(i) == key) {
                        Some(existing) => strategic_merge(existing, pi),
                        None => {
                            let mut fresh = Value::Object(Map::new());
                            strategic_merge(&mut fresh, pi);
                            items.push(fresh);
                        }
                    }
                }
            }
            _ if pv.is_object() => strategic_merge(tv, pv),
            _ => *tv = pv.clone(),
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_conflicts_force_and_removal() {
        let first = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}});
        let live = apply(None, &first, "one", false, "v1").unwrap();
        let other = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "9"}});
        let conflicts = apply(Some(&live), &other, "two", false, "v1").unwrap_err();
        assert_eq!(conflicts, vec![("one".to_string(), ".data.a".to_string())]);
        let forced = apply(Some(&live), &other, "two", true, "v1").unwrap();
        assert_eq!(forced["data"], json!({"a": "9", "b": "2"}));
        // "one" drops b; a now belongs to "two" and stays.
        let shrink =
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {}});
        let after = apply(Some(&forced), &shrink, "one", false, "v1").unwrap();
        assert_eq!(after["data"], json!({"a": "9"}));
    }

    #[test]
    fn reapplying_a_changed_list_key_replaces_the_item() {
        let svc = |port: i64| {
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                   "spec": {"ports": [{"name": "http", "port": port, "targetPort": 8080}]}})
        };
        let live = apply(None, &svc(80), "a", false, "v1").unwrap();
        let next = apply(Some(&live), &svc(8080), "a", false, "v1").unwrap();
        assert_eq!(
            next["spec"]["ports"],
            json!([{"name": "http", "port": 8080, "protocol": "TCP", "targetPort": 8080}])
        );
        // Another manager's field in the old item keeps the item, with its key intact.
        let mut shared = live.clone();
        let mut entries = read_managed(&shared);
        entries.push(ManagedEntry {
            manager: "b".into(),
            operation: "Update".into(),
            api_version: "v1".into(),
            time: String::new(),
            subresource: None,
            fields: [vec![
                "f:spec".to_string(),
                "f:ports".to_string(),
                "k:{\"port\":80,\"protocol\":\"TCP\"}".to_string(),
                "f:nodePort".to_string(),
            ]]
            .into(),
        });
        shared["spec"]["ports"][0]["nodePort"] = json!(30080);
        write_managed(&mut shared, &entries);
        let next = apply(Some(&shared), &svc(8080), "a", false, "v1").unwrap();
        assert_eq!(
            next["spec"]["ports"],
            json!([
                {"port": 80, "protocol": "TCP", "nodePort": 30080},
                {"name": "http", "port": 8080, "protocol": "TCP", "targetPort": 8080}
            ])
        );
    }

    #[test]
    fn strategic_merge_merges_containers_by_name() {
        let mut target =
            json!({"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "2"}]});
        strategic_merge(
            &mut target,
            &json!({"containers": [{"name": "b", "image": "3"}]}),
        );
        assert_eq!(
            target,
            json!({"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "3"}]})
        );
    }
}
