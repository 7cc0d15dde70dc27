//! Launch templates and the instances they launch.

use aws_sdk_ec2::types::{
    Filter, InstanceType, LaunchTemplateHttpTokensState,
    LaunchTemplateIamInstanceProfileSpecificationRequest,
    LaunchTemplateInstanceMetadataEndpointState, LaunchTemplateInstanceMetadataOptionsRequest,
    LaunchTemplateTagSpecificationRequest, RequestLaunchTemplateData, ResourceType,
    ResponseLaunchTemplateData, Tag,
};

use super::{Ec2, owned_by, tag_spec, tags};
use crate::aws::{AwsError, NotFoundExt, SdkResultExt, Tags, required_str};
use crate::stack::Stack;

/// The instance metadata service's response hop limit on the nodes: 1, so that only what runs
/// in the host's network namespace (the VPC CNI, kube-proxy, the targets controller) gets IMDSv2
/// tokens and with them the node role's credentials; a pod on the pod network is one hop further
/// and gets none (EKS Best Practices Guide, Security, "Restrict access to the instance profile
/// assigned to the worker node"; EC2 User Guide, "Configure the instance metadata options").
/// IMDSv2 only (HttpTokens required), endpoint on.
pub const IMDS_HOP_LIMIT: i32 = 1;

/// What the worker nodes boot with: the launch template's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeTemplate {
    pub image_id: String,
    pub instance_type: String,
    pub instance_profile_arn: String,
    pub security_group_id: String,
    /// Base64, as EC2 takes it.
    pub user_data: String,
    /// Tags of the instances and volumes it launches.
    pub tags: Tags,
}

impl NodeTemplate {
    fn request(&self) -> RequestLaunchTemplateData {
        let tags: Vec<Tag> = self
            .tags
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect();
        let tagged = |resource| {
            LaunchTemplateTagSpecificationRequest::builder()
                .resource_type(resource)
                .set_tags(Some(tags.clone()))
                .build()
        };
        RequestLaunchTemplateData::builder()
            .image_id(&self.image_id)
            .instance_type(InstanceType::from(self.instance_type.as_str()))
            .iam_instance_profile(
                LaunchTemplateIamInstanceProfileSpecificationRequest::builder()
                    .arn(&self.instance_profile_arn)
                    .build(),
            )
            .security_group_ids(&self.security_group_id)
            .user_data(&self.user_data)
            .metadata_options(
                LaunchTemplateInstanceMetadataOptionsRequest::builder()
                    .http_endpoint(LaunchTemplateInstanceMetadataEndpointState::Enabled)
                    .http_tokens(LaunchTemplateHttpTokensState::Required)
                    .http_put_response_hop_limit(IMDS_HOP_LIMIT)
                    .build(),
            )
            .tag_specifications(tagged(ResourceType::Instance))
            .tag_specifications(tagged(ResourceType::Volume))
            .build()
    }

    /// Whether a version launches the same nodes (AMI, user data, type, group, profile,
    /// metadata options).
    fn launched_by(&self, current: &ResponseLaunchTemplateData) -> bool {
        let metadata = current.metadata_options();
        metadata.and_then(|m| m.http_endpoint())
            == Some(&LaunchTemplateInstanceMetadataEndpointState::Enabled)
            && metadata.and_then(|m| m.http_tokens())
                == Some(&LaunchTemplateHttpTokensState::Required)
            && metadata.and_then(|m| m.http_put_response_hop_limit()) == Some(IMDS_HOP_LIMIT)
            && current.image_id() == Some(self.image_id.as_str())
            && current.user_data() == Some(self.user_data.as_str())
            && current.instance_type().map(|t| t.as_str()) == Some(self.instance_type.as_str())
            && current.security_group_ids() == [self.security_group_id.clone()]
            && current.iam_instance_profile().and_then(|p| p.arn())
                == Some(self.instance_profile_arn.as_str())
    }
}

/// One version of a launch template: what the nodes it launches boot with.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateVersion {
    pub number: i64,
    pub image_id: Option<String>,
    pub instance_type: Option<String>,
    data: Option<ResponseLaunchTemplateData>,
}

