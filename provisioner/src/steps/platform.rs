//! The Kubernetes side of the stack: the nodes' permission to join, then (once they are Ready)
//! the ingress controller and the deploy site, and the site's first administrator.

use k8s_openapi::api::core::v1::{Namespace, Node, Service};
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use platform::cluster::Access;
use platform::manifests::{
    self, DEPLOY_SITE_DEPLOYMENT, INGRESS_CONTROLLER_DEPLOYMENT, SiteValues,
};

use crate::plan::{OnResource, Resource, Scope, Step, StepError, StepFuture, input};
use crate::progress::Action;
use crate::retry::{Poll, wait_for};

/// What the platform step produces: where developers go.
#[derive(Debug, Clone)]
pub struct Site {
    pub url: String,
    /// Set only by the run that created the first administrator: shown once.
    pub admin: Option<(String, String)>,
}

/// The first administrator's username.
pub const ADMIN: &str = "operator";

fn failed(resource: impl Into<String>, reason: impl std::fmt::Display) -> StepError {
    StepError::Failed {
        resource: resource.into(),
        reason: reason.to_string(),
    }
}

/// A client for the stack's cluster: the override (the local simulator) or EKS with a fresh token.
pub async fn cluster_client(s: &Scope<'_>) -> Result<kube::Client, StepError> {
    let access = match &s.kube_override {
        Some(access) => access.clone(),
        None => {
            let cluster = input(&s.outputs.cluster, "cluster")?;
            let provider = s
                .aws
                .sdk
                .credentials_provider()
                .ok_or_else(|| failed("AWS credentials", "none are configured"))?;
            let credentials =
                aws_credential_types::provider::ProvideCredentials::provide_credentials(&provider)
                    .await
                    .map_err(|e| failed("AWS credentials", e))?;
            let token = platform::auth::eks_token(
                &credentials,
                &s.stack.region,
                &cluster.name,
                std::time::SystemTime::now(),
            )
            .map_err(|e| failed("EKS token", e))?;
            Access {
                endpoint: cluster.endpoint.clone(),
                certificate_authority: Some(cluster.certificate_authority.clone()),
                token,
            }
        }
    };
    platform::cluster::connect(&access)
        .map_err(|e| failed(format!("cluster API {}", access.endpoint), e))
}

/// Lets the node role join: an EC2_LINUX access entry, or the aws-auth mapping where EKS has no
/// access-entry API. Runs before the nodes boot so that they join at once.
pub struct NodeAccessStep;

