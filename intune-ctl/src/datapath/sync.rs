//! Writing a rule set and policy into the program's maps, and moving them from one rule set to
//! the next without a gap: everything new is written before anything old is removed, so an
//! address allowed before and after is allowed throughout.

use aya::maps::{Array, LpmTrie, Map, MapError, PerCpuArray, PerCpuValues, lpm_trie::Key};
use intune_common::maps::{
    CONFIG, Config, Counter, LPM_V4, LPM_V6, PORT_SETS, PortSet, RULE_STATS, RuleRef, V4_TBL16,
    V4_TBL24, V4_TBL32, V6_CHUNKS, V6_SINGLES, V6_TBL16,
};
use ipnet::IpNet;

use super::{Datapath, DatapathError, Lookup};
use crate::ruleset::{
    policy::Policy,
    rules::{RuleSet, Target},
    v4table::V4Table,
    v6table::V6Table,
};

/// Up to this many table entries go in one BPF_MAP_UPDATE_BATCH call; more are stored through
/// a mapping of the maps, whose set-up costs milliseconds but whose stores cost nothing.
const BATCH_WRITES: usize = 65_536;

pub(super) fn map_err(name: &'static str) -> impl Fn(MapError) -> DatapathError {
    move |source| DatapathError::Map { name, source }
}

/// What an update changed.
#[derive(Debug, Default)]
pub struct UpdateReport {
    pub added: Vec<Target>,
    /// Removed rules with the hits they had collected.
    pub removed: Vec<(Target, Counter)>,
    /// Rules whose ports or credited index changed.
    pub changed: usize,
}

impl Datapath {
    pub(super) fn map_mut(&mut self, name: &'static str) -> Result<&mut Map, DatapathError> {
        self.ebpf.map_mut(name).ok_or(DatapathError::Missing(name))
    }

    /// Fills freshly loaded maps with `rules` and `policy`. `trace` makes the program record its
    /// last decision (for test runs; never on an attached program).
    pub fn install(
        &mut self,
        rules: &RuleSet,
        policy: &Policy,
        trace: bool,
    ) -> Result<(), DatapathError> {
        self.policy = policy.clone();
        self.trace = trace;
        self.write_policy()?;
        self.apply(rules.clone())?;
        Ok(())
    }

    /// The rule set the maps hold.
    pub fn installed(&self) -> Option<&RuleSet> {
        self.installed.as_ref()
    }

    /// Moves the maps to `rules`, which should be built with the installed rule set as its
    /// previous one so that unchanged rules keep their indices and counters.
    pub fn apply(&mut self, rules: RuleSet) -> Result<UpdateReport, DatapathError> {
        let old = self.installed.take().unwrap_or_default();
        let result = self.apply_from(&old, &rules);
        // On failure the maps hold a mix that still allows everything the old set allowed (no
        // deletes happen before the inserts succeed); keep the old set as the reference so the
        // next attempt writes the difference again.
        self.installed = Some(if result.is_ok() { rules } else { old });
        result
    }

