//! What the engine knows of a step: its identity, the trait, the resources it reports, and the
//! context a run shares, with the typed store through which steps hand results to each other.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;

use crate::aws::Aws;
use crate::config::StackConfig;
use crate::error::StepError;
use crate::progress::{Action, Change, Progress};
use crate::stack::Stack;

pub type StepFuture<'a, T> = BoxFuture<'a, Result<T, StepError>>;

/// A step's identity: a short, stable name, shown in progress and named by the steps after it.
/// Each step module defines its own as a constant, so a dependency is named by value, not text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StepId(&'static str);

impl StepId {
    pub const fn new(name: &'static str) -> Self {
        Self(name)
    }

    pub const fn name(self) -> &'static str {
        self.0
    }
}

impl std::fmt::Display for StepId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// One kind of resource (or a small family of them) that the stack owns.
pub trait Step: Send + Sync {
    fn id(&self) -> StepId;
    /// What the step builds, in the operator's words.
    fn title(&self) -> &'static str;
    /// The steps whose resources this one uses; they are ensured before it and destroyed after it.
    fn needs(&self) -> &[StepId];
    /// Steps whose removal must have finished before this one's starts, though this one does not
    /// use them (`up` ignores it): a registry the cluster's nodes pull from goes after the cluster.
    /// Steps not in the plan are passed over.
    fn removed_after(&self) -> &[StepId] {
        &[]
    }
    /// Finds what exists, creates only what is missing, and waits until it is usable.
    fn ensure<'a>(&'a self, scope: &'a Scope<'a>) -> StepFuture<'a, ()>;
    /// Deletes what the stack owns; what is already gone counts as done.
    fn destroy<'a>(&'a self, scope: &'a Scope<'a>) -> StepFuture<'a, ()>;
    /// Reads what exists, changing nothing (for `plan`, `status` and the check after `down`).
    fn inspect<'a>(&'a self, scope: &'a Scope<'a>) -> StepFuture<'a, Vec<Resource>>;

    fn name(&self) -> &'static str {
        self.id().name()
    }
}

/// A result one step hands to the steps after it, stored by its type.
pub trait Output: Any + Send + Sync {
    /// The step that produces it, named when it is missing.
    const STEP: StepId;
}

/// The steps' results, one per type: `outputs.get::<Network>()`.
#[derive(Default)]
pub struct Outputs {
    values: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
}

impl Outputs {
    pub fn get<T: Output>(&self) -> Option<Arc<T>> {
        let values = self.values.lock().ok()?;
        let value = values.get(&TypeId::of::<T>())?.clone();
        value.downcast::<T>().ok()
    }

    pub fn put<T: Output>(&self, value: T) {
        if let Ok(mut values) = self.values.lock() {
            values.insert(TypeId::of::<T>(), Arc::new(value));
        }
    }

    /// A dependency's result, or the error naming the step that should have made it.
    pub fn input<T: Output>(&self) -> Result<Arc<T>, StepError> {
        self.get::<T>()
            .ok_or(StepError::MissingInput(T::STEP.name()))
    }
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
    /// What `up` would change on it, in the operator's words (`plan` shows it); `None` when it
    /// matches the configuration.
    pub update: Option<String>,
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
            update: None,
        }
    }

    /// Marks an existing resource that `up` would change, saying how.
    pub fn updating(self, change: impl Into<String>) -> Self {
        Self {
            update: Some(change.into()),
            ..self
        }
    }

    /// Marks something that exists because of the stack but that `up` does not create itself.
    pub fn observed(self) -> Self {
        Self {
            managed: false,
            ..self
        }
    }

    pub fn missing(kind: &'static str, name: impl Into<String>) -> Self {
        Self {
            id: None,
            ..Self::found(kind, name, "", "missing")
        }
    }
}

/// Everything a run shares.
pub struct Context {
    pub config: StackConfig,
    pub stack: Stack,
    pub aws: Aws,
    pub progress: Arc<dyn Progress>,
    pub outputs: Outputs,
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

    /// Records `Created` for a new resource or `Kept` for an existing one.
    pub fn kept_or_created(&self, created: bool, kind: &'static str, id: &str) {
        let action = if created {
            Action::Created
        } else {
            Action::Kept
        };
        self.record(action, kind, id);
    }

    /// A dependency's result.
    pub fn input<T: Output>(&self) -> Result<Arc<T>, StepError> {
        self.cx.outputs.input::<T>()
    }
}
