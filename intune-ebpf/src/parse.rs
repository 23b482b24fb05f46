//! One function per header layer, each checking every byte it reads against the end of the
//! frame. Produces the same `Parsed` as `intune_common::classify::parse_frame`. Used by every
//! program: the XDP filter on its frame, the DNS capture on a socket buffer's linear data.

use core::mem::MaybeUninit;

use aya_ebpf::programs::{TcContext, XdpContext};
use intune_common::{
    classify::{FrameKind, IpPacket},
    proto::{
        ETH_HLEN, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, ICMP_ERROR_HLEN, ICMP_MIN_HLEN,
        IPPROTO_AH, IPPROTO_FRAGMENT, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP,
        IPV4_FRAG_OFFSET_MASK, IPV4_MIN_HLEN, IPV6_FRAG_OFFSET_MASK, IPV6_HLEN,
        MAX_IPV6_EXT_HEADERS, MAX_VLAN_TAGS, QUOTED_PORTS_LEN, TCP_MIN_HLEN, UDP_HLEN, VLAN_HLEN,
        is_icmpv4_error, is_icmpv6_error, is_ipv6_ext_header,
    },
};

use crate::opaque::opaque;

/// A bounds-checked view of `N` bytes at `pos`; `None` when the frame ends earlier.
#[inline(always)]
pub fn bytes<const N: usize>(pos: usize, end: usize) -> Option<&'static [u8; N]> {
    // The verifier only trusts comparisons against the frame's end. Hide `end` from LLVM so it
    // cannot drop this check as implied by an earlier one against an IP length.
    if pos + N > opaque(end) {
        return None;
    }
    // SAFETY: the verifier-checked range [pos, pos + N) lies inside the frame.
    Some(unsafe { &*(pos as *const [u8; N]) })
}

/// `N` (2, 4 or 8) bytes of the frame at `p + OFF`, as they lie, in one load. LLVM reads
/// memory it cannot prove aligned a byte at a time (its BPF target has no unaligned loads), and
/// fields in a frame are 2-aligned at best; the verifier allows unaligned reads of packet data
/// where the CPU does (x86-64, arm64: what a gateway runs), so the load is written out, with
/// the field's offset in the instruction.
#[inline(always)]
fn load<const N: usize, const OFF: usize>(p: *const u8) -> [u8; N] {
    const { assert!(N == 2 || N == 4 || N == 8) };
    #[cfg(target_arch = "bpf")]
    {
        let v: u64;
        // SAFETY: the caller's bounds check covers the N bytes at `p + OFF`; the load reads
        // only them, writes nothing and touches no stack.
        unsafe {
            match N {
                8 => {
                    core::arch::asm!("{0} = *(u64 *)({1} + {off})", lateout(reg) v, in(reg) p, off = const OFF, options(readonly, nostack, preserves_flags))
                }
                4 => {
                    core::arch::asm!("{0} = *(u32 *)({1} + {off})", lateout(reg) v, in(reg) p, off = const OFF, options(readonly, nostack, preserves_flags))
                }
                _ => {
                    core::arch::asm!("{0} = *(u16 *)({1} + {off})", lateout(reg) v, in(reg) p, off = const OFF, options(readonly, nostack, preserves_flags))
                }
            }
        }
        let bytes = v.to_ne_bytes();
        core::array::from_fn(|i| bytes[i])
    }
    #[cfg(not(target_arch = "bpf"))]
    {
        // SAFETY: as above; any alignment.
        unsafe { core::ptr::read_unaligned(p.add(OFF).cast::<[u8; N]>()) }
    }
}

/// The `N` bytes at byte `OFF` of the checked header `h`, in one load.
#[inline(always)]
fn bytes_at<const N: usize, const OFF: usize, const LEN: usize>(h: &[u8; LEN]) -> [u8; N] {
    const { assert!(OFF + N <= LEN) };
    load::<N, OFF>(h.as_ptr())
}

/// The big-endian 16-bit field at byte `OFF` of the checked header `h`, in one load.
#[inline(always)]
pub fn field16<const OFF: usize, const LEN: usize>(h: &[u8; LEN]) -> u16 {
    u16::from_be_bytes(bytes_at::<2, OFF, LEN>(h))
}

