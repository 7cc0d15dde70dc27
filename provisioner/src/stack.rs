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

/// The parts whose security groups the stack makes (`<name>-cluster-sg`, `<name>-node-sg`).
pub const SECURITY_GROUP_PARTS: [&str; 2] = ["cluster-sg", "node-sg"];

impl Stack {
    pub fn new(config: &StackConfig) -> Self {
        Self {
            name: config.name.clone(),
            region: config.region.clone(),
        }
    }

    /// The EC2 security group name (`GroupName`) of a part.
    pub fn security_group(&self, part: &str) -> String {
        self.display_name(part)
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

/// The rules AWS puts on the names derived from a stack name that the stack name's own rule
/// (lowercase letters, digits, '-', at most 24) does not already imply. Each broken rule comes
/// back as a sentence naming the resource, the name and the rule. The region does not matter
/// here: only IAM names carry it, and they fit for every region (see the tests).
pub fn name_rules_broken(name: &str) -> Vec<String> {
    let stack = Stack {
        name: name.to_owned(),
        region: String::new(),
    };
    let mut broken = Vec::new();
    // EC2 CreateSecurityGroup, GroupName: "Constraints: Up to 255 characters in length. Cannot
    // start with sg-."
    for part in SECURITY_GROUP_PARTS {
        let group = stack.security_group(part);
        if group.starts_with("sg-") {
            broken.push(format!(
                "makes the security group name `{group}`, and EC2 refuses group names that start with `sg-` (CreateSecurityGroup GroupName)"
            ));
        }
    }
    // ELBv2 CreateLoadBalancer, Name: "at most 32 characters, only alphanumeric characters or
    // hyphens, must not begin or end with a hyphen, and must not begin with \"internal-\"".
    let lb = stack.load_balancer();
    if lb.starts_with("internal-") {
        broken.push(format!(
            "makes the load balancer name `{lb}`, and ELB refuses names that begin with `internal-` (CreateLoadBalancer Name)"
        ));
    }
    if let Some(rule) = elb_name_rule(&lb) {
        broken.push(format!(
            "makes the load balancer name `{lb}`, which {rule} (CreateLoadBalancer Name)"
        ));
    }
    // ELBv2 CreateTargetGroup, Name: the same 32 characters, alphanumerics and hyphens, no
    // hyphen at either end.
    let tg = stack.target_group();
    if let Some(rule) = elb_name_rule(&tg) {
        broken.push(format!(
            "makes the target group name `{tg}`, which {rule} (CreateTargetGroup Name)"
        ));
    }
    broken
}

/// The rule an ELB load balancer or target group name breaks, if any.
fn elb_name_rule(name: &str) -> Option<&'static str> {
    if name.len() > 32 {
        Some("is longer than the 32 characters ELB allows")
    } else if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        Some("has characters other than the letters, digits and hyphens ELB allows")
    } else if name.starts_with('-') || name.ends_with('-') {
        Some("begins or ends with a hyphen, which ELB refuses")
    } else {
        None
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

    /// EC2 API reference, CreateSecurityGroup, GroupName: "Cannot start with sg-".
    #[test]
    fn a_stack_named_sg_would_make_security_group_names_ec2_refuses() {
        for name in ["sg", "sg-prod"] {
            let broken = name_rules_broken(name);
            assert_eq!(broken.len(), 2, "{broken:?}");
            assert!(broken[0].contains("`sg-"), "{}", broken[0]);
            assert!(broken[0].contains("CreateSecurityGroup"), "{}", broken[0]);
        }
        assert!(name_rules_broken("sgprod").is_empty());
        assert!(name_rules_broken("prod-sg").is_empty());
    }

    /// ELBv2 API reference, CreateLoadBalancer, Name: "must not begin with \"internal-\"".
    #[test]
    fn a_stack_named_internal_would_make_a_load_balancer_name_elb_refuses() {
        for name in ["internal", "internal-tools"] {
            let broken = name_rules_broken(name);
            assert_eq!(broken.len(), 1, "{broken:?}");
            assert!(broken[0].contains("`internal-"), "{}", broken[0]);
            assert!(broken[0].contains("CreateLoadBalancer"), "{}", broken[0]);
        }
        assert!(name_rules_broken("internals").is_empty());
        assert!(name_rules_broken("kdeploy").is_empty());
    }

    /// ELBv2 API reference, CreateLoadBalancer and CreateTargetGroup, Name: at most 32
    /// characters, alphanumerics and hyphens, not beginning or ending with a hyphen.
    #[test]
    fn elb_names_are_checked_for_length_charset_and_hyphens() {
        assert_eq!(elb_name_rule(&"a".repeat(32)), None);
        assert!(elb_name_rule(&"a".repeat(33)).unwrap().contains("32"));
        assert!(elb_name_rule("a_b").unwrap().contains("letters, digits"));
        assert!(elb_name_rule("-ab").unwrap().contains("hyphen"));
        assert!(elb_name_rule("ab-").unwrap().contains("hyphen"));
        // A name the stack-name rule lets through but ELB would not: caught by the derived check.
        let broken = name_rules_broken(&"x".repeat(29));
        assert_eq!(broken.len(), 2, "{broken:?}");
        assert!(broken.iter().all(|b| b.contains("32 characters")));
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
