//! Taking rules' counters: userspace runs this program once on each CPU (a test run pinned to
//! it) after listing the rules in `TAKE_INDICES`; each run adds that CPU's counters of them to
//! `TAKE_SUMS` and zeroes them. Never attached. Through syscalls, reading a per-CPU entry takes
//! a call an entry: for an update's thousand removed rules, a quarter of its time in the maps.

use aya_ebpf::{macros::raw_tracepoint, programs::RawTracePointContext};
use intune_common::maps::{Counter, MAX_TAKE};

use crate::maps::{RULE_STATS, TAKE_INDICES, TAKE_SUMS};

/// Argument 0: how many of `TAKE_INDICES` to take.
#[raw_tracepoint]
pub fn intune_take_counters(ctx: RawTracePointContext) -> i32 {
    let count: u64 = ctx.arg(0);
    for i in 0..MAX_TAKE {
        if u64::from(i) >= count {
            break;
        }
        let (Some(&index), Some(sum)) = (TAKE_INDICES.get(i), TAKE_SUMS.get_ptr_mut(i)) else {
            return 1;
        };
        let Some(c) = RULE_STATS.get_ptr_mut(index) else {
            continue;
        };
        // SAFETY: this CPU's counter, and a sum only test runs write, one at a time.
        unsafe {
            (*sum).packets += (*c).packets;
            (*sum).bytes += (*c).bytes;
            *c = Counter::default();
        }
    }
    0
}