/// Copies the 16-byte address at byte `AT` of the checked header `h` (`NEXT` = `AT` + 8)
/// into `to`.
#[inline(always)]
fn copy_v6<const AT: usize, const NEXT: usize, const LEN: usize>(to: &mut [u8; 16], h: &[u8; LEN]) {
    const { assert!(NEXT == AT + 8) };
    to[..8].copy_from_slice(&bytes_at::<8, AT, LEN>(h));
    to[8..].copy_from_slice(&bytes_at::<8, NEXT, LEN>(h));
}

/// A big-endian length that is added to a packet pointer. Verifiers before 6.x know nothing of
/// a byte swap's result ("unbounded min value"); a mask after it bounds it to 65,535. LLVM
/// would drop the mask as redundant, so it is written out.
#[inline(always)]
fn len16(field: u16) -> usize {
    let len = usize::from(field);
    #[cfg(target_arch = "bpf")]
    let len = {
        let mut len = len;
        // SAFETY: a mask of a register: it touches nothing else.
        unsafe { core::arch::asm!("{0} &= 0xffff", inout(reg) len, options(pure, nomem, nostack)) };
        len
    };
    len
}

/// Where a frame's bytes may be read (up to `end`, checked before every read), and whether
/// its packet holds what an IP length says: an XDP frame is all readable; a socket buffer's
/// readable (linear) part may end before its packet does.
pub trait Frame {
    fn start(&self) -> usize;
    fn end(&self) -> usize;
    /// Whether the packet goes on for `len` bytes from `pos`.
    fn holds(&self, pos: usize, len: usize) -> bool;
}

/// An XDP frame: its packet ends where its data does.
pub struct XdpFrame {
    start: usize,
    end: usize,
}

impl XdpFrame {
    #[inline(always)]
    pub fn of(ctx: &XdpContext) -> XdpFrame {
        XdpFrame {
            start: ctx.data(),
            end: ctx.data_end(),
        }
    }
}

impl Frame for XdpFrame {
    #[inline(always)]
    fn start(&self) -> usize {
        self.start
    }

    #[inline(always)]
    fn end(&self) -> usize {
        self.end
    }

    #[inline(always)]
    fn holds(&self, pos: usize, len: usize) -> bool {
        pos + len <= self.end
    }
}

/// A socket buffer: its linear data, read directly, and its length, which may be longer (the
/// rest in pages). Compared as offsets: the verifier allows no arithmetic on the data's end.
pub struct SkbFrame {
    start: usize,
    end: usize,
    len: usize,
}

impl SkbFrame {
    #[inline(always)]
    pub fn of(ctx: &TcContext) -> SkbFrame {
        SkbFrame {
            start: ctx.data(),
            end: ctx.data_end(),
            len: ctx.len() as usize,
        }
    }
}

impl Frame for SkbFrame {
    #[inline(always)]
    fn start(&self) -> usize {
        self.start
    }

    #[inline(always)]
    fn end(&self) -> usize {
        self.end
    }

    #[inline(always)]
    fn holds(&self, pos: usize, len: usize) -> bool {
        pos - self.start + len <= self.len
    }
}

/// Zeroes the packet summary with word stores: LLVM would otherwise call a byte-at-a-time
/// memset, a BPF-to-BPF call that costs more than the rest of the parse.
#[inline(always)]
pub fn zeroed(pkt: &mut MaybeUninit<IpPacket>) -> &mut IpPacket {
    const WORDS: usize = size_of::<IpPacket>() / 8;
    let words = pkt.as_mut_ptr().cast::<u64>();
    for i in 0..WORDS {
        // SAFETY: in bounds of the struct, which is 8-aligned and a multiple of 8 long.
        unsafe { words.add(i).write_volatile(0) };
    }
    // SAFETY: all-zero bytes are a valid IpPacket (integers and bools only).
    unsafe { pkt.assume_init_mut() }
}

/// Parses the XDP frame into `pkt` (filled when the answer is [`FrameKind::Ip`]).
#[inline(always)]
pub fn frame(ctx: &XdpContext, pkt: &mut IpPacket) -> FrameKind {
    frame_of(&XdpFrame::of(ctx), pkt)
}

