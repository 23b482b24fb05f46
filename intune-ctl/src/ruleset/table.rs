//! Compiles the rule set's prefixes of one family into the kernel's lookup table for it
//! (`intune_common::table`): every address gets the leaf of its most specific prefix. Both
//! families are compiled alike, an IPv4 network as the top 32 bits of a 128-bit number.
//!
//! The table is kept by /16 region. An update rebuilds only the regions a changed prefix
//! touches, into chunks and singles not in use (copy on write), and then points the region's
//! first-level entry at them; what the region held before is freed only at the next update, so
//! a lookup in flight never reads an entry being rewritten.

use std::{collections::BTreeMap, ops::Range};

use intune_common::{
    maps::RuleRef,
    table::{CHUNK_ENTRIES, CHUNK_FLAG, Chunk, SINGLE_FLAG, Single, TBL16_ENTRIES, leaf_of},
};
use ipnet::IpNet;
use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use crate::ruleset::{
    regions::{Key, Regions, region_of},
    rules::RuleSet,
};

const CHUNK: usize = CHUNK_ENTRIES as usize;

/// Writes in the order they must reach the kernel: chunks and singles before the first-level
/// entries that point at them.
#[derive(Debug, Default)]
pub struct Writes {
    pub singles: ArrayWrites<Single>,
    /// Whole chunks, by id (one element of the chunks' array each): a rebuilt region's
    /// chunks are all fresh.
    pub chunks: ArrayWrites<Chunk>,
    pub tbl16: ArrayWrites<u32>,
}

/// Stores into one array map, as a batch write hands them to the kernel: the indices, and the
/// values in the same order. Kept apart so that a megabyte of chunks is written where it was
/// built, not copied into the call's layout.
#[derive(Debug)]
pub struct ArrayWrites<V> {
    keys: Vec<u32>,
    values: Vec<V>,
}

impl<V> Default for ArrayWrites<V> {
    fn default() -> Self {
        ArrayWrites {
            keys: Vec::new(),
            values: Vec::new(),
        }
    }
}

impl<V> ArrayWrites<V> {
    fn push(&mut self, key: u32, value: V) {
        self.keys.push(key);
        self.values.push(value);
    }

