//! An observer of the whole emulated account that is independent of the provisioner: it lists
//! every resource of the kinds a stack (or Kubernetes on its behalf) can leave in AWS with plain
//! SDK calls, and answers those that belong to a stack. It never calls the product's plan,
//! inspect or inventory code, so a kind the product forgets to delete (or to look for) still
//! shows up here.
//!
//! Plain SDK and std only, so that other test crates can include it with
//! `#[path = "../../provisioner/tests/common/account.rs"] mod account;`.
//!
//! What belongs to stack `s`:
//! - a resource tagged `kdeploy.io/stack = s` (the product's ownership tag), tagged
//!   `kubernetes.io/cluster/s` (what the cloud provider makes for the cluster, as
//!   kubernetes/cloud-provider-aws `pkg/providers/v1/tags.go` tags it) or tagged
//!   `elbv2.k8s.aws/cluster = s` (the AWS Load Balancer Controller,
//!   `pkg/deploy/tracking/provider.go`);
//! - a resource whose account-unique name the stack derives from its own: the EKS cluster `s`,
//!   IAM roles and instance profiles, launch templates, Auto Scaling groups, load balancers and
//!   target groups named `s-…`, ECR repositories named `s/…`;
//! - anything inside what belongs: subnets, route tables (not the VPC's main one), security
//!   groups (not the VPC's default one), gateways and interfaces of a stack VPC; instances,
//!   interfaces, groups and load balancers in a stack subnet or VPC; an instance of a stack
//!   instance profile; the policies of a stack role; the node groups and access entries of a
//!   stack cluster.
//!
//! A listing that fails is reported as a line of its own, so a broken observer never looks like
//! an empty account.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fmt::Debug;

use aws_sdk_iam::error::ProvideErrorMetadata;
use aws_types::SdkConfig;

/// The product's ownership tag, spelled here rather than imported: the observer must not share
/// the product's code (the provisioner's tests check it is the same string).
pub const STACK_TAG: &str = "kdeploy.io/stack";

/// Whether something belongs to one stack.
struct Stack<'a> {
    name: &'a str,
    cluster_tag: String,
    prefix: String,
    repository_prefix: String,
}

impl<'a> Stack<'a> {
    fn new(name: &'a str) -> Self {
        Self {
            name,
            cluster_tag: format!("kubernetes.io/cluster/{name}"),
            prefix: format!("{name}-"),
            repository_prefix: format!("{name}/"),
        }
    }

    fn tagged<'t>(&self, tags: impl IntoIterator<Item = (&'t str, &'t str)>) -> bool {
        tags.into_iter().any(|(k, v)| {
            (k == STACK_TAG && v == self.name)
                || k == self.cluster_tag
                || (k == "elbv2.k8s.aws/cluster" && v == self.name)
        })
    }

    fn named(&self, name: &str) -> bool {
        name == self.name || name.starts_with(&self.prefix)
    }
}

fn ec2_tags(tags: &[aws_sdk_ec2::types::Tag]) -> impl Iterator<Item = (&str, &str)> {
    tags.iter()
        .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default()))
}

/// Whether an error says the resource is gone: deleted (by another stack's `down`, running at
/// the same time) between the listing and the call about it. It is then not there to report.
fn gone(err: &impl ProvideErrorMetadata) -> bool {
    err.code()
        .is_some_and(|code| code.contains("NotFound") || code == "NoSuchEntity")
}

/// What was found, and what could not be listed.
#[derive(Default)]
struct Found(Vec<String>);

impl Found {
    fn add(&mut self, kind: &str, id: &str, name: &str) {
        if name.is_empty() || name == id {
            self.0.push(format!("{kind} {id}"));
        } else {
            self.0.push(format!("{kind} {id} ({name})"));
        }
    }

    fn failed(&mut self, what: &str, err: impl Debug) {
        self.0.push(format!("could not list {what}: {err:?}"));
    }
}

/// Everything of `stack` in the account `sdk` reaches (its region, and IAM), one line per
/// resource (`kind id (name)`), sorted; empty when the stack left nothing. Point `sdk` at the
/// emulator itself, not at a front that injects faults.
pub async fn leftovers(sdk: &SdkConfig, stack: &str) -> Vec<String> {
    let stack = Stack::new(stack);
    let mut found = Found::default();
    let ec2 = aws_sdk_ec2::Client::new(sdk);

    let network = network(&ec2, &stack, &mut found).await;
    instances_and_templates(&ec2, &stack, &network, &mut found).await;
    auto_scaling(sdk, &stack, &network, &mut found).await;
    iam(sdk, &stack, &mut found).await;
    eks(sdk, &stack, &mut found).await;
    load_balancers(sdk, &stack, &network, &mut found).await;
    repositories(sdk, &stack, &mut found).await;

    found.0.sort();
    found.0.dedup();
    found.0
}

