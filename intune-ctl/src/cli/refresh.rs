//! `intune-ctl refresh`: asks the running daemon to check the web service (within its hourly
//! limit) and to look every name up again, and prints what came of it.

use std::time::Duration;

use crate::daemon::{
    control,
    protocol::{Refreshed, Request},
};

#[derive(Debug, clap::Args)]
pub struct RefreshArgs {
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub paths: super::flags::PathFlags,
}

pub fn run(args: &RefreshArgs) -> anyhow::Result<()> {
    let settings = args.paths.settings()?;
    // A check may retry with backoff: give it time.
    let answer: Refreshed = control::ask(
        &settings.paths.control_socket,
        Request::Refresh,
        Duration::from_secs(120),
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        println!("web service: {}", answer.service);
        println!("names looked up again: {}", answer.names);
        println!("{}", answer.status);
    }
    Ok(())
}