    fn reserve(&mut self, n: usize) {
        self.keys.reserve(n);
        self.values.reserve(n);
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The indices, as many as [`ArrayWrites::values`] and in their order.
    pub fn keys(&self) -> &[u32] {
        &self.keys
    }

    pub fn values(&self) -> &[V] {
        &self.values
    }

    pub fn iter(&self) -> impl Iterator<Item = (u32, &V)> {
        self.keys.iter().copied().zip(&self.values)
    }
}

impl Writes {
    pub fn len(&self) -> usize {
        self.singles.len() + self.chunks.len() * CHUNK + self.tbl16.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Ids of chunks or singles: free, freed by the last update (reusable from the next), and the
/// highest ever handed out.
#[derive(Clone, Debug, Default)]
struct Ids {
    free: Vec<u32>,
    quarantine: Vec<u32>,
    high: u32,
}

impl Ids {
    fn in_use(&self) -> usize {
        self.high as usize - self.free.len() - self.quarantine.len()
    }

    /// Whether `fresh` more ids fit under `max` once the quarantine is released.
    fn fits(&self, fresh: usize, max: usize) -> bool {
        let reusable = self.free.len() + self.quarantine.len();
        fresh <= reusable || self.high as usize + fresh - reusable <= max
    }

    fn take(&mut self) -> u32 {
        self.free.pop().unwrap_or_else(|| {
            self.high += 1;
            self.high - 1
        })
    }
}

/// A prefix: (network as a number, IPv4 in the top 32 bits; length), and its leaf.
type Prefix = (Key, u32);

/// The rebuilt regions' chunks and singles, one run of each a region, in the order the
/// writes take them: built in place, not in a vector a region and copied (a million prefixes
/// make 70 MiB of chunks).
#[derive(Default)]
struct Built {
    chunks: Vec<Chunk>,
    singles: Vec<Single>,
    /// The entries of `chunks` that name another chunk or a single (chunk, byte): the only
    /// ones [`PrefixTable::commit`] renames, where the rest of a chunk's 256 are leaves.
    links: Vec<(usize, u8)>,
}

/// One rebuilt region: its runs in [`Built`], and its first-level entry. Its entries name its
/// chunks and singles by their place in its runs (0..) until [`PrefixTable::commit`].
struct Rebuilt {
    k16: u16,
    chunks: Range<usize>,
    singles: Range<usize>,
    links: Range<usize>,
    root: u32,
}

impl Built {
    /// The /16 `k16` from its longer prefixes, over `base16`'s value.
    fn region(&mut self, prefixes: &Regions, base16: &[u32], k16: u16) -> Rebuilt {
        let (c0, s0, l0) = (self.chunks.len(), self.singles.len(), self.links.len());
        let root = self.node(prefixes.long_in(k16), base16[k16 as usize], 16, (c0, s0));
        Rebuilt {
            k16,
            chunks: c0..self.chunks.len(),
            singles: s0..self.singles.len(),
            links: l0..self.links.len(),
            root,
        }
    }

    /// The entry for the part of the tree below `bits` bits that holds `prefixes` (all longer
    /// than `bits`, sorted by network then length), where no prefix gives `default`; `base` is
    /// where the region's runs start. In that order a prefix comes after every prefix that
    /// covers it, so painting them in turn leaves each entry to its most specific one; and
    /// the prefixes below one entry come together, after what paints that entry.
    fn node(&mut self, prefixes: &[Prefix], default: u32, bits: u8, base: (usize, usize)) -> u32 {
        match prefixes {
            [] => default,
            [((net, len), value)] => {
                self.singles
                    .push(Single::new(net.to_be_bytes(), *len, *value, default));
                SINGLE_FLAG | (self.singles.len() - 1 - base.1) as u32
            }
            _ => {
                let mut chunk: Chunk = [default; CHUNK];
                let mut links: SmallVec<[u8; 4]> = SmallVec::new();
                let mut rest = prefixes;
                while let Some(&((net, len), value)) = rest.first() {
                    let at = byte_at(net, bits);
                    if len <= bits + 8 {
                        chunk[at..at + (1 << (bits + 8 - len))].fill(value);
                        rest = &rest[1..];
                        continue;
                    }
                    // The prefixes below entry `at`: the run that starts here (what paints `at`
                    // came before it).
                    let run = rest
                        .iter()
                        .position(|&((n, _), _)| byte_at(n, bits) != at)
                        .unwrap_or(rest.len());
                    chunk[at] = self.node(&rest[..run], chunk[at], bits + 8, base);
                    if chunk[at] & (CHUNK_FLAG | SINGLE_FLAG) != 0 {
                        links.push(at as u8);
                    }
                    rest = &rest[run..];
                }
                self.chunks.push(chunk);
                let at = self.chunks.len() - 1;
                self.links.extend(links.into_iter().map(|byte| (at, byte)));
                CHUNK_FLAG | (at - base.0) as u32
            }
        }
    }
}

fn byte_at(net: u128, bits: u8) -> usize {
    ((net >> (120 - u32::from(bits))) & 0xff) as usize
}

/// The ids of one region's chunks or singles: most regions have one or two.
type RegionIdList = SmallVec<[u32; 2]>;

/// The ids a region's chunks and singles have in the kernel.
#[derive(Clone, Debug, Default)]
struct RegionIds {
    chunks: RegionIdList,
    singles: RegionIdList,
}

/// The address family a table holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

/// What the kernel's table of one family was built from, so that an update rebuilds and
/// writes only the /16 regions a changed prefix touches.
#[derive(Clone, Debug)]
pub struct PrefixTable {
    family: Family,
    /// Mirror of the first level.
    tbl16: Vec<u32>,
    /// The prefixes in force: (network, length) -> leaf.
    prefixes: Regions,
    /// What the prefixes of /16 and shorter give each /16.
    base16: Vec<u32>,
    regions: FxHashMap<u16, RegionIds>,
    chunk_ids: Ids,
    single_ids: Ids,
}

impl PrefixTable {
    pub fn new(family: Family) -> PrefixTable {
        PrefixTable {
            family,
            tbl16: vec![0; TBL16_ENTRIES as usize],
            prefixes: Regions::default(),
            base16: vec![0; TBL16_ENTRIES as usize],
            regions: FxHashMap::default(),
            chunk_ids: Ids::default(),
            single_ids: Ids::default(),
        }
    }

    pub fn chunks(&self) -> usize {
        self.chunk_ids.in_use()
    }

    pub fn singles(&self) -> usize {
        self.single_ids.in_use()
    }

    /// Moves the table to its family's prefixes of `rules` and returns the writes that take the
    /// kernel there; `None`, leaving the table as it was, when it would need more than
    /// `max_chunks` chunks or `max_singles` singles, or a rule or port set a leaf cannot name.
    pub fn update(
        &mut self,
        rules: &RuleSet,
        max_chunks: usize,
        max_singles: usize,
    ) -> Option<Writes> {
        let prefixes = prefixes_of(rules, self.family)?;
        let changes = new_or_changed(&self.prefixes, &prefixes)
            .chain(
                self.prefixes
                    .iter()
                    .filter(|(k, _)| !prefixes.contains_key(k))
                    .map(|(k, _)| (k, None)),
            )
            .collect();
        self.apply_changes(changes, max_chunks, max_singles)
    }

    /// As [`PrefixTable::update`], from what changed since the rule set the table holds: each
    /// prefix that came or changed with its trie entry, each that left with `None` (the other
    /// family's are skipped). The cost follows the regions changed, not the rule set's size.
    pub fn change<'a>(
        &mut self,
        changes: impl IntoIterator<Item = (&'a IpNet, Option<RuleRef>)>,
        max_chunks: usize,
        max_singles: usize,
    ) -> Option<Writes> {
        let mut list = Vec::new();
        for (net, r) in changes {
            let Some(key) = key_of(net, self.family) else {
                continue;
            };
            // A rule a leaf cannot name: the table cannot hold the set.
            let leaf = match r {
                Some(r) => Some(leaf_of(r)?),
                None => None,
            };
            list.push((key, leaf));
        }
        self.apply_changes(list, max_chunks, max_singles)
    }

    fn apply_changes(
        &mut self,
        changes: Vec<Change>,
        max_chunks: usize,
        max_singles: usize,
    ) -> Option<Writes> {
        // Applied now, each with the leaf it had so that it can be undone when the result does
        // not fit; one that changes nothing is dropped (found by the same lookup).
        let mut undo: Vec<Change> = Vec::with_capacity(changes.len());
        for (k, v) in changes {
            let was = match v {
                Some(leaf) => self.prefixes.insert(k, leaf),
                None => self.prefixes.remove(&k),
            };
            if was != v {
                undo.push((k, was));
            }
        }
        let mut affected = Vec::with_capacity(undo.len());
        let mut short_changed = false;
        for &((net, len), _) in &undo {
            let start = usize::from(region_of(net));
            if len > 16 {
                affected.push(start);
            } else {
                short_changed = true;
                affected.extend(start..start + (1 << (16 - len)));
            }
        }
        affected.sort_unstable();
        affected.dedup();
        let base16 = short_changed.then(|| base_of(&self.prefixes));
        // A rebuilt region mostly holds a chunk or a single: room for that, grown if not.
        let mut built = Built {
            chunks: Vec::with_capacity(affected.len()),
            singles: Vec::with_capacity(affected.len()),
            links: Vec::new(),
        };
        let rebuilt: Vec<Rebuilt> = affected
            .iter()
            .map(|&k16| {
                let base = base16.as_deref().unwrap_or(&self.base16);
                built.region(&self.prefixes, base, k16 as u16)
            })
            .collect();

        // Will it fit? Nothing in the kernel changes before this is known. The new ids are
        // taken while the rebuilt regions' old ones are still in the kernel.
        let (fresh_chunks, fresh_singles) = (built.chunks.len(), built.singles.len());
        if !self.chunk_ids.fits(fresh_chunks, max_chunks)
            || !self.single_ids.fits(fresh_singles, max_singles)
        {
            for (k, was) in undo.into_iter().rev() {
                match was {
                    Some(leaf) => self.prefixes.insert(k, leaf),
                    None => self.prefixes.remove(&k),
                };
            }
            return None;
        }

        for ids in [&mut self.chunk_ids, &mut self.single_ids] {
            let released = std::mem::take(&mut ids.quarantine);
            ids.free.extend(released);
        }
        let mut writes = Writes::default();
        writes.chunks.keys.reserve(fresh_chunks);
        writes.singles.keys.reserve(fresh_singles);
        writes.tbl16.reserve(rebuilt.len());
        for r in &rebuilt {
            self.commit(r, &mut built, &mut writes);
        }
        // The regions' runs are in the order their ids were pushed.
        writes.chunks.values = built.chunks;
        writes.singles.values = built.singles;
        if let Some(base16) = base16 {
            self.base16 = base16;
        }
        Some(writes)
    }

    /// Puts one rebuilt region in place: fresh ids for its chunks and singles (its entries
    /// renamed to them in `built`, their ids in `writes`), then its first-level entry; the ids
    /// it had go to quarantine.
    fn commit(&mut self, r: &Rebuilt, built: &mut Built, writes: &mut Writes) {
        let k16 = r.k16;
        let chunk_ids: RegionIdList = r.chunks.clone().map(|_| self.chunk_ids.take()).collect();
        let single_ids: RegionIdList = r.singles.clone().map(|_| self.single_ids.take()).collect();
        let global = |entry: u32| {
            if entry & CHUNK_FLAG != 0 {
                CHUNK_FLAG | chunk_ids[(entry & !CHUNK_FLAG) as usize]
            } else if entry & SINGLE_FLAG != 0 {
                SINGLE_FLAG | single_ids[(entry & !SINGLE_FLAG) as usize]
            } else {
                entry
            }
        };
        writes.singles.keys.extend(&single_ids);
        writes.chunks.keys.extend(&chunk_ids);
        for &(at, byte) in &built.links[r.links.clone()] {
            let entry = &mut built.chunks[at][usize::from(byte)];
            *entry = global(*entry);
        }
        let root = global(r.root);
        if self.tbl16[k16 as usize] != root {
            self.tbl16[k16 as usize] = root;
            writes.tbl16.push(u32::from(k16), root);
        }
        let old = if chunk_ids.is_empty() && single_ids.is_empty() {
            self.regions.remove(&k16)
        } else {
            self.regions.insert(
                k16,
                RegionIds {
                    chunks: chunk_ids,
                    singles: single_ids,
                },
            )
        };
        if let Some(old) = old {
            self.chunk_ids.quarantine.extend(old.chunks);
            self.single_ids.quarantine.extend(old.singles);
        }
    }
}

/// A change to a table's prefixes: (network, length), and the new leaf or `None` (left).
type Change = ((u128, u8), Option<u32>);

/// The table's key for `net`, if it is of `family`: IPv4 in the top 32 bits.
fn key_of(net: &IpNet, family: Family) -> Option<(u128, u8)> {
    match (net, family) {
        (IpNet::V4(n), Family::V4) => {
            Some((u128::from(u32::from(n.network())) << 96, n.prefix_len()))
        }
        (IpNet::V6(n), Family::V6) => Some((u128::from(n.network()), n.prefix_len())),
        _ => None,
    }
}

fn prefixes_of(rules: &RuleSet, family: Family) -> Option<BTreeMap<(u128, u8), u32>> {
    let mut out = BTreeMap::new();
    for (net, r) in rules.lpm_entries() {
        if let Some(key) = key_of(&net, family) {
            out.insert(key, leaf_of(r)?);
        }
    }
    Some(out)
}

/// The prefixes of `new` that `old` lacks or holds with another leaf.
fn new_or_changed<'a>(
    old: &'a Regions,
    new: &'a BTreeMap<(u128, u8), u32>,
) -> impl Iterator<Item = Change> + 'a {
    new.iter()
        .filter(|&(k, &v)| old.get(k) != Some(v))
        .map(|(&k, &v)| (k, Some(v)))
}

/// The first level from the prefixes of /16 and shorter.
fn base_of(prefixes: &Regions) -> Vec<u32> {
    first_level(
        prefixes
            .short()
            .map(|((a, l), v)| (usize::from(region_of(a)), l, v))
            .collect(),
    )
}

/// A first level (one entry a /16) from prefixes of /16 and shorter, as (first /16, length,
/// leaf), shorter painted first.
fn first_level(mut short: Vec<(usize, u8, u32)>) -> Vec<u32> {
    short.sort_by_key(|&(_, len, _)| len);
    let mut base = vec![0u32; TBL16_ENTRIES as usize];
    for (start, len, value) in short {
        base[start..start + (1 << (16 - len))].fill(value);
    }
    base
}

#[cfg(test)]
mod tests {
    use std::{
        collections::HashMap,
        net::{IpAddr, Ipv4Addr, Ipv6Addr},
    };

