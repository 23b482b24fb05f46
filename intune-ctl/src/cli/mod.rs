//! The command line: the command tree here, one file per subcommand.

pub mod classify;
pub mod common;
pub mod run;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Loads and watches intune-xdp, the XDP filter that knows the Microsoft Intune endpoints.
#[derive(Debug, Parser)]
#[command(name = "intune-ctl", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every frame of a capture through the real program and print what it decided.
    Classify(classify::ClassifyArgs),
    /// Attach the filter to interfaces and print its hit counters until Ctrl-C or SIGTERM.
    Run(run::RunArgs),
}

/// Parses the command line, runs the command, reports an error with exit code 2.
pub fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Classify(args) => classify::run(args),
        Command::Run(args) => tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(run::run(args))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("intune-ctl: {err:#}");
            ExitCode::from(2)
        }
    }
}
