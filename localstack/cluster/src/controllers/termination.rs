//! The kubelet's side of a pod deletion (Kubernetes 1.34
//! `pkg/kubelet/kuberuntime/kuberuntime_container.go` killContainer / executePreStopHook,
//! `pkg/kubelet/lifecycle/handlers.go` runSleepHandler, `pkg/kubelet/status/status_manager.go`):
//! once the API server has set `deletionTimestamp` and `deletionGracePeriodSeconds`, the kubelet
//! records `Killing`, runs the preStop hook (at most the grace period), then asks the runtime to
//! stop the container with what is left of the grace period (at least
//! `minimumGracePeriodInSeconds` = 2): SIGTERM, and SIGKILL when that runs out. When the
//! containers have stopped, the pod object is deleted for good (grace 0, UID precondition).
//!
//! Only the `sleep` preStop action is modelled (GA in 1.34; `exec` and `httpGet` hooks finish at
//! once), and only for the first container, the one whose port the simulator serves.

use crate::meta::Lookup;
use std::time::{Duration, Instant};

use serde_json::Value;

/// kuberuntime_manager.go minimumGracePeriodInSeconds.
const MINIMUM_GRACE: u64 = 2;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Stage {
    /// The preStop sleep runs until then; the container still serves.
    PreStop { until: Instant },
    /// SIGTERM was sent; SIGKILL at `kill_at` if the container still runs.
    Stopping { kill_at: Instant },
    /// The containers have stopped: the pod object can go.
    Stopped,
}

/// One pod being terminated.
#[derive(Debug)]
pub(super) struct Termination {
    started: Instant,
    grace: u64,
    pub(super) stage: Stage,
}

/// What the kubelet asks of the runtime on a step.
#[derive(Debug, PartialEq)]
pub(super) enum Action {
    None,
    /// Send SIGTERM (the image's STOPSIGNAL) to the container.
    Terminate,
    /// Send SIGKILL.
    Kill,
}

/// `deletionGracePeriodSeconds`, else the spec's, else the minimum (killContainer's switch).
fn grace_period(pod: &Value) -> u64 {
    pod.at("/metadata/deletionGracePeriodSeconds")
        .or_else(|| pod.at("/spec/terminationGracePeriodSeconds"))
        .and_then(Value::as_u64)
        .unwrap_or(MINIMUM_GRACE)
}

/// The first container's `lifecycle.preStop.sleep.seconds`.
fn pre_stop_sleep(pod: &Value) -> Option<u64> {
    pod.at("/spec/containers/0/lifecycle/preStop/sleep/seconds")
        .and_then(Value::as_u64)
}

impl Termination {
    /// Starts terminating a pod whose container runs (`running`) or not.
    pub(super) fn begin(pod: &Value, running: bool, now: Instant) -> (Self, Action) {
        let grace = grace_period(pod);
        let mut t = Self {
            started: now,
            grace,
            stage: Stage::Stopped,
        };
        if !running {
            return (t, Action::None);
        }
        match pre_stop_sleep(pod).filter(|_| grace > 0) {
            // executePreStopHook gives the hook at most the grace period.
            Some(seconds) => {
                t.stage = Stage::PreStop {
                    until: now + Duration::from_secs(seconds.min(grace)),
                };
                (t, Action::None)
            }
            None => {
                let action = t.terminate(now);
                (t, action)
            }
        }
    }

    /// killContainer after the hook: grace minus the whole seconds the hook took, at least 2.
    fn terminate(&mut self, now: Instant) -> Action {
        let spent = now.duration_since(self.started).as_secs();
        let left = self.grace.saturating_sub(spent).max(MINIMUM_GRACE);
        self.stage = Stage::Stopping {
            kill_at: now + Duration::from_secs(left),
        };
        Action::Terminate
    }

    /// Advances; `exited` tells whether the container has stopped.
    pub(super) fn step(&mut self, exited: bool, now: Instant) -> Action {
        match self.stage {
            Stage::PreStop { until } if now >= until => self.terminate(now),
            Stage::PreStop { .. } | Stage::Stopped => Action::None,
            Stage::Stopping { .. } if exited => {
                self.stage = Stage::Stopped;
                Action::None
            }
            Stage::Stopping { kill_at } if now >= kill_at => Action::Kill,
            Stage::Stopping { .. } => Action::None,
        }
    }
}

/// The `Killing` event message per container (kuberuntime_container.go killContainer).
pub(super) fn killing_messages(pod: &Value) -> Vec<String> {
    pod.at("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| {
            format!(
                "Stopping container {}",
                c.get("name").and_then(Value::as_str).unwrap_or_default()
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(grace: u64, sleep: Option<u64>) -> Value {
        let mut p = json!({"metadata": {"deletionGracePeriodSeconds": grace}, "spec": {"containers": [{"name": "app"}]}});
        if let Some(s) = sleep {
            p["spec"]["containers"][0]["lifecycle"] = json!({"preStop": {"sleep": {"seconds": s}}});
        }
        p
    }

    /// kuberuntime_container.go killContainer: preStop first, SIGTERM with the rest of the grace
    /// period, SIGKILL when it runs out.
    #[test]
    fn pre_stop_then_sigterm_then_sigkill_like_kill_container() {
        let t0 = Instant::now();
        let (mut t, action) = Termination::begin(&pod(30, Some(5)), true, t0);
        assert_eq!(action, Action::None);
        assert_eq!(t.step(false, t0 + Duration::from_secs(4)), Action::None);
        assert_eq!(
            t.step(false, t0 + Duration::from_secs(5)),
            Action::Terminate
        );
        assert_eq!(
            t.stage,
            Stage::Stopping {
                kill_at: t0 + Duration::from_secs(30)
            }
        );
        assert_eq!(t.step(false, t0 + Duration::from_secs(29)), Action::None);
        assert_eq!(t.step(false, t0 + Duration::from_secs(30)), Action::Kill);
        assert_eq!(t.step(true, t0 + Duration::from_secs(31)), Action::None);
        assert_eq!(t.stage, Stage::Stopped);
    }

    /// executePreStopHook is cut at the grace period; minimumGracePeriodInSeconds is 2.
    #[test]
    fn a_hook_longer_than_the_grace_period_leaves_the_two_second_minimum() {
        let t0 = Instant::now();
        let (mut t, _) = Termination::begin(&pod(3, Some(10)), true, t0);
        assert_eq!(
            t.step(false, t0 + Duration::from_secs(3)),
            Action::Terminate
        );
        assert_eq!(
            t.stage,
            Stage::Stopping {
                kill_at: t0 + Duration::from_secs(5)
            }
        );
    }

    #[test]
    fn no_hook_means_sigterm_at_once_and_no_container_means_done() {
        let t0 = Instant::now();
        assert_eq!(
            Termination::begin(&pod(30, None), true, t0).1,
            Action::Terminate
        );
        let (t, action) = Termination::begin(&pod(30, Some(5)), false, t0);
        assert_eq!((t.stage, action), (Stage::Stopped, Action::None));
    }
}
