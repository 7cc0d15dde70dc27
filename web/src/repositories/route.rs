//! The ingress controller's verdict on a route, read from the Events F5 NGINX Ingress Controller
//! (NIC) writes on each Ingress, in the developer's words.
//!
//! NIC reports every (re)configuration of an Ingress as an Event on it (`internal/k8s/controller.go`
//! `updateMergeableIngressStatusAndEvents`, `processProblems`; reasons in `internal/logger/events.go`),
//! so the latest of them says whether the route is in service now.

use serde::Serialize;

use crate::mirror::compact::{EventView, IngressView};

/// `source.component` of the Events NIC writes.
pub const CONTROLLER_COMPONENT: &str = "nginx-ingress-controller";

/// The route is in service as written.
pub const ADDED_OR_UPDATED: &str = "AddedOrUpdated";
/// In service, but NIC dropped part of it (for a minion: a path another minion had first).
pub const ADDED_OR_UPDATED_WITH_WARNING: &str = "AddedOrUpdatedWithWarning";
/// NIC could not load the new configuration into NGINX.
pub const ADDED_OR_UPDATED_WITH_ERROR: &str = "AddedOrUpdatedWithError";
/// Invalid, or every host taken by an older resource: not served.
pub const REJECTED: &str = "Rejected";
/// Rejected, and removing the old configuration failed too.
pub const REJECTED_WITH_ERROR: &str = "RejectedWithError";
/// A minion whose host has no (valid) master: not served.
pub const NO_INGRESS_MASTER_FOUND: &str = "NoIngressMasterFound";

/// The reasons that are a verdict on an Ingress; other Events on it do not change the route's state.
pub const VERDICT_REASONS: [&str; 6] = [
    ADDED_OR_UPDATED,
    ADDED_OR_UPDATED_WITH_WARNING,
    ADDED_OR_UPDATED_WITH_ERROR,
    REJECTED,
    REJECTED_WITH_ERROR,
    NO_INGRESS_MASTER_FOUND,
];

/// Our own reason when a repository has no Ingress at all.
pub const INGRESS_MISSING: &str = "IngressMissing";

/// What the ingress controller made of a repository's route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "lowercase")]
pub enum RouteVerdict {
    /// In service (`AddedOrUpdated`), with NIC's message.
    Accepted { message: String },
    /// The controller has not judged the current Ingress yet.
    Pending,
    /// The repository has no public route by design (a compose service that publishes no
    /// port): the namespace's other repositories reach it by its Service name.
    Internal,
    /// Not in service as written: NIC's reason and message, and what to do about it.
    Failed {
        reason: String,
        message: String,
        advice: String,
    },
}

impl RouteVerdict {
    pub fn is_accepted(&self) -> bool {
        matches!(self, Self::Accepted { .. })
    }

    /// Whether the route is as it should be for the repository to be Ready: accepted, or none by
    /// design.
    pub fn is_settled(&self) -> bool {
        matches!(self, Self::Accepted { .. } | Self::Internal)
    }

    /// One line for the detail page and the objects table.
    pub fn summary(&self) -> String {
        match self {
            Self::Accepted { .. } => "in service: accepted by the ingress controller".into(),
            Self::Pending => "waiting for the ingress controller to accept it".into(),
            Self::Internal => {
                "none (internal): your other repositories reach it by its name".into()
            }
            Self::Failed {
                reason, message, ..
            } => format!("not in service: {reason}: {message}"),
        }
    }

    /// The verdict on `ingress` (or its absence) among `events` of its namespace.
    pub fn of<'a>(
        ingress: Option<&IngressView>,
        events: impl IntoIterator<Item = &'a EventView>,
        host: &str,
    ) -> Self {
        let Some(ingress) = ingress else {
            return Self::Failed {
                reason: INGRESS_MISSING.into(),
                message: "the repository has no Ingress, so nothing routes requests to it".into(),
                advice: "Redeploy to create it again.".into(),
            };
        };
        match latest_verdict(ingress, events) {
            None => Self::Pending,
            Some(e) => Self::from_event(e, host),
        }
    }

    /// Maps one NIC verdict Event to the route's state.
    pub fn from_event(event: &EventView, host: &str) -> Self {
        let reason = event.reason.to_string();
        let message = event.message.to_string();
        if reason == ADDED_OR_UPDATED {
            return Self::Accepted { message };
        }
        Self::Failed {
            advice: advice(&reason, &message, host),
            reason,
            message,
        }
    }
}

/// The latest verdict Event NIC wrote on this very Ingress (its current uid: Events of an
/// earlier Ingress of the same name do not count): latest `lastTimestamp`, then `eventTime`, then
/// the later `resourceVersion` (a deduplicated Event is updated in place, so it has the newer one).
pub fn latest_verdict<'a>(
    ingress: &IngressView,
    events: impl IntoIterator<Item = &'a EventView>,
) -> Option<&'a EventView> {
    let uid = &ingress.id.uid;
    if uid.is_empty() {
        return None;
    }
    events
        .into_iter()
        .filter(|e| e.object_uid == *uid && e.from_controller)
        .filter(|e| VERDICT_REASONS.contains(&e.reason.as_str()))
        .max_by_key(|e| {
            (
                e.last_timestamp,
                e.event_time(),
                e.resource_version.number(),
            )
        })
}

