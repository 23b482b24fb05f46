//! The hit counters: per CPU, packets and bytes.

use aya_ebpf::programs::XdpContext;
use intune_common::{
    classify::Decision,
    maps::{Counter, NO_PORT, NO_RULE, OTHER_PORTS_SLOT},
};

use crate::maps::{DROP_PORT_STATS, OUTCOME_STATS, PORT_SLOTS, PORT_STATS, RULE_STATS};

/// The frame's length, which the byte counters add.
#[inline(always)]
pub fn frame_bytes(ctx: &XdpContext) -> u64 {
    (ctx.data_end() - ctx.data()) as u64
}

/// Counts a frame under its outcome, its rule and the port the rule matched on.
#[inline(always)]
pub fn decision(bytes: u64, d: &Decision) {
    add(OUTCOME_STATS.get_ptr_mut(d.outcome as u32), bytes);
    if d.rule != NO_RULE {
        add(RULE_STATS.get_ptr_mut(d.rule), bytes);
    }
    if d.port_key != NO_PORT {
        add(PORT_STATS.get_ptr_mut(slot_of(d.port_key)), bytes);
    }
}

/// Counts a frame no rule matched under the port it was sent to (its key), which tells a list
/// that misses an address (drops on an Intune port) from noise.
#[inline(always)]
pub fn unmatched_port(bytes: u64, port_key: u32) {
    add(DROP_PORT_STATS.get_ptr_mut(slot_of(port_key)), bytes);
}

#[inline(always)]
fn slot_of(port_key: u32) -> u32 {
    PORT_SLOTS
        .get(port_key)
        .copied()
        .unwrap_or(OTHER_PORTS_SLOT)
}

#[inline(always)]
fn add(counter: Option<*mut Counter>, bytes: u64) {
    if let Some(c) = counter {
        // SAFETY: a per-CPU slot, written only by this CPU.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += bytes;
        }
    }
}
