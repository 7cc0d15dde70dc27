use std::io::Read;
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use web::accounts::Accounts;
use web::accounts::bootstrap::Bootstrap;
use web::config::{PUBLIC_URL_ENV, PublicUrl};
use web::{AppState, ClusterNames, Config};

/// mimalloc: the image's static musl binary would otherwise allocate with musl's malloc, which
/// serialises threads and made the site fall behind its watches under load; and than glibc's it
/// keeps less memory once freed (the argon2 buffer of each sign-in, per-thread arenas). See the
/// README's benchmark. The `heap-profile` feature leaves the system's allocator in place, so a
/// heap profiler that hooks malloc (heaptrack) sees every allocation.
#[cfg(not(feature = "heap-profile"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The kdeploy deploy site.
#[derive(Parser)]
struct Cli {
    /// Namespace of the site's own Secrets (users, session key) and settings (the installed
    /// manifest sets it from the pod's own namespace).
    #[arg(long, env = "KDEPLOY_NAMESPACE", global = true)]
    namespace: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the site (the default).
    Serve(ServeArgs),
    /// Keep the load balancer's target group equal to the cluster's Ready nodes (the targets
    /// controller, which the platform runs from this image). Settings come from the environment:
    /// KDEPLOY_TARGET_GROUP_ARN, KDEPLOY_TARGET_PORT, AWS_REGION, and AWS_ENDPOINT_URL only for a
    /// local AWS emulator; credentials from the AWS SDK's default chain (on a node, the node role).
    Targets,
    /// Create a user; the password is read from standard input.
    CreateUser {
        #[arg(long)]
        username: String,
        /// Make the user an administrator.
        #[arg(long)]
        admin: bool,
    },
}

