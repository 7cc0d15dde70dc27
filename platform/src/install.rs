//! What goes into the cluster and what comes out of it: `install` applies the ingress controller,
//! the deploy site and the targets controller in order and waits until they serve (the rollouts,
//! then the ingress controller's acceptance of the public host's routes); `uninstall` removes
//! what would outlive the cluster in AWS (LoadBalancer Services) and then the whole platform: the
//! namespaces the site created for developers, the platform's namespaces and its cluster-wide
//! objects.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::Api;
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams};
use serde_json::Value;

use crate::credentials::{Credentials, initial_admin};
use crate::error::{Error, Result};
use crate::manifests::{self, SiteValues};
use crate::names::{
    HOST_INGRESS, INGRESS_CONTROLLER, INGRESS_NAMESPACE, MANAGED_BY_LABEL, PART_OF_LABEL,
    PLATFORM_NAMESPACES, PRODUCT, SITE, SYSTEM_NAMESPACE, TARGETS_CONTROLLER,
};
use crate::targets;
use crate::wait::{self, Patience, Progress, Route};

/// What the installer decides; everything else is fixed by the manifests and [`crate::names`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallSpec {
    pub site: SiteValues,
    /// The load balancer's target group that the targets controller (the site's image, `web
    /// targets`) keeps equal to the Ready nodes. `None` installs no targets controller: for a
    /// cluster whose load balancer someone else keeps (tests of the routes alone).
    pub targets: Option<targets::Settings>,
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

/// Waits for the nodes, applies the ingress controller, the deploy site and the targets
/// controller, waits for their rollouts and for the ingress controller to accept the public host's master and the site's minion
/// (without that, nothing on the public host is served) and, on the run that created the site,
/// for the site to store its first credentials.
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
    let keeper = match &spec.targets {
        Some(settings) => manifests::targets_controller(settings, &spec.site.image)?,
        None => Vec::new(),
    };

    wait::nodes_ready(client, spec.nodes, patience).await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let site_newly_created = namespaces
        .get_opt(SYSTEM_NAMESPACE)
        .await
        .map_err(|e| Error::api("reading", format!("Namespace {SYSTEM_NAMESPACE}"), e))?
        .is_none();

    let before = judged_routes(client).await?;
    let controller = manifests::apply(client, &controller).await?;
    let site = manifests::apply(client, &site).await?;
    // After the site's objects, which make the namespace.
    let keeper = manifests::apply(client, &keeper).await?;
    let applied = controller.len() + site.len() + keeper.len();
    let routes = routes(&site, &before);
    let keeper_rollout = async {
        match spec.targets {
            Some(_) => {
                wait::rollout_complete(client, SYSTEM_NAMESPACE, TARGETS_CONTROLLER, patience).await
            }
            None => Ok(()),
        }
    };
    let (controller, site, keeper) = tokio::join!(
        wait::rollout_complete(client, INGRESS_NAMESPACE, INGRESS_CONTROLLER, patience),
        wait::rollout_complete(client, SYSTEM_NAMESPACE, SITE, patience),
        keeper_rollout,
    );
    controller.and(site).and(keeper)?;
    wait::routes_accepted(client, SYSTEM_NAMESPACE, &routes, patience).await?;

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

/// The public host's Ingresses that the platform installs: the master, then the site's minion.
const ROUTES: [&str; 2] = [HOST_INGRESS, SITE];

/// What the controller judges of an Ingress: its annotations and its spec.
type Judged = (Value, Value);

fn judged(object: &DynamicObject) -> Judged {
    let annotations = serde_json::to_value(&object.metadata.annotations).unwrap_or(Value::Null);
    (
        annotations,
        object.data.get("spec").cloned().unwrap_or(Value::Null),
    )
}

/// What the controller judges of each of [`ROUTES`] that exists.
async fn judged_routes(client: &kube::Client) -> Result<BTreeMap<&'static str, Judged>> {
    let resource = ApiResource::erase::<Ingress>(&());
    let ingresses: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), SYSTEM_NAMESPACE, &resource);
    let mut found = BTreeMap::new();
    for name in ROUTES {
        let ingress = ingresses
            .get_opt(name)
            .await
            .map_err(|e| Error::api("reading", format!("Ingress {SYSTEM_NAMESPACE}/{name}"), e))?;
        if let Some(ingress) = ingress {
            found.insert(name, judged(&ingress));
        }
    }
    Ok(found)
}