fn taken(message: &str, what: &str) -> bool {
    message.contains(what) && message.contains("taken by")
}

/// What a developer can do about a failed route, in their words.
pub fn advice(reason: &str, message: &str, host: &str) -> String {
    match reason {
        NO_INGRESS_MASTER_FOUND => format!(
            "The platform's master Ingress for {host} is missing or was rejected, so the ingress controller serves no repository on this address: ask the operator to run `provisioner up`, which installs it again."
        ),
        ADDED_OR_UPDATED_WITH_WARNING if taken(message, "path ") => format!(
            "Another Ingress on {host} had this repository's path first, so your requests reach it instead of your service: ask the operator to remove that Ingress (kubectl get ingress -A shows it)."
        ),
        ADDED_OR_UPDATED_WITH_WARNING => {
            "The ingress controller put the route in service only in part: ask the operator, quoting the message.".into()
        }
        ADDED_OR_UPDATED_WITH_ERROR => {
            "The ingress controller could not load the new configuration, so requests may still follow the previous one: Redeploy in a minute; if it stays, ask the operator to check the controller's logs.".into()
        }
        REJECTED | REJECTED_WITH_ERROR if taken(message, "host") => format!(
            "Another Ingress owns this host ({host}), so the ingress controller ignores this route: ask the operator to remove the Ingress that took it (kubectl get ingress -A shows it)."
        ),
        REJECTED | REJECTED_WITH_ERROR => {
            "The ingress controller refused the route's settings: Redeploy puts the site's settings back; if it stays, ask the operator, quoting the message.".into()
        }
        _ => "Check the events below, or ask the operator.".into(),
    }
}

/// A failed verdict on an Ingress of the user's namespace that is not a repository's own (for
/// example one made by hand with `kubectl`), shown above the repository list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteNotice {
    pub ingress: String,
    pub reason: String,
    pub message: String,
    pub advice: String,
}

