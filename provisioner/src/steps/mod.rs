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

use crate::plan::{Plan, StepError};

pub use platform::PlatformSettings;
pub(crate) use removal::Removal;
pub use site_image::SiteSource;

/// The AWS side of the platform (paper, section III).
pub fn infrastructure() -> Plan {
    aws()
}

/// Everything: the AWS side and the site's image in ECR, then the nodes' access, the ingress
/// controller and the site. The image step is there whatever the flags, so that `down` always
/// removes the stack's repository.
pub fn full(settings: PlatformSettings) -> Plan {
    // Down removes the platform's LoadBalancer Services before the leftovers step sweeps what
    // they left in AWS (its `removed_after`).
    aws()
        .with(site_image::SiteImageStep {
            source: settings.site.clone(),
        })
        .with(platform::NodeAccessStep {
            kube_override: settings.kube_override.clone(),
        })
        .with(platform::PlatformStep { settings })
}

fn aws() -> Plan {
    Plan::default()
        .with(network::NetworkStep)
        .with(iam::IamStep)
        .with(security_groups::SecurityGroupsStep)
        .with(cluster::ClusterStep)
        .with(leftovers::LeftoversStep)
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
    use crate::plan::StepId;

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

    /// Whether `down` has finished removing `first` before it starts removing `then`: `then`
    /// waits for it, directly or through other steps (a step waits for the steps that need it and
    /// for those it is removed after).
    fn removed_before(plan: &Plan, first: StepId, then: StepId) -> bool {
        let steps: Vec<_> = plan.steps().collect();
        let waits_for = |id: StepId| -> Vec<StepId> {
            let needed_by = steps
                .iter()
                .filter(|s| s.needs().contains(&id))
                .map(|s| s.id());
            let step = steps.iter().find(|s| s.id() == id);
            let after = step
                .into_iter()
                .flat_map(|s| s.removed_after().iter().copied());
            needed_by
                .chain(after.filter(|a| steps.iter().any(|s| s.id() == *a)))
                .collect()
        };
        let mut seen = Vec::new();
        let mut todo = waits_for(then);
        while let Some(id) = todo.pop() {
            if id == first {
                return true;
            }
            if !seen.contains(&id) {
                seen.push(id);
                todo.extend(waits_for(id));
            }
        }
        false
    }

    /// Issue 13, item 3: the LoadBalancer Services go first (the platform step), then what the
    /// cloud provider made for them (once the cluster, whose controllers would make it again, is
    /// gone), then the security groups and the network that those load balancers held.
    #[test]
    fn down_deletes_the_services_then_what_kubernetes_made_then_the_network() {
        let plan = full(PlatformSettings::default());
        checked_order(&plan);
        let before = |first, then| removed_before(&plan, first, then);
        assert!(before(platform::ID, leftovers::ID));
        assert!(before(cluster::ID, leftovers::ID));
        assert!(before(leftovers::ID, network::ID));
        assert!(before(leftovers::ID, security_groups::ID));
        assert!(!before(leftovers::ID, platform::ID), "the sweep waits");
        assert!(!before(network::ID, leftovers::ID));
        assert!(plan.order().unwrap().contains(&"node-access"));
    }

    /// `--aws-only` has no platform step: the sweep follows the cluster and precedes the rest.
    #[test]
    fn the_infrastructure_plan_sweeps_after_the_cluster_and_before_the_network() {
        let plan = infrastructure();
        checked_order(&plan);
        let before = |first, then| removed_before(&plan, first, then);
        assert!(plan.steps().all(|s| s.id() != platform::ID));
        assert!(before(nodes::ID, leftovers::ID));
        assert!(before(cluster::ID, leftovers::ID));
        assert!(before(leftovers::ID, network::ID));
        assert!(before(leftovers::ID, security_groups::ID));
    }
}