/// Parses `f` into `pkt` (filled when the answer is [`FrameKind::Ip`]).
#[inline(always)]
pub fn frame_of<F: Frame>(f: &F, pkt: &mut IpPacket) -> FrameKind {
    let (start, end) = (f.start(), f.end());
    let Some((proto, pos)) = ethernet(start, end) else {
        return FrameKind::Malformed;
    };
    let ok = match proto {
        ETH_P_IP => ipv4(f, pos, pkt),
        ETH_P_IPV6 => ipv6(f, pos, pkt),
        _ => return FrameKind::NotIp,
    };
    match ok {
        Some(()) => FrameKind::Ip,
        None => FrameKind::Malformed,
    }
}

/// What the fast path reads of a plain frame (see [`plain_ipv4`], [`plain_ipv6`]).
pub struct Plain {
    /// The destination as its bytes lie (an IPv4 one in the first four, as [`IpPacket`]
    /// holds it).
    pub dst: [u8; 16],
    pub l4: u8,
    pub dport: u16,
}

/// The longest plain IPv4 frame's headers: Ethernet, IPv4 without options, TCP without
/// options.
const PLAIN4_HLEN: usize = ETH_HLEN + IPV4_MIN_HLEN + TCP_MIN_HLEN;
/// As [`PLAIN4_HLEN`], for IPv6 without extension headers.
const PLAIN6_HLEN: usize = ETH_HLEN + IPV6_HLEN + TCP_MIN_HLEN;
const PLAIN_IP: usize = ETH_HLEN;
const PLAIN4_L4: usize = ETH_HLEN + IPV4_MIN_HLEN;
const PLAIN6_L4: usize = ETH_HLEN + IPV6_HLEN;

/// The commonest frame, read at fixed offsets: IPv4 straight after Ethernet (no VLAN tag), a
/// 20-byte header, not a later fragment, TCP or UDP whole inside the IP packet, and at least
/// the 54 bytes a TCP frame has (Ethernet pads any frame to 60). `None` for anything else,
/// which [`frame`] parses; on what it accepts, [`frame`] reads the same destination, protocol
/// and port, and finds the frame well formed.
#[inline(always)]
pub fn plain_ipv4(ctx: &XdpContext) -> Option<Plain> {
    let (start, end) = (ctx.data(), ctx.data_end());
    let h = bytes::<PLAIN4_HLEN>(start, end)?;
    // Version 4, header length 5 words.
    if field16::<12, PLAIN4_HLEN>(h) != ETH_P_IP || h[PLAIN_IP] != 0x45 {
        return None;
    }
    let total = len16(field16::<{ PLAIN_IP + 2 }, PLAIN4_HLEN>(h));
    if start + PLAIN_IP + total > end
        || field16::<{ PLAIN_IP + 6 }, PLAIN4_HLEN>(h) & IPV4_FRAG_OFFSET_MASK != 0
    {
        return None;
    }
    let l4 = h[PLAIN_IP + 9];
    if total < IPV4_MIN_HLEN + plain_l4_len::<PLAIN4_L4, PLAIN4_HLEN>(l4, h)? {
        return None;
    }
    let mut dst = [0u8; 16];
    dst[..4].copy_from_slice(&bytes_at::<4, { PLAIN_IP + 16 }, PLAIN4_HLEN>(h));
    Some(Plain {
        dst,
        l4,
        dport: field16::<{ PLAIN4_L4 + 2 }, PLAIN4_HLEN>(h),
    })
}

