//! The intune-xdp classifier: parse the frame, look its address and port up in the Intune rules,
//! decide, count, answer.
#![no_std]
#![no_main]

// The panic handler, license and parse.
use intune_ebpf::parse;

mod capture;
mod learn;
mod log;
mod lookup;
mod maps;
mod query;
mod take;

use core::{mem::MaybeUninit, ptr::read_volatile};

use aya_ebpf::{macros::xdp, programs::XdpContext};
use intune_common::{
    classify::{Decision, IpPacket, decide, direction},
    maps::{Config, Counter, DIR_DST, NO_PORT, NO_RULE, OTHER_PORTS_SLOT, Trace, port_key},
    outcome::Outcome,
};

use crate::{
    lookup::MapTables,
    maps::{
        DROP_PORT_STATS, INTUNE_CONFIG, OUTCOME_STATS, PORT_SLOTS, PORT_STATS, RULE_STATS, TRACE,
    },
};

// Inlined into the entry the macro writes: left to itself, LLVM makes the classifier a
// BPF-to-BPF call once it grows, which costs every frame.
#[xdp]
#[inline(always)]
pub fn intune_xdp(ctx: XdpContext) -> u32 {
    // Until userspace writes them, the settings are all off: monitor mode, which passes.
    let cfg = INTUNE_CONFIG.get();
    let mut pkt = MaybeUninit::<IpPacket>::uninit();
    let pkt = parse::zeroed(&mut pkt);
    let kind = parse::frame(&ctx, pkt);
    let tables = MapTables { flags: cfg.flags };
    let dir = direction(cfg, || ctx.ingress_ifindex() as u32, &tables);
    let decision = decide(kind, pkt, cfg, dir, &tables);
    count(&ctx, pkt, dir, &decision);
    if cfg.flags & Config::FLAG_TRACE != 0 {
        trace(&decision);
    }
    log::record(kind, pkt, &decision);
    query::hand_over(&ctx, cfg, pkt, &decision);
    log::hand_over(&ctx);
    decision.verdict
}

/// Counts the frame under its outcome, its rule and the port it matched on; a frame no rule
/// matched (dropped, or passed in monitor mode) under the port it was sent to, which tells a
/// list that misses an address (drops on an Intune port) from noise.
#[inline(always)]
fn count(ctx: &XdpContext, pkt: &IpPacket, dir: u32, d: &Decision) {
    let bytes = (ctx.data_end() - ctx.data()) as u64;
    add(OUTCOME_STATS.get_ptr_mut(d.outcome as u32), bytes);
    if d.rule != NO_RULE {
        add(RULE_STATS.get_ptr_mut(d.rule), bytes);
    }
    let slot_of = |key: u32| PORT_SLOTS.get(key).copied().unwrap_or(OTHER_PORTS_SLOT);
    if d.port_key != NO_PORT {
        add(PORT_STATS.get_ptr_mut(slot_of(d.port_key)), bytes);
    } else if pkt.has_ports && matches!(d.outcome, Outcome::Dropped | Outcome::UnmatchedPassed) {
        // Both read, then one chosen: left to itself LLVM picks between the two addresses
        // with an `or` on the stack pointer, which the verifier refuses.
        // SAFETY: reads of two fields of a live struct.
        let (dport, sport) = unsafe { (read_volatile(&pkt.dport), read_volatile(&pkt.sport)) };
        let port = if dir & DIR_DST != 0 { dport } else { sport };
        add(
            DROP_PORT_STATS.get_ptr_mut(slot_of(port_key(pkt.l4, port))),
            bytes,
        );
    }
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

#[inline(always)]
fn trace(d: &Decision) {
    if let Some(t) = TRACE.get_ptr_mut(0) {
        // SAFETY: only test runs trace, one at a time, from the process that set the flag.
        unsafe {
            *t = Trace {
                seq: (*t).seq.wrapping_add(1),
                outcome: d.outcome as u32,
                verdict: d.verdict,
                rule: d.rule,
                port_key: d.port_key,
            };
        }
    }
}
