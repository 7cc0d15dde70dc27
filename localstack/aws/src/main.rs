//! `localstack`: runs the local stack's services in the foreground for the demo and for debugging.

use anyhow::Context;
use aws::{AwsEmulator, Front, Port, Profile, Venv};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "The local stack: AWS emulator for development and tests")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create or update the project-local venv with the pinned emulator.
    Setup,
    /// Run the AWS emulator on 127.0.0.1 until interrupted.
    Aws {
        /// Port to listen on (0 picks a free one).
        #[arg(long, default_value_t = 5000)]
        port: u16,
        /// Behave like AWS in time and failure: `fast` (seconds, for tests) or `realistic`
        /// (EKS takes 12 minutes). Without it, moto answers everything at once.
        #[arg(long, value_parser = ["instant", "fast", "realistic"])]
        profile: Option<String>,
        /// Fraction of calls answered with throttling (needs --profile).
        #[arg(long, default_value_t = 0.0)]
        throttle: f64,
        /// Fraction of calls answered with a 5xx (needs --profile).
        #[arg(long, default_value_t = 0.0)]
        server_errors: f64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Setup => {
            let python = Venv::project()?.ensure().await?;
            tracing::info!(python = %python.display(), "venv ready");
        }
        Command::Aws {
            port,
            profile,
            throttle,
            server_errors,
        } => {
            let profile = profile
                .as_deref()
                .and_then(Profile::by_name)
                .map(|p| p.with_faults(throttle, server_errors));
            let moto_port = match (&profile, port) {
                (Some(_), _) | (None, 0) => Port::Any,
                (None, p) => Port::Fixed(p),
            };
            let mut emulator = AwsEmulator::start(moto_port).await?;
            // Kept alive until the end of this arm: dropping it stops the front.
            let front = match profile {
                Some(profile) => Some(
                    Front::start(emulator.endpoint(), profile, port)
                        .await
                        .context("starting the realistic front")?,
                ),
                None => None,
            };
            let endpoint = front
                .as_ref()
                .map_or_else(|| emulator.endpoint().to_owned(), Front::endpoint);
            let profile = front.as_ref().map_or("none", |f| f.profile().name);
            tracing::info!(%endpoint, profile, "serving; Ctrl-C stops");
            tokio::select! {
                status = emulator.wait() => {
                    let status = status.context("waiting for the emulator")?;
                    anyhow::bail!("the emulator exited: {status}");
                }
                _ = tokio::signal::ctrl_c() => emulator.stop().await,
            }
        }
    }
    Ok(())
}