impl TemplateVersion {
    /// Whether this version launches `nodes` already.
    pub fn launches(&self, nodes: &NodeTemplate) -> bool {
        self.data.as_ref().is_some_and(|d| nodes.launched_by(d))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchTemplate {
    pub id: String,
    pub name: String,
    pub latest_version: i64,
    pub tags: Tags,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    pub private_ip: Option<String>,
    pub zone: String,
    pub state: String,
}

fn instance(i: &aws_sdk_ec2::types::Instance, op: &'static str) -> Result<Instance, AwsError> {
    Ok(Instance {
        id: required_str(i.instance_id(), op, "InstanceId")?,
        private_ip: i.private_ip_address().map(str::to_owned),
        zone: i
            .placement()
            .and_then(|p| p.availability_zone())
            .unwrap_or("")
            .to_owned(),
        state: i
            .state()
            .and_then(|st| st.name())
            .map(|n| n.as_str().to_owned())
            .unwrap_or_default(),
    })
}

impl Ec2<'_> {
    pub async fn launch_template(&self, name: &str) -> Result<Option<LaunchTemplate>, AwsError> {
        const OP: &str = "ec2:DescribeLaunchTemplates";
        let request = self
            .0
            .describe_launch_templates()
            .launch_template_names(name);
        let Some(out) = request.send().await.op(OP).found()? else {
            return Ok(None);
        };
        out.launch_templates()
            .first()
            .map(|t| {
                Ok(LaunchTemplate {
                    id: required_str(t.launch_template_id(), OP, "LaunchTemplateId")?,
                    name: t.launch_template_name().unwrap_or(name).to_owned(),
                    latest_version: t.latest_version_number().unwrap_or(0),
                    tags: tags(t.tags()),
                })
            })
            .transpose()
    }

    pub async fn create_launch_template(
        &self,
        name: &str,
        nodes: &NodeTemplate,
        tags: &[(String, String)],
    ) -> Result<(), AwsError> {
        self.0
            .create_launch_template()
            .launch_template_name(name)
            .version_description("kdeploy nodes")
            .launch_template_data(nodes.request())
            .tag_specifications(tag_spec(ResourceType::LaunchTemplate, tags))
            .send()
            .await
            .op("ec2:CreateLaunchTemplate")
            .map(drop)
    }

    /// The template's latest version, as EC2 describes it.
    pub async fn latest_version(&self, name: &str) -> Result<Option<TemplateVersion>, AwsError> {
        let out = self
            .0
            .describe_launch_template_versions()
            .launch_template_name(name)
            .versions("$Latest")
            .send()
            .await
            .op("ec2:DescribeLaunchTemplateVersions")?;
        Ok(out.launch_template_versions().first().map(|v| {
            let data = v.launch_template_data().cloned();
            TemplateVersion {
                number: v.version_number().unwrap_or(0),
                image_id: data.as_ref().and_then(|d| d.image_id()).map(str::to_owned),
                instance_type: data
                    .as_ref()
                    .and_then(|d| d.instance_type())
                    .map(|t| t.as_str().to_owned()),
                data,
            }
        }))
    }

    pub async fn create_launch_template_version(
        &self,
        name: &str,
        nodes: &NodeTemplate,
    ) -> Result<(), AwsError> {
        self.0
            .create_launch_template_version()
            .launch_template_name(name)
            .version_description("kdeploy nodes")
            .launch_template_data(nodes.request())
            .send()
            .await
            .op("ec2:CreateLaunchTemplateVersion")
            .map(drop)
    }

    pub async fn delete_launch_template(&self, name: &str) -> Result<(), AwsError> {
        self.0
            .delete_launch_template()
            .launch_template_name(name)
            .send()
            .await
            .op("ec2:DeleteLaunchTemplate")
            .map(drop)
    }

    /// Instances carrying the stack's tag (the group propagates it at launch), not yet terminated.
    pub async fn stack_instances(&self, stack: &Stack) -> Result<Vec<Instance>, AwsError> {
        let alive = Filter::builder()
            .name("instance-state-name")
            .values("pending")
            .values("running")
            .values("stopping")
            .values("stopped")
            .values("shutting-down")
            .build();
        let mut filters = owned_by(stack, None);
        filters.push(alive);
        self.describe_instances(Some(filters), None).await
    }

    pub async fn instances(&self, ids: Vec<String>) -> Result<Vec<Instance>, AwsError> {
        self.describe_instances(None, Some(ids)).await
    }

    async fn describe_instances(
        &self,
        filters: Option<Vec<Filter>>,
        ids: Option<Vec<String>>,
    ) -> Result<Vec<Instance>, AwsError> {
        const OP: &str = "ec2:DescribeInstances";
        let out = self
            .0
            .describe_instances()
            .set_filters(filters)
            .set_instance_ids(ids)
            .send()
            .await
            .op(OP)?;
        out.reservations()
            .iter()
            .flat_map(|r| r.instances())
            .map(|i| instance(i, OP))
            .collect()
    }

    pub async fn terminate_instances(&self, ids: Vec<String>) -> Result<(), AwsError> {
        self.0
            .terminate_instances()
            .set_instance_ids(Some(ids))
            .send()
            .await
            .op("ec2:TerminateInstances")
            .map(drop)
    }
}
