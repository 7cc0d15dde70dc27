//! Security groups for the control plane and the nodes. Rules between them name group ids (as
//! the paper does); the NLB reaches the nodes' NodePorts from inside the VPC, so those rules name
//! the VPC's CIDR.

use aws_sdk_ec2::types::{IpPermission, IpRange, ResourceType, SecurityGroup, UserIdGroupPair};

use super::{deleted_or_absent, ec2_filter, ec2_filters, ec2_tags, ignore_not_found, single};
use crate::aws::AwsResultExt;
use crate::ingress::{HEALTH_NODE_PORT, HTTP_NODE_PORT};
use crate::plan::{OnResource, Resource, Scope, Step, StepError, StepFuture, input, recorded};
use crate::progress::Action;
use crate::retry::retry_not_yet;

/// What the security-groups step produces.
#[derive(Debug, Clone)]
pub struct SecurityGroups {
    pub cluster_sg_id: String,
    pub node_sg_id: String,
}

pub struct SecurityGroupsStep;

const CLUSTER_PART: &str = "cluster-sg";
const NODE_PART: &str = "node-sg";

/// Where traffic may come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Group(String),
    Cidr(String),
}

/// One ingress rule: protocol `-1` (all) or `tcp`, a port range, a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub protocol: &'static str,
    pub from: i32,
    pub to: i32,
    pub source: Source,
    pub description: &'static str,
}

/// The ingress rules of both groups, as data (so they are unit-tested and compared, not re-sent).
pub fn ingress_rules(cluster_sg: &str, node_sg: &str, vpc_cidr: &str) -> (Vec<Rule>, Vec<Rule>) {
    let cluster = vec![Rule {
        protocol: "tcp",
        from: 443,
        to: 443,
        source: Source::Group(node_sg.to_owned()),
        description: "nodes to the Kubernetes API",
    }];
    let node = vec![
        Rule {
            protocol: "-1",
            from: -1,
            to: -1,
            source: Source::Group(node_sg.to_owned()),
            description: "nodes to each other (pods, DNS, overlay)",
        },
        Rule {
            protocol: "tcp",
            from: 443,
            to: 443,
            source: Source::Group(cluster_sg.to_owned()),
            description: "control plane to webhooks on 443",
        },
        Rule {
            protocol: "tcp",
            from: 1025,
            to: 65535,
            source: Source::Group(cluster_sg.to_owned()),
            description: "control plane to kubelets and webhooks",
        },
        Rule {
            protocol: "tcp",
            from: HTTP_NODE_PORT,
            to: HTTP_NODE_PORT,
            source: Source::Cidr(vpc_cidr.to_owned()),
            description: "NLB to the ingress controller (HTTP NodePort)",
        },
        Rule {
            protocol: "tcp",
            from: HEALTH_NODE_PORT,
            to: HEALTH_NODE_PORT,
            source: Source::Cidr(vpc_cidr.to_owned()),
            description: "NLB health check of the ingress controller",
        },
    ];
    (cluster, node)
}

/// Whether the group already has the rule (AWS merges rules into permissions per port range).
fn has_rule(group: &SecurityGroup, rule: &Rule) -> bool {
    group.ip_permissions().iter().any(|p| {
        let protocol_matches = p.ip_protocol() == Some(rule.protocol);
        let ports_match = rule.protocol == "-1"
            || (p.from_port() == Some(rule.from) && p.to_port() == Some(rule.to));
        let source_matches = match &rule.source {
            Source::Group(id) => p
                .user_id_group_pairs()
                .iter()
                .any(|g| g.group_id() == Some(id)),
            Source::Cidr(cidr) => p.ip_ranges().iter().any(|r| r.cidr_ip() == Some(cidr)),
        };
        protocol_matches && ports_match && source_matches
    })
}

fn permission(rule: &Rule) -> IpPermission {
    let mut p = IpPermission::builder().ip_protocol(rule.protocol);
    if rule.protocol != "-1" {
        p = p.from_port(rule.from).to_port(rule.to);
    }
    match &rule.source {
        Source::Group(id) => p
            .user_id_group_pairs(
                UserIdGroupPair::builder()
                    .group_id(id)
                    .description(rule.description)
                    .build(),
            )
            .build(),
        Source::Cidr(cidr) => p
            .ip_ranges(
                IpRange::builder()
                    .cidr_ip(cidr)
                    .description(rule.description)
                    .build(),
            )
            .build(),
    }
}

fn allows_all_egress(group: &SecurityGroup) -> bool {
    group.ip_permissions_egress().iter().any(|p| {
        p.ip_protocol() == Some("-1")
            && p.ip_ranges()
                .iter()
                .any(|r| r.cidr_ip() == Some("0.0.0.0/0"))
    })
}

