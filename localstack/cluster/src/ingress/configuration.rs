//! Which Ingress serves which host, the way the NGINX Ingress Controller decides it (NIC 5.5.4
//! `internal/k8s/configuration.go`): every host belongs to one resource, the oldest by
//! creationTimestamp (on a tie, the larger UID: `chooseObjectMetaWinner`); a master owns its host
//! for all the minions of that host, whose paths go to the oldest minion claiming them. Each
//! rebuild yields the changes to apply (and report) and the new or changed problems.

use std::collections::BTreeMap;
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
    ing.pointer("/spec/rules")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

pub fn rule_host(rule: &Value) -> &str {
    rule.get("host").and_then(Value::as_str).unwrap_or("")
}

/// The host of a master or minion: its first (only) rule's.
pub fn first_host(ing: &Value) -> Option<&str> {
    rules(ing).first().map(rule_host)
}

/// configuration.go chooseObjectMetaWinner: the older wins; on equal timestamps the larger UID.
pub fn wins(a: &Value, b: &Value) -> bool {
    let created = |o: &Value| {
        o.pointer("/metadata/creationTimestamp")
            .and_then(Value::as_str)
            .and_then(meta::parse_rfc3339)
            .unwrap_or(0)
    };
    let (ta, tb) = (created(a), created(b));
    if ta == tb {
        meta::uid(a) > meta::uid(b)
    } else {
        ta < tb
    }
}

