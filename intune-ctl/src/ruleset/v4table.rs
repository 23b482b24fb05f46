//! Compiles the rule set's IPv4 prefixes into the kernel's DIR-16-8-8 table
//! (`intune_common::v4table`): every address gets the leaf of its most specific prefix.

use std::collections::{BTreeMap, BTreeSet};

use intune_common::v4table::{CHUNK_ENTRIES, TBL16_ENTRIES, chunk, leaf_of};
use ipnet::IpNet;

use crate::ruleset::rules::RuleSet;

/// Entry writes, in the order they must reach the kernel: lower levels first, so that no
/// entry ever points at a chunk not yet written.
#[derive(Debug, Default)]
pub struct Writes {
    pub tbl32: Vec<(usize, u32)>,
    pub tbl24: Vec<(usize, u32)>,
    pub tbl16: Vec<(usize, u32)>,
}

impl Writes {
    pub fn len(&self) -> usize {
        self.tbl32.len() + self.tbl24.len() + self.tbl16.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

type Chunk = [u32; CHUNK_ENTRIES as usize];
const CHUNK: usize = CHUNK_ENTRIES as usize;
/// What the kernel holds in a chunk never handed out: array maps start zeroed.
const ZERO: Chunk = [0; CHUNK];

/// Chunk ids of one level: in use, free, and freed by the last update (reusable from the next
/// one, so a lookup in flight never follows a pointer into a chunk being rewritten).
#[derive(Clone, Debug, Default)]
struct Ids {
    in_use: BTreeMap<u32, u32>,
    free: Vec<u32>,
    quarantine: Vec<u32>,
    high: u32,
    /// What freed chunks still hold in the kernel, so that re-using one writes only what
    /// differs (kept for up to [`PARKED_MAX`] chunks).
    parked: BTreeMap<u32, Box<Chunk>>,
}

/// Freed chunks whose contents are remembered: 4 MiB at most.
const PARKED_MAX: usize = 4096;

impl Ids {
    /// Frees `id`, which the kernel holds with `content`.
    #[expect(
        clippy::large_types_passed_by_value,
        reason = "moved into the box it is parked in"
    )]
    fn release(&mut self, id: u32, content: Option<Chunk>) {
        self.quarantine.push(id);
        if let Some(content) = content.filter(|_| self.parked.len() < PARKED_MAX) {
            self.parked.insert(id, Box::new(content));
        }
    }

    /// The id of `key`'s chunk and what the kernel holds in it, when known: the chunk it has
    /// (`kept`, its old contents come from the old prefixes), a freed one, or a new one (zeros).
    fn assign(&mut self, key: u32) -> (u32, Held) {
        if let Some(id) = self.in_use.get(&key) {
            return (*id, Held::Kept);
        }
        let (id, held) = if let Some(id) = self.free.pop() {
            (
                id,
                self.parked.remove(&id).map_or(Held::Unknown, Held::Parked),
            )
        } else {
            self.high += 1;
            (self.high - 1, Held::Zeros)
        };
        self.in_use.insert(key, id);
        (id, held)
    }
}

/// What the kernel holds in a chunk about to be written.
enum Held {
    /// The key's own chunk: what the old prefixes gave.
    Kept,
    /// A chunk never handed out: zeros.
    Zeros,
    /// A freed chunk with its remembered contents.
    Parked(Box<Chunk>),
    /// A freed chunk whose contents were not kept: write it whole.
    Unknown,
}

/// What the kernel's table was built from, so that an update recomputes and writes only the
/// /16 regions a changed prefix touches. Only level 16 is mirrored (256 KiB); a chunk's old
/// contents are recomputed from the old prefixes when needed, so the daemon does not hold a
/// copy of every chunk (16 MiB for 10,000 prefixes spread over the address space).
#[derive(Clone, Debug)]
pub struct V4Table {
    /// Mirror of level 16.
    pub tbl16: Vec<u32>,
    /// The prefixes in force: (network, length) -> leaf value (`EXCLUDED_LEAF` for an excluded prefix).
    prefixes: BTreeMap<(u32, u8), u32>,
    /// What the prefixes of /16 and shorter give each /16.
    base16: Vec<u32>,
    /// Chunks by the address's top 16 bits (level 24) and top 24 bits (level 32).
    ids24: Ids,
    ids32: Ids,
}

impl Default for V4Table {
    fn default() -> Self {
        V4Table {
            tbl16: vec![0; TBL16_ENTRIES as usize],
            prefixes: BTreeMap::new(),
            base16: vec![0; TBL16_ENTRIES as usize],
            ids24: Ids::default(),
            ids32: Ids::default(),
        }
    }
}

