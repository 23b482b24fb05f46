//! `intune-ctl daemon` (alias `run`): its arguments. The daemon itself is `crate::daemon`.

use std::path::PathBuf;

use super::{
    common::{DnsArgs, PolicyArgs, RuleArgs, ServiceArgs},
    settings::Given,
};
use crate::{config::DEFAULT_BPFFS_DIR, datapath::XdpChoice, ruleset::policy::Direction};

#[derive(Clone, Debug, PartialEq, clap::Args)]
pub struct RunArgs {
    /// The config file; flags given here override it. Default: /etc/intune-ctl/config.toml
    /// when it exists.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Interface to attach to (repeatable); `IF:DIR` gives it its own direction (dst, src, both).
    #[arg(long = "iface", value_name = "IF[:DIR]", value_parser = parse_iface)]
    pub ifaces: Vec<IfaceSpec>,
    #[command(flatten)]
    pub rules: RuleArgs,
    #[command(flatten)]
    pub service: ServiceArgs,
    #[command(flatten)]
    pub dns: DnsArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// auto: native where the driver has it, else generic.
    #[arg(long, value_enum, default_value_t)]
    pub xdp_mode: XdpChoice,
    /// Seconds between hit-counter tables.
    #[arg(long, default_value_t = 5, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub interval: u64,
    /// Where the program, its maps and links are pinned (bpffs is mounted when missing).
    #[arg(long, alias = "bpffs", default_value = DEFAULT_BPFFS_DIR, value_name = "DIR")]
    pub bpffs_dir: PathBuf,
    /// The control socket `status` and `refresh` talk to.
    #[arg(long, default_value = crate::daemon::control::DEFAULT_SOCKET, value_name = "PATH")]
    pub control_socket: PathBuf,
    /// Serve Prometheus metrics on this address.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Remove the filter when the daemon stops (by default it stays attached).
    #[arg(long)]
    pub detach_on_stop: bool,
}

/// One interface to attach to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfaceSpec {
    pub name: String,
    pub direction: Option<Direction>,
    /// The command's `--xdp-mode` when absent.
    pub xdp_mode: Option<XdpChoice>,
}

/// `IF` or `IF:DIR`: an interface name cannot hold a colon.
fn parse_iface(text: &str) -> Result<IfaceSpec, String> {
    let (name, direction) = match text.split_once(':') {
        None => (text, None),
        Some((name, dir)) => {
            let dir = <Direction as clap::ValueEnum>::from_str(dir, true)
                .map_err(|_| format!("{dir:?} is not a direction (dst, src, both)"))?;
            (name, Some(dir))
        }
    };
    Ok(IfaceSpec {
        name: name.to_string(),
        direction,
        xdp_mode: None,
    })
}

pub async fn run(args: &RunArgs, given: &Given<'_>) -> anyhow::Result<()> {
    crate::daemon::run(args, given).await
}
