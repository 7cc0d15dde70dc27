//! The one "delete until gone" routine every step's teardown uses: retry while AWS says "not yet"
//! (the codes in [`crate::retry::not_yet`]), treat "not found" as done, optionally wait until the
//! resource has disappeared, and record what happened (Deleted or Absent).

use std::future::Future;

use crate::aws::AwsError;
use crate::config::Pace;
use crate::plan::{OnResource, Scope, StepError};
use crate::progress::Action;
use crate::retry::{Poll, WaitError, retry_not_yet, wait_for};

/// One resource to remove.
pub(crate) struct Removal<'s> {
    scope: &'s Scope<'s>,
    kind: &'static str,
    id: String,
    pace: Pace,
}

impl<'s> Removal<'s> {
    pub(crate) fn new(scope: &'s Scope<'s>, kind: &'static str, id: impl Into<String>) -> Self {
        Self {
            pace: scope.config.timeouts.resources(),
            scope,
            kind,
            id: id.into(),
        }
    }

    /// Another deadline than the resources' one (EKS takes longer).
    pub(crate) fn pace(self, pace: Pace) -> Self {
        Self { pace, ..self }
    }

    fn resource(&self) -> String {
        format!("{} {}", self.kind, self.id)
    }

    /// Deletes; `Ok(false)` when it was already gone.
    async fn call<F, Fut>(&self, delete: F) -> Result<bool, StepError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), AwsError>>,
    {
        let s = self.scope;
        let what = self.resource();
        match retry_not_yet(
            self.pace,
            |why| s.waiting(&format!("{what}: {why}")),
            delete,
        )
        .await
        {
            Ok(()) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e).on(what),
        }
    }

    fn record(&self, deleted: bool) {
        let action = if deleted {
            Action::Deleted
        } else {
            Action::Absent
        };
        self.scope.record(action, self.kind, &self.id);
    }

    /// Removes a link (an association, an attachment) that is no resource of its own: the same
    /// retries, nothing recorded.
    pub(crate) async fn release<F, Fut>(self, delete: F) -> Result<(), StepError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), AwsError>>,
    {
        self.call(delete).await.map(drop)
    }

    /// Deletes and records the outcome.
    pub(crate) async fn delete<F, Fut>(self, delete: F) -> Result<(), StepError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), AwsError>>,
    {
        let deleted = self.call(delete).await?;
        self.record(deleted);
        Ok(())
    }

    /// Deletes, then polls `look` (which answers the state while the resource is still there)
    /// until it is gone, and records the outcome.
    pub(crate) async fn delete_and_wait<F, Fut, L, LFut>(
        self,
        delete: F,
        mut look: L,
    ) -> Result<(), StepError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), AwsError>>,
        L: FnMut() -> LFut,
        LFut: Future<Output = Result<Option<String>, StepError>>,
    {
        let deleted = self.call(delete).await?;
        let s = self.scope;
        wait_for(
            self.pace,
            |state| s.waiting(state),
            || {
                let still = look();
                async move {
                    Ok(match still.await? {
                        None => Poll::Ready(()),
                        Some(state) => Poll::Pending(state),
                    })
                }
            },
        )
        .await
        .map_err(|e| match e {
            WaitError::Failed(inner) => inner,
            WaitError::Timeout { after, last } => StepError::Timeout {
                resource: self.resource(),
                what: "it to be deleted".into(),
                after,
                last,
            },
        })?;
        self.record(deleted);
        Ok(())
    }
}
