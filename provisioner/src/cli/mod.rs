//! The command line: `up`, `down`, `plan`, `status`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use provisioner::aws::{CallLog, LOCAL_ENDPOINT, Target};
use provisioner::config::{ConfigError, Overrides, StackFile};
use provisioner::plan::{Context, Plan, humanize};
use provisioner::progress::{Action, PlainProgress, Progress, TerminalProgress};
use provisioner::{Aws, remaining};

/// Prints a line to stdout; a closed pipe (`provisioner status | head`) is not an error.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

pub const EXIT_FAILED: u8 = 1;
pub const EXIT_CONFIG: u8 = 2;
pub const EXIT_LEFTOVERS: u8 = 3;

#[derive(Parser)]
#[command(
    name = "provisioner",
    version,
    about = "Bring up (and tear down) the AWS side of the deploy platform: VPC, IAM, EKS, nodes, NLB",
    after_help = "Configuration comes from stack.toml (if present) and these flags. Credentials come from the \
                  standard AWS chain (environment, profiles, SSO). --local targets the local emulator instead."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Stack configuration file (default: ./stack.toml when it exists).
    #[arg(short, long, global = true, env = "PROVISIONER_CONFIG")]
    config: Option<PathBuf>,
    /// Stack name (tags, resource names, the EKS cluster's name).
    #[arg(long, global = true)]
    name: Option<String>,
    /// AWS region (default ap-northeast-2).
    #[arg(long, global = true)]
    region: Option<String>,
    /// Kubernetes version of the EKS cluster, e.g. 1.34.
    #[arg(long, global = true)]
    kubernetes_version: Option<String>,
    /// Number of worker nodes (sets min, desired and max).
    #[arg(long, global = true)]
    nodes: Option<i64>,
    /// AWS profile to use (otherwise the standard chain decides).
    #[arg(long, global = true, env = "AWS_PROFILE")]
    profile: Option<String>,
    /// Use the local AWS emulator (`just aws`) instead of AWS.
    #[arg(long, global = true)]
    local: bool,
    /// Endpoint of the local emulator (implies --local).
    #[arg(long, global = true, env = "PROVISIONER_ENDPOINT", value_name = "URL")]
    endpoint: Option<String>,
    /// Send the Kubernetes steps to this API server instead of the EKS endpoint (the local cluster
    /// simulator); with --kube-token.
    #[arg(
        long,
        global = true,
        env = "PROVISIONER_KUBE_ENDPOINT",
        value_name = "URL"
    )]
    kube_endpoint: Option<String>,
    /// Bearer token for --kube-endpoint.
    #[arg(
        long,
        global = true,
        env = "PROVISIONER_KUBE_TOKEN",
        hide_env_values = true
    )]
    kube_token: Option<String>,
    /// The deploy site's host name instead of the NLB's DNS name, and the URL to print, as
    /// HOST=URL (locally: kdeploy.localhost=http://kdeploy.localhost:8080/).
    #[arg(long, global = true, value_name = "HOST=URL")]
    public_host: Option<String>,
    /// Only the AWS side: skip node access, the ingress controller and the deploy site.
    #[arg(long, global = true)]
    aws_only: bool,
    /// The deploy site's image (default: the published image of this version).
    #[arg(long, global = true, env = "PROVISIONER_SITE_IMAGE")]
    site_image: Option<String>,
    /// Show every resource, also those kept unchanged, and debug logs.
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Create whatever is missing and wait until it is usable; safe to re-run.
    Up,
    /// Delete everything the stack owns, in reverse order; safe to re-run.
    Down,
    /// Show what `up` would create or keep, changing nothing.
    Plan,
    /// Show each resource with its id and state.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print an EKS bearer token as a kubectl ExecCredential (the kubeconfig's credential plugin).
    Token,
    /// Register the current nodes' IPs in the load balancer's target group, deregister stale ones.
    SyncTargets,
    /// Write or merge a kubeconfig entry for the stack's cluster (default: $KUBECONFIG or ~/.kube/config).
    Kubeconfig {
        /// The kubeconfig file to write.
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
    },
}

