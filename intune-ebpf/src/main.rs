//! The intune-xdp classifier: parse the frame, look its address and port up in the Intune rules,
//! decide, count, answer.
#![no_std]
#![no_main]

// The panic handler, license and parse.
use intune_ebpf::parse;

mod capture;
mod count;
mod fast_path;
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
    maps::{Config, DIR_DST, NO_PORT, Trace, port_key},
    outcome::Outcome,
};

use crate::{
    fast_path::{Left, LeftSlot},
    lookup::{KeySlot, MapTables},
    maps::{INTUNE_CONFIG, TRACE},
};

// Inlined into the entry the macro writes: left to itself, LLVM makes the classifier a
// BPF-to-BPF call once it grows, which costs every frame.
#[xdp]
#[inline(always)]
pub fn intune_xdp(ctx: XdpContext) -> u32 {
    // Until userspace writes them, the settings are all off: monitor mode, which passes.
    let cfg = INTUNE_CONFIG.get();
    // The fast path's lookup keys in a slot of their own (see `MapTables::key`).
    let mut key = KeySlot::uninit();
    let mut left = LeftSlot::uninit();
    if let Some(verdict) = fast_path::listed(&ctx, cfg, &mut key, &mut left) {
        return verdict;
    }
    let mut pkt = MaybeUninit::<IpPacket>::uninit();
    let pkt = parse::zeroed(&mut pkt);
    let kind = match left.get() {
        Left::PlainIpv4 => parse::plain_packet(&ctx, false, pkt),
        Left::PlainIpv6 => parse::plain_packet(&ctx, true, pkt),
        Left::NotPlain => parse::frame(&ctx, pkt),
    };
    let tables = MapTables::new(cfg.flags);
    let dir = direction(cfg, || ctx.ingress_ifindex() as u32, &tables);
    let decision = decide(kind, pkt, cfg, dir, &tables);
    count(&ctx, pkt, dir, &decision);
    trace(cfg, &decision);
    log::record(kind, pkt, &decision);
    query::hand_over(&ctx, cfg, pkt, &decision);
    log::hand_over(&ctx);
    decision.verdict
}

/// Counts the frame under its decision; a frame no rule matched (dropped, or passed in
/// monitor mode) also under the port it was sent to.
#[inline(always)]
fn count(ctx: &XdpContext, pkt: &IpPacket, dir: u32, d: &Decision) {
    let bytes = count::frame_bytes(ctx);
    count::decision(bytes, d);
    if d.port_key == NO_PORT
        && pkt.has_ports
        && matches!(d.outcome, Outcome::Dropped | Outcome::UnmatchedPassed)
    {
        // Both read, then one chosen: left to itself LLVM picks between the two addresses
        // with an `or` on the stack pointer, which the verifier refuses.
        // SAFETY: reads of two fields of a live struct.
        let (dport, sport) = unsafe { (read_volatile(&pkt.dport), read_volatile(&pkt.sport)) };
        let port = if dir & DIR_DST != 0 { dport } else { sport };
        count::unmatched_port(bytes, port_key(pkt.l4, port));
    }
}

/// With tracing on (test runs), records the decision for the process that ran the frame.
#[inline(always)]
fn trace(cfg: &Config, d: &Decision) {
    if cfg.flags & Config::FLAG_TRACE == 0 {
        return;
    }
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
