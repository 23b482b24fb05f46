//! The classifier's decision, shared by the kernel program and userspace, and a pure-Rust parser
//! of frames that makes this module a complete reference of what the kernel program does.
//!
//! The kernel parses with its own bounds-checked pointer code (`intune-ebpf/src/parse.rs`) into
//! the same [`IpPacket`] and then calls [`decide`]; userspace parses slices with [`parse_frame`].
//! The differential test runs both on the same frames.

use crate::{
    maps::{
        AllowEntry, Config, DIR_DST, DIR_SRC, DrainEntry, MODE_ENFORCE, NO_PORT, NO_RULE, PortSet,
        ROLE_BROADCAST, ROLE_DHCP_SERVER, ROLE_DNS_RESOLVER, ROLE_LOCAL, RuleRef, port_key,
    },
    outcome::{Outcome, verdict},
    proto::{
        DHCPV6_SERVERS_MULTICAST, ETH_HLEN, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6,
        ICMP_ERROR_HLEN, ICMP_MIN_HLEN, ICMPV4_ERROR_MAX_LEN, ICMPV6_ERROR_MAX_LEN, IPPROTO_AH,
        IPPROTO_FRAGMENT, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP,
        IPV4_FRAG_OFFSET_MASK, IPV4_MIN_HLEN, IPV6_FRAG_OFFSET_MASK, IPV6_HLEN,
        MAX_IPV6_EXT_HEADERS, MAX_VLAN_TAGS, PORT_DNS, QUOTED_PORTS_LEN, TCP_MIN_HLEN, UDP_HLEN,
        VLAN_HLEN, is_dhcp, is_icmpv4_error, is_icmpv6_error, is_icmpv6_link_control,
        is_ipv6_ext_header,
    },
};

/// What the classifier needs of an IP packet, whoever parsed it. Integers and bools only, so
/// all-zero bytes are a valid (empty) packet; aligned so the kernel zeroes it in words.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpPacket {
    // The addresses first, each 8-aligned: the kernel program's compiler then reads and
    // compares them a word at a time, where at odd offsets it must go byte by byte.
    /// IPv4 addresses live in the first four bytes.
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// See `quoted_to_sender`.
    pub quoted_dst: [u8; 16],
    pub is_v6: bool,
    /// Transport protocol (after IPv6 extension headers).
    pub l4: u8,
    /// Ports of TCP and UDP, when the first fragment carries the header; else 0.
    pub sport: u16,
    pub dport: u16,
    pub has_ports: bool,
    /// ICMP or ICMPv6 type, when `has_icmp_type`.
    pub icmp_type: u8,
    pub has_icmp_type: bool,
    /// A fragment other than the first: no transport header, matched on its address alone.
    pub later_fragment: bool,
    /// Bytes of the IP packet, its header included (saturated at 65,535 for IPv6).
    pub ip_len: u16,
    /// An ICMP error that quotes a TCP or UDP packet's addresses and ports and goes back to
    /// that packet's source, as a genuine error does; the quoted packet's protocol,
    /// destination port follow (its destination is `quoted_dst`).
    pub quoted_to_sender: bool,
    pub quoted_l4: u8,
    pub quoted_dport: u16,
    /// Where the transport header starts, from the frame's first byte (when `has_ports`).
    pub l4_off: u16,
}

impl IpPacket {
    pub const fn empty() -> IpPacket {
        IpPacket {
            is_v6: false,
            src: [0; 16],
            dst: [0; 16],
            l4: 0,
            sport: 0,
            dport: 0,
            has_ports: false,
            icmp_type: 0,
            has_icmp_type: false,
            later_fragment: false,
            ip_len: 0,
            quoted_to_sender: false,
            quoted_l4: 0,
            quoted_dport: 0,
            quoted_dst: [0; 16],
            l4_off: 0,
        }
    }
}

/// What a frame is, once parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    NotIp,
    Malformed,
    /// IPv4 or IPv6: the parser filled an [`IpPacket`].
    Ip,
}

/// A frame after parsing, as the reference parser returns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    NotIp,
    Malformed,
    Ip(IpPacket),
}

impl Parsed {
    pub fn kind(&self) -> FrameKind {
        match self {
            Parsed::NotIp => FrameKind::NotIp,
            Parsed::Malformed => FrameKind::Malformed,
            Parsed::Ip(_) => FrameKind::Ip,
        }
    }
}

