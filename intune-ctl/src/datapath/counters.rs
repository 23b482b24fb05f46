//! Reading the per-CPU hit counters, summed over CPUs: from a loaded program, or from the maps
//! a daemon pinned (so `stats` works while the daemon is down).

use aya::maps::{Map, MapData, PerCpuArray};
use intune_common::{
    maps::{Counter, OUTCOME_STATS, RULE_STATS},
    outcome::Outcome,
};

use super::{Datapath, DatapathError, pins::Pins, sync::map_err};

fn sum(values: impl IntoIterator<Item = Counter>) -> Counter {
    values.into_iter().fold(Counter::default(), |a, c| Counter {
        packets: a.packets + c.packets,
        bytes: a.bytes + c.bytes,
    })
}

fn outcomes_in(map: &Map) -> Result<Vec<(Outcome, Counter)>, DatapathError> {
    let array = PerCpuArray::<_, Counter>::try_from(map).map_err(map_err(OUTCOME_STATS))?;
    Outcome::ALL
        .iter()
        .map(|&o| {
            let per_cpu = array.get(&(o as u32), 0).map_err(map_err(OUTCOME_STATS))?;
            Ok((o, sum(per_cpu.iter().copied())))
        })
        .collect()
}

fn rules_in(
    map: &Map,
    indices: impl IntoIterator<Item = u32>,
) -> Result<Vec<Counter>, DatapathError> {
    let array = PerCpuArray::<_, Counter>::try_from(map).map_err(map_err(RULE_STATS))?;
    indices
        .into_iter()
        .map(|i| {
            let per_cpu = array.get(&i, 0).map_err(map_err(RULE_STATS))?;
            Ok(sum(per_cpu.iter().copied()))
        })
        .collect()
}

impl Datapath {
    /// Packets and bytes per outcome.
    pub fn outcome_counters(&self) -> Result<Vec<(Outcome, Counter)>, DatapathError> {
        let map = self
            .ebpf
            .map(OUTCOME_STATS)
            .ok_or(DatapathError::Missing(OUTCOME_STATS))?;
        outcomes_in(map)
    }

    /// Packets and bytes of rules `0..count`.
    pub fn rule_counters(&self, count: usize) -> Result<Vec<Counter>, DatapathError> {
        self.rule_counters_of(0..count as u32)
    }

    /// Packets and bytes of the rules with these indices.
    pub fn rule_counters_of(
        &self,
        indices: impl IntoIterator<Item = u32>,
    ) -> Result<Vec<Counter>, DatapathError> {
        let map = self
            .ebpf
            .map(RULE_STATS)
            .ok_or(DatapathError::Missing(RULE_STATS))?;
        rules_in(map, indices)
    }
}

/// The counter maps a daemon pinned, opened without it.
pub struct PinnedCounters {
    outcomes: Map,
    rules: Map,
}

impl PinnedCounters {
    pub fn open(pins: &Pins) -> Result<PinnedCounters, DatapathError> {
        let open = |name: &'static str| {
            MapData::from_pin(pins.map(name))
                .map(Map::PerCpuArray)
                .map_err(map_err(name))
        };
        Ok(PinnedCounters {
            outcomes: open(OUTCOME_STATS)?,
            rules: open(RULE_STATS)?,
        })
    }

    pub fn outcomes(&self) -> Result<Vec<(Outcome, Counter)>, DatapathError> {
        outcomes_in(&self.outcomes)
    }

    pub fn rules_of(
        &self,
        indices: impl IntoIterator<Item = u32>,
    ) -> Result<Vec<Counter>, DatapathError> {
        rules_in(&self.rules, indices)
    }
}
