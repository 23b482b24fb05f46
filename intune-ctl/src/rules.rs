//! The rule set: every prefix of the selected endpoint sets with the sets that list it, the ports
//! it allows (the union over all prefixes that cover it) and the rule index its hits count under.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use intune_common::{
    classify::IpPacket,
    maps::{DIR_DST, DIR_SRC, MAX_PORT_SETS, MAX_RULES, PortSet, RuleRef},
};
use ipnet::IpNet;

use crate::endpoints::{EndpointSet, Ports};

/// What a rule matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    Prefix(IpNet),
    /// The port-only rule: its ports hold for any address.
    AnyAddress,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Prefix(net) => write!(f, "{net}"),
            Target::AnyAddress => f.write_str("any"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Rule {
    pub target: Target,
    /// The endpoint sets that list this prefix, each with its own ports.
    pub sets: Vec<(u32, Ports)>,
    /// Ports allowed to an address whose most specific prefix is this one.
    pub effective: Ports,
    /// Index into [`RuleSet::port_sets`].
    pub port_set: u32,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct RuleSetOptions {
    /// Include port-only sets (Delivery Optimization peering), which hold for any address.
    pub port_only: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("{0} rules exceed the program's capacity of {MAX_RULES}")]
    TooManyRules(usize),
    #[error("{0} distinct port sets exceed the program's capacity of {MAX_PORT_SETS}")]
    TooManyPortSets(usize),
}

#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    /// Distinct effective port sets.
    pub port_sets: Vec<Ports>,
    /// The port-only rule's index, when there is one.
    pub port_only: Option<u32>,
    /// Prefix -> rule index.
    index: HashMap<IpNet, u32>,
    /// Prefix lengths in use, longest first, per family.
    v4_lens: Vec<u8>,
    v6_lens: Vec<u8>,
}

impl RuleSet {
    pub fn build(sets: &[EndpointSet], opts: RuleSetOptions) -> Result<RuleSet, RulesError> {
        RuleSet::build_with_capacity(sets, opts, MAX_RULES as usize)
    }

    /// As [`RuleSet::build`], for a program loaded with room for `max_rules` rules.
    pub fn build_with_capacity(
        sets: &[EndpointSet],
        opts: RuleSetOptions,
        max_rules: usize,
    ) -> Result<RuleSet, RulesError> {
        // Prefix -> set id -> ports; BTreeMap for a stable rule order.
        let mut listed: BTreeMap<IpNet, BTreeMap<u32, Ports>> = BTreeMap::new();
        let mut any_address: BTreeMap<u32, Ports> = BTreeMap::new();
        for set in sets {
            if set.any_address {
                if opts.port_only {
                    any_address.insert(set.id, set.ports.clone());
                }
                continue;
            }
            for net in &set.ips {
                let entry = listed.entry(*net).or_default().entry(set.id).or_default();
                *entry = entry.union(&set.ports);
            }
        }
        let count = listed.len() + usize::from(!any_address.is_empty());
        if count > max_rules {
            return Err(RulesError::TooManyRules(count));
        }

        let mut rs = RuleSet::default();
        for (i, (net, by_set)) in listed.into_iter().enumerate() {
            rs.index.insert(net, i as u32);
            rs.rules.push(Rule {
                target: Target::Prefix(net),
                sets: by_set.into_iter().collect(),
                effective: Ports::default(),
                port_set: 0,
            });
        }
        let lens = |v6: bool| {
            let mut l: Vec<u8> = rs
                .index
                .keys()
                .filter(|n| matches!(n, IpNet::V6(_)) == v6)
                .map(IpNet::prefix_len)
                .collect();
            l.sort_unstable_by(|a, b| b.cmp(a));
            l.dedup();
            l
        };
        rs.v4_lens = lens(false);
        rs.v6_lens = lens(true);

        let mut port_set_ids: HashMap<Ports, u32> = HashMap::new();
        let mut intern = |ports: Ports, port_sets: &mut Vec<Ports>| -> u32 {
            *port_set_ids.entry(ports.clone()).or_insert_with(|| {
                port_sets.push(ports);
                (port_sets.len() - 1) as u32
            })
        };
        for i in 0..rs.rules.len() {
            let mut effective = Ports::default();
            for c in rs.covering(i as u32) {
                for (_, ports) in &rs.rules[c as usize].sets {
                    effective = effective.union(ports);
                }
            }
            rs.rules[i].port_set = intern(effective.clone(), &mut rs.port_sets);
            rs.rules[i].effective = effective;
        }
        if !any_address.is_empty() {
            let effective = any_address
                .values()
                .fold(Ports::default(), |acc, p| acc.union(p));
            let port_set = intern(effective.clone(), &mut rs.port_sets);
            rs.port_only = Some(rs.rules.len() as u32);
            rs.rules.push(Rule {
                target: Target::AnyAddress,
                sets: any_address.into_iter().collect(),
                effective,
                port_set,
            });
        }
        if rs.port_sets.len() > MAX_PORT_SETS as usize {
            return Err(RulesError::TooManyPortSets(rs.port_sets.len()));
        }
        Ok(rs)
    }

