//! Security groups and their rules.

use aws_sdk_ec2::types::{Filter, IpPermission, IpRange, ResourceType, UserIdGroupPair};

use super::{Ec2, filter, owned_by, tag_spec};
use crate::aws::{AwsError, SdkResultExt, required, required_str};
use crate::stack::Stack;

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

#[derive(Debug, Clone, PartialEq)]
pub struct SecurityGroup {
    pub id: String,
    pub name: String,
    pub vpc_id: String,
    pub ingress: Vec<IpPermission>,
    pub egress: Vec<IpPermission>,
}

fn security_group(
    g: &aws_sdk_ec2::types::SecurityGroup,
    op: &'static str,
) -> Result<SecurityGroup, AwsError> {
    Ok(SecurityGroup {
        id: required_str(g.group_id(), op, "GroupId")?,
        name: g.group_name().unwrap_or("").to_owned(),
        vpc_id: g.vpc_id().unwrap_or("").to_owned(),
        ingress: g.ip_permissions().to_vec(),
        egress: g.ip_permissions_egress().to_vec(),
    })
}

impl Ec2<'_> {
    pub async fn security_groups(
        &self,
        stack: &Stack,
        part: Option<&str>,
    ) -> Result<Vec<SecurityGroup>, AwsError> {
        self.describe_security_groups(owned_by(stack, part), None)
            .await
    }

    /// Groups in `vpc` that carry `tag_key` (Kubernetes marks its own with the cluster tag).
    pub async fn security_groups_tagged(
        &self,
        vpc: &str,
        tag_key: &str,
    ) -> Result<Vec<SecurityGroup>, AwsError> {
        self.describe_security_groups(
            vec![filter("vpc-id", vpc), filter("tag-key", tag_key)],
            None,
        )
        .await
    }

    /// The group with this id; `InvalidGroup.NotFound` when EC2 does not know it, which right
    /// after its creation may only mean "not yet" (see [`crate::retry::Fresh`]).
    pub async fn security_group(&self, id: &str) -> Result<SecurityGroup, AwsError> {
        let groups = self.describe_security_groups(Vec::new(), Some(id)).await?;
        required(
            groups.into_iter().next(),
            "ec2:DescribeSecurityGroups",
            "SecurityGroups",
        )
    }

    async fn describe_security_groups(
        &self,
        filters: Vec<Filter>,
        id: Option<&str>,
    ) -> Result<Vec<SecurityGroup>, AwsError> {
        const OP: &str = "ec2:DescribeSecurityGroups";
        let mut request = self.0.describe_security_groups();
        if !filters.is_empty() {
            request = request.set_filters(Some(filters));
        }
        if let Some(id) = id {
            request = request.group_ids(id);
        }
        let out = request.send().await.op(OP)?;
        out.security_groups()
            .iter()
            .map(|g| security_group(g, OP))
            .collect()
    }

    pub async fn create_security_group(
        &self,
        name: &str,
        description: &str,
        vpc: &str,
        tags: &[(String, String)],
    ) -> Result<String, AwsError> {
        const OP: &str = "ec2:CreateSecurityGroup";
        let out = self
            .0
            .create_security_group()
            .group_name(name)
            .description(description)
            .vpc_id(vpc)
            .tag_specifications(tag_spec(ResourceType::SecurityGroup, tags))
            .send()
            .await
            .op(OP)?;
        required_str(out.group_id(), OP, "GroupId")
    }

    pub async fn authorize_ingress(&self, group: &str, rules: &[&Rule]) -> Result<(), AwsError> {
        self.0
            .authorize_security_group_ingress()
            .group_id(group)
            .set_ip_permissions(Some(rules.iter().map(|r| permission(r)).collect()))
            .send()
            .await
            .op("ec2:AuthorizeSecurityGroupIngress")
            .map(drop)
    }

    pub async fn authorize_egress_anywhere(&self, group: &str) -> Result<(), AwsError> {
        self.0
            .authorize_security_group_egress()
            .group_id(group)
            .ip_permissions(
                IpPermission::builder()
                    .ip_protocol("-1")
                    .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
                    .build(),
            )
            .send()
            .await
            .op("ec2:AuthorizeSecurityGroupEgress")
            .map(drop)
    }

    pub async fn revoke_ingress(
        &self,
        group: &str,
        rules: Vec<IpPermission>,
    ) -> Result<(), AwsError> {
        self.0
            .revoke_security_group_ingress()
            .group_id(group)
            .set_ip_permissions(Some(rules))
            .send()
            .await
            .op("ec2:RevokeSecurityGroupIngress")
            .map(drop)
    }

    /// Revokes rules the stack added (AWS matches protocol, ports and source).
    pub async fn revoke_rules(&self, group: &str, rules: &[&Rule]) -> Result<(), AwsError> {
        self.revoke_ingress(group, rules.iter().map(|r| permission(r)).collect())
            .await
    }

    pub async fn delete_security_group(&self, id: &str) -> Result<(), AwsError> {
        self.0
            .delete_security_group()
            .group_id(id)
            .send()
            .await
            .op("ec2:DeleteSecurityGroup")
            .map(drop)
    }
}

impl SecurityGroup {
    /// Whether the group already has the rule (AWS merges rules into permissions per port range).
    pub fn has_rule(&self, rule: &Rule) -> bool {
        has_rule(&self.ingress, rule)
    }

    /// The CIDR sources of the ingress rules on `protocol` `from`-`to` that carry `description`
    /// (how the stack tells its own rules from rules added by hand).
    pub fn described_cidrs(
        &self,
        protocol: &str,
        from: i32,
        to: i32,
        description: &str,
    ) -> Vec<String> {
        self.ingress
            .iter()
            .filter(|p| {
                p.ip_protocol() == Some(protocol)
                    && p.from_port() == Some(from)
                    && p.to_port() == Some(to)
            })
            .flat_map(|p| p.ip_ranges())
            .filter(|r| r.description() == Some(description))
            .filter_map(|r| r.cidr_ip().map(str::to_owned))
            .collect()
    }

    pub fn allows_all_egress(&self) -> bool {
        allows_all_egress(&self.egress)
    }
}

/// [`SecurityGroup::has_rule`] on bare permissions, as AWS reports them.
fn has_rule(ingress: &[IpPermission], rule: &Rule) -> bool {
    ingress.iter().any(|p| {
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

fn allows_all_egress(egress: &[IpPermission]) -> bool {
    egress.iter().any(|p| {
        p.ip_protocol() == Some("-1")
            && p.ip_ranges()
                .iter()
                .any(|r| r.cidr_ip() == Some("0.0.0.0/0"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(protocol: &'static str, from: i32, source: Source) -> Rule {
        Rule {
            protocol,
            from,
            to: from,
            source,
            description: "test",
        }
    }

    #[test]
    fn existing_rules_are_recognised() {
        let all = rule("-1", -1, Source::Group("sg-n".into()));
        let http = rule("tcp", 30080, Source::Cidr("10.0.0.0/16".into()));
        let api = rule("tcp", 443, Source::Group("sg-c".into()));
        let ingress = [permission(&all), permission(&http)];
        assert!(has_rule(&ingress, &all));
        assert!(has_rule(&ingress, &http));
        assert!(!has_rule(&ingress, &api));
    }
}
