//! The classifier's decision, shared by the kernel program and userspace, and a pure-Rust parser
//! of frames that makes this module a complete reference of what the kernel program does.
//!
//! The kernel parses with its own bounds-checked pointer code (`intune-ebpf/src/parse.rs`) into
//! the same [`IpPacket`] and then calls [`decide`]; userspace parses slices with [`parse_frame`].
//! The differential test runs both on the same frames.

use crate::{
    maps::{Config, DIR_DST, DIR_SRC, MODE_ENFORCE, NO_PORT, NO_RULE, PortSet, RuleRef, port_key},
    outcome::{Outcome, verdict},
    proto::*,
};

/// What the classifier needs of an IP packet, whoever parsed it. Integers and bools only, so
/// all-zero bytes are a valid (empty) packet; aligned so the kernel zeroes it in words.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpPacket {
    pub is_v6: bool,
    /// IPv4 addresses live in the first four bytes.
    pub src: [u8; 16],
    pub dst: [u8; 16],
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
    fn lookup_v4(&self, addr: &[u8; 4]) -> Option<RuleRef>;
    fn lookup_v6(&self, addr: &[u8; 16]) -> Option<RuleRef>;
    fn port_set(&self, id: u32) -> Option<&PortSet>;
    /// `addr` is IPv6, or IPv4 mapped (`::ffff:a.b.c.d`).
    fn is_dns_resolver(&self, addr: &[u8; 16]) -> bool;
    /// An address learned from a DNS answer; `addr` as for `is_dns_resolver`.
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

/// The direction in force on an interface.
#[inline(always)]
pub fn direction<T: Tables>(cfg: &Config, ifindex: u32, tables: &T) -> u32 {
    if cfg.flags & Config::FLAG_PER_IFACE != 0
        && let Some(dir) = tables.iface_direction(ifindex)
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

/// Outcome, rule credited and the key of the port it matched on.
#[inline(always)]
fn decide_ip<T: Tables>(
    pkt: &IpPacket,
    cfg: &Config,
    direction: u32,
    t: &T,
) -> (Outcome, u32, u32) {
    if direction & DIR_DST != 0
        && let Some(rule) = match_address(pkt, cfg, &pkt.dst, pkt.dport, t)
    {
        return (Outcome::Intune, rule, matched_port(pkt, pkt.dport));
    }
    if direction & DIR_SRC != 0
        && let Some(rule) = match_address(pkt, cfg, &pkt.src, pkt.sport, t)
    {
        return (Outcome::Intune, rule, matched_port(pkt, pkt.sport));
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
    if is_infrastructure(pkt, cfg, t) {
        return (Outcome::Infrastructure, NO_RULE, NO_PORT);
    }
    if cfg.mode == MODE_ENFORCE {
        (Outcome::Dropped, NO_RULE, NO_PORT)
    } else {
        (Outcome::UnmatchedPassed, NO_RULE, NO_PORT)
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

/// The rule an address (and port) of the packet hits: any port of a later fragment, else the
/// port must be in the most specific prefix's effective port set, or in the ports of the name
/// the address was learned under.
#[inline(always)]
fn match_address<T: Tables>(
    pkt: &IpPacket,
    cfg: &Config,
    addr: &[u8; 16],
    port: u16,
    t: &T,
) -> Option<u32> {
    let listed = if pkt.is_v6 {
        t.lookup_v6(addr)
    } else {
        t.lookup_v4(&[addr[0], addr[1], addr[2], addr[3]])
    };
    if let Some(hit) = listed {
        // An excluded prefix: never Intune, not even a learned address or a later fragment.
        if hit.rule == NO_RULE {
            return None;
        }
        if let Some(rule) = allowed(pkt, hit, port, t) {
            return Some(rule);
        }
    }
    if cfg.flags & Config::FLAG_LEARNED == 0 {
        return None;
    }
    let learned = if pkt.is_v6 {
        t.lookup_learned(addr)
    } else {
        t.lookup_learned(&v4_mapped(addr))
    }?;
    allowed(pkt, learned, port, t)
}

/// The rule of `hit`, if the packet's port is one it allows (a later fragment has none to check).
#[inline(always)]
fn allowed<T: Tables>(pkt: &IpPacket, hit: RuleRef, port: u16, t: &T) -> Option<u32> {
    if pkt.later_fragment {
        return Some(hit.rule);
    }
    if !pkt.has_ports {
        return None;
    }
    let ports = t.port_set(hit.port_set)?;
    if ports.allows(pkt.l4, port) {
        Some(hit.rule)
    } else {
        None
    }
}

#[inline(always)]
fn is_infrastructure<T: Tables>(pkt: &IpPacket, cfg: &Config, t: &T) -> bool {
    if pkt.has_icmp_type {
        return if pkt.is_v6 {
            is_icmpv6_infrastructure(pkt.icmp_type)
        } else {
            is_icmpv4_infrastructure(pkt.icmp_type)
        };
    }
    if !pkt.has_ports {
        return false;
    }
    if is_dhcp(pkt.l4, pkt.sport, pkt.dport) {
        return true;
    }
    (pkt.dport == PORT_DNS && dns_resolver_allowed(pkt, &pkt.dst, cfg, t))
        || (pkt.sport == PORT_DNS && dns_resolver_allowed(pkt, &pkt.src, cfg, t))
}

#[inline(always)]
fn dns_resolver_allowed<T: Tables>(pkt: &IpPacket, addr: &[u8; 16], cfg: &Config, t: &T) -> bool {
    if cfg.flags & Config::FLAG_DNS_ANY != 0 {
        return true;
    }
    if pkt.is_v6 {
        t.is_dns_resolver(addr)
    } else {
        t.is_dns_resolver(&v4_mapped(addr))
    }
}

/// `::ffff:a.b.c.d` from an address whose first four bytes are IPv4.
#[inline(always)]
pub fn v4_mapped(addr: &[u8; 16]) -> [u8; 16] {
    let mut m = [0u8; 16];
    m[10] = 0xff;
    m[11] = 0xff;
    m[12] = addr[0];
    m[13] = addr[1];
    m[14] = addr[2];
    m[15] = addr[3];
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
        direction(cfg, ifindex, tables),
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
        Some(pkt) => Parsed::Ip(pkt),
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
    pkt.src[..4].copy_from_slice(&ip[12..16]);
    pkt.dst[..4].copy_from_slice(&ip[16..20]);
    pkt.l4 = ip[9];
    pkt.later_fragment = be16(ip, 6)? & IPV4_FRAG_OFFSET_MASK != 0;
    if !pkt.later_fragment {
        // The transport header must lie inside the IP packet, not in Ethernet padding.
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
            return Some(());
        }
        _ => return Some(()),
    }
    pkt.sport = be16(l4, 0)?;
    pkt.dport = be16(l4, 2)?;
    pkt.has_ports = true;
    Some(())
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
        fn lookup_v4(&self, addr: &[u8; 4]) -> Option<RuleRef> {
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
        fn is_dns_resolver(&self, _: &[u8; 16]) -> bool {
            false
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
}
