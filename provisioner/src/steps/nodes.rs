//! Worker nodes: a launch template (AL2023 EKS AMI from SSM, node security group, instance
//! profile, nodeadm user data) and an Auto Scaling group across both subnets.

use aws_sdk_autoscaling::types::{LaunchTemplateSpecification, LifecycleState, Tag as AsgTag};
use aws_sdk_ec2::types::{
    LaunchTemplateHttpTokensState, LaunchTemplateIamInstanceProfileSpecificationRequest,
    LaunchTemplateInstanceMetadataOptionsRequest, LaunchTemplateTagSpecificationRequest,
    RequestLaunchTemplateData, ResourceType, Tag,
};

use super::{deleted_or_absent, ec2_filters, ec2_tags, ignore_not_found};
use crate::aws::AwsResultExt;
use crate::plan::{OnResource, Resource, Scope, Step, StepError, StepFuture, input, recorded};
use crate::progress::Action;
use crate::retry::{Poll, retry_not_yet, wait_for};
use crate::stack::STACK_TAG;
use crate::userdata::{self, NodeJoin};

/// A worker instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub instance_id: String,
    pub private_ip: String,
    pub zone: String,
}

/// What the nodes step produces.
#[derive(Debug, Clone)]
pub struct Nodes {
    pub auto_scaling_group: String,
    pub instances: Vec<Node>,
}

pub struct NodesStep;

/// The SSM parameter holding the recommended EKS-optimized AL2023 AMI for a Kubernetes version.
pub fn ami_parameter(version: &str) -> String {
    format!(
        "/aws/service/eks/optimized-ami/{version}/amazon-linux-2023/x86_64/standard/recommended/image_id"
    )
}

impl Step for NodesStep {
    fn name(&self) -> &'static str {
        "nodes"
    }

    fn title(&self) -> &'static str {
        "launch template and Auto Scaling group of worker nodes"
    }

    fn needs(&self) -> &'static [&'static str] {
        &["network", "iam", "security-groups", "cluster"]
    }

    fn ensure<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, ()> {
        Box::pin(async move {
            let template = ensure_launch_template(s).await?;
            let group = s.stack.auto_scaling_group();
            ensure_group(s, &template).await?;
            let instances = wait_in_service(s, &group).await?;
            let _ = s.outputs.nodes.set(Nodes {
                auto_scaling_group: group,
                instances,
            });
            Ok(())
        })
    }

    fn destroy<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, ()> {
        Box::pin(async move {
            let group = s.stack.auto_scaling_group();
            let resource = format!("Auto Scaling group {group}");
            match describe_group(s, &group).await? {
                None => s.record(Action::Absent, "Auto Scaling group", &group),
                Some(g) => {
                    if !owned_group(s, &g) {
                        return Err(StepError::NotOwned { resource });
                    }
                    let result = retry_not_yet(
                        s.config.timeouts.resources(),
                        |why| s.waiting(why),
                        || async {
                            s.aws
                                .autoscaling
                                .delete_auto_scaling_group()
                                .auto_scaling_group_name(&group)
                                .force_delete(true)
                                .send()
                                .await
                                .op("autoscaling:DeleteAutoScalingGroup")
                        },
                    )
                    .await;
                    match result {
                        Ok(_) => {}
                        Err(e) if e.is_not_found() => {}
                        Err(e) => return Err(e).on(&resource),
                    }
                    wait_for(
                        s.config.timeouts.resources(),
                        |state| s.waiting(state),
                        || async {
                            Ok(match describe_group(s, &group).await? {
                                None => Poll::Ready(()),
                                Some(g) => Poll::Pending(format!(
                                    "group {}: {} instances",
                                    g.status().unwrap_or("deleting"),
                                    g.instances().len()
                                )),
                            })
                        },
                    )
                    .await
                    .on(&resource)?;
                    s.record(Action::Deleted, "Auto Scaling group", &group);
                }
            }
            terminate_stragglers(s).await?;
            delete_launch_template(s).await
        })
    }

    fn inspect<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, Vec<Resource>> {
        Box::pin(async move {
            let mut found = Vec::new();
            let template = s.stack.launch_template();
            match describe_template(s, &template).await? {
                Some(t) => found.push(Resource::found(
                    "launch template",
                    &template,
                    t.launch_template_id().unwrap_or_default(),
                    format!("version {}", t.latest_version_number().unwrap_or_default()),
                )),
                None => found.push(Resource::missing("launch template", &template)),
            }
            let group = s.stack.auto_scaling_group();
            match describe_group(s, &group).await? {
                Some(g) => {
                    let in_service = g
                        .instances()
                        .iter()
                        .filter(|i| i.lifecycle_state() == Some(&LifecycleState::InService))
                        .count();
                    found.push(Resource::found(
                        "Auto Scaling group",
                        &group,
                        g.auto_scaling_group_arn().unwrap_or(&group),
                        format!(
                            "{in_service}/{} InService (min {}, max {})",
                            g.desired_capacity().unwrap_or_default(),
                            g.min_size().unwrap_or_default(),
                            g.max_size().unwrap_or_default()
                        ),
                    ));
                }
                None => found.push(Resource::missing("Auto Scaling group", &group)),
            }
            for instance in stack_instances(s).await? {
                found.push(Resource::observed(
                    "instance",
                    instance.private_ip_address().unwrap_or("-"),
                    instance.instance_id().unwrap_or_default(),
                    instance
                        .state()
                        .and_then(|st| st.name())
                        .map(|n| n.as_str().to_owned())
                        .unwrap_or_default(),
                ));
            }
            Ok(found)
        })
    }
}

