//! Bigger maps for a rule set that outgrew the ones the program was loaded with: a second
//! copy of the program is loaded with room to spare, filled like the first (rules, policy,
//! local addresses, what drains), and swapped onto the pinned links, which never leave their
//! interfaces: no packet goes unfiltered. The rule counters carry over.

use aya::maps::{PerCpuArray, PerCpuValues};
use intune_common::maps::{Counter, DRAIN, RULE_STATS};

use super::{Capacity, Datapath, DatapathError, drain::drain_key, pins::Pins, sync::map_err};
use crate::ruleset::rules::RuleSet;

impl Datapath {
    /// The room the program was loaded with.
    pub fn capacity(&self) -> Capacity {
        self.capacity
    }

    /// Whether `rules` fits the maps: its rule indices the counters, its prefixes the tries.
    pub fn fits(&self, rules: &RuleSet) -> bool {
        let c = &self.capacity;
        rules.index_bound() <= c.rules as usize
            && rules.prefix_count() < c.prefixes_v4.min(c.prefixes_v6) as usize
    }

    /// A copy of this program with room for `rules` and twice as much again, pinned under
    /// `pins` and holding what this one holds (not attached yet, not learning).
    pub fn grown_for(&self, rules: &RuleSet, pins: &Pins) -> Result<Datapath, DatapathError> {
        let capacity = Capacity {
            learned: self.capacity.learned,
            ..Capacity::for_prefixes(rules.index_bound().max(rules.prefix_count()) * 2)
        };
        // The pinned rule counters are too small: the new program gets its own, pinned in
        // their place; this one keeps counting into the old ones until the swap, and
        // `carry_rule_counters_from` brings their counts over.
        match std::fs::remove_file(pins.map(RULE_STATS)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(DatapathError::Pins(e));
            }
            _ => {}
        }
        let mut next = Datapath::load_pinned(capacity, pins)?;
        next.set_drain(self.drain_idle)?;
        let empty = RuleSet::default();
        next.install(self.installed().unwrap_or(&empty), &self.policy, self.trace)?;
        next.set_local_addresses(&self.local)?;
        next.copy_drain_from(self)?;
        next.pin_program_at(pins)?;
        next.pin_lookup_maps(pins)?;
        Ok(next)
    }

    /// What drains in `old`, draining here too (with its last packet's time).
    fn copy_drain_from(&mut self, old: &Datapath) -> Result<(), DatapathError> {
        let entries = old.drain_entries()?;
        if entries.is_empty() {
            return Ok(());
        }
        let mut map = self.drain()?;
        for (net, entry) in entries {
            map.insert(&drain_key(&net), entry, 0)
                .map_err(map_err(DRAIN))?;
        }
        Ok(())
    }

    /// Adds `old`'s rule counters (per CPU) to this program's, for the rules of the rule set in
    /// force: once the links carry this program, `old` counts no more.
    pub fn carry_rule_counters_from(&mut self, old: &Datapath) -> Result<(), DatapathError> {
        let Some(rules) = old.installed() else {
            return Ok(());
        };
        let from = old
            .ebpf
            .map(RULE_STATS)
            .ok_or(DatapathError::Missing(RULE_STATS))?;
        let from = PerCpuArray::<_, Counter>::try_from(from).map_err(map_err(RULE_STATS))?;
        let mut to = PerCpuArray::<_, Counter>::try_from(self.map_mut(RULE_STATS)?)
            .map_err(map_err(RULE_STATS))?;
        for rule in &rules.rules {
            let (Ok(before), Ok(now)) = (from.get(&rule.index, 0), to.get(&rule.index, 0)) else {
                continue;
            };
            let sum: Vec<Counter> = before
                .iter()
                .zip(now.iter())
                .map(|(a, b)| Counter {
                    packets: a.packets + b.packets,
                    bytes: a.bytes + b.bytes,
                })
                .collect();
            let values = PerCpuValues::try_from(sum).map_err(DatapathError::Fd)?;
            to.set(rule.index, values, 0).map_err(map_err(RULE_STATS))?;
        }
        Ok(())
    }
}
