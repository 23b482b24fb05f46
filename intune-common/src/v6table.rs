//! The IPv6 lookup table: the IPv6 prefixes of the LPM trie compiled into a first level indexed
//! by the address's top 16 bits and chunks of 256 entries indexed by each byte after (a
//! multibit trie with 8-bit strides), where a part of the tree that holds a single prefix is
//! one [`Single`] instead of a chain of chunks. The verifier inlines array lookups, so a hit
//! costs a few loads where the trie compares a node per bit of depth; and a random rule set's
//! prefixes part within the first two levels, so most lookups end at a single.
//!
//! Entries are the IPv4 table's (`v4table`): 0, a leaf, `CHUNK_FLAG | chunk`, and here also
//! `SINGLE_FLAG | single`. Userspace compiles the table from the same rules it puts in the
//! trie; when the table would not fit its maps, the program uses the trie
//! (`Config::FLAG_V6_TRIE`).

use crate::v4table::{CHUNK_FLAG, SINGLE_FLAG};

/// Chunk levels below the first: one for each of the address's bytes 2 to 15.
pub const CHUNK_LEVELS: usize = 14;

/// The one prefix below an entry: the address holds it when its bits under `mask` are `net`
/// (each half as the address's bytes read in native order, so no byte swap is needed).
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
    /// The single for `net`/`len` (`net` as the address's 16 bytes).
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

    /// The leaf for `addr`.
    #[inline(always)]
    pub fn leaf_for(&self, addr: &[u8; 16]) -> u32 {
        let hi = u64::from_ne_bytes([
            addr[0], addr[1], addr[2], addr[3], addr[4], addr[5], addr[6], addr[7],
        ]);
        let lo = u64::from_ne_bytes([
            addr[8], addr[9], addr[10], addr[11], addr[12], addr[13], addr[14], addr[15],
        ]);
        if hi & self.mask[0] == self.net[0] && lo & self.mask[1] == self.net[1] {
            self.hit
        } else {
            self.miss
        }
    }
}

/// The leaf entry for `addr`, walking the table through the three lookups given: the first
/// level by the top 16 bits, a chunk entry by its index, a single by its id. `None` when a
/// lookup found nothing (an index past its map).
#[inline(always)]
pub fn walk<'a>(
    addr: &[u8; 16],
    first: impl Fn(u32) -> Option<u32>,
    chunk: impl Fn(u32) -> Option<u32>,
    single: impl Fn(u32) -> Option<&'a Single>,
) -> Option<u32> {
    let mut entry = first((u32::from(addr[0]) << 8) | u32::from(addr[1]))?;
    for level in 0..CHUNK_LEVELS {
        if entry & CHUNK_FLAG == 0 {
            break;
        }
        entry = chunk(((entry & !CHUNK_FLAG) << 8) | u32::from(addr[2 + level]))?;
    }
    if entry & SINGLE_FLAG != 0 {
        entry = single(entry & !SINGLE_FLAG)?.leaf_for(addr);
    }
    Some(entry)
}

#[cfg(feature = "user")]
// SAFETY: repr(C), integers only, no implicit padding (2 × 16 + 2 × 4 bytes, 8-aligned).
unsafe impl aya::Pod for Single {}
