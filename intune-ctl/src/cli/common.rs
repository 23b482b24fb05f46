//! What several subcommands do alike.

use anyhow::Context as _;

use crate::{
    datapath::{Capacity, Datapath, pins::Pins, probe::Probe},
    ruleset::{policy::Policy, rules::RuleSet},
    settings::Settings,
};

/// A copy of the running filter's program on its pinned maps (`lookup`, `check`).
pub fn live_probe(settings: &Settings) -> anyhow::Result<Probe> {
    let pins = Pins::new(&settings.paths.bpffs_dir);
    Probe::open(&pins).with_context(|| {
        format!(
            "no running filter pinned under {} (is the daemon started?)",
            pins.dir().display()
        )
    })
}

/// Loads the program with room for `rules` and fills its maps.
pub fn load_datapath(rules: &RuleSet, policy: &Policy, trace: bool) -> anyhow::Result<Datapath> {
    let mut dp = Datapath::load(Capacity::for_prefixes(rules.index_bound()))
        .context("loading the XDP program")?;
    dp.install(rules, policy, trace)
        .context("filling the program's maps")?;
    Ok(dp)
}
