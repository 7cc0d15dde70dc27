//! The ingress controller's verdict on an Ingress. NGINX Ingress Controller says whether it serves
//! an Ingress only through Events on it (reasons from NIC's `internal/logger/events.go`, written by
//! `internal/k8s/controller.go`); the verdict in force is its latest Event for the Ingress's
//! current uid.

use std::cmp::Ordering;

use k8s_openapi::api::core::v1::Event;

use crate::ingress::EVENT_SOURCE;

/// The configuration is in NGINX as it is.
pub const ADDED_OR_UPDATED: &str = "AddedOrUpdated";
/// A mergeable minion whose master is missing or invalid: not served.
pub const NO_INGRESS_MASTER_FOUND: &str = "NoIngressMasterFound";
pub const ADDED_OR_UPDATED_WITH_WARNING: &str = "AddedOrUpdatedWithWarning";
pub const REJECTED: &str = "Rejected";

/// NIC's messages for an Ingress that lost its host to an older resource
/// (`internal/k8s/configuration.go`).
const HOST_TAKEN: [&str; 2] = [
    "All hosts are taken by other resources",
    "Host is taken by another resource",
];

/// What the controller last said about one Ingress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub reason: String,
    pub message: String,
}

/// How a verdict bears on waiting for the Ingress to be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judgement {
    /// Served as it is.
    Accepted,
    /// Not served, or served with a warning, because of other resources (an older owner of the
    /// host or path, a master not judged yet): it changes when they do.
    Conflict,
    /// The Ingress itself is invalid, or NGINX failed to load it: waiting does not help.
    Refused,
}

impl Verdict {
    pub fn of(event: &Event) -> Self {
        Self {
            reason: event.reason.clone().unwrap_or_default(),
            message: event.message.clone().unwrap_or_default(),
        }
    }

    pub fn judgement(&self) -> Judgement {
        match self.reason.as_str() {
            ADDED_OR_UPDATED => Judgement::Accepted,
            NO_INGRESS_MASTER_FOUND | ADDED_OR_UPDATED_WITH_WARNING => Judgement::Conflict,
            REJECTED if HOST_TAKEN.contains(&self.message.as_str()) => Judgement::Conflict,
            _ => Judgement::Refused,
        }
    }
}

/// The controller's latest Event about the object with `uid`: the latest `lastTimestamp`, then
/// `eventTime`, then the later resourceVersion of the Event. `None`: not judged yet.
pub fn latest<'a>(events: impl IntoIterator<Item = &'a Event>, uid: &str) -> Option<&'a Event> {
    events
        .into_iter()
        .filter(|e| e.involved_object.uid.as_deref() == Some(uid))
        .filter(|e| e.source.as_ref().and_then(|s| s.component.as_deref()) == Some(EVENT_SOURCE))
        .max_by(|a, b| {
            a.last_timestamp
                .cmp(&b.last_timestamp)
                .then_with(|| a.event_time.cmp(&b.event_time))
                .then_with(|| {
                    later_version(
                        a.metadata.resource_version.as_deref(),
                        b.metadata.resource_version.as_deref(),
                    )
                })
        })
}

/// Whether the Event judged the object at `version` or later (by `involvedObject.resourceVersion`).
/// Versions are opaque to clients; when either is not a number, the Event counts as current.
pub fn judges_version(event: &Event, version: &str) -> bool {
    let judged = event.involved_object.resource_version.as_deref();
    later_version(judged, Some(version)) != Ordering::Less
}

/// Orders resourceVersions numerically where both are numbers (as the API server's are).
fn later_version(a: Option<&str>, b: Option<&str>) -> Ordering {
    let number = |v: Option<&str>| v.and_then(|v| v.parse::<u64>().ok());
    match (number(a), number(b)) {
        (Some(a), Some(b)) => a.cmp(&b),
        _ => Ordering::Equal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EventSource, ObjectReference};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kube::api::ObjectMeta;

    fn event(uid: &str, reason: &str, at: i64, version: &str) -> Event {
        Event {
            metadata: ObjectMeta {
                resource_version: Some(version.into()),
                ..ObjectMeta::default()
            },
            involved_object: ObjectReference {
                kind: Some("Ingress".into()),
                uid: Some(uid.into()),
                resource_version: Some("10".into()),
                ..ObjectReference::default()
            },
            reason: Some(reason.into()),
            message: Some(format!("{reason} message")),
            source: Some(EventSource {
                component: Some(EVENT_SOURCE.into()),
                host: None,
            }),
            last_timestamp: Some(Time(k8s_openapi::jiff::Timestamp::from_second(at).unwrap())),
            ..Event::default()
        }
    }

    #[test]
    fn the_latest_event_of_the_controller_for_the_current_uid_is_the_verdict() {
        let mut other_source = event("u1", REJECTED, 300, "9");
        other_source.source = Some(EventSource {
            component: Some("someone-else".into()),
            host: None,
        });
        let events = [
            event("u1", NO_INGRESS_MASTER_FOUND, 100, "5"),
            event("u1", ADDED_OR_UPDATED, 200, "6"),
            // Same second: the later Event object wins.
            event("u1", REJECTED, 200, "7"),
            // An earlier Ingress of the same name.
            event("u0", ADDED_OR_UPDATED, 400, "8"),
            other_source,
        ];
        let verdict = latest(&events, "u1").map(Verdict::of).unwrap();
        assert_eq!(verdict.reason, REJECTED);
        assert!(latest(&events, "u2").is_none());
        assert!(judges_version(&events[0], "10"));
        assert!(!judges_version(&events[0], "11"));
        assert!(judges_version(&events[0], "opaque"));
    }

    #[test]
    fn host_conflicts_are_waited_out_and_invalid_ingresses_are_refused() {
        let verdict = |reason: &str, message: &str| Verdict {
            reason: reason.into(),
            message: message.into(),
        };
        let cases = [
            (
                ADDED_OR_UPDATED,
                "Configuration for a/b was added or updated",
                Judgement::Accepted,
            ),
            (
                NO_INGRESS_MASTER_FOUND,
                "Ingress master is invalid or doesn't exist",
                Judgement::Conflict,
            ),
            (
                REJECTED,
                "All hosts are taken by other resources",
                Judgement::Conflict,
            ),
            (
                ADDED_OR_UPDATED_WITH_WARNING,
                "Configuration for a/b was added or updated with warning(s): path / is taken by another resource",
                Judgement::Conflict,
            ),
            (
                REJECTED,
                "spec.rules[0].http.paths: Too many: 1: must have at most 0 items",
                Judgement::Refused,
            ),
            (
                "AddedOrUpdatedWithError",
                "... but was not applied: reload failed",
                Judgement::Refused,
            ),
        ];
        for (reason, message, judgement) in cases {
            assert_eq!(
                verdict(reason, message).judgement(),
                judgement,
                "{reason}: {message}"
            );
        }
    }
}
