//! Compiles the rule set's IPv4 prefixes into the kernel's DIR-16-8-8 table
//! (`intune_common::v4table`): every address gets the leaf of its most specific prefix.

use intune_common::{
    maps::NO_RULE,
    v4table::{CHUNK_ENTRIES, MAX_LEAF_PORT_SET, MAX_LEAF_RULE, TBL16_ENTRIES, chunk, leaf},
};
use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;

use crate::rules::RuleSet;

/// The three levels as the kernel holds them: `tbl24` and `tbl32` mirror the whole maps,
/// unused chunks included, so a rebuild can write only what differs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct V4Table {
    pub tbl16: Vec<u32>,
    pub tbl24: Vec<u32>,
    pub tbl32: Vec<u32>,
    /// Chunk ids in use: by the address's top 16 bits (level 24) and top 24 bits (level 32).
    chunks24: BTreeMap<u32, u32>,
    chunks32: BTreeMap<u32, u32>,
}

type Chunk = [u32; CHUNK_ENTRIES as usize];

impl V4Table {
    pub fn chunks24(&self) -> usize {
        self.chunks24.len()
    }

    pub fn chunks32(&self) -> usize {
        self.chunks32.len()
    }

    /// Compiles the table, or `None` when it needs more than `max_chunks` chunks on a level
    /// or a rule or port set a leaf cannot name. Given the `previous` table, chunks covering the
    /// same addresses keep their ids, and no id the previous table used is handed out anew: a
    /// lookup in flight never follows a pointer into a chunk being rewritten.
    pub fn compile(
        rules: &RuleSet,
        max_chunks: usize,
        previous: Option<&V4Table>,
    ) -> Option<V4Table> {
        let mut prefixes: Vec<(u32, u8, u32)> = Vec::new();
        for (net, r) in rules.lpm_entries() {
            if let IpNet::V4(n) = net {
                // An excluded prefix paints "no prefix" over what covers it.
                let value = if r.rule == NO_RULE {
                    0
                } else if r.rule > MAX_LEAF_RULE || r.port_set > MAX_LEAF_PORT_SET {
                    return None;
                } else {
                    leaf(r.rule, r.port_set)
                };
                prefixes.push((u32::from(n.network()), n.prefix_len(), value));
            }
        }
        // Shorter prefixes first: longer ones paint over them, and every chunk is created
        // after the shorter prefixes covering it are painted, so it inherits their value.
        prefixes.sort_by_key(|&(_, len, _)| len);
        let mut tbl16 = vec![0u32; TBL16_ENTRIES as usize];
        let mut level24: BTreeMap<u32, Chunk> = BTreeMap::new();
        let mut level32: BTreeMap<u32, Chunk> = BTreeMap::new();
        for (addr, len, value) in prefixes {
            let (k16, k24) = (addr >> 16, addr >> 8);
            if len <= 16 {
                let start = k16 as usize;
                tbl16[start..start + (1 << (16 - len))].fill(value);
                continue;
            }
            let c24 = level24
                .entry(k16)
                .or_insert([tbl16[k16 as usize]; CHUNK_ENTRIES as usize]);
            let at24 = (k24 & 0xff) as usize;
            if len <= 24 {
                c24[at24..at24 + (1 << (24 - len))].fill(value);
                continue;
            }
            let inherited = c24[at24];
            let c32 = level32
                .entry(k24)
                .or_insert([inherited; CHUNK_ENTRIES as usize]);
            let at32 = (addr & 0xff) as usize;
            c32[at32..at32 + (1 << (32 - len))].fill(value);
        }

        let chunks24 = assign(&level24, previous.map(|p| &p.chunks24), max_chunks)?;
        let chunks32 = assign(&level32, previous.map(|p| &p.chunks32), max_chunks)?;
        for (k24, id) in &chunks32 {
            if let Some(c24) = level24.get_mut(&(k24 >> 8)) {
                c24[(k24 & 0xff) as usize] = chunk(*id);
            }
        }
        for (k16, id) in &chunks24 {
            tbl16[*k16 as usize] = chunk(*id);
        }
        Some(V4Table {
            tbl16,
            tbl24: mirror(previous.map(|p| p.tbl24.as_slice()), &level24, &chunks24),
            tbl32: mirror(previous.map(|p| p.tbl32.as_slice()), &level32, &chunks32),
            chunks24,
            chunks32,
        })
    }
}

