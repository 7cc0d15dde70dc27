//! The resource quota controller: keeps `status.hard` and `status.used` of every ResourceQuota current.

use serde_json::Value;

use super::log_write;
use crate::meta;
use crate::quota::quota_status;
use crate::registry::{Registry, WriteOptions};
use crate::resources::known;

pub(super) fn reconcile(registry: &Registry, scope: &super::Scope) {
    for quota in scope.select(registry, known::resourcequotas()) {
        if meta::is_deleting(&quota) {
            continue;
        }
        let status = quota_status(registry, &quota);
        if quota.get("status") == Some(&status) {
            continue;
        }
        let mut next: Value = quota.clone();
        next["status"] = status;
        log_write(
            "resourcequota status",
            registry.update(
                known::resourcequotas(),
                meta::namespace(&quota),
                meta::name(&quota),
                next,
                Some("status"),
                &WriteOptions::controller("resourcequota-controller"),
            ),
        );
    }
}
