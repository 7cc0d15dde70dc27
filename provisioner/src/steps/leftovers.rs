//! What Kubernetes itself created in AWS for the cluster: load balancers (and their target
//! groups) made for Services of type LoadBalancer. They hold interfaces in our subnets, so they
//! must go before the cluster and the network; `up` has nothing to do here.

use super::Removal;
use crate::plan::{OnResource, Resource, Scope, Step, StepError, StepFuture, StepId};
use crate::retry::{Poll, wait_for};

pub const ID: StepId = StepId::new("k8s-leftovers");

const LOAD_BALANCER: &str = "load balancer (made by Kubernetes)";
const TARGET_GROUP: &str = "target group (made by Kubernetes)";

pub struct LeftoversStep {
    /// In `down` this step runs once these are gone: the cluster, and in the full plan the
    /// platform step, which deletes the Services that made the load balancers.
    pub after: Vec<StepId>,
}

/// Tags Kubernetes controllers put on the ELBv2 resources they create for a cluster.
fn made_by_kubernetes(s: &Scope<'_>, tags: &[(String, String)]) -> bool {
    let cluster_tag = s.stack.kubernetes_cluster_tag();
    tags.iter().any(|(k, v)| {
        (*k == cluster_tag && v == "owned")
            || (k == "elbv2.k8s.aws/cluster" && v == s.stack.cluster_name())
    })
}

/// ARNs of the load balancers and target groups Kubernetes made for this cluster.
async fn find(s: &Scope<'_>) -> Result<(Vec<String>, Vec<String>), StepError> {
    let elbv2 = s.aws.elbv2();
    let lbs = elbv2.load_balancers().await.on("load balancers")?;
    let tgs = elbv2.target_groups().await.on("target groups")?;
    let arns: Vec<String> = lbs
        .into_iter()
        .map(|l| l.arn)
        .chain(tgs.into_iter().map(|t| t.arn))
        .collect();
    let (mut lb_arns, mut tg_arns) = (Vec::new(), Vec::new());
    for (arn, tags) in elbv2.tags(&arns).await.on("load balancer tags")? {
        if !made_by_kubernetes(s, &tags) {
            continue;
        }
        if arn.contains(":targetgroup/") {
            tg_arns.push(arn);
        } else {
            lb_arns.push(arn);
        }
    }
    Ok((lb_arns, tg_arns))
}

impl Step for LeftoversStep {
    fn id(&self) -> StepId {
        ID
    }

    fn title(&self) -> &'static str {
        "load balancers Kubernetes created for the cluster"
    }

    fn needs(&self) -> &[StepId] {
        &self.after
    }

    fn ensure<'a>(&'a self, _s: &'a Scope<'a>) -> StepFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    fn destroy<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, ()> {
        Box::pin(async move {
            let elbv2 = s.aws.elbv2();
            let (lbs, tgs) = find(s).await?;
            for arn in &lbs {
                Removal::new(s, LOAD_BALANCER, arn)
                    .delete(|| elbv2.delete_load_balancer(arn))
                    .await?;
            }
            if !lbs.is_empty() {
                wait_for(
                    s.config.timeouts.resources(),
                    |state| s.waiting(state),
                    || async {
                        let (left, _) = find(s).await?;
                        Ok(if left.is_empty() {
                            Poll::Ready(())
                        } else {
                            Poll::Pending(format!("{} load balancers deleting", left.len()))
                        })
                    },
                )
                .await
                .on("load balancers made by Kubernetes")?;
            }
            for arn in &tgs {
                Removal::new(s, TARGET_GROUP, arn)
                    .delete(|| elbv2.delete_target_group(arn))
                    .await?;
            }
            Ok(())
        })
    }

    fn inspect<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, Vec<Resource>> {
        Box::pin(async move {
            let (lbs, tgs) = find(s).await?;
            let found = |kind, arns: Vec<String>| {
                arns.into_iter()
                    .map(move |a| Resource::found(kind, &a, &a, "exists"))
            };
            Ok(found(LOAD_BALANCER, lbs)
                .chain(found(TARGET_GROUP, tgs))
                .collect())
        })
    }
}
