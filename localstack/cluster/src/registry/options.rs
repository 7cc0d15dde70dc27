//! What callers of the registry's verbs pass and get back: options per verb, and a delete's outcome.

use serde_json::Value;

use crate::selectors::{FieldSelector, LabelSelector};

/// Who writes and how: the field manager, and whether to persist at all.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    pub manager: String,
    pub dry_run: bool,
}

impl WriteOptions {
    pub fn controller(manager: &str) -> Self {
        Self {
            manager: manager.to_string(),
            dry_run: false,
        }
    }
}

/// How a delete treats dependents (`propagationPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Orphan,
    Background,
    Foreground,
}

#[derive(Debug, Clone)]
pub struct DeleteOptions {
    pub propagation: Propagation,
    pub dry_run: bool,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<u64>,
    /// `gracePeriodSeconds`; for pods, None means the pod's `terminationGracePeriodSeconds`.
    pub grace_period_seconds: Option<i64>,
}

impl Default for DeleteOptions {
    fn default() -> Self {
        Self {
            propagation: Propagation::Background,
            dry_run: false,
            precondition_uid: None,
            precondition_rv: None,
            grace_period_seconds: None,
        }
    }
}

/// What a delete did: removed the object now, or marked it and left it for finalizers/controllers.
#[derive(Debug)]
pub enum Deletion {
    Removed(Value),
    Pending(Value),
}

/// List query: selectors and paging.
#[derive(Debug, Default)]
pub struct ListOptions {
    pub label_selector: Option<LabelSelector>,
    pub field_selector: Option<FieldSelector>,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
}

/// The patch formats of `PATCH`, by content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Merge,
    Json,
    Strategic,
    Apply { force: bool },
}
