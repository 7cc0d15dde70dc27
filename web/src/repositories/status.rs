//! What a repository's objects say about it, in the developer's words.

use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use super::route::RouteVerdict;
use crate::mirror::compact::{DeploymentView, PodView};

/// Container waiting reasons that will not fix themselves.
const FAILING_REASONS: &[&str] = &[
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state")]
pub enum RepositoryState {
    /// First rollout: pods not ready yet, or the ingress controller has not accepted the route yet.
    Deploying,
    /// Every pod is up to date and ready, and the ingress controller has accepted the route.
    Ready,
    /// A new version is rolling out (or replicas change) while the old one serves.
    Updating,
    Failing {
        reason: String,
        message: String,
    },
}

impl RepositoryState {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Deploying => "Deploying",
            Self::Ready => "Ready",
            Self::Updating => "Updating",
            Self::Failing { .. } => "Failing",
        }
    }

    /// What to do about it, in a sentence.
    pub fn advice(&self) -> Option<String> {
        let Self::Failing { reason, .. } = self else {
            return None;
        };
        Some(match reason.as_str() {
            "ImagePullBackOff" | "ErrImagePull" | "InvalidImageName" => {
                "The image could not be pulled: check the image name and tag, and that the image is public.".into()
            }
            "CrashLoopBackOff" => {
                "The container keeps exiting: check that it runs a server and listens on the port you gave.".into()
            }
            "FailedCreate" => {
                "Kubernetes refused to start more pods, usually because your namespace's quota (pods, CPU or memory) is used up: lower the replicas or delete a repository you no longer need.".into()
            }
            "ProgressDeadlineExceeded" => {
                "The rollout is stuck: check the pods and events below.".into()
            }
            _ => "Check the pods and events below.".into(),
        })
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Replicas {
    pub desired: i32,
    pub ready: i32,
    pub updated: i32,
    pub total: i32,
}

/// The first failing reason among the pods' containers, with its message.
pub fn pod_failure<'a>(pods: impl IntoIterator<Item = &'a PodView>) -> Option<(String, String)> {
    pods.into_iter()
        .flat_map(|p| p.waiting.iter())
        .find(|w| FAILING_REASONS.contains(&w.reason.as_str()))
        .map(|w| (w.reason.to_string(), w.message.to_string()))
}

/// Derives the state from the Deployment, its pods (of any revision) and the ingress controller's
/// verdict on its route: pods that cannot start come first, then a refused route (NIC's reason and
/// message), and Ready needs both the pods and the route.
pub fn derive_state<'a>(
    deployment: &DeploymentView,
    pods: impl IntoIterator<Item = &'a PodView>,
    route: &RouteVerdict,
) -> RepositoryState {
    if let Some((reason, message)) = pod_failure(pods) {
        return RepositoryState::Failing { reason, message };
    }
    if let Some(message) = deployment.stuck() {
        return RepositoryState::Failing {
            reason: "ProgressDeadlineExceeded".into(),
            message: message.to_string(),
        };
    }
    if let Some(f) = deployment.replica_failure() {
        return RepositoryState::Failing {
            reason: f.reason.to_string(),
            message: f.message.to_string(),
        };
    }
    if let RouteVerdict::Failed {
        reason, message, ..
    } = route
    {
        return RepositoryState::Failing {
            reason: reason.clone(),
            message: message.clone(),
        };
    }
    let r = deployment.replicas;
    let settled = deployment.observed_generation >= deployment.generation
        && r.updated >= r.desired
        && r.ready >= r.desired
        && r.total <= r.desired;
    if settled && route.is_settled() {
        RepositoryState::Ready
    } else if deployment.revision <= 1 && (r.ready == 0 || settled) {
        RepositoryState::Deploying
    } else {
        RepositoryState::Updating
    }
}