/// The stack's VPCs, subnets and security groups, to find what is inside them.
#[derive(Default)]
struct Network {
    vpcs: BTreeSet<String>,
    subnets: BTreeSet<String>,
    groups: BTreeSet<String>,
}

impl Network {
    fn contains(&self, vpc: Option<&str>, subnet: Option<&str>) -> bool {
        vpc.is_some_and(|v| self.vpcs.contains(v))
            || subnet.is_some_and(|s| self.subnets.contains(s))
    }
}

async fn network(ec2: &aws_sdk_ec2::Client, stack: &Stack<'_>, found: &mut Found) -> Network {
    let mut network = Network::default();

    match ec2
        .describe_vpcs()
        .into_paginator()
        .send()
        .try_collect()
        .await
    {
        Ok(pages) => {
            for vpc in pages.iter().flat_map(|p| p.vpcs()) {
                let id = vpc.vpc_id().unwrap_or_default();
                if stack.tagged(ec2_tags(vpc.tags())) {
                    network.vpcs.insert(id.to_owned());
                    found.add("VPC", id, vpc.cidr_block().unwrap_or_default());
                }
            }
        }
        Err(e) => found.failed("VPCs", e),
    }

    match ec2
        .describe_subnets()
        .into_paginator()
        .send()
        .try_collect()
        .await
    {
        Ok(pages) => {
            for subnet in pages.iter().flat_map(|p| p.subnets()) {
                let id = subnet.subnet_id().unwrap_or_default();
                if stack.tagged(ec2_tags(subnet.tags())) || network.contains(subnet.vpc_id(), None)
                {
                    network.subnets.insert(id.to_owned());
                    found.add("subnet", id, subnet.cidr_block().unwrap_or_default());
                }
            }
        }
        Err(e) => found.failed("subnets", e),
    }

    match ec2
        .describe_internet_gateways()
        .into_paginator()
        .send()
        .try_collect()
        .await
    {
        Ok(pages) => {
            for gateway in pages.iter().flat_map(|p| p.internet_gateways()) {
                let attached = gateway
                    .attachments()
                    .iter()
                    .any(|a| network.contains(a.vpc_id(), None));
                if stack.tagged(ec2_tags(gateway.tags())) || attached {
                    found.add(
                        "internet gateway",
                        gateway.internet_gateway_id().unwrap_or_default(),
                        "",
                    );
                }
            }
        }
        Err(e) => found.failed("internet gateways", e),
    }

    match ec2
        .describe_route_tables()
        .into_paginator()
        .send()
        .try_collect()
        .await
    {
        Ok(pages) => {
            for table in pages.iter().flat_map(|p| p.route_tables()) {
                let main = table.associations().iter().any(|a| a.main() == Some(true));
                let in_stack = network.contains(table.vpc_id(), None)
                    || table
                        .associations()
                        .iter()
                        .any(|a| network.contains(None, a.subnet_id()));
                // A stack VPC's main table goes with the VPC; the VPC is listed already.
                if stack.tagged(ec2_tags(table.tags())) || (in_stack && !main) {
                    found.add(
                        "route table",
                        table.route_table_id().unwrap_or_default(),
                        table.vpc_id().unwrap_or_default(),
                    );
                }
            }
        }
        Err(e) => found.failed("route tables", e),
    }

    match ec2
        .describe_security_groups()
        .into_paginator()
        .send()
        .try_collect()
        .await
    {
        Ok(pages) => {
            for group in pages.iter().flat_map(|p| p.security_groups()) {
                let id = group.group_id().unwrap_or_default();
                let name = group.group_name().unwrap_or_default();
                let in_stack = network.contains(group.vpc_id(), None) && name != "default";
                if stack.tagged(ec2_tags(group.tags())) || in_stack {
                    network.groups.insert(id.to_owned());
                    found.add("security group", id, name);
                }
            }
        }
        Err(e) => found.failed("security groups", e),
    }

    match ec2
        .describe_network_interfaces()
        .into_paginator()
        .send()
        .try_collect()
        .await
    {
        Ok(pages) => {
            for interface in pages.iter().flat_map(|p| p.network_interfaces()) {
                let grouped = interface
                    .groups()
                    .iter()
                    .any(|g| g.group_id().is_some_and(|g| network.groups.contains(g)));
                if stack.tagged(ec2_tags(interface.tag_set()))
                    || network.contains(interface.vpc_id(), interface.subnet_id())
                    || grouped
                {
                    found.add(
                        "network interface",
                        interface.network_interface_id().unwrap_or_default(),
                        interface.description().unwrap_or_default(),
                    );
                }
            }
        }
        Err(e) => found.failed("network interfaces", e),
    }

    network
}

