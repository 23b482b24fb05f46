//! The filter's settings: policy mode, matching direction, the infrastructure's addresses,
//! per-interface directions, the gateway's own traffic; and the entries the kernel reads.

use std::{collections::HashMap, net::IpAddr};

use intune_common::{
    maps::{
        AllowEntry, Config, DIR_BOTH, DIR_DST, DIR_SRC, MAX_ALLOW_RANGES, MODE_ENFORCE,
        MODE_MONITOR, ROLE_BROADCAST, ROLE_DHCP_SERVER, ROLE_DNS_RESOLVER, ROLE_LOCAL,
    },
    proto::{IPPROTO_TCP, IPPROTO_UDP},
};
use ipnet::IpNet;

use crate::ruleset::rules::RuleSet;

#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Pass everything, count.
    #[default]
    Monitor,
    /// Pass Intune traffic and the infrastructure a network needs; drop the rest.
    Enforce,
}

#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Match the destination: traffic from devices to Intune.
    #[default]
    Dst,
    /// Match the source: return traffic from Intune.
    Src,
    /// Either.
    Both,
}

impl Direction {
    pub fn bits(self) -> u32 {
        match self {
            Direction::Dst => DIR_DST,
            Direction::Src => DIR_SRC,
            Direction::Both => DIR_BOTH,
        }
    }
}

/// The protocol of a `[[policy.allow]]` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AllowProtocol {
    Tcp,
    Udp,
    /// Every protocol and port (ICMP too).
    Any,
}

/// A service at a prefix that passes as local: packets to the prefix on one of `ports`, and
/// its answers from them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowRule {
    pub prefix: IpNet,
    pub protocol: AllowProtocol,
    /// Inclusive ranges; empty means every port of the protocol.
    pub ports: Vec<(u16, u16)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AllowError {
    #[error("{0}: at most {MAX_ALLOW_RANGES} port ranges for one prefix, not {1}")]
    TooManyRanges(IpNet, usize),
    #[error("{0}: protocol \"any\" takes no ports (it allows every one)")]
    PortsWithAny(IpNet),
    #[error("{0}: a port range runs backwards ({1}-{2})")]
    Backwards(IpNet, u16, u16),
}

impl AllowRule {
    pub fn new(
        prefix: IpNet,
        protocol: AllowProtocol,
        ports: Vec<(u16, u16)>,
    ) -> Result<AllowRule, AllowError> {
        let prefix = prefix.trunc();
        if protocol == AllowProtocol::Any && !ports.is_empty() {
            return Err(AllowError::PortsWithAny(prefix));
        }
        if let Some((a, b)) = ports.iter().find(|(a, b)| a > b) {
            return Err(AllowError::Backwards(prefix, *a, *b));
        }
        Ok(AllowRule {
            prefix,
            protocol,
            ports,
        })
    }

    fn ranges(&self) -> Vec<AllowRange> {
        let l4 = match self.protocol {
            AllowProtocol::Tcp => IPPROTO_TCP,
            AllowProtocol::Udp => IPPROTO_UDP,
            AllowProtocol::Any => return vec![(0, 0, u16::MAX)],
        };
        if self.ports.is_empty() {
            return vec![(l4, 0, u16::MAX)];
        }
        self.ports.iter().map(|(a, b)| (l4, *a, *b)).collect()
    }
}

/// (protocol number or 0 for any, first port, last port).
type AllowRange = (u8, u16, u16);

/// The `ALLOW_V4` / `ALLOW_V6` entries: the ranges of every rule on a prefix together.
pub fn allow_entries(rules: &[AllowRule]) -> Result<Vec<(IpNet, AllowEntry)>, AllowError> {
    let mut by_prefix: Vec<(IpNet, Vec<AllowRange>)> = Vec::new();
    for rule in rules {
        match by_prefix.iter_mut().find(|(p, _)| *p == rule.prefix) {
            Some((_, ranges)) => ranges.extend(rule.ranges()),
            None => by_prefix.push((rule.prefix, rule.ranges())),
        }
    }
    by_prefix
        .into_iter()
        .map(|(prefix, ranges)| {
            if ranges.len() > MAX_ALLOW_RANGES {
                return Err(AllowError::TooManyRanges(prefix, ranges.len()));
            }
            let mut e = AllowEntry {
                ranges: ranges.len() as u8,
                ..AllowEntry::default()
            };
            for (i, (l4, first, last)) in ranges.into_iter().enumerate() {
                (e.l4[i], e.first[i], e.last[i]) = (l4, first, last);
            }
            Ok((prefix, e))
        })
        .collect()
}