impl Step for SecurityGroupsStep {
    fn name(&self) -> &'static str {
        "security-groups"
    }

    fn title(&self) -> &'static str {
        "security groups for the control plane and nodes"
    }

    fn needs(&self) -> &'static [&'static str] {
        &["network"]
    }

    fn ensure<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, ()> {
        Box::pin(async move {
            let network = input(&s.outputs.network, "network")?;
            let (cluster, node) = tokio::try_join!(
                ensure_group(s, &network.vpc_id, CLUSTER_PART, "EKS control plane"),
                ensure_group(s, &network.vpc_id, NODE_PART, "EKS worker nodes"),
            )?;
            let cluster_id = cluster.group_id().unwrap_or_default().to_owned();
            let node_id = node.group_id().unwrap_or_default().to_owned();
            let (cluster_rules, node_rules) =
                ingress_rules(&cluster_id, &node_id, &network.vpc_cidr.to_string());
            tokio::try_join!(
                ensure_rules(s, &cluster, &cluster_rules),
                ensure_rules(s, &node, &node_rules),
            )?;
            let _ = s.outputs.security_groups.set(SecurityGroups {
                cluster_sg_id: cluster_id,
                node_sg_id: node_id,
            });
            Ok(())
        })
    }

    fn destroy<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, ()> {
        Box::pin(async move {
            let mut groups = find_groups(s, None).await?;
            // Groups Kubernetes made for the cluster (load balancer controllers) in our VPCs.
            let vpcs: std::collections::BTreeSet<String> = groups
                .iter()
                .filter_map(|g| g.vpc_id().map(str::to_owned))
                .collect();
            for vpc in &vpcs {
                let out = s
                    .aws
                    .ec2
                    .describe_security_groups()
                    .filters(ec2_filter("vpc-id", vpc.as_str()))
                    .filters(ec2_filter("tag-key", s.stack.kubernetes_cluster_tag()))
                    .send()
                    .await
                    .op("ec2:DescribeSecurityGroups")
                    .on("security groups created by Kubernetes")?;
                for group in out.security_groups() {
                    let known = groups.iter().any(|g| g.group_id() == group.group_id());
                    if !known && group.group_name() != Some("default") {
                        groups.push(group.clone());
                    }
                }
            }
            // Rules that name another group block its deletion: revoke all ingress first.
            for group in &groups {
                let id = group.group_id().unwrap_or_default();
                if group.ip_permissions().is_empty() {
                    continue;
                }
                ignore_not_found(
                    s.aws
                        .ec2
                        .revoke_security_group_ingress()
                        .group_id(id)
                        .set_ip_permissions(Some(group.ip_permissions().to_vec()))
                        .send()
                        .await
                        .op("ec2:RevokeSecurityGroupIngress"),
                )
                .on(format!("security group {id}"))?;
            }
            for group in &groups {
                let id = group.group_id().unwrap_or_default();
                let deleted = retry_not_yet(
                    s.config.timeouts.resources(),
                    |why| s.waiting(&format!("security group {id}: {why}")),
                    || async {
                        ignore_not_found(
                            s.aws
                                .ec2
                                .delete_security_group()
                                .group_id(id)
                                .send()
                                .await
                                .op("ec2:DeleteSecurityGroup"),
                        )
                    },
                )
                .await
                .on(format!("security group {id}"))?;
                s.record(deleted_or_absent(deleted), "security group", id);
            }
            Ok(())
        })
    }

    fn inspect<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, Vec<Resource>> {
        Box::pin(async move {
            let mut found = Vec::new();
            for part in [CLUSTER_PART, NODE_PART] {
                let groups = find_groups(s, Some(part)).await?;
                if groups.is_empty() {
                    found.push(Resource::missing(
                        "security group",
                        s.stack.display_name(part),
                    ));
                }
                for g in groups {
                    found.push(Resource::found(
                        "security group",
                        s.stack.display_name(part),
                        g.group_id().unwrap_or_default(),
                        format!("{} ingress rules", g.ip_permissions().len()),
                    ));
                }
            }
            Ok(found)
        })
    }
}

async fn find_groups(s: &Scope<'_>, part: Option<&str>) -> Result<Vec<SecurityGroup>, StepError> {
    let out = s
        .aws
        .ec2
        .describe_security_groups()
        .set_filters(Some(ec2_filters(&s.stack, part)))
        .send()
        .await
        .op("ec2:DescribeSecurityGroups")
        .on("security groups")?;
    Ok(out.security_groups().to_vec())
}

