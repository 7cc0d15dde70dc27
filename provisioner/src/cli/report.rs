//! What the commands print: the plan and status tables, what `down` left, and the summary after
//! `up` with the site's URL and the first administrator's credentials.

use provisioner::plan::{Context, Plan, Resource, StepError};
use provisioner::steps::cluster::Cluster;
use provisioner::steps::load_balancer::LoadBalancer;
use provisioner::steps::nodes::Nodes;
use provisioner::steps::platform::Site;

/// Prints a line to stdout; a closed pipe (`provisioner status | head`) is not an error.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

type Inspected = Vec<(&'static str, Result<Vec<Resource>, StepError>)>;

/// `plan`: per step in order, what would be created, updated or kept.
pub fn plan(plan: &Plan, order: &[&'static str], inspected: &Inspected) {
    for line in plan.describe(order, inspected) {
        say!("{line}");
    }
}

/// `plan`: the Kubernetes version, the upgrade policy (whether extended support is billed) and
/// how long standard support lasts.
pub async fn support(cx: &Context) {
    say!("\nKubernetes version and support:");
    match provisioner::steps::cluster::support_plan(cx).await {
        Ok(lines) => {
            for line in lines {
                say!("  {line}");
            }
        }
        Err(err) => say!("  ! cannot tell: {err}"),
    }
}

/// `status`: every resource with its id and state.
pub fn status_table(inspected: &Inspected) {
    for (step, found) in inspected {
        match found {
            Ok(resources) => {
                for r in resources {
                    say!(
                        "  {step:<16} {:<22} {:<30} {:<24} {}",
                        r.kind,
                        r.name,
                        r.id.as_deref().unwrap_or("-"),
                        r.state
                    );
                }
            }
            Err(err) => say!("  {step:<16} error: {err}"),
        }
    }
}

/// `status --json`.
pub fn status_json(inspected: &Inspected) -> serde_json::Result<()> {
    let doc: Vec<serde_json::Value> = inspected
        .iter()
        .flat_map(|(step, found)| match found {
            Ok(resources) => resources
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "step": step, "kind": r.kind, "name": r.name, "id": r.id, "state": r.state,
                        "update": r.update
                    })
                })
                .collect::<Vec<_>>(),
            Err(err) => vec![serde_json::json!({ "step": step, "error": err.to_string() })],
        })
        .collect();
    say!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(())
}

/// After `down`: what is still there.
pub fn leftovers(left: &[(&'static str, Resource)]) {
    say!("\nStill there:");
    for (step, r) in left {
        say!(
            "  {step:<16} {:<22} {:<28} {} {}",
            r.kind,
            r.name,
            r.id.as_deref().unwrap_or("-"),
            r.state
        );
    }
    say!("Run `provisioner down` again; if something stays, it is named above.");
}

/// After `up`: the cluster, the nodes, the NLB, and where the site is with its first credentials.
pub fn summary(cx: &Context) {
    if let Some(cluster) = cx.outputs.get::<Cluster>() {
        say!(
            "  cluster   {} (Kubernetes {}) {}",
            cluster.name,
            cluster.version,
            cluster.endpoint
        );
    }
    if let Some(nodes) = cx.outputs.get::<Nodes>() {
        let ips: Vec<String> = nodes
            .instances
            .iter()
            .map(|n| format!("{} ({})", n.private_ip, n.zone))
            .collect();
        say!("  nodes     {}", ips.join(", "));
    }
    if let Some(lb) = cx.outputs.get::<LoadBalancer>() {
        say!("  NLB       http://{}/", lb.dns_name);
    }
    if let Some(site) = cx.outputs.get::<Site>() {
        say!("\nThe deploy site: {}", site.url);
        match &site.admin {
            Some(credentials) => initial_admin(credentials),
            None => say!(
                "  sign in with your administrator account (`provisioner initial-admin` shows the first one while its Secret exists)"
            ),
        }
        say!("  kubectl access: `provisioner kubeconfig`, then `kubectl get nodes`");
    }
}

/// The site's first administrator, with what to do next (as Argo CD's initial admin Secret).
pub fn initial_admin(credentials: &platform::Credentials) {
    say!(
        "  administrator `{}`, password `{}`",
        credentials.username,
        credentials.password
    );
    say!(
        "  sign in, change the password on the Account page, then delete the Secret: kubectl -n {} delete secret {}",
        platform::names::SYSTEM_NAMESPACE,
        platform::names::INITIAL_ADMIN_SECRET
    );
}
