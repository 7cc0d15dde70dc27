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
use provisioner::steps::{self, PlatformSettings, SiteSource};

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
    /// Kubernetes version of the EKS cluster, e.g. 1.35 (default: the newest in EKS standard
    /// support whose node AMI is published).
    #[arg(long, global = true)]
    kubernetes_version: Option<String>,
    /// Allow versions in EKS extended support and set the cluster's upgrade policy to EXTENDED
    /// (billed per cluster-hour); as `support = "extended"` in stack.toml.
    #[arg(long, global = true)]
    extended_support: bool,
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
    /// The deploy site's static x86_64-unknown-linux-musl binary (`./dev site-binary` builds it):
    /// `up` builds the site's image from it and pushes it to the stack's ECR repository.
    #[arg(
        long,
        global = true,
        env = "PROVISIONER_SITE_BINARY",
        value_name = "PATH"
    )]
    site_binary: Option<PathBuf>,
    /// The deploy site's image, published elsewhere, used as it is (instead of --site-binary).
    #[arg(
        long,
        global = true,
        env = "PROVISIONER_SITE_IMAGE",
        value_name = "REF"
    )]
    site_image: Option<String>,
    /// Also write the image built from --site-binary into this OCI image layout (the local
    /// cluster simulator's image store).
    #[arg(
        long,
        global = true,
        env = "PROVISIONER_IMAGE_LAYOUT",
        value_name = "DIR"
    )]
    image_layout: Option<PathBuf>,
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
    /// Show what `up` would create, update or keep, changing nothing.
    Plan,
    /// Show each resource with its id and state.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print an EKS bearer token as a kubectl ExecCredential (the kubeconfig's credential plugin).
    Token,
    /// Repair: register the current nodes' IPs in the load balancer's target group and deregister
    /// every other target, by the rule of the in-cluster targets controller, which otherwise keeps
    /// them by itself.
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
    /// The local emulator's URL when the run targets it (`--local` / `--endpoint`), so commands that
    /// hand work to another process (the kubeconfig's credential plugin) target it too.
    pub local_endpoint: Option<String>,
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
        extended_support: cli.extended_support,
        today: None,
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
    let settings = match platform_settings(cli) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("error: {err}");
            return Err(InvalidConfig);
        }
    };
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
    let local_endpoint = match &target {
        Target::Local { endpoint } => Some(endpoint.clone()),
        Target::Aws { .. } => None,
    };
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
        local_endpoint,
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

/// The Kubernetes steps' settings from the flags; for `up` of the whole platform, with the
/// site's binary checked before any AWS call.
fn platform_settings(cli: &Cli) -> Result<PlatformSettings, SiteFlagsError> {
    let site = site_source(cli)?;
    if matches!(cli.command, Command::Up) && !cli.aws_only {
        match &site {
            SiteSource::Unset => return Err(SiteFlagsError::Missing),
            SiteSource::Binary { path, .. } => readable(path)?,
            SiteSource::Image(_) => {}
        }
    }
    Ok(PlatformSettings {
        kube_override: cli
            .kube_endpoint
            .as_ref()
            .map(|endpoint| platform::cluster::Access {
                endpoint: endpoint.clone(),
                certificate_authority: None,
                token: cli.kube_token.clone().unwrap_or_default(),
            }),
        site,
        public_url: cli.public_url.clone(),
    })
}

/// Where the site's image comes from: the rules between the three flags.
fn site_source(cli: &Cli) -> Result<SiteSource, SiteFlagsError> {
    match (&cli.site_binary, &cli.site_image) {
        (Some(_), Some(_)) => Err(SiteFlagsError::Both),
        (None, Some(_)) if cli.image_layout.is_some() => Err(SiteFlagsError::LayoutWithoutBinary),
        (None, Some(image)) => Ok(SiteSource::Image(image.clone())),
        (Some(path), None) => Ok(SiteSource::Binary {
            path: path.clone(),
            layout: cli.image_layout.clone(),
        }),
        // --image-layout alone (say from the environment) matters only to an `up`, which refuses.
        (None, None) => Ok(SiteSource::Unset),
    }
}

