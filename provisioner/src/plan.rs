//! Plans as data: steps with dependencies, walked forward by `up` (each step after the steps it
//! needs, independent ones concurrently), backward by `down`, and read-only by `plan`/`status`.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;

use crate::aws::{Aws, AwsError};
use crate::config::StackConfig;
use crate::progress::{Action, Change, Outcome, Progress};
use crate::retry::WaitError;
use crate::stack::Stack;
use crate::steps;

pub type StepFuture<'a, T> = BoxFuture<'a, Result<T, StepError>>;

/// One kind of resource (or a small family of them) that the stack owns.
pub trait Step: Send + Sync {
    /// Short, stable name: shown in progress and used in `needs`.
    fn name(&self) -> &'static str;
    /// What the step builds, in the operator's words.
    fn title(&self) -> &'static str;
    /// The steps whose resources this one uses; they are ensured before it and destroyed after it.
    fn needs(&self) -> &'static [&'static str];
    /// Finds what exists, creates only what is missing, and waits until it is usable.
    fn ensure<'a>(&'a self, scope: &'a Scope<'a>) -> StepFuture<'a, ()>;
    /// Deletes what the stack owns; what is already gone counts as done.
    fn destroy<'a>(&'a self, scope: &'a Scope<'a>) -> StepFuture<'a, ()>;
    /// Reads what exists, changing nothing (for `plan`, `status` and the check after `down`).
    fn inspect<'a>(&'a self, scope: &'a Scope<'a>) -> StepFuture<'a, Vec<Resource>>;
}

/// One resource as found in AWS, or as it would be created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub kind: &'static str,
    pub name: String,
    /// `None`: it does not exist (yet).
    pub id: Option<String>,
    pub state: String,
    /// Whether `up` creates it; `false` for what is only observed (instances the Auto Scaling
    /// group launched, network interfaces, registered targets).
    pub managed: bool,
}

impl Resource {
    pub fn found(
        kind: &'static str,
        name: impl Into<String>,
        id: impl Into<String>,
        state: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            name: name.into(),
            id: Some(id.into()),
            state: state.into(),
            managed: true,
        }
    }

    /// Something that exists because of the stack but that `up` does not create itself.
    pub fn observed(
        kind: &'static str,
        name: impl Into<String>,
        id: impl Into<String>,
        state: impl Into<String>,
    ) -> Self {
        Self {
            managed: false,
            ..Self::found(kind, name, id, state)
        }
    }

    pub fn missing(kind: &'static str, name: impl Into<String>) -> Self {
        Self {
            kind,
            name: name.into(),
            id: None,
            state: "missing".into(),
            managed: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("{resource}: {source}")]
    Aws {
        resource: String,
        #[source]
        source: AwsError,
    },
    #[error("{resource}: timed out after {} waiting for {what}; last seen: {last}", humanize(*after))]
    Timeout {
        resource: String,
        what: String,
        after: Duration,
        last: String,
    },
    #[error("{resource}: {reason}")]
    Failed { resource: String, reason: String },
    #[error(
        "{resource} exists but is not tagged as part of this stack; rename the stack or remove it by hand"
    )]
    NotOwned { resource: String },
    #[error("needs the result of step `{0}`, which has not run")]
    MissingInput(&'static str),
}

impl StepError {
    /// AWS's error code, when AWS said no.
    pub fn aws_code(&self) -> Option<&str> {
        match self {
            StepError::Aws { source, .. } => Some(source.code()),
            _ => None,
        }
    }
}

pub fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// Attaches the resource an AWS error is about.
pub trait OnResource<T> {
    fn on(self, resource: impl std::fmt::Display) -> Result<T, StepError>;
}

impl<T> OnResource<T> for Result<T, AwsError> {
    fn on(self, resource: impl std::fmt::Display) -> Result<T, StepError> {
        self.map_err(|source| StepError::Aws {
            resource: resource.to_string(),
            source,
        })
    }
}

impl<T> OnResource<T> for Result<T, WaitError<StepError>> {
    fn on(self, resource: impl std::fmt::Display) -> Result<T, StepError> {
        self.map_err(|e| match e {
            WaitError::Failed(inner) => inner,
            WaitError::Timeout { after, last } => StepError::Timeout {
                resource: resource.to_string(),
                what: "it to be ready".into(),
                after,
                last,
            },
        })
    }
}

