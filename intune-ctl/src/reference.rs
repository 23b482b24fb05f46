//! The rule set and policy answering the classifier's lookups the way the kernel maps do: with
//! `intune_common::classify`, a complete userspace reference of the kernel program.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use intune_common::{
    classify::{Decision, Tables, classify},
    maps::{Config, PortSet, RuleRef},
};

use crate::{policy::Policy, rules::RuleSet};

pub struct ReferenceTables<'a> {
    rules: &'a RuleSet,
    bitmaps: HashMap<u32, PortSet>,
    resolvers: HashSet<[u8; 16]>,
    iface: HashMap<u32, u32>,
    learned: HashMap<[u8; 16], RuleRef>,
    config: Config,
}

impl<'a> ReferenceTables<'a> {
    pub fn new(rules: &'a RuleSet, policy: &Policy) -> ReferenceTables<'a> {
        ReferenceTables {
            rules,
            bitmaps: rules.port_set_bitmaps().collect(),
            resolvers: policy.dns_resolver_keys().into_iter().collect(),
            iface: policy
                .iface_directions
                .iter()
                .map(|(i, d)| (*i, d.bits()))
                .collect(),
            learned: HashMap::new(),
            config: policy.config(rules, false),
        }
    }

    /// With these learned addresses (keys as the kernel's `LEARNED` map has them) in force.
    pub fn with_learned(mut self, learned: HashMap<[u8; 16], RuleRef>) -> Self {
        self.learned = learned;
        self.config.flags |= Config::FLAG_LEARNED;
        self
    }

    /// What the kernel program decides for `frame` arriving on `ifindex`.
    pub fn classify(&self, frame: &[u8], ifindex: u32) -> Decision {
        classify(frame, ifindex, &self.config, self)
    }

    fn rule_ref(&self, addr: IpAddr) -> Option<RuleRef> {
        self.rules.lookup(addr).map(|r| r.rule_ref())
    }
}

impl Tables for ReferenceTables<'_> {
    fn lookup_v4(&self, addr: &[u8; 4]) -> Option<RuleRef> {
        self.rule_ref(IpAddr::V4(Ipv4Addr::from(*addr)))
    }

    fn lookup_v6(&self, addr: &[u8; 16]) -> Option<RuleRef> {
        self.rule_ref(IpAddr::V6(Ipv6Addr::from(*addr)))
    }

    fn port_set(&self, id: u32) -> Option<&PortSet> {
        self.bitmaps.get(&id)
    }

    fn is_dns_resolver(&self, addr: &[u8; 16]) -> bool {
        self.resolvers.contains(addr)
    }

    fn iface_direction(&self, ifindex: u32) -> Option<u32> {
        self.iface.get(&ifindex).copied()
    }

    fn lookup_learned(&self, addr: &[u8; 16]) -> Option<RuleRef> {
        self.learned.get(addr).copied()
    }
}
