//! The EKS cluster: both subnets, the cluster security group, public and private endpoint access,
//! authentication through access entries and the aws-auth ConfigMap.

use aws_sdk_eks::types::{
    AuthenticationMode, ClusterStatus, CreateAccessConfigRequest, UpdateAccessConfigRequest,
    VpcConfigRequest,
};

use crate::aws::AwsResultExt;
use crate::plan::{OnResource, Resource, Scope, Step, StepError, StepFuture, input, recorded};
use crate::progress::Action;
use crate::retry::{Poll, retry_not_yet, wait_for};
use crate::stack::{PART_TAG, STACK_TAG};

/// What the cluster step produces: what nodes and clients need to reach the API server.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub name: String,
    pub arn: String,
    pub version: String,
    /// `https://...eks.amazonaws.com`
    pub endpoint: String,
    /// Base64 PEM bundle, as DescribeCluster returns it.
    pub certificate_authority: String,
    /// The Kubernetes service CIDR (nodeadm needs it for cluster DNS).
    pub service_cidr: String,
}

impl Cluster {
    /// What nodes and clients need, from a DescribeCluster answer.
    pub fn from_described(name: &str, cluster: &aws_sdk_eks::types::Cluster) -> Self {
        Self {
            name: name.to_owned(),
            arn: cluster.arn().unwrap_or_default().to_owned(),
            version: cluster.version().unwrap_or_default().to_owned(),
            endpoint: cluster.endpoint().unwrap_or_default().to_owned(),
            certificate_authority: cluster
                .certificate_authority()
                .and_then(|c| c.data())
                .unwrap_or_default()
                .to_owned(),
            service_cidr: cluster
                .kubernetes_network_config()
                .and_then(|k| k.service_ipv4_cidr())
                .unwrap_or(FALLBACK_SERVICE_CIDR)
                .to_owned(),
        }
    }
}

/// EKS picks 10.100.0.0/16 or 172.20.0.0/16 when none is given; it reports which.
const FALLBACK_SERVICE_CIDR: &str = "10.100.0.0/16";

pub struct ClusterStep;

impl Step for ClusterStep {
    fn name(&self) -> &'static str {
        "cluster"
    }

    fn title(&self) -> &'static str {
        "EKS cluster (10-15 minutes on AWS)"
    }

    fn needs(&self) -> &'static [&'static str] {
        &["network", "iam", "security-groups"]
    }

    fn ensure<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, ()> {
        Box::pin(async move {
            let name = s.stack.cluster_name().to_owned();
            let resource = format!("EKS cluster {name}");
            let existing = describe(s, &name).await?;
            let created = match existing {
                Some(cluster) => {
                    if !super::owned(
                        &s.stack,
                        cluster
                            .tags()
                            .into_iter()
                            .flatten()
                            .map(|(k, v)| (k.as_str(), v.as_str())),
                    ) {
                        return Err(StepError::NotOwned { resource });
                    }
                    if cluster.status() == Some(&ClusterStatus::Deleting) {
                        return Err(StepError::Failed {
                            resource,
                            reason: "is being deleted; wait for `provisioner down` to finish, then run `up` again".into(),
                        });
                    }
                    false
                }
                None => {
                    create(s, &name).await?;
                    true
                }
            };
            recorded(s, created, "EKS cluster", &name);
            let cluster = wait_active(s, &name).await?;
            converge(s, &cluster).await?;
            let cluster = if endpoint_drift(&cluster) || auth_drift(&cluster) {
                wait_active(s, &name).await?
            } else {
                cluster
            };
            let _ = s
                .outputs
                .cluster
                .set(Cluster::from_described(&name, &cluster));
            Ok(())
        })
    }

    fn destroy<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, ()> {
        Box::pin(async move {
            let name = s.stack.cluster_name().to_owned();
            let resource = format!("EKS cluster {name}");
            let Some(cluster) = describe(s, &name).await? else {
                s.record(Action::Absent, "EKS cluster", &name);
                return Ok(());
            };
            if !super::owned(
                &s.stack,
                cluster
                    .tags()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            ) {
                return Err(StepError::NotOwned { resource });
            }
            if cluster.status() != Some(&ClusterStatus::Deleting) {
                let result = retry_not_yet(
                    s.config.timeouts.cluster(),
                    |why| s.waiting(why),
                    || async {
                        s.aws
                            .eks
                            .delete_cluster()
                            .name(&name)
                            .send()
                            .await
                            .op("eks:DeleteCluster")
                    },
                )
                .await;
                match result {
                    Ok(_) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e).on(&resource),
                }
            }
            wait_for(
                s.config.timeouts.cluster(),
                |state| s.waiting(state),
                || async {
                    Ok(match describe(s, &name).await? {
                        None => Poll::Ready(()),
                        Some(c) => Poll::Pending(status_text(c.status()).to_owned()),
                    })
                },
            )
            .await
            .on(&resource)?;
            s.record(Action::Deleted, "EKS cluster", &name);
            Ok(())
        })
    }

    fn inspect<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, Vec<Resource>> {
        Box::pin(async move {
            let name = s.stack.cluster_name().to_owned();
            Ok(vec![match describe(s, &name).await? {
                Some(c) => {
                    let vpc = c.resources_vpc_config();
                    let access = format!(
                        "endpoint public={} private={}",
                        vpc.is_some_and(|v| v.endpoint_public_access()),
                        vpc.is_some_and(|v| v.endpoint_private_access())
                    );
                    Resource::found(
                        "EKS cluster",
                        &name,
                        c.arn().unwrap_or_default(),
                        format!(
                            "{} v{} {access}",
                            status_text(c.status()),
                            c.version().unwrap_or_default()
                        ),
                    )
                }
                None => Resource::missing("EKS cluster", &name),
            }])
        })
    }
}

