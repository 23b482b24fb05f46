//! Writing a rule set and policy into the program's maps, and moving them from one rule set to
//! the next without a gap: everything new is written before anything old is removed, so an
//! address allowed before and after is allowed throughout.

use std::collections::BTreeMap;

use aya::maps::{Array, LpmTrie, Map, MapError, PerCpuArray, PerCpuValues, lpm_trie::Key};
use intune_common::maps::{
    CONFIG, CONFIG_SECTION, Config, Counter, LPM_V4, LPM_V6, PORT_SETS, PortSet, RULE_STATS,
    RuleRef, V4_CHUNKS, V4_SINGLES, V4_TBL16, V6_CHUNKS, V6_SINGLES, V6_TBL16,
};
use ipnet::IpNet;

use super::{Datapath, DatapathError, Lookup};
use crate::ruleset::{
    paired::{Delta, delta},
    policy::Policy,
    rules::{Rule, RuleSet, Target},
    table::{Family, PrefixTable},
};

/// The kernel's "operation not supported" (not EOPNOTSUPP: an errno of its own).
pub(super) const ENOTSUPP: i32 = 524;

/// Up to this many chunks (1 KiB each) go in one BPF_MAP_UPDATE_BATCH call; more are stored
/// through a mapping of the array, whose set-up maps all of it (milliseconds for a large
/// table) but whose stores cost nothing.
const BATCH_CHUNKS: usize = 8192;

/// Chunks and singles an update writes at least before the two writes go side by side: a
/// thread's start is worth it only for a large update.
const SIDE_BY_SIDE: usize = 512;

pub(super) fn map_err(name: &'static str) -> impl Fn(MapError) -> DatapathError {
    move |source| DatapathError::Map { name, source }
}

/// What an update changed: found in the walk that writes the maps, and all the summary logged
/// and recorded needs (`ruleset::changes::of_update`), so no second walk makes it.
#[derive(Debug, Default)]
pub struct UpdateReport {
    pub added: Vec<Target>,
    /// Removed rules with the hits they had collected.
    pub removed: Vec<(Target, Counter)>,
    /// Kept rules whose ports, endpoint sets or exclusion changed.
    pub changed: usize,
    /// Rules added and removed per endpoint set id.
    pub per_set: BTreeMap<u32, (usize, usize)>,
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
    pub fn apply(&mut self, mut rules: RuleSet) -> Result<UpdateReport, DatapathError> {
        let old = self.installed.take().unwrap_or_default();
        let delta = rules
            .take_delta_from(&old)
            .unwrap_or_else(|| delta(&old, &rules));
        let result = self.apply_from(&old, &rules, &delta);
        // A failure may leave a table at the new set: the next update compiles from the whole
        // set, not from its changes since the old one.
        self.tables_resync = result.is_err();
        // On failure the maps hold a mix that still allows everything the old set allowed (no
        // deletes happen before the inserts succeed); keep the old set as the reference so the
        // next attempt writes the difference again.
        self.installed = Some(if result.is_ok() { rules } else { old });
        result
    }

