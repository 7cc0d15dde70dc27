//! Plans as data: steps with dependencies, walked forward by `up` (each step after the steps it
//! needs, independent ones concurrently), backward by `down`, and read-only by `plan`/`status`.
//! The engine knows steps only through [`Step`]; the catalogue lives in [`crate::steps`].

mod step;

use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;

pub use crate::error::{OnResource, PlanError, RunError, StepError, humanize};
use crate::progress::Outcome;
pub use step::{Context, Output, Outputs, Resource, Scope, Step, StepFuture, StepId};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Waiting,
    Running,
    Done,
    Failed,
    Skipped,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Up,
    Down,
}

/// An ordered set of steps.
#[derive(Default)]
pub struct Plan {
    steps: Vec<Box<dyn Step>>,
}

impl Plan {
    /// The steps `id` needs, transitively, and `id` itself, in plan order.
    pub fn through(mut self, id: StepId) -> Option<Self> {
        let index = self.index(id)?;
        let mut keep = vec![false; self.steps.len()];
        let mut stack = vec![index];
        while let Some(i) = stack.pop() {
            if std::mem::replace(&mut keep[i], true) {
                continue;
            }
            for need in self.steps[i].needs() {
                stack.extend(self.index(*need));
            }
        }
        let mut flags = keep.into_iter();
        self.steps.retain(|_| flags.next().unwrap_or(false));
        Some(self)
    }

    /// Appends a step; later issues extend the plan this way.
    pub fn with(mut self, step: impl Step + 'static) -> Self {
        self.steps.push(Box::new(step));
        self
    }

    pub fn steps(&self) -> impl Iterator<Item = &dyn Step> {
        self.steps.iter().map(|s| s.as_ref())
    }

    fn index(&self, id: StepId) -> Option<usize> {
        self.steps.iter().position(|s| s.id() == id)
    }

    /// For each step, by index, the steps it needs.
    fn dependencies(&self) -> Result<Vec<Vec<usize>>, PlanError> {
        let mut deps = Vec::with_capacity(self.steps.len());
        for (i, step) in self.steps.iter().enumerate() {
            if self.steps[..i].iter().any(|s| s.name() == step.name()) {
                return Err(PlanError::Duplicate(step.name()));
            }
            let mut mine = Vec::new();
            for need in step.needs() {
                mine.push(self.index(*need).ok_or(PlanError::UnknownStep {
                    step: step.name(),
                    missing: need.name(),
                })?);
            }
            deps.push(mine);
        }
        Ok(deps)
    }

    /// Whom each step waits for in either direction, checked for cycles in both.
    fn graph(&self) -> Result<Graph, PlanError> {
        let up = self.dependencies()?;
        let n = self.steps.len();
        // Down: a step goes once the steps that need it are gone, and those it is removed after.
        let down: Vec<Vec<usize>> = (0..n)
            .map(|i| {
                let mut waits: Vec<usize> = (0..n).filter(|&j| up[j].contains(&i)).collect();
                let after = self.steps[i].removed_after().iter();
                waits.extend(after.filter_map(|id| self.index(*id)));
                waits.sort_unstable();
                waits.dedup();
                waits
            })
            .collect();
        let up_order = sorted(&up).map_err(|stuck| PlanError::Cycle(self.steps[stuck].name()))?;
        sorted(&down).map_err(|stuck| PlanError::RemovalCycle(self.steps[stuck].name()))?;
        Ok(Graph { up, down, up_order })
    }

