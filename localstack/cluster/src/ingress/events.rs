//! The Events the NGINX Ingress Controller records for its verdicts, word for word (NIC 5.5.4
//! `internal/k8s/controller.go`: updateRegularIngressStatusAndEvents,
//! updateMergeableIngressStatusAndEvents, UpdateIngressStatusAndEventsOnDelete, processProblems;
//! reasons from `internal/logger/events.go`), plus the configuration warnings of
//! `internal/configs/ingress.go` generateNginxCfg that the simulator models.

use std::sync::Arc;

use serde_json::Value;

use super::annotations::{self as ann, SSL_REDIRECT_DEPRECATED};
use super::configuration::{IngressConfiguration, Op, Problem, ResourceChange, key};

pub const NORMAL: &str = "Normal";
pub const WARNING: &str = "Warning";
pub const ADDED_OR_UPDATED: &str = "AddedOrUpdated";
pub const ADDED_OR_UPDATED_WITH_WARNING: &str = "AddedOrUpdatedWithWarning";

/// One `recorder.Event(object, type, reason, message)` call.
#[derive(Debug, Clone, PartialEq)]
pub struct EventSpec {
    /// Shared with the configuration: a master's change makes one event per minion.
    pub object: Arc<Value>,
    pub kind: &'static str,
    pub reason: &'static str,
    pub message: String,
}

/// `formatWarningMessages`.
fn join(warnings: &[String]) -> String {
    warnings.join("; ")
}

/// generateNginxCfg's warnings (`configs.Warnings`) for one Ingress, given the annotations it
/// keeps after the master/minion denylists.
fn config_warnings(annotations: &serde_json::Map<String, Value>) -> Vec<String> {
    let mut warnings = Vec::new();
    if let (_, Some(w)) = ann::rewrite_target(annotations) {
        warnings.push(w.to_string());
    }
    if annotations.contains_key(SSL_REDIRECT_DEPRECATED) {
        warnings.push("The annotation 'ingress.kubernetes.io/ssl-redirect' is deprecated and will be removed. Please use 'nginx.org/ssl-redirect' instead.".into());
    }
    warnings
}

/// updateRegularIngressStatusAndEvents (note the space NIC leaves before an empty suffix).
fn regular(resource: &IngressConfiguration) -> EventSpec {
    let mut kind = NORMAL;
    let mut reason = ADDED_OR_UPDATED;
    let mut suffix = String::new();
    if !resource.warnings.is_empty() {
        kind = WARNING;
        reason = ADDED_OR_UPDATED_WITH_WARNING;
        suffix = format!("with warning(s): {}", join(&resource.warnings));
    }
    let generated = config_warnings(&ann::annotations(&resource.ingress));
    if !generated.is_empty() {
        kind = WARNING;
        reason = ADDED_OR_UPDATED_WITH_WARNING;
        suffix = format!("{suffix}; with warning(s): {}", join(&generated));
    }
    EventSpec {
        object: resource.ingress.clone(),
        kind,
        reason,
        message: format!(
            "Configuration for {} was added or updated {suffix}",
            key(&resource.ingress)
        ),
    }
}

/// The master's or one minion's event in updateMergeableIngressStatusAndEvents.
fn mergeable_one(object: &Arc<Value>, own: &[String], generated: &[String]) -> EventSpec {
    let mut kind = NORMAL;
    let mut reason = ADDED_OR_UPDATED;
    let mut message = String::new();
    let mut separator = "";
    if !own.is_empty() {
        kind = WARNING;
        reason = ADDED_OR_UPDATED_WITH_WARNING;
        message = format!("with warning(s): {}", join(own));
        separator = "; ";
    }
    if !generated.is_empty() {
        kind = WARNING;
        reason = ADDED_OR_UPDATED_WITH_WARNING;
        message = format!("{message}{separator}with warning(s): {}", join(generated));
    }
    let prefixed = if message.is_empty() {
        String::new()
    } else {
        format!(" {message}")
    };
    EventSpec {
        object: object.clone(),
        kind,
        reason,
        message: format!(
            "Configuration for {} was added or updated{prefixed}",
            key(object)
        ),
    }
}

/// updateMergeableIngressStatusAndEvents: the master's event, then one per minion.
fn mergeable(resource: &IngressConfiguration) -> Vec<EventSpec> {
    ann::log_denylisted(&resource.ingress, true);
    let master_annotations = ann::effective_annotations(&resource.ingress, true, false);
    let mut events = vec![mergeable_one(
        &resource.ingress,
        &resource.warnings,
        &config_warnings(&master_annotations),
    )];
    for minion in &resource.minions {
        let own = resource
            .child_warnings
            .get(&key(&minion.ingress))
            .cloned()
            .unwrap_or_default();
        ann::log_denylisted(&minion.ingress, false);
        let annotations = ann::effective_annotations(&minion.ingress, false, true);
        events.push(mergeable_one(
            &minion.ingress,
            &own,
            &config_warnings(&annotations),
        ));
    }
    events
}

/// The events of an AddOrUpdate (processAddOrUpdate) or of a resource re-synced for a Service
/// (updateResourcesStatusAndEvents).
pub fn for_resource(resource: &IngressConfiguration) -> Vec<EventSpec> {
    if resource.is_master {
        mergeable(resource)
    } else {
        vec![regular(resource)]
    }
}

