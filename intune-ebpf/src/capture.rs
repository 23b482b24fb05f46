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
    learn::{DNS_CAPTURE_BYTES, DnsEvent},
    proto::{
        ETH_HLEN, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, IPPROTO_UDP,
        IPV4_FRAG_OFFSET_MASK, IPV4_MIN_HLEN, IPV6_HLEN, PORT_DNS, UDP_HLEN, VLAN_HLEN,
    },
};

use crate::{
    learn,
    maps::{CONFIG, DNS_EVENTS, DNS_SCRATCH, DNS_TAIL},
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
    let Some(wire) = (ctx.skb.len() as usize).checked_sub(r.payload) else {
        return;
    };
    if wire < DNS_HEADER_LEN {
        return;
    }
    let len = if wire > DNS_CAPTURE_BYTES {
        DNS_CAPTURE_BYTES
    } else {
        wire
    };
    let Some(ev) = DNS_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: `ev` is this CPU's scratch record; `len` is within its data and at least 1.
    let copied = unsafe {
        (*ev).ktime_ns = bpf_ktime_get_ns();
        (*ev).ifindex = (*ctx.skb.skb).ifindex;
        (*ev).len = len as u16;
        (*ev).wire_len = wire.min(u16::MAX as usize) as u16;
        (*ev).is_v6 = r.is_v6 as u8;
        (*ev).solicited = 0;
        (*ev).client_port = r.client_port;
        (*ev)._pad = [0; 4];
        (*ev).src = r.src;
        (*ev).dst = r.dst;
        bpf_skb_load_bytes(
            ctx.skb.skb as *const _,
            r.payload as u32,
            (*ev).data.as_mut_ptr().cast(),
            len as u32,
        )
    };
    if copied != 0 {
        return;
    }
    // SAFETY: as above, filled.
    let ev = unsafe { &*ev };
    if let Some(cfg) = CONFIG.get(0)
        && learn::matches(ev, cfg)
    {
        // SAFETY: the tail call replaces this program; it returns only when it failed.
        let _ = unsafe { DNS_TAIL.tail_call(ctx, ANSWERS_PROGRAM_INDEX) };
    }
    emit(ev);
}

/// Hands the record to userspace, waking the learner now rather than when the kernel sees fit:
/// the device's SYN is coming. A full ring drops the record, never the packet.
#[inline(always)]
fn emit(ev: &DnsEvent) {
    let _ = DNS_EVENTS.output::<DnsEvent>(ev, BPF_RB_FORCE_WAKEUP as u64);
}

/// A UDP datagram from port 53 (Ethernet, one VLAN tag at most, IPv4 or IPv6 without extension
/// headers; not a later fragment).
#[inline(always)]
fn response(ctx: &TcContext) -> Option<Response> {
    let be16 = |off: usize| ctx.load::<u16>(off).ok().map(u16::from_be);
    let mut off = ETH_HLEN;
    let mut proto = be16(12)?;
    if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
        proto = be16(16)?;
        off += VLAN_HLEN;
    }
    let mut r = Response {
        is_v6: false,
        src: [0; 16],
        dst: [0; 16],
        payload: 0,
        client_port: 0,
    };
    match proto {
        ETH_P_IP => {
            let ihl = usize::from(ctx.load::<u8>(off).ok()? & 0x0f) * 4;
            if ihl < IPV4_MIN_HLEN
                || be16(off + 6)? & IPV4_FRAG_OFFSET_MASK != 0
                || ctx.load::<u8>(off + 9).ok()? != IPPROTO_UDP
            {
                return None;
            }
            let src: [u8; 4] = ctx.load(off + 12).ok()?;
            let dst: [u8; 4] = ctx.load(off + 16).ok()?;
            r.src[..4].copy_from_slice(&src);
            r.dst[..4].copy_from_slice(&dst);
            off += ihl;
        }
        ETH_P_IPV6 => {
            if ctx.load::<u8>(off + 6).ok()? != IPPROTO_UDP {
                return None;
            }
            r.is_v6 = true;
            r.src = ctx.load(off + 8).ok()?;
            r.dst = ctx.load(off + 24).ok()?;
            off += IPV6_HLEN;
        }
        _ => return None,
    }
    if be16(off)? != PORT_DNS {
        return None;
    }
    r.client_port = be16(off + 2)?;
    r.payload = off + UDP_HLEN;
    Some(r)
}
