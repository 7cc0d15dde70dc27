//! A stack's identity in AWS: the names of the resources whose names are unique (IAM, EKS, ELB,
//! Auto Scaling) and the tags that mark everything it owns. Ownership is always by tag: the stack
//! never adopts a resource it did not tag.

use crate::config::StackConfig;

/// The tag that marks every resource of a stack: `kdeploy.io/stack = <name>`.
pub const STACK_TAG: &str = "kdeploy.io/stack";
/// Which part of the stack a resource is (`vpc`, `subnet-a`, `node-sg`, ...), so that each one is
/// found again by tag and never confused with its siblings.
pub const PART_TAG: &str = "kdeploy.io/part";

/// Names and tags derived from the stack's name and region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stack {
    pub name: String,
    pub region: String,
}

impl Stack {
    pub fn new(config: &StackConfig) -> Self {
        Self {
            name: config.name.clone(),
            region: config.region.clone(),
        }
    }

    /// The EKS cluster is named after the stack.
    pub fn cluster_name(&self) -> &str {
        &self.name
    }

    /// IAM names are global to the account, so they carry the region too.
    pub fn cluster_role(&self) -> String {
        format!("{}-{}-eks-cluster", self.name, self.region)
    }

    pub fn node_role(&self) -> String {
        format!("{}-{}-eks-node", self.name, self.region)
    }

    pub fn node_instance_profile(&self) -> String {
        self.node_role()
    }

    pub fn launch_template(&self) -> String {
        format!("{}-nodes", self.name)
    }

    pub fn auto_scaling_group(&self) -> String {
        format!("{}-nodes", self.name)
    }

    /// At most 32 characters: the stack name is limited to 24.
    pub fn load_balancer(&self) -> String {
        format!("{}-nlb", self.name)
    }

    pub fn target_group(&self) -> String {
        format!("{}-http", self.name)
    }

    /// `Name` tag value shown in the AWS console.
    pub fn display_name(&self, part: &str) -> String {
        format!("{}-{part}", self.name)
    }

    /// The tags every resource of the stack carries: stack, part and a readable `Name`.
    pub fn tags(&self, part: &str) -> Vec<(String, String)> {
        vec![
            (STACK_TAG.to_owned(), self.name.clone()),
            (PART_TAG.to_owned(), part.to_owned()),
            ("Name".to_owned(), self.display_name(part)),
        ]
    }

    /// Whether tags mark a resource as this stack's: the only way the stack claims anything.
    pub fn owns(&self, tags: &[(String, String)]) -> bool {
        tags.iter().any(|(k, v)| k == STACK_TAG && *v == self.name)
    }

    /// `kubernetes.io/cluster/<name>`: how Kubernetes components (load balancer controllers, the
    /// cloud provider) recognise the cluster's subnets and the resources they created themselves.
    pub fn kubernetes_cluster_tag(&self) -> String {
        format!("kubernetes.io/cluster/{}", self.cluster_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StackConfig;

    #[test]
    fn names_fit_aws_limits_for_the_longest_stack_name() {
        let mut config = StackConfig::default_for("a").unwrap();
        config.name = "x".repeat(24);
        config.region = "ap-southeast-7".into();
        let stack = Stack::new(&config);
        assert!(stack.load_balancer().len() <= 32);
        assert!(stack.target_group().len() <= 32);
        assert!(stack.cluster_role().len() <= 64);
        assert!(stack.node_instance_profile().len() <= 128);
    }

    #[test]
    fn every_resource_gets_stack_part_and_name_tags() {
        let stack = Stack::new(&StackConfig::default_for("demo").unwrap());
        let tags = stack.tags("vpc");
        assert!(tags.contains(&(STACK_TAG.into(), "demo".into())));
        assert!(tags.contains(&(PART_TAG.into(), "vpc".into())));
        assert!(tags.contains(&("Name".into(), "demo-vpc".into())));
    }
}
