//! The DNS capture: a TC egress program on the filtered interfaces hands every DNS response
//! leaving towards a device (UDP from port 53) to userspace through a ring buffer, which learns
//! the addresses of the endpoint names in it; answers for an endpoint name are first learned
//! from here (see `learn`), before they leave. The packet itself is never changed or held.

use aya_ebpf::{
    bindings::{BPF_RB_FORCE_WAKEUP, TC_ACT_OK},
    helpers::{bpf_ktime_get_ns, generated::bpf_skb_load_bytes},
    macros::classifier,
    programs::TcContext,
};
use intune_common::{
    classify::{FrameKind, IpPacket},
    learn::{DNS_CAPTURE_BYTES, DnsEvent},
    proto::{IPPROTO_UDP, PORT_DNS, UDP_HLEN},
};

use crate::{
    learn,
    maps::{DNS_EVENTS, DNS_LOST, DNS_SCRATCH, DNS_TAIL, INTUNE_CONFIG},
    parse::{self, SkbFrame},
};

/// A DNS message is at least its header.
const DNS_HEADER_LEN: usize = 12;
/// `DNS_TAIL`'s entry for [`intune_dns_answers`].
const ANSWERS_PROGRAM_INDEX: u32 = intune_common::learn::ANSWERS_PROGRAM_INDEX;

#[classifier]
pub fn intune_dns(ctx: TcContext) -> i32 {
    capture(&ctx);
    TC_ACT_OK
}

/// Reached only through the tail call of [`intune_dns`], for an answer from a trusted
/// resolver: an answer to a device's query, for an endpoint name, is learned from at once.
#[classifier]
pub fn intune_dns_answers(_ctx: TcContext) -> i32 {
    if let Some(ev) = DNS_SCRATCH.get_ptr_mut(0) {
        // SAFETY: the per-CPU record the capture just filled, ours for this run.
        let solicited = learn::solicited(unsafe { &*ev }) == Some(true);
        // SAFETY: as above; userspace learns only from answers marked so.
        unsafe { (*ev).solicited = solicited as u8 };
        let ev = unsafe { &*ev };
        if solicited {
            let _ = learn::answers(ev);
        }
        emit(ev);
    }
    TC_ACT_OK
}

/// Where a DNS response's message starts, and who sent it to whom.
struct Response {
    is_v6: bool,
    src: [u8; 16],
    dst: [u8; 16],
    /// Offset of the DNS message in the packet.
    payload: usize,
    /// The device's port.
    client_port: u16,
}

#[inline(always)]
fn capture(ctx: &TcContext) {
    let Some(r) = response(ctx) else {
        return;
    };
    let Some(ev) = DNS_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: `ev` is this CPU's scratch record, ours for this run.
    let Some(wire) = copy_message(ctx, r.payload, unsafe { &mut (*ev).data }) else {
        return;
    };
    // SAFETY: as above.
    unsafe {
        (*ev).ktime_ns = bpf_ktime_get_ns();
        (*ev).ifindex = (*ctx.skb.skb).ifindex;
        (*ev).len = wire.min(DNS_CAPTURE_BYTES) as u16;
        (*ev).wire_len = wire.min(u16::MAX as usize) as u16;
        (*ev).is_v6 = r.is_v6 as u8;
        (*ev).solicited = 0;
        (*ev).client_port = r.client_port;
        (*ev)._pad = [0; 4];
        (*ev).src = r.src;
        (*ev).dst = r.dst;
    }
    // SAFETY: as above, filled.
    let ev = unsafe { &*ev };
    if learn::matches(ev, INTUNE_CONFIG.get()) {
        // SAFETY: the tail call replaces this program; it returns only when it failed.
        let _ = unsafe { DNS_TAIL.tail_call(ctx, ANSWERS_PROGRAM_INDEX) };
    }
    emit(ev);
}

/// Copies the DNS message at `payload` into `data`, as much as fits, and says how long it is on
/// the wire; `None` for less than a DNS header or a failed copy.
#[inline(always)]
fn copy_message(
    ctx: &TcContext,
    payload: usize,
    data: &mut [u8; DNS_CAPTURE_BYTES],
) -> Option<usize> {
    let wire = (ctx.skb.len() as usize).checked_sub(payload)?;
    if wire < DNS_HEADER_LEN {
        return None;
    }
    // 5.10's verifier narrows only the register a comparison reads, not the copies LLVM made
    // of it earlier (5.11 follows them): the length is hidden from LLVM, then checked in the
    // register the helper gets. It is not kept past the call (the caller works it out again),
    // so LLVM has no reason to spill it before the check.
    let len = core::hint::black_box(wire.min(DNS_CAPTURE_BYTES));
    if len == 0 || len > DNS_CAPTURE_BYTES {
        return None;
    }
    // SAFETY: `data` holds `len` bytes, and `len` is at least 1.
    let rc = unsafe {
        bpf_skb_load_bytes(
            ctx.skb.skb as *const _,
            payload as u32,
            data.as_mut_ptr().cast(),
            len as u32,
        )
    };
    (rc == 0).then_some(wire)
}

/// Hands the record to userspace, waking the learner now rather than when the kernel sees fit:
/// the device's SYN is coming. A full ring drops the record, never the packet, and counts it.
#[inline(always)]
fn emit(ev: &DnsEvent) {
    if DNS_EVENTS
        .output::<DnsEvent>(ev, BPF_RB_FORCE_WAKEUP as u64)
        .is_err()
        && let Some(lost) = DNS_LOST.get_ptr_mut(0)
    {
        // SAFETY: this CPU's slot, written only here.
        unsafe { *lost += 1 };
    }
}

/// Headers the parser reads directly, pulled into the linear data when a driver left them in
/// pages: Ethernet, two VLAN tags, IPv6 with room for extension headers, UDP.
const HEADERS_PULLED: u32 = 192;

/// A UDP datagram from port 53, not a later fragment, as the filter's own parser reads it (two
/// VLAN tags, IPv6 extension headers, the same bounds checks).
#[inline(always)]
fn response(ctx: &TcContext) -> Option<Response> {
    let want = ctx.len().min(HEADERS_PULLED) as usize;
    if ctx.data() + want > ctx.data_end() {
        ctx.pull_data(want as u32).ok()?;
    }
    let mut pkt = IpPacket::empty();
    if parse::frame_of(&SkbFrame::of(ctx), &mut pkt) != FrameKind::Ip
        || pkt.l4 != IPPROTO_UDP
        || pkt.later_fragment
        || !pkt.has_ports
        || pkt.sport != PORT_DNS
    {
        return None;
    }
    Some(Response {
        is_v6: pkt.is_v6,
        src: pkt.src,
        dst: pkt.dst,
        payload: usize::from(pkt.l4_off) + UDP_HLEN,
        client_port: pkt.dport,
    })
}