/// Settings of `web serve`; each also comes from the environment when no subcommand is given.
#[derive(clap::Args, Default)]
struct ServeArgs {
    #[arg(long, env = "KDEPLOY_LISTEN", default_value = "127.0.0.1:8080")]
    listen: Option<SocketAddr>,
    /// Public base URL of the site and its endpoints, `scheme://host[:port]` (on AWS
    /// `http://<load balancer DNS name>`, locally `http://kdeploy.localhost:8080`); Ingress rules
    /// use its host, links the whole URL.
    #[arg(long, env = "KDEPLOY_PUBLIC_URL")]
    public_url: Option<String>,
    /// Ingress class of the platform's ingress controller.
    #[arg(long, env = "KDEPLOY_INGRESS_CLASS")]
    ingress_class: Option<String>,
    /// The platform's own namespaces, comma-separated; never usable as usernames.
    #[arg(long, env = "KDEPLOY_PLATFORM_NAMESPACES", value_delimiter = ',')]
    platform_namespaces: Option<Vec<String>>,
    /// Secret where the first administrator's generated credentials are left.
    #[arg(long, env = "KDEPLOY_INITIAL_ADMIN_SECRET")]
    initial_admin_secret: Option<String>,
    /// Cookie signing key, base64 (64+ bytes); when absent it is kept in a Secret.
    #[arg(long, env = "KDEPLOY_SESSION_KEY", hide_env_values = true)]
    session_key: Option<String>,
    /// Send cookies over plain HTTP too (local runs only).
    #[arg(long)]
    insecure_cookies: bool,
    /// Do not create a ResourceQuota and LimitRange in user namespaces.
    #[arg(long)]
    no_quota: bool,
    /// Base URL of the ingress the API console sends through (the ingress controller's Service
    /// in the cluster); requests carry the public URL's host[:port] as their Host header.
    #[arg(long, env = "KDEPLOY_CONSOLE_UPSTREAM")]
    console_upstream: Option<String>,
    /// Time limit of one console request, in seconds [default: 10].
    #[arg(long, env = "KDEPLOY_CONSOLE_TIMEOUT_SECS")]
    console_timeout_secs: Option<u64>,
    /// Console responses are cut at this many KiB [default: 256].
    #[arg(long, env = "KDEPLOY_CONSOLE_MAX_RESPONSE_KIB")]
    console_max_response_kib: Option<usize>,
    /// Console requests per user per minute, counted by each site replica [default: 30].
    #[arg(long, env = "KDEPLOY_CONSOLE_CALLS_PER_MINUTE")]
    console_calls_per_minute: Option<u32>,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A setting the platform's manifest must provide, named by its environment variable when missing.
fn required<T>(value: Option<T>, env: &str) -> anyhow::Result<T> {
    value.with_context(|| {
        format!("{env} is not set: the site's manifest passes it (or give the flag)")
    })
}

/// Reads a setting from the environment when `web` runs with no subcommand, so clap never saw it.
fn from_env(value: Option<String>, env: &str) -> Option<String> {
    value.or_else(|| std::env::var(env).ok().filter(|v| !v.is_empty()))
}

fn cluster_names(
    namespace: Option<String>,
    args: ServeArgs,
) -> anyhow::Result<(PublicUrl, ClusterNames, ServeArgs)> {
    let public_url = PublicUrl::parse(&required(
        from_env(args.public_url.clone(), PUBLIC_URL_ENV),
        PUBLIC_URL_ENV,
    )?)?;
    let platform_namespaces = args.platform_namespaces.clone().or_else(|| {
        from_env(None, "KDEPLOY_PLATFORM_NAMESPACES")
            .map(|v| v.split(',').map(|n| n.trim().to_string()).collect())
    });
    let names = ClusterNames {
        namespace: required(
            from_env(namespace, "KDEPLOY_NAMESPACE"),
            "KDEPLOY_NAMESPACE",
        )?,
        ingress_class: required(
            from_env(args.ingress_class.clone(), "KDEPLOY_INGRESS_CLASS"),
            "KDEPLOY_INGRESS_CLASS",
        )?,
        platform_namespaces: required(platform_namespaces, "KDEPLOY_PLATFORM_NAMESPACES")?
            .into_iter()
            .filter(|n| !n.is_empty())
            .collect(),
        console_upstream: required(
            from_env(args.console_upstream.clone(), "KDEPLOY_CONSOLE_UPSTREAM"),
            "KDEPLOY_CONSOLE_UPSTREAM",
        )?,
        initial_admin_secret: required(
            from_env(
                args.initial_admin_secret.clone(),
                "KDEPLOY_INITIAL_ADMIN_SECRET",
            ),
            "KDEPLOY_INITIAL_ADMIN_SECRET",
        )?,
    };
    Ok((public_url, names, args))
}

/// In-cluster config inside a pod, the kubeconfig elsewhere.
async fn kube_client() -> anyhow::Result<kube::Client> {
    kube::Client::try_default()
        .await
        .context("cannot reach Kubernetes")
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::CreateUser { username, admin } => {
            let client = kube_client().await?;
            let mut password = String::new();
            std::io::stdin()
                .read_to_string(&mut password)
                .context("cannot read the password from standard input")?;
            // Only the site's namespace matters here; the platform's names reserve usernames.
            let names = ClusterNames {
                namespace: required(
                    from_env(cli.namespace, "KDEPLOY_NAMESPACE"),
                    "KDEPLOY_NAMESPACE",
                )?,
                ingress_class: String::new(),
                platform_namespaces: from_env(None, "KDEPLOY_PLATFORM_NAMESPACES")
                    .map(|v| v.split(',').map(|n| n.trim().to_string()).collect())
                    .unwrap_or_default(),
                console_upstream: String::new(),
                initial_admin_secret: String::new(),
            };
            // Creating a user builds no links or routes; any valid URL does.
            let config = Config::new(PublicUrl::parse("http://localhost")?, names);
            let accounts = Accounts::new(client, std::sync::Arc::new(config));
            accounts
                .create_user(&username, password.trim_end_matches(['\r', '\n']), admin)
                .await?;
            tracing::info!(username, admin, "user created");
            Ok(())
        }
        Command::Targets => {
            // The settings first, so a wrong one is reported before anything else happens.
            let settings = platform::targets::Settings::from_env(|name| std::env::var(name).ok())?;
            let client = kube_client().await?;
            let stop = stop_signal()?;
            tokio::select! {
                ended = platform::targets::run(platform::targets::Config::new(settings, client)) => {
                    ended?;
                }
                signal = stop => tracing::info!("{signal}: stopping"),
            }
            Ok(())
        }
        Command::Serve(args) => {
            // The settings first, so a wrong one is reported before anything else happens.
            let (public_url, names, args) = cluster_names(cli.namespace, args)?;
            let client = kube_client().await?;
            let mut config = Config::new(public_url, names);
            config.secure_cookies = !args.insecure_cookies;
            if args.no_quota {
                config.quota = None;
            }
            // Absent flags keep the defaults of `ConsoleLimits` (also when no subcommand is given).
            if let Some(secs) = args.console_timeout_secs {
                config.console.timeout = std::time::Duration::from_secs(secs);
            }
            if let Some(kib) = args.console_max_response_kib {
                config.console.max_response_bytes = kib.saturating_mul(1024);
            }
            if let Some(calls) = args.console_calls_per_minute {
                config.console.max_calls = calls;
            }
            if let Some(key) = from_env(args.session_key, "KDEPLOY_SESSION_KEY") {
                use base64::Engine;
                config.session_key = Some(
                    base64::engine::general_purpose::STANDARD
                        .decode(key.trim())
                        .context("KDEPLOY_SESSION_KEY is not base64")?,
                );
            }
            let listen = args
                .listen
                .or_else(|| from_env(None, "KDEPLOY_LISTEN").and_then(|l| l.parse().ok()))
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080)));
            let state = AppState::connect(client, config).await?;
            match state.repositories.upgrade_routes().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(routes = n, "routes of the older form upgraded to minions"),
                Err(e) => {
                    tracing::warn!(error = %e, "routes not checked for the older form; each is upgraded on its next change")
                }
            }
            match state.accounts.ensure_initial_admin().await? {
                Bootstrap::Created => tracing::info!(
                    secret = %state.config.initial_admin_secret,
                    namespace = %state.config.system_namespace,
                    "first administrator created; the credentials are in the Secret"
                ),
                Bootstrap::CreatedElsewhere | Bootstrap::AdminExists => {}
            }
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            tracing::info!(%listen, "serving");
            let stop = shutdown_signal()?;
            web::app::serve(listener, state, stop).await?;
            tracing::info!("stopped");
            Ok(())
        }
    }
}

/// Resolves on SIGTERM (the kubelet's stop, after the pod's preStop sleep; the site is PID 1 in its
/// container, so nothing else forwards it) or Ctrl-C; live-update streams then end (browsers
/// reconnect to another replica), in-flight requests finish, and the server exits well within
/// the pod's termination grace period.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    let stop = stop_signal()?;
    Ok(async move {
        let signal = stop.await;
        tracing::info!("{signal}: finishing open requests, then stopping");
    })
}

/// Resolves with the signal's name on SIGTERM or Ctrl-C.
fn stop_signal() -> anyhow::Result<impl std::future::Future<Output = &'static str>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = tokio::signal::ctrl_c() => "Ctrl-C",
        }
    })
}
