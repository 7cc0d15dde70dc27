//! `provisioner`: the operator's command. Parses arguments, runs, maps the outcome to an exit code.

mod cli;

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    cli::init_tracing(args.verbose);
    match cli::run(args).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::from(cli::EXIT_FAILED)
        }
    }
}