/// The lookups the decision makes: BPF maps in the kernel, plain collections in userspace.
pub trait Tables {
    /// The IPv4 address in the first four bytes of `addr` (as [`IpPacket`] holds it, 8-aligned:
    /// the kernel reads it a word at a time).
    fn lookup_v4(&self, addr: &[u8; 16]) -> Option<RuleRef>;
    fn lookup_v6(&self, addr: &[u8; 16]) -> Option<RuleRef>;
    fn port_set(&self, id: u32) -> Option<&PortSet>;
    /// The role bits (`ROLE_*`) of an address; `addr` is IPv6, or IPv4 mapped
    /// (`::ffff:a.b.c.d`).
    fn addr_roles(&self, addr: &[u8; 16]) -> u32;
    /// The `[[policy.allow]]` entry of the most specific prefix holding `addr`.
    fn lookup_allow_v4(&self, addr: &[u8; 4]) -> Option<&AllowEntry>;
    fn lookup_allow_v6(&self, addr: &[u8; 16]) -> Option<&AllowEntry>;
    /// The draining entry of the most specific prefix holding `addr` (as for `addr_roles`).
    /// The kernel notes the packet's time in it.
    fn lookup_drain(&self, addr: &[u8; 16]) -> Option<&DrainEntry>;
    /// An address learned from a DNS answer; `addr` as for `addr_roles`.
    fn lookup_learned(&self, addr: &[u8; 16]) -> Option<RuleRef>;
    fn iface_direction(&self, ifindex: u32) -> Option<u32>;
}

/// The decision about one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub outcome: Outcome,
    pub verdict: u32,
    /// The rule credited, or [`NO_RULE`].
    pub rule: u32,
    /// The [`port_key`] of the port the rule matched on, or [`NO_PORT`] (no rule, or a later
    /// fragment, which matches on its address alone).
    pub port_key: u32,
}

/// The direction in force on an interface. The interface's index is asked for only when
/// interfaces have directions of their own: in the kernel it is three dependent loads.
#[inline(always)]
pub fn direction<T: Tables>(cfg: &Config, ifindex: impl FnOnce() -> u32, tables: &T) -> u32 {
    if cfg.flags & Config::FLAG_PER_IFACE != 0
        && let Some(dir) = tables.iface_direction(ifindex())
    {
        return dir;
    }
    cfg.direction
}

/// Decides about a frame once it is parsed; `pkt` is read only for [`FrameKind::Ip`].
#[inline(always)]
pub fn decide<T: Tables>(
    kind: FrameKind,
    pkt: &IpPacket,
    cfg: &Config,
    direction: u32,
    tables: &T,
) -> Decision {
    let (outcome, rule, port_key) = match kind {
        FrameKind::NotIp => (Outcome::NotIp, NO_RULE, NO_PORT),
        FrameKind::Malformed => (Outcome::Malformed, NO_RULE, NO_PORT),
        FrameKind::Ip => decide_ip(pkt, cfg, direction, tables),
    };
    Decision {
        outcome,
        verdict: verdict(outcome, cfg.mode),
        rule,
        port_key,
    }
}

