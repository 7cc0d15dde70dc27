//! EC2's eventual consistency, as AWS documents it in "Eventual consistency in the Amazon EC2
//! API" (<https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html>): "if you run
//! a command to modify or describe the resource that you just created, its ID might not have
//! propagated throughout the system, and you will get an error responding that the resource does
//! not exist".
//!
//! The front records the id of every EC2 resource created through it and, for the profile's
//! window, answers a call that names that id with the resource kind's `*.NotFound` code (HTTP 400,
//! EC2's XML error), before moto sees the call. Only calls that name the id in a parameter are
//! refused; a listing by filter (tags, `vpc-id`) shows the resource, as it does for the run that
//! finds its own resources by tag.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use super::rewrite;

/// One kind of EC2 resource: the call that creates it, where its id is in moto's answer, and the
/// code AWS answers while the id has not propagated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    pub create: &'static str,
    /// The XML element of the create call's answer that holds the new id.
    pub id_tag: &'static str,
    pub code: &'static str,
    /// How AWS's message names the resource (`The vpc ID 'vpc-1' does not exist`).
    noun: &'static str,
}

/// The kinds the page names (`InvalidInstanceID.NotFound` after RunInstances,
/// `InvalidGroup.NotFound` after CreateSecurityGroup) and the other kinds the provisioner creates,
/// each with the code of the EC2 API reference's "Error codes" page.
pub const KINDS: [Kind; 7] = [
    Kind {
        create: "CreateVpc",
        id_tag: "vpcId",
        code: "InvalidVpcID.NotFound",
        noun: "vpc ID",
    },
    Kind {
        create: "CreateSubnet",
        id_tag: "subnetId",
        code: "InvalidSubnetID.NotFound",
        noun: "subnet ID",
    },
    Kind {
        create: "CreateInternetGateway",
        id_tag: "internetGatewayId",
        code: "InvalidInternetGatewayID.NotFound",
        noun: "internetGateway ID",
    },
    Kind {
        create: "CreateRouteTable",
        id_tag: "routeTableId",
        code: "InvalidRouteTableID.NotFound",
        noun: "routeTable ID",
    },
    Kind {
        create: "CreateSecurityGroup",
        id_tag: "groupId",
        code: "InvalidGroup.NotFound",
        noun: "security group",
    },
    Kind {
        create: "CreateLaunchTemplate",
        id_tag: "launchTemplateId",
        code: "InvalidLaunchTemplateId.NotFound",
        noun: "launch template ID",
    },
    Kind {
        create: "RunInstances",
        id_tag: "instanceId",
        code: "InvalidInstanceID.NotFound",
        noun: "instance ID",
    },
];

/// The calls the page warns about, by the verbs that name an existing resource: Describe* of it,
/// and the changes to it (Modify*, Authorize*, Associate*, Attach*, CreateRoute, CreateTags).
pub fn names_existing_resources(operation: &str) -> bool {
    const VERBS: [&str; 5] = ["Describe", "Modify", "Authorize", "Associate", "Attach"];
    matches!(operation, "CreateRoute" | "CreateTags")
        || VERBS.iter().any(|verb| operation.starts_with(verb))
}

/// A refusal: AWS's code and message for an id that has not propagated yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotYetVisible {
    pub code: &'static str,
    pub message: String,
}

/// Ids created through the front, with when and of which kind.
#[derive(Debug, Default)]
pub struct Propagation {
    created: HashMap<String, (Instant, Kind)>,
}

impl Propagation {
    /// Records the ids a successful create call's answer carries.
    pub fn created(&mut self, operation: &str, answer: &str, now: Instant) {
        let Some(kind) = KINDS.iter().find(|k| k.create == operation) else {
            return;
        };
        for id in rewrite::values(answer, kind.id_tag) {
            self.created.entry(id.to_owned()).or_insert((now, *kind));
        }
    }

