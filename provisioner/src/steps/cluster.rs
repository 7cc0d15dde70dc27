//! The EKS cluster: both subnets, the cluster security group, public and private endpoint access,
//! authentication through access entries and the aws-auth ConfigMap.

use super::Removal;
use super::iam::{self, Roles};
use super::network::{self, Network};
use super::security_groups::{self, SecurityGroups};
use crate::aws::eks::{EksCluster, NewCluster};
use crate::aws::required;
use crate::plan::{OnResource, Output, Resource, Scope, Step, StepError, StepFuture, StepId};
use crate::progress::Action;
use crate::retry::{Poll, retry_not_yet, wait_for};
use crate::stack::{PART_TAG, STACK_TAG};

pub const ID: StepId = StepId::new("cluster");

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

impl Output for Cluster {
    const STEP: StepId = ID;
}

impl Cluster {
    /// What nodes and clients need, from an ACTIVE cluster (which always has endpoint and CA).
    pub fn from_active(cluster: &EksCluster) -> Result<Self, StepError> {
        const OP: &str = "eks:DescribeCluster";
        let resource = format!("EKS cluster {}", cluster.name);
        Ok(Self {
            name: cluster.name.clone(),
            arn: cluster.arn.clone(),
            version: cluster.version.clone(),
            endpoint: required(cluster.endpoint.clone(), OP, "endpoint").on(&resource)?,
            certificate_authority: required(
                cluster.certificate_authority.clone(),
                OP,
                "certificateAuthority",
            )
            .on(&resource)?,
            service_cidr: cluster
                .service_cidr
                .clone()
                .unwrap_or_else(|| FALLBACK_SERVICE_CIDR.to_owned()),
        })
    }
}

/// EKS picks 10.100.0.0/16 or 172.20.0.0/16 when none is given; it reports which.
const FALLBACK_SERVICE_CIDR: &str = "10.100.0.0/16";

pub struct ClusterStep;

impl Step for ClusterStep {
    fn id(&self) -> StepId {
        ID
    }

    fn title(&self) -> &'static str {
        "EKS cluster (10-15 minutes on AWS)"
    }

    fn needs(&self) -> &[StepId] {
        &[network::ID, iam::ID, security_groups::ID]
    }

    fn ensure<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, ()> {
        Box::pin(async move {
            let name = s.stack.cluster_name();
            let created = match owned(s).await? {
                Some(cluster) if cluster.status == "DELETING" => {
                    return Err(StepError::conflict(
                        format!("EKS cluster {name}"),
                        "is being deleted; wait for `provisioner down` to finish, then run `up` again",
                    ));
                }
                Some(_) => false,
                None => {
                    create(s).await?;
                    true
                }
            };
            s.kept_or_created(created, "EKS cluster", name);
            let cluster = wait_active(s).await?;
            let cluster = if converge(s, &cluster).await? {
                wait_active(s).await?
            } else {
                cluster
            };
            s.outputs.put(Cluster::from_active(&cluster)?);
            Ok(())
        })
    }

    fn destroy<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, ()> {
        Box::pin(async move {
            let name = s.stack.cluster_name();
            let Some(cluster) = owned(s).await? else {
                s.record(Action::Absent, "EKS cluster", name);
                return Ok(());
            };
            let eks = s.aws.eks();
            let deleting = cluster.status == "DELETING";
            Removal::new(s, "EKS cluster", name)
                .pace(s.config.timeouts.cluster())
                .delete_and_wait(
                    || async {
                        if deleting {
                            Ok(())
                        } else {
                            eks.delete_cluster(name).await
                        }
                    },
                    || async { Ok(describe(s).await?.map(|c| c.status)) },
                )
                .await
        })
    }

    fn inspect<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, Vec<Resource>> {
        Box::pin(async move {
            let name = s.stack.cluster_name();
            Ok(vec![match describe(s).await? {
                Some(c) => {
                    let (public, private) = c.endpoint_access.unwrap_or((false, false));
                    let state = format!(
                        "{} v{} endpoint public={public} private={private}",
                        c.status, c.version
                    );
                    Resource::found("EKS cluster", name, c.arn, state)
                }
                None => Resource::missing("EKS cluster", name),
            }])
        })
    }
}