/// Outcome, rule credited and the key of the port it matched on. Intune first (the hot path),
/// then the infrastructure a network needs, then the gateway's own traffic.
#[inline(always)]
fn decide_ip<T: Tables>(
    pkt: &IpPacket,
    cfg: &Config,
    direction: u32,
    t: &T,
) -> (Outcome, u32, u32) {
    let (mut dst_excluded, mut src_excluded) = (false, false);
    if direction & DIR_DST != 0 {
        match lookup_address(pkt.is_v6, &pkt.dst, packet_port(pkt, pkt.dport), cfg, t) {
            Match::Rule(rule) => return (Outcome::Intune, rule, matched_port(pkt, pkt.dport)),
            Match::Excluded => dst_excluded = true,
            Match::None => {}
        }
    }
    if direction & DIR_SRC != 0 {
        match lookup_address(pkt.is_v6, &pkt.src, packet_port(pkt, pkt.sport), cfg, t) {
            Match::Rule(rule) => return (Outcome::Intune, rule, matched_port(pkt, pkt.sport)),
            Match::Excluded => src_excluded = true,
            Match::None => {}
        }
    }
    if cfg.flags & Config::FLAG_PORT_ONLY != 0
        && pkt.has_ports
        && let Some(ports) = t.port_set(cfg.port_only_set)
    {
        if direction & DIR_DST != 0 && ports.allows(pkt.l4, pkt.dport) {
            return (
                Outcome::Intune,
                cfg.port_only_rule,
                port_key(pkt.l4, pkt.dport),
            );
        }
        if direction & DIR_SRC != 0 && ports.allows(pkt.l4, pkt.sport) {
            return (
                Outcome::Intune,
                cfg.port_only_rule,
                port_key(pkt.l4, pkt.sport),
            );
        }
    }
    // What left the lists still carries the connections that use it (never past an
    // exclusion: an admin's "never" wins at once).
    if cfg.flags & Config::FLAG_DRAINING != 0 {
        if direction & DIR_DST != 0 && !dst_excluded && draining(pkt, &pkt.dst, pkt.dport, t) {
            return (Outcome::Intune, NO_RULE, matched_port(pkt, pkt.dport));
        }
        if direction & DIR_SRC != 0 && !src_excluded && draining(pkt, &pkt.src, pkt.sport, t) {
            return (Outcome::Intune, NO_RULE, matched_port(pkt, pkt.sport));
        }
    }
    if is_infrastructure(pkt, cfg, direction, t) {
        return (Outcome::Infrastructure, NO_RULE, NO_PORT);
    }
    if is_local(pkt, cfg, t) {
        return (Outcome::Local, NO_RULE, NO_PORT);
    }
    if cfg.mode == MODE_ENFORCE {
        (Outcome::Dropped, NO_RULE, NO_PORT)
    } else {
        (Outcome::UnmatchedPassed, NO_RULE, NO_PORT)
    }
}

/// What a rule's port set is asked about.
#[derive(Clone, Copy)]
enum PortCheck {
    /// A TCP or UDP port: its protocol number and the port. Held as u32s: as (u8, u16), LLVM
    /// keeps the value packed in one register and takes it apart with shifts at each use (14
    /// instructions a frame in the kernel program).
    Port(u32, u32),
    /// Nothing: the address alone decides (a later fragment, the target of an ICMP error).
    Any,
    /// No ports to match (ICMP, other protocols): no port rule allows it.
    Never,
}

#[inline(always)]
fn packet_port(pkt: &IpPacket, port: u16) -> PortCheck {
    if pkt.later_fragment {
        PortCheck::Any
    } else if pkt.has_ports {
        PortCheck::Port(pkt.l4.into(), port.into())
    } else {
        PortCheck::Never
    }
}

/// The key of the port an address match was made on: none for a later fragment.
#[inline(always)]
fn matched_port(pkt: &IpPacket, port: u16) -> u32 {
    if pkt.has_ports {
        port_key(pkt.l4, port)
    } else {
        NO_PORT
    }
}

/// What an address's lookup found.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Match {
    Rule(u32),
    /// An excluded prefix: never Intune, not even a learned, draining or fragment's address.
    Excluded,
    None,
}

/// The rule an address (and port) hits: the port must be in the most specific prefix's
/// effective port set, or in the ports of the name the address was learned under.
#[inline(always)]
fn lookup_address<T: Tables>(
    v6: bool,
    addr: &[u8; 16],
    port: PortCheck,
    cfg: &Config,
    t: &T,
) -> Match {
    let listed = if v6 {
        t.lookup_v6(addr)
    } else {
        t.lookup_v4(addr)
    };
    if let Some(hit) = listed {
        if hit.rule == NO_RULE {
            return Match::Excluded;
        }
        if let Some(rule) = allowed(hit, port, t) {
            return Match::Rule(rule);
        }
    }
    if cfg.flags & Config::FLAG_LEARNED != 0
        && let Some(learned) = t.lookup_learned(&key(v6, addr))
        && let Some(rule) = allowed(learned, port, t)
    {
        return Match::Rule(rule);
    }
    Match::None
}

/// The rule the listed prefix holding `addr` gives a TCP or UDP packet (protocol `l4`, port
/// `port`), when its port set allows the port: for a first fragment whose destination is
/// matched, the answer [`decide`] gives before anything else. The kernel's fast path asks this
/// alone, and leaves every other packet to [`decide`].
#[inline(always)]
pub fn listed_port_rule<T: Tables>(
    v6: bool,
    addr: &[u8; 16],
    l4: u8,
    port: u16,
    t: &T,
) -> Option<u32> {
    let hit = if v6 {
        t.lookup_v6(addr)
    } else {
        t.lookup_v4(addr)
    }?;
    if hit.rule == NO_RULE {
        return None;
    }
    allowed(hit, PortCheck::Port(l4.into(), port.into()), t)
}

