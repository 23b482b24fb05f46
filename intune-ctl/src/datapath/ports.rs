//! Counting Intune hits by port: each port the rule set names gets a slot in the per-CPU
//! `PORT_STATS` (through `PORT_SLOTS`); ports beyond the slots count together in slot 0. A port
//! keeps its slot while the rule set names it, so its count carries on through updates, and
//! through restarts, since `PORT_SLOT_KEYS` records the slots in a pinned map.

use std::collections::{BTreeMap, BTreeSet};

use aya::maps::Array;
use intune_common::{
    maps::{
        DROP_PORT_STATS, MAX_PORT_SLOTS, OTHER_PORTS_SLOT, PORT_SLOT_KEYS, PORT_SLOTS, PORT_STATS,
        port_key,
    },
    proto::{IPPROTO_TCP, IPPROTO_UDP},
};

use super::{Datapath, DatapathError, sync::map_err};
use crate::sources::endpoints::ports::Ports;

/// Which port each slot counts, as userspace keeps it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortSlots {
    by_key: BTreeMap<u32, u32>,
}

/// What moving the slots to a new rule set's ports takes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SlotChanges {
    /// (slot, port key) no longer named by the rule set.
    pub freed: Vec<(u32, u32)>,
    /// (slot, port key) newly given a slot.
    pub assigned: Vec<(u32, u32)>,
    /// Ports named but left without a slot (they count in slot 0).
    pub unslotted: usize,
}

impl PortSlots {
    /// From `PORT_SLOT_KEYS` entries: (slot, port key + 1, or 0 for a free slot).
    pub fn from_records(records: impl IntoIterator<Item = (u32, u32)>) -> PortSlots {
        let by_key = records
            .into_iter()
            .filter(|&(slot, record)| slot != OTHER_PORTS_SLOT && record != 0)
            .map(|(slot, record)| (record - 1, slot))
            .collect();
        PortSlots { by_key }
    }

    /// The slots for `ports`: kept where a port keeps its slot, freed where the port left,
    /// handed out while slots last.
    pub fn plan(&self, ports: Ports) -> SlotChanges {
        let mut changes = SlotChanges::default();
        let mut free: BTreeSet<u32> = (1..MAX_PORT_SLOTS).collect();
        for (&key, &slot) in &self.by_key {
            if admits(ports, key) {
                free.remove(&slot);
            } else {
                changes.freed.push((slot, key));
            }
        }
        let mut free = free.into_iter();
        for key in keys(ports).filter(|k| !self.by_key.contains_key(k)) {
            match free.next() {
                Some(slot) => changes.assigned.push((slot, key)),
                None => changes.unslotted += 1,
            }
        }
        changes
    }

    pub fn apply(&mut self, changes: &SlotChanges) {
        for (_, key) in &changes.freed {
            self.by_key.remove(key);
        }
        for &(slot, key) in &changes.assigned {
            self.by_key.insert(key, slot);
        }
    }

    /// (port key, slot), by port.
    pub fn slots(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.by_key.iter().map(|(k, s)| (*k, *s))
    }
}

fn admits(ports: Ports, key: u32) -> bool {
    let (l4, port) = intune_common::maps::key_port(key);
    ports.admits(l4, port)
}

/// Every port key of `ports`: single ports and short ranges first, so that a wide range cannot
/// take the slots of the ports named one by one.
fn keys(ports: Ports) -> impl Iterator<Item = u32> {
    let mut ranges: Vec<(u16, u8, u16, u16)> =
        [(IPPROTO_TCP, &ports.tcp), (IPPROTO_UDP, &ports.udp)]
            .into_iter()
            .flat_map(|(l4, r)| {
                r.ranges()
                    .iter()
                    .map(move |&(lo, hi)| (hi - lo, l4, lo, hi))
            })
            .collect();
    ranges.sort_unstable();
    ranges
        .into_iter()
        .flat_map(|(_, l4, lo, hi)| (lo..=hi).map(move |p| port_key(l4, p)))
}

impl Datapath {
    /// Gives the ports of `ports` their counter slots before any rule names them. The first
    /// call reads the slots a previous daemon left in the pinned maps.
    pub(super) fn update_port_slots(&mut self, ports: Ports) -> Result<(), DatapathError> {
        let slots = match self.port_slots.take() {
            Some(slots) => slots,
            None => PortSlots::from_records(self.port_slot_records()?),
        };
        let changes = slots.plan(ports);
        let result = self.write_port_slots(&changes);
        let mut slots = slots;
        if result.is_ok() {
            slots.apply(&changes);
            if changes.unslotted > 0 && !changes.assigned.is_empty() {
                tracing::warn!(
                    ports = changes.unslotted,
                    slots = MAX_PORT_SLOTS - 1,
                    "more ports than port counters; the rest count together as other ports"
                );
            }
            self.port_slots = Some(slots);
        }
        // On failure the mirror is dropped: the next update reads the maps again.
        result
    }

