//! What Kubernetes itself created in AWS for the cluster: the load balancers made for Services of
//! `type: LoadBalancer`, and their target groups. The in-tree AWS cloud provider makes a Classic
//! ELB for such a Service, or an NLB with the `service.beta.kubernetes.io/aws-load-balancer-type:
//! nlb` annotation, and tags either `kubernetes.io/cluster/<cluster>=owned`
//! (kubernetes/cloud-provider-aws `pkg/providers/v1/aws_loadbalancer.go`, `ensureLoadBalancer`
//! and `ensureLoadBalancerv2`: `c.tagging.buildTags(ResourceLifecycleOwned, ...)`); the AWS Load
//! Balancer Controller tags its ELBv2 resources `elbv2.k8s.aws/cluster=<cluster>`.
//!
//! They hold network interfaces in the stack's subnets and security groups, so `down` removes
//! them before the network and the security groups, and only once the platform step has deleted
//! the Services and the cluster, whose controllers would make them again, is gone. `up` has
//! nothing to do here.

use super::{Removal, cluster, network, platform, security_groups};
use crate::aws::NotFoundExt;
use crate::plan::{OnResource, Resource, Scope, Step, StepError, StepFuture, StepId};
use crate::retry::{Poll, WaitError, wait_for};
use crate::stack::Stack;

pub const ID: StepId = StepId::new("k8s-leftovers");

const CLASSIC: &str = "Classic load balancer (made by Kubernetes)";
const LOAD_BALANCER: &str = "load balancer (made by Kubernetes)";
const TARGET_GROUP: &str = "target group (made by Kubernetes)";

pub struct LeftoversStep;

/// The tag value of `kubernetes.io/cluster/<cluster>` on what a component made for the cluster
/// itself (`shared` marks what it may only use, such as our subnets).
const OWNED: &str = "owned";

/// Which API a load balancer belongs to: the AWS Load Balancer Controller makes only ELBv2 ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    Classic,
    Elbv2,
}

/// Whether tags say that Kubernetes made the resource for this stack's cluster. Anything with
/// the stack's own tag belongs to a step of the stack and is never swept here.
fn made_by_kubernetes(stack: &Stack, tags: &[(String, String)], api: Api) -> bool {
    let cluster_tag = stack.kubernetes_cluster_tag();
    let made = tags.iter().any(|(k, v)| {
        (*k == cluster_tag && v == OWNED)
            || (api == Api::Elbv2 && k == "elbv2.k8s.aws/cluster" && v == stack.cluster_name())
    });
    made && !stack.owns(tags)
}

/// What Kubernetes made for the cluster, by kind.
#[derive(Debug, Default)]
struct Found {
    /// Classic load balancers, by name.
    classic: Vec<String>,
    /// ELBv2 load balancers, by ARN.
    load_balancers: Vec<String>,
    /// ELBv2 target groups, by ARN.
    target_groups: Vec<String>,
}

impl Found {
    fn load_balancer_count(&self) -> usize {
        self.classic.len() + self.load_balancers.len()
    }
}

async fn find(s: &Scope<'_>) -> Result<Found, StepError> {
    let (classic, (load_balancers, target_groups)) =
        tokio::try_join!(find_classic(s), find_elbv2(s))?;
    Ok(Found {
        classic,
        load_balancers,
        target_groups,
    })
}

/// Names of the Classic load balancers Kubernetes made for the cluster.
async fn find_classic(s: &Scope<'_>) -> Result<Vec<String>, StepError> {
    let elb = s.aws.elb();
    let names: Vec<String> = elb
        .load_balancers()
        .await
        .on("Classic load balancers")?
        .into_iter()
        .map(|lb| lb.name)
        .collect();
    let tagged = elb.tags(&names).await.on("Classic load balancer tags")?;
    Ok(tagged
        .into_iter()
        .filter(|(_, tags)| made_by_kubernetes(&s.stack, tags, Api::Classic))
        .map(|(name, _)| name)
        .collect())
}