/// As [`plain_ipv4`], for IPv6: no VLAN tag, no extension header, TCP or UDP whole inside
/// the payload, and at least the 74 bytes a TCP frame has (a shorter UDP frame goes the whole
/// way).
#[inline(always)]
pub fn plain_ipv6(ctx: &XdpContext) -> Option<Plain> {
    let (start, end) = (ctx.data(), ctx.data_end());
    let h = bytes::<PLAIN6_HLEN>(start, end)?;
    if field16::<12, PLAIN6_HLEN>(h) != ETH_P_IPV6 || h[PLAIN_IP] >> 4 != 6 {
        return None;
    }
    let payload = len16(field16::<{ PLAIN_IP + 4 }, PLAIN6_HLEN>(h));
    if start + PLAIN6_L4 + payload > end {
        return None;
    }
    let l4 = h[PLAIN_IP + 6];
    if payload < plain_l4_len::<PLAIN6_L4, PLAIN6_HLEN>(l4, h)? {
        return None;
    }
    let mut dst = [0u8; 16];
    copy_v6::<{ PLAIN_IP + 24 }, { PLAIN_IP + 32 }, PLAIN6_HLEN>(&mut dst, h);
    Some(Plain {
        dst,
        l4,
        dport: field16::<{ PLAIN6_L4 + 2 }, PLAIN6_HLEN>(h),
    })
}

/// Fills `pkt` as [`frame`] would from a frame [`plain_ipv4`] (or, when `v6`, [`plain_ipv6`])
/// accepted, at the same fixed offsets: a plain frame the fast path did not answer goes the
/// rest of the whole way without a second full parse.
#[inline(always)]
pub fn plain_packet(ctx: &XdpContext, v6: bool, pkt: &mut IpPacket) -> FrameKind {
    let (start, end) = (ctx.data(), ctx.data_end());
    // The fast path checked every byte read here; the verifier wants the frame's length
    // checked again on this path, which never finds it short.
    if v6 {
        let Some(h) = bytes::<PLAIN6_HLEN>(start, end) else {
            return FrameKind::Malformed;
        };
        let payload = len16(field16::<{ PLAIN_IP + 4 }, PLAIN6_HLEN>(h));
        pkt.is_v6 = true;
        pkt.ip_len = (IPV6_HLEN + payload).min(usize::from(u16::MAX)) as u16;
        copy_v6::<{ PLAIN_IP + 8 }, { PLAIN_IP + 16 }, PLAIN6_HLEN>(&mut pkt.src, h);
        copy_v6::<{ PLAIN_IP + 24 }, { PLAIN_IP + 32 }, PLAIN6_HLEN>(&mut pkt.dst, h);
        pkt.l4 = h[PLAIN_IP + 6];
        pkt.l4_off = PLAIN6_L4 as u16;
        set_ports(
            pkt,
            field16::<PLAIN6_L4, PLAIN6_HLEN>(h),
            field16::<{ PLAIN6_L4 + 2 }, PLAIN6_HLEN>(h),
        );
    } else {
        let Some(h) = bytes::<PLAIN4_HLEN>(start, end) else {
            return FrameKind::Malformed;
        };
        pkt.ip_len = field16::<{ PLAIN_IP + 2 }, PLAIN4_HLEN>(h);
        pkt.src[..4].copy_from_slice(&bytes_at::<4, { PLAIN_IP + 12 }, PLAIN4_HLEN>(h));
        pkt.dst[..4].copy_from_slice(&bytes_at::<4, { PLAIN_IP + 16 }, PLAIN4_HLEN>(h));
        pkt.l4 = h[PLAIN_IP + 9];
        pkt.l4_off = PLAIN4_L4 as u16;
        set_ports(
            pkt,
            field16::<PLAIN4_L4, PLAIN4_HLEN>(h),
            field16::<{ PLAIN4_L4 + 2 }, PLAIN4_HLEN>(h),
        );
    }
    FrameKind::Ip
}

/// The length of the plain frame `h`'s transport header at `L4`: TCP's or UDP's fixed part;
/// `None` for any other protocol.
#[inline(always)]
fn plain_l4_len<const L4: usize, const LEN: usize>(l4: u8, h: &[u8; LEN]) -> Option<usize> {
    match l4 {
        // A data offset under 5 words is malformed: the whole parse says so.
        IPPROTO_TCP if h[L4 + 12] >> 4 >= 5 => Some(TCP_MIN_HLEN),
        IPPROTO_UDP => Some(UDP_HLEN),
        _ => None,
    }
}