    use intune_common::{
        maps::NO_RULE,
        table::{decode_leaf, walk},
    };
    use rand::{Rng, SeedableRng, rngs::StdRng};

    use super::*;
    use crate::{
        ruleset::rules::RuleSetOptions,
        sources::endpoints::{Source, parse_endpoint_sets},
    };

    /// The kernel's three arrays, as the writes leave them.
    #[derive(Default)]
    struct Kernel {
        tbl16: Vec<u32>,
        chunks: Vec<u32>,
        singles: Vec<Single>,
    }

    impl Kernel {
        fn apply(&mut self, w: &Writes) {
            for (i, &s) in w.singles.iter() {
                let i = i as usize;
                if self.singles.len() <= i {
                    self.singles.resize(i + 1, Single::default());
                }
                self.singles[i] = s;
            }
            for (id, chunk) in w.chunks.iter() {
                let at = id as usize * CHUNK;
                if self.chunks.len() < at + CHUNK {
                    self.chunks.resize(at + CHUNK, 0);
                }
                self.chunks[at..at + CHUNK].copy_from_slice(chunk);
            }
            for (i, &v) in w.tbl16.iter() {
                let i = i as usize;
                if self.tbl16.len() <= i {
                    self.tbl16.resize(i + 1, 0);
                }
                self.tbl16[i] = v;
            }
        }

