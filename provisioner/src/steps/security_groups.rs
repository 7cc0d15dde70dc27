//! The security groups of the control plane and the nodes, and their rules.

use ipnet::Ipv4Net;

use super::network::{self, Network};
use super::{Removal, single};
use crate::aws::ec2::{Rule, SecurityGroup, Source};
use crate::ingress::{HEALTH_NODE_PORT, HTTP_NODE_PORT};
use crate::plan::{OnResource, Output, Resource, Scope, Step, StepError, StepFuture, StepId};
use crate::progress::Action;
use crate::retry::{Fresh, retry_until_visible};
use crate::stack::SECURITY_GROUP_PARTS;

pub const ID: StepId = StepId::new("security-groups");

/// What the security-groups step produces.
#[derive(Debug, Clone)]
pub struct SecurityGroups {
    pub cluster_sg_id: String,
    pub node_sg_id: String,
}

impl Output for SecurityGroups {
    const STEP: StepId = ID;
}

pub struct SecurityGroupsStep;

const CLUSTER_PART: &str = SECURITY_GROUP_PARTS[0];
const NODE_PART: &str = SECURITY_GROUP_PARTS[1];

/// The description of the cluster group's rules for `access.private_api_cidrs`: the stack
/// revokes a rule of this description whose network is no longer configured, and leaves rules
/// added by hand alone.
pub const PRIVATE_API_RULE: &str = "private API endpoint from outside the VPC";

/// The rule admitting one network of `access.private_api_cidrs` to the private API endpoint.
fn private_api_rule(cidr: &str) -> Rule {
    Rule {
        protocol: "tcp",
        from: 443,
        to: 443,
        source: Source::Cidr(cidr.to_owned()),
        description: PRIVATE_API_RULE,
    }
}

/// The ingress rules of both groups, as data (so they are unit-tested and compared, not re-sent).
pub fn ingress_rules(
    cluster_sg: &str,
    node_sg: &str,
    vpc_cidr: &str,
    private_api_cidrs: &[Ipv4Net],
) -> (Vec<Rule>, Vec<Rule>) {
    let mut cluster = vec![Rule {
        protocol: "tcp",
        from: 443,
        to: 443,
        source: Source::Group(node_sg.to_owned()),
        description: "nodes to the Kubernetes API",
    }];
    cluster.extend(
        private_api_cidrs
            .iter()
            .map(|cidr| private_api_rule(&cidr.to_string())),
    );
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

impl Step for SecurityGroupsStep {
    fn id(&self) -> StepId {
        ID
    }

    fn title(&self) -> &'static str {
        "security groups for the control plane and nodes"
    }

    fn needs(&self) -> &[StepId] {
        &[network::ID]
    }

    fn ensure<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, ()> {
        Box::pin(async move {
            let network = s.input::<Network>()?;
            let ((cluster, fresh_cluster), (node, fresh_node)) = tokio::try_join!(
                ensure_group(s, &network.vpc_id, CLUSTER_PART, "EKS control plane"),
                ensure_group(s, &network.vpc_id, NODE_PART, "EKS worker nodes"),
            )?;
            let (cluster_rules, node_rules) = ingress_rules(
                &cluster.id,
                &node.id,
                &network.vpc_cidr.to_string(),
                &s.config.private_api_cidrs,
            );
            // The rules name both groups, each just created or listed.
            let fresh = [&fresh_cluster, &fresh_node];
            tokio::try_join!(
                ensure_rules(s, &cluster, &cluster_rules, &fresh),
                ensure_rules(s, &node, &node_rules, &fresh),
            )?;
            revoke_unconfigured(s, &cluster).await?;
            s.outputs.put(SecurityGroups {
                cluster_sg_id: cluster.id,
                node_sg_id: node.id,
            });
            Ok(())
        })
    }

    fn destroy<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, ()> {
        Box::pin(async move {
            let ec2 = s.aws.ec2();
            let mut groups = ec2
                .security_groups(&s.stack, None)
                .await
                .on("security groups")?;
            // Groups Kubernetes made for the cluster (load balancer controllers) in our VPCs.
            let vpcs: std::collections::BTreeSet<String> =
                groups.iter().map(|g| g.vpc_id.clone()).collect();
            for vpc in &vpcs {
                let made = ec2
                    .security_groups_tagged(vpc, &s.stack.kubernetes_cluster_tag())
                    .await
                    .on("security groups created by Kubernetes")?;
                for group in made {
                    let known = groups.iter().any(|g| g.id == group.id);
                    if !known && group.name != "default" {
                        groups.push(group);
                    }
                }
            }
            // Rules that name another group block its deletion: revoke all ingress first.
            for group in groups.iter().filter(|g| !g.ingress.is_empty()) {
                Removal::new(s, "security group", &group.id)
                    .release(|| ec2.revoke_ingress(&group.id, group.ingress.clone()))
                    .await?;
            }
            for group in &groups {
                Removal::new(s, "security group", &group.id)
                    .delete(|| ec2.delete_security_group(&group.id))
                    .await?;
            }
            Ok(())
        })
    }

    fn inspect<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, Vec<Resource>> {
        Box::pin(async move {
            let mut found = Vec::new();
            for part in [CLUSTER_PART, NODE_PART] {
                let name = s.stack.security_group(part);
                let groups = s
                    .aws
                    .ec2()
                    .security_groups(&s.stack, Some(part))
                    .await
                    .on("security groups")?;
                if groups.is_empty() {
                    found.push(Resource::missing("security group", &name));
                }
                for g in groups {
                    let state = format!("{} ingress rules", g.ingress.len());
                    let change = (part == CLUSTER_PART)
                        .then(|| private_api_changes(&g, &s.config.private_api_cidrs))
                        .flatten();
                    let group = Resource::found("security group", &name, g.id, state);
                    found.push(match change {
                        Some(change) => group.updating(change),
                        None => group,
                    });
                }
            }
            Ok(found)
        })
    }
}

