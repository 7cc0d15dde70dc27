//! Namespace termination and ownerReference garbage collection.

use crate::meta::Lookup;
use std::collections::HashSet;

use serde_json::Value;

use super::log_write;
use crate::meta;
use crate::registry::{DeleteOptions, Registry, WriteOptions};
use crate::resources::known;
use crate::store::ObjectKey;

/// A terminating namespace loses everything in it, then disappears. Pods are deleted like any
/// API client deletes them, so they terminate gracefully; the namespace waits for them
/// (pkg/controller/namespace/deletion/namespaced_resources_deleter.go).
pub(super) fn namespaces(registry: &Registry) {
    // Judged before copying: the namespaces being deleted are few, the others many.
    for ns in registry.select_where(known::namespaces(), "", meta::is_deleting) {
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
    // One pass over the store under its lock, copying only what must change: cloning every object
    // each tick made the loop (and every API call waiting on the lock) cost the cluster's size.
    let (dependents, finished) = registry.store.scan(|objects| {
        let all: Vec<(&ObjectKey, &Value)> = objects.collect();
        let live: HashSet<&str> = all.iter().map(|(_, o)| meta::uid(o)).collect();
        let foreground: HashSet<&str> = all
            .iter()
            .filter(|(_, o)| meta::is_deleting(o) && has_finalizer(o, "foregroundDeletion"))
            .map(|(_, o)| meta::uid(o))
            .collect();
        let mut has_dependents: HashSet<String> = HashSet::new();
        let mut dependents = Vec::new();
        for (key, obj) in &all {
            let owners = meta::owner_uids(obj);
            if owners.is_empty() {
                continue;
            }
            let orphaned = owners.iter().all(|u| !live.contains(u.as_str()));
            let foreground_owner = owners.iter().any(|u| foreground.contains(u.as_str()));
            if orphaned || foreground_owner {
                dependents.push((*key).clone());
            }
            has_dependents.extend(owners);
        }
        let finished: Vec<(ObjectKey, Value)> = all
            .iter()
            .filter(|(_, o)| {
                foreground.contains(meta::uid(o)) && !has_dependents.contains(meta::uid(o))
            })
            .map(|(k, o)| ((*k).clone(), (*o).clone()))
            .collect();
        (dependents, finished)
    });
    for key in &dependents {
        if key.resource == known::pods().key() {
            delete_pod_gracefully(registry, key);
        } else {
            registry.remove(key);
        }
    }
    for (key, obj) in finished {
        let mut done = obj;
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

fn has_finalizer(obj: &Value, name: &str) -> bool {
    obj.at("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| f.iter().any(|x| x == name))
}
