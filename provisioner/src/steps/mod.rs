//! One module per kind of resource the stack owns (see [`crate::plan::Step`]), and the catalogue
//! that puts them in plans. Adding a step means its module and a line here.

pub mod cluster;
pub mod iam;
pub mod leftovers;
pub mod load_balancer;
pub mod network;
pub mod nodes;
pub mod platform;
mod removal;
pub mod security_groups;
pub mod site_image;
pub mod targets;

use crate::plan::{Plan, StepError, StepId};

pub use platform::PlatformSettings;
pub(crate) use removal::Removal;
pub use site_image::SiteSource;

/// The AWS side of the platform (paper, section III).
pub fn infrastructure() -> Plan {
    aws(vec![cluster::ID])
}

/// Everything: the AWS side and the site's image in ECR, then the nodes' access, the ingress
/// controller and the site. The image step is there whatever the flags, so that `down` always
/// removes the stack's repository.
pub fn full(settings: PlatformSettings) -> Plan {
    // Down removes the platform's LoadBalancer Services before sweeping what they left in AWS.
    aws(vec![cluster::ID, platform::ID])
        .with(site_image::SiteImageStep {
            source: settings.site.clone(),
        })
        .with(platform::NodeAccessStep {
            kube_override: settings.kube_override.clone(),
        })
        .with(platform::PlatformStep { settings })
}

fn aws(leftovers_after: Vec<StepId>) -> Plan {
    Plan::default()
        .with(network::NetworkStep)
        .with(iam::IamStep)
        .with(security_groups::SecurityGroupsStep)
        .with(cluster::ClusterStep)
        .with(leftovers::LeftoversStep {
            after: leftovers_after,
        })
        .with(nodes::NodesStep)
        .with(load_balancer::LoadBalancerStep)
        .with(targets::TargetsStep)
}

/// The one match of a lookup by tag; two are a state this tool never creates, so say so.
pub(crate) fn single<T>(found: Vec<T>, what: &str) -> Result<Option<T>, StepError> {
    if found.len() > 1 {
        return Err(StepError::Ambiguous {
            resource: what.to_owned(),
            count: found.len(),
        });
    }
    Ok(found.into_iter().next())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every step comes after what it needs; returns the order.
    fn checked_order(plan: &Plan) -> Vec<&'static str> {
        let order = plan.order().unwrap();
        let at = |n: &str| order.iter().position(|o| *o == n).unwrap();
        for step in plan.steps() {
            for need in step.needs() {
                let (need, name) = (need.name(), step.name());
                assert!(at(need) < at(name), "{need} before {name}");
            }
        }
        order
    }

    #[test]
    fn order_puts_every_step_after_what_it_needs() {
        let order = checked_order(&infrastructure());
        assert_eq!(order.first(), Some(&"network"));
        assert_eq!(order.last(), Some(&"targets"));
    }

    #[test]
    fn the_site_image_is_built_with_the_aws_side_and_removed_after_the_cluster() {
        let plan = full(PlatformSettings::default());
        checked_order(&plan);
        let step = |id: StepId| plan.steps().find(|s| s.id() == id).unwrap();
        let image = step(site_image::ID);
        assert!(image.needs().is_empty(), "it runs while EKS is created");
        assert_eq!(image.removed_after(), [cluster::ID]);
        assert!(step(platform::ID).needs().contains(&site_image::ID));
        assert!(
            infrastructure().steps().all(|s| s.id() != site_image::ID),
            "--aws-only pushes no image"
        );
    }

    #[test]
    fn the_full_plan_sweeps_kubernetes_leftovers_after_the_platform() {
        let order = checked_order(&full(PlatformSettings::default()));
        assert_eq!(order.last(), Some(&"k8s-leftovers"));
        assert!(order.contains(&"platform") && order.contains(&"node-access"));
    }
}