fn owned_group(s: &Scope<'_>, group: &aws_sdk_autoscaling::types::AutoScalingGroup) -> bool {
    super::owned(
        &s.stack,
        group
            .tags()
            .iter()
            .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default())),
    )
}

async fn describe_template(
    s: &Scope<'_>,
    name: &str,
) -> Result<Option<aws_sdk_ec2::types::LaunchTemplate>, StepError> {
    match s
        .aws
        .ec2
        .describe_launch_templates()
        .launch_template_names(name)
        .send()
        .await
        .op("ec2:DescribeLaunchTemplates")
    {
        Ok(out) => Ok(out.launch_templates().first().cloned()),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e).on(format!("launch template {name}")),
    }
}

async fn describe_group(
    s: &Scope<'_>,
    name: &str,
) -> Result<Option<aws_sdk_autoscaling::types::AutoScalingGroup>, StepError> {
    let out = s
        .aws
        .autoscaling
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await
        .op("autoscaling:DescribeAutoScalingGroups")
        .on(format!("Auto Scaling group {name}"))?;
    Ok(out.auto_scaling_groups().first().cloned())
}

/// Instances carrying the stack's tag (the group propagates it at launch), not yet terminated.
async fn stack_instances(s: &Scope<'_>) -> Result<Vec<aws_sdk_ec2::types::Instance>, StepError> {
    let out = s
        .aws
        .ec2
        .describe_instances()
        .set_filters(Some(ec2_filters(&s.stack, None)))
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("instance-state-name")
                .values("pending")
                .values("running")
                .values("stopping")
                .values("stopped")
                .values("shutting-down")
                .build(),
        )
        .send()
        .await
        .op("ec2:DescribeInstances")
        .on("instances")?;
    Ok(out
        .reservations()
        .iter()
        .flat_map(|r| r.instances().iter().cloned())
        .collect())
}