        fn lookup(&self, a: IpAddr) -> Option<u32> {
            match a {
                IpAddr::V4(a) => {
                    let mut first = [0u8; 16];
                    first[..4].copy_from_slice(&a.octets());
                    self.walk::<4>(&first)
                }
                IpAddr::V6(a) => self.walk::<16>(&a.octets()),
            }
        }

        fn walk<const N: usize>(&self, a: &[u8; 16]) -> Option<u32> {
            let get = |v: &[u32], i: u32| Some(v.get(i as usize).copied().unwrap_or(0));
            let e = walk::<N>(
                a,
                |i| get(&self.tbl16, i),
                |id, byte| get(&self.chunks, id * CHUNK_ENTRIES + u32::from(byte)),
                |i| self.singles.get(i as usize),
            )
            .expect("every id written");
            decode_leaf(e).map(|r| r.rule)
        }
    }

    fn rules<S: AsRef<str>>(ips: &[S], previous: Option<&RuleSet>) -> RuleSet {
        let list: Vec<String> = ips.iter().map(|p| format!("\"{}\"", p.as_ref())).collect();
        let json = format!(
            r#"[{{"id": 1, "serviceArea": "MEM", "category": "Default", "tcpPorts": "443", "ips": [{}]}}]"#,
            list.join(",")
        );
        let sets = parse_endpoint_sets(&json, Source::File).unwrap();
        let opts = RuleSetOptions {
            exclude: vec![
                "2603:1006:2000:10::/64".parse().unwrap(),
                "10.1.2.132/30".parse().unwrap(),
            ],
            ..RuleSetOptions::default()
        };
        RuleSet::build(&sets, &opts, previous).unwrap()
    }

