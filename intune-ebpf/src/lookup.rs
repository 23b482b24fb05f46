//! The classifier's lookups, answered by the maps.

use aya_ebpf::maps::lpm_trie::Key;
use intune_common::{
    classify::Tables,
    maps::{PortSet, RuleRef},
};

use crate::maps::{DNS_RESOLVERS, IFACE_DIRECTION, LPM_V4, LPM_V6, PORT_SETS};

pub struct MapTables;

impl Tables for MapTables {
    #[inline(always)]
    fn lookup_v4(&self, addr: &[u8; 4]) -> Option<RuleRef> {
        LPM_V4.get(Key::new(32, *addr)).copied()
    }

    #[inline(always)]
    fn lookup_v6(&self, addr: &[u8; 16]) -> Option<RuleRef> {
        LPM_V6.get(Key::new(128, *addr)).copied()
    }

    #[inline(always)]
    fn port_set(&self, id: u32) -> Option<&PortSet> {
        PORT_SETS.get(id)
    }

    #[inline(always)]
    fn is_dns_resolver(&self, addr: &[u8; 16]) -> bool {
        // SAFETY: the value is copied out at once; userspace replaces entries, never frees them
        // under us in a way the copy could observe torn.
        unsafe { DNS_RESOLVERS.get(addr).is_some() }
    }

    #[inline(always)]
    fn iface_direction(&self, ifindex: u32) -> Option<u32> {
        // SAFETY: as above.
        unsafe { IFACE_DIRECTION.get(&ifindex).copied() }
    }
}
