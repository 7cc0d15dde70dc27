//! The crate's one error type. Each variant names the resource it is about and keeps the typed
//! cause (AWS with its error code, Kubernetes, the platform crate) as its source; only the CLI
//! turns it into text.

use std::time::Duration;

use crate::aws::{AwsError, CredentialsError};
use crate::retry::WaitError;

/// Why a step (or the plan around it) failed.
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
    /// The resource is in a state the stack does not fix by itself (a changed CIDR, a FAILED
    /// cluster); the reason says what to do.
    #[error("{resource}: {reason}")]
    Conflict { resource: String, reason: String },
    #[error(
        "{resource}: {count} resources carry this stack's tags; expected one. Remove the extra by hand or run `provisioner down`"
    )]
    Ambiguous { resource: String, count: usize },
    #[error(
        "{resource} exists but is not tagged as part of this stack; rename the stack or remove it by hand"
    )]
    NotOwned { resource: String },
    #[error("needs the result of step `{0}`, which has not run")]
    MissingInput(&'static str),
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error("{resource}: {source}")]
    Kube {
        resource: String,
        #[source]
        source: kube::Error,
    },
    #[error("{resource}: {source}")]
    Platform {
        resource: String,
        /// Boxed: the platform's error is large, and most results never carry it.
        #[source]
        source: Box<platform::Error>,
    },
    #[error(transparent)]
    Plan(#[from] PlanError),
}

impl StepError {
    /// AWS's error code, when AWS said no.
    pub fn aws_code(&self) -> Option<&str> {
        match self {
            StepError::Aws { source, .. } => Some(source.code()),
            _ => None,
        }
    }

    pub fn conflict(resource: impl Into<String>, reason: impl Into<String>) -> Self {
        StepError::Conflict {
            resource: resource.into(),
            reason: reason.into(),
        }
    }

    pub fn kube(resource: impl Into<String>, source: kube::Error) -> Self {
        StepError::Kube {
            resource: resource.into(),
            source,
        }
    }

    pub fn platform(resource: impl Into<String>, source: platform::Error) -> Self {
        StepError::Platform {
            resource: resource.into(),
            source: Box::new(source),
        }
    }
}

/// A plan that cannot run as written.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("step `{step}` needs `{missing}`, which is not in the plan")]
    UnknownStep {
        step: &'static str,
        missing: &'static str,
    },
    #[error("the steps' dependencies form a cycle through `{0}`")]
    Cycle(&'static str),
    #[error(
        "the steps' removal order (what they need and what they are removed after) forms a cycle through `{0}`"
    )]
    RemovalCycle(&'static str),
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

/// "1m05s" for minutes, "4.2s" below.
pub fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// Attaches the resource an AWS error or a wait is about.
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
