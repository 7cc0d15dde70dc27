use std::io::Read;
use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use web::{AppState, Config};

/// The kdeploy deploy site.
#[derive(Parser)]
struct Cli {
    /// Namespace of the site's own Secrets (users, session key) and settings.
    #[arg(
        long,
        env = "KDEPLOY_NAMESPACE",
        default_value = "kdeploy-system",
        global = true
    )]
    namespace: String,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the site (the default).
    Serve(ServeArgs),
    /// Create a user; the password is read from standard input.
    CreateUser {
        #[arg(long)]
        username: String,
        /// Make the user an administrator.
        #[arg(long)]
        admin: bool,
    },
}

#[derive(clap::Args, Default)]
struct ServeArgs {
    #[arg(long, env = "KDEPLOY_LISTEN", default_value = "127.0.0.1:8080")]
    listen: Option<SocketAddr>,
    /// Public host of the endpoints (the load balancer's DNS name).
    #[arg(long, env = "KDEPLOY_PUBLIC_HOST", default_value = "localhost")]
    public_host: Option<String>,
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
    /// in the cluster); requests carry the public host as their Host header.
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

async fn run(cli: Cli) -> anyhow::Result<()> {
    // In-cluster config inside a pod, the kubeconfig elsewhere.
    let client = kube::Client::try_default()
        .await
        .context("cannot reach Kubernetes")?;
    match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::CreateUser { username, admin } => {
            let mut password = String::new();
            std::io::stdin()
                .read_to_string(&mut password)
                .context("cannot read the password from standard input")?;
            let mut config = Config::new("localhost");
            config.system_namespace = cli.namespace;
            let accounts = web::auth::Accounts::new(client, std::sync::Arc::new(config));
            accounts
                .create_user(&username, password.trim_end_matches(['\r', '\n']), admin)
                .await?;
            tracing::info!(username, admin, "user created");
            Ok(())
        }
        Command::Serve(args) => {
            let mut config = Config::new(args.public_host.unwrap_or_else(|| "localhost".into()));
            config.system_namespace = cli.namespace;
            config.secure_cookies = !args.insecure_cookies;
            if args.no_quota {
                config.quota = None;
            }
            if let Some(upstream) = args.console_upstream {
                config.console.upstream = upstream;
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
            if let Some(key) = args.session_key {
                use base64::Engine;
                config.session_key = Some(
                    base64::engine::general_purpose::STANDARD
                        .decode(key.trim())
                        .context("KDEPLOY_SESSION_KEY is not base64")?,
                );
            }
            let listen = args
                .listen
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080)));
            let state = AppState::connect(client, config).await?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            tracing::info!(%listen, "serving");
            axum::serve(listener, web::app(state))
                .with_graceful_shutdown(async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await?;
            Ok(())
        }
    }
}
