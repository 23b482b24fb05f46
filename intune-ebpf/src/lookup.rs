//! The classifier's lookups, answered by the maps.

use core::{cell::UnsafeCell, ffi::c_void, mem::MaybeUninit};

use aya_ebpf::{
    helpers::{bpf_ktime_get_ns, bpf_map_lookup_elem},
    maps::{Array, lpm_trie::Key},
};
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
    flags: u32,
    /// Where the array lookups put their keys, when the caller gives a slot: the fast path's
    /// own, written whole. Left to LLVM, the fast path's keys and the whole way's share a
    /// slot; the verifier then finds each state the fast path gives up in different where the
    /// whole way reads, and walks the whole way again for each (the program took a quarter
    /// more instructions to verify). With their own slot, it walks it once.
    key: Option<*mut u64>,
}

/// A stack slot for [`MapTables`]' keys.
pub type KeySlot = MaybeUninit<u64>;

impl MapTables {
    #[inline(always)]
    pub fn new(flags: u32) -> MapTables {
        MapTables { flags, key: None }
    }

    /// As [`MapTables::new`], the array lookups' keys in `key`.
    #[inline(always)]
    pub fn with_key_slot(flags: u32, key: &mut KeySlot) -> MapTables {
        MapTables {
            flags,
            key: Some(key.as_mut_ptr()),
        }
    }

    /// Element `index` of `map`.
    #[inline(always)]
    fn element<V>(&self, map: &'static Array<V>, index: u32) -> Option<&'static V> {
        let Some(key) = self.key else {
            return map.get(index);
        };
        // SAFETY: the slot is ours for the call; the key is its first four bytes (the target
        // is little-endian), and the helper reads only them. The map is an array of `V`.
        unsafe {
            key.write_volatile(u64::from(index));
            let value = bpf_map_lookup_elem(
                core::ptr::from_ref(map).cast_mut().cast::<c_void>(),
                key.cast::<c_void>(),
            );
            value.cast::<V>().as_ref()
        }
    }
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
            |i| self.element(&V4_TBL16, i).copied(),
            |id, byte| self.element(&V4_CHUNKS, id).map(|c| c[usize::from(byte)]),
            |i| self.element(&V4_SINGLES, i),
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
            |i| self.element(&V6_TBL16, i).copied(),
            |id, byte| self.element(&V6_CHUNKS, id).map(|c| c[usize::from(byte)]),
            |i| self.element(&V6_SINGLES, i),
        )?;
        decode_leaf(entry)
    }

    #[inline(always)]
    fn port_set(&self, id: u32) -> Option<&PortSet> {
        self.element(&PORT_SETS, id)
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
