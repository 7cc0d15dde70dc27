//! What Kubernetes itself created in AWS for the cluster: load balancers (and their target
//! groups) made for Services of type LoadBalancer. They hold interfaces in our subnets, so they
//! must go before the cluster and the network; `up` has nothing to do here.

use crate::aws::AwsResultExt;
use crate::plan::{OnResource, Resource, Scope, Step, StepError, StepFuture};
use crate::progress::Action;
use crate::retry::{Poll, retry_not_yet, wait_for};

pub struct LeftoversStep {
    /// In `down` this step runs once these are gone: the cluster, and in the full plan the
    /// platform step, which deletes the Services that made the load balancers.
    pub after: &'static [&'static str],
}

/// Tags Kubernetes controllers put on the ELBv2 resources they create for a cluster.
fn made_by_kubernetes(s: &Scope<'_>, tags: &[aws_sdk_elasticloadbalancingv2::types::Tag]) -> bool {
    let cluster_tag = s.stack.kubernetes_cluster_tag();
    tags.iter().any(|t| {
        (t.key() == Some(cluster_tag.as_str()) && t.value() == Some("owned"))
            || (t.key() == Some("elbv2.k8s.aws/cluster")
                && t.value() == Some(s.stack.cluster_name()))
    })
}

/// ARNs of the load balancers and target groups Kubernetes made for this cluster.
async fn find(s: &Scope<'_>) -> Result<(Vec<String>, Vec<String>), StepError> {
    let elbv2 = &s.aws.elbv2;
    let lbs = elbv2
        .describe_load_balancers()
        .send()
        .await
        .op("elbv2:DescribeLoadBalancers")
        .on("load balancers")?;
    let tgs = elbv2
        .describe_target_groups()
        .send()
        .await
        .op("elbv2:DescribeTargetGroups")
        .on("target groups")?;
    let mut arns: Vec<String> = lbs
        .load_balancers()
        .iter()
        .filter_map(|l| l.load_balancer_arn().map(str::to_owned))
        .chain(
            tgs.target_groups()
                .iter()
                .filter_map(|t| t.target_group_arn().map(str::to_owned)),
        )
        .collect();
    let mut lb_arns = Vec::new();
    let mut tg_arns = Vec::new();
    // DescribeTags takes at most 20 ARNs per call.
    while !arns.is_empty() {
        let batch: Vec<String> = arns.drain(..arns.len().min(20)).collect();
        let tags = elbv2
            .describe_tags()
            .set_resource_arns(Some(batch))
            .send()
            .await
            .op("elbv2:DescribeTags")
            .on("load balancer tags")?;
        for d in tags.tag_descriptions() {
            if made_by_kubernetes(s, d.tags()) {
                let arn = d.resource_arn().unwrap_or_default().to_owned();
                if arn.contains(":targetgroup/") {
                    tg_arns.push(arn);
                } else {
                    lb_arns.push(arn);
                }
            }
        }
    }
    Ok((lb_arns, tg_arns))
}

impl Step for LeftoversStep {
    fn name(&self) -> &'static str {
        "k8s-leftovers"
    }

    fn title(&self) -> &'static str {
        "load balancers Kubernetes created for the cluster"
    }

    fn needs(&self) -> &'static [&'static str] {
        self.after
    }

    fn ensure<'a>(&'a self, _s: &'a Scope<'a>) -> StepFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    fn destroy<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, ()> {
        Box::pin(async move {
            let (lbs, tgs) = find(s).await?;
            for arn in &lbs {
                s.aws
                    .elbv2
                    .delete_load_balancer()
                    .load_balancer_arn(arn)
                    .send()
                    .await
                    .op("elbv2:DeleteLoadBalancer")
                    .on(arn)?;
                s.record(Action::Deleted, "load balancer (made by Kubernetes)", arn);
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
                retry_not_yet(
                    s.config.timeouts.resources(),
                    |why| s.waiting(why),
                    || async {
                        s.aws
                            .elbv2
                            .delete_target_group()
                            .target_group_arn(arn)
                            .send()
                            .await
                            .op("elbv2:DeleteTargetGroup")
                    },
                )
                .await
                .on(arn)?;
                s.record(Action::Deleted, "target group (made by Kubernetes)", arn);
            }
            Ok(())
        })
    }

    fn inspect<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, Vec<Resource>> {
        Box::pin(async move {
            let (lbs, tgs) = find(s).await?;
            Ok(lbs
                .iter()
                .map(|a| Resource::found("load balancer (made by Kubernetes)", a, a, "exists"))
                .chain(
                    tgs.iter().map(|a| {
                        Resource::found("target group (made by Kubernetes)", a, a, "exists")
                    }),
                )
                .collect())
        })
    }
}
