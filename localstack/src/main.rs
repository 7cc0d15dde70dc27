//! `localstack`: runs the local stack's services in the foreground for the demo and for debugging.

use anyhow::Context;
use clap::{Parser, Subcommand};
use localstack::{AwsEmulator, Port, Venv};

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
        Command::Aws { port } => {
            let port = if port == 0 {
                Port::Any
            } else {
                Port::Fixed(port)
            };
            let mut emulator = AwsEmulator::start(port).await?;
            tracing::info!(endpoint = emulator.endpoint(), "serving; Ctrl-C stops");
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
