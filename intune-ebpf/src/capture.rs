//! The DNS capture: a TC egress program on the filtered interfaces hands every DNS response
//! leaving towards a device (UDP from port 53) to userspace through a ring buffer, which learns
//! the addresses of the endpoint names in it. The packet itself is never changed or held.

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

use crate::maps::DNS_EVENTS;

/// A DNS message is at least its header.
const DNS_HEADER_LEN: usize = 12;

#[classifier]
pub fn intune_dns(ctx: TcContext) -> i32 {
    capture(&ctx);
    TC_ACT_OK
}

/// Where a DNS response's message starts, and who sent it to whom.
struct Response {
    is_v6: bool,
    src: [u8; 16],
    dst: [u8; 16],
    /// Offset of the DNS message in the packet.
    payload: usize,
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
    // A full ring drops the record, never the packet.
    let Some(mut entry) = DNS_EVENTS.reserve::<DnsEvent>(0) else {
        return;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` is the reserved record, `len` is within its data and at least 1.
    let copied = unsafe {
        (*ev).ktime_ns = bpf_ktime_get_ns();
        (*ev).ifindex = (*ctx.skb.skb).ifindex;
        (*ev).len = len as u16;
        (*ev).wire_len = wire.min(u16::MAX as usize) as u16;
        (*ev).is_v6 = r.is_v6 as u8;
        (*ev)._pad = [0; 7];
        (*ev).src = r.src;
        (*ev).dst = r.dst;
        bpf_skb_load_bytes(
            ctx.skb.skb as *const _,
            r.payload as u32,
            (*ev).data.as_mut_ptr().cast(),
            len as u32,
        )
    };
    if copied == 0 {
        // Wake the learner now, not when the kernel sees fit: the device's SYN is coming.
        entry.submit(BPF_RB_FORCE_WAKEUP as u64);
    } else {
        entry.discard(0);
    }
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
    r.payload = off + UDP_HLEN;
    Some(r)
}
