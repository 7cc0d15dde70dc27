//! One function per command, each on the wiring that [`super::run`] built.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use provisioner::plan::humanize;
use provisioner::progress::Action;
use provisioner::remaining;
use provisioner::steps::targets;

use super::{EXIT_FAILED, EXIT_LEFTOVERS, Wiring, report};

/// Creates what is missing and prints the summary.
pub async fn up(w: &Wiring) -> anyhow::Result<ExitCode> {
    let cx = &w.cx;
    let started = Instant::now();
    say!("Bringing up stack `{}` on {}", cx.stack.name, w.target);
    let result = w.plan.up(cx).await;
    let counts = w.calls.counts();
    let changed = cx
        .changes()
        .iter()
        .filter(|c| c.action != Action::Kept)
        .count();
    match result {
        Ok(()) => {
            say!(
                "\nStack `{}` is up ({}, {} AWS calls of which {} changed something; {changed} resources created or updated)",
                cx.stack.name,
                humanize(started.elapsed()),
                counts.total,
                counts.mutating
            );
            report::summary(cx);
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            eprintln!("\nerror: {err}");
            eprintln!(
                "Nothing is lost: run `provisioner up` again to resume, or `provisioner down` to remove what was made."
            );
            Ok(ExitCode::from(EXIT_FAILED))
        }
    }
}

/// Deletes everything, then checks that nothing is left.
pub async fn down(w: &Wiring) -> anyhow::Result<ExitCode> {
    let cx = &w.cx;
    let started = Instant::now();
    say!("Tearing down stack `{}` on {}", cx.stack.name, w.target);
    let result = w.plan.down(cx).await;
    let left = remaining(&w.plan, cx)
        .await
        .context("listing what is left")?;
    let counts = w.calls.counts();
    if let Err(err) = &result {
        eprintln!("\nerror: {err}");
    }
    if left.is_empty() {
        say!(
            "\nNothing of stack `{}` is left ({}, {} AWS calls).",
            cx.stack.name,
            humanize(started.elapsed()),
            counts.total
        );
    } else {
        report::leftovers(&left);
    }
    Ok(match (result, left.is_empty()) {
        (Ok(()), true) => ExitCode::SUCCESS,
        (Err(_), _) => ExitCode::from(EXIT_FAILED),
        (Ok(()), false) => ExitCode::from(EXIT_LEFTOVERS),
    })
}

/// What `up` would do, changing nothing.
pub async fn plan(w: &Wiring) -> anyhow::Result<ExitCode> {
    say!(
        "Plan for stack `{}` on {} (nothing is changed):",
        w.cx.stack.name,
        w.target
    );
    let order = w.plan.order().context("the plan is inconsistent")?;
    let inspected = w.plan.inspect(&w.cx).await;
    report::plan(&w.plan, &order, &inspected);
    report::support(&w.cx).await;
    Ok(ExitCode::SUCCESS)
}

pub async fn status(w: &Wiring, json: bool) -> anyhow::Result<ExitCode> {
    let inspected = w.plan.inspect(&w.cx).await;
    if json {
        report::status_json(&inspected)?;
    } else {
        say!("Stack `{}` on {}:", w.cx.stack.name, w.target);
        report::status_table(&inspected);
    }
    Ok(ExitCode::SUCCESS)
}

/// Only the targets step and what it needs.
pub async fn sync_targets(w: Wiring) -> anyhow::Result<ExitCode> {
    let plan = w
        .plan
        .through(targets::ID)
        .context("the plan has no targets step")?;
    match plan.up(&w.cx).await {
        Ok(()) => {
            let changed =
                w.cx.changes()
                    .iter()
                    .filter(|c| c.step == targets::ID.name() && c.action != Action::Kept)
                    .count();
            say!("Targets in sync ({changed} changed).");
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            eprintln!("error: {err}");
            Ok(ExitCode::from(EXIT_FAILED))
        }
    }
}

