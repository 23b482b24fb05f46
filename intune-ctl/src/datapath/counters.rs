//! Reading the per-CPU hit counters, summed over CPUs.

use aya::maps::PerCpuArray;
use intune_common::{
    maps::{Counter, OUTCOME_STATS, RULE_STATS},
    outcome::Outcome,
};

use super::{Datapath, DatapathError, sync::map_err};

fn sum(values: impl IntoIterator<Item = Counter>) -> Counter {
    values.into_iter().fold(Counter::default(), |a, c| Counter {
        packets: a.packets + c.packets,
        bytes: a.bytes + c.bytes,
    })
}

impl Datapath {
    /// Packets and bytes per outcome.
    pub fn outcome_counters(&self) -> Result<Vec<(Outcome, Counter)>, DatapathError> {
        let map = self
            .ebpf
            .map(OUTCOME_STATS)
            .ok_or(DatapathError::Missing(OUTCOME_STATS))?;
        let array = PerCpuArray::<_, Counter>::try_from(map).map_err(map_err(OUTCOME_STATS))?;
        Outcome::ALL
            .iter()
            .map(|&o| {
                let per_cpu = array.get(&(o as u32), 0).map_err(map_err(OUTCOME_STATS))?;
                Ok((o, sum(per_cpu.iter().copied())))
            })
            .collect()
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
        let array = PerCpuArray::<_, Counter>::try_from(map).map_err(map_err(RULE_STATS))?;
        indices
            .into_iter()
            .map(|i| {
                let per_cpu = array.get(&i, 0).map_err(map_err(RULE_STATS))?;
                Ok(sum(per_cpu.iter().copied()))
            })
            .collect()
    }
}
