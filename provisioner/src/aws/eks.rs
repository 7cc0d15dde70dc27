//! EKS: the cluster itself (describe, create, the settings `up` converges, version upgrades,
//! delete).

use aws_sdk_eks::types::{
    AuthenticationMode, CreateAccessConfigRequest, SupportType, UpdateAccessConfigRequest,
    UpgradePolicyRequest, VpcConfigRequest,
};

use super::{AwsError, NotFoundExt, SdkResultExt, Tags, required_str};
use crate::config::Support;

/// The EKS layer; see [`super::Aws::eks`].
pub struct Eks<'a>(pub(super) &'a aws_sdk_eks::Client);

/// A cluster as DescribeCluster reports it. The endpoint and CA appear only once it is ACTIVE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EksCluster {
    pub name: String,
    pub arn: String,
    /// `CREATING`, `ACTIVE`, `DELETING`, `FAILED`, `UPDATING`, ...
    pub status: String,
    pub version: String,
    pub endpoint: Option<String>,
    pub certificate_authority: Option<String>,
    pub service_cidr: Option<String>,
    /// (public, private) endpoint access, when AWS reports the VPC configuration.
    pub endpoint_access: Option<(bool, bool)>,
    /// Only the aws-auth ConfigMap authenticates (no access entries).
    pub config_map_only: bool,
    pub health: Option<String>,
    /// `upgradePolicy.supportType` (`STANDARD`, `EXTENDED`), when EKS reports it.
    pub support: Option<String>,
    pub tags: Tags,
}

/// An update of a cluster (a version upgrade) as DescribeUpdate reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterUpdate {
    /// `InProgress`, `Successful`, `Failed`, `Cancelled`.
    pub status: String,
    pub errors: Vec<String>,
}

/// What a new cluster is made with.
pub struct NewCluster<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub role_arn: &'a str,
    pub subnet_ids: &'a [String],
    pub security_group_id: &'a str,
    /// The same token on every retry: EKS then treats a repeated create as the same request.
    pub request_token: &'a str,
    pub support: Support,
    pub tags: &'a [(String, String)],
}

fn upgrade_policy(support: Support) -> UpgradePolicyRequest {
    let support_type = match support {
        Support::Standard => SupportType::Standard,
        Support::Extended => SupportType::Extended,
    };
    UpgradePolicyRequest::builder()
        .support_type(support_type)
        .build()
}

const DESCRIBE: &str = "eks:DescribeCluster";

fn cluster(c: &aws_sdk_eks::types::Cluster) -> Result<EksCluster, AwsError> {
    let vpc = c.resources_vpc_config();
    Ok(EksCluster {
        name: required_str(c.name(), DESCRIBE, "name")?,
        arn: required_str(c.arn(), DESCRIBE, "arn")?,
        status: c
            .status()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_else(|| "UNKNOWN".to_owned()),
        version: c.version().unwrap_or("").to_owned(),
        endpoint: c.endpoint().map(str::to_owned),
        certificate_authority: c
            .certificate_authority()
            .and_then(|a| a.data())
            .map(str::to_owned),
        service_cidr: c
            .kubernetes_network_config()
            .and_then(|k| k.service_ipv4_cidr())
            .map(str::to_owned),
        endpoint_access: vpc.map(|v| (v.endpoint_public_access(), v.endpoint_private_access())),
        config_map_only: c
            .access_config()
            .and_then(|a| a.authentication_mode())
            .is_some_and(|m| *m == AuthenticationMode::ConfigMap),
        health: c.health().map(|h| format!("{:?}", h.issues())),
        support: c
            .upgrade_policy()
            .and_then(|u| u.support_type())
            .map(|t| t.as_str().to_owned()),
        tags: c
            .tags()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    })
}

