//! Kubernetes write semantics on top of [`Store`]: metadata, defaults, validation, status
//! subresources, generations, field ownership, finalizers and deletion propagation.
//! The HTTP handlers and the in-process controllers both write through here.

use std::collections::HashSet;
use std::sync::Mutex;

use serde_json::{Value, json};

use crate::apply;
use crate::defaults::apply_defaults;
use crate::error::{ApiError, ApiResult, Cause};
use crate::meta;
use crate::resources::{ResourceType, known};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::store::{ObjectKey, Store, StoreError};
use crate::validation::validate;

/// Who writes and how: the field manager, and whether to persist at all.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    pub manager: String,
    pub dry_run: bool,
}

impl WriteOptions {
    pub fn controller(manager: &str) -> Self {
        Self {
            manager: manager.to_string(),
            dry_run: false,
        }
    }
}

/// How a delete treats dependents (`propagationPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Orphan,
    Background,
    Foreground,
}

#[derive(Debug, Clone)]
pub struct DeleteOptions {
    pub propagation: Propagation,
    pub dry_run: bool,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<u64>,
}

impl Default for DeleteOptions {
    fn default() -> Self {
        Self {
            propagation: Propagation::Background,
            dry_run: false,
            precondition_uid: None,
            precondition_rv: None,
        }
    }
}

/// What a delete did: removed the object now, or marked it and left it for finalizers/controllers.
#[derive(Debug)]
pub enum Deletion {
    Removed(Value),
    Pending(Value),
}

/// List query: selectors and paging.
#[derive(Debug, Default)]
pub struct ListOptions {
    pub label_selector: Option<LabelSelector>,
    pub field_selector: Option<FieldSelector>,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
}

/// The patch formats of `PATCH`, by content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Merge,
    Json,
    Strategic,
    Apply { force: bool },
}

pub struct Registry {
    pub store: Store,
    next_cluster_ip: Mutex<u32>,
}

fn key_of(rt: &ResourceType, ns: &str, name: &str) -> ObjectKey {
    ObjectKey::new(rt.key(), if rt.namespaced { ns } else { "" }, name)
}

/// The part of an object that `metadata.generation` tracks: everything but metadata and status.
fn spec_part(obj: &Value) -> Value {
    let mut copy = obj.clone();
    if let Some(m) = copy.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    copy
}

impl Registry {
    pub fn new(history_limit: usize) -> Self {
        Self {
            store: Store::new(history_limit),
            next_cluster_ip: Mutex::new(1),
        }
    }

    pub fn get(&self, rt: &ResourceType, ns: &str, name: &str) -> ApiResult<Value> {
        self.store
            .get(&key_of(rt, ns, name))
            .ok_or_else(|| ApiError::not_found(rt, name))
    }

    pub fn try_get(&self, rt: &ResourceType, ns: &str, name: &str) -> Option<Value> {
        self.store.get(&key_of(rt, ns, name))
    }

    /// Items of a type (all namespaces when `ns` is None) matching the selectors, unpaged.
    pub fn select(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        labels: Option<&LabelSelector>,
    ) -> Vec<Value> {
        let ns = if rt.namespaced { ns } else { None };
        self.store
            .list(rt.key(), ns)
            .0
            .into_iter()
            .filter(|o| labels.is_none_or(|s| s.matches_object(o)))
            .collect()
    }