/// The networks of `access.private_api_cidrs` the cluster group should admit and does not, and
/// those it admits under [`PRIVATE_API_RULE`] that are no longer configured.
fn private_api_drift(group: &SecurityGroup, configured: &[Ipv4Net]) -> (Vec<String>, Vec<String>) {
    let wanted: Vec<String> = configured.iter().map(ToString::to_string).collect();
    let missing = wanted
        .iter()
        .filter(|cidr| !group.has_rule(&private_api_rule(cidr)))
        .cloned()
        .collect();
    let mut stale: Vec<String> = group
        .described_cidrs("tcp", 443, 443, PRIVATE_API_RULE)
        .into_iter()
        .filter(|cidr| !wanted.contains(cidr))
        .collect();
    stale.sort();
    stale.dedup();
    (missing, stale)
}

/// For `plan`: the rules `up` authorizes and revokes on the cluster group.
fn private_api_changes(group: &SecurityGroup, configured: &[Ipv4Net]) -> Option<String> {
    let (missing, stale) = private_api_drift(group, configured);
    let changes: Vec<String> = missing
        .iter()
        .map(|cidr| format!("authorize ingress {cidr} tcp 443 (private API endpoint)"))
        .chain(
            stale
                .iter()
                .map(|cidr| format!("revoke ingress {cidr} tcp 443 (private API endpoint)")),
        )
        .collect();
    (!changes.is_empty()).then(|| changes.join("; "))
}

/// Revokes the cluster group's private-API rules whose networks left `access.private_api_cidrs`.
async fn revoke_unconfigured(s: &Scope<'_>, group: &SecurityGroup) -> Result<(), StepError> {
    let (_, stale) = private_api_drift(group, &s.config.private_api_cidrs);
    if stale.is_empty() {
        return Ok(());
    }
    let rules: Vec<Rule> = stale.iter().map(|cidr| private_api_rule(cidr)).collect();
    let refs: Vec<&Rule> = rules.iter().collect();
    match s.aws.ec2().revoke_rules(&group.id, &refs).await {
        Ok(()) => {}
        // Revoked by a run that died before it could see the answer.
        Err(e) if e.is("InvalidPermission.NotFound") => {}
        Err(e) => return Err(e).on(format!("security group {}", group.id)),
    }
    for cidr in &stale {
        s.record(
            Action::Deleted,
            "ingress rule",
            format!(
                "{}: revoke ingress {cidr} tcp 443 ({PRIVATE_API_RULE})",
                group.id
            ),
        );
    }
    Ok(())
}

async fn ensure_group(
    s: &Scope<'_>,
    vpc_id: &str,
    part: &str,
    purpose: &str,
) -> Result<(SecurityGroup, Fresh), StepError> {
    let ec2 = s.aws.ec2();
    let name = s.stack.security_group(part);
    let resource = format!("security group {name}");
    let existing = ec2
        .security_groups(&s.stack, Some(part))
        .await
        .on("security groups")?;
    if let Some(group) = single(existing, &resource)? {
        if group.vpc_id != vpc_id {
            return Err(StepError::conflict(
                resource,
                format!("belongs to {} instead of {vpc_id}", group.vpc_id),
            ));
        }
        s.kept_or_created(false, "security group", &group.id);
        let fresh = Fresh::listed(group.id.clone());
        return Ok((group, fresh));
    }
    let description = format!("{purpose} of stack {}", s.stack.name);
    let id = ec2
        .create_security_group(&name, &description, vpc_id, &s.stack.tags(part))
        .await
        .on(&resource)?;
    s.kept_or_created(true, "security group", &id);
    let fresh = Fresh::created(id.clone());
    // Read it back: the rules AWS added by itself (egress to anywhere) are part of its state.
    let group = retry_until_visible(
        s.config.timeouts.resources(),
        &[&fresh],
        |why| s.waiting(why),
        || ec2.security_group(&id),
    )
    .await
    .on(format!("security group {id}"))?;
    Ok((group, fresh))
}

async fn ensure_rules(
    s: &Scope<'_>,
    group: &SecurityGroup,
    rules: &[Rule],
    fresh: &[&Fresh],
) -> Result<(), StepError> {
    let ec2 = s.aws.ec2();
    let id = &group.id;
    let pace = s.config.timeouts.resources();
    let missing: Vec<&Rule> = rules.iter().filter(|r| !group.has_rule(r)).collect();
    if !missing.is_empty() {
        let authorized = retry_until_visible(
            pace,
            fresh,
            |why| s.waiting(why),
            || ec2.authorize_ingress(id, &missing),
        )
        .await;
        match authorized {
            Ok(()) => {}
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
    if !group.allows_all_egress() {
        retry_until_visible(
            pace,
            fresh,
            |why| s.waiting(why),
            || ec2.authorize_egress_anywhere(id),
        )
        .await
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
        let (cluster, node) = ingress_rules("sg-c", "sg-n", "10.0.0.0/16", &[]);
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
}