/// What the steps produce for the steps after them.
#[derive(Default)]
pub struct Outputs {
    pub network: OnceLock<steps::network::Network>,
    pub iam: OnceLock<steps::iam::Roles>,
    pub security_groups: OnceLock<steps::security_groups::SecurityGroups>,
    pub cluster: OnceLock<steps::cluster::Cluster>,
    pub nodes: OnceLock<steps::nodes::Nodes>,
    pub load_balancer: OnceLock<steps::load_balancer::LoadBalancer>,
    pub site: OnceLock<steps::platform::Site>,
}

/// Reads a dependency's output.
pub fn input<'a, T>(slot: &'a OnceLock<T>, step: &'static str) -> Result<&'a T, StepError> {
    slot.get().ok_or(StepError::MissingInput(step))
}

/// Everything a run shares.
pub struct Context {
    pub config: StackConfig,
    pub stack: Stack,
    pub aws: Aws,
    pub progress: Arc<dyn Progress>,
    pub outputs: Outputs,
    /// Where the Kubernetes steps go instead of the EKS endpoint: the local cluster simulator.
    pub kube_override: Option<platform::cluster::Access>,
    /// The deploy site's image.
    pub site_image: String,
    /// The site's host name instead of the NLB's DNS name (locally: a name that resolves to
    /// 127.0.0.1, such as `kdeploy.localhost`), and the URL it is reached at.
    pub public_host_override: Option<(String, String)>,
    changes: Mutex<Vec<Change>>,
}

impl Context {
    pub fn new(config: StackConfig, aws: Aws, progress: Arc<dyn Progress>) -> Self {
        Self {
            stack: Stack::new(&config),
            config,
            aws,
            progress,
            outputs: Outputs::default(),
            kube_override: None,
            site_image: platform::manifests::default_site_image(),
            public_host_override: None,
            changes: Mutex::new(Vec::new()),
        }
    }

    pub fn changes(&self) -> Vec<Change> {
        self.changes.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

/// A step's view of the run: the shared context plus its own progress line.
pub struct Scope<'a> {
    pub cx: &'a Context,
    pub step: &'static str,
}

impl std::ops::Deref for Scope<'_> {
    type Target = Context;
    fn deref(&self) -> &Context {
        self.cx
    }
}

