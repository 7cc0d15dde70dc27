//! Worker nodes: a launch template (AL2023 EKS AMI from SSM, node security group, instance
//! profile, nodeadm user data) and an Auto Scaling group across both subnets.

use super::Removal;
use super::cluster::{self, Cluster};
use super::iam::{self, Roles};
use super::network::{self, Network};
use super::security_groups::{self, SecurityGroups};
use crate::aws::autoscaling::{Group, NewGroup};
use crate::aws::ec2::NodeTemplate;
use crate::plan::{OnResource, Output, Resource, Scope, Step, StepError, StepFuture, StepId};
use crate::progress::Action;
use crate::retry::{Poll, retry_not_yet, wait_for};
use crate::stack::STACK_TAG;
use crate::userdata::{self, NodeJoin};

pub const ID: StepId = StepId::new("nodes");

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

impl Output for Nodes {
    const STEP: StepId = ID;
}

pub struct NodesStep;

/// The SSM parameter holding the recommended EKS-optimized AL2023 AMI for a Kubernetes version.
pub fn ami_parameter(version: &str) -> String {
    format!(
        "/aws/service/eks/optimized-ami/{version}/amazon-linux-2023/x86_64/standard/recommended/image_id"
    )
}

impl Step for NodesStep {
    fn id(&self) -> StepId {
        ID
    }