    /// The refusal for a call that names an id younger than `window`; ids are forgotten once
    /// older. Filters (`Filter.N.Value.M`) and the create call's own tags are not references.
    pub fn check(
        &mut self,
        operation: &str,
        params: &HashMap<String, String>,
        window: Duration,
        now: Instant,
    ) -> Option<NotYetVisible> {
        self.created
            .retain(|_, (at, _)| now.duration_since(*at) < window);
        if self.created.is_empty() || !names_existing_resources(operation) {
            return None;
        }
        let mut named: Vec<(&String, &String)> = params
            .iter()
            .filter(|(key, _)| !key.starts_with("Filter.") && !key.starts_with("TagSpecification."))
            .collect();
        // Several fresh ids in one call: the same one is reported every time.
        named.sort();
        named.into_iter().find_map(|(_, value)| {
            let (_, kind) = self.created.get(value)?;
            let message = if kind.create == "CreateLaunchTemplate" {
                format!("The specified launch template, with template ID {value}, does not exist.")
            } else {
                format!("The {} '{value}' does not exist", kind.noun)
            };
            Some(NotYetVisible {
                code: kind.code,
                message,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(2);

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn created(operation: &str, answer: &str) -> (Propagation, Instant) {
        let now = Instant::now();
        let mut propagation = Propagation::default();
        propagation.created(operation, answer, now);
        (propagation, now)
    }

    /// "Eventual consistency in the Amazon EC2 API": describing or modifying the resource just
    /// created answers that it does not exist, with the kind's own code.
    #[test]
    fn eventual_consistency_in_the_ec2_api_a_new_vpc_is_not_found_by_id_for_the_window() {
        let (mut p, t0) = created(
            "CreateVpc",
            "<CreateVpcResponse><vpc><vpcId>vpc-1</vpcId><cidrBlock>10.0.0.0/16</cidrBlock></vpc></CreateVpcResponse>",
        );
        for (operation, key) in [
            ("DescribeVpcs", "VpcId.1"),
            ("DescribeVpcAttribute", "VpcId"),
            ("ModifyVpcAttribute", "VpcId"),
            ("AttachInternetGateway", "VpcId"),
            ("CreateTags", "ResourceId.1"),
        ] {
            let refusal = p
                .check(operation, &params(&[(key, "vpc-1")]), WINDOW, t0)
                .unwrap_or_else(|| panic!("{operation} refused"));
            assert_eq!(refusal.code, "InvalidVpcID.NotFound");
            assert_eq!(refusal.message, "The vpc ID 'vpc-1' does not exist");
        }
        let later = t0 + WINDOW;
        assert_eq!(
            p.check(
                "DescribeVpcs",
                &params(&[("VpcId.1", "vpc-1")]),
                WINDOW,
                later
            ),
            None
        );
    }

    /// Same page: the examples RunInstances → `InvalidInstanceID.NotFound` and
    /// CreateSecurityGroup → `InvalidGroup.NotFound`, and the kinds the provisioner creates.
    #[test]
    fn eventual_consistency_in_the_ec2_api_every_created_kind_has_its_code() {
        let cases = [
            (
                "CreateSubnet",
                "<subnet><subnetId>subnet-1</subnetId><vpcId>vpc-9</vpcId></subnet>",
                "ModifySubnetAttribute",
                "SubnetId",
                "subnet-1",
                "InvalidSubnetID.NotFound",
            ),
            (
                "CreateInternetGateway",
                "<internetGateway><internetGatewayId>igw-1</internetGatewayId></internetGateway>",
                "AttachInternetGateway",
                "InternetGatewayId",
                "igw-1",
                "InvalidInternetGatewayID.NotFound",
            ),
            (
                "CreateRouteTable",
                "<routeTable><routeTableId>rtb-1</routeTableId><vpcId>vpc-9</vpcId></routeTable>",
                "CreateRoute",
                "RouteTableId",
                "rtb-1",
                "InvalidRouteTableID.NotFound",
            ),
            (
                "CreateRouteTable",
                "<routeTable><routeTableId>rtb-1</routeTableId></routeTable>",
                "AssociateRouteTable",
                "RouteTableId",
                "rtb-1",
                "InvalidRouteTableID.NotFound",
            ),
            (
                "CreateSecurityGroup",
                "<CreateSecurityGroupResponse><groupId>sg-1</groupId></CreateSecurityGroupResponse>",
                "AuthorizeSecurityGroupIngress",
                "IpPermissions.1.Groups.1.GroupId",
                "sg-1",
                "InvalidGroup.NotFound",
            ),
            (
                "CreateSecurityGroup",
                "<groupId>sg-1</groupId>",
                "DescribeSecurityGroups",
                "GroupId.1",
                "sg-1",
                "InvalidGroup.NotFound",
            ),
            (
                "CreateLaunchTemplate",
                "<launchTemplate><launchTemplateId>lt-1</launchTemplateId></launchTemplate>",
                "ModifyLaunchTemplate",
                "LaunchTemplateId",
                "lt-1",
                "InvalidLaunchTemplateId.NotFound",
            ),
            (
                "RunInstances",
                "<instancesSet><item><instanceId>i-1</instanceId></item><item><instanceId>i-2</instanceId></item></instancesSet>",
                "DescribeInstances",
                "InstanceId.1",
                "i-2",
                "InvalidInstanceID.NotFound",
            ),
        ];
        for (create, answer, operation, key, id, code) in cases {
            let (mut p, t0) = created(create, answer);
            let refusal = p.check(operation, &params(&[(key, id)]), WINDOW, t0);
            assert_eq!(
                refusal.map(|r| r.code),
                Some(code),
                "{create} then {operation}"
            );
        }
    }

    /// Only the new resource is affected, and only calls that name it: a subnet's answer names
    /// its (older) VPC, which stays visible; listings by filter show the new resource.
    #[test]
    fn eventual_consistency_in_the_ec2_api_only_calls_naming_the_new_id_are_refused() {
        let (mut p, t0) = created(
            "CreateSubnet",
            "<subnet><subnetId>subnet-1</subnetId><vpcId>vpc-9</vpcId></subnet>",
        );
        let refused = |p: &mut Propagation, operation: &str, pairs: &[(&str, &str)]| {
            p.check(operation, &params(pairs), WINDOW, t0).is_some()
        };
        assert!(!refused(&mut p, "DescribeVpcs", &[("VpcId.1", "vpc-9")]));
        assert!(!refused(
            &mut p,
            "DescribeSubnets",
            &[
                ("Filter.1.Name", "subnet-id"),
                ("Filter.1.Value.1", "subnet-1")
            ]
        ));
        // Deletions and other creates are not among the page's examples: left to moto.
        assert!(!refused(
            &mut p,
            "DeleteSubnet",
            &[("SubnetId", "subnet-1")]
        ));
        assert!(!refused(
            &mut p,
            "RunInstances",
            &[("SubnetId", "subnet-1")]
        ));
        assert!(refused(
            &mut p,
            "DescribeSubnets",
            &[("SubnetId.1", "subnet-1")]
        ));
    }

    #[test]
    fn a_zero_window_changes_nothing() {
        let (mut p, t0) = created("CreateSecurityGroup", "<groupId>sg-1</groupId>");
        let named = params(&[("GroupId", "sg-1")]);
        assert_eq!(
            p.check("AuthorizeSecurityGroupIngress", &named, Duration::ZERO, t0),
            None
        );
    }
}