    /// Step names in an order `up` could run them one by one; checks the plan for cycles, the
    /// order of `down` included.
    pub fn order(&self) -> Result<Vec<&'static str>, PlanError> {
        let graph = self.graph()?;
        Ok(graph
            .up_order
            .into_iter()
            .map(|i| self.steps[i].name())
            .collect())
    }

    /// Brings everything up: each step once the steps it needs are done, independent steps at the
    /// same time. The first failure stops new steps from starting; running ones finish.
    pub async fn up(&self, cx: &Context) -> Result<(), RunError> {
        self.run(cx, Direction::Up).await
    }

    /// Tears everything down in reverse dependency order. A failed step does not stop the steps
    /// that do not depend on it: as much as possible is removed, and every failure is reported.
    pub async fn down(&self, cx: &Context) -> Result<(), RunError> {
        self.run(cx, Direction::Down).await
    }

    /// Every step's resources as they are now, read concurrently, in plan order.
    pub async fn inspect(
        &self,
        cx: &Context,
    ) -> Vec<(&'static str, Result<Vec<Resource>, StepError>)> {
        let scopes: Vec<Scope<'_>> = self
            .steps
            .iter()
            .map(|s| Scope { cx, step: s.name() })
            .collect();
        let futures = self
            .steps
            .iter()
            .zip(&scopes)
            .map(|(step, scope)| async move { (step.name(), step.inspect(scope).await) });
        futures::future::join_all(futures).await
    }

    /// What `plan` prints for what [`Plan::inspect`] found: per step in `order`, each resource
    /// `up` would create (`+`), change (`~`, with the change) or keep (`=`).
    pub fn describe(
        &self,
        order: &[&'static str],
        inspected: &[(&'static str, Result<Vec<Resource>, StepError>)],
    ) -> Vec<String> {
        let mut lines = Vec::new();
        for name in order {
            let Some((_, found)) = inspected.iter().find(|(n, _)| n == name) else {
                continue;
            };
            let title = self
                .steps()
                .find(|s| s.name() == *name)
                .map(|s| s.title())
                .unwrap_or_default();
            lines.push(format!("\n{name}: {title}"));
            match found {
                Ok(resources) if resources.is_empty() => {
                    lines.push("  (nothing to create)".to_owned())
                }
                Ok(resources) => {
                    for r in resources.iter().filter(|r| r.managed) {
                        lines.push(match (&r.id, &r.update) {
                            (Some(_), Some(change)) => {
                                format!("  ~ update {:<22} {:<30} {change}", r.kind, r.name)
                            }
                            (Some(id), None) => {
                                format!("  = keep   {:<22} {:<30} {id}", r.kind, r.name)
                            }
                            (None, _) if r.state == "missing" => {
                                format!("  + create {:<22} {}", r.kind, r.name)
                            }
                            // In the way: something of that name the stack does not own.
                            (None, _) => {
                                format!("  ! in the way {:<18} {:<30} {}", r.kind, r.name, r.state)
                            }
                        });
                    }
                }
                Err(err) => lines.push(format!("  ! cannot tell: {err}")),
            }
        }
        lines
    }

    async fn run(&self, cx: &Context, direction: Direction) -> Result<(), RunError> {
        let graph = self.graph().map_err(|e| RunError {
            failed: vec![("plan", StepError::Plan(e))],
            skipped: vec![],
        })?;
        let n = self.steps.len();
        // Up: wait for what a step needs. Down: wait for the steps that need it.
        let waits_for = match direction {
            Direction::Up => graph.up,
            Direction::Down => graph.down,
        };
        let scopes: Vec<Scope<'_>> = self
            .steps
            .iter()
            .map(|s| Scope { cx, step: s.name() })
            .collect();
        let mut state = vec![State::Waiting; n];
        let mut failed = Vec::new();
        let mut skipped = Vec::new();
        let mut running = FuturesUnordered::new();
        loop {
            let stop_starting = direction == Direction::Up && !failed.is_empty();
            for i in 0..n {
                if state[i] != State::Waiting {
                    continue;
                }
                let blocked_by = waits_for[i]
                    .iter()
                    .find(|&&d| matches!(state[d], State::Failed | State::Skipped));
                if let Some(&d) = blocked_by {
                    state[i] = State::Skipped;
                    skipped.push(self.steps[i].name());
                    cx.progress.finished(
                        self.steps[i].name(),
                        &Outcome::Skipped(format!("`{}` did not complete", self.steps[d].name())),
                        Duration::ZERO,
                    );
                    continue;
                }
                if stop_starting {
                    continue;
                }
                if waits_for[i].iter().all(|&d| state[d] == State::Done) {
                    state[i] = State::Running;
                    let step = &self.steps[i];
                    let scope = &scopes[i];
                    match direction {
                        Direction::Up => cx.progress.started(step.name(), step.title()),
                        Direction::Down => cx
                            .progress
                            .started(step.name(), &format!("remove {}", step.title())),
                    }
                    running.push(async move {
                        let start = Instant::now();
                        let result = match direction {
                            Direction::Up => step.ensure(scope).await,
                            Direction::Down => step.destroy(scope).await,
                        };
                        (i, result, start.elapsed())
                    });
                }
            }
            let Some((i, result, elapsed)) = running.next().await else {
                break;
            };
            let name = self.steps[i].name();
            match result {
                Ok(()) => {
                    state[i] = State::Done;
                    cx.progress.finished(name, &Outcome::Done, elapsed);
                }
                Err(err) => {
                    state[i] = State::Failed;
                    tracing::debug!(step = name, error = %err, "step failed");
                    cx.progress
                        .finished(name, &Outcome::Failed(err.to_string()), elapsed);
                    failed.push((name, err));
                }
            }
        }
        for (step, _) in self
            .steps
            .iter()
            .zip(&state)
            .filter(|(_, st)| **st == State::Waiting)
        {
            skipped.push(step.name());
            cx.progress.finished(
                step.name(),
                &Outcome::Skipped("stopped after a failure".into()),
                Duration::ZERO,
            );
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(RunError { failed, skipped })
        }
    }
}

/// Whom each step waits for, by index, in `up` and in `down`.
struct Graph {
    up: Vec<Vec<usize>>,
    down: Vec<Vec<usize>>,
    /// An order in which `up` could run the steps one by one.
    up_order: Vec<usize>,
}

/// Indices ordered so that each comes after those it waits for (the earliest possible first);
/// on a cycle, one of the steps caught in it.
fn sorted(waits_for: &[Vec<usize>]) -> Result<Vec<usize>, usize> {
    let n = waits_for.len();
    let mut done = vec![false; n];
    let mut order = Vec::with_capacity(n);
    while order.len() < n {
        let next = (0..n).find(|&i| !done[i] && waits_for[i].iter().all(|&d| done[d]));
        match next {
            Some(i) => {
                done[i] = true;
                order.push(i);
            }
            None => return Err((0..n).find(|&i| !done[i]).unwrap_or(0)),
        }
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::aws::{Aws, Target};
    use crate::config::StackConfig;
    use crate::progress::{Event, RecordedProgress};

    /// A step that only writes down when it ran.
    struct Fake {
        name: &'static str,
        needs: Vec<StepId>,
        removed_after: Vec<StepId>,
        fail: bool,
        log: Arc<Mutex<Vec<String>>>,
    }

    impl Fake {
        fn removed_after(self, steps: &[&'static str]) -> Self {
            let removed_after = steps.iter().map(|n| StepId::new(n)).collect();
            Self {
                removed_after,
                ..self
            }
        }

        fn go(&self, what: &str) -> StepFuture<'_, ()> {
            let entry = format!("{what} {}", self.name);
            Box::pin(async move {
                self.log.lock().unwrap().push(format!("start {entry}"));
                tokio::time::sleep(Duration::from_millis(20)).await;
                self.log.lock().unwrap().push(format!("end {entry}"));
                if self.fail {
                    Err(StepError::conflict(self.name, "boom"))
                } else {
                    Ok(())
                }
            })
        }
    }

    impl Step for Fake {
        fn id(&self) -> StepId {
            StepId::new(self.name)
        }
        fn title(&self) -> &'static str {
            "fake"
        }
        fn needs(&self) -> &[StepId] {
            &self.needs
        }
        fn removed_after(&self) -> &[StepId] {
            &self.removed_after
        }
        fn ensure<'a>(&'a self, _: &'a Scope<'a>) -> StepFuture<'a, ()> {
            self.go("up")
        }
        fn destroy<'a>(&'a self, _: &'a Scope<'a>) -> StepFuture<'a, ()> {
            self.go("down")
        }
        fn inspect<'a>(&'a self, _: &'a Scope<'a>) -> StepFuture<'a, Vec<Resource>> {
            Box::pin(async { Ok(vec![]) })
        }
    }

    struct Fixture {
        log: Arc<Mutex<Vec<String>>>,
        plan: Plan,
    }

    /// network and iam are independent; cluster needs both; nodes and lb follow.
    fn fixture(failing: &str) -> Fixture {
        let log = Arc::new(Mutex::new(Vec::new()));
        let step = |name, needs: &[&'static str]| Fake {
            name,
            needs: needs.iter().map(|n| StepId::new(n)).collect(),
            removed_after: Vec::new(),
            fail: name == failing,
            log: log.clone(),
        };
        let plan = Plan::default()
            .with(step("network", &[]))
            .with(step("iam", &[]))
            .with(step("cluster", &["network", "iam"]))
            .with(step("lb", &["network"]))
            .with(step("nodes", &["cluster"]));
        Fixture { log, plan }
    }

    async fn context() -> (Context, Arc<RecordedProgress>) {
        let progress = Arc::new(RecordedProgress::default());
        let aws = Aws::connect(
            &Target::Local {
                endpoint: "http://127.0.0.1:9".into(),
            },
            "ap-northeast-2",
            crate::aws::CallLog::default(),
        )
        .await;
        let config = StackConfig::default_for("unit").unwrap();
        (Context::new(config, aws, progress.clone()), progress)
    }

    fn position(log: &[String], entry: &str) -> usize {
        log.iter()
            .position(|l| l == entry)
            .unwrap_or_else(|| panic!("{entry} not in {log:?}"))
    }

    #[test]
    fn cycles_unknown_and_duplicate_steps_are_rejected() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let fake = |name, needs: &[&'static str]| Fake {
            name,
            needs: needs.iter().map(|n| StepId::new(n)).collect(),
            removed_after: Vec::new(),
            fail: false,
            log: log.clone(),
        };
        let cyclic = Plan::default()
            .with(fake("a", &["b"]))
            .with(fake("b", &["a"]));
        assert!(matches!(cyclic.order(), Err(PlanError::Cycle(_))));
        let unknown = Plan::default().with(fake("a", &["nope"]));
        assert!(matches!(
            unknown.order(),
            Err(PlanError::UnknownStep { .. })
        ));
        let twice = Plan::default().with(fake("a", &[])).with(fake("a", &[]));
        assert!(matches!(twice.order(), Err(PlanError::Duplicate("a"))));
        // `a` uses `b`, so `b` goes after it; `a` cannot also wait for `b`'s removal.
        let crossed = Plan::default()
            .with(fake("b", &[]))
            .with(fake("a", &["b"]).removed_after(&["b"]));
        assert!(matches!(crossed.order(), Err(PlanError::RemovalCycle(_))));
        // The same order as `needs` gives, or a step not in the plan: nothing to object to.
        let agreeing = Plan::default()
            .with(fake("b", &[]).removed_after(&["a", "elsewhere"]))
            .with(fake("a", &["b"]));
        assert_eq!(agreeing.order().unwrap(), ["b", "a"]);
    }

    #[tokio::test]
    async fn a_step_removed_after_another_waits_for_it_only_in_down() {
        let mut f = fixture("");
        let registry = Fake {
            name: "registry",
            needs: Vec::new(),
            removed_after: Vec::new(),
            fail: false,
            log: f.log.clone(),
        };
        f.plan = f.plan.with(registry.removed_after(&["cluster"]));
        assert_eq!(
            f.plan.order().unwrap(),
            ["network", "iam", "cluster", "lb", "nodes", "registry"]
        );
        let (cx, _) = context().await;
        f.plan.up(&cx).await.unwrap();
        let up = std::mem::take(&mut *f.log.lock().unwrap());
        // Up: it needs nothing, so it runs with the first steps.
        assert!(position(&up, "start up registry") < position(&up, "end up network"));

        f.plan.down(&cx).await.unwrap();
        let down = f.log.lock().unwrap().clone();
        assert!(position(&down, "end down cluster") < position(&down, "start down registry"));
        // Nothing waits for it: the network goes without it.
        assert!(position(&down, "start down network") < position(&down, "end down registry"));
    }

    #[tokio::test]
    async fn down_skips_a_step_removed_after_one_that_failed() {
        let mut f = fixture("cluster");
        let registry = Fake {
            name: "registry",
            needs: Vec::new(),
            removed_after: Vec::new(),
            fail: false,
            log: f.log.clone(),
        };
        f.plan = f.plan.with(registry.removed_after(&["cluster"]));
        let (cx, _) = context().await;
        let err = f.plan.down(&cx).await.unwrap_err();
        assert!(err.skipped.contains(&"registry"), "{err}");
        let log = f.log.lock().unwrap().clone();
        assert!(!log.iter().any(|l| l.contains("registry")), "{log:?}");
    }

    #[tokio::test]
    async fn up_runs_independent_steps_together_and_each_after_its_needs() {
        let f = fixture("");
        let (cx, _) = context().await;
        f.plan.up(&cx).await.unwrap();
        let log = f.log.lock().unwrap().clone();
        // network and iam overlap: both start before either ends.
        assert!(position(&log, "start up iam") < position(&log, "end up network"));
        assert!(position(&log, "start up network") < position(&log, "end up iam"));
        assert!(position(&log, "end up iam") < position(&log, "start up cluster"));
        assert!(position(&log, "end up network") < position(&log, "start up lb"));
        // The load balancer does not wait for the cluster.
        assert!(position(&log, "start up lb") < position(&log, "end up cluster"));
        assert!(position(&log, "end up cluster") < position(&log, "start up nodes"));
    }

    #[tokio::test]
    async fn down_runs_in_reverse_dependency_order() {
        let f = fixture("");
        let (cx, _) = context().await;
        f.plan.down(&cx).await.unwrap();
        let log = f.log.lock().unwrap().clone();
        assert!(position(&log, "end down nodes") < position(&log, "start down cluster"));
        assert!(position(&log, "end down cluster") < position(&log, "start down iam"));
        assert!(position(&log, "end down cluster") < position(&log, "start down network"));
        assert!(position(&log, "end down lb") < position(&log, "start down network"));
    }

    #[tokio::test]
    async fn a_failure_in_up_skips_what_depends_on_it() {
        let f = fixture("iam");
        let (cx, progress) = context().await;
        let err = f.plan.up(&cx).await.unwrap_err();
        assert_eq!(err.failed.len(), 1);
        assert_eq!(err.failed[0].0, "iam");
        assert!(err.skipped.contains(&"cluster") && err.skipped.contains(&"nodes"));
        assert!(
            err.to_string().contains("step `iam` failed: iam: boom"),
            "{err}"
        );
        let log = f.log.lock().unwrap().clone();
        assert!(!log.iter().any(|l| l.contains("cluster")));
        assert!(
            progress
                .events()
                .iter()
                .any(|e| matches!(e, Event::Finished("cluster", Outcome::Skipped(_))))
        );
    }

    #[tokio::test]
    async fn a_failure_in_down_does_not_stop_unrelated_steps() {
        let f = fixture("lb");
        let (cx, _) = context().await;
        let err = f.plan.down(&cx).await.unwrap_err();
        let log = f.log.lock().unwrap().clone();
        // iam does not depend on lb, so it is still removed; network waits for lb, so it is not.
        assert!(log.contains(&"end down iam".to_owned()));
        assert!(!log.iter().any(|l| l.contains("down network")));
        assert_eq!(err.skipped, ["network"]);
    }
}