impl RouteNotice {
    /// The notice for a foreign Ingress, if the controller refused it.
    pub fn of<'a>(
        ingress: &IngressView,
        events: impl IntoIterator<Item = &'a EventView>,
        namespace: &str,
        host: &str,
    ) -> Option<Self> {
        let name = ingress.id.name.clone();
        let RouteVerdict::Failed {
            reason,
            message,
            advice,
        } = RouteVerdict::from_event(latest_verdict(ingress, events)?, host)
        else {
            return None;
        };
        let advice = if reason == REJECTED && taken(&message, "host") {
            format!(
                "Routes on {host} belong to the site: an Ingress of your own cannot share that host. Delete it (kubectl delete ingress {name} -n {namespace}) and deploy through a repository, which gets its own address."
            )
        } else {
            advice
        };
        Some(Self {
            ingress: name.into(),
            reason,
            message,
            advice,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
    use k8s_openapi::api::networking::v1::Ingress;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn ingress(uid: &str) -> IngressView {
        IngressView::of(&Ingress {
            metadata: ObjectMeta {
                name: Some("hello".into()),
                namespace: Some("alice".into()),
                uid: Some(uid.into()),
                ..ObjectMeta::default()
            },
            ..Ingress::default()
        })
    }

    /// `event("AddedOrUpdated", "msg").at(10).rv(3).uid("u2").from("kubelet")`
    struct E(Event);
    fn event(reason: &str, message: &str) -> E {
        E(Event {
            metadata: ObjectMeta {
                name: Some(format!("hello.{reason}")),
                resource_version: Some("1".into()),
                ..ObjectMeta::default()
            },
            involved_object: ObjectReference {
                kind: Some("Ingress".into()),
                name: Some("hello".into()),
                namespace: Some("alice".into()),
                uid: Some("u1".into()),
                ..ObjectReference::default()
            },
            reason: Some(reason.into()),
            message: Some(message.into()),
            type_: Some(
                if reason == ADDED_OR_UPDATED {
                    "Normal"
                } else {
                    "Warning"
                }
                .into(),
            ),
            source: Some(EventSource {
                component: Some(CONTROLLER_COMPONENT.into()),
                host: None,
            }),
            last_timestamp: Some(Time(
                k8s_openapi::jiff::Timestamp::from_second(1000).unwrap(),
            )),
            ..Event::default()
        })
    }
    impl E {
        fn at(mut self, second: i64) -> Self {
            self.0.last_timestamp = Some(Time(
                k8s_openapi::jiff::Timestamp::from_second(second).unwrap(),
            ));
            self
        }
        fn rv(mut self, rv: u64) -> Self {
            self.0.metadata.resource_version = Some(rv.to_string());
            self
        }
        fn uid(mut self, uid: &str) -> Self {
            self.0.involved_object.uid = Some(uid.into());
            self
        }
        fn from(mut self, component: &str) -> Self {
            self.0.source = Some(EventSource {
                component: Some(component.into()),
                host: None,
            });
            self
        }
    }

    const HOST: &str = "kdeploy.localhost";

    fn verdict(events: Vec<E>) -> RouteVerdict {
        let events: Vec<EventView> = events.into_iter().map(|e| EventView::of(&e.0)).collect();
        RouteVerdict::of(Some(&ingress("u1")), &events, HOST)
    }

    #[test]
    fn each_nic_reason_maps_to_a_verdict_with_advice() {
        assert_eq!(
            verdict(vec![event(
                ADDED_OR_UPDATED,
                "Configuration for alice/hello was added or updated"
            )]),
            RouteVerdict::Accepted {
                message: "Configuration for alice/hello was added or updated".into()
            }
        );
        for (reason, message, advice_says) in [
            (
                ADDED_OR_UPDATED_WITH_WARNING,
                "Configuration for alice/hello was added or updated with warning(s): path /alice/hello/ is taken by another resource",
                "had this repository's path first",
            ),
            (
                ADDED_OR_UPDATED_WITH_WARNING,
                "Configuration for alice/hello was added or updated with warning(s): something else",
                "only in part",
            ),
            (
                ADDED_OR_UPDATED_WITH_ERROR,
                "Configuration for alice/hello was added or updated ; but was not applied: reload failed",
                "could not load",
            ),
            (
                REJECTED,
                "All hosts are taken by other resources",
                "Another Ingress owns this host (kdeploy.localhost)",
            ),
            (
                REJECTED,
                "annotations.nginx.org/rewrites: Forbidden: annotation is not supported in master",
                "refused the route's settings",
            ),
            (
                REJECTED_WITH_ERROR,
                "alice/hello was rejected: with error: x; but was not applied: y",
                "refused the route's settings",
            ),
            (
                NO_INGRESS_MASTER_FOUND,
                "Ingress master is invalid or doesn't exist",
                "master Ingress for kdeploy.localhost is missing",
            ),
        ] {
            let v = verdict(vec![event(reason, message)]);
            let RouteVerdict::Failed {
                reason: r,
                message: m,
                advice,
            } = &v
            else {
                panic!("{reason} is a failure: {v:?}");
            };
            assert_eq!(
                (r.as_str(), m.as_str()),
                (reason, message),
                "NIC's words kept"
            );
            assert!(advice.contains(advice_says), "{reason}: {advice}");
            assert!(v.summary().contains(message));
        }
        assert!(
            advice(NO_INGRESS_MASTER_FOUND, "", HOST).contains("provisioner up"),
            "the operator's command is named"
        );
    }

    #[test]
    fn no_verdict_yet_is_pending_and_no_ingress_is_a_failure() {
        assert_eq!(verdict(vec![]), RouteVerdict::Pending);
        // Events of another object, another component, an earlier Ingress of the same name, or
        // with reasons that are no verdict, do not count.
        assert_eq!(
            verdict(vec![
                event(ADDED_OR_UPDATED, "old").uid("u0"),
                event(REJECTED, "by someone else").from("kubelet"),
                event("CreateCertificate", "not a verdict"),
            ]),
            RouteVerdict::Pending
        );
        assert!(!RouteVerdict::Pending.is_accepted());
        let missing = RouteVerdict::of(None, &[] as &[EventView], HOST);
        assert!(
            matches!(&missing, RouteVerdict::Failed { reason, .. } if reason == INGRESS_MISSING)
        );
    }

    #[test]
    fn the_latest_verdict_wins() {
        let v = verdict(vec![
            event(
                NO_INGRESS_MASTER_FOUND,
                "Ingress master is invalid or doesn't exist",
            )
            .at(1001),
            event(
                ADDED_OR_UPDATED,
                "Configuration for alice/hello was added or updated",
            )
            .at(1000),
        ]);
        assert!(matches!(v, RouteVerdict::Failed { .. }), "{v:?}");
        // Same second: the Event updated last (deduplicated, count+1) has the newer resourceVersion.
        let v = verdict(vec![
            event(
                NO_INGRESS_MASTER_FOUND,
                "Ingress master is invalid or doesn't exist",
            )
            .at(1001)
            .rv(7),
            event(
                ADDED_OR_UPDATED,
                "Configuration for alice/hello was added or updated",
            )
            .at(1001)
            .rv(9),
        ]);
        assert!(v.is_accepted(), "{v:?}");
    }

    #[test]
    fn a_refused_foreign_ingress_becomes_a_notice() {
        let mine = ingress("u1");
        let rejected = [EventView::of(
            &event(REJECTED, "All hosts are taken by other resources").0,
        )];
        let n = RouteNotice::of(&mine, &rejected, "alice", HOST).unwrap();
        assert_eq!(n.ingress, "hello");
        assert_eq!(n.message, "All hosts are taken by other resources");
        assert!(
            n.advice.contains("kubectl delete ingress hello -n alice"),
            "{}",
            n.advice
        );
        let accepted = [EventView::of(
            &event(
                ADDED_OR_UPDATED,
                "Configuration for alice/hello was added or updated",
            )
            .0,
        )];
        assert!(RouteNotice::of(&mine, &accepted, "alice", HOST).is_none());
        assert!(RouteNotice::of(&mine, &[] as &[EventView], "alice", HOST).is_none());
    }
}
