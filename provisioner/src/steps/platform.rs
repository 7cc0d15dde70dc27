//! AWS glue for the Kubernetes side of the stack: the nodes' permission to join, and the
//! platform install, which the `platform` crate owns (what is applied, in which order, what is
//! waited for). This step hands it the cluster's address, the site's public URL (by default the
//! load balancer's), the site's image (from the site-image step) and what the targets controller
//! keeps (the target group, its port, the region and, for the local emulator, the endpoint),
//! then waits for the load balancer's targets to be healthy.

use platform::cluster::Access;
use platform::manifests::SiteValues;
use platform::wait::Progress;
use platform::{Credentials, InstallSpec, PublicUrl};

use super::cluster::{self, Cluster};
use super::iam::{self, Roles};
use super::load_balancer::{self, LoadBalancer};
use super::site_image::{self, SiteImage, SiteSource};
use super::{nodes, targets};
use crate::access;
use crate::ingress::HTTP_NODE_PORT;
use crate::plan::{OnResource, Output, Resource, Scope, Step, StepError, StepFuture, StepId};
use crate::progress::Action;
use crate::retry::{Poll, wait_for};

pub const ID: StepId = StepId::new("platform");
pub const NODE_ACCESS: StepId = StepId::new("node-access");

/// How the Kubernetes steps reach the cluster and what they install: the CLI's flags.
#[derive(Debug, Clone, Default)]
pub struct PlatformSettings {
    /// Where the Kubernetes steps go instead of the EKS endpoint: the local cluster simulator.
    pub kube_override: Option<Access>,
    /// Where the deploy site's image comes from (the site-image step's setting).
    pub site: SiteSource,
    /// Where developers reach the site instead of `http://<the NLB's DNS name>` (locally the
    /// simulated NLB: `http://kdeploy.localhost:8080`); its host is the public Ingresses' host.
    pub public_url: Option<PublicUrl>,
}

/// What the platform step produces: where developers go.
#[derive(Debug, Clone)]
pub struct Site {
    /// The site's public URL, as the site itself was given it.
    pub url: String,
    /// Set only by the run that installed the site and so created its first administrator:
    /// shown once (`provisioner initial-admin` shows it again while the site's Secret exists).
    pub admin: Option<Credentials>,
}

impl Output for Site {
    const STEP: StepId = ID;
}

/// A client for the stack's cluster: the override (the local simulator, whose token does not
/// expire) or EKS with a token renewed before it expires, since the waits outlast one.
pub async fn cluster_client(
    s: &Scope<'_>,
    kube_override: Option<&Access>,
) -> Result<kube::Client, StepError> {
    match kube_override {
        Some(access) => platform::cluster::connect(access)
            .map_err(|e| StepError::platform(format!("cluster API {}", access.endpoint), e)),
        None => {
            let cluster = s.input::<Cluster>()?;
            let (name, endpoint) = (&cluster.name, &cluster.endpoint);
            access::cluster_client(&s.aws, name, endpoint, &cluster.certificate_authority).await
        }
    }
}

/// Lets the node role join: an EC2_LINUX access entry, or the aws-auth mapping where EKS has no
/// access-entry API. Runs before the nodes boot so that they join at once.
pub struct NodeAccessStep {
    pub kube_override: Option<Access>,
}

impl Step for NodeAccessStep {
    fn id(&self) -> StepId {
        NODE_ACCESS
    }

    fn title(&self) -> &'static str {
        "let the worker nodes join the cluster"
    }

    fn needs(&self) -> &[StepId] {
        &[cluster::ID, iam::ID]
    }

    fn ensure<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, ()> {
        Box::pin(async move {
            let roles = s.input::<Roles>()?;
            let kube = cluster_client(s, self.kube_override.as_ref()).await?;
            let joined = platform::join::allow_nodes(
                &s.aws.clients.eks,
                &kube,
                s.stack.cluster_name(),
                &roles.node_role_arn,
            )
            .await
            .map_err(|e| StepError::platform(format!("node role {}", roles.node_role_arn), e))?;
            let how = match joined.path {
                platform::join::JoinPath::AccessEntry => "EKS access entry (EC2_LINUX)",
                platform::join::JoinPath::AwsAuthConfigMap => "aws-auth ConfigMap mapping",
            };
            let action = if joined.changed {
                Action::Created
            } else {
                Action::Kept
            };
            s.record(action, how, &roles.node_role_arn);
            Ok(())
        })
    }

    fn destroy<'a>(&'a self, _s: &'a Scope<'a>) -> StepFuture<'a, ()> {
        // The access entry and aws-auth live in the cluster and go with it.
        Box::pin(async { Ok(()) })
    }

    fn inspect<'a>(&'a self, _s: &'a Scope<'a>) -> StepFuture<'a, Vec<Resource>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

