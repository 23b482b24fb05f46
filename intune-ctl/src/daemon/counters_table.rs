//! The hit-counter tables the daemon prints every interval and when it stops.

use std::{collections::BTreeMap, net::IpAddr};

use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};

use crate::{
    datapath::Datapath,
    ruleset::rules::{Rule, RuleSet, Target},
};

/// The outcome counters, then the rules with hits, most hits first, with the names that
/// resolved to each address.
pub fn print(dp: &Datapath, addresses: &BTreeMap<IpAddr, Vec<&str>>) -> anyhow::Result<()> {
    let empty = RuleSet::default();
    let rules = dp.installed().unwrap_or(&empty);
    let mut table = Table::new();
    table
        .load_preset(UTF8_BORDERS_ONLY)
        .set_header(["outcome", "packets", "bytes"]);
    for (outcome, c) in dp.outcome_counters()? {
        table.add_row([
            outcome.counter_name().to_string(),
            c.packets.to_string(),
            c.bytes.to_string(),
        ]);
    }
    println!("{table}");
    let counters = dp.rule_counters_of(rules.rules.iter().map(|r| r.index))?;
    let mut hits: Vec<(&Rule, _)> = rules
        .rules
        .iter()
        .zip(counters)
        .filter(|(_, c)| c.packets > 0)
        .collect();
    hits.sort_by_key(|(_, c)| std::cmp::Reverse(c.packets));
    if hits.is_empty() {
        println!("no rule hits yet");
        return Ok(());
    }
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY).set_header([
        "prefix",
        "names",
        "endpoint sets",
        "ports",
        "packets",
        "bytes",
    ]);
    for (rule, c) in hits {
        let sets: Vec<String> = rule.sets.iter().map(|s| s.id.to_string()).collect();
        let names = match rule.target {
            Target::Prefix(net) if net.prefix_len() == net.max_prefix_len() => addresses
                .get(&net.addr())
                .map(|n| n.join(","))
                .unwrap_or_default(),
            _ => String::new(),
        };
        table.add_row([
            rule.target.to_string(),
            names,
            sets.join(","),
            rule.effective.to_string(),
            c.packets.to_string(),
            c.bytes.to_string(),
        ]);
    }
    println!("{table}");
    Ok(())
}
