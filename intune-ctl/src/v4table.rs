//! Compiles the rule set's IPv4 prefixes into the kernel's DIR-16-8-8 table
//! (`intune_common::v4table`): every address gets the leaf of its most specific prefix.

use intune_common::v4table::{
    CHUNK_ENTRIES, CHUNK_FLAG, MAX_LEAF_PORT_SET, MAX_LEAF_RULE, TBL16_ENTRIES, chunk, leaf,
};
use ipnet::IpNet;

use crate::rules::RuleSet;

/// The three levels, as flat arrays of entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct V4Table {
    pub tbl16: Vec<u32>,
    pub tbl24: Vec<u32>,
    pub tbl32: Vec<u32>,
}

impl V4Table {
    pub fn chunks24(&self) -> usize {
        self.tbl24.len() / CHUNK_ENTRIES as usize
    }

    pub fn chunks32(&self) -> usize {
        self.tbl32.len() / CHUNK_ENTRIES as usize
    }

    /// Compiles the table, or `None` when it needs more than `max_chunks` chunks on a level
    /// or a rule or port set a leaf cannot name.
    pub fn compile(rules: &RuleSet, max_chunks: usize) -> Option<V4Table> {
        let mut prefixes: Vec<(u32, u8, u32)> = Vec::new();
        for (net, r) in rules.lpm_entries() {
            if let IpNet::V4(n) = net {
                if r.rule > MAX_LEAF_RULE || r.port_set > MAX_LEAF_PORT_SET {
                    return None;
                }
                prefixes.push((
                    u32::from(n.network()),
                    n.prefix_len(),
                    leaf(r.rule, r.port_set),
                ));
            }
        }
        // Shorter prefixes first: longer ones paint over them, and every chunk is created
        // after the shorter prefixes covering it are painted, so it inherits their leaf.
        prefixes.sort_by_key(|&(_, len, _)| len);
        let mut t = V4Table {
            tbl16: vec![0; TBL16_ENTRIES as usize],
            tbl24: Vec::new(),
            tbl32: Vec::new(),
        };
        for (addr, len, value) in prefixes {
            if len <= 16 {
                let start = (addr >> 16) as usize;
                t.tbl16[start..start + (1 << (16 - len))].fill(value);
                continue;
            }
            let c24 = child(
                &mut t.tbl16[(addr >> 16) as usize],
                &mut t.tbl24,
                max_chunks,
            )?;
            let at24 = c24 * CHUNK_ENTRIES as usize + ((addr >> 8) & 0xff) as usize;
            if len <= 24 {
                t.tbl24[at24..at24 + (1 << (24 - len))].fill(value);
                continue;
            }
            let c32 = child(&mut t.tbl24[at24], &mut t.tbl32, max_chunks)?;
            let at32 = c32 * CHUNK_ENTRIES as usize + (addr & 0xff) as usize;
            t.tbl32[at32..at32 + (1 << (32 - len))].fill(value);
        }
        Some(t)
    }
}

/// The chunk `entry` points to, creating it (filled with what `entry` held) when it is a leaf.
fn child(entry: &mut u32, level: &mut Vec<u32>, max_chunks: usize) -> Option<usize> {
    if *entry & CHUNK_FLAG != 0 {
        return Some((*entry & !CHUNK_FLAG) as usize);
    }
    let index = level.len() / CHUNK_ENTRIES as usize;
    if index >= max_chunks {
        return None;
    }
    level.extend(std::iter::repeat_n(*entry, CHUNK_ENTRIES as usize));
    *entry = chunk(index as u32);
    Some(index)
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use intune_common::v4table::decode_leaf;

    use super::*;
    use crate::{endpoints::parse_endpoint_sets, rules::RuleSetOptions};

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

    #[test]
    fn every_address_gets_its_most_specific_prefix() {
        let sets = parse_endpoint_sets(
            r#"[{"id": 1, "serviceArea": "MEM", "category": "Default", "tcpPorts": "443",
                "ips": ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/23", "10.1.2.128/25", "10.1.2.130/31", "10.1.2.131/32", "192.0.2.0/24", "0.0.0.0/1"]}]"#,
        )
        .unwrap();
        let rules = RuleSet::build(&sets, RuleSetOptions::default()).unwrap();
        let t = V4Table::compile(&rules, 16).unwrap();
        let probes = [
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
        ];
        for p in probes {
            let a: Ipv4Addr = p.parse().unwrap();
            assert_eq!(lookup(&t, u32::from(a)), rules.lookup(IpAddr::V4(a)), "{p}");
        }
        assert_eq!((t.chunks24(), t.chunks32()), (2, 1));
        assert!(
            V4Table::compile(&rules, 1).is_none(),
            "two chunks do not fit one"
        );
    }
}