    fn lens(&self, addr: &IpAddr) -> &[u8] {
        match addr {
            IpAddr::V4(_) => &self.v4_lens,
            IpAddr::V6(_) => &self.v6_lens,
        }
    }

    /// Every rule whose prefix covers `addr` (rule indices), most specific first.
    fn matching(&self, addr: IpAddr, max_len: u8) -> impl Iterator<Item = u32> + '_ {
        self.lens(&addr)
            .iter()
            .filter(move |&&len| len <= max_len)
            .filter_map(move |&len| {
                let net = IpNet::new(addr, len).ok()?.trunc();
                self.index.get(&net).copied()
            })
    }

    /// The most specific rule whose prefix covers `addr`: the one the kernel credits.
    pub fn lookup(&self, addr: IpAddr) -> Option<u32> {
        self.matching(addr, 128).next()
    }

    /// The rule and every rule whose prefix covers it, most specific first.
    pub fn covering(&self, rule: u32) -> Vec<u32> {
        match self.rules[rule as usize].target {
            Target::Prefix(net) => self.matching(net.addr(), net.prefix_len()).collect(),
            Target::AnyAddress => vec![rule],
        }
    }

    /// The endpoint sets that allow a packet credited to `rule`: among the rule and the rules
    /// covering it, the sets whose ports admit `port` of `l4`, or every set when the packet has
    /// no port to check (a later fragment).
    pub fn allowing_sets(&self, rule: u32, l4: u8, port: Option<u16>) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .covering(rule)
            .into_iter()
            .flat_map(|r| self.rules[r as usize].sets.iter())
            .filter(|(_, ports)| port.is_none_or(|p| ports.admits(l4, p)))
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The endpoint sets that allow `pkt`, credited to `rule` by a program matching in
    /// `direction` (direction bits): the address side that hit decides which port counts.
    pub fn sets_for_packet(&self, pkt: &IpPacket, direction: u32, rule: u32) -> Vec<u32> {
        let Some(r) = self.rules.get(rule as usize) else {
            return Vec::new();
        };
        let addr = |a: &[u8; 16]| -> IpAddr {
            if pkt.is_v6 {
                IpAddr::V6(Ipv6Addr::from(*a))
            } else {
                IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
            }
        };
        let sides = [
            (DIR_DST, &pkt.dst, pkt.dport),
            (DIR_SRC, &pkt.src, pkt.sport),
        ];
        for (bit, a, port) in sides {
            if direction & bit == 0 {
                continue;
            }
            let hit = match r.target {
                Target::AnyAddress => pkt.has_ports && r.effective.admits(pkt.l4, port),
                Target::Prefix(_) => {
                    self.lookup(addr(a)) == Some(rule)
                        && (pkt.later_fragment
                            || (pkt.has_ports && r.effective.admits(pkt.l4, port)))
                }
            };
            if hit {
                let port = (!pkt.later_fragment).then_some(port);
                return self.allowing_sets(rule, pkt.l4, port);
            }
        }
        Vec::new()
    }

    /// The kernel's LPM entries: (prefix, value).
    pub fn lpm_entries(&self) -> impl Iterator<Item = (IpNet, RuleRef)> + '_ {
        self.rules
            .iter()
            .enumerate()
            .filter_map(|(i, r)| match r.target {
                Target::Prefix(net) => Some((
                    net,
                    RuleRef {
                        rule: i as u32,
                        port_set: r.port_set,
                    },
                )),
                Target::AnyAddress => None,
            })
    }

    /// The kernel's port-set bitmaps, by port set id.
    pub fn port_set_bitmaps(&self) -> Vec<PortSet> {
        self.port_sets.iter().map(Ports::to_port_set).collect()
    }

    pub fn prefix_count(&self) -> usize {
        self.index.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoints::parse_endpoint_sets;
    use intune_common::proto::{IPPROTO_TCP, IPPROTO_UDP};

    fn sets() -> Vec<EndpointSet> {
        parse_endpoint_sets(
            r#"[
            {"id": 1, "serviceArea": "MEM", "category": "Default", "ips": ["198.51.100.0/24"], "tcpPorts": "443"},
            {"id": 2, "serviceArea": "MEM", "category": "Default", "ips": ["198.51.100.128/25", "2001:db8::/32"], "tcpPorts": "80"},
            {"id": 3, "serviceArea": "MEM", "category": "Default", "ips": ["198.51.100.128/25"], "udpPorts": "123"},
            {"id": 4, "serviceArea": "MEM", "category": "Default", "tcpPorts": "7680", "udpPorts": "3544", "anyAddress": true}
        ]"#,
        )
        .unwrap()
    }

    #[test]
    fn nested_prefixes_get_the_union_of_covering_ports() {
        let rs = RuleSet::build(&sets(), RuleSetOptions::default()).unwrap();
        let inner = rs.lookup("198.51.100.200".parse().unwrap()).unwrap();
        let outer = rs.lookup("198.51.100.1".parse().unwrap()).unwrap();
        assert_eq!(
            rs.rules[inner as usize].target.to_string(),
            "198.51.100.128/25"
        );
        assert_eq!(
            rs.rules[inner as usize].effective.to_string(),
            "TCP 80,443; UDP 123"
        );
        assert_eq!(rs.rules[outer as usize].effective.to_string(), "TCP 443");
        assert_eq!(rs.allowing_sets(inner, IPPROTO_TCP, Some(443)), [1]);
        assert_eq!(rs.allowing_sets(inner, IPPROTO_TCP, Some(80)), [2]);
        assert_eq!(rs.allowing_sets(inner, IPPROTO_UDP, Some(123)), [3]);
        assert_eq!(rs.allowing_sets(inner, IPPROTO_TCP, None), [1, 2, 3]);
        assert!(rs.lookup("192.0.2.1".parse().unwrap()).is_none());
        assert!(rs.lookup("2001:db8:1::1".parse().unwrap()).is_some());
        assert!(rs.port_only.is_none());
    }

    #[test]
    fn port_only_rules_come_when_asked() {
        let rs = RuleSet::build(&sets(), RuleSetOptions { port_only: true }).unwrap();
        let rule = rs.port_only.unwrap();
        assert_eq!(
            rs.rules[rule as usize].effective.to_string(),
            "TCP 7680; UDP 3544"
        );
        assert_eq!(rs.allowing_sets(rule, IPPROTO_UDP, Some(3544)), [4]);
    }

    #[test]
    fn capacity_is_enforced() {
        assert!(matches!(
            RuleSet::build_with_capacity(&sets(), RuleSetOptions::default(), 2),
            Err(RulesError::TooManyRules(3))
        ));
    }
}