impl Step for NodeAccessStep {
    fn name(&self) -> &'static str {
        "node-access"
    }

    fn title(&self) -> &'static str {
        "let the worker nodes join the cluster"
    }

    fn needs(&self) -> &'static [&'static str] {
        &["cluster", "iam"]
    }

    fn ensure<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, ()> {
        Box::pin(async move {
            let roles = input(&s.outputs.iam, "iam")?;
            let kube = cluster_client(s).await?;
            let joined = platform::join::allow_nodes(
                &s.aws.eks,
                &kube,
                s.stack.cluster_name(),
                &roles.node_role_arn,
            )
            .await
            .map_err(|e| failed(format!("node role {}", roles.node_role_arn), e))?;
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
pub struct PlatformStep;

impl Step for PlatformStep {
    fn name(&self) -> &'static str {
        "platform"
    }

    fn title(&self) -> &'static str {
        "ingress controller and deploy site in the cluster"
    }

    fn needs(&self) -> &'static [&'static str] {
        &["nodes", "node-access", "load-balancer", "targets"]
    }

    fn ensure<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, ()> {
        Box::pin(async move {
            let lb = input(&s.outputs.load_balancer, "load-balancer")?;
            let kube = cluster_client(s).await?;
            wait_nodes_ready(s, &kube, s.config.nodes.desired as usize).await?;

            let controller = manifests::ingress_controller()
                .map_err(|e| failed("ingress controller manifest", e))?;
            manifests::apply(&kube, &controller)
                .await
                .map_err(|e| failed("ingress controller", e))?;
            s.record(
                Action::Kept,
                "ingress controller",
                "nginx-ingress/nginx-ingress (applied)",
            );
            let (public_host, url) = match &s.public_host_override {
                Some((host, url)) => (host.clone(), url.clone()),
                None => {
                    let host = lb.dns_name.to_ascii_lowercase();
                    (host.clone(), format!("http://{host}/"))
                }
            };
            let values = SiteValues {
                public_host,
                image: s.site_image.clone(),
            };
            let site =
                manifests::deploy_site(&values).map_err(|e| failed("deploy site manifest", e))?;
            manifests::apply(&kube, &site)
                .await
                .map_err(|e| failed("deploy site", e))?;
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
            a.and(b).map_err(|e| failed("rollout", e))?;

            wait_targets_healthy(s, &lb.target_group_arn).await?;
            let admin = ensure_admin(s, &kube, &values.public_host).await?;
            let _ = s.outputs.site.set(Site { url, admin });
            Ok(())
        })
    }

    fn destroy<'a>(&'a self, s: &'a Scope<'a>) -> StepFuture<'a, ()> {
        Box::pin(async move {
            // Without a cluster there is nothing in it to remove; any other failure to look is an error.
            if s.kube_override.is_none() {
                let active = crate::steps::cluster::describe(s, s.stack.cluster_name())
                    .await?
                    .filter(|c| c.status().is_some_and(|st| st.as_str() == "ACTIVE"));
                let Some(described) = active else {
                    s.record(Action::Absent, "platform objects", "the cluster is gone");
                    return Ok(());
                };
                // cluster_client needs the cluster's endpoint and CA.
                let _ = s
                    .outputs
                    .cluster
                    .set(crate::steps::cluster::Cluster::from_described(
                        s.stack.cluster_name(),
                        &described,
                    ));
            }
            let kube = cluster_client(s).await?;
            // Services of type LoadBalancer make AWS load balancers that would block the VPC.
            let services: Api<Service> = Api::all(kube.clone());
            let list = services
                .list(&ListParams::default())
                .await
                .map_err(|e| failed("services", e))?;
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
                        .map_err(|e| failed(format!("service {ns}/{name}"), e))?;
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
                    Err(e) => return Err(failed(format!("namespace {ns}"), e)),
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
                .map_err(|e| failed("nodes", e))?;
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
    use crate::aws::AwsResultExt;
    wait_for(
        s.config.timeouts.resources(),
        |state| s.waiting(state),
        || async {
            let out = s
                .aws
                .elbv2
                .describe_target_health()
                .target_group_arn(target_group)
                .send()
                .await
                .op("elbv2:DescribeTargetHealth")
                .on(format!("target group {}", s.stack.target_group()))?;
            let states: Vec<&str> = out
                .target_health_descriptions()
                .iter()
                .map(|d| {
                    d.target_health()
                        .and_then(|h| h.state())
                        .map_or("unknown", |st| st.as_str())
                })
                .collect();
            let healthy = states.iter().filter(|st| **st == "healthy").count();
            Ok(if !states.is_empty() && healthy == states.len() {
                Poll::Ready(())
            } else {
                Poll::Pending(format!("{healthy}/{} targets healthy", states.len()))
            })
        },
    )
    .await
    .on(format!("target group {}", s.stack.target_group()))
}

/// Creates the site's first administrator with a generated password, unless the site has one.
async fn ensure_admin(
    s: &Scope<'_>,
    kube: &kube::Client,
    host: &str,
) -> Result<Option<(String, String)>, StepError> {
    let accounts =
        web::auth::Accounts::new(kube.clone(), std::sync::Arc::new(web::Config::new(host)));
    let users = accounts
        .list_users()
        .await
        .map_err(|e| failed("site users", e))?;
    if users.iter().any(|u| u.admin) {
        s.record(Action::Kept, "site administrator", "exists");
        return Ok(None);
    }
    let password = generate_password();
    accounts
        .create_user(ADMIN, &password, true)
        .await
        .map_err(|e| failed("site administrator", e))?;
    s.record(Action::Created, "site administrator", ADMIN);
    Ok(Some((ADMIN.to_owned(), password)))
}

/// 20 characters from an unambiguous alphabet: about 110 bits.
fn generate_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..20)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}
