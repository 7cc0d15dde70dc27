//! The command line: `up`, `down`, `plan`, `status`, `sync-targets`, `token`, `initial-admin`,
//! `kubeconfig`.
//! The arguments and the wiring they select live here; each command is a function of
//! [`commands`]; what they print is in [`report`].

#[macro_use]
mod report;
mod commands;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use platform::PublicUrl;
use provisioner::Aws;
use provisioner::aws::{CallLog, LOCAL_ENDPOINT, Target};
use provisioner::config::{ConfigError, Overrides, StackFile};
use provisioner::plan::{Context, Plan};
use provisioner::progress::{PlainProgress, Progress, TerminalProgress};
use provisioner::steps::{self, PlatformSettings};

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
    /// The deploy site's public URL, scheme://host[:port], instead of http://<the NLB's DNS name>
    /// (locally: http://kdeploy.localhost:8080); its host is the host of the public Ingresses.
    #[arg(
        long,
        global = true,
        env = "PROVISIONER_PUBLIC_URL",
        value_name = "URL",
        value_parser = public_url
    )]
    public_url: Option<PublicUrl>,
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
    /// Print the site's first administrator's credentials again, while the site's Secret holds them.
    InitialAdmin,
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

/// What every command works with: the run's context, the plan the flags select, and where the
/// AWS calls go.
pub(crate) struct Wiring {
    pub cx: Context,
    pub plan: Plan,
    pub calls: CallLog,
    /// "AWS ap-northeast-2" or "local emulator at URL", for the reports.
    pub target: String,
    pub profile: Option<String>,
    /// The API server to use instead of the EKS endpoint (the local simulator), as the steps have it.
    pub kube_override: Option<platform::cluster::Access>,
}

/// An invalid setting: reported with the field and rule, exit code 2, nothing touched.
struct InvalidConfig;

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let Ok(wiring) = wire(&cli).await else {
        return Ok(ExitCode::from(EXIT_CONFIG));
    };
    match cli.command {
        Command::Up => commands::up(&wiring).await,
        Command::Down => commands::down(&wiring).await,
        Command::Plan => commands::plan(&wiring).await,
        Command::Status { json } => commands::status(&wiring, json).await,
        Command::SyncTargets => commands::sync_targets(wiring).await,
        Command::Token => commands::token(&wiring).await,
        Command::InitialAdmin => commands::initial_admin(&wiring).await,
        Command::Kubeconfig { kubeconfig } => commands::kubeconfig(&wiring, kubeconfig).await,
    }
}

/// Configuration, AWS connection, progress output and the catalogue with the step settings.
async fn wire(cli: &Cli) -> Result<Wiring, InvalidConfig> {
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
            return Err(InvalidConfig);
        }
    };
    let settings = platform_settings(cli);
    let kube_override = settings.kube_override.clone();
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
    let target = match &target {
        Target::Local { endpoint } => format!("local emulator at {endpoint}"),
        Target::Aws { .. } => format!("AWS {}", config.region),
    };
    let plan = if cli.aws_only {
        steps::infrastructure()
    } else {
        steps::full(settings)
    };
    Ok(Wiring {
        cx: Context::new(config, aws, progress),
        plan,
        calls,
        target,
        profile: cli.profile.clone(),
        kube_override,
    })
}

/// `--public-url`: clap names the flag and the value, this the rule it breaks.
fn public_url(text: &str) -> Result<PublicUrl, String> {
    PublicUrl::parse(text).map_err(|e| match e {
        platform::Error::Value { rule, .. } => rule.to_owned(),
        other => other.to_string(),
    })
}

/// The Kubernetes steps' settings from the flags.
fn platform_settings(cli: &Cli) -> PlatformSettings {
    let mut settings = PlatformSettings::default();
    if let Some(endpoint) = &cli.kube_endpoint {
        settings.kube_override = Some(platform::cluster::Access {
            endpoint: endpoint.clone(),
            certificate_authority: None,
            token: cli.kube_token.clone().unwrap_or_default(),
        });
    }
    settings.public_url = cli.public_url.clone();
    if let Some(image) = &cli.site_image {
        settings.site_image = image.clone();
    }
    settings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_url_flag_sets_the_sites_url_or_names_the_rule_it_breaks() {
        let cli = Cli::try_parse_from([
            "provisioner",
            "--public-url",
            "http://kdeploy.localhost:8080/",
            "plan",
        ])
        .unwrap();
        let url = platform_settings(&cli).public_url.unwrap();
        assert_eq!(url.to_string(), "http://kdeploy.localhost:8080");
        assert_eq!(url.host(), "kdeploy.localhost");
        assert!(
            platform_settings(&Cli::try_parse_from(["provisioner", "plan"]).unwrap())
                .public_url
                .is_none()
        );

        for (value, rule) in [
            (
                "kdeploy.localhost:8080",
                "must start with http:// or https://",
            ),
            ("http://kdeploy.localhost:8080/site", "no path"),
            ("http://10.0.0.1", "not an IP address"),
        ] {
            let Err(err) = Cli::try_parse_from(["provisioner", "--public-url", value, "plan"])
            else {
                panic!("{value} was accepted");
            };
            let message = err.to_string();
            assert!(
                message.contains("--public-url")
                    && message.contains(value)
                    && message.contains(rule),
                "{message}"
            );
        }
        let Err(old) = Cli::try_parse_from(["provisioner", "--public-host", "a=b", "plan"]) else {
            panic!("--public-host was accepted");
        };
        assert!(old.to_string().contains("--public-url"), "{old}");
    }
}