    fn apply_from(&mut self, old: &RuleSet, new: &RuleSet) -> Result<UpdateReport, DatapathError> {
        let started = std::time::Instant::now();
        let mut report = UpdateReport::default();
        // 0. Counter slots for the ports, so the first hit on a new port is counted as its own.
        self.update_port_slots(&new.all_ports())?;
        // 1. Port sets first: new entries may point at them.
        let mut port_sets =
            Array::<_, PortSet>::try_from(self.map_mut(PORT_SETS)?).map_err(map_err(PORT_SETS))?;
        for (id, bitmap) in new.port_set_bitmaps() {
            if !old.port_sets.contains_key(&id) {
                port_sets.set(id, bitmap, 0).map_err(map_err(PORT_SETS))?;
            }
        }
        // 2. Insert and update prefixes in the tries.
        let mut upserts: Vec<(IpNet, RuleRef)> = Vec::new();
        for rule in &new.rules {
            match old.rule_by_target(&rule.target) {
                None => report.added.push(rule.target),
                Some(o) if o.rule_ref() != rule.rule_ref() || o.effective != rule.effective => {
                    report.changed += 1;
                }
                Some(_) => continue,
            }
            if let Target::Prefix(net) = rule.target {
                upserts.push((net, rule.rule_ref()));
            }
        }
        self.write_lpm(&upserts)?;
        let tries = started.elapsed();
        // 3. The tables, lower levels first; then the config that may switch to them.
        self.update_v4_table(new)?;
        self.update_v6_table(new)?;
        let table = started.elapsed();
        self.write_config(self.config_for(new))?;
        // 4. Only now remove what left, which drains first (when the daemon drains): the
        // connections that use it carry on until they are idle.
        self.drain_relisted(new)?;
        let removed: Vec<&crate::ruleset::rules::Rule> = old
            .rules
            .iter()
            .filter(|r| new.rule_by_target(&r.target).is_none())
            .collect();
        let left: Vec<(IpNet, crate::sources::endpoints::Ports)> = removed
            .iter()
            .filter(|r| !r.excluded)
            .filter_map(|r| match r.target {
                Target::Prefix(net) => Some((net, r.effective.clone())),
                Target::AnyAddress => None,
            })
            .collect();
        self.drain_left(&left)?;
        self.delete_lpm(removed.iter().filter_map(|r| match r.target {
            Target::Prefix(net) => Some(net),
            Target::AnyAddress => None,
        }))?;
        // 5. Report the hits of removed rules once, then free their counters for reuse.
        let counters = self.rule_counters_of(removed.iter().map(|r| r.index))?;
        for (rule, counter) in removed.iter().zip(counters) {
            report.removed.push((rule.target, counter));
        }
        self.zero_rule_counters(removed.iter().map(|r| r.index))?;
        tracing::debug!(?tries, ?table, total = ?started.elapsed(), upserts = upserts.len(), removed = removed.len(), "maps updated");
        Ok(report)
    }

    fn write_lpm(&mut self, entries: &[(IpNet, RuleRef)]) -> Result<(), DatapathError> {
        let mut v4 = LpmTrie::<_, [u8; 4], RuleRef>::try_from(self.map_mut(LPM_V4)?)
            .map_err(map_err(LPM_V4))?;
        for (net, value) in entries {
            if let IpNet::V4(n) = net {
                let key = Key::new(u32::from(n.prefix_len()), n.network().octets());
                v4.insert(&key, value, 0).map_err(map_err(LPM_V4))?;
            }
        }
        let mut v6 = LpmTrie::<_, [u8; 16], RuleRef>::try_from(self.map_mut(LPM_V6)?)
            .map_err(map_err(LPM_V6))?;
        for (net, value) in entries {
            if let IpNet::V6(n) = net {
                let key = Key::new(u32::from(n.prefix_len()), n.network().octets());
                v6.insert(&key, value, 0).map_err(map_err(LPM_V6))?;
            }
        }
        Ok(())
    }

    fn delete_lpm(&mut self, nets: impl Iterator<Item = IpNet>) -> Result<(), DatapathError> {
        for net in nets {
            match net {
                IpNet::V4(n) => {
                    let mut v4 = LpmTrie::<_, [u8; 4], RuleRef>::try_from(self.map_mut(LPM_V4)?)
                        .map_err(map_err(LPM_V4))?;
                    v4.remove(&Key::new(u32::from(n.prefix_len()), n.network().octets()))
                        .map_err(map_err(LPM_V4))?;
                }
                IpNet::V6(n) => {
                    let mut v6 = LpmTrie::<_, [u8; 16], RuleRef>::try_from(self.map_mut(LPM_V6)?)
                        .map_err(map_err(LPM_V6))?;
                    v6.remove(&Key::new(u32::from(n.prefix_len()), n.network().octets()))
                        .map_err(map_err(LPM_V6))?;
                }
            }
        }
        Ok(())
    }

    /// Updates the table's /16 regions that changed and writes their entries, lower levels
    /// first. When the table does not fit, IPv4 moves to the trie (already up to date) and the
    /// table is left as is.
    fn update_v4_table(&mut self, rules: &RuleSet) -> Result<(), DatapathError> {
        let chunks = self.capacity.v4_table_chunks as usize;
        let table = self.v4_table.get_or_insert_with(V4Table::default);
        let Some(writes) = table.update(rules, chunks) else {
            if self.v4_lookup == Lookup::Table {
                tracing::warn!(
                    chunks,
                    "the IPv4 prefixes no longer fit the lookup table; IPv4 uses the LPM trie"
                );
            }
            self.v4_lookup = Lookup::Trie;
            return Ok(());
        };
        let levels = [
            (V4_TBL32, &writes.tbl32),
            (V4_TBL24, &writes.tbl24),
            (V4_TBL16, &writes.tbl16),
        ];
        // Lower levels first: a chunk is whole before an upper entry links it.
        if writes.len() <= BATCH_WRITES {
            for (name, level) in levels {
                self.update_u32_array(name, level)?;
            }
        } else {
            // A bulk write (a first fill, a list replaced): plain stores through a mapping,
            // dropped after, so the table is not resident in the daemon.
            for (name, level) in levels {
                let mut array = self.map_u32_array(name)?;
                for &(i, e) in level {
                    array.set(i, e);
                }
            }
        }
        self.v4_lookup = Lookup::Table;
        Ok(())
    }

