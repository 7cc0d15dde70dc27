//! Which Ingress serves which host, the way the NGINX Ingress Controller decides it (NIC 5.5.4
//! `internal/k8s/configuration.go`): every host belongs to one resource, the oldest by
//! creationTimestamp (on a tie, the larger UID: `chooseObjectMetaWinner`); a master owns its host
//! for all the minions of that host, whose paths go to the oldest minion claiming them. Each
//! rebuild yields the changes to apply (and report) and the new or changed problems.

use crate::meta::Lookup;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::Value;

use super::annotations::{has_correct_class, is_master, is_minion};
use super::validation::validate_ingress;
use crate::meta;

pub const REASON_REJECTED: &str = "Rejected";
pub const REASON_NO_MASTER: &str = "NoIngressMasterFound";

/// `IngressConfiguration`: a regular or master Ingress with what it won.
#[derive(Debug, Clone)]
pub struct IngressConfiguration {
    /// Shared, not copied: every rebuild makes these for every Ingress of the cluster.
    pub ingress: Arc<Value>,
    /// `Ingress/namespace/name`.
    kind_key: String,
    /// The Services its backends name.
    services: Arc<Vec<String>>,
    pub is_master: bool,
    pub minions: Vec<MinionConfiguration>,
    /// Host → whether this Ingress owns it.
    pub valid_hosts: BTreeMap<String, bool>,
    pub warnings: Vec<String>,
    /// `namespace/name` of a minion → its warnings (paths taken by older minions).
    pub child_warnings: BTreeMap<String, Vec<String>>,
}

/// `MinionConfiguration`: a minion and which of its paths it won.
#[derive(Debug, Clone)]
pub struct MinionConfiguration {
    pub ingress: Arc<Value>,
    /// The Services its backends name.
    services: Arc<Vec<String>>,
    pub valid_paths: BTreeMap<String, bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Delete,
    AddOrUpdate,
}

/// `ResourceChange`.
#[derive(Debug, Clone)]
pub struct ResourceChange {
    pub op: Op,
    pub resource: Arc<IngressConfiguration>,
    /// The validation error that made an Ingress lose its hosts.
    pub error: Option<String>,
}

/// `ConfigurationProblem`.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub object: Arc<Value>,
    pub is_error: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Problem {
    fn same(&self, other: &Problem) -> bool {
        self.is_error == other.is_error
            && self.reason == other.reason
            && self.message == other.message
    }
}

/// `getResourceKey`: `namespace/name`.
pub fn key(obj: &Value) -> String {
    format!("{}/{}", meta::namespace(obj), meta::name(obj))
}