async fn ensure_group(
    s: &Scope<'_>,
    vpc_id: &str,
    part: &str,
    purpose: &str,
) -> Result<SecurityGroup, StepError> {
    let name = s.stack.display_name(part);
    if let Some(group) = single(
        find_groups(s, Some(part)).await?,
        &format!("security group {name}"),
    )? {
        if group.vpc_id() != Some(vpc_id) {
            return Err(StepError::Failed {
                resource: format!("security group {name}"),
                reason: format!(
                    "belongs to {} instead of {vpc_id}",
                    group.vpc_id().unwrap_or_default()
                ),
            });
        }
        recorded(
            s,
            false,
            "security group",
            group.group_id().unwrap_or_default(),
        );
        return Ok(group);
    }
    let out = s
        .aws
        .ec2
        .create_security_group()
        .group_name(&name)
        .description(format!("{purpose} of stack {}", s.stack.name))
        .vpc_id(vpc_id)
        .tag_specifications(ec2_tags(&s.stack, ResourceType::SecurityGroup, part, &[]))
        .send()
        .await
        .op("ec2:CreateSecurityGroup")
        .on(format!("security group {name}"))?;
    let id = out.group_id().unwrap_or_default().to_owned();
    recorded(s, true, "security group", &id);
    // Read it back: the rules AWS added by itself (egress to anywhere) are part of its state.
    let group = s
        .aws
        .ec2
        .describe_security_groups()
        .group_ids(&id)
        .send()
        .await
        .op("ec2:DescribeSecurityGroups")
        .on(format!("security group {id}"))?
        .security_groups()
        .first()
        .cloned()
        .unwrap_or_else(|| {
            SecurityGroup::builder()
                .group_id(&id)
                .vpc_id(vpc_id)
                .build()
        });
    Ok(group)
}

async fn ensure_rules(
    s: &Scope<'_>,
    group: &SecurityGroup,
    rules: &[Rule],
) -> Result<(), StepError> {
    let id = group.group_id().unwrap_or_default();
    let missing: Vec<&Rule> = rules.iter().filter(|r| !has_rule(group, r)).collect();
    if !missing.is_empty() {
        let result = s
            .aws
            .ec2
            .authorize_security_group_ingress()
            .group_id(id)
            .set_ip_permissions(Some(missing.iter().map(|r| permission(r)).collect()))
            .send()
            .await
            .op("ec2:AuthorizeSecurityGroupIngress");
        match result {
            Ok(_) => {}
            // Added by a run that died before it could see the answer.
            Err(e) if e.is("InvalidPermission.Duplicate") => {}
            Err(e) => return Err(e).on(format!("security group {id}")),
        }
        for rule in &missing {
            s.record(
                Action::Created,
                "ingress rule",
                format!("{id}: {}", rule.description),
            );
        }
    }
    if !allows_all_egress(group) {
        s.aws
            .ec2
            .authorize_security_group_egress()
            .group_id(id)
            .ip_permissions(
                IpPermission::builder()
                    .ip_protocol("-1")
                    .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
                    .build(),
            )
            .send()
            .await
            .op("ec2:AuthorizeSecurityGroupEgress")
            .on(format!("security group {id}"))?;
        s.record(
            Action::Created,
            "egress rule",
            format!("{id}: all traffic to anywhere"),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_name_group_ids_and_the_vpc_cidr() {
        let (cluster, node) = ingress_rules("sg-c", "sg-n", "10.0.0.0/16");
        assert_eq!(cluster.len(), 1);
        assert_eq!(cluster[0].source, Source::Group("sg-n".into()));
        assert_eq!((cluster[0].from, cluster[0].to), (443, 443));
        assert!(
            node.iter()
                .any(|r| r.protocol == "-1" && r.source == Source::Group("sg-n".into()))
        );
        assert!(
            node.iter()
                .any(|r| r.source == Source::Group("sg-c".into()) && r.from == 1025)
        );
        for port in [HTTP_NODE_PORT, HEALTH_NODE_PORT] {
            assert!(
                node.iter()
                    .any(|r| r.from == port && r.source == Source::Cidr("10.0.0.0/16".into()))
            );
        }
    }

    #[test]
    fn existing_rules_are_recognised() {
        let (_, node) = ingress_rules("sg-c", "sg-n", "10.0.0.0/16");
        let group = SecurityGroup::builder()
            .group_id("sg-n")
            .ip_permissions(permission(&node[0]))
            .ip_permissions(permission(&node[3]))
            .build();
        assert!(has_rule(&group, &node[0]));
        assert!(has_rule(&group, &node[3]));
        assert!(!has_rule(&group, &node[2]));
    }
}
