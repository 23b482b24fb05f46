//! `intune-ctl refresh`: asks the running daemon to check the web service (within its hourly
//! limit) and to look every name up again, and prints what came of it.

use std::{path::PathBuf, time::Duration};

use crate::daemon::control::{self, DEFAULT_SOCKET, Request};

#[derive(Debug, clap::Args)]
pub struct RefreshArgs {
    #[arg(long)]
    pub json: bool,
    #[arg(long, default_value = DEFAULT_SOCKET, value_name = "PATH")]
    pub control_socket: PathBuf,
}

pub fn run(args: &RefreshArgs) -> anyhow::Result<()> {
    // A check may retry with backoff: give it time.
    let answer = control::ask(
        &args.control_socket,
        Request::Refresh,
        Duration::from_secs(120),
    )?;
    if let Some(e) = answer["error"].as_str() {
        anyhow::bail!("the daemon refused: {e}");
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        println!("web service: {}", answer["service"].as_str().unwrap_or("-"));
        println!("names looked up again: {}", answer["names"]);
        println!("{}", answer["status"].as_str().unwrap_or(""));
    }
    Ok(())
}