fn generation(o: &Value) -> i64 {
    o.pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// configuration.go compareObjectMetasWithAnnotations (no annotations equal an empty map).
fn same_meta(a: &Value, b: &Value) -> bool {
    fn annotations(o: &Value) -> Option<&serde_json::Map<String, Value>> {
        o.pointer("/metadata/annotations")
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
    pub fn key_with_kind(&self) -> String {
        format!("Ingress/{}", key(&self.ingress))
    }

    /// IngressConfiguration.IsEqual: what makes NIC regenerate (and report) a resource.
    fn is_equal(&self, other: &IngressConfiguration) -> bool {
        same_meta(&self.ingress, &other.ingress)
            && self.valid_hosts == other.valid_hosts
            && self.is_master == other.is_master
            && self.minions.len() == other.minions.len()
            && self
                .minions
                .iter()
                .zip(&other.minions)
                .all(|(a, b)| same_meta(&a.ingress, &b.ingress))
    }
}

/// `Configuration`, for Ingresses only (no VirtualServers: `-enable-custom-resources=false`).
#[derive(Default)]
pub struct Configuration {
    /// Valid Ingresses of our class, by `namespace/name`.
    ingresses: BTreeMap<String, Arc<Value>>,
    /// Host → the resource that owns it, as of the last rebuild (shared with the changes reported
    /// and kept from one rebuild to the next: a master holds every minion of its host).
    hosts: BTreeMap<String, Arc<IngressConfiguration>>,
    host_problems: BTreeMap<String, Problem>,
}

impl Configuration {
    /// AddOrUpdateIngress.
    pub fn add_or_update(&mut self, ing: &Value) -> (Vec<ResourceChange>, Vec<Problem>) {
        let k = key(ing);
        let mut validation_error = None;
        if !has_correct_class(ing) {
            self.ingresses.remove(&k);
        } else {
            match validate_ingress(ing) {
                Ok(()) => {
                    self.ingresses.insert(k.clone(), Arc::new(ing.clone()));
                }
                Err(e) => {
                    self.ingresses.remove(&k);
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
        if self.ingresses.remove(k).is_none() {
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
        let references = |ing: &Value| {
            meta::namespace(ing) == ns
                && super::validation::spec_services(ing)
                    .iter()
                    .any(|s| s == name)
        };
        let mut found: BTreeMap<String, Arc<IngressConfiguration>> = BTreeMap::new();
        for resource in self.hosts.values() {
            let hit = if resource.is_master {
                resource.minions.iter().any(|m| references(&m.ingress))
            } else {
                references(&resource.ingress)
            };
            if hit {
                found.insert(resource.key_with_kind(), resource.clone());
            }
        }
        found.into_values().collect()
    }
}

/// The minions of one host, by `namespace/name`.
type Minions<'a> = Vec<(&'a String, &'a Arc<Value>)>;

/// Minions by host (`minionsByHost`): valid minions of our class.
fn minions_by_host(ingresses: &BTreeMap<String, Arc<Value>>) -> BTreeMap<&str, Minions<'_>> {
    let mut by_host: BTreeMap<&str, Minions<'_>> = BTreeMap::new();
    for (k, ing) in ingresses {
        if is_minion(ing)
            && let Some(host) = first_host(ing)
        {
            by_host.entry(host).or_default().push((k, ing));
        }
    }
    by_host
}

/// buildMinionConfigs: the minions of a master's host, paths to the oldest claimant.
fn build_minion_configs(
    minions: &[(&String, &Arc<Value>)],
) -> (Vec<MinionConfiguration>, BTreeMap<String, Vec<String>>) {
    let mut configs: Vec<MinionConfiguration> = Vec::with_capacity(minions.len());
    let mut child_warnings: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut holders: BTreeMap<String, usize> = BTreeMap::new();
    for &(k, ing) in minions {
        let index = configs.len();
        let mut current = MinionConfiguration {
            ingress: ing.clone(),
            valid_paths: BTreeMap::new(),
        };
        let paths = rules(ing)
            .first()
            .and_then(|r| r.pointer("/http/paths").and_then(Value::as_array))
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .map(|p| {
                p.get("path")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            });
        for path in paths {
            let Some(&holder) = holders.get(&path) else {
                holders.insert(path.clone(), index);
                current.valid_paths.insert(path, true);
                continue;
            };
            let warning = format!("path {path} is taken by another resource");
            let holder_ingress = if holder == index {
                current.ingress.clone()
            } else {
                configs[holder].ingress.clone()
            };
            if !wins(&holder_ingress, ing) {
                holders.insert(path.clone(), index);
                current.valid_paths.insert(path.clone(), true);
                if holder == index {
                    current.valid_paths.insert(path.clone(), false);
                } else {
                    configs[holder].valid_paths.insert(path.clone(), false);
                }
                child_warnings
                    .entry(key(&holder_ingress))
                    .or_default()
                    .push(warning);
            } else {
                child_warnings.entry(k.clone()).or_default().push(warning);
            }
        }
        configs.push(current);
    }
    (configs, child_warnings)
}

impl Configuration {
    /// rebuildHosts.
    fn rebuild(&mut self) -> (Vec<ResourceChange>, Vec<Problem>) {
        let minions = minions_by_host(&self.ingresses);
        // buildHostsAndResources
        let mut resources: BTreeMap<String, IngressConfiguration> = BTreeMap::new();
        let mut owners: BTreeMap<&str, String> = BTreeMap::new();
        for ing in self.ingresses.values() {
            if is_minion(ing) {
                continue;
            }
            let master = is_master(ing);
            let (minions, child_warnings) = match first_host(ing).filter(|_| master) {
                Some(host) => build_minion_configs(minions.get(host).map_or(&[], Vec::as_slice)),
                None => (Vec::new(), BTreeMap::new()),
            };
            let mut resource = IngressConfiguration {
                ingress: ing.clone(),
                is_master: master,
                minions,
                valid_hosts: BTreeMap::new(),
                warnings: Vec::new(),
                child_warnings,
            };
            let kind_key = resource.key_with_kind();
            for rule in rules(ing) {
                let host = rule_host(rule);
                let Some(holder_key) = owners.get(host).cloned() else {
                    owners.insert(host, kind_key.clone());
                    continue;
                };
                let warning = format!("host {host} is taken by another resource");
                let Some(holder) = resources.get_mut(&holder_key) else {
                    continue;
                };
                if !wins(&holder.ingress, ing) {
                    holder.warnings.push(warning);
                    owners.insert(host, kind_key.clone());
                } else {
                    resource.warnings.push(warning);
                }
            }
            resources.insert(kind_key, resource);
        }
        // updateActiveHostsForIngresses
        for (kind_key, resource) in resources.iter_mut() {
            for rule in rules(&resource.ingress) {
                let host = rule_host(rule);
                let owned = owners.get(host) == Some(kind_key);
                resource.valid_hosts.insert(host.to_string(), owned);
            }
        }
        let resources: BTreeMap<String, Arc<IngressConfiguration>> = resources
            .into_iter()
            .map(|(k, r)| (k, Arc::new(r)))
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
            if let Some(latest) = resources.get(&change.resource.key_with_kind()) {
                change.resource = latest.clone();
            }
        }
        // addProblemsForResourcesWithoutActiveHost + addProblemsForOrphanMinions
        let mut problems: BTreeMap<String, Problem> = BTreeMap::new();
        for (kind_key, resource) in &resources {
            if !resource.valid_hosts.values().any(|v| *v) {
                problems.insert(
                    kind_key.clone(),
                    Problem {
                        object: resource.ingress.clone(),
                        is_error: false,
                        reason: REASON_REJECTED,
                        message: "All hosts are taken by other resources".into(),
                    },
                );
            }
        }
        for (host, minions) in &minions {
            if new_hosts.get(*host).is_some_and(|r| r.is_master) {
                continue;
            }
            for (k, ing) in minions {
                problems.insert(
                    format!("Ingress/{k}"),
                    Problem {
                        object: Arc::clone(ing),
                        is_error: false,
                        reason: REASON_NO_MASTER,
                        message: "Ingress master is invalid or doesn't exist".into(),
                    },
                );
            }
        }
        drop(minions);
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
        let k = resource.key_with_kind();
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