/// processChanges. `still_exists` tells whether the Ingress of a deleted configuration is still
/// in the cluster (then UpdateIngressStatusAndEventsOnDelete reports why it lost its hosts).
pub fn for_change(change: &ResourceChange, still_exists: bool) -> Vec<EventSpec> {
    match change.op {
        Op::AddOrUpdate => for_resource(&change.resource),
        Op::Delete if still_exists => {
            let resource = &change.resource;
            let detail = match &change.error {
                Some(error) => format!("with error: {error}"),
                None if !resource.warnings.is_empty() => {
                    format!("with warning(s): {}", join(&resource.warnings))
                }
                // Lost for a class change: some other controller's business, nothing said.
                None => return Vec::new(),
            };
            vec![EventSpec {
                object: resource.ingress.clone(),
                kind: WARNING,
                reason: "Rejected",
                message: format!("{} was rejected: {detail}", key(&resource.ingress)),
            }]
        }
        Op::Delete => Vec::new(),
    }
}

/// processProblems: every problem is a Warning with its reason and message.
pub fn for_problem(problem: &Problem) -> EventSpec {
    EventSpec {
        object: problem.object.clone(),
        kind: WARNING,
        reason: problem.reason,
        message: problem.message.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingress::configuration::Configuration;
    use serde_json::json;

    fn ing(name: &str, uid: &str, annotations: Value, host: &str, paths: &[&str]) -> Value {
        let paths: Vec<Value> = paths
            .iter()
            .map(|p| json!({"path": p, "pathType": "Prefix", "backend": {"service": {"name": name, "port": {"number": 80}}}}))
            .collect();
        let rule = if paths.is_empty() {
            json!({"host": host})
        } else {
            json!({"host": host, "http": {"paths": paths}})
        };
        json!({"metadata": {"name": name, "namespace": "ns", "uid": uid, "generation": 1, "creationTimestamp": format!("2026-01-01T00:00:0{uid}Z"), "annotations": annotations}, "spec": {"ingressClassName": "nginx", "rules": [rule]}})
    }

    fn messages(events: &[EventSpec]) -> Vec<(&str, &str, String)> {
        events
            .iter()
            .map(|e| (e.kind, e.reason, e.message.clone()))
            .collect()
    }

    /// controller.go updateRegularIngressStatusAndEvents: the trailing space is NIC's.
    #[test]
    fn a_regular_ingress_is_added_or_updated_with_nics_trailing_space() {
        let mut c = Configuration::default();
        let (changes, _) = c.add_or_update(&ing("a", "1", json!({}), "h.com", &["/"]));
        assert_eq!(
            messages(&for_change(&changes[0], true)),
            [(
                NORMAL,
                ADDED_OR_UPDATED,
                "Configuration for ns/a was added or updated ".to_string()
            )]
        );
        let both = json!({"nginx.org/rewrites": "serviceName=b rewrite=/", "nginx.org/rewrite-target": "/"});
        let (changes, _) = c.add_or_update(&ing("b", "2", both, "other.com", &["/b/"]));
        assert_eq!(
            messages(&for_change(&changes[0], true)),
            [(WARNING, ADDED_OR_UPDATED_WITH_WARNING, "Configuration for ns/b was added or updated ; with warning(s): nginx.org/rewrites and nginx.org/rewrite-target annotations are mutually exclusive; nginx.org/rewrites will take precedence".to_string())]
        );
    }

    /// updateMergeableIngressStatusAndEvents: one event for the master, one per minion.
    #[test]
    fn a_master_change_reports_the_master_and_every_minion() {
        let mut c = Configuration::default();
        let master = json!({"nginx.org/mergeable-ingress-type": "master"});
        let minion = json!({"nginx.org/mergeable-ingress-type": "minion"});
        c.add_or_update(&ing("master", "1", master, "h.com", &[]));
        c.add_or_update(&ing("one", "2", minion.clone(), "h.com", &["/x/"]));
        let (changes, _) = c.add_or_update(&ing("two", "3", minion, "h.com", &["/x/"]));
        assert_eq!(
            messages(&for_change(&changes[0], true)),
            [
                (NORMAL, ADDED_OR_UPDATED, "Configuration for ns/master was added or updated".to_string()),
                (NORMAL, ADDED_OR_UPDATED, "Configuration for ns/one was added or updated".to_string()),
                (WARNING, ADDED_OR_UPDATED_WITH_WARNING, "Configuration for ns/two was added or updated with warning(s): path /x/ is taken by another resource".to_string()),
            ]
        );
    }

    /// UpdateIngressStatusAndEventsOnDelete: an owner that became invalid says why.
    #[test]
    fn an_owner_that_becomes_invalid_is_rejected_with_the_error() {
        let mut c = Configuration::default();
        c.add_or_update(&ing("a", "1", json!({}), "h.com", &["/"]));
        let (changes, problems) = c.add_or_update(&ing(
            "a",
            "1",
            json!({"nginx.org/path-regex": "nope"}),
            "h.com",
            &["/"],
        ));
        assert!(problems.is_empty());
        assert_eq!(
            messages(&for_change(&changes[0], true)),
            [(WARNING, "Rejected", r#"ns/a was rejected: with error: annotations.nginx.org/path-regex: Invalid value: "nope": allowed values: 'case_sensitive', 'case_insensitive' or 'exact'"#.to_string())]
        );
    }
}