    fn title(&self) -> &'static str {
        "launch template and Auto Scaling group of worker nodes"
    }

    fn needs(&self) -> &[StepId] {
        &[network::ID, iam::ID, security_groups::ID, cluster::ID]
    }

    fn ensure<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, ()> {
        Box::pin(async move {
            let template = ensure_launch_template(s).await?;
            ensure_group(s, &template).await?;
            let instances = wait_in_service(s).await?;
            s.outputs.put(Nodes {
                auto_scaling_group: s.stack.auto_scaling_group(),
                instances,
            });
            Ok(())
        })
    }

    fn destroy<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, ()> {
        Box::pin(async move {
            let name = s.stack.auto_scaling_group();
            let autoscaling = s.aws.autoscaling();
            match owned_group(s).await? {
                None => s.record(Action::Absent, "Auto Scaling group", &name),
                Some(_) => {
                    Removal::new(s, "Auto Scaling group", &name)
                        .delete_and_wait(
                            || autoscaling.delete_group(&name),
                            || async {
                                Ok(describe_group(s).await?.map(|g| {
                                    format!(
                                        "group {}: {} instances",
                                        g.status.as_deref().unwrap_or("deleting"),
                                        g.instances.len()
                                    )
                                }))
                            },
                        )
                        .await?
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
            match s
                .aws
                .ec2()
                .launch_template(&template)
                .await
                .on(format!("launch template {template}"))?
            {
                Some(t) => {
                    let state = format!("version {}", t.latest_version);
                    found.push(Resource::found("launch template", &template, t.id, state));
                }
                None => found.push(Resource::missing("launch template", &template)),
            }
            let group = s.stack.auto_scaling_group();
            match describe_group(s).await? {
                Some(g) => {
                    let state = format!(
                        "{}/{} InService (min {}, max {})",
                        g.in_service().len(),
                        g.desired.unwrap_or_default(),
                        g.min.unwrap_or_default(),
                        g.max.unwrap_or_default()
                    );
                    let id = g.arn.unwrap_or_else(|| group.clone());
                    found.push(Resource::found("Auto Scaling group", &group, id, state));
                }
                None => found.push(Resource::missing("Auto Scaling group", &group)),
            }
            for instance in s
                .aws
                .ec2()
                .stack_instances(&s.stack)
                .await
                .on("instances")?
            {
                found.push(
                    Resource::found(
                        "instance",
                        instance.private_ip.as_deref().unwrap_or("-"),
                        instance.id,
                        instance.state,
                    )
                    .observed(),
                );
            }
            Ok(found)
        })
    }
}

/// Tags of the group and of what it launches: the stack's, and the cluster's "owned" mark.
fn node_tags(s: &Scope<'_>) -> Vec<(String, String)> {
    let mut tags = s.stack.tags("node");
    tags.push((s.stack.kubernetes_cluster_tag(), "owned".to_owned()));
    tags
}

async fn describe_group(s: &Scope<'_>) -> Result<Option<Group>, StepError> {
    let name = s.stack.auto_scaling_group();
    s.aws
        .autoscaling()
        .group(&name)
        .await
        .on(format!("Auto Scaling group {name}"))
}

/// The group if it exists and carries the stack's tag; an untagged one is never touched.
async fn owned_group(s: &Scope<'_>) -> Result<Option<Group>, StepError> {
    match describe_group(s).await? {
        Some(g) if !s.stack.owns(&g.tags) => Err(StepError::NotOwned {
            resource: format!("Auto Scaling group {}", g.name),
        }),
        found => Ok(found),
    }
}

/// What the nodes should boot with now.
async fn desired_template(s: &Scope<'_>) -> Result<NodeTemplate, StepError> {
    let cluster = s.input::<Cluster>()?;
    let roles = s.input::<Roles>()?;
    let groups = s.input::<SecurityGroups>()?;
    let parameter = ami_parameter(&cluster.version);
    let image_id = s
        .aws
        .ssm()
        .parameter(&parameter)
        .await
        .on(format!("SSM parameter {parameter}"))?;
    let user_data = userdata::encoded(&NodeJoin {
        cluster_name: &cluster.name,
        api_server_endpoint: &cluster.endpoint,
        certificate_authority: &cluster.certificate_authority,
        service_cidr: &cluster.service_cidr,
        node_labels: &[(STACK_TAG, &s.stack.name)],
    });
    Ok(NodeTemplate {
        image_id,
        instance_type: s.config.instance_type.clone(),
        instance_profile_arn: roles.node_instance_profile_arn.clone(),
        security_group_id: groups.node_sg_id.clone(),
        user_data,
        tags: node_tags(s),
    })
}

async fn ensure_launch_template(s: &Scope<'_>) -> Result<String, StepError> {
    let ec2 = s.aws.ec2();
    let name = s.stack.launch_template();
    let resource = format!("launch template {name}");
    let desired = desired_template(s).await?;
    let Some(existing) = ec2.launch_template(&name).await.on(&resource)? else {
        let tags = s.stack.tags("launch-template");
        match ec2.create_launch_template(&name, &desired, &tags).await {
            Ok(()) => s.kept_or_created(true, "launch template", &name),
            Err(e) if e.is("InvalidLaunchTemplateName.AlreadyExistsException") => {}
            Err(e) => return Err(e).on(resource),
        }
        return Ok(name);
    };
    if !s.stack.owns(&existing.tags) {
        return Err(StepError::NotOwned { resource });
    }
    // A new version only when what nodes boot with changed (AMI, user data, type, profile,
    // metadata options: a stack made before the IMDS hop limit went to 1 gets a version here, and
    // the Auto Scaling group, on `$Latest`, launches every later node with it).
    let same = ec2
        .latest_version_launches(&name, &desired)
        .await
        .on(&resource)?;
    if same {
        s.kept_or_created(false, "launch template", &name);
    } else {
        ec2.create_launch_template_version(&name, &desired)
            .await
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
    let network = s.input::<Network>()?;
    let autoscaling = s.aws.autoscaling();
    let name = s.stack.auto_scaling_group();
    let resource = format!("Auto Scaling group {name}");
    let counts = s.config.nodes;
    if let Some(group) = owned_group(s).await? {
        if (group.min, group.desired, group.max)
            == (Some(counts.min), Some(counts.desired), Some(counts.max))
        {
            s.kept_or_created(false, "Auto Scaling group", &name);
        } else {
            autoscaling
                .resize(&name, counts.min, counts.desired, counts.max)
                .await
                .on(&resource)?;
            s.record(
                Action::Updated,
                "Auto Scaling group",
                format!(
                    "{name} min {} desired {} max {}",
                    counts.min, counts.desired, counts.max
                ),
            );
        }
        return Ok(());
    }
    let tags = node_tags(s);
    let new = NewGroup {
        name: &name,
        launch_template: template,
        min: counts.min,
        desired: counts.desired,
        max: counts.max,
        subnet_ids: &network.subnet_ids,
        tags: &tags,
    };
    let result = retry_not_yet(
        s.config.timeouts.resources(),
        |why| s.waiting(why),
        || autoscaling.create_group(&new),
    )
    .await;
    match result {
        Ok(()) => s.kept_or_created(true, "Auto Scaling group", &name),
        Err(e) if e.is("AlreadyExists") => s.kept_or_created(false, "Auto Scaling group", &name),
        Err(e) => return Err(e).on(resource),
    }
    Ok(())
}

async fn wait_in_service(s: &Scope<'_>) -> Result<Vec<Node>, StepError> {
    let want = s.config.nodes.desired as usize;
    let resource = format!("Auto Scaling group {}", s.stack.auto_scaling_group());
    let ids = wait_for(
        s.config.timeouts.resources(),
        |state| s.waiting(state),
        || async {
            let Some(group) = describe_group(s).await? else {
                return Err(StepError::conflict(
                    &resource,
                    "disappeared while waiting for its instances",
                ));
            };
            let in_service = group.in_service();
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
    let instances = s.aws.ec2().instances(ids).await.on(&resource)?;
    let mut nodes: Vec<Node> = instances
        .into_iter()
        .filter_map(|i| {
            Some(Node {
                private_ip: i.private_ip?,
                instance_id: i.id,
                zone: i.zone,
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
    let ec2 = s.aws.ec2();
    let ids: Vec<String> = ec2
        .stack_instances(&s.stack)
        .await
        .on("instances")?
        .into_iter()
        .filter(|i| !i.state.is_empty() && i.state != "shutting-down")
        .map(|i| i.id)
        .collect();
    if !ids.is_empty() {
        Removal::new(s, "instances", ids.join(","))
            .release(|| ec2.terminate_instances(ids.clone()))
            .await?;
        for id in &ids {
            s.record(Action::Deleted, "instance", id);
        }
    }
    wait_for(
        s.config.timeouts.resources(),
        |state| s.waiting(state),
        || async {
            let left = ec2.stack_instances(&s.stack).await.on("instances")?.len();
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
    let ec2 = s.aws.ec2();
    let name = s.stack.launch_template();
    let resource = format!("launch template {name}");
    let Some(template) = ec2.launch_template(&name).await.on(&resource)? else {
        s.record(Action::Absent, "launch template", &name);
        return Ok(());
    };
    if !s.stack.owns(&template.tags) {
        return Err(StepError::NotOwned { resource });
    }
    Removal::new(s, "launch template", &name)
        .delete(|| ec2.delete_launch_template(&name))
        .await
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
