//! Auto Scaling: the worker nodes' group.

use aws_sdk_autoscaling::types::{LaunchTemplateSpecification, LifecycleState, Tag};

use super::{AwsError, SdkResultExt, Tags, required_str};

/// The Auto Scaling layer; see [`super::Aws::autoscaling`].
pub struct AutoScaling<'a>(pub(super) &'a aws_sdk_autoscaling::Client);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub arn: Option<String>,
    pub min: Option<i32>,
    pub desired: Option<i32>,
    pub max: Option<i32>,
    /// Set while the group is being deleted.
    pub status: Option<String>,
    pub instances: Vec<GroupInstance>,
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInstance {
    pub id: String,
    pub in_service: bool,
}

impl Group {
    pub fn in_service(&self) -> Vec<String> {
        self.instances
            .iter()
            .filter(|i| i.in_service)
            .map(|i| i.id.clone())
            .collect()
    }
}

/// What a new group is made with.
pub struct NewGroup<'a> {
    pub name: &'a str,
    pub launch_template: &'a str,
    pub min: i32,
    pub desired: i32,
    pub max: i32,
    pub subnet_ids: &'a [String],
    /// Propagated to the instances at launch.
    pub tags: &'a [(String, String)],
}

impl AutoScaling<'_> {
    pub async fn group(&self, name: &str) -> Result<Option<Group>, AwsError> {
        const OP: &str = "autoscaling:DescribeAutoScalingGroups";
        let out = self
            .0
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(name)
            .send()
            .await
            .op(OP)?;
        out.auto_scaling_groups()
            .first()
            .map(|g| {
                Ok(Group {
                    name: g.auto_scaling_group_name().unwrap_or(name).to_owned(),
                    arn: g.auto_scaling_group_arn().map(str::to_owned),
                    min: g.min_size(),
                    desired: g.desired_capacity(),
                    max: g.max_size(),
                    status: g.status().map(str::to_owned),
                    instances: g
                        .instances()
                        .iter()
                        .map(|i| {
                            Ok(GroupInstance {
                                id: required_str(i.instance_id(), OP, "InstanceId")?,
                                in_service: i.lifecycle_state() == Some(&LifecycleState::InService),
                            })
                        })
                        .collect::<Result<_, AwsError>>()?,
                    tags: g
                        .tags()
                        .iter()
                        .map(|t| {
                            (
                                t.key().unwrap_or("").to_owned(),
                                t.value().unwrap_or("").to_owned(),
                            )
                        })
                        .collect(),
                })
            })
            .transpose()
    }

    pub async fn create_group(&self, new: &NewGroup<'_>) -> Result<(), AwsError> {
        let tags = new
            .tags
            .iter()
            .map(|(k, v)| {
                Tag::builder()
                    .key(k)
                    .value(v)
                    .propagate_at_launch(true)
                    .resource_id(new.name)
                    .resource_type("auto-scaling-group")
                    .build()
            })
            .collect();
        self.0
            .create_auto_scaling_group()
            .auto_scaling_group_name(new.name)
            .launch_template(
                LaunchTemplateSpecification::builder()
                    .launch_template_name(new.launch_template)
                    .version("$Latest")
                    .build(),
            )
            .min_size(new.min)
            .desired_capacity(new.desired)
            .max_size(new.max)
            .vpc_zone_identifier(new.subnet_ids.join(","))
            .health_check_type("EC2")
            .health_check_grace_period(300)
            .set_tags(Some(tags))
            .send()
            .await
            .op("autoscaling:CreateAutoScalingGroup")
            .map(drop)
    }

    pub async fn resize(
        &self,
        name: &str,
        min: i32,
        desired: i32,
        max: i32,
    ) -> Result<(), AwsError> {
        self.0
            .update_auto_scaling_group()
            .auto_scaling_group_name(name)
            .min_size(min)
            .desired_capacity(desired)
            .max_size(max)
            .send()
            .await
            .op("autoscaling:UpdateAutoScalingGroup")
            .map(drop)
    }

    /// Deletes the group and terminates its instances.
    pub async fn delete_group(&self, name: &str) -> Result<(), AwsError> {
        self.0
            .delete_auto_scaling_group()
            .auto_scaling_group_name(name)
            .force_delete(true)
            .send()
            .await
            .op("autoscaling:DeleteAutoScalingGroup")
            .map(drop)
    }
}