/// The launch template data the stack wants now.
async fn desired_template(s: &Scope<'_>) -> Result<RequestLaunchTemplateData, StepError> {
    let cluster = input(&s.outputs.cluster, "cluster")?;
    let roles = input(&s.outputs.iam, "iam")?;
    let groups = input(&s.outputs.security_groups, "security-groups")?;
    let parameter = ami_parameter(&s.config.kubernetes_version);
    let ami = s
        .aws
        .ssm
        .get_parameter()
        .name(&parameter)
        .send()
        .await
        .op("ssm:GetParameter")
        .on(format!("SSM parameter {parameter}"))?
        .parameter()
        .and_then(|p| p.value())
        .map(str::to_owned)
        .ok_or_else(|| StepError::Failed {
            resource: format!("SSM parameter {parameter}"),
            reason: "has no value".into(),
        })?;
    let user_data = userdata::encoded(&NodeJoin {
        cluster_name: &cluster.name,
        api_server_endpoint: &cluster.endpoint,
        certificate_authority: &cluster.certificate_authority,
        service_cidr: &cluster.service_cidr,
        node_labels: &[(STACK_TAG, &s.stack.name)],
    });
    let instance_tags: Vec<Tag> = s
        .stack
        .tags("node")
        .into_iter()
        .chain([(s.stack.kubernetes_cluster_tag(), "owned".to_owned())])
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    Ok(RequestLaunchTemplateData::builder()
        .image_id(ami)
        .instance_type(aws_sdk_ec2::types::InstanceType::from(
            s.config.instance_type.as_str(),
        ))
        .iam_instance_profile(
            LaunchTemplateIamInstanceProfileSpecificationRequest::builder()
                .arn(&roles.node_instance_profile_arn)
                .build(),
        )
        .security_group_ids(&groups.node_sg_id)
        .user_data(user_data)
        // IMDSv2 only; hop limit 2 so that pods (one hop further) can still reach it.
        .metadata_options(
            LaunchTemplateInstanceMetadataOptionsRequest::builder()
                .http_tokens(LaunchTemplateHttpTokensState::Required)
                .http_put_response_hop_limit(2)
                .build(),
        )
        .tag_specifications(
            LaunchTemplateTagSpecificationRequest::builder()
                .resource_type(ResourceType::Instance)
                .set_tags(Some(instance_tags.clone()))
                .build(),
        )
        .tag_specifications(
            LaunchTemplateTagSpecificationRequest::builder()
                .resource_type(ResourceType::Volume)
                .set_tags(Some(instance_tags))
                .build(),
        )
        .build())
}

async fn ensure_launch_template(s: &Scope<'_>) -> Result<String, StepError> {
    let name = s.stack.launch_template();
    let resource = format!("launch template {name}");
    let desired = desired_template(s).await?;
    let Some(existing) = describe_template(s, &name).await? else {
        let result = s
            .aws
            .ec2
            .create_launch_template()
            .launch_template_name(&name)
            .version_description("kdeploy nodes")
            .launch_template_data(desired)
            .tag_specifications(ec2_tags(
                &s.stack,
                ResourceType::LaunchTemplate,
                "launch-template",
                &[],
            ))
            .send()
            .await
            .op("ec2:CreateLaunchTemplate");
        match result {
            Ok(_) => recorded(s, true, "launch template", &name),
            Err(e) if e.is("InvalidLaunchTemplateName.AlreadyExistsException") => {}
            Err(e) => return Err(e).on(resource),
        }
        return Ok(name);
    };
    if !super::owned(
        &s.stack,
        existing
            .tags()
            .iter()
            .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default())),
    ) {
        return Err(StepError::NotOwned { resource });
    }
    // A new version only when what nodes boot with changed (AMI, user data, type, profile).
    let latest = s
        .aws
        .ec2
        .describe_launch_template_versions()
        .launch_template_name(&name)
        .versions("$Latest")
        .send()
        .await
        .op("ec2:DescribeLaunchTemplateVersions")
        .on(&resource)?;
    let current = latest
        .launch_template_versions()
        .first()
        .and_then(|v| v.launch_template_data());
    let same = current.is_some_and(|c| {
        c.image_id() == desired.image_id()
            && c.user_data() == desired.user_data()
            && c.instance_type() == desired.instance_type()
            && c.security_group_ids() == desired.security_group_ids()
            && c.iam_instance_profile().and_then(|p| p.arn())
                == desired.iam_instance_profile().and_then(|p| p.arn())
    });
    if same {
        recorded(s, false, "launch template", &name);
    } else {
        s.aws
            .ec2
            .create_launch_template_version()
            .launch_template_name(&name)
            .version_description("kdeploy nodes")
            .launch_template_data(desired)
            .send()
            .await
            .op("ec2:CreateLaunchTemplateVersion")
            .on(&resource)?;
        s.record(
            Action::Updated,
            "launch template",
            format!("{name} (new version; replace nodes to roll it out)"),
        );
    }
    Ok(name)
}

