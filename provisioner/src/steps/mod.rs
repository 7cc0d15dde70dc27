//! One module per kind of resource the stack owns; see [`crate::plan::Step`].

pub mod cluster;
pub mod iam;
pub mod leftovers;
pub mod load_balancer;
pub mod network;
pub mod nodes;
pub mod platform;
pub mod security_groups;
pub mod targets;

use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};

use crate::stack::{PART_TAG, STACK_TAG, Stack};

/// EC2 tags for a new resource, applied in the create call itself so that nothing exists untagged
/// even if the process dies right after.
pub(crate) fn ec2_tags(
    stack: &Stack,
    resource: ResourceType,
    part: &str,
    extra: &[(String, String)],
) -> TagSpecification {
    let tags = stack
        .tags(part)
        .into_iter()
        .chain(extra.iter().cloned())
        .map(|(k, v)| Tag::builder().key(k).value(v).build());
    TagSpecification::builder()
        .resource_type(resource)
        .set_tags(Some(tags.collect()))
        .build()
}

/// Filters that select the stack's resources, optionally one part of it.
pub(crate) fn ec2_filters(stack: &Stack, part: Option<&str>) -> Vec<Filter> {
    let mut filters = vec![
        Filter::builder()
            .name(format!("tag:{STACK_TAG}"))
            .values(&stack.name)
            .build(),
    ];
    if let Some(part) = part {
        filters.push(
            Filter::builder()
                .name(format!("tag:{PART_TAG}"))
                .values(part)
                .build(),
        );
    }
    filters
}

pub(crate) fn ec2_filter(name: &str, value: impl Into<String>) -> Filter {
    Filter::builder().name(name).values(value).build()
}

/// The one match of a lookup by tag; two are a state this tool never creates, so say so.
pub(crate) fn single<T>(found: Vec<T>, what: &str) -> Result<Option<T>, crate::plan::StepError> {
    if found.len() > 1 {
        return Err(crate::plan::StepError::Failed {
            resource: what.to_owned(),
            reason: format!(
                "{} resources carry this stack's tags; expected one. Remove the extra by hand or run `provisioner down`",
                found.len()
            ),
        });
    }
    Ok(found.into_iter().next())
}

/// Whether a list of `(key, value)` tags marks the resource as this stack's.
pub(crate) fn owned<'a>(stack: &Stack, mut tags: impl Iterator<Item = (&'a str, &'a str)>) -> bool {
    tags.any(|(k, v)| k == STACK_TAG && v == stack.name)
}

/// Deletion where "already gone" is success: `Ok(true)` deleted now, `Ok(false)` was absent.
pub(crate) fn ignore_not_found(
    result: Result<impl Sized, crate::aws::AwsError>,
) -> Result<bool, crate::aws::AwsError> {
    match result {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}

pub(crate) fn deleted_or_absent(deleted: bool) -> crate::progress::Action {
    if deleted {
        crate::progress::Action::Deleted
    } else {
        crate::progress::Action::Absent
    }
}
