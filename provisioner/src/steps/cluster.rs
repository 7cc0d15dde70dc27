//! The EKS cluster: both subnets, the cluster security group, public and private endpoint access,
//! authentication through access entries and the aws-auth ConfigMap.

use super::Removal;
use super::iam::{self, Roles};
use super::network::{self, Network};
use super::nodes::ami_parameter;
use super::security_groups::{self, SecurityGroups};
use crate::aws::eks::{EksCluster, NewCluster};
use crate::aws::required;
use crate::config::versions::{self, Phase, Release};
use crate::config::{Date, StackConfig, Support};
use crate::plan::{
    Context, OnResource, Output, Resource, Scope, Step, StepError, StepFuture, StepId,
};
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
            // Refused before anything is changed: a downgrade, or more than one minor version.
            let upgrade = version_upgrade(&cluster, &s.config)?;
            let cluster = if converge(s, &cluster).await? {
                wait_active(s).await?
            } else {
                cluster
            };
            let cluster = match upgrade {
                Some(target) => upgrade_version(s, &cluster, target).await?,
                None => cluster,
            };
            if let Some(warning) = standard_support_warning(&cluster.version, s.config.today) {
                tracing::warn!(cluster = name, "{warning}");
            }
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
                    let support = match (&c.support, s.config.support.as_str()) {
                        (Some(now), wanted) if now != wanted => {
                            format!(" support={now} (configured {wanted})")
                        }
                        (Some(now), _) => format!(" support={now}"),
                        (None, _) => String::new(),
                    };
                    let state = format!(
                        "{} v{} endpoint public={public} private={private}{support}",
                        c.status, c.version
                    );
                    // A refused change is reported by `plan`'s version section.
                    let upgrade = version_upgrade(&c, &s.config).ok().flatten();
                    let running = c.version.clone();
                    let found = Resource::found("EKS cluster", name, c.arn, state);
                    match upgrade {
                        Some(target) => found.updating(format!(
                            "update cluster version {running} -> {target} (UpdateClusterVersion)"
                        )),
                        None => found,
                    }
                }
                None => Resource::missing("EKS cluster", name),
            }])
        })
    }
}

/// The stack's cluster as EKS describes it now.
pub(crate) async fn describe(s: &Scope<'_>) -> Result<Option<EksCluster>, StepError> {
    describe_in(s).await
}

async fn describe_in(cx: &Context) -> Result<Option<EksCluster>, StepError> {
    let name = cx.stack.cluster_name();
    cx.aws
        .eks()
        .cluster(name)
        .await
        .on(format!("EKS cluster {name}"))
}

/// The Kubernetes version the cluster runs once `up` is done: the version it runs, or the one
/// `up` upgrades it to; `None` while there is no cluster.
pub async fn version_after_up(cx: &Context) -> Result<Option<String>, StepError> {
    Ok(describe_in(cx)
        .await?
        .map(|cluster| match version_upgrade(&cluster, &cx.config) {
            Ok(Some(target)) => target.to_owned(),
            _ => cluster.version,
        }))
}

/// A fresh `clientRequestToken` for this run's CreateCluster: the retries of that one call share
/// it (EKS then treats them as one request); a later run, perhaps after `down` and with other
/// subnets, gets another, so EKS never answers it with the old request's result.
pub fn request_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// The version a new cluster gets: the configured one if the operator chose it, else the newest
/// accepted version whose EKS-optimized AL2023 AMI parameter is published in the region.
pub async fn new_cluster_version(cx: &Context) -> Result<&'static Release, StepError> {
    let config = &cx.config;
    if config.version_pinned
        && let Some(release) = versions::release(&config.kubernetes_version)
    {
        return Ok(release);
    }
    let mut tried = Vec::new();
    for release in versions::accepted(config.today, config.support) {
        let parameter = ami_parameter(release.version);
        match cx.aws.ssm().parameter(&parameter).await {
            Ok(_) => return Ok(release),
            Err(e) if e.is("ParameterNotFound") => tried.push(release.version),
            Err(e) => return Err(e).on(format!("SSM parameter {parameter}")),
        }
    }
    Err(StepError::conflict(
        "kubernetes_version",
        format!(
            "no node AMI is published in {} for the accepted versions ({}); set kubernetes_version",
            cx.stack.region,
            tried.join(", ")
        ),
    ))
}

/// The warning for a version whose standard support ends within 60 days (or has ended).
pub fn standard_support_warning(version: &str, today: Date) -> Option<String> {
    let release = versions::release(version)?;
    let days = release.standard_days_left(today);
    match release.phase(today) {
        Phase::Standard if release.leaves_standard_soon(today) => Some(format!(
            "Kubernetes {version} leaves EKS standard support on {} ({days} days from {today}): \
             with upgrade policy STANDARD EKS then upgrades the cluster by itself, with EXTENDED \
             it bills extended support per cluster-hour; plan the upgrade",
            release.end_of_standard
        )),
        Phase::Extended => Some(format!(
            "Kubernetes {version} left EKS standard support on {} and is billed as extended \
             support until {}",
            release.end_of_standard, release.end_of_extended
        )),
        _ => None,
    }
}

