//! Brings up and tears down the AWS side of the platform (paper, section III): network, IAM,
//! security groups, EKS, worker nodes and the Network Load Balancer, as a [`plan::Plan`] of
//! idempotent steps owned by one stack tag.

pub mod access;
pub mod aws;
pub mod config;
pub mod error;
pub mod image;
pub mod ingress;
pub mod plan;
pub mod progress;
pub mod retry;
pub mod stack;
pub mod steps;
pub mod userdata;

pub use aws::{Aws, CallLog, Target};
pub use config::{StackConfig, StackFile};
pub use error::StepError;
pub use plan::{Context, Plan, Resource};

/// Everything of the stack that still exists, across every step (what `down` must leave empty).
pub async fn remaining(
    plan: &Plan,
    cx: &Context,
) -> Result<Vec<(&'static str, Resource)>, StepError> {
    let mut left = Vec::new();
    for (step, found) in plan.inspect(cx).await {
        for resource in found? {
            if resource.id.is_some() {
                left.push((step, resource));
            }
        }
    }
    Ok(left)
}