    fn apply_from(
        &mut self,
        old: &RuleSet,
        new: &RuleSet,
        delta: &Delta,
    ) -> Result<UpdateReport, DatapathError> {
        let started = std::time::Instant::now();
        let mut report = UpdateReport::default();
        // 0. Counter slots for the ports, so the first hit on a new port is counted as its own.
        self.update_port_slots(new.all_ports())?;
        // 1. Port sets first: new entries may point at them.
        let mut port_sets =
            Array::<_, PortSet>::try_from(self.map_mut(PORT_SETS)?).map_err(map_err(PORT_SETS))?;
        for (id, bitmap) in new.port_set_bitmaps() {
            if !old.port_sets.contains_key(&id) {
                port_sets.set(id, bitmap, 0).map_err(map_err(PORT_SETS))?;
            }
        }
        // 2. What is new or changed, and what left.
        report.changed = delta.changed;
        let removed: Vec<&Rule> = delta
            .removed
            .iter()
            .map(|&at| &old.rules[at as usize])
            .collect();
        for o in &removed {
            for s in &o.sets {
                report.per_set.entry(s.id).or_default().1 += 1;
            }
        }
        let mut upserts: Vec<(IpNet, RuleRef)> =
            Vec::with_capacity(delta.added.len() + delta.rewritten.len());
        for &at in &delta.added {
            let n = &new.rules[at as usize];
            for s in &n.sets {
                report.per_set.entry(s.id).or_default().0 += 1;
            }
            report.added.push(n.target);
        }
        for &at in delta.added.iter().chain(&delta.rewritten) {
            let rule = &new.rules[at as usize];
            if let Target::Prefix(net) = rule.target {
                upserts.push((net, rule.rule_ref()));
            }
        }
        // 3. Each family's table, chunks before the entries that link them; a family whose
        // table does not fit gets its trie up to date instead. Then the config that says
        // which each family uses.
        let removed_nets: Vec<IpNet> = removed
            .iter()
            .filter_map(|r| match r.target {
                Target::Prefix(net) => Some(net),
                Target::AnyAddress => None,
            })
            .collect();
        let changes: Vec<(&IpNet, Option<RuleRef>)> = upserts
            .iter()
            .map(|(net, r)| (net, Some(*r)))
            .chain(removed_nets.iter().map(|net| (net, None)))
            .collect();
        let diffed = started.elapsed();
        let mut trie_deletes = Vec::new();
        for family in [Family::V4, Family::V6] {
            if self.update_table(family, new, &changes)? {
                // Its trie is left as it is from here on: nothing reads it.
                *self.trie_current_mut(family) = false;
            } else if *self.trie_current_mut(family) {
                self.write_lpm(family, &upserts)?;
                trie_deletes.push(family);
            } else {
                // The trie went stale while the table was in use: written anew, from empty,
                // before the config moves the family to it.
                self.refill_lpm(family, new)?;
            }
        }
        let lookups = started.elapsed();
        self.write_config(self.config_for(new))?;
        // 4. Only now remove what left, which drains first (when the daemon drains): the
        // connections that use it carry on until they are idle.
        self.drain_relisted(new)?;
        let left: Vec<(IpNet, crate::sources::endpoints::Ports)> = removed
            .iter()
            .filter(|r| !r.excluded)
            .filter_map(|r| match r.target {
                Target::Prefix(net) => Some((net, r.effective)),
                Target::AnyAddress => None,
            })
            .collect();
        self.drain_left(&left)?;
        let drained = started.elapsed();
        for family in trie_deletes {
            self.delete_lpm(family, removed_nets.iter().copied())?;
        }
        // 5. Take the hits of removed rules, to report once; their counters, zeroed, are free for
        // reuse.
        let deleted = started.elapsed();
        let indices: Vec<u32> = removed.iter().map(|r| r.index).collect();
        let counters = self.take_rule_counters(&indices)?;
        for (rule, counter) in removed.iter().zip(counters) {
            report.removed.push((rule.target, counter));
        }
        tracing::debug!(?diffed, ?lookups, ?drained, ?deleted, total = ?started.elapsed(), upserts = upserts.len(), removed = removed.len(), "maps updated");
        Ok(report)
    }

