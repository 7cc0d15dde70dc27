//! The call log every AWS request passes through: counts per operation for the CLI's summary and
//! the benchmarks, and the test hook that "kills" the process at its N-th mutating call.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeDeserializationInterceptorContextRef, BeforeSerializationInterceptorContextRef,
    BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// Every AWS request the process makes, counted per operation; also the test hook that "kills"
/// the process at its N-th mutating call.
#[derive(Clone, Debug, Default)]
pub struct CallLog {
    inner: Arc<CallLogInner>,
}

#[derive(Debug, Default)]
struct CallLogInner {
    calls: Mutex<BTreeMap<String, usize>>,
    attempts: AtomicUsize,
    mutating: AtomicUsize,
    kill_after: Mutex<Option<usize>>,
    killed: AtomicBool,
}

/// A summary of the calls made so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallCounts {
    /// `service:Operation` → number of calls.
    pub by_operation: BTreeMap<String, usize>,
    pub total: usize,
    pub mutating: usize,
    /// Attempts, including the SDK's own retries of throttling and 5xx.
    pub attempts: usize,
}

impl CallCounts {
    pub fn mutating_operations(&self) -> Vec<&str> {
        self.by_operation
            .keys()
            .filter(|op| is_mutating(op.split(':').nth(1).unwrap_or(op)))
            .map(String::as_str)
            .collect()
    }
}

/// Read-only AWS operations by naming convention (`Describe*`, `List*`, `Get*`, `BatchGet*`),
/// plus ECR's `BatchCheckLayerAvailability`, which only reports which blobs exist; everything
/// else, the image push's `InitiateLayerUpload`, `UploadLayerPart`, `CompleteLayerUpload` and
/// `PutImage` included, changes state.
pub fn is_mutating(operation: &str) -> bool {
    const READS: [&str; 4] = ["Describe", "List", "Get", "BatchGet"];
    operation != "BatchCheckLayerAvailability"
        && !READS.iter().any(|prefix| operation.starts_with(prefix))
}

impl CallLog {
    pub fn counts(&self) -> CallCounts {
        let by_operation = self
            .inner
            .calls
            .lock()
            .map(|calls| calls.clone())
            .unwrap_or_default();
        CallCounts {
            total: by_operation.values().sum(),
            by_operation,
            mutating: self.inner.mutating.load(Ordering::SeqCst),
            attempts: self.inner.attempts.load(Ordering::SeqCst),
        }
    }

    /// After the `n`-th mutating request has reached AWS, fail it and every later call, as if the
    /// process had died right then: AWS did the work, the caller never heard of it.
    pub fn kill_after_mutating(&self, n: usize) {
        if let Ok(mut kill) = self.inner.kill_after.lock() {
            *kill = Some(n);
        }
    }

    pub fn killed(&self) -> bool {
        self.inner.killed.load(Ordering::SeqCst)
    }

    fn operation(cfg: &ConfigBag) -> (String, bool) {
        match cfg.load::<Metadata>() {
            Some(md) => (
                format!("{}:{}", md.service(), md.name()),
                is_mutating(md.name()),
            ),
            None => ("unknown:Unknown".to_owned(), true),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("killed by the test hook after mutating call {0}")]
struct Killed(usize);

impl Intercept for CallLog {
    fn name(&self) -> &'static str {
        "CallLog"
    }

    // Not `read_before_execution`: client interceptors run that before the operation's metadata
    // is in the config bag.
    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if self.killed() {
            return Err(Box::new(Killed(self.inner.mutating.load(Ordering::SeqCst))));
        }
        let (operation, mutating) = Self::operation(cfg);
        if let Ok(mut calls) = self.inner.calls.lock() {
            *calls.entry(operation).or_default() += 1;
        }
        if mutating {
            self.inner.mutating.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.inner.attempts.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn read_after_transmit(
        &self,
        _context: &BeforeDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let (_, mutating) = Self::operation(cfg);
        let kill_after = self.inner.kill_after.lock().ok().and_then(|k| *k);
        if let Some(n) = kill_after {
            let done = self.inner.mutating.load(Ordering::SeqCst);
            if mutating && done >= n {
                self.inner.killed.store(true, Ordering::SeqCst);
                return Err(Box::new(Killed(done)));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_operations_are_recognised_by_name() {
        assert!(!is_mutating("DescribeVpcs"));
        assert!(!is_mutating("ListAttachedRolePolicies"));
        assert!(!is_mutating("GetParameter"));
        assert!(is_mutating("CreateVpc"));
        assert!(is_mutating("AuthorizeSecurityGroupIngress"));
        assert!(is_mutating("RegisterTargets"));
    }

    /// ECR API reference, Actions: what an image push reads and what it changes.
    #[test]
    fn ecr_push_checks_are_reads_and_uploads_are_changes() {
        for read in [
            "BatchCheckLayerAvailability",
            "BatchGetImage",
            "DescribeRepositories",
            "DescribeImages",
            "ListTagsForResource",
        ] {
            assert!(!is_mutating(read), "{read}");
        }
        for change in [
            "CreateRepository",
            "TagResource",
            "InitiateLayerUpload",
            "UploadLayerPart",
            "CompleteLayerUpload",
            "PutImage",
            "DeleteRepository",
        ] {
            assert!(is_mutating(change), "{change}");
        }
    }
}