/// Ethernet and up to two VLAN tags: the inner EtherType and where its header starts.
#[inline(always)]
fn ethernet(pos: usize, end: usize) -> Option<(u16, usize)> {
    let eth = bytes::<ETH_HLEN>(pos, end)?;
    let mut proto = field16::<12, ETH_HLEN>(eth);
    let mut pos = pos + ETH_HLEN;
    for _ in 0..MAX_VLAN_TAGS {
        if proto != ETH_P_8021Q && proto != ETH_P_8021AD {
            return Some((proto, pos));
        }
        let tag = bytes::<VLAN_HLEN>(pos, end)?;
        proto = field16::<2, VLAN_HLEN>(tag);
        pos += VLAN_HLEN;
    }
    if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
        return None;
    }
    Some((proto, pos))
}

#[inline(always)]
fn ipv4<F: Frame>(f: &F, pos: usize, pkt: &mut IpPacket) -> Option<()> {
    let (start, end) = (f.start(), f.end());
    let ip = bytes::<IPV4_MIN_HLEN>(pos, end)?;
    if ip[0] >> 4 != 4 {
        return None;
    }
    let hlen = usize::from(ip[0] & 0x0f) * 4;
    let total = len16(field16::<2, IPV4_MIN_HLEN>(ip));
    if hlen < IPV4_MIN_HLEN || total < hlen || !f.holds(pos, total) {
        return None;
    }
    pkt.ip_len = total as u16;
    pkt.src[..4].copy_from_slice(&bytes_at::<4, 12, IPV4_MIN_HLEN>(ip));
    pkt.dst[..4].copy_from_slice(&bytes_at::<4, 16, IPV4_MIN_HLEN>(ip));
    pkt.l4 = ip[9];
    pkt.later_fragment = field16::<6, IPV4_MIN_HLEN>(ip) & IPV4_FRAG_OFFSET_MASK != 0;
    if !pkt.later_fragment {
        // The transport header must lie inside the IP packet, not in Ethernet padding.
        pkt.l4_off = (pos + hlen - start) as u16;
        transport(pos + hlen, pos + total, end, IPPROTO_ICMP, pkt)?;
    }
    Some(())
}

#[inline(always)]
fn ipv6<F: Frame>(f: &F, pos: usize, pkt: &mut IpPacket) -> Option<()> {
    let (start, end) = (f.start(), f.end());
    let ip = bytes::<IPV6_HLEN>(pos, end)?;
    if ip[0] >> 4 != 6 {
        return None;
    }
    let payload = len16(field16::<4, IPV6_HLEN>(ip));
    let limit = pos + IPV6_HLEN + payload;
    if !f.holds(pos, IPV6_HLEN + payload) {
        return None;
    }
    pkt.is_v6 = true;
    pkt.ip_len = (IPV6_HLEN + payload).min(usize::from(u16::MAX)) as u16;
    copy_v6::<8, 16, IPV6_HLEN>(&mut pkt.src, ip);
    copy_v6::<24, 32, IPV6_HLEN>(&mut pkt.dst, ip);
    let mut next = ip[6];
    let mut pos = pos + IPV6_HLEN;
    for _ in 0..MAX_IPV6_EXT_HEADERS {
        if !is_ipv6_ext_header(next) {
            break;
        }
        let (after, len, later) = ipv6_ext_header(next, pos, limit, end)?;
        if later {
            pkt.l4 = after;
            pkt.later_fragment = true;
            return Some(());
        }
        next = after;
        pos += len;
    }
    if is_ipv6_ext_header(next) || pos > limit {
        return None;
    }
    pkt.l4 = next;
    pkt.l4_off = (pos - start) as u16;
    transport(pos, limit, end, IPPROTO_ICMPV6, pkt)?;
    Some(())
}

/// One IPv6 extension header: (next header, its length, whether it is a later fragment).
#[inline(always)]
fn ipv6_ext_header(kind: u8, pos: usize, limit: usize, end: usize) -> Option<(u8, usize, bool)> {
    if pos + 8 > limit {
        return None;
    }
    let hdr = bytes::<8>(pos, end)?;
    let len = match kind {
        IPPROTO_FRAGMENT => {
            let later = field16::<2, 8>(hdr) & IPV6_FRAG_OFFSET_MASK != 0;
            return Some((hdr[0], 8, later));
        }
        IPPROTO_AH => (usize::from(hdr[1]) + 2) * 4,
        _ => (usize::from(hdr[1]) + 1) * 8,
    };
    Some((hdr[0], len, false))
}