    /// As [`Datapath::update_v4_table`], for the IPv6 table.
    fn update_v6_table(&mut self, rules: &RuleSet) -> Result<(), DatapathError> {
        let (chunks, singles) = (
            self.capacity.v6_table_chunks as usize,
            self.capacity.v6_table_singles as usize,
        );
        let table = self.v6_table.get_or_insert_with(V6Table::default);
        let Some(writes) = (if chunks == 0 {
            None
        } else {
            table.update(rules, chunks, singles)
        }) else {
            if self.v6_lookup == Lookup::Table {
                tracing::warn!(
                    chunks,
                    singles,
                    "the IPv6 prefixes no longer fit the lookup table; IPv6 uses the LPM trie"
                );
            }
            self.v6_lookup = Lookup::Trie;
            return Ok(());
        };
        let singles: Vec<(usize, _)> = writes
            .singles
            .iter()
            .map(|&(i, s)| (i as usize, s))
            .collect();
        self.update_array(V6_SINGLES, &singles)?;
        if writes.chunks.len() <= BATCH_WRITES {
            self.update_u32_array(V6_CHUNKS, &writes.chunks)?;
        } else {
            let mut array = self.map_u32_array(V6_CHUNKS)?;
            for &(i, e) in &writes.chunks {
                array.set(i, e);
            }
        }
        self.update_u32_array(V6_TBL16, &writes.tbl16)?;
        self.v6_lookup = Lookup::Table;
        Ok(())
    }

    /// The config for `rules` under the current policy and lookup mode.
    pub(super) fn config_for(&self, rules: &RuleSet) -> Config {
        let mut config = self.policy.config(rules, self.trace);
        if self.v4_lookup == Lookup::Trie {
            config.flags |= Config::FLAG_V4_TRIE;
        }
        if self.v6_lookup == Lookup::Trie {
            config.flags |= Config::FLAG_V6_TRIE;
        }
        if self.learning {
            config.flags |= Config::FLAG_LEARNED;
        }
        if self.learning {
            // Only the trusted resolvers teach, always: an empty list teaches nothing.
            config.flags |= Config::FLAG_LEARN_TRUSTED;
        }
        if self.drain_idle.is_some() {
            config.flags |= Config::FLAG_DRAINING;
        }
        config.name_hash_key = self.name_hash_key;
        for key in self.roles.keys().chain(self.roles_leaving.iter()) {
            config.mark_role(key);
        }
        config
    }

    pub fn write_config(&mut self, config: Config) -> Result<(), DatapathError> {
        let mut array =
            Array::<_, Config>::try_from(self.map_mut(CONFIG)?).map_err(map_err(CONFIG))?;
        array.set(0, config, 0).map_err(map_err(CONFIG))
    }

    pub fn config(&self) -> Result<Config, DatapathError> {
        let map = self
            .ebpf
            .map(CONFIG)
            .ok_or(DatapathError::Missing(CONFIG))?;
        let array = Array::<_, Config>::try_from(map).map_err(map_err(CONFIG))?;
        array.get(&0, 0).map_err(map_err(CONFIG))
    }

    pub fn zero_rule_counters(
        &mut self,
        indices: impl Iterator<Item = u32>,
    ) -> Result<(), DatapathError> {
        self.zero_counters(RULE_STATS, indices)
    }

    /// Zeroes entries of the per-CPU counter map `name` on every CPU.
    pub(super) fn zero_counters(
        &mut self,
        name: &'static str,
        indices: impl Iterator<Item = u32>,
    ) -> Result<(), DatapathError> {
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| DatapathError::Cpus(e))?;
        let mut stats =
            PerCpuArray::<_, Counter>::try_from(self.map_mut(name)?).map_err(map_err(name))?;
        for index in indices {
            let zeros = PerCpuValues::try_from(vec![Counter::default(); cpus])
                .map_err(DatapathError::Cpus)?;
            stats.set(index, zeros, 0).map_err(map_err(name))?;
        }
        Ok(())
    }
}