fn status_text(status: Option<&ClusterStatus>) -> &str {
    status.map(|s| s.as_str()).unwrap_or("UNKNOWN")
}

pub(crate) async fn describe(
    s: &Scope<'_>,
    name: &str,
) -> Result<Option<aws_sdk_eks::types::Cluster>, StepError> {
    match s
        .aws
        .eks
        .describe_cluster()
        .name(name)
        .send()
        .await
        .op("eks:DescribeCluster")
    {
        Ok(out) => Ok(out.cluster().cloned()),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e).on(format!("EKS cluster {name}")),
    }
}

async fn create(s: &Scope<'_>, name: &str) -> Result<(), StepError> {
    let network = input(&s.outputs.network, "network")?;
    let roles = input(&s.outputs.iam, "iam")?;
    let groups = input(&s.outputs.security_groups, "security-groups")?;
    let vpc_config = VpcConfigRequest::builder()
        .set_subnet_ids(Some(network.subnet_ids.clone()))
        .security_group_ids(&groups.cluster_sg_id)
        .endpoint_public_access(true)
        .endpoint_private_access(true)
        .build();
    let access = CreateAccessConfigRequest::builder()
        .authentication_mode(AuthenticationMode::ApiAndConfigMap)
        .bootstrap_cluster_creator_admin_permissions(true)
        .build();
    // The same token on every retry: EKS then treats a repeated create as the same request.
    let token = format!("{}-{}", s.stack.name, s.stack.region);
    let result = retry_not_yet(
        s.config.timeouts.resources(),
        |why| s.waiting(why),
        || async {
            s.aws
                .eks
                .create_cluster()
                .name(name)
                .version(&s.config.kubernetes_version)
                .role_arn(&roles.cluster_role_arn)
                .resources_vpc_config(vpc_config.clone())
                .access_config(access.clone())
                .client_request_token(&token)
                .tags(STACK_TAG, &s.stack.name)
                .tags(PART_TAG, "cluster")
                .tags("Name", name)
                .send()
                .await
                .op("eks:CreateCluster")
        },
    )
    .await;
    match result {
        Ok(_) => Ok(()),
        // Created by a run that died before it heard the answer; ownership is checked next run.
        Err(e) if e.is("ResourceInUseException") => Ok(()),
        Err(e) => Err(e).on(format!("EKS cluster {name}")),
    }
}

async fn wait_active(s: &Scope<'_>, name: &str) -> Result<aws_sdk_eks::types::Cluster, StepError> {
    wait_for(
        s.config.timeouts.cluster(),
        |state| s.waiting(state),
        || async {
            let Some(cluster) = describe(s, name).await? else {
                return Err(StepError::Failed {
                    resource: format!("EKS cluster {name}"),
                    reason: "disappeared while waiting for it to become ACTIVE".into(),
                });
            };
            match cluster.status() {
                Some(ClusterStatus::Active) => Ok(Poll::Ready(cluster)),
                Some(ClusterStatus::Failed) => Err(StepError::Failed {
                    resource: format!("EKS cluster {name}"),
                    reason: format!(
                        "is FAILED{}; see the EKS console, then `provisioner down` and `up`",
                        cluster
                            .health()
                            .map(|h| format!(": {:?}", h.issues()))
                            .unwrap_or_default()
                    ),
                }),
                other => Ok(Poll::Pending(format!("cluster {}", status_text(other)))),
            }
        },
    )
    .await
    .on(format!("EKS cluster {name}"))
}

/// Whether the endpoint access differs from what the stack wants (both on).
fn endpoint_drift(cluster: &aws_sdk_eks::types::Cluster) -> bool {
    cluster
        .resources_vpc_config()
        .is_some_and(|v| !v.endpoint_public_access() || !v.endpoint_private_access())
}

fn auth_drift(cluster: &aws_sdk_eks::types::Cluster) -> bool {
    cluster
        .access_config()
        .and_then(|a| a.authentication_mode())
        .is_some_and(|m| *m == AuthenticationMode::ConfigMap)
}

/// Brings an existing cluster back to the stack's settings: both endpoints on; access entries
/// enabled (CONFIG_MAP → API_AND_CONFIG_MAP, a one-way change EKS allows).
async fn converge(s: &Scope<'_>, cluster: &aws_sdk_eks::types::Cluster) -> Result<(), StepError> {
    let name = cluster.name().unwrap_or_default();
    let resource = format!("EKS cluster {name}");
    if endpoint_drift(cluster) {
        s.aws
            .eks
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
            .on(&resource)?;
        s.record(Action::Updated, "EKS endpoint access", "public+private");
        wait_active(s, name).await?;
    }
    if auth_drift(cluster) {
        s.aws
            .eks
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
            .on(&resource)?;
        s.record(
            Action::Updated,
            "EKS authentication mode",
            "API_AND_CONFIG_MAP",
        );
        wait_active(s, name).await?;
    }
    if cluster.version() != Some(s.config.kubernetes_version.as_str()) {
        tracing::warn!(
            cluster = name,
            running = cluster.version().unwrap_or_default(),
            configured = %s.config.kubernetes_version,
            "the cluster runs another Kubernetes version than configured; upgrades are not done by `up`"
        );
    }
    Ok(())
}