    fn want(rules: &RuleSet, a: impl Into<IpAddr>) -> Option<u32> {
        rules
            .lookup(a.into())
            .map(|r| if r.excluded { NO_RULE } else { r.index })
    }

    /// What changed from `previous` to `rules`, as the datapath hands it to [`PrefixTable::change`].
    fn changes(previous: Option<&RuleSet>, rules: &RuleSet) -> Vec<(IpNet, Option<RuleRef>)> {
        let before: HashMap<IpNet, RuleRef> = previous
            .map(|p| p.lpm_entries().collect())
            .unwrap_or_default();
        let after: HashMap<IpNet, RuleRef> = rules.lpm_entries().collect();
        let mut out: Vec<(IpNet, Option<RuleRef>)> = after
            .iter()
            .filter(|(n, r)| before.get(n) != Some(r))
            .map(|(n, r)| (*n, Some(*r)))
            .collect();
        out.extend(
            before
                .keys()
                .filter(|n| !after.contains_key(n))
                .map(|n| (*n, None)),
        );
        out
    }

    /// The Intune list's shape: nested /36, /40, /47, /48, /64 and /128 under one /16, an
    /// exclusion, a lone prefix elsewhere and a short one.
    const LIST: [&str; 9] = [
        "2603:1006::/36",
        "2603:1006:2000::/48",
        "2603:1006:2000::5/128",
        "2603:1007:200::/47",
        "2603:1016:1400::/40",
        "2620:1ec:4::152/128",
        "2a01:111:f100:2000::/52",
        "2c00::/8",
        "2603:1006:2000:10::/64",
    ];

    const PROBES: [&str; 16] = [
        "2603:1006::1",
        "2603:1006:fff::1",
        "2603:1006:1000::1",
        "2603:1006:2000::4",
        "2603:1006:2000::5",
        "2603:1006:2000:10::1",
        "2603:1006:2000:11::1",
        "2603:1006:2001::1",
        "2603:1007:201:ffff::1",
        "2603:1007:202::1",
        "2603:1016:14ff::1",
        "2620:1ec:4::152",
        "2620:1ec:4::153",
        "2a01:111:f100:2fff::1",
        "2c12:3456::1",
        "2001:db8::1",
    ];