async fn ensure_group(s: &Scope<'_>, template: &str) -> Result<(), StepError> {
    let network = input(&s.outputs.network, "network")?;
    let name = s.stack.auto_scaling_group();
    let resource = format!("Auto Scaling group {name}");
    let counts = s.config.nodes;
    match describe_group(s, &name).await? {
        Some(group) => {
            if !owned_group(s, &group) {
                return Err(StepError::NotOwned { resource });
            }
            let sizes = (group.min_size(), group.desired_capacity(), group.max_size());
            if sizes != (Some(counts.min), Some(counts.desired), Some(counts.max)) {
                s.aws
                    .autoscaling
                    .update_auto_scaling_group()
                    .auto_scaling_group_name(&name)
                    .min_size(counts.min)
                    .desired_capacity(counts.desired)
                    .max_size(counts.max)
                    .send()
                    .await
                    .op("autoscaling:UpdateAutoScalingGroup")
                    .on(&resource)?;
                s.record(
                    Action::Updated,
                    "Auto Scaling group",
                    format!(
                        "{name} min {} desired {} max {}",
                        counts.min, counts.desired, counts.max
                    ),
                );
            } else {
                recorded(s, false, "Auto Scaling group", &name);
            }
            Ok(())
        }
        None => {
            let tags = s
                .stack
                .tags("node")
                .into_iter()
                .chain([(s.stack.kubernetes_cluster_tag(), "owned".to_owned())])
                .map(|(k, v)| {
                    AsgTag::builder()
                        .key(k)
                        .value(v)
                        .propagate_at_launch(true)
                        .resource_id(&name)
                        .resource_type("auto-scaling-group")
                        .build()
                })
                .collect::<Vec<_>>();
            let result = retry_not_yet(
                s.config.timeouts.resources(),
                |why| s.waiting(why),
                || async {
                    s.aws
                        .autoscaling
                        .create_auto_scaling_group()
                        .auto_scaling_group_name(&name)
                        .launch_template(
                            LaunchTemplateSpecification::builder()
                                .launch_template_name(template)
                                .version("$Latest")
                                .build(),
                        )
                        .min_size(counts.min)
                        .desired_capacity(counts.desired)
                        .max_size(counts.max)
                        .vpc_zone_identifier(network.subnet_ids.join(","))
                        .health_check_type("EC2")
                        .health_check_grace_period(300)
                        .set_tags(Some(tags.clone()))
                        .send()
                        .await
                        .op("autoscaling:CreateAutoScalingGroup")
                },
            )
            .await;
            match result {
                Ok(_) => recorded(s, true, "Auto Scaling group", &name),
                Err(e) if e.is("AlreadyExists") => recorded(s, false, "Auto Scaling group", &name),
                Err(e) => return Err(e).on(resource),
            }
            Ok(())
        }
    }
}