/// An EKS token as a kubectl ExecCredential: the kubeconfig's credential plugin.
pub async fn token(w: &Wiring) -> anyhow::Result<ExitCode> {
    let now = std::time::SystemTime::now();
    let token = provisioner::access::eks_token(&w.cx.aws, w.cx.stack.cluster_name(), now).await?;
    let credential = platform::auth::exec_credential(&token, now + platform::auth::TOKEN_LIFETIME);
    say!("{credential}");
    Ok(ExitCode::SUCCESS)
}

/// The site's first administrator's credentials, read from the Secret the site left them in.
pub async fn initial_admin(w: &Wiring) -> anyhow::Result<ExitCode> {
    let access = match &w.kube_override {
        Some(access) => access.clone(),
        None => {
            let name = w.cx.stack.cluster_name();
            let cluster = active_cluster(w).await?;
            let not_yet = || {
                format!(
                    "EKS cluster {name} is not ready yet (it is {})",
                    cluster.status
                )
            };
            let endpoint = cluster.endpoint.as_deref().with_context(not_yet)?;
            let authority = cluster
                .certificate_authority
                .as_deref()
                .with_context(not_yet)?;
            provisioner::access::cluster_access(&w.cx.aws, name, endpoint, authority).await?
        }
    };
    let client = platform::cluster::connect(&access)?;
    match platform::initial_admin(&client).await? {
        Some(credentials) => {
            report::initial_admin(&credentials);
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!(
                "error: the Secret {}/{} is gone (deleted after the password was changed, as advised); \
                 sign in with your own password, or have another administrator reset it",
                platform::names::SYSTEM_NAMESPACE,
                platform::names::INITIAL_ADMIN_SECRET
            );
            Ok(ExitCode::from(EXIT_FAILED))
        }
    }
}

/// The stack's EKS cluster as DescribeCluster has it, or an error saying to run `up` first.
async fn active_cluster(w: &Wiring) -> anyhow::Result<provisioner::aws::eks::EksCluster> {
    let name = w.cx.stack.cluster_name();
    w.cx.aws
        .eks()
        .cluster(name)
        .await
        .with_context(|| format!("describing EKS cluster {name} (run `provisioner up` first)"))?
        .with_context(|| format!("EKS cluster {name} does not exist (run `provisioner up` first)"))
}

/// Writes a kubeconfig entry whose credential plugin is this program's `token` command.
pub async fn kubeconfig(w: &Wiring, path: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let stack = &w.cx.stack;
    let name = stack.cluster_name();
    let cluster = active_cluster(w).await?;
    let server = cluster.endpoint.with_context(|| {
        format!(
            "EKS cluster {name} has no endpoint yet (it is {})",
            cluster.status
        )
    })?;
    let exe = std::env::current_exe().context("locating this program")?;
    let mut args = vec![
        "token".to_owned(),
        "--name".to_owned(),
        stack.name.clone(),
        "--region".to_owned(),
        stack.region.clone(),
    ];
    if let Some(profile) = &w.profile {
        args.extend(["--profile".to_owned(), profile.clone()]);
    }
    // A stack in the local emulator: the plugin signs with the emulator's credentials, not with
    // whatever the shell kubectl runs in happens to have.
    if let Some(endpoint) = &w.local_endpoint {
        args.extend(["--endpoint".to_owned(), endpoint.clone()]);
    }
    let entry = platform::kubeconfig::Entry {
        name: format!("kdeploy-{}", stack.name),
        server,
        certificate_authority: cluster.certificate_authority,
        exec_command: exe.display().to_string(),
        exec_args: args,
    };
    let path = path.unwrap_or_else(platform::kubeconfig::default_path);
    platform::kubeconfig::write(&path, &entry)?;
    say!(
        "Wrote context `{}` to {} and made it current; try `kubectl get nodes`.",
        entry.name,
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}