    #[test]
    fn every_ipv6_address_gets_its_most_specific_prefix() {
        let rs = rules(&LIST, None);
        let mut t = PrefixTable::new(Family::V6);
        let mut k = Kernel::default();
        let w = t.update(&rs, 64, 64).expect("fits");
        k.apply(&w);
        for p in PROBES {
            let a: Ipv6Addr = p.parse().unwrap();
            assert_eq!(k.lookup(a.into()), want(&rs, a), "{p}");
        }
        // Worked out by hand: 2603:1006 holds four prefixes under 2603::/16; the lone ones are
        // singles at the first level, the /8 is painted there.
        assert_eq!(
            k.lookup("2603:1006:2000:10::1".parse().unwrap()),
            Some(NO_RULE),
            "the exclusion is excluded, not unlisted"
        );
        assert_eq!(k.lookup("2001:db8::1".parse().unwrap()), None);
        assert!(t.update(&rs, 64, 64).unwrap().is_empty(), "nothing changed");
        assert!(
            PrefixTable::new(Family::V6).update(&rs, 1, 64).is_none(),
            "too few chunks"
        );
        assert!(
            PrefixTable::new(Family::V6).update(&rs, 64, 1).is_none(),
            "too few singles"
        );
    }

    #[test]
    fn lone_ipv6_prefixes_cost_one_single_each() {
        let rs = rules(
            &["2001:db8::/32", "2001:db9:1::/48", "3fff:1:2:3::/64"],
            None,
        );
        let mut t = PrefixTable::new(Family::V6);
        let mut k = Kernel::default();
        k.apply(&t.update(&rs, 4, 4).unwrap());
        // 2001:0db8 and 2001:0db9 share their first three bytes: chunks at bytes 2 and 3,
        // a single under each; 3fff::/16 holds one prefix: a single at the first level.
        assert_eq!((t.chunks(), t.singles()), (2, 3));
        for (p, hit) in [
            ("2001:db8:ffff::1", true),
            ("2001:db9:1:ffff::1", true),
            ("2001:db9:2::1", false),
            ("3fff:1:2:3:ffff::1", true),
            ("3fff:1:2:4::1", false),
        ] {
            let a: Ipv6Addr = p.parse().unwrap();
            assert_eq!(k.lookup(a.into()).is_some(), hit, "{p}");
            assert_eq!(k.lookup(a.into()), want(&rs, a), "{p}");
        }
    }

    #[test]
    fn ipv6_updates_agree_with_the_rules_and_free_what_they_replace() {
        let mut rng = StdRng::seed_from_u64(6);
        let random_prefix = |rng: &mut StdRng| {
            // Within a few /16s, so that regions hold many prefixes and updates overlap.
            let hi = [0x2603u128, 0x2620, 0x2a01][rng.random_range(0..3)];
            let net = (hi << 112) | (rng.random::<u128>() >> 16);
            let len = [20u8, 32, 36, 40, 47, 48, 56, 64, 128][rng.random_range(0..9)];
            let net = net & !(u128::MAX.checked_shr(u32::from(len)).unwrap_or(0));
            format!("{}/{len}", Ipv6Addr::from(net))
        };
        let mut current: Vec<String> = (0..200).map(|_| random_prefix(&mut rng)).collect();
        let mut t = PrefixTable::new(Family::V6);
        let mut k = Kernel::default();
        let mut previous: Option<RuleSet> = None;
        for round in 0..12 {
            if round > 0 {
                for _ in 0..20 {
                    let i = rng.random_range(0..current.len());
                    current.remove(i);
                    current.push(random_prefix(&mut rng));
                }
            }
            current.sort();
            current.dedup();
            let refs: Vec<&str> = current.iter().map(String::as_str).collect();
            let rs = rules(&refs, previous.as_ref());
            k.apply(&t.update(&rs, 4096, 4096).expect("fits"));
            for p in &current {
                let net: ipnet::Ipv6Net = p.parse().unwrap();
                for a in [net.network(), net.broadcast()] {
                    assert_eq!(k.lookup(a.into()), want(&rs, a), "round {round}, {a}");
                }
            }
            for _ in 0..2000 {
                let hi = [0x2603u128, 0x2620, 0x2a01][rng.random_range(0..3)];
                let a = Ipv6Addr::from((hi << 112) | (rng.random::<u128>() >> 16));
                assert_eq!(k.lookup(a.into()), want(&rs, a), "round {round}, {a}");
            }
            previous = Some(rs);
        }
        // What is in use is what the regions hold: the rest went back.
        let held: usize = t.regions.values().map(|r| r.chunks.len()).sum();
        assert_eq!(t.chunks(), held);
    }

