//! The filter's settings: policy mode, matching direction, DNS resolvers, per-interface
//! directions; and the `Config` entry the kernel reads.

use std::net::IpAddr;

use intune_common::maps::{Config, DIR_BOTH, DIR_DST, DIR_SRC, MODE_ENFORCE, MODE_MONITOR};

use crate::rules::RuleSet;

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

#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub mode: Mode,
    /// Direction of interfaces without their own.
    pub direction: Direction,
    /// Per-interface directions, by ifindex.
    pub iface_directions: Vec<(u32, Direction)>,
    /// Resolvers DNS may go to in enforce mode; empty means any.
    pub dns_resolvers: Vec<IpAddr>,
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
        }
    }

    /// Resolver keys as the kernel stores them: IPv6, or IPv4 mapped.
    pub fn dns_resolver_keys(&self) -> Vec<[u8; 16]> {
        self.dns_resolvers.iter().map(|a| ipv6_key(*a)).collect()
    }
}

/// An address as a 16-byte key: IPv6 as is, IPv4 as `::ffff:a.b.c.d`.
pub fn ipv6_key(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}
