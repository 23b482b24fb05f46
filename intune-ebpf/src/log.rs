//! The decision log (aya-log, debug level only), in a program of its own reached by a tail
//! call: the verifier checks it once, not once for every state the classifier can end in,
//! which on 6.1 and older ran past its limit ("argument list too long"). The classifier
//! leaves the frame's summary and decision in a per-CPU record; this program logs it and
//! answers the classifier's verdict.

use aya_ebpf::{macros::xdp, programs::XdpContext};
use aya_log_ebpf::{
    debug,
    macro_support::{Level, level_enabled},
};
use intune_common::{
    classify::{Decision, FrameKind, IpPacket},
    maps::{LOG_PROGRAM_INDEX, NO_RULE},
    outcome::XDP_PASS,
};

use crate::maps::{LOG_SCRATCH, XDP_TAIL};

/// What the classifier hands the log program.
pub struct LogRecord {
    /// 1 when the frame was IP and `pkt` holds it.
    is_ip: u32,
    outcome: u32,
    verdict: u32,
    rule: u32,
    pkt: IpPacket,
}

/// With the debug level on (fixed at load, so otherwise this is dead code to the verifier),
/// leaves the decision for the log program.
#[inline(always)]
pub fn record(kind: FrameKind, pkt: &IpPacket, d: &Decision) {
    if !level_enabled(Level::Debug) {
        return;
    }
    let Some(rec) = LOG_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's record, ours until this run ends.
    unsafe {
        (*rec).is_ip = (kind == FrameKind::Ip) as u32;
        (*rec).outcome = d.outcome as u32;
        (*rec).verdict = d.verdict;
        (*rec).rule = d.rule;
        (*rec).pkt = *pkt;
    }
}

/// With the debug level on, hands the recorded decision to the log program, which answers
/// for the caller. Returns only when the log is off or its program is not installed.
#[inline(always)]
pub fn hand_over(ctx: &XdpContext) {
    if !level_enabled(Level::Debug) {
        return;
    }
    // SAFETY: the tail call replaces this program; it returns only when it failed.
    let _ = unsafe { XDP_TAIL.tail_call(ctx, LOG_PROGRAM_INDEX) };
}

#[xdp]
pub fn intune_xdp_log(ctx: XdpContext) -> u32 {
    let Some(rec) = LOG_SCRATCH.get_ptr(0) else {
        return XDP_PASS;
    };
    // SAFETY: the record the classifier filled on this CPU just before the tail call.
    let rec = unsafe { &*rec };
    log(&ctx, rec);
    rec.verdict
}

/// Numbers only: a name's length would differ from path to path and, with aya-log sizing
/// each record, multiply what the verifier walks (614k instructions on 6.18 with names, past
/// older kernels' limit). The daemon names them (`datapath::kernel_log::render`).
#[inline(always)]
fn log(ctx: &XdpContext, rec: &LogRecord) {
    // -1: no rule.
    let rule = if rec.rule == NO_RULE {
        -1
    } else {
        i64::from(rec.rule)
    };
    let pkt = &rec.pkt;
    if rec.is_ip == 0 {
        debug!(ctx, "{} {}", rec.verdict, rec.outcome);
    } else if pkt.is_v6 {
        debug!(
            ctx,
            "{} {} {} {} [{:i}]:{} -> [{:i}]:{}",
            rec.verdict,
            rec.outcome,
            rule,
            pkt.l4,
            pkt.src,
            pkt.sport,
            pkt.dst,
            pkt.dport
        );
    } else {
        let v4 = |a: &[u8; 16]| [a[0], a[1], a[2], a[3]];
        debug!(
            ctx,
            "{} {} {} {} {:i}:{} -> {:i}:{}",
            rec.verdict,
            rec.outcome,
            rule,
            pkt.l4,
            v4(&pkt.src),
            pkt.sport,
            v4(&pkt.dst),
            pkt.dport
        );
    }
}