/// As [`lookup_address`], for the rules' answer alone.
#[inline(always)]
fn match_address<T: Tables>(
    v6: bool,
    addr: &[u8; 16],
    port: PortCheck,
    cfg: &Config,
    t: &T,
) -> Option<u32> {
    match lookup_address(v6, addr, port, cfg, t) {
        Match::Rule(rule) => Some(rule),
        _ => None,
    }
}

/// A draining prefix or address holding `addr` allows the packet's port.
#[inline(always)]
fn draining<T: Tables>(pkt: &IpPacket, addr: &[u8; 16], port: u16, t: &T) -> bool {
    let Some(e) = t.lookup_drain(&key(pkt.is_v6, addr)) else {
        return false;
    };
    match packet_port(pkt, port) {
        PortCheck::Any => true,
        PortCheck::Port(l4, port) => e.ports.allows(l4 as u8, Some(port as u16)),
        PortCheck::Never => false,
    }
}

/// The rule of `hit`, if it allows the port.
#[inline(always)]
fn allowed<T: Tables>(hit: RuleRef, port: PortCheck, t: &T) -> Option<u32> {
    let (l4, port) = match port {
        PortCheck::Any => return Some(hit.rule),
        PortCheck::Never => return None,
        PortCheck::Port(l4, port) => (l4 as u8, port as u16),
    };
    let ports = t.port_set(hit.port_set)?;
    if ports.allows(l4, port) {
        Some(hit.rule)
    } else {
        None
    }
}

/// DNS, DHCP, ICMP errors, neighbour discovery and MLD, each only where it belongs: none of
/// them may carry a device's traffic anywhere else.
#[inline(always)]
fn is_infrastructure<T: Tables>(pkt: &IpPacket, cfg: &Config, direction: u32, t: &T) -> bool {
    if pkt.has_icmp_type {
        if pkt.is_v6 {
            if is_icmpv6_link_control(pkt.icmp_type) {
                return is_link_scope_v6(&pkt.dst);
            }
            return is_icmpv6_error(pkt.icmp_type)
                && icmp_error_allowed(pkt, cfg, direction, t, ICMPV6_ERROR_MAX_LEN);
        }
        return is_icmpv4_error(pkt.icmp_type)
            && icmp_error_allowed(pkt, cfg, direction, t, ICMPV4_ERROR_MAX_LEN);
    }
    if !pkt.has_ports {
        return false;
    }
    if is_dhcp(pkt.l4, pkt.sport, pkt.dport) {
        return dhcp_destination_allowed(pkt, cfg, t);
    }
    // A query goes to a resolver; an answer comes from one, into the network (where sources
    // are matched): a device has no business sending from port 53.
    (direction & DIR_DST != 0 && pkt.dport == PORT_DNS && is_resolver(pkt, &pkt.dst, cfg, t))
        || (direction & DIR_SRC != 0 && pkt.sport == PORT_DNS && is_resolver(pkt, &pkt.src, cfg, t))
}

#[inline(always)]
fn is_resolver<T: Tables>(pkt: &IpPacket, addr: &[u8; 16], cfg: &Config, t: &T) -> bool {
    cfg.flags & Config::FLAG_DNS_ANY != 0 || roles(pkt, addr, cfg, t) & ROLE_DNS_RESOLVER != 0
}

/// A small error about traffic the rules allow: it goes to an Intune address (where
/// destinations are matched), or back to the sender of an allowed packet it quotes (where
/// sources are matched).
#[inline(always)]
fn icmp_error_allowed<T: Tables>(
    pkt: &IpPacket,
    cfg: &Config,
    direction: u32,
    t: &T,
    max_len: u16,
) -> bool {
    if pkt.ip_len > max_len {
        return false;
    }
    if direction & DIR_DST != 0
        && match_address(pkt.is_v6, &pkt.dst, PortCheck::Any, cfg, t).is_some()
    {
        return true;
    }
    direction & DIR_SRC != 0
        && pkt.quoted_to_sender
        && match_address(
            pkt.is_v6,
            &pkt.quoted_dst,
            PortCheck::Port(pkt.quoted_l4.into(), pkt.quoted_dport.into()),
            cfg,
            t,
        )
        .is_some()
}

