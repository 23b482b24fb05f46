//! The classifier's lookups, answered by the maps.

use core::cell::UnsafeCell;

use aya_ebpf::{helpers::bpf_ktime_get_ns, maps::lpm_trie::Key};
use intune_common::{
    classify::Tables,
    maps::{AllowEntry, Config, DRAIN_TOUCH_NS, DrainEntry, PortSet, RuleRef},
    table::{decode_leaf, walk},
};

use crate::maps::{
    ADDR_ROLES, ALLOW_V4, ALLOW_V6, DRAIN, IFACE_DIRECTION, LEARNED, LPM_V4, LPM_V6, PORT_SETS,
    V4_CHUNKS, V4_SINGLES, V4_TBL16, V6_CHUNKS, V6_SINGLES, V6_TBL16,
};

/// `DRAIN`'s value as the program writes it: the layout of [`DrainEntry`], with the time of
/// the last packet in a cell the program sets in place.
#[repr(C)]
pub struct DrainValue {
    ports: AllowEntry,
    _pad: u32,
    last_seen_ns: UnsafeCell<u64>,
}

const _: () = assert!(size_of::<DrainValue>() == size_of::<DrainEntry>());

// SAFETY: the cell holds a time any CPU may store whole; a lost store only delays the next.
unsafe impl Sync for DrainValue {}

impl DrainValue {
    /// Notes a packet now, at most once a second: one store a second, not one a packet. A
    /// race with another CPU or the daemon stores a time either way.
    #[inline(always)]
    fn touch(&self) {
        // SAFETY: a u64 of a map value, in a cell; the helper has no preconditions.
        unsafe {
            let now = bpf_ktime_get_ns();
            if now > (*self.last_seen_ns.get()).saturating_add(DRAIN_TOUCH_NS) {
                core::ptr::write_volatile(self.last_seen_ns.get(), now);
            }
        }
    }

    #[inline(always)]
    fn entry(&self) -> &DrainEntry {
        // SAFETY: the same repr(C) layout (asserted above); nothing writes while it is read.
        unsafe { &*(self as *const DrainValue).cast::<DrainEntry>() }
    }
}

/// The kernel's maps, and the settings' flags that say which lookup each family uses
/// (`Config::FLAG_V4_TRIE`, `Config::FLAG_V6_TRIE`: the table did not fit), tested where a
/// lookup is made.
pub struct MapTables {
    pub flags: u32,
}

impl Tables for MapTables {
    #[inline(always)]
    fn lookup_v4(&self, addr: &[u8; 16]) -> Option<RuleRef> {
        if self.flags & Config::FLAG_V4_TRIE != 0 {
            let v4 = [addr[0], addr[1], addr[2], addr[3]];
            return LPM_V4.get(Key::new(32, v4)).copied();
        }
        let entry = walk::<4>(
            addr,
            |i| V4_TBL16.get(i).copied(),
            |id, byte| V4_CHUNKS.get(id).map(|c| c[usize::from(byte)]),
            |i| V4_SINGLES.get(i),
        )?;
        decode_leaf(entry)
    }

    #[inline(always)]
    fn lookup_v6(&self, addr: &[u8; 16]) -> Option<RuleRef> {
        if self.flags & Config::FLAG_V6_TRIE != 0 {
            return LPM_V6.get(Key::new(128, *addr)).copied();
        }
        let entry = walk::<16>(
            addr,
            |i| V6_TBL16.get(i).copied(),
            |id, byte| V6_CHUNKS.get(id).map(|c| c[usize::from(byte)]),
            |i| V6_SINGLES.get(i),
        )?;
        decode_leaf(entry)
    }

    #[inline(always)]
    fn port_set(&self, id: u32) -> Option<&PortSet> {
        PORT_SETS.get(id)
    }

    #[inline(always)]
    fn addr_roles(&self, addr: &[u8; 16]) -> u32 {
        // SAFETY: a u32 copied out at once; userspace writes it whole.
        unsafe { ADDR_ROLES.get(addr).copied().unwrap_or(0) }
    }

    #[inline(always)]
    fn lookup_allow_v4(&self, addr: &[u8; 4]) -> Option<&AllowEntry> {
        ALLOW_V4.get(Key::new(32, *addr))
    }

    #[inline(always)]
    fn lookup_drain(&self, addr: &[u8; 16]) -> Option<&DrainEntry> {
        let v = DRAIN.get(Key::new(128, *addr))?;
        v.touch();
        Some(v.entry())
    }

    #[inline(always)]
    fn lookup_allow_v6(&self, addr: &[u8; 16]) -> Option<&AllowEntry> {
        ALLOW_V6.get(Key::new(128, *addr))
    }

    #[inline(always)]
    fn lookup_learned(&self, addr: &[u8; 16]) -> Option<RuleRef> {
        // SAFETY: copied out at once; userspace writes an entry whole.
        unsafe { LEARNED.get(addr).copied() }
    }

    #[inline(always)]
    fn iface_direction(&self, ifindex: u32) -> Option<u32> {
        // SAFETY: a u32 copied out at once; userspace writes it whole.
        unsafe { IFACE_DIRECTION.get(&ifindex).copied() }
    }
}