/// What `plan` says about the cluster's version and support: the version and upgrade policy a
/// new cluster gets with the end of its standard support, or how the existing one differs.
pub async fn support_plan(cx: &Context) -> Result<Vec<String>, StepError> {
    let config = &cx.config;
    let wanted = cx.config.support;
    let today = cx.config.today;
    let mut lines = Vec::new();
    let version = match describe_in(cx).await? {
        Some(cluster) => {
            lines.push(format!(
                "existing cluster runs Kubernetes {}, upgrade policy {}",
                cluster.version,
                cluster.support.as_deref().unwrap_or("not reported")
            ));
            if let Some(now) = cluster.support.as_deref().filter(|s| *s != wanted.as_str()) {
                lines.push(format!(
                    "! upgrade policy is {now}, configured {wanted}: `up` sets it to {wanted}{}",
                    if wanted == Support::Standard {
                        " (no extended-support charges)"
                    } else {
                        " (extended support is billed per cluster-hour)"
                    }
                ));
            }
            match version_upgrade(&cluster, config) {
                Ok(Some(target)) => {
                    lines.push(format!(
                        "`up` upgrades the cluster: Kubernetes {} -> {target} (UpdateClusterVersion), \
                         then the nodes' launch template gets the {target} node AMI",
                        cluster.version
                    ));
                    target.to_owned()
                }
                Ok(None) => cluster.version,
                Err(refused) => {
                    lines.push(format!("! `up` refuses: {refused}"));
                    cluster.version
                }
            }
        }
        None => {
            let release = new_cluster_version(cx).await?;
            lines.push(format!(
                "new cluster: Kubernetes {} ({}), upgrade policy {wanted}{}",
                release.version,
                if cx.config.version_pinned {
                    "as configured"
                } else {
                    "the newest with a published node AMI"
                },
                if wanted == Support::Extended {
                    " (extended support billed per cluster-hour once the version leaves standard support)"
                } else {
                    " (no extended-support charges)"
                }
            ));
            release.version.to_owned()
        }
    };
    if let Some(release) = versions::release(&version) {
        lines.push(format!(
            "Kubernetes {version}: standard support until {}, extended support until {}{}",
            release.end_of_standard,
            release.end_of_extended,
            if release.source == versions::Source::Estimated {
                " (estimated dates)"
            } else {
                ""
            }
        ));
    }
    if let Some(warning) = standard_support_warning(&version, today) {
        lines.push(format!("! {warning}"));
    }
    Ok(lines)
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
    let release = new_cluster_version(s).await?;
    let token = request_token();
    let new = NewCluster {
        name,
        version: release.version,
        role_arn: &roles.cluster_role_arn,
        subnet_ids: &network.subnet_ids,
        security_group_id: &groups.cluster_sg_id,
        request_token: &token,
        support: s.config.support,
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
    let support_drift = support_to_set(cluster, s.config.support, s.config.today);
    if let Some(support) = support_drift {
        eks.set_support(name, support).await.on(&resource)?;
        s.record(Action::Updated, "EKS upgrade policy", support.as_str());
        wait_active(s).await?;
    }
    Ok(endpoint_drift || cluster.config_map_only || support_drift.is_some())
}

/// A Kubernetes version as (major, minor).
fn minor_version(version: &str) -> Option<(u32, u32)> {
    let (major, minor) = version.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// The version `up` moves an existing cluster to, when the configuration pins a later one.
/// EKS upgrades one minor version at a time and never downgrades ("Update existing cluster to
/// new Kubernetes version" in the EKS User Guide; UpdateClusterVersion answers anything else
/// with InvalidParameterException), so both are refused here, naming the field and the rule,
/// before anything is changed. Whether the version may be used at all (standard or extended
/// support) was checked with the rest of the configuration.
pub fn version_upgrade(
    cluster: &EksCluster,
    config: &StackConfig,
) -> Result<Option<&'static str>, StepError> {
    let wanted = config.kubernetes_version.as_str();
    if !config.version_pinned || cluster.version == wanted {
        return Ok(None);
    }
    let field = format!("kubernetes_version = {wanted:?}");
    let (Some(running), Some(target)) = (minor_version(&cluster.version), minor_version(wanted))
    else {
        return Err(StepError::conflict(
            field,
            format!(
                "EKS cluster {} runs {:?}, which is not a Kubernetes version this tool can upgrade from",
                cluster.name, cluster.version
            ),
        ));
    };
    if target < running {
        return Err(StepError::conflict(
            field,
            format!(
                "EKS cluster {} runs Kubernetes {}; EKS cannot downgrade a cluster, only upgrade it \
                 one minor version at a time: set kubernetes_version = \"{}\" (or a later version), \
                 or `provisioner down` and `up` for a new cluster",
                cluster.name, cluster.version, cluster.version
            ),
        ));
    }
    let next = format!("{}.{}", running.0, running.1 + 1);
    if target != (running.0, running.1 + 1) {
        return Err(StepError::conflict(
            field,
            format!(
                "EKS cluster {} runs Kubernetes {}; EKS upgrades one minor version at a time: set \
                 kubernetes_version = \"{next}\", run `up`, then the next version",
                cluster.name, cluster.version
            ),
        ));
    }
    match versions::release(wanted) {
        Some(release) => Ok(Some(release.version)),
        None => Err(StepError::conflict(
            field,
            "is not in the release table (provisioner/src/config/versions.rs)",
        )),
    }
}

/// Upgrades the control plane one minor version and waits until the update has succeeded and
/// the cluster is ACTIVE again; the nodes step then makes a launch template version with the
/// new version's node AMI.
async fn upgrade_version(
    s: &Scope<'_>,
    cluster: &EksCluster,
    target: &str,
) -> Result<EksCluster, StepError> {
    let eks = s.aws.eks();
    let name = cluster.name.as_str();
    let resource = format!("EKS cluster {name}");
    let id = eks.update_version(name, target).await.on(&resource)?;
    s.record(
        Action::Updated,
        "EKS cluster version",
        format!("{name} {} -> {target} (update {id})", cluster.version),
    );
    wait_for(
        s.config.timeouts.cluster(),
        |state| s.waiting(state),
        || async {
            let update = eks.update(name, &id).await.on(&resource)?;
            match update {
                Some(u) if u.status == "Successful" => Ok(Poll::Ready(())),
                Some(u) if u.status == "Failed" || u.status == "Cancelled" => {
                    Err(StepError::conflict(
                        &resource,
                        format!(
                            "the upgrade to Kubernetes {target} (update {id}) is {}: {}",
                            u.status,
                            u.errors.join("; ")
                        ),
                    ))
                }
                Some(u) => Ok(Poll::Pending(format!("version update {}", u.status))),
                None => Ok(Poll::Pending(format!(
                    "version update {id} not visible yet"
                ))),
            }
        },
    )
    .await
    .on(&resource)?;
    wait_active(s).await
}

/// The upgrade policy `up` sets on an existing cluster, if it differs from the configured one.
/// A cluster already past standard support keeps EXTENDED (STANDARD would make EKS upgrade it
/// at once); that is reported instead.
fn support_to_set(cluster: &EksCluster, wanted: Support, today: Date) -> Option<Support> {
    let now = cluster.support.as_deref()?;
    if now == wanted.as_str() {
        return None;
    }
    let past_standard = versions::release(&cluster.version)
        .is_some_and(|r| matches!(r.phase(today), Phase::Extended | Phase::Ended));
    if wanted == Support::Standard && past_standard {
        tracing::warn!(
            cluster = %cluster.name,
            version = %cluster.version,
            "the cluster is past standard support: its upgrade policy stays EXTENDED; upgrade it, then run `up` again"
        );
        return None;
    }
    Some(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_run_gets_its_own_request_token() {
        let a = request_token();
        let b = request_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    }

    fn cluster(version: &str, support: Option<&str>) -> EksCluster {
        EksCluster {
            name: "demo".into(),
            arn: "arn".into(),
            status: "ACTIVE".into(),
            version: version.into(),
            endpoint: None,
            certificate_authority: None,
            service_cidr: None,
            endpoint_access: None,
            config_map_only: false,
            health: None,
            support: support.map(str::to_owned),
            tags: Vec::new(),
        }
    }

    const TODAY: Date = Date::new(2026, 12, 2);

    #[test]
    fn a_differing_upgrade_policy_is_set_unless_that_would_force_an_upgrade() {
        let extended = cluster("1.35", Some("EXTENDED"));
        assert_eq!(
            support_to_set(&extended, Support::Standard, TODAY),
            Some(Support::Standard)
        );
        assert_eq!(support_to_set(&extended, Support::Extended, TODAY), None);
        assert_eq!(
            support_to_set(&cluster("1.35", None), Support::Standard, TODAY),
            None
        );
        let old = cluster("1.33", Some("EXTENDED"));
        assert_eq!(support_to_set(&old, Support::Standard, TODAY), None);
        assert_eq!(
            support_to_set(&cluster("1.36", Some("STANDARD")), Support::Extended, TODAY),
            Some(Support::Extended)
        );
    }

    #[test]
    fn a_version_leaving_standard_support_within_60_days_is_warned_about() {
        let warning = standard_support_warning("1.34", TODAY).unwrap();
        assert!(warning.contains("2026-12-02"), "{warning}");
        assert!(warning.contains("0 days"), "{warning}");
        assert!(standard_support_warning("1.35", TODAY).is_none());
        assert!(standard_support_warning("1.35", Date::new(2027, 1, 26)).is_some());
        assert!(standard_support_warning("1.35", Date::new(2027, 1, 25)).is_none());
        assert!(
            standard_support_warning("1.33", TODAY)
                .unwrap()
                .contains("extended")
        );
    }
}