/// DHCP and DHCPv6 go to the broadcast, the servers' link-scope group, or a configured server
/// or relay; never to some address on the Internet.
#[inline(always)]
fn dhcp_destination_allowed<T: Tables>(pkt: &IpPacket, cfg: &Config, t: &T) -> bool {
    let a = &pkt.dst;
    if pkt.is_v6 {
        if same16(a, &DHCPV6_SERVERS_MULTICAST) {
            return true;
        }
        return roles(pkt, a, cfg, t) & ROLE_DHCP_SERVER != 0;
    }
    is_limited_broadcast(a) || roles(pkt, a, cfg, t) & (ROLE_BROADCAST | ROLE_DHCP_SERVER) != 0
}

/// Traffic the gateway itself is the end of, or that never leaves the link, and the services
/// `[[policy.allow]]` names.
#[inline(always)]
fn is_local<T: Tables>(pkt: &IpPacket, cfg: &Config, t: &T) -> bool {
    if cfg.flags & Config::FLAG_ALLOW_LOCAL != 0 {
        let link_group = if pkt.is_v6 {
            // Interface- and link-scope multicast (ff01::/16, ff02::/16, any flags).
            pkt.dst[0] == 0xff && (pkt.dst[1] & 0x0f) <= 2
        } else {
            // 224.0.0.0/24 (VRRP, OSPF, RIP, ...) and the limited broadcast.
            (pkt.dst[0] == 224 && pkt.dst[1] == 0 && pkt.dst[2] == 0)
                || is_limited_broadcast(&pkt.dst)
        };
        if link_group || roles(pkt, &pkt.dst, cfg, t) & (ROLE_LOCAL | ROLE_BROADCAST) != 0 {
            return true;
        }
    }
    cfg.flags & Config::FLAG_POLICY_ALLOW != 0 && policy_allows(pkt, t)
}

/// A `[[policy.allow]]` service: to its prefix on its ports, or from it from them.
#[inline(always)]
fn policy_allows<T: Tables>(pkt: &IpPacket, t: &T) -> bool {
    let (sport, dport) = if pkt.has_ports {
        (Some(pkt.sport), Some(pkt.dport))
    } else {
        (None, None)
    };
    let (to, from) = if pkt.is_v6 {
        (t.lookup_allow_v6(&pkt.dst), t.lookup_allow_v6(&pkt.src))
    } else {
        (
            t.lookup_allow_v4(&[pkt.dst[0], pkt.dst[1], pkt.dst[2], pkt.dst[3]]),
            t.lookup_allow_v4(&[pkt.src[0], pkt.src[1], pkt.src[2], pkt.src[3]]),
        )
    };
    to.is_some_and(|e| e.allows(pkt.l4, dport)) || from.is_some_and(|e| e.allows(pkt.l4, sport))
}

/// The roles of an address; the lookup is made only when an address with a role ends in the
/// same byte (a bit of the config), so the drop path rarely pays for it.
#[inline(always)]
fn roles<T: Tables>(pkt: &IpPacket, addr: &[u8; 16], cfg: &Config, t: &T) -> u32 {
    // The last byte read where it lies: the key is made only for the lookup.
    let last = if pkt.is_v6 { addr[15] } else { addr[3] };
    if !cfg.may_end_a_role(last) {
        return 0;
    }
    t.addr_roles(&key(pkt.is_v6, addr))
}

/// The 16-byte key of an address: IPv6 as is, IPv4 mapped.
#[inline(always)]
fn key(v6: bool, addr: &[u8; 16]) -> [u8; 16] {
    if v6 { *addr } else { v4_mapped(addr) }
}

/// fe80::/10 and link-scope multicast (ff02::/16, any flags).
#[inline(always)]
fn is_link_scope_v6(a: &[u8; 16]) -> bool {
    (a[0] == 0xfe && a[1] & 0xc0 == 0x80) || (a[0] == 0xff && a[1] & 0x0f == 2)
}

/// 255.255.255.255 (the IPv4 address in the first four bytes).
#[inline(always)]
fn is_limited_broadcast(a: &[u8; 16]) -> bool {
    a[0] == 255 && a[1] == 255 && a[2] == 255 && a[3] == 255
}

/// Byte by byte: BPF has no `memcmp` for the array comparison to call.
#[inline(always)]
pub fn same16(a: &[u8; 16], b: &[u8; 16]) -> bool {
    let mut same = true;
    for i in 0..16 {
        same &= a[i] == b[i];
    }
    same
}

