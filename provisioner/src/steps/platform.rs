//! The Kubernetes side of the stack: the nodes' permission to join, then (once they are Ready)
//! the ingress controller and the deploy site, and the site's first administrator.

use k8s_openapi::api::core::v1::{Namespace, Node, Service};
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use platform::cluster::Access;
use platform::manifests::{
    self, DEPLOY_SITE_DEPLOYMENT, INGRESS_CONTROLLER_DEPLOYMENT, SiteValues,
};

use super::cluster::{self, Cluster};
use super::iam::{self, Roles};
use super::load_balancer::{self, LoadBalancer};
use super::{nodes, targets};
use crate::access;
use crate::plan::{OnResource, Output, Resource, Scope, Step, StepError, StepFuture, StepId};
use crate::progress::Action;
use crate::retry::{Poll, wait_for};

pub const ID: StepId = StepId::new("platform");
pub const NODE_ACCESS: StepId = StepId::new("node-access");

/// How the Kubernetes steps reach the cluster and what they install: the CLI's flags.
#[derive(Debug, Clone)]
pub struct PlatformSettings {
    /// Where the Kubernetes steps go instead of the EKS endpoint: the local cluster simulator.
    pub kube_override: Option<Access>,
    /// The deploy site's image.
    pub site_image: String,
    /// The site's host name instead of the NLB's DNS name (locally: a name that resolves to
    /// 127.0.0.1, such as `kdeploy.localhost`), and the URL it is reached at.
    pub public_host: Option<(String, String)>,
}

impl Default for PlatformSettings {
    fn default() -> Self {
        Self {
            kube_override: None,
            site_image: manifests::default_site_image(),
            public_host: None,
        }
    }
}

/// What the platform step produces: where developers go.
#[derive(Debug, Clone)]
pub struct Site {
    pub url: String,
    /// Set only by the run that created the first administrator: shown once.
    pub admin: Option<(String, String)>,
}

impl Output for Site {
    const STEP: StepId = ID;
}

/// A client for the stack's cluster: the override (the local simulator) or EKS with a fresh token.
pub async fn cluster_client(
    s: &Scope<'_>,
    kube_override: Option<&Access>,
) -> Result<kube::Client, StepError> {
    let access = match kube_override {
        Some(access) => access.clone(),
        None => {
            let cluster = s.input::<Cluster>()?;
            let (name, endpoint) = (&cluster.name, &cluster.endpoint);
            access::cluster_access(&s.aws, name, endpoint, &cluster.certificate_authority).await?
        }
    };
    platform::cluster::connect(&access)
        .map_err(|e| StepError::platform(format!("cluster API {}", access.endpoint), e))
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

/// Waits for the nodes, installs the ingress controller and the deploy site, waits for both
/// rollouts, and creates the site's first administrator.
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
        &[nodes::ID, NODE_ACCESS, load_balancer::ID, targets::ID]
    }

    fn ensure<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, ()> {
        Box::pin(async move {
            let lb = s.input::<LoadBalancer>()?;
            let kube = cluster_client(s, self.settings.kube_override.as_ref()).await?;
            wait_nodes_ready(s, &kube, s.config.nodes.desired as usize).await?;

            let controller = manifests::ingress_controller()
                .map_err(|e| StepError::platform("ingress controller manifest", e))?;
            manifests::apply(&kube, &controller)
                .await
                .map_err(|e| StepError::platform("ingress controller", e))?;
            s.record(
                Action::Kept,
                "ingress controller",
                "nginx-ingress/nginx-ingress (applied)",
            );
            let (public_host, url) = match &self.settings.public_host {
                Some((host, url)) => (host.clone(), url.clone()),
                None => {
                    let host = lb.dns_name.to_ascii_lowercase();
                    (host.clone(), format!("http://{host}/"))
                }
            };
            let values = SiteValues {
                public_host,
                image: self.settings.site_image.clone(),
            };
            let site_was_new = Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(
                kube.clone(),
                DEPLOY_SITE_DEPLOYMENT.0,
            )
            .get_opt(DEPLOY_SITE_DEPLOYMENT.1)
            .await
            .map_err(|e| StepError::kube("deploy site", e))?
            .is_none();
            let site = manifests::deploy_site(&values)
                .map_err(|e| StepError::platform("deploy site manifest", e))?;
            manifests::apply(&kube, &site)
                .await
                .map_err(|e| StepError::platform("deploy site", e))?;
            s.record(
                Action::Kept,
                "deploy site",
                "kdeploy-system/kdeploy-web (applied)",
            );

            let limit = s.config.timeouts.resources().limit;
            s.waiting("rollouts of the ingress controller and the deploy site");
            let (a, b) = tokio::join!(
                manifests::wait_rollout(&kube, INGRESS_CONTROLLER_DEPLOYMENT, limit),
                manifests::wait_rollout(&kube, DEPLOY_SITE_DEPLOYMENT, limit),
            );
            a.and(b).map_err(|e| StepError::platform("rollout", e))?;

            wait_targets_healthy(s, &lb.target_group_arn).await?;
            let admin = initial_admin(s, &kube, site_was_new).await?;
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
            // Services of type LoadBalancer make AWS load balancers that would block the VPC.
            let services: Api<Service> = Api::all(kube.clone());
            let list = services
                .list(&ListParams::default())
                .await
                .map_err(|e| StepError::kube("services", e))?;
            for svc in list.items {
                let is_lb =
                    svc.spec.as_ref().and_then(|sp| sp.type_.as_deref()) == Some("LoadBalancer");
                if let (true, Some(ns), Some(name)) = (
                    is_lb,
                    svc.metadata.namespace.as_deref(),
                    svc.metadata.name.as_deref(),
                ) {
                    Api::<Service>::namespaced(kube.clone(), ns)
                        .delete(name, &DeleteParams::default())
                        .await
                        .map_err(|e| StepError::kube(format!("service {ns}/{name}"), e))?;
                    s.record(
                        Action::Deleted,
                        "LoadBalancer service",
                        format!("{ns}/{name}"),
                    );
                }
            }
            let namespaces: Api<Namespace> = Api::all(kube.clone());
            for ns in ["kdeploy-system", "nginx-ingress"] {
                match namespaces.delete(ns, &DeleteParams::default()).await {
                    Ok(_) => s.record(Action::Deleted, "namespace", ns),
                    Err(kube::Error::Api(status)) if status.code == 404 => {
                        s.record(Action::Absent, "namespace", ns)
                    }
                    Err(e) => return Err(StepError::kube(format!("namespace {ns}"), e)),
                }
            }
            Ok(())
        })
    }

    fn inspect<'a>(&'a self, _s: &'a Scope<'a>) -> StepFuture<'a, Vec<Resource>> {
        // What lives inside the cluster goes with it; `status` shows the AWS side.
        Box::pin(async { Ok(Vec::new()) })
    }
}

