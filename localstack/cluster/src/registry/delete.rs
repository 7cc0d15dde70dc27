//! Delete: preconditions, finalizers, and propagation to dependents.

use crate::meta::Lookup;
use serde_json::{Value, json};

use super::{DeleteOptions, Deletion, Propagation, Registry, key_of};
use crate::error::{ApiError, ApiResult};
use crate::meta;
use crate::resources::ResourceType;

impl Registry {
    pub fn delete(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> ApiResult<Deletion> {
        let current = self.get(rt, ns, name)?;
        if let Some(uid) = &opts.precondition_uid
            && uid != meta::uid(&current)
        {
            return Err(ApiError::stale(rt, name));
        }
        if let Some(rv) = opts.precondition_rv
            && Some(rv) != meta::resource_version(&current)
        {
            return Err(ApiError::stale(rt, name));
        }
        let finalizers: Vec<Value> = current
            .at("/metadata/finalizers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let namespace_delete = rt.is("", "namespaces");
        let grace = rt.is("", "pods").then(|| pod_grace_period(&current, opts));
        let pending = namespace_delete
            || !finalizers.is_empty()
            || opts.propagation == Propagation::Foreground
            || grace.is_some_and(|g| g > 0);
        if opts.dry_run {
            return Ok(if pending {
                Deletion::Pending(current)
            } else {
                Deletion::Removed(current)
            });
        }
        if opts.propagation == Propagation::Orphan {
            self.orphan_dependents(meta::uid(&current));
        }
        let key = key_of(rt, ns, name);
        if pending {
            // rest/delete.go BeforeDelete: a deletion in progress only changes for a shorter
            // grace period.
            let shorter = match (grace, current.at("/metadata/deletionGracePeriodSeconds")) {
                (Some(g), Some(old)) => old.as_i64().is_some_and(|old| g < old),
                _ => false,
            };
            if meta::is_deleting(&current) && !shorter {
                return Ok(Deletion::Pending(current));
            }
            let grace = grace.unwrap_or(0);
            let mut marked = current.clone();
            let metadata = meta::metadata_mut(&mut marked);
            let at = meta::unix_now().saturating_add(u64::try_from(grace).unwrap_or(0));
            metadata.insert("deletionTimestamp".into(), json!(meta::format_rfc3339(at)));
            metadata.insert("deletionGracePeriodSeconds".into(), json!(grace));
            if opts.propagation == Propagation::Foreground
                && !namespace_delete
                && !finalizers.iter().any(|f| *f == "foregroundDeletion")
            {
                let mut f = finalizers;
                f.push(json!("foregroundDeletion"));
                metadata.insert("finalizers".into(), Value::Array(f));
            }
            if namespace_delete {
                marked["status"]["phase"] = json!("Terminating");
            }
            let updated = self
                .store
                .update(&key, marked, None)
                .map_err(|_| ApiError::not_found(rt, name))?;
            return Ok(Deletion::Pending(updated));
        }
        let removed = self
            .store
            .delete(&key, None)
            .map_err(|_| ApiError::not_found(rt, name))?;
        Ok(Deletion::Removed(removed))
    }

    fn orphan_dependents(&self, owner_uid: &str) {
        for (key, obj) in self.store.all_objects() {
            if !meta::owner_uids(&obj).iter().any(|u| u == owner_uid) {
                continue;
            }
            let mut changed = obj.clone();
            if let Some(refs) = changed
                .pointer_mut("/metadata/ownerReferences")
                .and_then(Value::as_array_mut)
            {
                refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(owner_uid));
            }
            if let Err(e) = self.store.update(&key, changed, None) {
                tracing::debug!(?key, error = %e, "dependent changed while orphaning");
            }
        }
    }
}

/// pkg/registry/core/pod/strategy.go CheckGracefulDelete: the requested grace period, else the
/// pod's `terminationGracePeriodSeconds`; 0 for a pod never scheduled or already terminal; a
/// negative request becomes 1.
fn pod_grace_period(pod: &Value, opts: &DeleteOptions) -> i64 {
    let mut period = opts.grace_period_seconds.unwrap_or_else(|| {
        pod.at("/spec/terminationGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0)
    });
    if pod
        .at("/spec/nodeName")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        period = 0;
    }
    if matches!(
        pod.at("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    ) {
        period = 0;
    }
    if period < 0 { 1 } else { period }
}
