//! Update (PUT, also of the `status` subresource) and the write every update ends in.

use crate::meta::Lookup;
use serde_json::{Value, json};

use super::{Registry, WriteOptions, key_of};
use crate::apply;
use crate::error::{ApiError, ApiResult};
use crate::meta;
use crate::resources::ResourceType;
use crate::store::StoreError;

/// The part of an object that `metadata.generation` tracks: everything but metadata and status.
fn spec_part(obj: &Value) -> Value {
    let mut copy = obj.clone();
    if let Some(m) = copy.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    copy
}

/// Bumps `metadata.generation` of `new` when its spec part differs from `old`'s; objects without a
/// generation (namespaces, nodes, kinds without status) keep none.
pub(super) fn bump_generation(old: &Value, new: &mut Value) {
    if old.at("/metadata/generation").is_some() && spec_part(old) != spec_part(new) {
        let generation = old
            .at("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            + 1;
        meta::metadata_mut(new).insert("generation".into(), json!(generation));
    }
}

/// A write to the object itself keeps the stored status: only the status subresource changes it.
pub(super) fn keep_status(rt: &ResourceType, old: &Value, new: &mut Value) {
    if !rt.has_status() {
        return;
    }
    match old.get("status") {
        Some(s) => new["status"] = s.clone(),
        None => {
            if let Some(m) = new.as_object_mut() {
                m.remove("status");
            }
        }
    }
}

impl Registry {
    /// PUT on the object or on its `status` subresource.
    pub fn update(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        mut obj: Value,
        subresource: Option<&str>,
        opts: &WriteOptions,
    ) -> ApiResult<Value> {
        let old = self.get(rt, ns, name)?;
        if meta::name(&obj) != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                meta::name(&obj)
            )));
        }
        let expected = meta::resource_version(&obj);
        if let Some(rv) = expected
            && Some(rv) != meta::resource_version(&old)
        {
            return Err(ApiError::stale(rt, name));
        }
        let mut new = match subresource {
            Some("status") => {
                let mut merged = old.clone();
                merged["status"] = obj.get("status").cloned().unwrap_or(Value::Null);
                merged
            }
            _ => {
                keep_status(rt, &old, &mut obj);
                // Server-owned metadata survives whatever the client sent.
                let old_meta = old.get("metadata").cloned().unwrap_or_default();
                let metadata = meta::metadata_mut(&mut obj);
                for keep in [
                    "uid",
                    "creationTimestamp",
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                    "generation",
                    "namespace",
                ] {
                    match old_meta.get(keep) {
                        Some(v) => metadata.insert(keep.into(), v.clone()),
                        None => metadata.remove(keep),
                    };
                }
                // managedFields the request leaves out stay as they are; those it sets are
                // honoured (apply::record_update).
                apply::check_shape(&obj).map_err(ApiError::bad_request)?;
                obj
            }
        };
        self.prepare(rt, &mut new, Some(&old))?;
        if subresource != Some("status") {
            bump_generation(&old, &mut new);
        }
        apply::record_update(
            Some(&old),
            &mut new,
            &opts.manager,
            &rt.api_version(),
            subresource,
        );
        self.write(rt, &old, new, expected, opts.dry_run)
    }

    /// Persists an update; an object marked for deletion whose finalizers are gone is removed.
    pub(super) fn write(
        &self,
        rt: &ResourceType,
        old: &Value,
        new: Value,
        expected: Option<u64>,
        dry_run: bool,
    ) -> ApiResult<Value> {
        let name = meta::name(old).to_string();
        if dry_run {
            return Ok(new);
        }
        let key = key_of(rt, meta::namespace(old), &name);
        let finalizers_empty = new
            .at("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        if meta::is_deleting(&new) && finalizers_empty && !rt.is("", "namespaces") {
            return self
                .store
                .delete(&key, None)
                .map_err(|_| ApiError::not_found(rt, &name));
        }
        self.store.update(&key, new, expected).map_err(|e| match e {
            StoreError::Stale(_) => ApiError::stale(rt, &name),
            StoreError::NotFound => ApiError::not_found(rt, &name),
            other => ApiError::internal(other.to_string()),
        })
    }
}