/// One /16 as it should be: its level-24 chunk (when it holds longer prefixes) and the
/// level-32 chunks under it.
struct Region {
    k16: u32,
    c24: Option<Chunk>,
    c32: BTreeMap<u32, Chunk>,
}

impl V4Table {
    pub fn chunks24(&self) -> usize {
        self.ids24.in_use.len()
    }

    pub fn chunks32(&self) -> usize {
        self.ids32.in_use.len()
    }

    /// Moves the table to the IPv4 prefixes of `rules` and returns the writes that take the
    /// kernel there; `None`, leaving the table as it was, when it would need more than
    /// `max_chunks` chunks on a level or a rule or port set a leaf cannot name.
    pub fn update(&mut self, rules: &RuleSet, max_chunks: usize) -> Option<Writes> {
        let prefixes = Self::prefixes_of(rules)?;
        let (affected, short_changed) =
            changed_regions(&self.prefixes, &prefixes, |addr| (addr >> 16) as usize);
        let base16 = if short_changed {
            Self::base_of(&prefixes)
        } else {
            self.base16.clone()
        };
        let regions: Vec<Region> = affected
            .iter()
            .map(|&k16| Self::region(&prefixes, &base16, k16 as u32))
            .collect();

        // Will the fresh chunks fit? Nothing changes before this is known.
        let fresh24 = regions
            .iter()
            .filter(|r| r.c24.is_some() && !self.ids24.in_use.contains_key(&r.k16))
            .count();
        let fresh32 = regions
            .iter()
            .flat_map(|r| r.c32.keys())
            .filter(|k24| !self.ids32.in_use.contains_key(k24))
            .count();
        if !fits(&self.ids24, fresh24, max_chunks) || !fits(&self.ids32, fresh32, max_chunks) {
            return None;
        }

        for ids in [&mut self.ids24, &mut self.ids32] {
            let released = std::mem::take(&mut ids.quarantine);
            ids.free.extend(released);
        }
        let mut writes = Writes::default();
        for region in regions {
            self.commit(region, &base16, &mut writes);
        }
        self.prefixes = prefixes;
        self.base16 = base16;
        Some(writes)
    }

    fn prefixes_of(rules: &RuleSet) -> Option<BTreeMap<(u32, u8), u32>> {
        let mut out = BTreeMap::new();
        for (net, r) in rules.lpm_entries() {
            if let IpNet::V4(n) = net {
                // An excluded prefix paints "excluded" over what covers it.
                out.insert((u32::from(n.network()), n.prefix_len()), leaf_of(r)?);
            }
        }
        Some(out)
    }

    /// Level 16 from the prefixes of /16 and shorter.
    fn base_of(prefixes: &BTreeMap<(u32, u8), u32>) -> Vec<u32> {
        first_level(
            prefixes
                .iter()
                .filter(|((_, len), _)| *len <= 16)
                .map(|(&(a, l), &v)| ((a >> 16) as usize, l, v))
                .collect(),
        )
    }

    /// The /16 `k16` from its longer prefixes, shorter painted first over `base16`'s value.
    fn region(prefixes: &BTreeMap<(u32, u8), u32>, base16: &[u32], k16: u32) -> Region {
        let lo = (k16 << 16, 17u8);
        let hi = ((k16 << 16) | 0xffff, 32u8);
        let mut long: Vec<(u32, u8, u32)> = prefixes
            .range(lo..=hi)
            .filter(|((_, len), _)| *len > 16)
            .map(|(&(a, l), &v)| (a, l, v))
            .collect();
        if long.is_empty() {
            return Region {
                k16,
                c24: None,
                c32: BTreeMap::new(),
            };
        }
        long.sort_by_key(|&(_, len, _)| len);
        let mut c24: Chunk = [base16[k16 as usize]; CHUNK];
        let mut c32: BTreeMap<u32, Chunk> = BTreeMap::new();
        for (addr, len, value) in long {
            let at24 = ((addr >> 8) & 0xff) as usize;
            if len <= 24 {
                c24[at24..at24 + (1 << (24 - len))].fill(value);
                continue;
            }
            let inherited = c24[at24];
            let chunk = c32.entry(addr >> 8).or_insert([inherited; CHUNK]);
            let at32 = (addr & 0xff) as usize;
            chunk[at32..at32 + (1 << (32 - len))].fill(value);
        }
        Region {
            k16,
            c24: Some(c24),
            c32,
        }
    }