impl Eks<'_> {
    pub async fn cluster(&self, name: &str) -> Result<Option<EksCluster>, AwsError> {
        let Some(out) = self
            .0
            .describe_cluster()
            .name(name)
            .send()
            .await
            .op(DESCRIBE)
            .found()?
        else {
            return Ok(None);
        };
        out.cluster().map(cluster).transpose()
    }

    pub async fn create_cluster(&self, new: &NewCluster<'_>) -> Result<(), AwsError> {
        let vpc = VpcConfigRequest::builder()
            .set_subnet_ids(Some(new.subnet_ids.to_vec()))
            .security_group_ids(new.security_group_id)
            .endpoint_public_access(true)
            .endpoint_private_access(true)
            .build();
        let access = CreateAccessConfigRequest::builder()
            .authentication_mode(AuthenticationMode::ApiAndConfigMap)
            .bootstrap_cluster_creator_admin_permissions(true)
            .build();
        let mut request = self
            .0
            .create_cluster()
            .name(new.name)
            .version(new.version)
            .role_arn(new.role_arn)
            .resources_vpc_config(vpc)
            .access_config(access)
            .upgrade_policy(upgrade_policy(new.support))
            .client_request_token(new.request_token);
        for (k, v) in new.tags {
            request = request.tags(k, v);
        }
        request.send().await.op("eks:CreateCluster").map(drop)
    }

    /// Turns both the public and the private endpoint on.
    pub async fn open_endpoints(&self, name: &str) -> Result<(), AwsError> {
        self.0
            .update_cluster_config()
            .name(name)
            .resources_vpc_config(
                VpcConfigRequest::builder()
                    .endpoint_public_access(true)
                    .endpoint_private_access(true)
                    .build(),
            )
            .send()
            .await
            .op("eks:UpdateClusterConfig")
            .map(drop)
    }

    /// CONFIG_MAP → API_AND_CONFIG_MAP, a one-way change EKS allows.
    pub async fn enable_access_entries(&self, name: &str) -> Result<(), AwsError> {
        self.0
            .update_cluster_config()
            .name(name)
            .access_config(
                UpdateAccessConfigRequest::builder()
                    .authentication_mode(AuthenticationMode::ApiAndConfigMap)
                    .build(),
            )
            .send()
            .await
            .op("eks:UpdateClusterConfig")
            .map(drop)
    }

    /// Sets the upgrade policy: whether the cluster may stay in extended support (billed).
    pub async fn set_support(&self, name: &str, support: Support) -> Result<(), AwsError> {
        self.0
            .update_cluster_config()
            .name(name)
            .upgrade_policy(upgrade_policy(support))
            .send()
            .await
            .op("eks:UpdateClusterConfig")
            .map(drop)
    }

    /// Starts the upgrade to the next minor version (UpdateClusterVersion); the update's id, for
    /// [`Eks::update`]. The control plane keeps serving meanwhile; the cluster is `UPDATING`.
    pub async fn update_version(&self, name: &str, version: &str) -> Result<String, AwsError> {
        const OP: &str = "eks:UpdateClusterVersion";
        let out = self
            .0
            .update_cluster_version()
            .name(name)
            .version(version)
            .send()
            .await
            .op(OP)?;
        required_str(out.update().and_then(|u| u.id()), OP, "update.id")
    }

    /// An update of the cluster as DescribeUpdate reports it.
    pub async fn update(&self, name: &str, id: &str) -> Result<Option<ClusterUpdate>, AwsError> {
        let Some(out) = self
            .0
            .describe_update()
            .name(name)
            .update_id(id)
            .send()
            .await
            .op("eks:DescribeUpdate")
            .found()?
        else {
            return Ok(None);
        };
        Ok(out.update().map(|u| ClusterUpdate {
            status: u
                .status()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_else(|| "UNKNOWN".to_owned()),
            errors: u
                .errors()
                .iter()
                .map(|e| {
                    format!(
                        "{}: {}",
                        e.error_code().map(|c| c.as_str()).unwrap_or("error"),
                        e.error_message().unwrap_or("")
                    )
                })
                .collect(),
        }))
    }

    pub async fn delete_cluster(&self, name: &str) -> Result<(), AwsError> {
        self.0
            .delete_cluster()
            .name(name)
            .send()
            .await
            .op("eks:DeleteCluster")
            .map(drop)
    }
}
