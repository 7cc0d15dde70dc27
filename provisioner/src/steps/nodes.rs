//! Worker nodes: a launch template (AL2023 EKS AMI from SSM, node security group, instance
//! profile, nodeadm user data) and an Auto Scaling group across both subnets.

use super::Removal;
use super::cluster::{self, Cluster};
use super::iam::{self, Roles};
use super::network::{self, Network};
use super::security_groups::{self, SecurityGroups};
use crate::aws::autoscaling::{Group, NewGroup};
use crate::aws::ec2::{NodeTemplate, TemplateVersion};
use crate::config::NodeCounts;
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
                    let found_template = Resource::found("launch template", &template, t.id, state);
                    found.push(match template_changes(s).await? {
                        Some(change) => found_template.updating(change),
                        None => found_template,
                    });
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
                    let change = size_change(&g, s.config.nodes);
                    let id = g.arn.clone().unwrap_or_else(|| group.clone());
                    let found_group = Resource::found("Auto Scaling group", &group, id, state);
                    found.push(match change {
                        Some(change) => found_group.updating(change),
                        None => found_group,
                    });
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

/// What UpdateAutoScalingGroup changes on `group` to match `counts`, or `None` when it matches.
fn size_change(group: &Group, counts: NodeCounts) -> Option<String> {
    let fields = [
        ("min", group.min, counts.min),
        ("desired", group.desired, counts.desired),
        ("max", group.max, counts.max),
    ];
    let changed: Vec<String> = fields
        .iter()
        .filter(|(_, now, wanted)| *now != Some(*wanted))
        .map(|(field, now, wanted)| match now {
            Some(now) => format!("{field} {now} -> {wanted}"),
            None => format!("{field} -> {wanted}"),
        })
        .collect();
    if changed.is_empty() {
        return None;
    }
    let now = group.desired.unwrap_or_default();
    let nodes = match counts.desired - now {
        more if more > 0 => format!(" (launches {more} node{})", plural(more)),
        fewer if fewer < 0 => format!(" (terminates {} node{})", -fewer, plural(-fewer)),
        _ => String::new(),
    };
    Some(format!(
        "UpdateAutoScalingGroup {}{nodes}",
        changed.join(", ")
    ))
}

fn plural(n: i32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// What a launch template version differs in from the nodes wanted, in the operator's words.
fn template_difference(
    current: &TemplateVersion,
    instance_type: &str,
    image: Option<(&str, &str)>,
) -> Vec<String> {
    let mut changes = Vec::new();
    let now_type = current.instance_type.as_deref().unwrap_or("none");
    if now_type != instance_type {
        changes.push(format!("instance type {now_type} -> {instance_type}"));
    }
    if let Some((image_id, version)) = image {
        let now_image = current.image_id.as_deref().unwrap_or("none");
        if now_image != image_id {
            changes.push(format!(
                "AMI {now_image} -> {image_id} (Kubernetes {version} node AMI)"
            ));
        }
    }
    changes
}

/// What happens to the running nodes when the template gets a new version: nothing, until they
/// are replaced (see [`ensure_launch_template`]).
fn rollout_note(group: &str, old_version: i64) -> String {
    format!(
        "running nodes keep version {old_version} until replaced; `up` does not replace them: \
         start an instance refresh (aws autoscaling start-instance-refresh \
         --auto-scaling-group-name {group}) when it suits you"
    )
}

/// For `plan`: the new launch template version `up` would make (instance type, AMI of the
/// version the cluster runs after `up`); user data and the rest are compared by `up` itself.
async fn template_changes(s: &Scope<'_>) -> Result<Option<String>, StepError> {
    let name = s.stack.launch_template();
    let resource = format!("launch template {name}");
    let Some(current) = s.aws.ec2().latest_version(&name).await.on(&resource)? else {
        return Ok(None);
    };
    let version = cluster::version_after_up(s).await?;
    let image = match &version {
        Some(version) => {
            let parameter = ami_parameter(version);
            let id = s
                .aws
                .ssm()
                .parameter(&parameter)
                .await
                .on(format!("SSM parameter {parameter}"))?;
            Some((id, version.as_str()))
        }
        None => None,
    };
    let changes = template_difference(
        &current,
        &s.config.instance_type,
        image.as_ref().map(|(id, v)| (id.as_str(), *v)),
    );
    if changes.is_empty() {
        return Ok(None);
    }
    Ok(Some(format!(
        "new launch template version {} ({}); {}",
        current.number + 1,
        changes.join(", "),
        rollout_note(&s.stack.auto_scaling_group(), current.number)
    )))
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
    let current = ec2.latest_version(&name).await.on(&resource)?;
    if current.as_ref().is_some_and(|v| v.launches(&desired)) {
        s.kept_or_created(false, "launch template", &name);
        return Ok(name);
    }
    ec2.create_launch_template_version(&name, &desired)
        .await
        .on(&resource)?;
    // The group launches `$Latest`: new nodes boot with this version, running ones are left
    // alone (an instance refresh would replace them all; that is the operator's call).
    let old = current.as_ref().map(|v| v.number).unwrap_or_default();
    let cluster = s.input::<Cluster>()?;
    let mut changes = current
        .as_ref()
        .map(|v| {
            template_difference(
                v,
                &desired.instance_type,
                Some((&desired.image_id, &cluster.version)),
            )
        })
        .unwrap_or_default();
    if changes.is_empty() {
        changes.push("user data, profile, security group or metadata options".to_owned());
    }
    s.record(
        Action::Updated,
        "launch template",
        format!(
            "{name} version {} ({}); {}",
            old + 1,
            changes.join(", "),
            rollout_note(&s.stack.auto_scaling_group(), old)
        ),
    );
    Ok(name)
}

async fn ensure_group(s: &Scope<'_>, template: &str) -> Result<(), StepError> {
    let network = s.input::<Network>()?;
    let autoscaling = s.aws.autoscaling();
    let name = s.stack.auto_scaling_group();
    let resource = format!("Auto Scaling group {name}");
    let counts = s.config.nodes;
    if let Some(group) = owned_group(s).await? {
        match size_change(&group, counts) {
            None => s.kept_or_created(false, "Auto Scaling group", &name),
            Some(change) => {
                autoscaling
                    .resize(&name, counts.min, counts.desired, counts.max)
                    .await
                    .on(&resource)?;
                s.record(
                    Action::Updated,
                    "Auto Scaling group",
                    format!("{name} {change}"),
                );
            }
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
