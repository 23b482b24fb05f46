//! The rule set and policy answering the classifier's lookups the way the kernel maps do: with
//! `intune_common::classify`, a complete userspace reference of the kernel program.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use intune_common::{
    classify::{Decision, Tables, classify},
    maps::{AllowEntry, Config, DrainEntry, PortSet, RuleRef},
};
use ipnet::IpNet;

use crate::ruleset::{
    policy::{AllowError, Policy, allow_entries},
    rules::RuleSet,
};

pub struct ReferenceTables<'a> {
    rules: &'a RuleSet,
    bitmaps: HashMap<u32, PortSet>,
    policy: Policy,
    roles: HashMap<[u8; 16], u32>,
    allow: Vec<(IpNet, AllowEntry)>,
    iface: HashMap<u32, u32>,
    learned: HashMap<[u8; 16], RuleRef>,
    drain: Vec<(IpNet, DrainEntry)>,
    config: Config,
}

impl<'a> ReferenceTables<'a> {
    /// # Panics
    /// When `policy`'s `[[policy.allow]]` entries do not fit the kernel's (see
    /// [`ReferenceTables::try_new`]).
    pub fn new(rules: &'a RuleSet, policy: &Policy) -> ReferenceTables<'a> {
        match Self::try_new(rules, policy) {
            Ok(t) => t,
            Err(e) => panic!("the policy's allow entries: {e}"),
        }
    }

    pub fn try_new(rules: &'a RuleSet, policy: &Policy) -> Result<ReferenceTables<'a>, AllowError> {
        Ok(ReferenceTables::marked(ReferenceTables {
            rules,
            bitmaps: rules.port_set_bitmaps().collect(),
            policy: policy.clone(),
            roles: policy.address_roles(&[]),
            allow: allow_entries(&policy.allow)?,
            iface: policy
                .iface_directions
                .iter()
                .map(|(i, d)| (*i, d.bits()))
                .collect(),
            learned: HashMap::new(),
            drain: Vec::new(),
            config: policy.config(rules, false),
        }))
    }

    /// The config's role bits for the roles held, as the datapath writes them.
    fn marked(mut self) -> Self {
        self.config.role_bytes = [0; 4];
        for key in self.roles.keys() {
            self.config.mark_role(key);
        }
        self
    }

    /// With these prefixes draining (as the daemon drains what leaves its lists).
    pub fn with_draining(mut self, drain: Vec<(IpNet, DrainEntry)>) -> Self {
        self.drain = drain;
        self.config.flags |= Config::FLAG_DRAINING;
        self
    }

    /// With the gateway's own interface addresses (as the daemon follows them) in force.
    pub fn with_local(mut self, local: &[IpNet]) -> Self {
        self.roles = self.policy.address_roles(local);
        self.marked()
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
        self.rules
            .lookup(addr)
            .map(super::ruleset::rules::Rule::rule_ref)
    }

    /// As the kernel's LPM trie answers: the longest prefix holding `addr`.
    fn most_specific_allow(&self, addr: IpAddr) -> Option<&AllowEntry> {
        self.allow
            .iter()
            .filter(|(net, _)| net.contains(&addr))
            .max_by_key(|(net, _)| net.prefix_len())
            .map(|(_, e)| e)
    }
}

impl Tables for ReferenceTables<'_> {
    fn lookup_v4(&self, addr: &[u8; 16]) -> Option<RuleRef> {
        self.rule_ref(IpAddr::V4(Ipv4Addr::new(
            addr[0], addr[1], addr[2], addr[3],
        )))
    }

    fn lookup_v6(&self, addr: &[u8; 16]) -> Option<RuleRef> {
        self.rule_ref(IpAddr::V6(Ipv6Addr::from(*addr)))
    }

    fn port_set(&self, id: u32) -> Option<&PortSet> {
        self.bitmaps.get(&id)
    }

    fn addr_roles(&self, addr: &[u8; 16]) -> u32 {
        self.roles.get(addr).copied().unwrap_or(0)
    }

    fn lookup_drain(&self, addr: &[u8; 16]) -> Option<&DrainEntry> {
        // Keys are IPv6 or IPv4 mapped, as the kernel's: compare in IPv6 terms.
        let addr = Ipv6Addr::from(*addr);
        self.drain
            .iter()
            .filter(|(net, _)| match net {
                IpNet::V4(n) => addr.to_ipv4_mapped().is_some_and(|a| n.contains(&a)),
                IpNet::V6(n) => n.contains(&addr),
            })
            .max_by_key(|(net, _)| match net {
                IpNet::V4(n) => n.prefix_len() + 96,
                IpNet::V6(n) => n.prefix_len(),
            })
            .map(|(_, e)| e)
    }

    fn lookup_allow_v4(&self, addr: &[u8; 4]) -> Option<&AllowEntry> {
        self.most_specific_allow(IpAddr::V4(Ipv4Addr::from(*addr)))
    }

    fn lookup_allow_v6(&self, addr: &[u8; 16]) -> Option<&AllowEntry> {
        self.most_specific_allow(IpAddr::V6(Ipv6Addr::from(*addr)))
    }

    fn iface_direction(&self, ifindex: u32) -> Option<u32> {
        self.iface.get(&ifindex).copied()
    }

    fn lookup_learned(&self, addr: &[u8; 16]) -> Option<RuleRef> {
        self.learned.get(addr).copied()
    }
}
