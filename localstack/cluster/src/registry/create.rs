//! Create: server-owned metadata, the namespace check, and admission.

use serde_json::{Value, json};

use super::{Registry, WriteOptions, key_of};
use crate::apply;
use crate::error::{ApiError, ApiResult};
use crate::meta;
use crate::quota;
use crate::resources::{ResourceType, known};
use crate::store::StoreError;

impl Registry {
    fn check_namespace_for_create(&self, rt: &ResourceType, ns: &str) -> ApiResult<()> {
        if !rt.namespaced {
            return Ok(());
        }
        let namespace = self
            .try_get(known::namespaces(), "", ns)
            .ok_or_else(|| ApiError::namespace_not_found(ns))?;
        if meta::is_deleting(&namespace) {
            return Err(ApiError::forbidden(format!(
                "{} {:?} is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                rt.qualified(),
                meta::name(&namespace)
            )));
        }
        Ok(())
    }
    pub fn create(
        &self,
        rt: &ResourceType,
        ns: &str,
        mut obj: Value,
        opts: &WriteOptions,
    ) -> ApiResult<Value> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request must be a JSON object",
            ));
        }
        if let Some(kind) = obj.get("kind").and_then(Value::as_str)
            && kind != rt.kind
        {
            return Err(ApiError::bad_request(format!(
                "the kind {kind:?} in the body does not match the resource {:?}",
                rt.qualified()
            )));
        }
        let body_ns = meta::namespace(&obj).to_string();
        if rt.namespaced && !body_ns.is_empty() && body_ns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let metadata = meta::metadata_mut(&mut obj);
        let has_name = metadata
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        if !has_name
            && let Some(prefix) = metadata
                .get("generateName")
                .and_then(Value::as_str)
                .map(str::to_string)
        {
            metadata.insert(
                "name".into(),
                json!(format!("{prefix}{}", meta::random_suffix(5))),
            );
        }
        if rt.namespaced {
            metadata.insert("namespace".into(), json!(ns));
        } else {
            metadata.remove("namespace");
        }
        for server_owned in [
            "uid",
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            metadata.remove(server_owned);
        }
        metadata.insert("uid".into(), json!(meta::new_uid()));
        metadata.insert("creationTimestamp".into(), json!(meta::now_rfc3339()));
        if rt.has_status() && !rt.is("", "namespaces") && !rt.is("", "nodes") {
            metadata.insert("generation".into(), json!(1));
            // Status is written by controllers through the status subresource, never on create.
            if let Some(root) = obj.as_object_mut() {
                root.remove("status");
            }
        }
        // managedFields sent with a create are honoured like those of an update (apiserver
        // `endpoints/handlers/create.go` runs the field manager over the new object).
        apply::check_shape(&obj).map_err(ApiError::bad_request)?;
        self.check_namespace_for_create(rt, ns)?;
        self.prepare(rt, &mut obj, None)?;
        quota::admit_create(self, rt, ns, &mut obj)?;
        apply::record_update(None, &mut obj, &opts.manager, &rt.api_version(), None);
        let name = meta::name(&obj).to_string();
        let key = key_of(rt, ns, &name);
        if opts.dry_run {
            return match self.store.get(&key) {
                Some(_) => Err(ApiError::already_exists(rt, &name)),
                None => Ok(obj),
            };
        }
        self.store.create(key, obj).map_err(|e| match e {
            StoreError::AlreadyExists => ApiError::already_exists(rt, &name),
            other => ApiError::internal(other.to_string()),
        })
    }
}