    /// Puts one region in place, recording the entries that change: against what the kernel
    /// holds in each chunk (see [`Held`]).
    fn commit(&mut self, region: Region, base16: &[u32], writes: &mut Writes) {
        let Region { k16, c24, c32 } = region;
        // The region as the kernel holds it now: the old prefixes with the old chunk ids.
        let old = Self::region(&self.prefixes, &self.base16, k16);
        let old_ids32: BTreeMap<u32, u32> = self
            .ids32
            .in_use
            .range((k16 << 8)..=((k16 << 8) | 0xff))
            .map(|(k, id)| (*k, *id))
            .collect();
        let old_c24 = old.c24.map(|mut c| {
            for (k24, id) in &old_ids32 {
                c[(k24 & 0xff) as usize] = chunk(*id);
            }
            c
        });
        // Level-32 chunks of this /16 that are no longer needed.
        for k24 in old_ids32.keys().filter(|k| !c32.contains_key(k)) {
            if let Some(id) = self.ids32.in_use.remove(k24) {
                self.ids32.release(id, old.c32.get(k24).copied());
            }
        }
        let Some(mut c24) = c24 else {
            if let Some(id) = self.ids24.in_use.remove(&k16) {
                self.ids24.release(id, old_c24);
            }
            set(
                &mut self.tbl16,
                k16 as usize,
                base16[k16 as usize],
                &mut writes.tbl16,
            );
            return;
        };
        for (k24, content) in c32 {
            let (id, held) = self.ids32.assign(k24);
            write_chunk(id, &held, old.c32.get(&k24), &content, &mut writes.tbl32);
            c24[(k24 & 0xff) as usize] = chunk(id);
        }
        let (id, held) = self.ids24.assign(k16);
        write_chunk(id, &held, old_c24.as_ref(), &c24, &mut writes.tbl24);
        set(&mut self.tbl16, k16 as usize, chunk(id), &mut writes.tbl16);
    }
}

/// The /16 regions (by `top16` of a network) whose prefixes differ between `old` and `new`,
/// and whether a prefix of /16 or shorter did (the first level's base is then redrawn):
/// shared by both families' tables.
pub(crate) fn changed_regions<N: Ord + Copy>(
    old: &BTreeMap<(N, u8), u32>,
    new: &BTreeMap<(N, u8), u32>,
    top16: impl Fn(N) -> usize,
) -> (BTreeSet<usize>, bool) {
    let mut affected = BTreeSet::new();
    let mut short_changed = false;
    let differs = new
        .iter()
        .filter(|(k, v)| old.get(k) != Some(v))
        .map(|(k, _)| k)
        .chain(old.keys().filter(|k| !new.contains_key(k)));
    for &(net, len) in differs {
        let start = top16(net);
        if len > 16 {
            affected.insert(start);
        } else {
            short_changed = true;
            affected.extend(start..start + (1 << (16 - len)));
        }
    }
    (affected, short_changed)
}

/// A first level (one entry a /16) from prefixes of /16 and shorter, as (first /16, length,
/// leaf), shorter painted first: shared by both families' tables.
pub(crate) fn first_level(mut short: Vec<(usize, u8, u32)>) -> Vec<u32> {
    short.sort_by_key(|&(_, len, _)| len);
    let mut base = vec![0u32; TBL16_ENTRIES as usize];
    for (start, len, value) in short {
        base[start..start + (1 << (16 - len))].fill(value);
    }
    base
}

fn fits(ids: &Ids, fresh: usize, max_chunks: usize) -> bool {
    let reusable = ids.free.len() + ids.quarantine.len();
    fresh <= reusable || (ids.high as usize + fresh - reusable) <= max_chunks
}

fn set(mirror: &mut Vec<u32>, index: usize, value: u32, writes: &mut Vec<(usize, u32)>) {
    if mirror.len() <= index {
        mirror.resize(index + 1, 0);
    }
    if mirror[index] != value {
        mirror[index] = value;
        writes.push((index, value));
    }
}

