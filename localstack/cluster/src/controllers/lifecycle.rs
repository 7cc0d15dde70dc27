//! Namespace termination and ownerReference garbage collection.

use std::collections::HashSet;

use serde_json::Value;

use super::log_write;
use crate::meta;
use crate::registry::{DeleteOptions, Registry, WriteOptions};
use crate::resources::known;

/// A terminating namespace loses everything in it, then disappears. Pods are deleted like any
/// API client deletes them, so they terminate gracefully; the namespace waits for them
/// (pkg/controller/namespace/deletion/namespaced_resources_deleter.go).
pub(super) fn namespaces(registry: &Registry) {
    for ns in registry
        .select(known::namespaces(), None, None)
        .into_iter()
        .filter(meta::is_deleting)
    {
        let name = meta::name(&ns).to_string();
        let mut pods_left = false;
        for key in registry.store.keys_in_namespace(&name) {
            if key.resource != known::pods().key() {
                registry.remove(&key);
                continue;
            }
            pods_left = true;
            delete_pod_gracefully(registry, &key);
        }
        if !pods_left {
            registry.remove(&crate::store::ObjectKey::new(
                known::namespaces().key(),
                "",
                &name,
            ));
        }
    }
}

/// A DELETE with default options, unless the pod is already terminating.
fn delete_pod_gracefully(registry: &Registry, key: &crate::store::ObjectKey) {
    if registry
        .store
        .get(key)
        .is_some_and(|p| meta::is_deleting(&p))
    {
        return;
    }
    log_write(
        "delete pod",
        registry.delete(
            known::pods(),
            &key.namespace,
            &key.name,
            &DeleteOptions::default(),
        ),
    );
}

/// Deletes dependents whose owners are all gone (background propagation) or being deleted in the
/// foreground, and finishes foreground deletions once no dependents remain.
pub(super) fn garbage_collect(registry: &Registry) {
    let all = registry.store.all_objects();
    let live: HashSet<&str> = all.iter().map(|(_, o)| meta::uid(o)).collect();
    let foreground: HashSet<&str> = all
        .iter()
        .filter(|(_, o)| meta::is_deleting(o) && has_finalizer(o, "foregroundDeletion"))
        .map(|(_, o)| meta::uid(o))
        .collect();
    let mut has_dependents: HashSet<String> = HashSet::new();
    for (key, obj) in &all {
        let owners = meta::owner_uids(obj);
        if owners.is_empty() {
            continue;
        }
        let orphaned = owners.iter().all(|u| !live.contains(u.as_str()));
        let foreground_owner = owners.iter().any(|u| foreground.contains(u.as_str()));
        if orphaned || foreground_owner {
            if key.resource == known::pods().key() {
                delete_pod_gracefully(registry, key);
            } else {
                registry.remove(key);
            }
        }
        has_dependents.extend(owners);
    }
    for (key, obj) in &all {
        if foreground.contains(meta::uid(obj)) && !has_dependents.contains(meta::uid(obj)) {
            let mut done = obj.clone();
            if let Some(f) = done
                .pointer_mut("/metadata/finalizers")
                .and_then(Value::as_array_mut)
            {
                f.retain(|x| x != "foregroundDeletion");
            }
            let rt = crate::resources::RESOURCES
                .iter()
                .find(|r| r.key() == key.resource);
            if let Some(rt) = rt {
                log_write(
                    "finish foreground deletion",
                    registry.update(
                        rt,
                        &key.namespace,
                        &key.name,
                        done,
                        None,
                        &WriteOptions::controller("garbage-collector"),
                    ),
                );
            }
        }
    }
}

fn has_finalizer(obj: &Value, name: &str) -> bool {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| f.iter().any(|x| x == name))
}