    /// Inserts or updates the family's entries of `entries` in its trie.
    fn write_lpm(
        &mut self,
        family: Family,
        entries: &[(IpNet, RuleRef)],
    ) -> Result<(), DatapathError> {
        match family {
            Family::V4 => {
                let mut v4 = LpmTrie::<_, [u8; 4], RuleRef>::try_from(self.map_mut(LPM_V4)?)
                    .map_err(map_err(LPM_V4))?;
                for (net, value) in entries {
                    if let IpNet::V4(n) = net {
                        let key = Key::new(u32::from(n.prefix_len()), n.network().octets());
                        v4.insert(&key, value, 0).map_err(map_err(LPM_V4))?;
                    }
                }
            }
            Family::V6 => {
                let mut v6 = LpmTrie::<_, [u8; 16], RuleRef>::try_from(self.map_mut(LPM_V6)?)
                    .map_err(map_err(LPM_V6))?;
                for (net, value) in entries {
                    if let IpNet::V6(n) = net {
                        let key = Key::new(u32::from(n.prefix_len()), n.network().octets());
                        v6.insert(&key, value, 0).map_err(map_err(LPM_V6))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Removes the family's networks of `nets` from its trie.
    fn delete_lpm(
        &mut self,
        family: Family,
        nets: impl Iterator<Item = IpNet>,
    ) -> Result<(), DatapathError> {
        match family {
            Family::V4 => {
                let mut v4 = LpmTrie::<_, [u8; 4], RuleRef>::try_from(self.map_mut(LPM_V4)?)
                    .map_err(map_err(LPM_V4))?;
                for net in nets {
                    if let IpNet::V4(n) = net {
                        v4.remove(&Key::new(u32::from(n.prefix_len()), n.network().octets()))
                            .map_err(map_err(LPM_V4))?;
                    }
                }
            }
            Family::V6 => {
                let mut v6 = LpmTrie::<_, [u8; 16], RuleRef>::try_from(self.map_mut(LPM_V6)?)
                    .map_err(map_err(LPM_V6))?;
                for net in nets {
                    if let IpNet::V6(n) = net {
                        v6.remove(&Key::new(u32::from(n.prefix_len()), n.network().octets()))
                            .map_err(map_err(LPM_V6))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Empties the family's trie and writes `rules`' prefixes of the family into it. It is
    /// current only once that is done: a failure leaves it to be written anew next time.
    fn refill_lpm(&mut self, family: Family, rules: &RuleSet) -> Result<(), DatapathError> {
        *self.trie_current_mut(family) = false;
        match family {
            Family::V4 => clear_trie::<4>(self.map_mut(LPM_V4)?, LPM_V4)?,
            Family::V6 => clear_trie::<16>(self.map_mut(LPM_V6)?, LPM_V6)?,
        }
        let entries: Vec<(IpNet, RuleRef)> = rules.lpm_entries().collect();
        self.write_lpm(family, &entries)?;
        *self.trie_current_mut(family) = true;
        Ok(())
    }

    fn trie_current_mut(&mut self, family: Family) -> &mut bool {
        match family {
            Family::V4 => &mut self.trie_current[0],
            Family::V6 => &mut self.trie_current[1],
        }
    }

    /// Updates the family's table: the /16 regions that changed, chunks and singles before
    /// the first-level entries that link them. From `changes` (since the installed rule set)
    /// when the table holds that set, else from the whole of `rules`. False when the table
    /// does not fit: the family moves to its trie (the caller brings it up to date) and the
    /// table is left as is.
    fn update_table(
        &mut self,
        family: Family,
        rules: &RuleSet,
        changes: &[(&IpNet, Option<RuleRef>)],
    ) -> Result<bool, DatapathError> {
        let holds_installed = *self.lookup_mut(family) == Lookup::Table && !self.tables_resync;
        let (tbl16, chunk_map, single_map, chunks, singles) = match family {
            Family::V4 => (
                V4_TBL16,
                V4_CHUNKS,
                V4_SINGLES,
                self.capacity.v4_table_chunks,
                self.capacity.v4_table_singles,
            ),
            Family::V6 => (
                V6_TBL16,
                V6_CHUNKS,
                V6_SINGLES,
                self.capacity.v6_table_chunks,
                self.capacity.v6_table_singles,
            ),
        };
        let (chunks, singles) = (chunks as usize, singles as usize);
        let table = match family {
            Family::V4 => &mut self.v4_table,
            Family::V6 => &mut self.v6_table,
        }
        .get_or_insert_with(|| PrefixTable::new(family));
        let started = std::time::Instant::now();
        let writes = if chunks == 0 {
            None
        } else if holds_installed {
            table.change(changes.iter().copied(), chunks, singles)
        } else {
            table.update(rules, chunks, singles)
        };
        let Some(writes) = writes else {
            let lookup = self.lookup_mut(family);
            if *lookup == Lookup::Table {
                tracing::warn!(
                    ?family,
                    chunks,
                    singles,
                    "the prefixes no longer fit the lookup table; the family uses the LPM trie"
                );
            }
            *lookup = Lookup::Trie;
            return Ok(false);
        };
        let compiled = started.elapsed();
        if writes.chunks.len() > BATCH_CHUNKS {
            self.update_array(single_map, &writes.singles)?;
            // A bulk write (a first fill, a list replaced): plain stores through a mapping,
            // dropped after, so the table is not resident in the daemon.
            let mut array = self.map_chunk_array(chunk_map)?;
            for (id, chunk) in writes.chunks.iter() {
                array.set(id as usize, chunk);
            }
        } else if writes.chunks.len().min(writes.singles.len()) < SIDE_BY_SIDE {
            self.update_array(single_map, &writes.singles)?;
            self.update_array(chunk_map, &writes.chunks)?;
        } else {
            // Two calls that copy a megabyte between them (a large update): side by side.
            let this = &*self;
            let (singles, chunks) = std::thread::scope(|scope| {
                let singles = scope.spawn(|| this.update_array(single_map, &writes.singles));
                let chunks = this.update_array(chunk_map, &writes.chunks);
                let singles = singles
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                (singles, chunks)
            });
            singles?;
            chunks?;
        }
        let slot = usize::from(family == Family::V6);
        if self.first_levels[slot].is_none() {
            self.first_levels[slot] = Some(self.map_first_level(tbl16)?);
        }
        if let Some(first) = &mut self.first_levels[slot] {
            for (i, &entry) in writes.tbl16.iter() {
                first.set(i as usize, entry);
            }
        }
        tracing::debug!(?family, ?compiled, written = ?started.elapsed(), chunks = writes.chunks.len(), singles = writes.singles.len(), "table updated");
        *self.lookup_mut(family) = Lookup::Table;
        Ok(true)
    }

    fn lookup_mut(&mut self, family: Family) -> &mut Lookup {
        match family {
            Family::V4 => &mut self.v4_lookup,
            Family::V6 => &mut self.v6_lookup,
        }
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
            Array::<_, Config>::try_from(self.map_mut(CONFIG_SECTION)?).map_err(map_err(CONFIG))?;
        array.set(0, config, 0).map_err(map_err(CONFIG))
    }

    pub fn config(&self) -> Result<Config, DatapathError> {
        let map = self
            .ebpf
            .map(CONFIG_SECTION)
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
        let indices: Vec<u32> = indices.collect();
        match self.zero_per_cpu::<Counter>(name, &indices) {
            // Kernels before 5.13 have no batch writes of per-CPU arrays: one call an entry.
            Err(DatapathError::Batch { source, .. })
                if matches!(source.raw_os_error(), Some(libc::EINVAL | ENOTSUPP)) => {}
            done => return done,
        }
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

/// Removes every entry of a trie whose keys are `N` bytes.
fn clear_trie<const N: usize>(map: &mut Map, name: &'static str) -> Result<(), DatapathError> {
    let mut trie = LpmTrie::<_, [u8; N], RuleRef>::try_from(map).map_err(map_err(name))?;
    let keys: Vec<Key<[u8; N]>> = trie
        .keys()
        .collect::<Result<_, _>>()
        .map_err(map_err(name))?;
    for key in keys {
        trie.remove(&key).map_err(map_err(name))?;
    }
    Ok(())
}