    /// A `<Kind>List` page. Continue tokens carry the last key; pages read the current state
    /// rather than a snapshot at the first page's revision (a documented simplification).
    pub fn list(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> ApiResult<Value> {
        let ns = if rt.namespaced { ns } else { None };
        let (items, revision) = self.store.list(rt.key(), ns);
        let after = match &opts.continue_token {
            Some(t) => Some(decode_continue(t)?),
            None => None,
        };
        let mut matching = items.into_iter().filter(|o| {
            opts.label_selector
                .as_ref()
                .is_none_or(|s| s.matches_object(o))
                && opts.field_selector.as_ref().is_none_or(|s| s.matches(o))
                && after.as_ref().is_none_or(|(ans, aname)| {
                    (meta::namespace(o), meta::name(o)) > (ans.as_str(), aname.as_str())
                })
        });
        let mut page: Vec<Value> = Vec::new();
        let mut more = false;
        for item in matching.by_ref() {
            if opts.limit.is_some_and(|l| l > 0 && page.len() >= l) {
                more = true;
                break;
            }
            page.push(item);
        }
        let remaining = if more { 1 + matching.count() } else { 0 };
        let mut metadata = json!({"resourceVersion": revision.to_string()});
        if more && let Some(last) = page.last() {
            metadata["continue"] = json!(encode_continue(
                revision,
                meta::namespace(last),
                meta::name(last)
            ));
            metadata["remainingItemCount"] = json!(remaining);
        }
        Ok(json!({
            "kind": format!("{}List", rt.kind),
            "apiVersion": rt.api_version(),
            "metadata": metadata,
            "items": page,
        }))
    }

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

    fn allocate_cluster_ip(&self) -> String {
        let mut next = self
            .next_cluster_ip
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let used: HashSet<String> = self
            .select(known::services(), None, None)
            .iter()
            .filter_map(|s| {
                s.pointer("/spec/clusterIP")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .collect();
        loop {
            // 10.100.0.1 .. 10.100.255.254; 10.100.0.10 is kept for cluster DNS like on EKS.
            let n = *next;
            *next = if n >= 65_534 { 1 } else { n + 1 };
            let ip = format!("10.100.{}.{}", n / 256, n % 256);
            if !n.is_multiple_of(256)
                && n % 256 != 255
                && ip != "10.100.0.10"
                && !used.contains(&ip)
            {
                return ip;
            }
        }
    }

    /// Metadata, defaults and validation shared by create and update; `old` is None on create.
    fn prepare(&self, rt: &ResourceType, obj: &mut Value, old: Option<&Value>) -> ApiResult<()> {
        if let Some(root) = obj.as_object_mut() {
            root.insert("apiVersion".into(), json!(rt.api_version()));
            root.insert("kind".into(), json!(rt.kind));
        }
        apply_defaults(rt, obj);
        if rt.is("", "services") {
            let spec_type = obj
                .pointer("/spec/type")
                .and_then(Value::as_str)
                .unwrap_or("ClusterIP")
                .to_string();
            let ip = obj
                .pointer("/spec/clusterIP")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if ip.is_empty() && spec_type != "ExternalName" {
                let ip = old
                    .and_then(|o| o.pointer("/spec/clusterIP"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| self.allocate_cluster_ip());
                if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                    spec.insert("clusterIP".into(), json!(ip));
                    spec.insert("clusterIPs".into(), json!([ip]));
                }
            }
        }
        let causes = validate(rt, obj, old);
        if !causes.is_empty() {
            return Err(ApiError::invalid(rt, meta::name(obj), causes));
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
            "managedFields",
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
        self.check_namespace_for_create(rt, ns)?;
        self.prepare(rt, &mut obj, None)?;
        crate::quota::admit_create(self, rt, ns, &mut obj)?;
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
                if rt.has_status() {
                    match old.get("status") {
                        Some(s) => obj["status"] = s.clone(),
                        None => {
                            if let Some(m) = obj.as_object_mut() {
                                m.remove("status");
                            }
                        }
                    }
                }
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
                if !metadata.contains_key("managedFields")
                    && let Some(mf) = old_meta.get("managedFields")
                {
                    metadata.insert("managedFields".into(), mf.clone());
                }
                obj
            }
        };
        self.prepare(rt, &mut new, Some(&old))?;
        if subresource != Some("status")
            && old.pointer("/metadata/generation").is_some()
            && spec_part(&old) != spec_part(&new)
        {
            let generation = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                + 1;
            meta::metadata_mut(&mut new).insert("generation".into(), json!(generation));
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
    fn write(
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
            .pointer("/metadata/finalizers")
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
                let managed = fresh.pointer("/metadata/managedFields").cloned();
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
                let managed = new.pointer("/metadata/managedFields").cloned();
                if subresource != Some("status") && rt.has_status() {
                    match old.get("status") {
                        Some(s) => new["status"] = s.clone(),
                        None => {
                            if let Some(m) = new.as_object_mut() {
                                m.remove("status");
                            }
                        }
                    }
                }
                self.prepare(rt, &mut new, Some(&old))?;
                if old.pointer("/metadata/generation").is_some()
                    && spec_part(&old) != spec_part(&new)
                {
                    let generation = old
                        .pointer("/metadata/generation")
                        .and_then(Value::as_i64)
                        .unwrap_or(0)
                        + 1;
                    meta::metadata_mut(&mut new).insert("generation".into(), json!(generation));
                }
                if let Some(mf) = managed {
                    meta::metadata_mut(&mut new).insert("managedFields".into(), mf);
                }
                let expected = meta::resource_version(&old);
                self.write(rt, &old, new, expected, opts.dry_run)
            }
        }
    }

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
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let namespace_delete = rt.is("", "namespaces");
        let pending = namespace_delete
            || !finalizers.is_empty()
            || opts.propagation == Propagation::Foreground;
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
            if meta::is_deleting(&current) {
                return Ok(Deletion::Pending(current));
            }
            let mut marked = current.clone();
            let metadata = meta::metadata_mut(&mut marked);
            metadata.insert("deletionTimestamp".into(), json!(meta::now_rfc3339()));
            metadata.insert("deletionGracePeriodSeconds".into(), json!(0));
            if opts.propagation == Propagation::Foreground && !namespace_delete {
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

    /// Removes an object regardless of finalizers (namespace cleanup, garbage collection).
    pub fn remove(&self, key: &ObjectKey) {
        if let Err(e) = self.store.delete(key, None) {
            tracing::debug!(?key, error = %e, "already gone");
        }
    }
}

fn encode_continue(revision: u64, ns: &str, name: &str) -> String {
    use base64::Engine;
    let raw = json!({"rv": revision, "ns": ns, "name": name}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(token: &str) -> ApiResult<(String, String)> {
    use base64::Engine;
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let ns = v.get("ns").and_then(Value::as_str).ok_or_else(bad)?;
    let name = v.get("name").and_then(Value::as_str).ok_or_else(bad)?;
    Ok((ns.to_string(), name.to_string()))
}