/// A binary `up` could not read should stop it before it creates anything.
fn readable(path: &std::path::Path) -> Result<(), SiteFlagsError> {
    let unreadable = |source| SiteFlagsError::Unreadable {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(unreadable)?;
    match file.metadata().map_err(unreadable)? {
        meta if meta.is_file() => Ok(()),
        _ => Err(unreadable(std::io::Error::other("not a regular file"))),
    }
}

/// Why the site's flags do not say which image to install.
#[derive(Debug, thiserror::Error)]
enum SiteFlagsError {
    #[error(
        "`up` installs the deploy site and needs its image: give --site-binary PATH, the site's static \
         x86_64-unknown-linux-musl binary (`./dev site-binary` builds it at \
         $CARGO_TARGET_DIR/x86_64-unknown-linux-musl/site/web; `up` builds the image and pushes it to the \
         stack's ECR repository), or --site-image REF, an image published elsewhere; or bring up only \
         the AWS side with --aws-only"
    )]
    Missing,
    #[error(
        "--site-binary and --site-image exclude each other: give --site-binary to build and push the \
         site's image from its binary, or --site-image to use an image published elsewhere as it is"
    )]
    Both,
    #[error(
        "--image-layout writes the image built from --site-binary; with --site-image nothing is built"
    )]
    LayoutWithoutBinary,
    #[error(
        "--site-binary {}: cannot be read ({source}); `./dev site-binary` builds the site's static binary \
         at $CARGO_TARGET_DIR/x86_64-unknown-linux-musl/site/web",
        path.display()
    )]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
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
        let url = platform_settings(&cli).unwrap().public_url.unwrap();
        assert_eq!(url.to_string(), "http://kdeploy.localhost:8080");
        assert_eq!(url.host(), "kdeploy.localhost");
        assert!(
            platform_settings(&Cli::try_parse_from(["provisioner", "plan"]).unwrap())
                .unwrap()
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

    fn site(args: &[&str]) -> Result<SiteSource, SiteFlagsError> {
        let cli = Cli::try_parse_from(std::iter::once("provisioner").chain(args.iter().copied()))
            .unwrap();
        platform_settings(&cli).map(|settings| settings.site)
    }

    /// A file that stands for the site's binary, removed when dropped.
    struct Binary(PathBuf);

    impl Binary {
        fn new(name: &str) -> Self {
            let path = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
            std::fs::write(&path, b"\x7fELF").unwrap();
            Self(path)
        }

        fn arg(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }

    impl Drop for Binary {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn the_site_flags_choose_a_binary_to_push_or_an_image_as_it_is() {
        let binary = Binary::new("site-flags-binary");
        assert_eq!(
            site(&["--site-binary", binary.arg(), "up"]).unwrap(),
            SiteSource::Binary {
                path: binary.0.clone(),
                layout: None
            }
        );
        assert_eq!(
            site(&[
                "--site-binary",
                binary.arg(),
                "--image-layout",
                ".local/oci",
                "up"
            ])
            .unwrap(),
            SiteSource::Binary {
                path: binary.0.clone(),
                layout: Some(PathBuf::from(".local/oci"))
            }
        );
        assert_eq!(
            site(&["--site-image", "registry.example/web:1", "up"]).unwrap(),
            SiteSource::Image("registry.example/web:1".into())
        );
        // Only `up` of the whole platform installs the site; the others need no image.
        for args in [
            &["--aws-only", "up"][..],
            &["down"],
            &["plan"],
            &["status"],
            &["--site-binary", "/nowhere/web", "down"],
        ] {
            assert!(site(args).is_ok(), "{args:?}");
        }
        assert_eq!(site(&["down"]).unwrap(), SiteSource::Unset);
    }

    #[test]
    fn up_without_a_site_image_or_with_two_names_both_flags_and_the_rule() {
        let missing = site(&["up"]).unwrap_err().to_string();
        for needed in [
            "--site-binary",
            "--site-image",
            "./dev site-binary",
            "$CARGO_TARGET_DIR/x86_64-unknown-linux-musl/site/web",
        ] {
            assert!(missing.contains(needed), "{needed}: {missing}");
        }

        let binary = Binary::new("site-flags-both");
        let both = site(&["--site-binary", binary.arg(), "--site-image", "x:1", "up"])
            .unwrap_err()
            .to_string();
        assert!(
            both.contains("--site-binary and --site-image exclude each other"),
            "{both}"
        );
        // The rule holds for every command, not only `up`.
        assert!(matches!(
            site(&["--site-binary", binary.arg(), "--site-image", "x:1", "down"]),
            Err(SiteFlagsError::Both)
        ));
        assert!(matches!(
            site(&["--site-image", "x:1", "--image-layout", "dir", "up"]),
            Err(SiteFlagsError::LayoutWithoutBinary)
        ));
    }

    #[test]
    fn a_site_binary_that_cannot_be_read_stops_up() {
        let gone = site(&["--site-binary", "/nowhere/web", "up"])
            .unwrap_err()
            .to_string();
        assert!(
            gone.contains("--site-binary /nowhere/web: cannot be read")
                && gone.contains("./dev site-binary"),
            "{gone}"
        );
        let dir = std::env::temp_dir();
        let not_a_file = site(&["--site-binary", dir.to_str().unwrap(), "up"]);
        assert!(
            matches!(not_a_file, Err(SiteFlagsError::Unreadable { .. })),
            "{not_a_file:?}"
        );
    }

    #[tokio::test]
    async fn up_without_a_site_image_exits_2_before_any_aws_call() {
        // Were any call made, it would go to a closed port and fail with exit code 1.
        let cli = Cli::try_parse_from([
            "provisioner",
            "--endpoint",
            "http://127.0.0.1:9",
            "--name",
            "noimage",
            "up",
        ])
        .unwrap();
        assert_eq!(run(cli).await.unwrap(), ExitCode::from(EXIT_CONFIG));
    }
}