async fn wait_in_service(s: &Scope<'_>, name: &str) -> Result<Vec<Node>, StepError> {
    let want = s.config.nodes.desired as usize;
    let resource = format!("Auto Scaling group {name}");
    let ids = wait_for(
        s.config.timeouts.resources(),
        |state| s.waiting(state),
        || async {
            let Some(group) = describe_group(s, name).await? else {
                return Err(StepError::Failed {
                    resource: resource.clone(),
                    reason: "disappeared while waiting for its instances".into(),
                });
            };
            let in_service: Vec<String> = group
                .instances()
                .iter()
                .filter(|i| i.lifecycle_state() == Some(&LifecycleState::InService))
                .filter_map(|i| i.instance_id().map(str::to_owned))
                .collect();
            if in_service.len() >= want {
                Ok(Poll::Ready(in_service))
            } else {
                Ok(Poll::Pending(format!(
                    "{}/{want} instances InService",
                    in_service.len()
                )))
            }
        },
    )
    .await
    .on(&resource)?;
    let out = s
        .aws
        .ec2
        .describe_instances()
        .set_instance_ids(Some(ids))
        .send()
        .await
        .op("ec2:DescribeInstances")
        .on(&resource)?;
    let mut nodes: Vec<Node> = out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter_map(|i| {
            Some(Node {
                instance_id: i.instance_id()?.to_owned(),
                private_ip: i.private_ip_address()?.to_owned(),
                zone: i
                    .placement()
                    .and_then(|p| p.availability_zone())
                    .unwrap_or_default()
                    .to_owned(),
            })
        })
        .collect();
    nodes.sort_by(|a, b| a.private_ip.cmp(&b.private_ip));
    for node in &nodes {
        s.record(
            Action::Kept,
            "node",
            format!("{} {} ({})", node.instance_id, node.private_ip, node.zone),
        );
    }
    Ok(nodes)
}

/// Instances of the stack that outlived their group (launched by hand, or a group deleted
/// without force): terminate them and wait, or their interfaces block the subnets.
async fn terminate_stragglers(s: &Scope<'_>) -> Result<(), StepError> {
    let ids: Vec<String> = stack_instances(s)
        .await?
        .iter()
        .filter(|i| {
            i.state()
                .and_then(|st| st.name())
                .is_some_and(|n| n.as_str() != "shutting-down")
        })
        .filter_map(|i| i.instance_id().map(str::to_owned))
        .collect();
    if !ids.is_empty() {
        ignore_not_found(
            s.aws
                .ec2
                .terminate_instances()
                .set_instance_ids(Some(ids.clone()))
                .send()
                .await
                .op("ec2:TerminateInstances"),
        )
        .on("instances")?;
        for id in &ids {
            s.record(Action::Deleted, "instance", id);
        }
    }
    wait_for(
        s.config.timeouts.resources(),
        |state| s.waiting(state),
        || async {
            let left = stack_instances(s).await?.len();
            Ok(if left == 0 {
                Poll::Ready(())
            } else {
                Poll::Pending(format!("{left} instances terminating"))
            })
        },
    )
    .await
    .on("instances")
}

async fn delete_launch_template(s: &Scope<'_>) -> Result<(), StepError> {
    let name = s.stack.launch_template();
    let resource = format!("launch template {name}");
    let Some(template) = describe_template(s, &name).await? else {
        s.record(Action::Absent, "launch template", &name);
        return Ok(());
    };
    if !super::owned(
        &s.stack,
        template
            .tags()
            .iter()
            .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default())),
    ) {
        return Err(StepError::NotOwned { resource });
    }
    let deleted = ignore_not_found(
        s.aws
            .ec2
            .delete_launch_template()
            .launch_template_name(&name)
            .send()
            .await
            .op("ec2:DeleteLaunchTemplate"),
    )
    .on(&resource)?;
    s.record(deleted_or_absent(deleted), "launch template", &name);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ami_parameter_is_the_documented_al2023_path() {
        assert_eq!(
            ami_parameter("1.34"),
            "/aws/service/eks/optimized-ami/1.34/amazon-linux-2023/x86_64/standard/recommended/image_id"
        );
    }
}