    /// IPv4 nested under one /16, an exclusion inside them, a lone /24 elsewhere and a /1.
    const LIST_V4: [&str; 9] = [
        "10.0.0.0/8",
        "10.1.0.0/16",
        "10.1.2.0/23",
        "10.1.2.128/25",
        "10.1.2.130/31",
        "10.1.2.131/32",
        "10.1.2.132/30",
        "192.0.2.0/24",
        "0.0.0.0/1",
    ];

    const PROBES_V4: [&str; 15] = [
        "10.0.0.1",
        "10.1.0.1",
        "10.1.2.1",
        "10.1.3.255",
        "10.1.2.129",
        "10.1.2.130",
        "10.1.2.131",
        "10.1.2.133",
        "10.1.2.136",
        "10.1.4.0",
        "192.0.2.9",
        "192.0.3.1",
        "127.0.0.1",
        "200.0.0.1",
        "10.9.9.9",
    ];

    #[test]
    fn every_ipv4_address_gets_its_most_specific_prefix() {
        let rs = rules(&LIST_V4, None);
        let mut t = PrefixTable::new(Family::V4);
        let mut k = Kernel::default();
        k.apply(&t.update(&rs, 16, 16).expect("fits"));
        for p in PROBES_V4 {
            let a: Ipv4Addr = p.parse().unwrap();
            assert_eq!(k.lookup(a.into()), want(&rs, a), "{p}");
        }
        // Worked out by hand: 10.1/16 holds five longer prefixes, a chunk at the third byte
        // (the /23 painted on 2 and 3) and, under 10.1.2, a chunk at the last (the /25 on
        // 128-255, the /31 on 130-131, the /32 on 131, the exclusion on 132-135);
        // 192.0.2.0/24 is alone under its /16: a single. The IPv6 prefixes are not here.
        assert_eq!((t.chunks(), t.singles()), (2, 1));
        let rule = |p: &str| rs.lookup(p.parse().unwrap()).map(|r| r.index);
        assert_eq!(k.lookup("10.1.2.131".parse().unwrap()), rule("10.1.2.131"));
        assert_ne!(rule("10.1.2.131"), rule("10.1.2.130"));
        assert_eq!(k.lookup("10.1.2.133".parse().unwrap()), Some(NO_RULE));
        assert_eq!(k.lookup("10.1.2.136".parse().unwrap()), rule("10.1.2.129"));
        assert_eq!(k.lookup("192.0.3.1".parse().unwrap()), None);
        assert_eq!(k.lookup("127.0.0.1".parse().unwrap()), rule("0.0.0.1"));
        assert!(t.update(&rs, 16, 16).unwrap().is_empty(), "nothing changed");
        assert!(
            PrefixTable::new(Family::V4).update(&rs, 1, 16).is_none(),
            "two chunks do not fit one"
        );
    }

    #[test]
    fn an_update_keeps_the_regions_it_does_not_touch_and_frees_the_rest_an_update_later() {
        let first = rules(
            &[
                "10.1.2.128/25",
                "10.1.3.0/24",
                "192.0.2.0/24",
                "192.0.2.128/25",
            ],
            None,
        );
        let mut t = PrefixTable::new(Family::V4);
        let mut k = Kernel::default();
        k.apply(&t.update(&first, 16, 16).unwrap());
        let before = t.clone();
        // 192.0.2.128/25 leaves (192.0/16 is rebuilt: a single now), 10.9.9.0/24 arrives.
        let second = rules(
            &[
                "10.1.2.128/25",
                "10.1.3.0/24",
                "192.0.2.0/24",
                "10.9.9.0/24",
            ],
            Some(&first),
        );
        let writes = t.update(&second, 16, 16).unwrap();
        k.apply(&writes);
        for p in PROBES_V4.iter().chain(&["192.0.2.200", "10.9.9.1"]) {
            let a: Ipv4Addr = p.parse().unwrap();
            assert_eq!(k.lookup(a.into()), want(&second, a), "{p}");
        }
        assert_eq!(
            before.regions[&0x0a01].chunks, t.regions[&0x0a01].chunks,
            "10.1/16 keeps its chunk"
        );
        let mut first_level: Vec<u32> = writes.tbl16.keys().to_vec();
        first_level.sort_unstable();
        assert_eq!(first_level, [0x0a09, 0xc000], "only the regions touched");
        // 192.0/16's chunk is not written (a lookup in flight may be reading it) nor reused.
        let freed = before.regions[&0xc000].chunks[0] as usize;
        assert!(writes.chunks.keys().iter().all(|&id| id as usize != freed));
        // 10.1/16 holds two (its third byte; 10.1.2 with the /25 and the excluded /30): the
        // freed one waits.
        assert_eq!(t.chunks(), 2);
        assert_eq!(t.regions[&0x0a01].chunks.len(), 2);
        // The next update may hand it out again.
        let third = rules(
            &[
                "10.1.2.128/25",
                "10.1.3.0/24",
                "192.0.2.0/24",
                "10.9.9.0/24",
                "172.16.5.0/24",
                "172.16.6.0/24",
            ],
            Some(&second),
        );
        k.apply(&t.update(&third, 16, 16).unwrap());
        assert_eq!(t.regions[&0xac10].chunks.as_slice(), [freed as u32]);
        // A /8 arriving rewrites the /16s under it, and nothing else.
        let fourth = rules(
            &[
                "10.1.2.128/25",
                "10.1.3.0/24",
                "192.0.2.0/24",
                "10.9.9.0/24",
                "172.16.5.0/24",
                "172.16.6.0/24",
                "10.0.0.0/8",
            ],
            Some(&third),
        );
        let writes = t.update(&fourth, 16, 16).unwrap();
        k.apply(&writes);
        assert!(
            writes
                .tbl16
                .iter()
                .all(|(i, _)| (0x0a00..0x0b00).contains(&i))
        );
        for p in PROBES_V4 {
            let a: Ipv4Addr = p.parse().unwrap();
            assert_eq!(k.lookup(a.into()), want(&fourth, a), "{p}");
        }
    }