pub fn init_tracing(verbose: bool) {
    let default = if verbose {
        "provisioner=debug,info"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default.into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let file = match &cli.config {
        Some(path) => StackFile::load(path),
        None if PathBuf::from("stack.toml").exists() => {
            StackFile::load(&PathBuf::from("stack.toml"))
        }
        None => Ok(StackFile::default()),
    };
    let overrides = Overrides {
        name: cli.name.clone(),
        region: cli.region.clone(),
        kubernetes_version: cli.kubernetes_version.clone(),
        nodes: cli.nodes,
    };
    let config = match file.and_then(|f| f.resolve(&overrides)) {
        Ok(config) => config,
        Err(
            err @ (ConfigError::Invalid(_) | ConfigError::Parse { .. } | ConfigError::Read { .. }),
        ) => {
            eprintln!("error: {err}");
            return Ok(ExitCode::from(EXIT_CONFIG));
        }
    };
    let target = match (&cli.endpoint, cli.local) {
        (Some(endpoint), _) => Target::Local {
            endpoint: endpoint.clone(),
        },
        (None, true) => Target::Local {
            endpoint: LOCAL_ENDPOINT.to_owned(),
        },
        (None, false) => Target::Aws {
            profile: cli.profile.clone(),
        },
    };
    let progress: Arc<dyn Progress> = if std::io::stdout().is_terminal() {
        Arc::new(TerminalProgress::new(cli.verbose))
    } else {
        Arc::new(PlainProgress::new(Box::new(std::io::stdout())))
    };
    let calls = CallLog::default();
    let aws = Aws::connect(&target, &config.region, calls.clone()).await;
    let where_ = match &target {
        Target::Local { endpoint } => format!("local emulator at {endpoint}"),
        Target::Aws { .. } => format!("AWS {}", config.region),
    };
    let mut cx = Context::new(config, aws, progress);
    if let Some(endpoint) = &cli.kube_endpoint {
        cx.kube_override = Some(platform::cluster::Access {
            endpoint: endpoint.clone(),
            certificate_authority: None,
            token: cli.kube_token.clone().unwrap_or_default(),
        });
    }
    if let Some(spec) = &cli.public_host {
        let Some((host, url)) = spec.split_once('=') else {
            eprintln!(
                "error: --public-host = {spec:?}: must be HOST=URL, e.g. kdeploy.localhost=http://kdeploy.localhost:8080/"
            );
            return Ok(ExitCode::from(EXIT_CONFIG));
        };
        cx.public_host_override = Some((host.to_owned(), url.to_owned()));
    }
    if let Some(image) = &cli.site_image {
        cx.site_image = image.clone();
    }
    let plan = if cli.aws_only {
        Plan::infrastructure()
    } else {
        Plan::full()
    };
    let started = Instant::now();
    match cli.command {
        Command::Up => {
            say!("Bringing up stack `{}` on {where_}", cx.stack.name);
            let result = plan.up(&cx).await;
            let counts = calls.counts();
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
                    print_outputs(&cx);
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
        Command::Down => {
            say!("Tearing down stack `{}` on {where_}", cx.stack.name);
            let result = plan.down(&cx).await;
            let left = remaining(&plan, &cx)
                .await
                .context("listing what is left")?;
            let counts = calls.counts();
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
                say!("\nStill there:");
                for (step, r) in &left {
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
            Ok(match (result, left.is_empty()) {
                (Ok(()), true) => ExitCode::SUCCESS,
                (Err(_), _) => ExitCode::from(EXIT_FAILED),
                (Ok(()), false) => ExitCode::from(EXIT_LEFTOVERS),
            })
        }
        Command::Plan => {
            say!(
                "Plan for stack `{}` on {where_} (nothing is changed):",
                cx.stack.name
            );
            let order = plan.order().context("the plan is inconsistent")?;
            let inspected = plan.inspect(&cx).await;
            for name in order {
                let Some((_, found)) = inspected.iter().find(|(n, _)| *n == name) else {
                    continue;
                };
                let title = plan
                    .steps()
                    .find(|s| s.name() == name)
                    .map(|s| s.title())
                    .unwrap_or_default();
                say!("\n{name}: {title}");
                match found {
                    Ok(resources) if resources.is_empty() => say!("  (nothing to create)"),
                    Ok(resources) => {
                        for r in resources.iter().filter(|r| r.managed) {
                            match &r.id {
                                Some(id) => {
                                    say!("  = keep   {:<22} {:<30} {id}", r.kind, r.name)
                                }
                                None => say!("  + create {:<22} {}", r.kind, r.name),
                            }
                        }
                    }
                    Err(err) => say!("  ! cannot tell: {err}"),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::SyncTargets => {
            let plan = plan
                .through("targets")
                .context("the plan has no targets step")?;
            match plan.up(&cx).await {
                Ok(()) => {
                    let changed = cx
                        .changes()
                        .iter()
                        .filter(|c| c.step == "targets" && c.action != Action::Kept)
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
        Command::Token => {
            let credentials = cx
                .aws
                .sdk
                .credentials_provider()
                .context("no AWS credentials are configured")?;
            let credentials =
                aws_credential_types::provider::ProvideCredentials::provide_credentials(
                    &credentials,
                )
                .await
                .context("loading AWS credentials")?;
            let now = std::time::SystemTime::now();
            let token = platform::auth::eks_token(
                &credentials,
                &cx.stack.region,
                cx.stack.cluster_name(),
                now,
            )?;
            let credential =
                platform::auth::exec_credential(&token, now + platform::auth::TOKEN_LIFETIME);
            say!("{credential}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Kubeconfig { kubeconfig } => {
            let name = cx.stack.cluster_name().to_owned();
            let cluster = cx
                .aws
                .eks
                .describe_cluster()
                .name(&name)
                .send()
                .await
                .with_context(|| {
                    format!("describing EKS cluster {name} (run `provisioner up` first)")
                })?;
            let cluster = cluster.cluster().context("EKS returned no cluster")?;
            let exe = std::env::current_exe().context("locating this program")?;
            let mut args = vec![
                "token".to_owned(),
                "--name".to_owned(),
                cx.stack.name.clone(),
                "--region".to_owned(),
                cx.stack.region.clone(),
            ];
            if let Some(profile) = &cli.profile {
                args.extend(["--profile".to_owned(), profile.clone()]);
            }
            let entry = platform::kubeconfig::Entry {
                name: format!("kdeploy-{}", cx.stack.name),
                server: cluster.endpoint().unwrap_or_default().to_owned(),
                certificate_authority: cluster
                    .certificate_authority()
                    .and_then(|c| c.data())
                    .map(str::to_owned),
                exec_command: exe.display().to_string(),
                exec_args: args,
            };
            let path = kubeconfig.unwrap_or_else(platform::kubeconfig::default_path);
            platform::kubeconfig::write(&path, &entry)?;
            say!(
                "Wrote context `{}` to {} and made it current; try `kubectl get nodes`.",
                entry.name,
                path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { json } => {
            let inspected = plan.inspect(&cx).await;
            if json {
                let doc: Vec<serde_json::Value> = inspected
                    .iter()
                    .flat_map(|(step, found)| match found {
                        Ok(resources) => resources
                            .iter()
                            .map(|r| {
                                serde_json::json!({
                                    "step": step, "kind": r.kind, "name": r.name, "id": r.id, "state": r.state
                                })
                            })
                            .collect::<Vec<_>>(),
                        Err(err) => vec![serde_json::json!({ "step": step, "error": err.to_string() })],
                    })
                    .collect();
                say!("{}", serde_json::to_string_pretty(&doc)?);
            } else {
                say!("Stack `{}` on {where_}:", cx.stack.name);
                for (step, found) in &inspected {
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
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_outputs(cx: &Context) {
    if let Some(cluster) = cx.outputs.cluster.get() {
        say!(
            "  cluster   {} (Kubernetes {}) {}",
            cluster.name,
            cluster.version,
            cluster.endpoint
        );
    }
    if let Some(nodes) = cx.outputs.nodes.get() {
        let ips: Vec<String> = nodes
            .instances
            .iter()
            .map(|n| format!("{} ({})", n.private_ip, n.zone))
            .collect();
        say!("  nodes     {}", ips.join(", "));
    }
    if let Some(lb) = cx.outputs.load_balancer.get() {
        say!("  NLB       http://{}/", lb.dns_name);
    }
    if let Some(site) = cx.outputs.site.get() {
        say!("\nThe deploy site: {}", site.url);
        match &site.admin {
            Some((user, password)) => say!(
                "  administrator `{user}`, password `{password}` (shown once: keep it; users are managed on the site)"
            ),
            None => say!("  sign in with the administrator account made by the first `up`"),
        }
        say!("  kubectl access: `provisioner kubeconfig`, then `kubectl get nodes`");
    }
}
