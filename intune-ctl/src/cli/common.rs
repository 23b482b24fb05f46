//! Options several subcommands share.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::{
    datapath::{Capacity, Datapath},
    endpoints::{self, EndpointSet},
    policy::{Direction, Mode, Policy},
    rules::{RuleSet, RuleSetOptions},
};

/// Which endpoint sets make the rule set.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct RuleArgs {
    /// Endpoint file in the Microsoft 365 endpoint web service's JSON schema, instead of the
    /// built-in list (repeatable).
    #[arg(long = "endpoints", value_name = "FILE")]
    pub endpoints: Vec<PathBuf>,
    /// Also allow the port-only sets for any address (Delivery Optimization peering: TCP 7680,
    /// UDP 3544).
    #[arg(long)]
    pub peer_ports: bool,
}

impl RuleArgs {
    /// The selected endpoint sets and the rule set built from them.
    pub fn load(&self) -> anyhow::Result<(Vec<EndpointSet>, RuleSet)> {
        let sets = endpoints::from_files_or_builtin(&self.endpoints)?;
        let opts = RuleSetOptions {
            port_only: self.peer_ports,
            ..RuleSetOptions::default()
        };
        let rules = RuleSet::build(&sets, &opts, None).context("building the rule set")?;
        Ok((sets, rules))
    }
}

/// What the filter does with what it matched.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct PolicyArgs {
    /// monitor: pass everything and count; enforce: drop what is neither Intune nor infrastructure.
    #[arg(long, value_enum, default_value_t)]
    pub mode: Mode,
    /// Which address is matched: dst (traffic from devices), src (return traffic) or both.
    #[arg(long, value_enum, default_value_t)]
    pub direction: Direction,
    /// In enforce mode, allow DNS only to this resolver (repeatable; default: any resolver).
    #[arg(long = "dns-resolver", value_name = "ADDRESS")]
    pub dns_resolvers: Vec<std::net::IpAddr>,
}

impl PolicyArgs {
    pub fn policy(&self) -> Policy {
        Policy {
            mode: self.mode,
            direction: self.direction,
            iface_directions: Vec::new(),
            dns_resolvers: self.dns_resolvers.clone(),
        }
    }
}

/// Loads the program with room for `rules` and fills its maps.
pub fn load_datapath(rules: &RuleSet, policy: &Policy, trace: bool) -> anyhow::Result<Datapath> {
    let mut dp = Datapath::load(Capacity::for_prefixes(rules.index_bound()))
        .context("loading the XDP program")?;
    dp.install(rules, policy, trace)
        .context("filling the program's maps")?;
    Ok(dp)
}