    #[test]
    fn an_update_that_does_not_fit_changes_nothing() {
        let first = rules(&["10.1.2.0/24", "10.1.3.0/24"], None);
        let mut t = PrefixTable::new(Family::V4);
        t.update(&first, 2, 2).unwrap();
        let before = t.clone();
        let big = rules(
            &[
                "10.1.2.0/24",
                "10.1.3.0/24",
                "10.2.2.0/24",
                "10.2.3.0/24",
                "10.3.2.0/24",
                "10.3.3.0/24",
            ],
            Some(&first),
        );
        assert!(t.update(&big, 2, 2).is_none());
        assert_eq!((&t.tbl16, &t.prefixes), (&before.tbl16, &before.prefixes));
        assert_eq!(
            (t.chunks(), t.singles()),
            (before.chunks(), before.singles())
        );
    }

    /// Many random updates in a crowded corner of IPv4: the kernel the writes build answers
    /// every address as the rule set does, round after round.
    #[test]
    fn random_ipv4_updates_keep_the_kernel_right() {
        let mut rng = StdRng::seed_from_u64(5);
        let base = u32::from(Ipv4Addr::new(10, 0, 0, 0));
        let random_prefix = |rng: &mut StdRng| {
            let len = rng.random_range(12..=32u8);
            let addr = base | (rng.random::<u32>() & 0x000f_ffff);
            ipnet::Ipv4Net::new(Ipv4Addr::from(addr), len)
                .unwrap()
                .trunc()
                .to_string()
        };
        let mut current: Vec<String> = (0..40).map(|_| random_prefix(&mut rng)).collect();
        let mut t = PrefixTable::new(Family::V4);
        let mut k = Kernel::default();
        // The same rounds again, each handed only what changed.
        let mut by_change = PrefixTable::new(Family::V4);
        let mut k_by_change = Kernel::default();
        let mut previous: Option<RuleSet> = None;
        for round in 0..60 {
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
            let rs = rules(&current, previous.as_ref());
            k.apply(&t.update(&rs, 4096, 4096).expect("fits"));
            let changed = changes(previous.as_ref(), &rs);
            let writes = by_change
                .change(changed.iter().map(|(n, r)| (n, *r)), 4096, 4096)
                .expect("fits");
            k_by_change.apply(&writes);
            for _ in 0..2000 {
                let a = Ipv4Addr::from(base | (rng.random::<u32>() & 0x000f_ffff));
                assert_eq!(k.lookup(a.into()), want(&rs, a), "round {round}, {a}");
                assert_eq!(
                    k_by_change.lookup(a.into()),
                    want(&rs, a),
                    "by change: round {round}, {a}"
                );
            }
            previous = Some(rs);
        }
        let held: usize = t.regions.values().map(|r| r.chunks.len()).sum();
        assert_eq!(t.chunks(), held);
        assert_eq!(by_change.prefixes, t.prefixes);
        assert_eq!(
            (by_change.chunks(), by_change.singles()),
            (t.chunks(), t.singles())
        );
    }
}
