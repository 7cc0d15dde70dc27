//! Field ownership (`metadata.managedFields`), server-side apply, and the strategic merge patch.
//! Field sets and paths are in [`fields`]; the entries as stored and as requests set them in
//! [`managed`]; kubectl's client-side apply annotation in [`last_applied`].

mod fields;
mod last_applied;
mod managed;

use crate::meta::Lookup;
use serde_json::{Map, Value, json};

use crate::meta;
pub use fields::{
    FieldPath, FieldSet, decode_fields_v1, display_path, fields_of, to_fields_v1, value_at,
};
use fields::{is_associative, is_item, is_key_field, item_key, remove_at, set_at};
use last_applied::KUBECTL;
pub use managed::{ManagedEntry, check_shape, decode_live_or_new, read_managed, write_managed};

/// The manager that owns what an object held before its first apply, when nothing tracked it
/// (skipnonapplied.go).
const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// Records a non-apply write (create, update, patch): the writer owns what it changed, others lose
/// it. The bookkeeping starts from the request's own managedFields when it sets them (see
/// [`decode_live_or_new`]); an update of an object whose field management is empty (reset by a
/// request, or never tracked) stays untracked (apimachinery
/// `pkg/util/managedfields/internal/skipnonapplied.go`).
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    subresource: Option<&str>,
) {
    let mut entries = decode_live_or_new(old, new, subresource.is_some());
    if old.is_some() && entries.is_empty() {
        write_managed(new, &[]);
        return;
    }
    let include_status = subresource == Some("status");
    let new_fields = fields_of(new, include_status);
    let changed: FieldSet = new_fields
        .iter()
        .filter(|p| !is_item(p))
        .filter(|p| old.and_then(|o| value_at(o, p)) != value_at(new, p))
        .cloned()
        .collect();
    // structured-merge-diff merge/update.go: every manager loses what the write removed (and,
    // below, what it changed); fields the object never had stay where a request put them.
    let removed =
        |p: &FieldPath| old.is_some_and(|o| value_at(o, p).is_some()) && value_at(new, p).is_none();
    for e in &mut entries {
        e.fields.retain(|p| !removed(p));
        if e.manager != manager {
            e.fields.retain(|p| !changed.contains(p));
        }
    }
    if !changed.is_empty() {
        let subresource = subresource.map(str::to_string);
        let pos = entries.iter().position(|e| {
            e.manager == manager
                && e.operation == "Update"
                && e.subresource == subresource
                && e.api_version == api_version
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
    // skipnonapplied.go: an object nobody's fields are tracked on gets an Update manager owning
    // everything it holds, so the first applier shares (and, by changing, conflicts on) it.
    if let Some(live) = live
        && entries.is_empty()
    {
        entries.push(ManagedEntry {
            manager: BEFORE_FIRST_APPLY.into(),
            operation: "Update".into(),
            api_version: api_version.to_string(),
            time: meta::now_rfc3339(),
            subresource: None,
            fields: fields_of(live, false),
        });
    }
    let applied = fields_of(config, false);

    let mut conflicts: Vec<(String, FieldPath)> = Vec::new();
    for e in entries.iter().filter(|e| e.manager != manager) {
        for p in e.fields.intersection(&applied).filter(|p| !is_item(p)) {
            if value_at(&result, p) != value_at(config, p) {
                conflicts.push((e.manager.clone(), p.clone()));
            }
        }
    }
    // lastappliedmanager.go: kubectl may take over, without forcing, the fields its client-side
    // apply annotation says it set and nobody changed since.
    if !conflicts.is_empty()
        && !force
        && manager == KUBECTL
        && let Some(own) =
            live.and_then(|l| last_applied::fields_set_by_client_side_apply(l, api_version))
    {
        conflicts.retain(|(_, p)| !own.contains(p));
        if conflicts.is_empty() {
            return apply(live, config, manager, true, api_version);
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts
            .iter()
            .map(|(m, p)| (m.clone(), display_path(p)))
            .collect());
    }
    let contested: FieldSet = conflicts.into_iter().map(|(_, p)| p).collect();
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
    // A map the applier owned as a whole (`".": {}` in its entry) stays while it applies
    // something inside it.
    let still_applied = |p: &FieldPath| {
        applied
            .iter()
            .any(|q| q.len() > p.len() && q.starts_with(p))
    };
    let mut dropped: Vec<&FieldPath> = previous
        .difference(&applied)
        .filter(|p| !owned_by_others(p) && !is_key_field(p) && !still_applied(p))
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
    keep_applied_order(&mut result, config, live);
    for top in ["apiVersion", "kind"] {
        if let Some(v) = config.get(top) {
            result[top] = v.clone();
        }
    }
    if let Some(name) = config.at("/metadata/name") {
        meta::metadata_mut(&mut result).insert("name".into(), name.clone());
    }

    if manager == KUBECTL {
        last_applied::sync_annotation(&mut result, config);
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

/// Puts the items of every associative list of `result` in the order server-side apply gives
/// them: structured-merge-diff's `typed/merge.go` (`mergingWalker.visitListItems`) walks the live
/// list (lhs) and the applied one (rhs) together, keeping the applied configuration's order for
/// its items and leaving items only the live object has where they were. Order matters beyond
/// looks: the kubelet expands `$(VAR)` in an env value only against the variables before it.
fn keep_applied_order(result: &mut Value, config: &Value, live: Option<&Value>) {
    match (result, config) {
        (Value::Object(out), Value::Object(config)) => {
            for (k, v) in config {
                if let Some(child) = out.get_mut(k) {
                    keep_applied_order(child, v, live.and_then(|l| l.get(k)));
                }
            }
        }
        (Value::Array(out), Value::Array(config)) if is_associative(config) => {
            let rhs: Vec<String> = config.iter().filter_map(item_key).collect();
            let lhs: Vec<String> = live
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(item_key)
                .filter(|k| out.iter().any(|i| item_key(i).as_ref() == Some(k)))
                .collect();
            let order = merged_order(&lhs, &rhs);
            let mut items: Vec<Option<Value>> = std::mem::take(out).into_iter().map(Some).collect();
            for key in &order {
                if let Some(slot) = items
                    .iter_mut()
                    .find(|i| i.as_ref().and_then(item_key).as_ref() == Some(key))
                {
                    out.extend(slot.take());
                }
            }
            // Whatever the walk did not name (an item without a key) stays, at the end.
            out.extend(items.into_iter().flatten());
            for item in config {
                let Some(key) = item_key(item) else { continue };
                let before = live
                    .and_then(Value::as_array)
                    .and_then(|l| l.iter().find(|i| item_key(i).as_ref() == Some(&key)));
                if let Some(mine) = out.iter_mut().find(|i| item_key(i).as_ref() == Some(&key)) {
                    keep_applied_order(mine, item, before);
                }
            }
        }
        _ => {}
    }
}

/// The key order of `visitListItems` for a live list `lhs` and an applied list `rhs`.
fn merged_order(lhs: &[String], rhs: &[String]) -> Vec<String> {
    let in_rhs = |k: &String| rhs.contains(k);
    let shared: Vec<&String> = rhs.iter().filter(|k| lhs.contains(k)).collect();
    let mut next_shared = shared.iter().copied();
    let mut want = next_shared.next();
    let mut out: Vec<String> = Vec::with_capacity(lhs.len() + rhs.len());
    let (mut l, mut r) = (0, 0);
    while l < lhs.len() || r < rhs.len() {
        if l < lhs.len() && r < rhs.len() {
            if lhs[l] == rhs[r] {
                out.push(rhs[r].clone());
                if want == Some(&rhs[r]) {
                    want = next_shared.next();
                }
                l += 1;
                r += 1;
                continue;
            }
            if in_rhs(&lhs[l]) && want.is_some_and(|w| *w != lhs[l]) {
                l += 1;
                continue;
            }
        }
        if l < lhs.len() && !in_rhs(&lhs[l]) {
            out.push(lhs[l].clone());
            l += 1;
            continue;
        }
        if r < rhs.len() {
            if !out.contains(&rhs[r]) {
                out.push(rhs[r].clone());
            }
            if want == Some(&rhs[r]) {
                want = next_shared.next();
            }
            r += 1;
        } else {
            // Only shared items are left on the live side, all already placed.
            l += 1;
        }
    }
    out
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

    fn env_names(obj: &Value) -> Vec<&str> {
        obj.at("/spec/containers/0/env")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|e| e["name"].as_str())
            .collect()
    }

    /// structured-merge-diff typed/merge.go (visitListItems): the applied order is kept, so a
    /// `$(POD_IP)` after `POD_IP` stays after it (kubelet expansion needs that order).
    #[test]
    fn server_side_apply_keeps_the_applied_order_of_associative_lists() {
        let config = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "web", "image": "x", "env": [
                {"name": "Z", "value": "1"},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "LISTEN", "value": "$(POD_IP):8080"}]}]}});
        let created = apply(None, &config, "m", false, "v1").unwrap();
        assert_eq!(env_names(&created), ["Z", "POD_IP", "LISTEN"]);

        // Another manager's item stays where it was; the applied items keep their new order.
        let mut live = created.clone();
        live["spec"]["containers"][0]["env"]
            .as_array_mut()
            .unwrap()
            .insert(1, json!({"name": "OTHER", "value": "o"}));
        let reordered = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "web", "image": "x", "env": [
                {"name": "A", "value": "new"},
                {"name": "Z", "value": "1"},
                {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "LISTEN", "value": "$(POD_IP):8080"}]}]}});
        let merged = apply(Some(&live), &reordered, "m", false, "v1").unwrap();
        assert_eq!(env_names(&merged), ["A", "Z", "OTHER", "POD_IP", "LISTEN"]);
    }

    #[test]
    fn the_merged_order_follows_visit_list_items() {
        let k = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(merged_order(&[], &k(&["b", "a"])), k(&["b", "a"]));
        assert_eq!(
            merged_order(&k(&["a", "b"]), &k(&["b", "a"])),
            k(&["b", "a"])
        );
        assert_eq!(
            merged_order(&k(&["a", "x", "b"]), &k(&["a", "c", "b"])),
            k(&["a", "x", "c", "b"])
        );
    }

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