async fn instances_and_templates(
    ec2: &aws_sdk_ec2::Client,
    stack: &Stack<'_>,
    network: &Network,
    found: &mut Found,
) {
    match ec2
        .describe_instances()
        .into_paginator()
        .send()
        .try_collect()
        .await
    {
        Ok(pages) => {
            let instances = pages
                .iter()
                .flat_map(|p| p.reservations())
                .flat_map(|r| r.instances());
            for instance in instances {
                let state = instance
                    .state()
                    .and_then(|s| s.name())
                    .map(|n| n.as_str().to_owned())
                    .unwrap_or_default();
                if state == "terminated" {
                    continue;
                }
                let profile = instance
                    .iam_instance_profile()
                    .and_then(|p| p.arn())
                    .and_then(|arn| arn.rsplit('/').next())
                    .is_some_and(|name| stack.named(name));
                let grouped = instance
                    .security_groups()
                    .iter()
                    .any(|g| g.group_id().is_some_and(|g| network.groups.contains(g)));
                if stack.tagged(ec2_tags(instance.tags()))
                    || network.contains(instance.vpc_id(), instance.subnet_id())
                    || profile
                    || grouped
                {
                    found.add(
                        "instance",
                        instance.instance_id().unwrap_or_default(),
                        &state,
                    );
                }
            }
        }
        Err(e) => found.failed("instances", e),
    }

    match ec2
        .describe_launch_templates()
        .into_paginator()
        .send()
        .try_collect()
        .await
    {
        Ok(pages) => {
            for template in pages.iter().flat_map(|p| p.launch_templates()) {
                let name = template.launch_template_name().unwrap_or_default();
                if stack.tagged(ec2_tags(template.tags())) || stack.named(name) {
                    found.add(
                        "launch template",
                        template.launch_template_id().unwrap_or_default(),
                        name,
                    );
                }
            }
        }
        Err(e) => found.failed("launch templates", e),
    }
}

async fn auto_scaling(sdk: &SdkConfig, stack: &Stack<'_>, network: &Network, found: &mut Found) {
    let autoscaling = aws_sdk_autoscaling::Client::new(sdk);
    match autoscaling
        .describe_auto_scaling_groups()
        .into_paginator()
        .send()
        .try_collect()
        .await
    {
        Ok(pages) => {
            for group in pages.iter().flat_map(|p| p.auto_scaling_groups()) {
                let name = group.auto_scaling_group_name().unwrap_or_default();
                let tags = group
                    .tags()
                    .iter()
                    .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default()));
                let in_subnets = group
                    .vpc_zone_identifier()
                    .unwrap_or_default()
                    .split(',')
                    .any(|s| network.contains(None, Some(s.trim())));
                if stack.tagged(tags) || stack.named(name) || in_subnets {
                    found.add("Auto Scaling group", name, "");
                }
            }
        }
        Err(e) => found.failed("Auto Scaling groups", e),
    }
}

