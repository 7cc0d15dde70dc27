//! What goes into the cluster and what comes out of it: `install` applies the ingress controller
//! and the deploy site in order and waits until they serve; `uninstall` removes what would outlive
//! the cluster in AWS (LoadBalancer Services) and then the platform's namespaces.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Service};
use kube::Api;
use kube::api::{DeleteParams, ListParams};

use crate::credentials::{Credentials, initial_admin};
use crate::error::{Error, Result};
use crate::manifests::{self, SiteValues};
use crate::names::{
    INGRESS_CONTROLLER, INGRESS_NAMESPACE, PLATFORM_NAMESPACES, SITE, SYSTEM_NAMESPACE,
};
use crate::wait::{self, Patience, Progress};

/// What the installer decides; everything else is fixed by the manifests and [`crate::names`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallSpec {
    pub site: SiteValues,
    /// How many nodes must be Ready before anything is applied.
    pub nodes: usize,
    /// How long each wait (nodes, rollouts, first credentials) may take.
    pub wait_limit: Duration,
}

/// What an install found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// The site's namespace did not exist before this run, so it had no administrator and this run
    /// waited for the site to create one: the run on which to show the credentials.
    pub site_newly_created: bool,
    /// The first administrator's credentials while the site's Secret exists (show them when
    /// `site_newly_created`; [`initial_admin`] serves a command that shows them again).
    pub initial_admin: Option<Credentials>,
    /// How many objects were applied (all of them, every run: applying is idempotent).
    pub applied: usize,
}

/// Waits for the nodes, applies the ingress controller and the deploy site, waits for both
/// rollouts and, on the run that created the site, for the site to store its first credentials.
pub async fn install(
    client: &kube::Client,
    spec: &InstallSpec,
    progress: Option<&Progress>,
) -> Result<Installed> {
    let patience = Patience {
        limit: spec.wait_limit,
        progress,
    };
    // Render first: a bad host or image fails before anything changes.
    let controller = manifests::ingress_controller()?;
    let site = manifests::deploy_site(&spec.site)?;

    wait::nodes_ready(client, spec.nodes, patience).await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let site_newly_created = namespaces
        .get_opt(SYSTEM_NAMESPACE)
        .await
        .map_err(|e| Error::api("reading", format!("Namespace {SYSTEM_NAMESPACE}"), e))?
        .is_none();

    let mut applied = manifests::apply(client, &controller).await?;
    applied += manifests::apply(client, &site).await?;
    let (controller, site) = tokio::join!(
        wait::rollout_complete(client, INGRESS_NAMESPACE, INGRESS_CONTROLLER, patience),
        wait::rollout_complete(client, SYSTEM_NAMESPACE, SITE, patience),
    );
    controller.and(site)?;

    let initial_admin = if site_newly_created {
        Some(wait::initial_admin_present(client, patience).await?)
    } else {
        initial_admin(client).await?
    };
    Ok(Installed {
        site_newly_created,
        initial_admin,
        applied,
    })
}

/// What `uninstall` did to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Deleted,
    /// Already gone: nothing to do.
    Absent,
}

/// One object `uninstall` dealt with, for the caller's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// `"LoadBalancer service"` or `"namespace"`.
    pub kind: &'static str,
    /// `namespace/name` for a Service, the name for a namespace.
    pub name: String,
    pub outcome: Outcome,
}

/// Deletes every Service of type LoadBalancer (so the cloud provider releases the AWS load
/// balancers that would block the VPC's deletion), then the platform's namespaces.
pub async fn uninstall(client: &kube::Client) -> Result<Vec<Change>> {
    let mut changes = Vec::new();
    let services: Api<Service> = Api::all(client.clone());
    let list = services
        .list(&ListParams::default())
        .await
        .map_err(|e| Error::api("listing", "Services in every namespace", e))?;
    for service in list.items {
        let is_load_balancer =
            service.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer");
        let (true, Some(ns), Some(name)) = (
            is_load_balancer,
            service.metadata.namespace.as_deref(),
            service.metadata.name.as_deref(),
        ) else {
            continue;
        };
        let api: Api<Service> = Api::namespaced(client.clone(), ns);
        let outcome = delete(&api, name, format!("Service {ns}/{name}")).await?;
        changes.push(Change {
            kind: "LoadBalancer service",
            name: format!("{ns}/{name}"),
            outcome,
        });
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for ns in PLATFORM_NAMESPACES {
        let outcome = delete(&namespaces, ns, format!("Namespace {ns}")).await?;
        changes.push(Change {
            kind: "namespace",
            name: ns.to_owned(),
            outcome,
        });
    }
    Ok(changes)
}

async fn delete<K>(api: &Api<K>, name: &str, resource: String) -> Result<Outcome>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(Outcome::Deleted),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(Outcome::Absent),
        Err(e) => Err(Error::api("deleting", resource, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The provisioner runs these inside `Send` step futures.
    #[allow(dead_code)]
    fn the_futures_are_send(client: &kube::Client, spec: &InstallSpec, progress: &Progress) {
        fn send<T: Send>(_: T) {}
        send(install(client, spec, Some(progress)));
        send(uninstall(client));
        send(manifests::wait_rollout(
            client,
            ("ns", "name"),
            Duration::ZERO,
        ));
        send(initial_admin(client));
    }
}