/// The entries of chunk `id` that differ from what the kernel holds in it (`kept`: the old
/// prefixes' contents of the key's own chunk).
fn write_chunk(
    id: u32,
    held: &Held,
    kept: Option<&Chunk>,
    content: &Chunk,
    writes: &mut Vec<(usize, u32)>,
) {
    let before: Option<&Chunk> = match held {
        Held::Kept => kept,
        Held::Zeros => Some(&ZERO),
        Held::Parked(c) => Some(c),
        Held::Unknown => None,
    };
    let at = id as usize * CHUNK;
    for (i, &v) in content.iter().enumerate() {
        if before.is_none_or(|b| b[i] != v) {
            writes.push((at + i, v));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use intune_common::{
        maps::NO_RULE,
        v4table::{CHUNK_FLAG, decode_leaf},
    };

    use super::*;
    use crate::{
        ruleset::rules::RuleSetOptions,
        sources::endpoints::{Source, parse_endpoint_sets},
    };

    /// The kernel's three arrays, as the writes leave them.
    #[derive(Clone, Default, PartialEq, Debug)]
    struct Kernel {
        tbl16: Vec<u32>,
        tbl24: Vec<u32>,
        tbl32: Vec<u32>,
    }

    impl Kernel {
        fn apply(&mut self, writes: &Writes) {
            for (array, level) in [
                (&mut self.tbl32, &writes.tbl32),
                (&mut self.tbl24, &writes.tbl24),
                (&mut self.tbl16, &writes.tbl16),
            ] {
                for &(i, v) in level {
                    if array.len() <= i {
                        array.resize(i + 1, 0);
                    }
                    array[i] = v;
                }
            }
        }

        fn get(array: &[u32], i: u32) -> u32 {
            array.get(i as usize).copied().unwrap_or(0)
        }

        fn lookup(&self, a: u32) -> Option<u32> {
            let mut e = Self::get(&self.tbl16, a >> 16);
            if e & CHUNK_FLAG != 0 {
                e = Self::get(&self.tbl24, ((e & !CHUNK_FLAG) << 8) | ((a >> 8) & 0xff));
            }
            if e & CHUNK_FLAG != 0 {
                e = Self::get(&self.tbl32, ((e & !CHUNK_FLAG) << 8) | (a & 0xff));
            }
            decode_leaf(e).map(|r| r.rule)
        }
    }

    /// Every probe, plus addresses all over the changed regions, as the rule set says.
    fn agrees_everywhere(k: &Kernel, rules: &RuleSet) {
        for p in PROBES {
            let a: Ipv4Addr = p.parse().unwrap();
            let want = rules
                .lookup(IpAddr::V4(a))
                .map(|r| if r.excluded { NO_RULE } else { r.index });
            assert_eq!(k.lookup(u32::from(a)), want, "{p}");
        }
    }

    fn rules(ips: &str, previous: Option<&RuleSet>) -> RuleSet {
        let json = format!(
            r#"[{{"id": 1, "serviceArea": "MEM", "category": "Default", "tcpPorts": "443", "ips": [{ips}]}}]"#
        );
        let sets = parse_endpoint_sets(&json, Source::File).unwrap();
        RuleSet::build(&sets, &RuleSetOptions::default(), previous).unwrap()
    }

    const PROBES: [&str; 13] = [
        "10.0.0.1",
        "10.1.0.1",
        "10.1.2.1",
        "10.1.3.255",
        "10.1.2.129",
        "10.1.2.130",
        "10.1.2.131",
        "10.1.4.0",
        "192.0.2.9",
        "192.0.3.1",
        "127.0.0.1",
        "200.0.0.1",
        "10.9.9.9",
    ];

    #[test]
    fn every_address_gets_its_most_specific_prefix() {
        let rs = rules(
            r#""10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/23", "10.1.2.128/25", "10.1.2.130/31", "10.1.2.131/32", "192.0.2.0/24", "0.0.0.0/1""#,
            None,
        );
        let mut t = V4Table::default();
        let mut k = Kernel::default();
        let writes = t.update(&rs, 16).unwrap();
        k.apply(&writes);
        agrees_everywhere(&k, &rs);
        assert_eq!((t.chunks24(), t.chunks32()), (2, 1));
        assert!(!writes.is_empty());
        assert!(
            V4Table::default().update(&rs, 1).is_none(),
            "two chunks do not fit one"
        );
        // Nothing changed, nothing to write.
        assert!(t.update(&rs, 16).unwrap().is_empty());
    }

    #[test]
    fn updates_keep_chunk_ids_and_reuse_a_freed_one_only_an_update_later() {
        let first_rules = rules(r#""10.1.2.128/25", "192.0.2.0/24""#, None);
        let mut t = V4Table::default();
        let mut k = Kernel::default();
        k.apply(&t.update(&first_rules, 16).unwrap());
        let before = t.clone();
        // 192.0.2.0/24 leaves (its chunk is freed), 10.9.9.0/24 arrives (a new chunk).
        let second_rules = rules(r#""10.1.2.128/25", "10.9.9.0/24""#, Some(&first_rules));
        let writes = t.update(&second_rules, 16).unwrap();
        k.apply(&writes);
        agrees_everywhere(&k, &second_rules);
        assert_eq!(
            before.ids24.in_use[&0x0a01], t.ids24.in_use[&0x0a01],
            "the chunk for 10.1/16 keeps its id"
        );
        let freed = before.ids24.in_use[&0xc000];
        let fresh = t.ids24.in_use[&0x0a09];
        assert!(
            !before.ids24.in_use.values().any(|&id| id == fresh),
            "a chunk id in use was handed out"
        );
        // Only the regions touched were written: 10.1/16 was not.
        assert!(
            writes
                .tbl16
                .iter()
                .all(|(i, _)| *i == 0xc000 || *i == 0x0a09),
            "{:?}",
            writes.tbl16
        );
        // The freed chunk is not written: the kernel keeps its contents for lookups in flight.
        let at = freed as usize * 256;
        assert!(
            writes
                .tbl24
                .iter()
                .all(|(i, _)| !(at..at + 256).contains(i))
        );
        // The next update may reuse the freed id, and writes it whole.
        let third_rules = rules(
            r#""10.1.2.128/25", "10.9.9.0/24", "172.16.5.0/24""#,
            Some(&second_rules),
        );
        k.apply(&t.update(&third_rules, 16).unwrap());
        agrees_everywhere(&k, &third_rules);
        assert_eq!(t.ids24.in_use[&0xac10], freed);
        // A /8 changing rewrites every /16 under it, and nothing else.
        let fourth_rules = rules(
            r#""10.1.2.128/25", "10.9.9.0/24", "172.16.5.0/24", "10.0.0.0/8""#,
            Some(&third_rules),
        );
        let writes = t.update(&fourth_rules, 16).unwrap();
        k.apply(&writes);
        agrees_everywhere(&k, &fourth_rules);
        assert!(
            writes
                .tbl16
                .iter()
                .all(|(i, _)| (0x0a00..0x0b00).contains(i))
        );
    }

    #[test]
    fn an_update_that_does_not_fit_changes_nothing() {
        let first_rules = rules(r#""10.1.2.0/24""#, None);
        let mut t = V4Table::default();
        t.update(&first_rules, 2).unwrap();
        let before = t.clone();
        let big = rules(
            r#""10.1.2.0/24", "10.2.2.0/24", "10.3.2.0/24""#,
            Some(&first_rules),
        );
        assert!(t.update(&big, 2).is_none());
        assert_eq!(
            (t.tbl16.clone(), t.prefixes.clone()),
            (before.tbl16, before.prefixes)
        );
    }

    /// Many random updates in a crowded corner of the address space: the kernel the writes
    /// build answers every address as the rule set does, round after round.
    #[test]
    fn random_updates_keep_the_kernel_right() {
        use rand::{Rng, SeedableRng, rngs::StdRng};
        let mut rng = StdRng::seed_from_u64(5);
        let base = u32::from(Ipv4Addr::new(10, 0, 0, 0));
        let random_prefix = |rng: &mut StdRng| {
            let len = rng.random_range(12..=32u8);
            let addr = base | (rng.random::<u32>() & 0x000f_ffff);
            let net = ipnet::Ipv4Net::new(Ipv4Addr::from(addr), len)
                .unwrap()
                .trunc();
            format!("\"{net}\"")
        };
        let mut current: Vec<String> = (0..40).map(|_| random_prefix(&mut rng)).collect();
        let mut t = V4Table::default();
        let mut k = Kernel::default();
        let mut previous: Option<RuleSet> = None;
        for round in 0..60 {
            // Drop a few, add a few.
            for _ in 0..rng.random_range(0..6) {
                if !current.is_empty() {
                    let i = rng.random_range(0..current.len());
                    current.swap_remove(i);
                }
            }
            for _ in 0..rng.random_range(0..6) {
                current.push(random_prefix(&mut rng));
            }
            current.sort();
            current.dedup();
            let rs = rules(&current.join(","), previous.as_ref());
            k.apply(&t.update(&rs, 4096).expect("fits"));
            for _ in 0..2000 {
                let a = base | (rng.random::<u32>() & 0x000f_ffff);
                let want = rs
                    .lookup(IpAddr::V4(Ipv4Addr::from(a)))
                    .map(|r| if r.excluded { NO_RULE } else { r.index });
                assert_eq!(k.lookup(a), want, "round {round}, {}", Ipv4Addr::from(a));
            }
            previous = Some(rs);
        }
    }
}