/// An Ingress's rules, read in place: a rebuild reads every Ingress of the cluster.
fn rules(ing: &Value) -> &[Value] {
    ing.at("/spec/rules")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

pub fn rule_host(rule: &Value) -> &str {
    rule.get("host").and_then(Value::as_str).unwrap_or("")
}

/// When an object was created, in seconds (0 when unreadable).
fn created(o: &Value) -> i64 {
    o.at("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(meta::parse_rfc3339)
        .map_or(0, |t| t as i64)
}

fn generation(o: &Value) -> i64 {
    o.at("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// configuration.go compareObjectMetasWithAnnotations (no annotations equal an empty map).
fn same_meta(a: &Value, b: &Value) -> bool {
    fn annotations(o: &Value) -> Option<&serde_json::Map<String, Value>> {
        o.at("/metadata/annotations")
            .and_then(Value::as_object)
            .filter(|m| !m.is_empty())
    }
    meta::namespace(a) == meta::namespace(b)
        && meta::name(a) == meta::name(b)
        && generation(a) == generation(b)
        && annotations(a) == annotations(b)
}

impl IngressConfiguration {
    /// `GetKeyWithKind`.
    pub fn key_with_kind(&self) -> &str {
        &self.kind_key
    }

    /// IngressConfiguration.IsEqual: what makes NIC regenerate (and report) a resource.
    fn is_equal(&self, other: &IngressConfiguration) -> bool {
        same_meta(&self.ingress, &other.ingress)
            && self.valid_hosts == other.valid_hosts
            && self.is_master == other.is_master
            && self.minions.len() == other.minions.len()
            && self.minions.iter().zip(&other.minions).all(|(a, b)| {
                Arc::ptr_eq(&a.ingress, &b.ingress) || same_meta(&a.ingress, &b.ingress)
            })
    }
}

/// A valid Ingress of our class as a rebuild reads it, read once when it is added or updated:
/// NIC's informer hands it typed objects, and every rebuild looks at every Ingress.
struct Entry {
    ingress: Arc<Value>,
    /// `Ingress/namespace/name`.
    kind_key: String,
    master: bool,
    minion: bool,
    /// Its rules' hosts, in order.
    hosts: Vec<String>,
    /// Its first rule's paths (what a minion claims).
    paths: Vec<String>,
    /// The Services its backends name.
    services: Arc<Vec<String>>,
    created: i64,
}

impl Entry {
    fn new(key: &str, ing: Value) -> Self {
        let hosts = rules(&ing)
            .iter()
            .map(|r| rule_host(r).to_string())
            .collect();
        let paths = rules(&ing)
            .first()
            .and_then(|r| r.at("/http/paths"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|p| {
                p.get("path")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            })
            .collect();
        Self {
            kind_key: format!("Ingress/{key}"),
            master: is_master(&ing),
            minion: is_minion(&ing),
            hosts,
            paths,
            services: Arc::new(super::validation::spec_services(&ing)),
            created: created(&ing),
            ingress: Arc::new(ing),
        }
    }

    /// configuration.go chooseObjectMetaWinner: the older wins; on equal timestamps the larger
    /// UID.
    fn wins(&self, other: &Entry) -> bool {
        if self.created == other.created {
            meta::uid(&self.ingress) > meta::uid(&other.ingress)
        } else {
            self.created < other.created
        }
    }

    /// The host a minion joins (its first rule's).
    fn minion_host(&self) -> Option<&str> {
        self.hosts
            .first()
            .map(String::as_str)
            .filter(|_| self.minion)
    }
}

/// `Configuration`, for Ingresses only (no VirtualServers: `-enable-custom-resources=false`).
#[derive(Default)]
pub struct Configuration {
    /// Valid Ingresses of our class, by `namespace/name`.
    ingresses: BTreeMap<String, Entry>,
    /// `minionsByHost` (5.5.4 updateMinionIndex): host → its minions' keys, kept as they change.
    minion_index: BTreeMap<String, BTreeSet<String>>,
    /// Host → the resource that owns it, as of the last rebuild (shared with the changes reported
    /// and kept from one rebuild to the next: a master holds every minion of its host).
    hosts: BTreeMap<String, Arc<IngressConfiguration>>,
    host_problems: BTreeMap<String, Problem>,
}

impl Configuration {
    /// Removes an Ingress and its place in the minion index.
    fn remove(&mut self, k: &str) -> bool {
        let Some(old) = self.ingresses.remove(k) else {
            return false;
        };
        if let Some(host) = old.minion_host()
            && let Some(keys) = self.minion_index.get_mut(host)
        {
            keys.remove(k);
            if keys.is_empty() {
                self.minion_index.remove(host);
            }
        }
        true
    }

    fn insert(&mut self, k: String, ing: &Value) {
        self.remove(&k);
        let entry = Entry::new(&k, ing.clone());
        if let Some(host) = entry.minion_host() {
            self.minion_index
                .entry(host.to_string())
                .or_default()
                .insert(k.clone());
        }
        self.ingresses.insert(k, entry);
    }

    /// AddOrUpdateIngress.
    pub fn add_or_update(&mut self, ing: &Value) -> (Vec<ResourceChange>, Vec<Problem>) {
        let k = key(ing);
        let mut validation_error = None;
        if !has_correct_class(ing) {
            self.remove(&k);
        } else {
            match validate_ingress(ing) {
                Ok(()) => self.insert(k.clone(), ing),
                Err(e) => {
                    self.remove(&k);
                    validation_error = Some(e);
                }
            }
        }
        let (mut changes, mut problems) = self.rebuild();
        if let Some(error) = validation_error {
            let kind_key = format!("Ingress/{k}");
            match changes
                .iter_mut()
                .find(|c| c.resource.key_with_kind() == kind_key)
            {
                Some(change) => change.error = Some(error),
                None => problems.push(Problem {
                    object: Arc::new(ing.clone()),
                    is_error: true,
                    reason: REASON_REJECTED,
                    message: error,
                }),
            }
        }
        (changes, problems)
    }

    /// DeleteIngress.
    pub fn delete(&mut self, k: &str) -> (Vec<ResourceChange>, Vec<Problem>) {
        if !self.remove(k) {
            return (Vec::new(), Vec::new());
        }
        self.rebuild()
    }

    /// Host → owning resource, for the data path.
    pub fn hosts(&self) -> &BTreeMap<String, Arc<IngressConfiguration>> {
        &self.hosts
    }

    /// FindResourcesForService: the resources whose Ingress (or one of whose minions) routes to
    /// the Service, for NIC's syncService.
    pub fn resources_for_service(&self, ns: &str, name: &str) -> Vec<Arc<IngressConfiguration>> {
        let references = |ing: &Value, services: &[String]| {
            meta::namespace(ing) == ns && services.iter().any(|s| s == name)
        };
        let mut found: BTreeMap<&str, Arc<IngressConfiguration>> = BTreeMap::new();
        for resource in self.hosts.values() {
            let hit = if resource.is_master {
                resource
                    .minions
                    .iter()
                    .any(|m| references(&m.ingress, &m.services))
            } else {
                references(&resource.ingress, &resource.services)
            };
            if hit {
                found.insert(resource.key_with_kind(), resource.clone());
            }
        }
        found.into_values().collect()
    }

    /// buildMinionConfigs: the minions of a master's host, in key order, each path to the
    /// oldest claimant.
    fn build_minion_configs(
        &self,
        host: &str,
    ) -> (Vec<MinionConfiguration>, BTreeMap<String, Vec<String>>) {
        let keys = self.minion_index.get(host);
        let mut configs: Vec<MinionConfiguration> =
            Vec::with_capacity(keys.map_or(0, BTreeSet::len));
        let mut entries: Vec<&Entry> = Vec::with_capacity(configs.capacity());
        let mut child_warnings: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut holders: BTreeMap<&str, usize> = BTreeMap::new();
        for k in keys.into_iter().flatten() {
            let Some(entry) = self.ingresses.get(k) else {
                continue;
            };
            let index = configs.len();
            let mut current = MinionConfiguration {
                ingress: entry.ingress.clone(),
                services: entry.services.clone(),
                valid_paths: BTreeMap::new(),
            };
            for path in &entry.paths {
                let Some(&holder) = holders.get(path.as_str()) else {
                    holders.insert(path, index);
                    current.valid_paths.insert(path.clone(), true);
                    continue;
                };
                let warning = format!("path {path} is taken by another resource");
                let holder_entry = if holder == index {
                    entry
                } else {
                    entries[holder]
                };
                if !holder_entry.wins(entry) {
                    holders.insert(path, index);
                    current.valid_paths.insert(path.clone(), true);
                    if holder == index {
                        current.valid_paths.insert(path.clone(), false);
                    } else {
                        configs[holder].valid_paths.insert(path.clone(), false);
                    }
                    child_warnings
                        .entry(key(&holder_entry.ingress))
                        .or_default()
                        .push(warning);
                } else {
                    child_warnings.entry(k.clone()).or_default().push(warning);
                }
            }
            configs.push(current);
            entries.push(entry);
        }
        (configs, child_warnings)
    }

    /// rebuildHosts.
    fn rebuild(&mut self) -> (Vec<ResourceChange>, Vec<Problem>) {
        // buildHostsAndResources
        let mut resources: BTreeMap<&str, (IngressConfiguration, &Entry)> = BTreeMap::new();
        let mut owners: BTreeMap<&str, &str> = BTreeMap::new();
        for entry in self.ingresses.values() {
            if entry.minion {
                continue;
            }
            let (minions, child_warnings) = match entry.hosts.first().filter(|_| entry.master) {
                Some(host) => self.build_minion_configs(host),
                None => (Vec::new(), BTreeMap::new()),
            };
            let mut resource = IngressConfiguration {
                ingress: entry.ingress.clone(),
                kind_key: entry.kind_key.clone(),
                services: entry.services.clone(),
                is_master: entry.master,
                minions,
                valid_hosts: BTreeMap::new(),
                warnings: Vec::new(),
                child_warnings,
            };
            for host in &entry.hosts {
                let Some(holder_key) = owners.get(host.as_str()).copied() else {
                    owners.insert(host, &entry.kind_key);
                    continue;
                };
                let warning = format!("host {host} is taken by another resource");
                let Some((holder, holder_entry)) = resources.get_mut(holder_key) else {
                    continue;
                };
                if !holder_entry.wins(entry) {
                    holder.warnings.push(warning);
                    owners.insert(host, &entry.kind_key);
                } else {
                    resource.warnings.push(warning);
                }
            }
            resources.insert(&entry.kind_key, (resource, entry));
        }
        // updateActiveHostsForIngresses
        let resources: BTreeMap<&str, Arc<IngressConfiguration>> = resources
            .into_iter()
            .map(|(kind_key, (mut resource, entry))| {
                for host in &entry.hosts {
                    let owned = owners.get(host.as_str()) == Some(&kind_key);
                    resource.valid_hosts.insert(host.clone(), owned);
                }
                (kind_key, Arc::new(resource))
            })
            .collect();
        let new_hosts: BTreeMap<String, Arc<IngressConfiguration>> = owners
            .iter()
            .filter_map(|(host, k)| resources.get(k).map(|r| (host.to_string(), r.clone())))
            .collect();
        // detectChangesInHosts + createResourceChangesForHosts
        let mut deletes = Vec::new();
        let mut updates = Vec::new();
        for (host, old) in &self.hosts {
            if !new_hosts.contains_key(host) {
                deletes.push((Op::Delete, old.clone()));
            }
        }
        for (host, new) in &new_hosts {
            match self.hosts.get(host) {
                None => updates.push((Op::AddOrUpdate, new.clone())),
                Some(old) if !old.is_equal(new) => {
                    if old.key_with_kind() != new.key_with_kind() {
                        deletes.push((Op::Delete, old.clone()));
                    }
                    updates.push((Op::AddOrUpdate, new.clone()));
                }
                Some(_) => {}
            }
        }
        let ordered: Vec<(Op, Arc<IngressConfiguration>)> =
            deletes.into_iter().chain(updates).collect();
        let mut changes = squash(ordered);
        for change in &mut changes {
            if let Some(latest) = resources.get(change.resource.key_with_kind()) {
                change.resource = latest.clone();
            }
        }
        // addProblemsForResourcesWithoutActiveHost + addProblemsForOrphanMinions
        let mut problems: BTreeMap<String, Problem> = BTreeMap::new();
        for (kind_key, resource) in &resources {
            if !resource.valid_hosts.values().any(|v| *v) {
                problems.insert(
                    kind_key.to_string(),
                    Problem {
                        object: resource.ingress.clone(),
                        is_error: false,
                        reason: REASON_REJECTED,
                        message: "All hosts are taken by other resources".into(),
                    },
                );
            }
        }
        for (host, keys) in &self.minion_index {
            if new_hosts.get(host).is_some_and(|r| r.is_master) {
                continue;
            }
            for entry in keys.iter().filter_map(|k| self.ingresses.get(k)) {
                problems.insert(
                    entry.kind_key.clone(),
                    Problem {
                        object: entry.ingress.clone(),
                        is_error: false,
                        reason: REASON_NO_MASTER,
                        message: "Ingress master is invalid or doesn't exist".into(),
                    },
                );
            }
        }
        drop(resources);
        self.hosts = new_hosts;
        // detectChangesInProblems: only new or changed problems are reported.
        let reported: Vec<Problem> = problems
            .iter()
            .filter(|(k, p)| self.host_problems.get(*k).is_none_or(|old| !old.same(p)))
            .map(|(_, p)| p.clone())
            .collect();
        self.host_problems = problems;
        (changes, reported)
    }
}

/// squashResourceChanges: one change per resource (its last), deletes first.
fn squash(changes: Vec<(Op, Arc<IngressConfiguration>)>) -> Vec<ResourceChange> {
    let mut last: BTreeMap<String, (Op, Arc<IngressConfiguration>)> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for (op, resource) in changes {
        let k = resource.key_with_kind().to_string();
        if !order.contains(&k) {
            order.push(k.clone());
        }
        last.insert(k, (op, resource));
    }
    let (mut deletes, mut updates) = (Vec::new(), Vec::new());
    for k in order {
        if let Some((op, resource)) = last.remove(&k) {
            let change = ResourceChange {
                op,
                resource,
                error: None,
            };
            match op {
                Op::Delete => deletes.push(change),
                Op::AddOrUpdate => updates.push(change),
            }
        }
    }
    deletes.extend(updates);
    deletes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ing(
        name: &str,
        created: &str,
        uid: &str,
        annotations: Value,
        host: &str,
        paths: &[&str],
    ) -> Value {
        let paths: Vec<Value> = paths
            .iter()
            .map(|p| json!({"path": p, "pathType": "Prefix", "backend": {"service": {"name": "s", "port": {"number": 80}}}}))
            .collect();
        let rule = if paths.is_empty() {
            json!({"host": host})
        } else {
            json!({"host": host, "http": {"paths": paths}})
        };
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": name, "namespace": "ns", "uid": uid, "generation": 1, "creationTimestamp": created, "annotations": annotations}, "spec": {"ingressClassName": "nginx", "rules": [rule]}})
    }

    const T1: &str = "2026-01-01T00:00:01Z";
    const T2: &str = "2026-01-01T00:00:02Z";

    /// configuration.go buildHostsAndResources + addProblemsForResourcesWithoutActiveHost.
    #[test]
    fn the_oldest_ingress_owns_a_host_and_the_later_is_rejected() {
        let mut c = Configuration::default();
        let (changes, problems) = c.add_or_update(&ing("old", T1, "a", json!({}), "h.com", &["/"]));
        assert_eq!(changes.len(), 1);
        assert!(problems.is_empty());
        let (changes, problems) =
            c.add_or_update(&ing("new", T2, "b", json!({}), "h.com", &["/x"]));
        // Warnings are not part of IsEqual: the owner is not regenerated.
        assert!(changes.is_empty());
        assert_eq!(problems.len(), 1);
        assert_eq!(
            problems[0].message,
            "All hosts are taken by other resources"
        );
        assert_eq!(meta::name(&problems[0].object), "new");
        // Hand-over when the owner goes.
        let (changes, problems) = c.delete("ns/old");
        assert!(problems.is_empty());
        let names: Vec<(Op, String)> = changes
            .iter()
            .map(|c| (c.op, meta::name(&c.resource.ingress).to_string()))
            .collect();
        assert_eq!(
            names,
            [
                (Op::Delete, "old".to_string()),
                (Op::AddOrUpdate, "new".to_string())
            ]
        );
    }

    /// chooseObjectMetaWinner: equal creationTimestamps, the larger UID wins.
    #[test]
    fn on_equal_timestamps_the_larger_uid_wins() {
        let mut c = Configuration::default();
        c.add_or_update(&ing("a", T1, "aaaa", json!({}), "h.com", &["/"]));
        let (_, problems) = c.add_or_update(&ing("b", T1, "bbbb", json!({}), "h.com", &["/"]));
        assert_eq!(problems.len(), 1);
        assert_eq!(meta::name(&problems[0].object), "a");
        assert_eq!(meta::name(&c.hosts()["h.com"].ingress), "b");
    }

    /// buildMinionConfigs and addProblemsForOrphanMinions.
    #[test]
    fn minions_join_their_master_and_lose_taken_paths() {
        let mut c = Configuration::default();
        let minion = json!({"nginx.org/mergeable-ingress-type": "minion"});
        let (_, problems) = c.add_or_update(&ing("m1", T1, "1", minion.clone(), "h.com", &["/a/"]));
        assert_eq!(problems[0].reason, REASON_NO_MASTER);
        assert_eq!(
            problems[0].message,
            "Ingress master is invalid or doesn't exist"
        );
        let (changes, problems) = c.add_or_update(&ing(
            "master",
            T1,
            "0",
            json!({"nginx.org/mergeable-ingress-type": "master"}),
            "h.com",
            &[],
        ));
        assert!(problems.is_empty());
        assert_eq!(changes[0].resource.minions.len(), 1);
        let (changes, _) = c.add_or_update(&ing("m2", T2, "2", minion, "h.com", &["/a/", "/b/"]));
        let master = &changes[0].resource;
        assert_eq!(
            master.child_warnings["ns/m2"],
            ["path /a/ is taken by another resource"]
        );
        assert!(
            !master.minions[1]
                .valid_paths
                .get("/a/")
                .copied()
                .unwrap_or(false)
        );
        assert!(master.minions[1].valid_paths["/b/"]);
    }
}