/// ARNs of the ELBv2 load balancers and target groups Kubernetes made for the cluster.
async fn find_elbv2(s: &Scope<'_>) -> Result<(Vec<String>, Vec<String>), StepError> {
    let elbv2 = s.aws.elbv2();
    let lbs = elbv2.load_balancers().await.on("load balancers")?;
    let tgs = elbv2.target_groups().await.on("target groups")?;
    let arns: Vec<String> = lbs
        .into_iter()
        .map(|l| l.arn)
        .chain(tgs.into_iter().map(|t| t.arn))
        .collect();
    let (mut lb_arns, mut tg_arns) = (Vec::new(), Vec::new());
    for (arn, tags) in elbv2_tags(s, &arns).await? {
        if !made_by_kubernetes(&s.stack, &tags, Api::Elbv2) {
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

/// DescribeTags of ELBv2 fails whole when one ARN went away since the listing (a load balancer
/// being deleted): then ask ARN by ARN and leave the missing ones out.
async fn elbv2_tags(
    s: &Scope<'_>,
    arns: &[String],
) -> Result<Vec<(String, crate::aws::Tags)>, StepError> {
    let elbv2 = s.aws.elbv2();
    match elbv2.tags(arns).await {
        Err(e) if e.is_not_found() => {
            let mut found = Vec::new();
            for arn in arns {
                let one = elbv2.tags(std::slice::from_ref(arn)).await.found();
                found.extend(one.on("load balancer tags")?.unwrap_or_default());
            }
            Ok(found)
        }
        tagged => tagged.on("load balancer tags"),
    }
}

/// Polls until none of the deleted load balancers is described any more: only then are their
/// target groups free.
async fn wait_until_gone(s: &Scope<'_>, found: &Found) -> Result<(), StepError> {
    let (elb, elbv2) = (s.aws.elb(), s.aws.elbv2());
    wait_for(
        s.config.timeouts.resources(),
        |state| s.waiting(state),
        || async {
            let mut left = Vec::new();
            for name in &found.classic {
                if elb.load_balancer(name).await.on(CLASSIC)?.is_some() {
                    left.push(name.as_str());
                }
            }
            for arn in &found.load_balancers {
                let described = elbv2.load_balancer_by_arn(arn).await.found();
                if described.on(LOAD_BALANCER)?.flatten().is_some() {
                    left.push(arn.as_str());
                }
            }
            Ok(if left.is_empty() {
                Poll::Ready(())
            } else {
                Poll::Pending(format!(
                    "{} load balancers made by Kubernetes deleting: {}",
                    left.len(),
                    left.join(", ")
                ))
            })
        },
    )
    .await
    .map_err(|e| match e {
        WaitError::Failed(inner) => inner,
        WaitError::Timeout { after, last } => StepError::Timeout {
            resource: "load balancers made by Kubernetes".into(),
            what: "them to be deleted".into(),
            after,
            last,
        },
    })
}

impl Step for LeftoversStep {
    fn id(&self) -> StepId {
        ID
    }

    fn title(&self) -> &'static str {
        "load balancers Kubernetes created for the cluster"
    }

    /// Their interfaces sit in the stack's subnets and their rules name its security groups:
    /// both go only after this step.
    fn needs(&self) -> &[StepId] {
        &[network::ID, security_groups::ID]
    }

    /// The platform step deletes the LoadBalancer Services; the cluster's controllers would make
    /// a load balancer again for any Service left. (`--aws-only` has no platform step.)
    fn removed_after(&self) -> &[StepId] {
        &[platform::ID, cluster::ID]
    }

    fn ensure<'a>(&'a self, _s: &'a Scope<'a>) -> StepFuture<'a, ()> {
        Box::pin(async { Ok(()) })
    }

    fn destroy<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, ()> {
        Box::pin(async move {
            let (elb, elbv2) = (s.aws.elb(), s.aws.elbv2());
            let found = find(s).await?;
            for name in &found.classic {
                Removal::new(s, CLASSIC, name)
                    .delete(|| elb.delete_load_balancer(name))
                    .await?;
            }
            for arn in &found.load_balancers {
                Removal::new(s, LOAD_BALANCER, arn)
                    .delete(|| elbv2.delete_load_balancer(arn))
                    .await?;
            }
            if found.load_balancer_count() > 0 {
                wait_until_gone(s, &found).await?;
            }
            for arn in &found.target_groups {
                Removal::new(s, TARGET_GROUP, arn)
                    .delete(|| elbv2.delete_target_group(arn))
                    .await?;
            }
            Ok(())
        })
    }

    fn inspect<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, Vec<Resource>> {
        Box::pin(async move {
            let found = find(s).await?;
            let listed = |kind, ids: Vec<String>| {
                ids.into_iter()
                    .map(move |id| Resource::found(kind, &id, &id, "exists"))
            };
            Ok(listed(CLASSIC, found.classic)
                .chain(listed(LOAD_BALANCER, found.load_balancers))
                .chain(listed(TARGET_GROUP, found.target_groups))
                .collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StackConfig;
    use crate::stack::STACK_TAG;

    fn tags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// kubernetes/cloud-provider-aws `tags.go`: `owned` marks what a component made for the
    /// cluster, `shared` what it only uses; the AWS Load Balancer Controller's own tag is
    /// `elbv2.k8s.aws/cluster` and only on ELBv2 resources.
    #[test]
    fn only_what_kubernetes_made_for_this_cluster_is_swept() {
        let stack = Stack::new(&StackConfig::default_for("shop").unwrap());
        let made = |pairs: &[(&str, &str)], api| made_by_kubernetes(&stack, &tags(pairs), api);
        let owned = [
            ("kubernetes.io/cluster/shop", "owned"),
            ("kubernetes.io/service-name", "default/web"),
        ];
        assert!(made(&owned, Api::Classic));
        assert!(made(&owned, Api::Elbv2));
        let controller = [("elbv2.k8s.aws/cluster", "shop")];
        assert!(made(&controller, Api::Elbv2));
        assert!(!made(&controller, Api::Classic));
        assert!(!made(
            &[("kubernetes.io/cluster/shop", "shared")],
            Api::Classic
        ));
        assert!(!made(
            &[("kubernetes.io/cluster/shopping", "owned")],
            Api::Classic
        ));
        assert!(!made(&[("elbv2.k8s.aws/cluster", "other")], Api::Elbv2));
        // The stack's own NLB is the load-balancer step's, whatever else it carries.
        let ours = [("kubernetes.io/cluster/shop", "owned"), (STACK_TAG, "shop")];
        assert!(!made(&ours, Api::Elbv2));
    }
}