/// The stack's cluster as EKS describes it now.
pub(crate) async fn describe(s: &Scope<'_>) -> Result<Option<EksCluster>, StepError> {
    let name = s.stack.cluster_name();
    s.aws
        .eks()
        .cluster(name)
        .await
        .on(format!("EKS cluster {name}"))
}

/// The cluster if it exists and carries the stack's tag; an untagged one is never touched.
async fn owned(s: &Scope<'_>) -> Result<Option<EksCluster>, StepError> {
    match describe(s).await? {
        Some(c) if !s.stack.owns(&c.tags) => Err(StepError::NotOwned {
            resource: format!("EKS cluster {}", c.name),
        }),
        found => Ok(found),
    }
}

async fn create(s: &Scope<'_>) -> Result<(), StepError> {
    let network = s.input::<Network>()?;
    let roles = s.input::<Roles>()?;
    let groups = s.input::<SecurityGroups>()?;
    let name = s.stack.cluster_name();
    let tags = [
        (STACK_TAG.to_owned(), s.stack.name.clone()),
        (PART_TAG.to_owned(), "cluster".to_owned()),
        ("Name".to_owned(), name.to_owned()),
    ];
    let token = format!("{}-{}", s.stack.name, s.stack.region);
    let new = NewCluster {
        name,
        version: &s.config.kubernetes_version,
        role_arn: &roles.cluster_role_arn,
        subnet_ids: &network.subnet_ids,
        security_group_id: &groups.cluster_sg_id,
        request_token: &token,
        tags: &tags,
    };
    let eks = s.aws.eks();
    let result = retry_not_yet(
        s.config.timeouts.resources(),
        |why| s.waiting(why),
        || eks.create_cluster(&new),
    )
    .await;
    match result {
        Ok(()) => Ok(()),
        // Created by a run that died before it heard the answer; ownership is checked next run.
        Err(e) if e.is("ResourceInUseException") => Ok(()),
        Err(e) => Err(e).on(format!("EKS cluster {name}")),
    }
}

async fn wait_active(s: &Scope<'_>) -> Result<EksCluster, StepError> {
    let resource = format!("EKS cluster {}", s.stack.cluster_name());
    wait_for(
        s.config.timeouts.cluster(),
        |state| s.waiting(state),
        || async {
            let Some(cluster) = describe(s).await? else {
                return Err(StepError::conflict(
                    &resource,
                    "disappeared while waiting for it to become ACTIVE",
                ));
            };
            match cluster.status.as_str() {
                "ACTIVE" => Ok(Poll::Ready(cluster)),
                "FAILED" => Err(StepError::conflict(
                    &resource,
                    format!(
                        "is FAILED{}; see the EKS console, then `provisioner down` and `up`",
                        cluster
                            .health
                            .as_deref()
                            .map(|h| format!(": {h}"))
                            .unwrap_or_default()
                    ),
                )),
                other => Ok(Poll::Pending(format!("cluster {other}"))),
            }
        },
    )
    .await
    .on(&resource)
}

/// Brings an existing cluster back to the stack's settings: both endpoints on; access entries
/// enabled. Whether it changed anything (then the cluster is UPDATING again).
async fn converge(s: &Scope<'_>, cluster: &EksCluster) -> Result<bool, StepError> {
    let eks = s.aws.eks();
    let name = cluster.name.as_str();
    let resource = format!("EKS cluster {name}");
    let endpoint_drift = cluster
        .endpoint_access
        .is_some_and(|(public, private)| !public || !private);
    if endpoint_drift {
        eks.open_endpoints(name).await.on(&resource)?;
        s.record(Action::Updated, "EKS endpoint access", "public+private");
        wait_active(s).await?;
    }
    if cluster.config_map_only {
        eks.enable_access_entries(name).await.on(&resource)?;
        s.record(
            Action::Updated,
            "EKS authentication mode",
            "API_AND_CONFIG_MAP",
        );
        wait_active(s).await?;
    }
    if cluster.version != s.config.kubernetes_version {
        tracing::warn!(
            cluster = name,
            running = %cluster.version,
            configured = %s.config.kubernetes_version,
            "the cluster runs another Kubernetes version than configured; upgrades are not done by `up`"
        );
    }
    Ok(endpoint_drift || cluster.config_map_only)
}