/// TCP and UDP ports, or the ICMP type; `None` when the header is cut short.
#[inline(always)]
fn transport(pos: usize, limit: usize, end: usize, icmp: u8, pkt: &mut IpPacket) -> Option<()> {
    match pkt.l4 {
        IPPROTO_TCP => {
            if pos + TCP_MIN_HLEN > limit {
                return None;
            }
            let tcp = bytes::<TCP_MIN_HLEN>(pos, end)?;
            if tcp[12] >> 4 < 5 {
                return None;
            }
            set_ports(
                pkt,
                field16::<0, TCP_MIN_HLEN>(tcp),
                field16::<2, TCP_MIN_HLEN>(tcp),
            );
        }
        IPPROTO_UDP => {
            if pos + UDP_HLEN > limit {
                return None;
            }
            let udp = bytes::<UDP_HLEN>(pos, end)?;
            set_ports(
                pkt,
                field16::<0, UDP_HLEN>(udp),
                field16::<2, UDP_HLEN>(udp),
            );
        }
        p if p == icmp => {
            if pos + ICMP_MIN_HLEN > limit {
                return None;
            }
            let hdr = bytes::<ICMP_MIN_HLEN>(pos, end)?;
            pkt.icmp_type = hdr[0];
            pkt.has_icmp_type = true;
            let error = if pkt.is_v6 {
                is_icmpv6_error(pkt.icmp_type)
            } else {
                is_icmpv4_error(pkt.icmp_type)
            };
            if error {
                // A quote that does not parse is no proof, not a malformed frame.
                let _ = quoted(pos + ICMP_ERROR_HLEN, limit, end, pkt);
            }
        }
        _ => {}
    }
    Some(())
}

/// The packet an ICMP error quotes: its destination and port, and whether the error goes back
/// to its source (see `IpPacket::quoted_to_sender`).
#[inline(always)]
fn quoted(pos: usize, limit: usize, end: usize, pkt: &mut IpPacket) -> Option<()> {
    let (l4, ports) = if pkt.is_v6 {
        if pos + IPV6_HLEN + QUOTED_PORTS_LEN > limit {
            return None;
        }
        let ip = bytes::<IPV6_HLEN>(pos, end)?;
        if ip[0] >> 4 != 6 {
            return None;
        }
        for i in 0..16 {
            if ip[8 + i] != pkt.dst[i] {
                return None;
            }
        }
        pkt.quoted_dst.copy_from_slice(&ip[24..40]);
        (ip[6], pos + IPV6_HLEN)
    } else {
        if pos + IPV4_MIN_HLEN > limit {
            return None;
        }
        let ip = bytes::<IPV4_MIN_HLEN>(pos, end)?;
        let hlen = usize::from(ip[0] & 0x0f) * 4;
        let later = field16::<6, IPV4_MIN_HLEN>(ip) & IPV4_FRAG_OFFSET_MASK != 0;
        if ip[0] >> 4 != 4 || hlen < IPV4_MIN_HLEN || later {
            return None;
        }
        if pos + hlen + QUOTED_PORTS_LEN > limit {
            return None;
        }
        for i in 0..4 {
            if ip[12 + i] != pkt.dst[i] {
                return None;
            }
        }
        pkt.quoted_dst[..4].copy_from_slice(&ip[16..20]);
        (ip[9], pos + hlen)
    };
    if l4 != IPPROTO_TCP && l4 != IPPROTO_UDP {
        return None;
    }
    let p = bytes::<QUOTED_PORTS_LEN>(ports, end)?;
    pkt.quoted_l4 = l4;
    pkt.quoted_dport = field16::<2, QUOTED_PORTS_LEN>(p);
    pkt.quoted_to_sender = true;
    Some(())
}

#[inline(always)]
fn set_ports(pkt: &mut IpPacket, sport: u16, dport: u16) {
    pkt.sport = sport;
    pkt.dport = dport;
    pkt.has_ports = true;
}