async fn wait_nodes_ready(
    s: &Scope<'_>,
    kube: &kube::Client,
    want: usize,
) -> Result<(), StepError> {
    let nodes: Api<Node> = Api::all(kube.clone());
    wait_for(
        s.config.timeouts.resources(),
        |state| s.waiting(state),
        || async {
            let list = nodes
                .list(&ListParams::default())
                .await
                .map_err(|e| StepError::kube("nodes", e))?;
            let ready = list
                .items
                .iter()
                .filter(|n| {
                    n.status
                        .as_ref()
                        .and_then(|st| st.conditions.as_ref())
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                })
                .count();
            Ok(if ready >= want {
                Poll::Ready(())
            } else {
                Poll::Pending(format!("{ready}/{want} nodes Ready"))
            })
        },
    )
    .await
    .on("worker nodes")
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

/// The first administrator's credentials, which the site writes into a Secret when it creates the
/// administrator on its first start; shown only by the run that installed the site.
async fn initial_admin(
    s: &Scope<'_>,
    kube: &kube::Client,
    site_was_new: bool,
) -> Result<Option<(String, String)>, StepError> {
    use k8s_openapi::api::core::v1::Secret;
    if !site_was_new {
        s.record(Action::Kept, "site administrator", "exists");
        return Ok(None);
    }
    let secrets: Api<Secret> = Api::namespaced(kube.clone(), DEPLOY_SITE_DEPLOYMENT.0);
    wait_for(
        s.config.timeouts.resources(),
        |state| s.waiting(state),
        || async {
            let secret = secrets
                .get_opt(INITIAL_ADMIN_SECRET)
                .await
                .map_err(|e| StepError::kube(format!("secret {INITIAL_ADMIN_SECRET}"), e))?;
            let field = |key: &str| {
                secret
                    .as_ref()
                    .and_then(|s| s.data.as_ref())
                    .and_then(|d| d.get(key))
                    .and_then(|v| String::from_utf8(v.0.clone()).ok())
            };
            Ok(match (field("username"), field("password")) {
                (Some(user), Some(password)) => Poll::Ready(Some((user, password))),
                _ => Poll::Pending("the site to create its first administrator".to_owned()),
            })
        },
    )
    .await
    .on("site administrator")
    .inspect(|_| s.record(Action::Created, "site administrator", INITIAL_ADMIN_SECRET))
}

/// The Secret in which the site leaves its first administrator's credentials.
const INITIAL_ADMIN_SECRET: &str = "kdeploy-initial-admin";