async fn iam(sdk: &SdkConfig, stack: &Stack<'_>, found: &mut Found) {
    let iam = aws_sdk_iam::Client::new(sdk);
    let mut roles = BTreeSet::new();
    match iam.list_roles().into_paginator().send().try_collect().await {
        Ok(pages) => {
            for role in pages.iter().flat_map(|p| p.roles()) {
                let name = role.role_name();
                let tagged = match iam.list_role_tags().role_name(name).send().await {
                    Ok(tags) => stack.tagged(tags.tags().iter().map(|t| (t.key(), t.value()))),
                    Err(e) if gone(&e) => continue,
                    Err(e) => {
                        found.failed(&format!("the tags of role {name}"), e);
                        false
                    }
                };
                if tagged || stack.named(name) {
                    roles.insert(name.to_owned());
                    found.add("IAM role", name, "");
                }
            }
        }
        Err(e) => found.failed("IAM roles", e),
    }
    for role in &roles {
        match iam.list_role_policies().role_name(role).send().await {
            Ok(inline) => {
                for policy in inline.policy_names() {
                    found.add("IAM inline role policy", &format!("{role}/{policy}"), "");
                }
            }
            Err(e) if gone(&e) => {}
            Err(e) => found.failed(&format!("the inline policies of {role}"), e),
        }
        match iam
            .list_attached_role_policies()
            .role_name(role)
            .send()
            .await
        {
            Ok(attached) => {
                for policy in attached.attached_policies() {
                    let policy = policy.policy_name().unwrap_or_default();
                    found.add("IAM attached role policy", &format!("{role}/{policy}"), "");
                }
            }
            Err(e) if gone(&e) => {}
            Err(e) => found.failed(&format!("the attached policies of {role}"), e),
        }
    }

    match iam
        .list_instance_profiles()
        .into_paginator()
        .send()
        .try_collect()
        .await
    {
        Ok(pages) => {
            for profile in pages.iter().flat_map(|p| p.instance_profiles()) {
                let name = profile.instance_profile_name();
                let of_role = profile
                    .roles()
                    .iter()
                    .any(|r| roles.contains(r.role_name()));
                // GetInstanceProfile answers the tags too (moto 5 fails ListInstanceProfileTags).
                let tagged = match iam
                    .get_instance_profile()
                    .instance_profile_name(name)
                    .send()
                    .await
                {
                    Ok(got) => got.instance_profile().is_some_and(|p| {
                        stack.tagged(p.tags().iter().map(|t| (t.key(), t.value())))
                    }),
                    Err(e) if gone(&e) => continue,
                    Err(e) => {
                        found.failed(&format!("the tags of instance profile {name}"), e);
                        false
                    }
                };
                if tagged || of_role || stack.named(name) {
                    found.add("IAM instance profile", name, "");
                }
            }
        }
        Err(e) => found.failed("IAM instance profiles", e),
    }
}