/// `::ffff:a.b.c.d` from an address whose first four bytes are IPv4.
#[inline(always)]
pub fn v4_mapped(addr: &[u8; 16]) -> [u8; 16] {
    // In two words: zeroing part of a byte array first makes the kernel program call a
    // byte-at-a-time memset.
    let low = u64::from_ne_bytes([0, 0, 0xff, 0xff, addr[0], addr[1], addr[2], addr[3]]);
    let mut m = [0u8; 16];
    m[8..].copy_from_slice(&low.to_ne_bytes());
    m
}

/// The whole reference: parse, then decide, as the kernel program does.
pub fn classify<T: Tables>(frame: &[u8], ifindex: u32, cfg: &Config, tables: &T) -> Decision {
    let parsed = parse_frame(frame);
    let pkt = match parsed {
        Parsed::Ip(pkt) => pkt,
        _ => IpPacket::empty(),
    };
    decide(
        parsed.kind(),
        &pkt,
        cfg,
        direction(cfg, || ifindex, tables),
        tables,
    )
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Parses a frame the way the kernel program does, over a slice.
pub fn parse_frame(frame: &[u8]) -> Parsed {
    let Some(mut proto) = be16(frame, 12) else {
        return Parsed::Malformed;
    };
    let mut off = ETH_HLEN;
    let mut tags = 0;
    while proto == ETH_P_8021Q || proto == ETH_P_8021AD {
        if tags == MAX_VLAN_TAGS {
            return Parsed::Malformed;
        }
        let Some(inner) = be16(frame, off + 2) else {
            return Parsed::Malformed;
        };
        proto = inner;
        off += VLAN_HLEN;
        tags += 1;
    }
    let ip = &frame[off..];
    let parsed = match proto {
        ETH_P_IP => parse_ipv4(ip),
        ETH_P_IPV6 => parse_ipv6(ip),
        _ => return Parsed::NotIp,
    };
    match parsed {
        Some(mut pkt) => {
            pkt.l4_off += off as u16;
            Parsed::Ip(pkt)
        }
        None => Parsed::Malformed,
    }
}

/// `None` means malformed.
fn parse_ipv4(ip: &[u8]) -> Option<IpPacket> {
    if ip.len() < IPV4_MIN_HLEN || ip[0] >> 4 != 4 {
        return None;
    }
    let hlen = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(be16(ip, 2)?);
    if hlen < IPV4_MIN_HLEN || ip.len() < hlen || total < hlen || total > ip.len() {
        return None;
    }
    let mut pkt = IpPacket::empty();
    pkt.ip_len = total as u16;
    pkt.src[..4].copy_from_slice(&ip[12..16]);
    pkt.dst[..4].copy_from_slice(&ip[16..20]);
    pkt.l4 = ip[9];
    pkt.later_fragment = be16(ip, 6)? & IPV4_FRAG_OFFSET_MASK != 0;
    if !pkt.later_fragment {
        // The transport header must lie inside the IP packet, not in Ethernet padding.
        pkt.l4_off = hlen as u16;
        parse_l4(&ip[hlen..total], IPPROTO_ICMP, &mut pkt)?;
    }
    Some(pkt)
}

fn parse_ipv6(ip: &[u8]) -> Option<IpPacket> {
    if ip.len() < IPV6_HLEN || ip[0] >> 4 != 6 {
        return None;
    }
    let payload = usize::from(be16(ip, 4)?);
    if payload > ip.len() - IPV6_HLEN {
        return None;
    }
    let ip = &ip[..IPV6_HLEN + payload];
    let mut pkt = IpPacket::empty();
    pkt.is_v6 = true;
    pkt.ip_len = (IPV6_HLEN + payload).min(usize::from(u16::MAX)) as u16;
    pkt.src.copy_from_slice(&ip[8..24]);
    pkt.dst.copy_from_slice(&ip[24..40]);
    let mut next = ip[6];
    let mut off = IPV6_HLEN;
    let mut skipped = 0;
    while is_ipv6_ext_header(next) {
        if skipped == MAX_IPV6_EXT_HEADERS {
            return None;
        }
        let hdr = ip.get(off..off + 8)?;
        let len = match next {
            IPPROTO_FRAGMENT => {
                if u16::from_be_bytes([hdr[2], hdr[3]]) & IPV6_FRAG_OFFSET_MASK != 0 {
                    pkt.l4 = hdr[0];
                    pkt.later_fragment = true;
                    return Some(pkt);
                }
                8
            }
            IPPROTO_AH => (usize::from(hdr[1]) + 2) * 4,
            _ => (usize::from(hdr[1]) + 1) * 8,
        };
        next = hdr[0];
        off += len;
        skipped += 1;
    }
    pkt.l4 = next;
    pkt.l4_off = off as u16;
    parse_l4(ip.get(off..)?, IPPROTO_ICMPV6, &mut pkt)?;
    Some(pkt)
}

/// Reads ports or the ICMP type; `None` when the header the protocol promises is cut short.
fn parse_l4(l4: &[u8], icmp: u8, pkt: &mut IpPacket) -> Option<()> {
    match pkt.l4 {
        IPPROTO_TCP => {
            if l4.len() < TCP_MIN_HLEN || (l4[12] >> 4) < 5 {
                return None;
            }
        }
        IPPROTO_UDP => {
            if l4.len() < UDP_HLEN {
                return None;
            }
        }
        p if p == icmp => {
            if l4.len() < ICMP_MIN_HLEN {
                return None;
            }
            pkt.icmp_type = l4[0];
            pkt.has_icmp_type = true;
            let error = if pkt.is_v6 {
                is_icmpv6_error(pkt.icmp_type)
            } else {
                is_icmpv4_error(pkt.icmp_type)
            };
            if error && let Some(quoted) = l4.get(ICMP_ERROR_HLEN..) {
                parse_quoted(quoted, pkt);
            }
            return Some(());
        }
        _ => return Some(()),
    }
    pkt.sport = be16(l4, 0)?;
    pkt.dport = be16(l4, 2)?;
    pkt.has_ports = true;
    Some(())
}

/// The packet an ICMP error quotes, of the error's own family; a quote too short to hold its
/// ports (or any other shape) leaves `quoted_to_sender` false: not malformed, just not proof.
fn parse_quoted(q: &[u8], pkt: &mut IpPacket) {
    let (src, dst, l4, ports) = if pkt.is_v6 {
        if q.len() < IPV6_HLEN + QUOTED_PORTS_LEN || q[0] >> 4 != 6 {
            return;
        }
        (&q[8..24], &q[24..40], q[6], IPV6_HLEN)
    } else {
        if q.len() < IPV4_MIN_HLEN || q[0] >> 4 != 4 {
            return;
        }
        let hlen = usize::from(q[0] & 0x0f) * 4;
        let later = u16::from_be_bytes([q[6], q[7]]) & IPV4_FRAG_OFFSET_MASK != 0;
        if hlen < IPV4_MIN_HLEN || q.len() < hlen + QUOTED_PORTS_LEN || later {
            return;
        }
        (&q[12..16], &q[16..20], q[9], hlen)
    };
    if l4 != IPPROTO_TCP && l4 != IPPROTO_UDP || src != &pkt.dst[..src.len()] {
        return;
    }
    pkt.quoted_to_sender = true;
    pkt.quoted_l4 = l4;
    pkt.quoted_dport = u16::from_be_bytes([q[ports + 2], q[ports + 3]]);
    pkt.quoted_dst[..dst.len()].copy_from_slice(dst);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        maps::{DIR_BOTH, MODE_MONITOR},
        outcome::{XDP_DROP, XDP_PASS},
    };

    /// Ethernet + IPv4 (20 bytes) + TCP (20 bytes) from 192.0.2.1:40000 to 198.51.100.7:`dport`.
    fn tcp4(dport: u16) -> [u8; 54] {
        let mut f = [0u8; 54];
        f[12..14].copy_from_slice(&ETH_P_IP.to_be_bytes());
        f[14] = 0x45;
        f[16..18].copy_from_slice(&40u16.to_be_bytes());
        f[23] = IPPROTO_TCP;
        f[26..30].copy_from_slice(&[192, 0, 2, 1]);
        f[30..34].copy_from_slice(&[198, 51, 100, 7]);
        f[34..36].copy_from_slice(&40000u16.to_be_bytes());
        f[36..38].copy_from_slice(&dport.to_be_bytes());
        f[46] = 0x50;
        f
    }

    /// One rule: 198.51.100.0/24, TCP 443.
    struct OneRule(PortSet);

    impl Tables for OneRule {
        fn lookup_v4(&self, addr: &[u8; 16]) -> Option<RuleRef> {
            (addr[..3] == [198, 51, 100]).then_some(RuleRef {
                rule: 7,
                port_set: 0,
            })
        }
        fn lookup_v6(&self, _: &[u8; 16]) -> Option<RuleRef> {
            None
        }
        fn port_set(&self, id: u32) -> Option<&PortSet> {
            (id == 0).then_some(&self.0)
        }
        fn addr_roles(&self, _: &[u8; 16]) -> u32 {
            0
        }
        fn lookup_allow_v4(&self, _: &[u8; 4]) -> Option<&AllowEntry> {
            None
        }
        fn lookup_allow_v6(&self, _: &[u8; 16]) -> Option<&AllowEntry> {
            None
        }
        fn lookup_drain(&self, _: &[u8; 16]) -> Option<&DrainEntry> {
            None
        }
        fn lookup_learned(&self, _: &[u8; 16]) -> Option<RuleRef> {
            None
        }
        fn iface_direction(&self, _: u32) -> Option<u32> {
            None
        }
    }

    fn tables() -> OneRule {
        let mut ports = PortSet::EMPTY;
        ports.insert(IPPROTO_TCP, 443);
        OneRule(ports)
    }

    fn cfg(mode: u32) -> Config {
        Config {
            mode,
            direction: DIR_BOTH,
            flags: Config::FLAG_DNS_ANY,
            ..Config::default()
        }
    }

    #[test]
    fn parses_ipv4_tcp() {
        let Parsed::Ip(pkt) = parse_frame(&tcp4(443)) else {
            panic!("not IP")
        };
        assert_eq!(
            (pkt.sport, pkt.dport, pkt.l4, pkt.has_ports),
            (40000, 443, IPPROTO_TCP, true)
        );
        assert_eq!(pkt.dst[..4], [198, 51, 100, 7]);
    }

    #[test]
    fn broken_headers_are_malformed() {
        let mut ihl = tcp4(443);
        ihl[14] = 0x44;
        assert_eq!(parse_frame(&ihl), Parsed::Malformed);
        assert_eq!(parse_frame(&tcp4(443)[..40]), Parsed::Malformed);
        let mut tags = [0u8; 80];
        for i in 0..3 {
            tags[12 + 4 * i..14 + 4 * i].copy_from_slice(&ETH_P_8021Q.to_be_bytes());
        }
        assert_eq!(parse_frame(&tags), Parsed::Malformed, "three VLAN tags");
        let mut arp = [0u8; 60];
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(parse_frame(&arp), Parsed::NotIp);
    }

    #[test]
    fn decides_on_address_and_port() {
        let t = tables();
        let hit = classify(&tcp4(443), 1, &cfg(MODE_ENFORCE), &t);
        assert_eq!(
            (hit.outcome, hit.verdict, hit.rule, hit.port_key),
            (Outcome::Intune, XDP_PASS, 7, 443)
        );
        let miss = classify(&tcp4(22), 1, &cfg(MODE_ENFORCE), &t);
        assert_eq!(
            (miss.outcome, miss.verdict, miss.rule, miss.port_key),
            (Outcome::Dropped, XDP_DROP, NO_RULE, NO_PORT)
        );
        let monitored = classify(&tcp4(22), 1, &cfg(MODE_MONITOR), &t);
        assert_eq!(
            (monitored.outcome, monitored.verdict),
            (Outcome::UnmatchedPassed, XDP_PASS)
        );
        let dns = classify(&tcp4(PORT_DNS), 1, &cfg(MODE_ENFORCE), &t);
        assert_eq!(dns.outcome, Outcome::Infrastructure);
    }

    #[test]
    fn the_fast_paths_rule_is_decides_first_answer() {
        let t = tables();
        let v4 = |third: u8| {
            let mut a = [0u8; 16];
            a[..4].copy_from_slice(&[198, 51, third, 7]);
            a
        };
        let listed = |third, l4, port| listed_port_rule(false, &v4(third), l4, port, &t);
        assert_eq!(listed(100, IPPROTO_TCP, 443), Some(7));
        assert_eq!(listed(100, IPPROTO_TCP, 22), None, "a port not in the set");
        assert_eq!(listed(100, IPPROTO_UDP, 443), None, "another protocol");
        assert_eq!(listed(101, IPPROTO_TCP, 443), None, "an address not listed");
        assert_eq!(listed_port_rule(true, &v4(100), IPPROTO_TCP, 443, &t), None);
        // Where it answers, `decide` gives the same rule and the port it matched on.
        let hit = classify(&tcp4(443), 1, &cfg(MODE_ENFORCE), &t);
        assert_eq!(
            (hit.outcome, hit.rule, hit.port_key),
            (Outcome::Intune, 7, 443)
        );
    }
}
