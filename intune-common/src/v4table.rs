//! The IPv4 lookup table: the IPv4 prefixes of the LPM trie compiled into three levels of
//! arrays indexed by 16, 8 and 8 bits of the address (DIR-16-8-8). The verifier inlines array
//! lookups, so a hit costs a few instructions where the trie walks a node per bit of depth.
//! Userspace compiles the table from the same rules it puts in the trie; when the table would
//! not fit its maps, the program uses the trie (`Config::FLAG_V4_TRIE`).
//!
//! An entry is 0 (no prefix), a chunk reference (`CHUNK_FLAG | chunk`: look up the next level at
//! `chunk * 256 + next byte of the address`), or a leaf: the rule and its port set, or
//! [`EXCLUDED_LEAF`]. The IPv6 table (`v6table`) uses the same entries.

use crate::maps::{NO_RULE, RuleRef};

pub const TBL16_ENTRIES: u32 = 1 << 16;
pub const CHUNK_ENTRIES: u32 = 256;
pub const CHUNK_FLAG: u32 = 1 << 31;
/// An entry naming a single prefix below it (`v6table::Single`); not used by the IPv4 table.
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

pub const fn chunk(index: u32) -> u32 {
    CHUNK_FLAG | index
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