async fn eks(sdk: &SdkConfig, stack: &Stack<'_>, found: &mut Found) {
    let eks = aws_sdk_eks::Client::new(sdk);
    let names: Vec<String> = match eks
        .list_clusters()
        .into_paginator()
        .send()
        .try_collect()
        .await
    {
        Ok(pages) => pages.iter().flat_map(|p| p.clusters()).cloned().collect(),
        Err(e) => {
            found.failed("EKS clusters", e);
            return;
        }
    };
    for name in names {
        let tagged = match eks.describe_cluster().name(&name).send().await {
            Ok(described) => described
                .cluster()
                .and_then(|c| c.tags())
                .is_some_and(|tags| {
                    stack.tagged(tags.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                }),
            Err(e) if gone(&e) => continue,
            Err(e) => {
                found.failed(&format!("EKS cluster {name}"), e);
                false
            }
        };
        // The cluster is named after the stack itself, so only that exact name counts.
        if !tagged && name != stack.name {
            continue;
        }
        found.add("EKS cluster", &name, "");
        match eks.list_nodegroups().cluster_name(&name).send().await {
            Ok(groups) => {
                for group in groups.nodegroups() {
                    found.add("EKS node group", &format!("{name}/{group}"), "");
                }
            }
            Err(e) if gone(&e) => {}
            Err(e) => found.failed(&format!("the node groups of {name}"), e),
        }
        // Access entries go with their cluster; an emulator without the API has none to list.
        if let Ok(entries) = eks.list_access_entries().cluster_name(&name).send().await {
            for entry in entries.access_entries() {
                found.add("EKS access entry", &format!("{name} {entry}"), "");
            }
        }
    }
}

async fn load_balancers(sdk: &SdkConfig, stack: &Stack<'_>, network: &Network, found: &mut Found) {
    let elbv2 = aws_sdk_elasticloadbalancingv2::Client::new(sdk);
    match elbv2
        .describe_load_balancers()
        .into_paginator()
        .send()
        .try_collect()
        .await
    {
        Ok(pages) => {
            let all: Vec<_> = pages.iter().flat_map(|p| p.load_balancers()).collect();
            let arns: Vec<String> = all
                .iter()
                .filter_map(|lb| lb.load_balancer_arn().map(str::to_owned))
                .collect();
            let tagged = elbv2_tagged(&elbv2, stack, &arns, found).await;
            for lb in all {
                let arn = lb.load_balancer_arn().unwrap_or_default();
                let name = lb.load_balancer_name().unwrap_or_default();
                let in_subnets = lb
                    .availability_zones()
                    .iter()
                    .any(|z| network.contains(None, z.subnet_id()));
                let grouped = lb
                    .security_groups()
                    .iter()
                    .any(|g| network.groups.contains(g));
                if tagged.contains(arn)
                    || stack.named(name)
                    || network.contains(lb.vpc_id(), None)
                    || in_subnets
                    || grouped
                {
                    found.add("load balancer", arn, name);
                }
            }
        }
        Err(e) => found.failed("load balancers (v2)", e),
    }

    match elbv2
        .describe_target_groups()
        .into_paginator()
        .send()
        .try_collect()
        .await
    {
        Ok(pages) => {
            let all: Vec<_> = pages.iter().flat_map(|p| p.target_groups()).collect();
            let arns: Vec<String> = all
                .iter()
                .filter_map(|tg| tg.target_group_arn().map(str::to_owned))
                .collect();
            let tagged = elbv2_tagged(&elbv2, stack, &arns, found).await;
            for group in all {
                let arn = group.target_group_arn().unwrap_or_default();
                let name = group.target_group_name().unwrap_or_default();
                if tagged.contains(arn)
                    || stack.named(name)
                    || network.contains(group.vpc_id(), None)
                {
                    found.add("target group", arn, name);
                }
            }
        }
        Err(e) => found.failed("target groups", e),
    }

    let elb = aws_sdk_elasticloadbalancing::Client::new(sdk);
    match elb
        .describe_load_balancers()
        .into_paginator()
        .send()
        .try_collect()
        .await
    {
        Ok(pages) => {
            let all: Vec<_> = pages
                .iter()
                .flat_map(|p| p.load_balancer_descriptions())
                .collect();
            let mut tagged = BTreeSet::new();
            let names: Vec<String> = all
                .iter()
                .filter_map(|lb| lb.load_balancer_name().map(str::to_owned))
                .collect();
            // One by one: a load balancer deleted meanwhile fails only its own call.
            for name in &names {
                match elb.describe_tags().load_balancer_names(name).send().await {
                    Ok(described) => {
                        for d in described.tag_descriptions() {
                            if stack.tagged(
                                d.tags()
                                    .iter()
                                    .map(|t| (t.key(), t.value().unwrap_or_default())),
                            ) {
                                tagged.insert(name.clone());
                            }
                        }
                    }
                    Err(e) if gone(&e) => {}
                    Err(e) => found.failed(&format!("the tags of Classic load balancer {name}"), e),
                }
            }
            for lb in all {
                let name = lb.load_balancer_name().unwrap_or_default();
                let in_subnets = lb.subnets().iter().any(|s| network.contains(None, Some(s)));
                let grouped = lb
                    .security_groups()
                    .iter()
                    .any(|g| network.groups.contains(g));
                if tagged.contains(name)
                    || stack.named(name)
                    || network.contains(lb.vpc_id(), None)
                    || in_subnets
                    || grouped
                {
                    found.add("Classic load balancer", name, "");
                }
            }
        }
        Err(e) => found.failed("Classic load balancers", e),
    }
}

/// Which of `arns` carry the stack's tags.
async fn elbv2_tagged(
    elbv2: &aws_sdk_elasticloadbalancingv2::Client,
    stack: &Stack<'_>,
    arns: &[String],
    found: &mut Found,
) -> BTreeSet<String> {
    let mut tagged = BTreeSet::new();
    // One by one: a resource deleted meanwhile fails only its own call.
    for arn in arns {
        match elbv2.describe_tags().resource_arns(arn).send().await {
            Ok(described) => {
                for d in described.tag_descriptions() {
                    let tags = d
                        .tags()
                        .iter()
                        .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default()));
                    if stack.tagged(tags) {
                        tagged.insert(arn.clone());
                    }
                }
            }
            Err(e) if gone(&e) => {}
            Err(e) => found.failed(&format!("the tags of {arn}"), e),
        }
    }
    tagged
}

async fn repositories(sdk: &SdkConfig, stack: &Stack<'_>, found: &mut Found) {
    let ecr = aws_sdk_ecr::Client::new(sdk);
    match ecr
        .describe_repositories()
        .into_paginator()
        .send()
        .try_collect()
        .await
    {
        Ok(pages) => {
            for repository in pages.iter().flat_map(|p| p.repositories()) {
                let name = repository.repository_name().unwrap_or_default();
                let arn = repository.repository_arn().unwrap_or_default();
                let tagged = match ecr.list_tags_for_resource().resource_arn(arn).send().await {
                    Ok(tags) => stack.tagged(tags.tags().iter().map(|t| (t.key(), t.value()))),
                    Err(e) if gone(&e) => continue,
                    Err(e) => {
                        found.failed(&format!("the tags of repository {name}"), e);
                        false
                    }
                };
                if tagged || name.starts_with(&stack.repository_prefix) {
                    found.add("ECR repository", name, "");
                }
            }
        }
        Err(e) => found.failed("ECR repositories", e),
    }
}
