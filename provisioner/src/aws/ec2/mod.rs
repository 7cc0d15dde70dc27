//! EC2: the network (VPC, subnets, gateway, routes, interfaces), security groups, launch templates
//! and instances. Lookups select the stack's resources by tag; creates tag in the same call.

mod instances;
mod network;
mod security_groups;

use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};

use super::Tags;
use crate::stack::{PART_TAG, STACK_TAG, Stack};

pub use instances::{Instance, LaunchTemplate, NodeTemplate, TemplateVersion};
pub use network::{
    Association, DnsAttribute, InternetGateway, NetworkInterface, Route, RouteTable, Subnet, Vpc,
};
pub use security_groups::{Rule, SecurityGroup, Source};

/// The EC2 layer; see [`super::Aws::ec2`].
pub struct Ec2<'a>(pub(in crate::aws) &'a aws_sdk_ec2::Client);

pub(super) fn tags(tags: &[Tag]) -> Tags {
    tags.iter()
        .map(|t| {
            (
                t.key().unwrap_or("").to_owned(),
                t.value().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// Tags for a new resource, applied in the create call itself so that nothing exists untagged
/// even if the process dies right after.
pub(super) fn tag_spec(resource: ResourceType, pairs: &[(String, String)]) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(resource)
        .set_tags(Some(
            pairs
                .iter()
                .map(|(k, v)| Tag::builder().key(k).value(v).build())
                .collect(),
        ))
        .build()
}

/// Filters that select the stack's resources, optionally one part of it.
pub(super) fn owned_by(stack: &Stack, part: Option<&str>) -> Vec<Filter> {
    let mut filters = vec![filter(&format!("tag:{STACK_TAG}"), &stack.name)];
    if let Some(part) = part {
        filters.push(filter(&format!("tag:{PART_TAG}"), part));
    }
    filters
}

pub(super) fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}