/// Installs the ingress controller and the deploy site through `platform`, then waits for the
/// load balancer's targets to be healthy so that the printed URL answers.
pub struct PlatformStep {
    pub settings: PlatformSettings,
}

impl Step for PlatformStep {
    fn id(&self) -> StepId {
        ID
    }

    fn title(&self) -> &'static str {
        "ingress controller and deploy site in the cluster"
    }

    fn needs(&self) -> &[StepId] {
        &[
            nodes::ID,
            NODE_ACCESS,
            load_balancer::ID,
            targets::ID,
            site_image::ID,
        ]
    }

    fn ensure<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, ()> {
        Box::pin(async move {
            let lb = s.input::<LoadBalancer>()?;
            let image = s.input::<SiteImage>()?;
            let kube = cluster_client(s, self.settings.kube_override.as_ref()).await?;
            let public_url = match &self.settings.public_url {
                Some(url) => url.clone(),
                None => PublicUrl::parse(&format!("http://{}", lb.dns_name.to_ascii_lowercase()))
                    .map_err(|e| {
                    StepError::platform(format!("load balancer DNS name {}", lb.dns_name), e)
                })?,
            };
            let url = public_url.to_string();
            // The controller's AWS calls go where the provisioner's go: AWS's regional endpoint,
            // or the emulator's when `--endpoint` was given.
            let targets = platform::targets::Settings {
                target_group_arn: lb.target_group_arn.clone(),
                port: HTTP_NODE_PORT,
                region: s.aws.region.clone(),
                endpoint: s.aws.sdk.endpoint_url().map(str::to_owned),
            };
            let spec = InstallSpec {
                site: SiteValues {
                    public_url,
                    image: image.reference.clone(),
                },
                targets: Some(targets),
                nodes: s.config.nodes.desired as usize,
                wait_limit: s.config.timeouts.resources().limit,
            };
            let (progress, step) = (s.cx.progress.clone(), s.step);
            let progress = move |status: &str| progress.waiting(step, status);
            let installed = platform::install(&kube, &spec, Some(&progress as &Progress))
                .await
                .map_err(|e| StepError::platform("platform install", e))?;
            s.record(
                Action::Kept,
                "ingress controller and deploy site",
                format!("{} objects applied", installed.applied),
            );
            wait_targets_healthy(s, &lb.target_group_arn).await?;
            // Shown once: on the run whose install created the site (and so its administrator).
            let admin = match installed.initial_admin {
                Some(credentials) if installed.site_newly_created => {
                    s.record(Action::Created, "site administrator", &credentials.username);
                    Some(credentials)
                }
                _ => {
                    s.record(Action::Kept, "site administrator", "exists");
                    None
                }
            };
            s.outputs.put(Site { url, admin });
            Ok(())
        })
    }

    fn destroy<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, ()> {
        Box::pin(async move {
            // Without a cluster there is nothing in it to remove; any other failure to look is an error.
            if self.settings.kube_override.is_none() {
                let active = cluster::describe(s).await?.filter(|c| c.status == "ACTIVE");
                let Some(described) = active else {
                    s.record(Action::Absent, "platform objects", "the cluster is gone");
                    return Ok(());
                };
                // cluster_client needs the cluster's endpoint and CA.
                s.outputs.put(Cluster::from_active(&described)?);
            }
            let kube = cluster_client(s, self.settings.kube_override.as_ref()).await?;
            let changes = platform::uninstall(&kube)
                .await
                .map_err(|e| StepError::platform("platform uninstall", e))?;
            for change in changes {
                let action = match change.outcome {
                    platform::Outcome::Deleted => Action::Deleted,
                    platform::Outcome::Absent => Action::Absent,
                };
                s.record(action, change.kind, change.name);
            }
            Ok(())
        })
    }

    fn inspect<'a>(&'a self, _s: &'a Scope<'a>) -> StepFuture<'a, Vec<Resource>> {
        // What lives inside the cluster goes with it; `status` shows the AWS side.
        Box::pin(async { Ok(Vec::new()) })
    }
}

/// Waits until every registered target passes the NLB's health check (the ingress controller's
/// readiness NodePort): only then does the printed URL answer.
async fn wait_targets_healthy(s: &Scope<'_>, target_group: &str) -> Result<(), StepError> {
    wait_for(
        s.config.timeouts.resources(),
        |state| s.waiting(state),
        || async {
            let targets = targets::registered(s, target_group).await?;
            let healthy = targets.iter().filter(|t| t.health == "healthy").count();
            Ok(if !targets.is_empty() && healthy == targets.len() {
                Poll::Ready(())
            } else {
                Poll::Pending(format!("{healthy}/{} targets healthy", targets.len()))
            })
        },
    )
    .await
    .on(format!("target group {}", s.stack.target_group()))
}
