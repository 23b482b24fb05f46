//! Wire constants of the protocols the classifier reads, and what a network needs of them.

pub const ETH_HLEN: usize = 14;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88a8;
pub const VLAN_HLEN: usize = 4;
/// Tags beyond this many make a frame malformed: a stack we cannot see through must not pass as
/// "not IP" in enforce mode.
pub const MAX_VLAN_TAGS: usize = 2;

pub const IPV4_MIN_HLEN: usize = 20;
pub const IPV6_HLEN: usize = 40;
pub const IPV4_FRAG_OFFSET_MASK: u16 = 0x1fff;
pub const IPV6_FRAG_OFFSET_MASK: u16 = 0xfff8;

pub const IPPROTO_HOPOPTS: u8 = 0;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ROUTING: u8 = 43;
pub const IPPROTO_FRAGMENT: u8 = 44;
pub const IPPROTO_AH: u8 = 51;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPPROTO_DSTOPTS: u8 = 60;
/// IPv6 extension headers skipped before the transport header; one more makes a frame malformed.
pub const MAX_IPV6_EXT_HEADERS: usize = 6;

/// "tcp", "udp", or "other".
pub const fn l4_name(l4: u8) -> &'static str {
    match l4 {
        IPPROTO_TCP => "tcp",
        IPPROTO_UDP => "udp",
        _ => "other",
    }
}

pub const TCP_MIN_HLEN: usize = 20;
pub const UDP_HLEN: usize = 8;
/// ICMP and ICMPv6: type, code, checksum.
pub const ICMP_MIN_HLEN: usize = 4;

pub const PORT_DNS: u16 = 53;
pub const PORT_DHCP_SERVER: u16 = 67;
pub const PORT_DHCP_CLIENT: u16 = 68;
pub const PORT_DHCPV6_CLIENT: u16 = 546;
pub const PORT_DHCPV6_SERVER: u16 = 547;

#[inline(always)]
pub fn is_ipv6_ext_header(next: u8) -> bool {
    matches!(
        next,
        IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_FRAGMENT | IPPROTO_DSTOPTS | IPPROTO_AH
    )
}

/// ICMPv4 errors: destination unreachable (PMTU discovery), time exceeded, parameter problem.
#[inline(always)]
pub fn is_icmpv4_error(icmp_type: u8) -> bool {
    matches!(icmp_type, 3 | 11 | 12)
}

/// ICMPv6 errors: destination unreachable, packet too big, time exceeded, parameter problem.
#[inline(always)]
pub fn is_icmpv6_error(icmp_type: u8) -> bool {
    matches!(icmp_type, 1..=4)
}

/// Multicast listener discovery (130-132, 143) and neighbour discovery (133-137): IPv6 does
/// not work without them, and they never leave the link.
#[inline(always)]
pub fn is_icmpv6_link_control(icmp_type: u8) -> bool {
    matches!(icmp_type, 130..=137 | 143)
}

/// An ICMP error's own header (type, code, checksum, 4 bytes) before the packet it quotes.
pub const ICMP_ERROR_HLEN: usize = 8;
/// Bytes of the quoted packet's transport header an error carries at least: its ports.
pub const QUOTED_PORTS_LEN: usize = 4;
/// The largest genuine ICMP errors (RFC 1812 4.3.2.3, RFC 4443 2.4): anything longer is a
/// payload in disguise.
pub const ICMPV4_ERROR_MAX_LEN: u16 = 576;
pub const ICMPV6_ERROR_MAX_LEN: u16 = 1280;

/// DHCPv6 All_DHCP_Relay_Agents_and_Servers, `ff02::1:2`, the link-scope address clients use.
pub const DHCPV6_SERVERS_MULTICAST: [u8; 16] = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2];

/// DHCP and DHCPv6, either way.
#[inline(always)]
pub fn is_dhcp(l4: u8, sport: u16, dport: u16) -> bool {
    l4 == IPPROTO_UDP
        && matches!(
            (sport, dport),
            (PORT_DHCP_CLIENT, PORT_DHCP_SERVER)
                | (PORT_DHCP_SERVER, PORT_DHCP_CLIENT)
                | (PORT_DHCPV6_CLIENT, PORT_DHCPV6_SERVER)
                | (PORT_DHCPV6_SERVER, PORT_DHCPV6_CLIENT)
        )
}
