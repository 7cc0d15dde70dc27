//! Patch: JSON merge, JSON patch, strategic merge, and server-side apply.

use crate::meta::Lookup;
use serde_json::Value;

use super::update::{bump_generation, keep_status};
use super::{PatchKind, Registry, WriteOptions, key_of};
use crate::apply;
use crate::error::{ApiError, ApiResult, Cause};
use crate::meta;
use crate::resources::ResourceType;

impl Registry {
    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        kind: PatchKind,
        body: &[u8],
        subresource: Option<&str>,
        opts: &WriteOptions,
    ) -> ApiResult<Value> {
        if let PatchKind::Apply { force } = kind {
            return self.apply(rt, ns, name, body, force, subresource, opts);
        }
        let old = self.get(rt, ns, name)?;
        let mut patched = old.clone();
        match kind {
            PatchKind::Merge | PatchKind::Strategic => {
                let patch: Value = serde_json::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
                if !patch.is_object() {
                    return Err(ApiError::bad_request("the patch must be a JSON object"));
                }
                if kind == PatchKind::Merge {
                    json_patch::merge(&mut patched, &patch);
                } else {
                    apply::strategic_merge(&mut patched, &patch);
                }
            }
            PatchKind::Json => {
                let patch: json_patch::Patch = serde_json::from_slice(body).map_err(|e| {
                    ApiError::bad_request(format!("error decoding json patch: {e}"))
                })?;
                json_patch::patch(&mut patched, &patch).map_err(|e| {
                    ApiError::invalid(
                        rt,
                        name,
                        vec![Cause {
                            field: String::new(),
                            reason: "FieldValueInvalid",
                            message: e.to_string(),
                        }],
                    )
                })?;
            }
            PatchKind::Apply { .. } => unreachable!("handled above"),
        }
        // The patched object must still decode (apiserver `endpoints/handlers/patch.go`
        // reports a patch that breaks it as an invalid `patch`); managedFields a patch writes
        // are then honoured by the update below.
        apply::check_shape(&patched).map_err(|message| {
            ApiError::invalid(
                rt,
                name,
                vec![Cause {
                    field: "patch".into(),
                    reason: "FieldValueInvalid",
                    message,
                }],
            )
        })?;
        // A patch without a resourceVersion is unconditional: it applies to what was just read.
        if meta::resource_version(&patched) == meta::resource_version(&old) {
            meta::metadata_mut(&mut patched).remove("resourceVersion");
        }
        self.update(rt, ns, name, patched, subresource, opts)
    }

    /// Server-side apply (`application/apply-patch+yaml`); creates the object when it is missing.
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        body: &[u8],
        force: bool,
        subresource: Option<&str>,
        opts: &WriteOptions,
    ) -> ApiResult<Value> {
        let config: Value = serde_yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
        if !config.is_object() {
            return Err(ApiError::bad_request(
                "the apply configuration must be an object",
            ));
        }
        if config.get("apiVersion").and_then(Value::as_str) != Some(&rt.api_version())
            || config.get("kind").and_then(Value::as_str) != Some(rt.kind)
        {
            return Err(ApiError::bad_request(format!(
                "the apply configuration must set apiVersion {:?} and kind {:?}",
                rt.api_version(),
                rt.kind
            )));
        }
        // structuredmerge.go: an apply configuration cannot set field ownership.
        if config
            .at("/metadata/managedFields")
            .is_some_and(|m| !m.is_null())
        {
            return Err(ApiError::bad_request("metadata.managedFields must be nil"));
        }
        if meta::name(&config) != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                meta::name(&config)
            )));
        }
        let live = self.try_get(rt, ns, name);
        let applied = apply::apply(
            live.as_ref(),
            &config,
            &opts.manager,
            force,
            &rt.api_version(),
        )
        .map_err(|c| ApiError::apply_conflicts(rt, name, &c))?;
        match live {
            None => {
                let mut fresh = applied;
                let managed = fresh.at("/metadata/managedFields").cloned();
                let created = self.create(
                    rt,
                    ns,
                    fresh.take(),
                    &WriteOptions {
                        manager: opts.manager.clone(),
                        dry_run: true,
                    },
                )?;
                let mut created = created;
                // The create path recorded an Update entry; the apply entry is what applies here.
                if let Some(mf) = managed {
                    meta::metadata_mut(&mut created).insert("managedFields".into(), mf);
                }
                if opts.dry_run {
                    return Ok(created);
                }
                let key = key_of(rt, ns, name);
                self.store
                    .create(key, created)
                    .map_err(|_| ApiError::already_exists(rt, name))
            }
            Some(old) => {
                let mut new = applied;
                if let Some(rv) = meta::resource_version(&config)
                    && Some(rv) != meta::resource_version(&old)
                {
                    return Err(ApiError::stale(rt, name));
                }
                let managed = new.at("/metadata/managedFields").cloned();
                if subresource != Some("status") {
                    keep_status(rt, &old, &mut new);
                }
                self.prepare(rt, &mut new, Some(&old))?;
                bump_generation(&old, &mut new);
                if let Some(mf) = managed {
                    meta::metadata_mut(&mut new).insert("managedFields".into(), mf);
                }
                let expected = meta::resource_version(&old);
                self.write(rt, &old, new, expected, opts.dry_run)
            }
        }
    }
}
