//! The lookup tables: each family's prefixes of the LPM trie compiled into a first level
//! indexed by the address's top 16 bits and chunks of 256 entries indexed by each byte after
//! (a multibit trie with 8-bit strides, two chunk levels for IPv4, fourteen for IPv6), where a
//! part of the tree that holds a single prefix is one [`Single`] instead of a chain of chunks.
//! The verifier inlines array lookups, so a hit costs a few loads where the trie compares a
//! node per bit of depth; a random rule set's prefixes part within the first two levels, so
//! most lookups end at a single or a chunk's leaf, and a million prefixes cost what fifty do.
//! Userspace compiles each table from the rules it puts in the trie; when one would not fit
//! its maps, the program uses that family's trie (`Config::FLAG_V4_TRIE`, `FLAG_V6_TRIE`).
//!
//! An entry is 0 (no prefix), a chunk reference (`CHUNK_FLAG | chunk`: the next level is
//! entry `next byte of the address` of that chunk), a single (`SINGLE_FLAG | single`), or a leaf:
//! the rule and its port set, or [`EXCLUDED_LEAF`].

use crate::maps::{NO_RULE, RuleRef};

pub const TBL16_ENTRIES: u32 = 1 << 16;
pub const CHUNK_ENTRIES: u32 = 256;
/// The entries below one entry, one for each value of the next byte: an element of a chunk
/// array, so a chunk is written whole with one copy.
pub type Chunk = [u32; CHUNK_ENTRIES as usize];
pub const CHUNK_FLAG: u32 = 1 << 31;
pub const SINGLE_FLAG: u32 = 1 << 30;
const PORT_SET_SHIFT: u32 = 24;
const RULE_MASK: u32 = (1 << PORT_SET_SHIFT) - 1;
/// The leaf of an excluded prefix: a rule field of all ones.
pub const EXCLUDED_LEAF: u32 = RULE_MASK;
/// Rules a leaf can name (rule + 1 must fit 24 bits and differ from [`EXCLUDED_LEAF`]); port
/// sets must fit the 6 bits between the rule and the flags.
pub const MAX_LEAF_RULE: u32 = RULE_MASK - 2;
pub const MAX_LEAF_PORT_SET: u32 = (SINGLE_FLAG >> PORT_SET_SHIFT) - 1;

/// A leaf for `rule` and its port set; `rule <= MAX_LEAF_RULE`, `port_set <= MAX_LEAF_PORT_SET`.
pub const fn leaf(rule: u32, port_set: u32) -> u32 {
    (port_set << PORT_SET_SHIFT) | (rule + 1)
}

/// The leaf for what a prefix's trie entry says: [`EXCLUDED_LEAF`] for an excluded prefix;
/// `None` when the rule or port set does not fit a leaf.
pub fn leaf_of(r: RuleRef) -> Option<u32> {
    if r.rule == NO_RULE {
        Some(EXCLUDED_LEAF)
    } else if r.rule > MAX_LEAF_RULE || r.port_set > MAX_LEAF_PORT_SET {
        None
    } else {
        Some(leaf(r.rule, r.port_set))
    }
}

/// The rule of a leaf entry (`NO_RULE` for an excluded prefix); `None` for an empty one. Call
/// only on leaves.
#[inline(always)]
pub fn decode_leaf(entry: u32) -> Option<RuleRef> {
    let rule = entry & RULE_MASK;
    if rule == 0 {
        return None;
    }
    if rule == EXCLUDED_LEAF {
        return Some(RuleRef {
            rule: NO_RULE,
            port_set: 0,
        });
    }
    Some(RuleRef {
        rule: rule - 1,
        port_set: entry >> PORT_SET_SHIFT,
    })
}

/// The one prefix below an entry: the address holds it when its bits under `mask` are `net`
/// (each half as the address's bytes read in native order, so no byte swap is needed; an IPv4
/// address is the first four bytes of the first half, the rest zero).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Single {
    pub net: [u64; 2],
    pub mask: [u64; 2],
    /// The prefix's leaf, and the leaf of the addresses it does not hold (what covers them).
    pub hit: u32,
    pub miss: u32,
}

impl Single {
    /// The single for `net`/`len` (`net` as 16 bytes: an IPv4 network in the first four).
    pub fn new(net: [u8; 16], len: u8, hit: u32, miss: u32) -> Single {
        let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
        let mask = mask.to_be_bytes();
        let half = |b: &[u8; 16], i: usize| {
            let mut h = [0u8; 8];
            h.copy_from_slice(&b[i * 8..i * 8 + 8]);
            u64::from_ne_bytes(h)
        };
        Single {
            net: [
                half(&net, 0) & half(&mask, 0),
                half(&net, 1) & half(&mask, 1),
            ],
            mask: [half(&mask, 0), half(&mask, 1)],
            hit,
            miss,
        }
    }

    /// The leaf for `addr`, of which the first `N` bytes (4 or 16) are the address; an IPv4
    /// address compares the first half alone, where its mask ignores the bytes after the four.
    #[inline(always)]
    pub fn leaf_for<const N: usize>(&self, addr: &[u8; 16]) -> u32 {
        let half = |i: usize| {
            let mut h = [0u8; 8];
            h.copy_from_slice(&addr[i * 8..i * 8 + 8]);
            u64::from_ne_bytes(h)
        };
        let held = if N > 8 {
            half(0) & self.mask[0] == self.net[0] && half(1) & self.mask[1] == self.net[1]
        } else {
            half(0) & self.mask[0] == self.net[0]
        };
        if held { self.hit } else { self.miss }
    }
}

/// The leaf entry for the address in the first `N` bytes (4 or 16) of `addr`, walking the
/// table through the three lookups given: the first level by the top 16 bits, a chunk's entry
/// by the chunk's id and the byte, a single by its id.
/// `None` when a lookup found nothing (an index past its map).
#[inline(always)]
pub fn walk<'a, const N: usize>(
    addr: &[u8; 16],
    first: impl Fn(u32) -> Option<u32>,
    chunk: impl Fn(u32, u8) -> Option<u32>,
    single: impl Fn(u32) -> Option<&'a Single>,
) -> Option<u32> {
    let mut entry = first((u32::from(addr[0]) << 8) | u32::from(addr[1]))?;
    // One chunk level for each byte after the first two.
    for &byte in &addr[2..N] {
        if entry & CHUNK_FLAG == 0 {
            break;
        }
        entry = chunk(entry & !CHUNK_FLAG, byte)?;
    }
    if entry & SINGLE_FLAG != 0 {
        entry = single(entry & !SINGLE_FLAG)?.leaf_for::<N>(addr);
    }
    Some(entry)
}

#[cfg(feature = "user")]
// SAFETY: repr(C), integers only, no implicit padding (2 × 16 + 2 × 4 bytes, 8-aligned).
unsafe impl aya::Pod for Single {}