    fn write_port_slots(&mut self, changes: &SlotChanges) -> Result<(), DatapathError> {
        // A port leaves its slot before the slot forgets it, so a slot in use is always named.
        for &(slot, key) in &changes.freed {
            self.u32_array(PORT_SLOTS)?
                .set(key, 0, 0)
                .map_err(map_err(PORT_SLOTS))?;
            self.u32_array(PORT_SLOT_KEYS)?
                .set(slot, 0, 0)
                .map_err(map_err(PORT_SLOT_KEYS))?;
        }
        // Named and zeroed before a port points at it.
        for &(slot, key) in &changes.assigned {
            self.u32_array(PORT_SLOT_KEYS)?
                .set(slot, key + 1, 0)
                .map_err(map_err(PORT_SLOT_KEYS))?;
        }
        for stats in [PORT_STATS, DROP_PORT_STATS] {
            self.zero_counters(stats, changes.assigned.iter().map(|&(slot, _)| slot))?;
        }
        for &(slot, key) in &changes.assigned {
            self.u32_array(PORT_SLOTS)?
                .set(key, slot, 0)
                .map_err(map_err(PORT_SLOTS))?;
        }
        Ok(())
    }

    fn u32_array(
        &mut self,
        name: &'static str,
    ) -> Result<Array<&mut aya::maps::MapData, u32>, DatapathError> {
        Array::try_from(self.map_mut(name)?).map_err(map_err(name))
    }

    fn port_slot_records(&self) -> Result<Vec<(u32, u32)>, DatapathError> {
        let map = self
            .ebpf
            .map(PORT_SLOT_KEYS)
            .ok_or(DatapathError::Missing(PORT_SLOT_KEYS))?;
        slot_records(map)
    }
}

/// `PORT_SLOT_KEYS` as (slot, record) pairs.
pub(super) fn slot_records(map: &aya::maps::Map) -> Result<Vec<(u32, u32)>, DatapathError> {
    let array = Array::<_, u32>::try_from(map).map_err(map_err(PORT_SLOT_KEYS))?;
    (0..MAX_PORT_SLOTS)
        .map(|slot| Ok((slot, array.get(&slot, 0).map_err(map_err(PORT_SLOT_KEYS))?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::endpoints::ports::PortRanges;

    fn ports(tcp: &str, udp: &str) -> Ports {
        Ports::new(
            PortRanges::parse(tcp).unwrap(),
            PortRanges::parse(udp).unwrap(),
        )
        .unwrap()
    }

    fn planned(slots: &mut PortSlots, p: Ports) -> SlotChanges {
        let changes = slots.plan(p);
        slots.apply(&changes);
        changes
    }

    #[test]
    fn ports_keep_their_slots_and_leaving_ports_free_theirs() {
        let mut slots = PortSlots::default();
        let first = planned(&mut slots, ports("80,443", "123"));
        assert_eq!(
            first.assigned,
            vec![(1, 80), (2, 443), (3, port_key(IPPROTO_UDP, 123))]
        );
        let second = planned(&mut slots, ports("443,5223", "123"));
        assert_eq!(second.freed, vec![(1, 80)]);
        assert_eq!(second.assigned, vec![(1, 5223)], "the freed slot is reused");
        let kept: Vec<(u32, u32)> = slots.slots().collect();
        assert_eq!(
            kept,
            vec![(443, 2), (5223, 1), (port_key(IPPROTO_UDP, 123), 3)]
        );
        assert_eq!(slots.plan(ports("443,5223", "123")), SlotChanges::default());
    }

    #[test]
    fn slots_survive_through_their_records() {
        let mut slots = PortSlots::default();
        planned(&mut slots, ports("80,443", "3544"));
        let records: Vec<(u32, u32)> = (0..MAX_PORT_SLOTS)
            .map(|s| {
                let record = slots
                    .slots()
                    .find(|&(_, slot)| slot == s)
                    .map_or(0, |(k, _)| k + 1);
                (s, record)
            })
            .collect();
        assert_eq!(PortSlots::from_records(records), slots);
    }

    #[test]
    fn ports_beyond_the_slots_are_counted_as_other_but_single_ports_come_first() {
        let changes = PortSlots::default().plan(ports("1-2000,5223", "123"));
        assert_eq!(changes.assigned.len(), MAX_PORT_SLOTS as usize - 1);
        assert_eq!(changes.unslotted, 2002 - (MAX_PORT_SLOTS as usize - 1));
        assert_eq!(
            changes.assigned[..3],
            [(1, 5223), (2, port_key(IPPROTO_UDP, 123)), (3, 1)]
        );
    }
}
