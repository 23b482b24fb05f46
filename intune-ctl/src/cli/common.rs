//! What several subcommands do alike.

use anyhow::Context as _;

use crate::{
    datapath::{Capacity, Datapath},
    ruleset::{policy::Policy, rules::RuleSet},
};

/// Loads the program with room for `rules` and fills its maps.
pub fn load_datapath(rules: &RuleSet, policy: &Policy, trace: bool) -> anyhow::Result<Datapath> {
    let mut dp = Datapath::load(Capacity::for_prefixes(rules.index_bound()))
        .context("loading the XDP program")?;
    dp.install(rules, policy, trace)
        .context("filling the program's maps")?;
    Ok(dp)
}