#[derive(Clone, Debug)]
pub struct Policy {
    pub mode: Mode,
    /// Direction of interfaces without their own.
    pub direction: Direction,
    /// Per-interface directions, by ifindex.
    pub iface_directions: Vec<(u32, Direction)>,
    /// Resolvers DNS may go to in enforce mode; empty means any.
    pub dns_resolvers: Vec<IpAddr>,
    /// DHCP servers and relays DHCP may go to besides the broadcast.
    pub dhcp_servers: Vec<IpAddr>,
    /// Traffic to the gateway's own addresses, link-local multicast and broadcast pass.
    pub allow_local: bool,
    /// Services that pass as local (`[[policy.allow]]`).
    pub allow: Vec<AllowRule>,
}

impl Policy {
    /// The policy `[policy]` asks for; per-interface directions are added by whoever knows the
    /// interfaces' indices.
    pub fn of(s: &crate::settings::PolicySettings) -> Policy {
        Policy {
            mode: s.mode,
            direction: s.direction,
            iface_directions: Vec::new(),
            dns_resolvers: s.dns_resolvers.clone(),
            dhcp_servers: s.dhcp_servers.clone(),
            allow_local: s.allow_local,
            allow: s.allow.clone(),
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            mode: Mode::Monitor,
            direction: Direction::Dst,
            iface_directions: Vec::new(),
            dns_resolvers: Vec::new(),
            dhcp_servers: Vec::new(),
            allow_local: true,
            allow: Vec::new(),
        }
    }
}

impl Policy {
    /// The kernel's `Config` for this policy and rule set.
    pub fn config(&self, rules: &RuleSet, trace: bool) -> Config {
        let mut flags = 0;
        if trace {
            flags |= Config::FLAG_TRACE;
        }
        if self.dns_resolvers.is_empty() {
            flags |= Config::FLAG_DNS_ANY;
        }
        if !self.iface_directions.is_empty() {
            flags |= Config::FLAG_PER_IFACE;
        }
        if self.allow_local {
            flags |= Config::FLAG_ALLOW_LOCAL;
        }
        if !self.allow.is_empty() {
            flags |= Config::FLAG_POLICY_ALLOW;
        }
        let (port_only_rule, port_only_set) = match rules.port_only {
            Some(index) => match rules.rule(index) {
                Some(rule) => {
                    flags |= Config::FLAG_PORT_ONLY;
                    (index, rule.port_set)
                }
                None => (0, 0),
            },
            None => (0, 0),
        };
        Config {
            mode: match self.mode {
                Mode::Monitor => MODE_MONITOR,
                Mode::Enforce => MODE_ENFORCE,
            },
            direction: self.direction.bits(),
            flags,
            port_only_set,
            port_only_rule,
            _pad: 0,
            // The datapath sets its own, and the bits of the roles it holds.
            name_hash_key: 0,
            role_bytes: [0; 4],
        }
    }

    /// What an admin must hear about this policy before relying on it.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.mode == Mode::Enforce && self.dns_resolvers.is_empty() {
            out.push(
                "enforce mode with no dns_resolvers: DNS passes to and from any address, so \
                 any DNS server (or a tunnel on port 53) is reachable; set [policy] \
                 dns_resolvers (--dns-resolver) to the resolvers devices use"
                    .to_string(),
            );
        }
        out
    }

    /// The `ADDR_ROLES` entries: the resolvers and DHCP servers, and with `local` (the
    /// gateway's interface addresses) each address and its IPv4 subnet's broadcast.
    pub fn address_roles(&self, local: &[IpNet]) -> HashMap<[u8; 16], u32> {
        let mut roles = HashMap::new();
        let mut add = |addr: IpAddr, role: u32| *roles.entry(ipv6_key(addr)).or_insert(0) |= role;
        for a in &self.dns_resolvers {
            add(*a, ROLE_DNS_RESOLVER);
        }
        for a in &self.dhcp_servers {
            add(*a, ROLE_DHCP_SERVER);
        }
        for net in local {
            add(net.addr(), ROLE_LOCAL);
            // A /31 or /32 has no broadcast; its "broadcast" is an address of the link.
            if let IpNet::V4(n) = net
                && n.prefix_len() < 31
            {
                add(IpAddr::V4(n.broadcast()), ROLE_BROADCAST);
            }
        }
        roles
    }
}

/// An address as a 16-byte key: IPv6 as is, IPv4 as `::ffff:a.b.c.d`.
pub fn ipv6_key(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}
