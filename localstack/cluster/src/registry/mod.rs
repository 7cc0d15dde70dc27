//! Kubernetes write semantics on top of [`Store`]: metadata, defaults, validation, status
//! subresources, generations, field ownership, finalizers and deletion propagation.
//! The HTTP handlers and the in-process controllers both write through here; each verb has its
//! own file, and what every write shares (metadata, defaults, validation) stays here.

mod create;
mod delete;
mod list;
mod options;
mod patch;
mod update;

use crate::meta::Lookup;
use std::collections::HashSet;
use std::sync::Mutex;

use serde_json::{Value, json};

use crate::defaults::apply_defaults;
use crate::error::{ApiError, ApiResult};
use crate::meta;
use crate::quota::NamespaceObjects;
use crate::resources::{ResourceType, known};
use crate::selectors::LabelSelector;
use crate::store::{ObjectKey, Store};
use crate::validation::validate;
pub use options::{DeleteOptions, Deletion, ListOptions, PatchKind, Propagation, WriteOptions};

pub struct Registry {
    pub store: Store,
    next_cluster_ip: Mutex<u32>,
}

fn key_of(rt: &ResourceType, ns: &str, name: &str) -> ObjectKey {
    ObjectKey::new(rt.key(), if rt.namespaced { ns } else { "" }, name)
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
            .list_where(rt.key(), ns, |o| labels.is_none_or(|s| s.matches_object(o)))
            .0
    }

    /// Items of a type in one namespace that `keep` accepts, judged before they are copied.
    pub fn select_where(
        &self,
        rt: &ResourceType,
        ns: &str,
        keep: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        let ns = rt.namespaced.then_some(ns);
        self.store.list_where(rt.key(), ns, keep).0
    }

    fn allocate_cluster_ip(&self) -> String {
        let mut next = self
            .next_cluster_ip
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // Read in place: copying every Service for each new one made creates cost the cluster's size.
        let used: HashSet<String> = self.store.scan_type(known::services().key(), |services| {
            services
                .filter_map(|s| {
                    s.at("/spec/clusterIP")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .collect()
        });
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
    pub(super) fn prepare(
        &self,
        rt: &ResourceType,
        obj: &mut Value,
        old: Option<&Value>,
    ) -> ApiResult<()> {
        if let Some(root) = obj.as_object_mut() {
            root.insert("apiVersion".into(), json!(rt.api_version()));
            root.insert("kind".into(), json!(rt.kind));
        }
        apply_defaults(rt, obj);
        if rt.is("", "services") {
            let spec_type = obj
                .at("/spec/type")
                .and_then(Value::as_str)
                .unwrap_or("ClusterIP")
                .to_string();
            let ip = obj
                .at("/spec/clusterIP")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if ip.is_empty() && spec_type != "ExternalName" {
                let ip = old
                    .and_then(|o| o.at("/spec/clusterIP"))
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

    /// Removes an object regardless of finalizers (namespace cleanup, garbage collection).
    pub fn remove(&self, key: &ObjectKey) {
        if let Err(e) = self.store.delete(key, None) {
            tracing::debug!(?key, error = %e, "already gone");
        }
    }
}

impl NamespaceObjects for Registry {
    fn objects(&self, rt: &ResourceType, ns: &str) -> Vec<Value> {
        self.select(rt, Some(ns), None)
    }
}