/// Chunk ids for `level`'s keys: the previous id where there was one, else the lowest id the
/// previous table did not use.
fn assign(
    level: &BTreeMap<u32, Chunk>,
    previous: Option<&BTreeMap<u32, u32>>,
    max_chunks: usize,
) -> Option<BTreeMap<u32, u32>> {
    let mut taken: BTreeSet<u32> = previous
        .map(|p| p.values().copied().collect())
        .unwrap_or_default();
    let mut next = 0;
    let mut ids = BTreeMap::new();
    for key in level.keys() {
        let id = match previous.and_then(|p| p.get(key)) {
            Some(id) => *id,
            None => {
                while taken.contains(&next) {
                    next += 1;
                }
                taken.insert(next);
                next
            }
        };
        if id as usize >= max_chunks {
            return None;
        }
        ids.insert(*key, id);
    }
    Some(ids)
}

/// The level as the kernel will hold it: what it held before, with the chunks in use rewritten.
fn mirror(
    previous: Option<&[u32]>,
    level: &BTreeMap<u32, Chunk>,
    ids: &BTreeMap<u32, u32>,
) -> Vec<u32> {
    let mut out = previous.map(<[u32]>::to_vec).unwrap_or_default();
    for (key, id) in ids {
        let at = *id as usize * CHUNK_ENTRIES as usize;
        if out.len() < at + CHUNK_ENTRIES as usize {
            out.resize(at + CHUNK_ENTRIES as usize, 0);
        }
        out[at..at + CHUNK_ENTRIES as usize].copy_from_slice(&level[key]);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use intune_common::v4table::{CHUNK_FLAG, decode_leaf};

    use super::*;
    use crate::{
        endpoints::{Source, parse_endpoint_sets},
        rules::RuleSetOptions,
    };

    fn lookup(t: &V4Table, a: u32) -> Option<u32> {
        let mut e = t.tbl16[(a >> 16) as usize];
        if e & CHUNK_FLAG != 0 {
            e = t.tbl24[(((e & !CHUNK_FLAG) << 8) | ((a >> 8) & 0xff)) as usize];
        }
        if e & CHUNK_FLAG != 0 {
            e = t.tbl32[(((e & !CHUNK_FLAG) << 8) | (a & 0xff)) as usize];
        }
        decode_leaf(e).map(|r| r.rule)
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

    fn agrees(t: &V4Table, rules: &RuleSet) {
        for p in PROBES {
            let a: Ipv4Addr = p.parse().unwrap();
            let want = rules
                .lookup(IpAddr::V4(a))
                .filter(|r| !r.excluded)
                .map(|r| r.index);
            assert_eq!(lookup(t, u32::from(a)), want, "{p}");
        }
    }

    #[test]
    fn every_address_gets_its_most_specific_prefix() {
        let rs = rules(
            r#""10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/23", "10.1.2.128/25", "10.1.2.130/31", "10.1.2.131/32", "192.0.2.0/24", "0.0.0.0/1""#,
            None,
        );
        let t = V4Table::compile(&rs, 16, None).unwrap();
        agrees(&t, &rs);
        assert_eq!((t.chunks24(), t.chunks32()), (2, 1));
        assert!(
            V4Table::compile(&rs, 1, None).is_none(),
            "two chunks do not fit one"
        );
    }

    #[test]
    fn rebuilds_keep_chunk_ids_and_mirror_what_the_kernel_holds() {
        let first_rules = rules(r#""10.1.2.128/25", "192.0.2.0/24""#, None);
        let first = V4Table::compile(&first_rules, 16, None).unwrap();
        // 192.0.2.0/24 leaves (its chunk is freed), 10.9.9.0/24 arrives (a new chunk).
        let second_rules = rules(r#""10.1.2.128/25", "10.9.9.0/24""#, Some(&first_rules));
        let second = V4Table::compile(&second_rules, 16, Some(&first)).unwrap();
        agrees(&second, &second_rules);
        assert_eq!(
            first.chunks24[&0x0a01], second.chunks24[&0x0a01],
            "the chunk for 10.1/16 keeps its id"
        );
        let freed = first.chunks24[&0xc000];
        let fresh = second.chunks24[&0x0a09];
        assert!(
            !first.chunks24.values().any(|&id| id == fresh),
            "a chunk id still in use was handed out"
        );
        // The freed chunk's contents stay in the mirror: the kernel still holds them.
        let at = freed as usize * 256;
        assert_eq!(first.tbl24[at..at + 256], second.tbl24[at..at + 256]);
        // A third build may reuse the freed id.
        let third_rules = rules(
            r#""10.1.2.128/25", "10.9.9.0/24", "172.16.5.0/24""#,
            Some(&second_rules),
        );
        let third = V4Table::compile(&third_rules, 16, Some(&second)).unwrap();
        agrees(&third, &third_rules);
        assert_eq!(third.chunks24[&0xac10], freed);
    }
}