impl Scope<'_> {
    pub fn waiting(&self, status: &str) {
        self.cx.progress.waiting(self.step, status);
    }

    pub fn record(&self, action: Action, kind: &'static str, id: impl Into<String>) {
        let change = Change {
            step: self.step,
            action,
            kind,
            id: id.into(),
        };
        self.cx.progress.changed(&change);
        if let Ok(mut changes) = self.cx.changes.lock() {
            changes.push(change);
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("step `{step}` needs `{missing}`, which is not in the plan")]
    UnknownStep {
        step: &'static str,
        missing: &'static str,
    },
    #[error("the steps' dependencies form a cycle through `{0}`")]
    Cycle(&'static str),
    #[error("two steps are named `{0}`")]
    Duplicate(&'static str),
}

/// A step that failed, and the ones that did not run because of it.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.describe())]
pub struct RunError {
    pub failed: Vec<(&'static str, StepError)>,
    pub skipped: Vec<&'static str>,
}

impl RunError {
    fn describe(&self) -> String {
        let mut lines: Vec<String> = self
            .failed
            .iter()
            .map(|(step, err)| format!("step `{step}` failed: {err}"))
            .collect();
        if !self.skipped.is_empty() {
            lines.push(format!("not run: {}", self.skipped.join(", ")));
        }
        lines.join("\n")
    }
}

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
    /// The AWS side of the platform (paper, section III).
    pub fn infrastructure() -> Self {
        Self::aws(&["cluster"])
    }

    fn aws(leftovers_after: &'static [&'static str]) -> Self {
        Self::default()
            .with(steps::network::NetworkStep)
            .with(steps::iam::IamStep)
            .with(steps::security_groups::SecurityGroupsStep)
            .with(steps::cluster::ClusterStep)
            .with(steps::leftovers::LeftoversStep {
                after: leftovers_after,
            })
            .with(steps::nodes::NodesStep)
            .with(steps::load_balancer::LoadBalancerStep)
            .with(steps::targets::TargetsStep)
    }

    /// Everything: the AWS side, then the nodes' access, the ingress controller and the site.
    pub fn full() -> Self {
        // Down removes the platform's LoadBalancer Services before sweeping what they left in AWS.
        Self::aws(&["cluster", "platform"])
            .with(steps::platform::NodeAccessStep)
            .with(steps::platform::PlatformStep)
    }

    /// The steps `name` needs, transitively, and `name` itself, in plan order.
    pub fn through(mut self, name: &str) -> Option<Self> {
        let index = self.index(name)?;
        let mut keep = vec![false; self.steps.len()];
        let mut stack = vec![index];
        while let Some(i) = stack.pop() {
            if std::mem::replace(&mut keep[i], true) {
                continue;
            }
            for need in self.steps[i].needs() {
                stack.extend(self.index(need));
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

    fn index(&self, name: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.name() == name)
    }

    fn dependencies(&self) -> Result<Vec<Vec<usize>>, PlanError> {
        let mut deps = Vec::with_capacity(self.steps.len());
        for (i, step) in self.steps.iter().enumerate() {
            if self.steps[..i].iter().any(|s| s.name() == step.name()) {
                return Err(PlanError::Duplicate(step.name()));
            }
            let mut mine = Vec::new();
            for need in step.needs() {
                mine.push(self.index(need).ok_or(PlanError::UnknownStep {
                    step: step.name(),
                    missing: need,
                })?);
            }
            deps.push(mine);
        }
        Ok(deps)
    }

    /// Step names in an order `up` could run them one by one; checks the plan for cycles.
    pub fn order(&self) -> Result<Vec<&'static str>, PlanError> {
        let deps = self.dependencies()?;
        let mut done = vec![false; self.steps.len()];
        let mut order = Vec::new();
        while order.len() < self.steps.len() {
            let next =
                (0..self.steps.len()).find(|&i| !done[i] && deps[i].iter().all(|&d| done[d]));
            match next {
                Some(i) => {
                    done[i] = true;
                    order.push(self.steps[i].name());
                }
                None => {
                    let stuck = (0..self.steps.len()).find(|&i| !done[i]).unwrap_or(0);
                    return Err(PlanError::Cycle(self.steps[stuck].name()));
                }
            }
        }
        Ok(order)
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

    async fn run(&self, cx: &Context, direction: Direction) -> Result<(), RunError> {
        let needs = self.dependencies().map_err(|e| RunError {
            failed: vec![(
                "plan",
                StepError::Failed {
                    resource: "plan".into(),
                    reason: e.to_string(),
                },
            )],
            skipped: vec![],
        })?;
        let n = self.steps.len();
        // Up: wait for what a step needs. Down: wait for the steps that need it.
        let waits_for: Vec<Vec<usize>> = match direction {
            Direction::Up => needs,
            Direction::Down => (0..n)
                .map(|i| (0..n).filter(|&j| needs[j].contains(&i)).collect())
                .collect(),
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

/// Records `Kept` for an existing resource or `Created` for a new one; used by every step.
pub fn recorded(scope: &Scope<'_>, created: bool, kind: &'static str, id: &str) {
    scope.record(
        if created {
            Action::Created
        } else {
            Action::Kept
        },
        kind,
        id,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::Target;
    use crate::progress::{Event, RecordedProgress};

    /// A step that only writes down when it ran.
    struct Fake {
        name: &'static str,
        needs: &'static [&'static str],
        fail: bool,
        log: Arc<Mutex<Vec<String>>>,
    }

    impl Fake {
        fn go(&self, what: &str) -> StepFuture<'_, ()> {
            let entry = format!("{what} {}", self.name);
            Box::pin(async move {
                self.log.lock().unwrap().push(format!("start {entry}"));
                tokio::time::sleep(Duration::from_millis(20)).await;
                self.log.lock().unwrap().push(format!("end {entry}"));
                if self.fail {
                    Err(StepError::Failed {
                        resource: self.name.into(),
                        reason: "boom".into(),
                    })
                } else {
                    Ok(())
                }
            })
        }
    }

    impl Step for Fake {
        fn name(&self) -> &'static str {
            self.name
        }
        fn title(&self) -> &'static str {
            "fake"
        }
        fn needs(&self) -> &'static [&'static str] {
            self.needs
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
        let step = |name, needs| Fake {
            name,
            needs,
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
    fn order_puts_every_step_after_what_it_needs() {
        let order = Plan::infrastructure().order().unwrap();
        let at = |n: &str| order.iter().position(|o| *o == n).unwrap();
        for step in Plan::infrastructure().steps() {
            for need in step.needs() {
                assert!(at(need) < at(step.name()), "{need} before {}", step.name());
            }
        }
        assert_eq!(order.first(), Some(&"network"));
        assert_eq!(order.last(), Some(&"targets"));
    }

    #[test]
    fn cycles_unknown_and_duplicate_steps_are_rejected() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let fake = |name, needs| Fake {
            name,
            needs,
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