/// [`ROUTES`] as applied: their uids, and for those whose annotations or spec the apply changed,
/// the resourceVersion from which a verdict counts (an earlier one judged the old content). The
/// content, not the resourceVersion, tells a change: a status update also moves the version.
fn routes(applied: &[DynamicObject], before: &BTreeMap<&'static str, Judged>) -> Vec<Route> {
    let is_ingress = |o: &&DynamicObject| o.types.as_ref().is_some_and(|t| t.kind == "Ingress");
    applied
        .iter()
        .filter(is_ingress)
        .filter_map(|o| {
            let name = ROUTES
                .into_iter()
                .find(|n| o.metadata.name.as_deref() == Some(n))?;
            let changed = before.get(name) != Some(&judged(o));
            Some(Route {
                name: name.to_owned(),
                uid: o.metadata.uid.clone()?,
                changed_at: o.metadata.resource_version.clone().filter(|_| changed),
            })
        })
        .collect()
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
    /// `"LoadBalancer service"`, `"user namespace"`, `"namespace"`, `"ClusterRoleBinding"`,
    /// `"ClusterRole"` or `"IngressClass"`.
    pub kind: &'static str,
    /// `namespace/name` for a Service, the name for anything else.
    pub name: String,
    pub outcome: Outcome,
}

/// Removes the whole platform, so that nothing of it outlives `down`: every Service of type
/// LoadBalancer (so the cloud provider releases the AWS load balancers that would block the VPC's
/// deletion), then the namespaces the site created for developers (labelled as managed by the
/// product: their repositories, and their Ingresses, minions of the public host's master, would
/// otherwise outlive the accounts that owned them), then the platform's namespaces (the master with
/// them), then the platform's cluster-wide objects (RBAC, the IngressClass). On AWS the cluster
/// goes next anyway; against a cluster that stays (the local simulator), this leaves it as it
/// was before `up`, except for what others created.
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
    let managed = ListParams::default().labels(&format!("{MANAGED_BY_LABEL}={PRODUCT}"));
    let developers = namespaces
        .list(&managed)
        .await
        .map_err(|e| Error::api("listing", "the namespaces the site created", e))?;
    for ns in developers.items {
        let Some(name) = ns.metadata.name else {
            continue;
        };
        if PLATFORM_NAMESPACES.contains(&name.as_str()) {
            continue;
        }
        let outcome = delete_namespace(&namespaces, &name).await?;
        changes.push(Change {
            kind: "user namespace",
            name,
            outcome,
        });
    }
    for ns in PLATFORM_NAMESPACES {
        let outcome = delete_namespace(&namespaces, ns).await?;
        changes.push(Change {
            kind: "namespace",
            name: ns.to_owned(),
            outcome,
        });
    }

    let ours = ListParams::default().labels(&format!("{PART_OF_LABEL}={PRODUCT}"));
    changes.extend(delete_all::<ClusterRoleBinding>(client, "ClusterRoleBinding", &ours).await?);
    changes.extend(delete_all::<ClusterRole>(client, "ClusterRole", &ours).await?);
    changes.extend(delete_all::<IngressClass>(client, "IngressClass", &ours).await?);
    Ok(changes)
}

/// Deletes every cluster-scoped `K` that `selector` finds.
async fn delete_all<K>(
    client: &kube::Client,
    kind: &'static str,
    selector: &ListParams,
) -> Result<Vec<Change>>
where
    K: kube::Resource<Scope = k8s_openapi::ClusterResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::all(client.clone());
    let found = api
        .list(selector)
        .await
        .map_err(|e| Error::api("listing", format!("the platform's {kind}s"), e))?;
    let mut names: Vec<String> = found
        .items
        .iter()
        .filter_map(|o| o.meta().name.clone())
        .collect();
    names.sort();
    let mut changes = Vec::new();
    for name in names {
        let outcome = delete(&api, &name, format!("{kind} {name}")).await?;
        changes.push(Change {
            kind,
            name,
            outcome,
        });
    }
    Ok(changes)
}

/// A namespace already terminating answers 409 ("the system is ensuring all content is
/// removed"): its deletion is under way, as asked, so a second `down` goes on.
async fn delete_namespace(api: &Api<Namespace>, name: &str) -> Result<Outcome> {
    match delete(api, name, format!("Namespace {name}")).await {
        Err(e) if e.http_status() == Some(409) => Ok(Outcome::Deleted),
        other => other,
    }
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