/// "3m", "2h", "5d": how long ago, as a list shows it.
pub fn age(created: Option<Timestamp>) -> String {
    let Some(created) = created else {
        return String::new();
    };
    let now = Timestamp::now();
    let seconds = now.as_second().saturating_sub(created.as_second()).max(0);
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repositories::route::{self, RouteVerdict};
    use k8s_openapi::api::apps::v1::{
        Deployment, DeploymentCondition, DeploymentSpec, DeploymentStatus,
    };
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateWaiting, ContainerStatus, Pod, PodStatus,
    };

    /// The state of API objects, through the records the mirror keeps of them.
    fn derive_state(d: &Deployment, pods: &[Pod], route: &RouteVerdict) -> RepositoryState {
        let pods: Vec<PodView> = pods.iter().map(PodView::of).collect();
        super::derive_state(&DeploymentView::of(d), &pods, route)
    }
    use std::collections::BTreeMap;

    /// `deployment(3).ready(1).updated(3).revision(2)`
    struct D(Deployment);
    fn deployment(desired: i32) -> D {
        let mut d = Deployment {
            spec: Some(DeploymentSpec {
                replicas: Some(desired),
                ..DeploymentSpec::default()
            }),
            status: Some(DeploymentStatus::default()),
            ..Deployment::default()
        };
        d.metadata.generation = Some(1);
        D(d).observed(1)
    }
    impl D {
        fn status(mut self, f: impl FnOnce(&mut DeploymentStatus)) -> Self {
            f(self.0.status.get_or_insert_with(Default::default));
            self
        }
        fn ready(self, n: i32) -> Self {
            self.status(|s| s.ready_replicas = Some(n))
        }
        fn updated(self, n: i32) -> Self {
            self.status(|s| s.updated_replicas = Some(n))
        }
        fn total(self, n: i32) -> Self {
            self.status(|s| s.replicas = Some(n))
        }
        fn observed(self, n: i64) -> Self {
            self.status(|s| s.observed_generation = Some(n))
        }
        fn revision(mut self, n: i64) -> Self {
            self.0.metadata.annotations = Some(BTreeMap::from([(
                "deployment.kubernetes.io/revision".to_string(),
                n.to_string(),
            )]));
            self
        }
    }

    fn waiting_pod(reason: &str) -> Pod {
        Pod {
            status: Some(PodStatus {
                container_statuses: Some(vec![ContainerStatus {
                    name: "c".into(),
                    state: Some(ContainerState {
                        waiting: Some(ContainerStateWaiting {
                            reason: Some(reason.into()),
                            message: Some(format!("{reason} message")),
                        }),
                        ..ContainerState::default()
                    }),
                    ..ContainerStatus::default()
                }]),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }

    fn accepted() -> RouteVerdict {
        RouteVerdict::Accepted {
            message: "Configuration for alice/hello was added or updated".into(),
        }
    }

    fn failed(reason: &str, message: &str) -> RouteVerdict {
        RouteVerdict::Failed {
            reason: reason.into(),
            message: message.into(),
            advice: route::advice(reason, message, "lb.example.com"),
        }
    }

    /// The state with the route accepted, as before the controller's verdict counted.
    fn derive_state_accepted(d: &Deployment, pods: &[Pod]) -> RepositoryState {
        derive_state(d, pods, &accepted())
    }

    #[test]
    fn ready_needs_the_route_accepted() {
        let ready = deployment(2).ready(2).updated(2).total(2).revision(1).0;
        assert_eq!(
            derive_state(&ready, &[], &accepted()),
            RepositoryState::Ready
        );
        // The pods are ready but the controller has not judged the route: still deploying.
        assert_eq!(
            derive_state(&ready, &[], &RouteVerdict::Pending),
            RepositoryState::Deploying
        );
        let changed = deployment(2).ready(2).updated(2).total(2).revision(3).0;
        assert_eq!(
            derive_state(&changed, &[], &RouteVerdict::Pending),
            RepositoryState::Updating
        );
    }

    #[test]
    fn a_refused_route_is_failing_with_nics_reason_and_message() {
        let ready = deployment(1).ready(1).updated(1).total(1).revision(1).0;
        for (reason, message) in [
            (
                route::ADDED_OR_UPDATED_WITH_WARNING,
                "Configuration for alice/hello was added or updated with warning(s): path /alice/hello/ is taken by another resource",
            ),
            (
                route::ADDED_OR_UPDATED_WITH_ERROR,
                "Configuration for alice/hello was added or updated ; but was not applied: x",
            ),
            (route::REJECTED, "All hosts are taken by other resources"),
            (
                route::REJECTED_WITH_ERROR,
                "alice/hello was rejected: with error: x; but was not applied: y",
            ),
            (
                route::NO_INGRESS_MASTER_FOUND,
                "Ingress master is invalid or doesn't exist",
            ),
            (route::INGRESS_MISSING, "the repository has no Ingress"),
        ] {
            let state = derive_state(&ready, &[], &failed(reason, message));
            assert_eq!(
                state,
                RepositoryState::Failing {
                    reason: reason.into(),
                    message: message.into()
                }
            );
        }
        // A pod that cannot start says more than the route it would serve.
        let state = derive_state(
            &ready,
            &[waiting_pod("ImagePullBackOff")],
            &failed(route::REJECTED, "All hosts are taken by other resources"),
        );
        assert!(
            matches!(&state, RepositoryState::Failing { reason, .. } if reason == "ImagePullBackOff")
        );
    }

    #[test]
    fn states() {
        let ready = deployment(2).ready(2).updated(2).total(2).revision(1).0;
        assert_eq!(derive_state_accepted(&ready, &[]), RepositoryState::Ready);

        let first = deployment(2).updated(2).total(2).revision(1).0;
        assert_eq!(
            derive_state_accepted(&first, &[]),
            RepositoryState::Deploying
        );

        let rolling = deployment(2).ready(2).updated(1).total(3).revision(2).0;
        assert_eq!(
            derive_state_accepted(&rolling, &[]),
            RepositoryState::Updating
        );

        let unobserved = deployment(2)
            .ready(2)
            .updated(2)
            .total(2)
            .revision(1)
            .observed(0)
            .0;
        assert_eq!(
            derive_state_accepted(&unobserved, &[]),
            RepositoryState::Updating
        );

        let failing = derive_state_accepted(
            &first,
            &[
                waiting_pod("ContainerCreating"),
                waiting_pod("ImagePullBackOff"),
            ],
        );
        assert_eq!(failing.label(), "Failing");
        assert!(
            matches!(&failing, RepositoryState::Failing { reason, .. } if reason == "ImagePullBackOff")
        );
        assert!(failing.advice().unwrap().contains("image"));

        let crash = derive_state_accepted(&ready, &[waiting_pod("CrashLoopBackOff")]);
        assert!(
            matches!(&crash, RepositoryState::Failing { reason, .. } if reason == "CrashLoopBackOff")
        );

        let stuck = deployment(1)
            .status(|s| {
                s.conditions = Some(vec![DeploymentCondition {
                    type_: "Progressing".into(),
                    status: "False".into(),
                    reason: Some("ProgressDeadlineExceeded".into()),
                    ..DeploymentCondition::default()
                }])
            })
            .0;
        assert_eq!(derive_state_accepted(&stuck, &[]).label(), "Failing");

        let over_quota = deployment(4)
            .ready(2)
            .status(|s| {
                s.conditions = Some(vec![DeploymentCondition {
                    type_: "ReplicaFailure".into(),
                    status: "True".into(),
                    reason: Some("FailedCreate".into()),
                    message: Some("exceeded quota: kdeploy".into()),
                    ..DeploymentCondition::default()
                }])
            })
            .0;
        let state = derive_state_accepted(&over_quota, &[]);
        assert!(
            matches!(&state, RepositoryState::Failing { reason, message } if reason == "FailedCreate" && message.contains("quota"))
        );
        assert!(state.advice().unwrap().contains("quota"));
    }
}
