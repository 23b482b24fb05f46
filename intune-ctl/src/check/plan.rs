//! What `check` asks about, per endpoint set (required sets first): its exact names, names
//! that stand in for its wildcards (learned under them, or the article's examples), and its
//! listed prefixes through their first and last address; each later on every port of the set.

use std::{collections::BTreeMap, net::IpAddr};

use ipnet::IpNet;
use serde::Serialize;

use super::Proto;
use crate::{
    daemon::state::LearnedAddress,
    sources::{
        endpoints::{EndpointSet, Ports},
        learn::patterns::{matches, normalize},
    },
};

/// Names the article gives in its prose as examples under a wildcard (the region-dependent
/// Win32 app cache), beside those it lists as names of their own.
const PROSE_EXAMPLES: &[&str] = &["sparkcdneus2.azureedge.net", "sparkcdnwus2.azureedge.net"];

/// How a checked name or address came to be checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Kind {
    /// An exact name of the set, resolved now.
    Name,
    /// A name under the set's wildcard that the article gives as an example, resolved now.
    Example { wildcard: String },
    /// A name a device asked for under the wildcard, at the address it was learned at.
    Learned { wildcard: String },
    /// A wildcard with nothing to try: no learned name and no example under it.
    Wildcard,
    /// A listed prefix, through its first and last address.
    Prefix { prefix: String },
}

/// What to narrow the check to (`--set`, `--name`); empty: everything.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub sets: Vec<u32>,
    pub names: Vec<String>,
}

/// A name of a set to look up (unless its addresses are known: a learned name's).
#[derive(Clone, Debug)]
pub struct NameCheck {
    pub set: u32,
    pub required: bool,
    pub name: String,
    pub kind: Kind,
    pub known: Vec<IpAddr>,
}

/// An address of a listed prefix.
#[derive(Clone, Debug)]
pub struct AddressCheck {
    pub set: u32,
    pub required: bool,
    pub prefix: IpNet,
    pub address: IpAddr,
}

#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub names: Vec<NameCheck>,
    pub addresses: Vec<AddressCheck>,
    /// Each set's ports, by set id.
    pub ports: BTreeMap<u32, Ports>,
    /// The sets checked, in the report's order: required first, then by id.
    pub order: Vec<u32>,
}

impl Plan {
    /// The plan for `sets` (the effective list), with the addresses learned so far.
    pub fn of(sets: &[EndpointSet], learned: &[LearnedAddress], filter: &Filter) -> Plan {
        let mut chosen: Vec<&EndpointSet> = sets
            .iter()
            .filter(|s| filter.sets.is_empty() || filter.sets.contains(&s.id))
            .collect();
        chosen.sort_by_key(|s| (!s.required, s.id));
        let wanted: Vec<String> = filter.names.iter().map(|n| normalize(n)).collect();
        let exact: Vec<String> = sets
            .iter()
            .flat_map(|s| s.urls.iter().map(|u| normalize(u)))
            .filter(|u| !u.contains('*'))
            .collect();
        let mut plan = Plan::default();
        for set in chosen {
            plan.ports.insert(set.id, set.ports);
            plan.order.push(set.id);
            let before = plan.names.len();
            plan.add_names(set, &exact, learned);
            if !wanted.is_empty() {
                let mut i = before;
                while i < plan.names.len() {
                    if wanted.contains(&plan.names[i].name) {
                        i += 1;
                    } else {
                        plan.names.remove(i);
                    }
                }
                continue;
            }
            for net in &set.ips {
                for address in ends(*net) {
                    plan.addresses.push(AddressCheck {
                        set: set.id,
                        required: set.required,
                        prefix: *net,
                        address,
                    });
                }
            }
        }
        plan
    }

    fn add_names(&mut self, set: &EndpointSet, exact: &[String], learned: &[LearnedAddress]) {
        let urls: Vec<String> = set.urls.iter().map(|u| normalize(u)).collect();
        let wildcards: Vec<&String> = urls.iter().filter(|u| u.contains('*')).collect();
        let check = |name: String, kind: Kind, known: Vec<IpAddr>| NameCheck {
            set: set.id,
            required: set.required,
            name,
            kind,
            known,
        };
        let mut taken: Vec<String> = Vec::new();
        for url in urls.iter().filter(|u| !u.contains('*')) {
            // A name of the set under one of its own wildcards is the article's example of it.
            let kind = match wildcards.iter().find(|w| matches(w, url)) {
                Some(w) => Kind::Example {
                    wildcard: (*w).clone(),
                },
                None => Kind::Name,
            };
            if !taken.contains(url) {
                taken.push(url.clone());
                self.names.push(check(url.clone(), kind, Vec::new()));
            }
        }
        for wildcard in wildcards {
            let mut tried = false;
            let examples = exact
                .iter()
                .map(String::as_str)
                .chain(PROSE_EXAMPLES.iter().copied());
            for name in examples.filter(|n| matches(wildcard, n)) {
                tried = true;
                if !taken.iter().any(|t| t == name) {
                    taken.push(name.to_owned());
                    let kind = Kind::Example {
                        wildcard: wildcard.clone(),
                    };
                    self.names.push(check(name.to_owned(), kind, Vec::new()));
                }
            }
            let mut by_name: BTreeMap<&str, Vec<IpAddr>> = BTreeMap::new();
            for l in learned
                .iter()
                .filter(|l| l.pattern == *wildcard && l.endpoint_sets.contains(&set.id))
            {
                by_name.entry(&l.asked).or_default().push(l.address);
            }
            for (name, addresses) in by_name {
                tried = true;
                let kind = Kind::Learned {
                    wildcard: wildcard.clone(),
                };
                self.names.push(check(normalize(name), kind, addresses));
            }
            if !tried {
                self.names
                    .push(check(wildcard.clone(), Kind::Wildcard, Vec::new()));
            }
        }
    }
}

/// A prefix's first and last address (one for a host route).
fn ends(net: IpNet) -> Vec<IpAddr> {
    let (first, last) = (net.network(), net.broadcast());
    if first == last {
        vec![first]
    } else {
        vec![first, last]
    }
}

/// The ports a set's traffic is checked on: both ends of every range.
pub fn ports_to_try(ports: &Ports) -> Vec<(Proto, u16)> {
    let mut out = Vec::new();
    for (proto, ranges) in [(Proto::Tcp, &ports.tcp), (Proto::Udp, &ports.udp)] {
        for &(lo, hi) in ranges.ranges() {
            out.push((proto, lo));
            if hi != lo {
                out.push((proto, hi));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::endpoints::{Source, parse_endpoint_sets};

    fn sets() -> Vec<EndpointSet> {
        parse_endpoint_sets(
            r#"[{"id": 2, "serviceArea": "MEM", "category": "Default", "tcpPorts": "443",
                 "urls": ["*.cdn.test"], "ips": ["198.51.100.7/32"]},
                {"id": 1, "serviceArea": "MEM", "category": "Allow", "required": true,
                 "tcpPorts": "80,443", "udpPorts": "3478-3481",
                 "urls": ["*.manage.test", "manage.test", "Enroll.Manage.test"],
                 "ips": ["192.0.2.0/24"]},
                {"id": 3, "serviceArea": "MEM", "category": "Default", "tcpPorts": "443",
                 "urls": ["*.quiet.test"]}]"#,
            Source::File,
        )
        .unwrap()
    }

    fn learned(asked: &str, pattern: &str, set: u32, address: &str) -> LearnedAddress {
        LearnedAddress {
            address: address.parse().unwrap(),
            index: 9,
            asked: asked.into(),
            pattern: pattern.into(),
            endpoint_sets: vec![set],
            expires_at: String::new(),
        }
    }

    #[test]
    fn required_sets_first_with_names_examples_learned_names_and_prefix_ends() {
        let learned = [learned("a.cdn.test", "*.cdn.test", 2, "203.0.113.5")];
        let plan = Plan::of(&sets(), &learned, &Filter::default());
        let names: Vec<(u32, &str, &Kind)> = plan
            .names
            .iter()
            .map(|n| (n.set, n.name.as_str(), &n.kind))
            .collect();
        let under = |w: &str| Kind::Example { wildcard: w.into() };
        assert_eq!(
            names,
            vec![
                (1, "manage.test", &Kind::Name),
                (1, "enroll.manage.test", &under("*.manage.test")),
                (
                    2,
                    "a.cdn.test",
                    &Kind::Learned {
                        wildcard: "*.cdn.test".into()
                    }
                ),
                (3, "*.quiet.test", &Kind::Wildcard),
            ]
        );
        assert_eq!(
            plan.names[2].known,
            vec!["203.0.113.5".parse::<IpAddr>().unwrap()]
        );
        let addrs: Vec<(u32, String)> = plan
            .addresses
            .iter()
            .map(|a| (a.set, a.address.to_string()))
            .collect();
        assert_eq!(
            addrs,
            vec![
                (1, "192.0.2.0".into()),
                (1, "192.0.2.255".into()),
                (2, "198.51.100.7".into())
            ]
        );
        assert_eq!(
            ports_to_try(&plan.ports[&1]),
            vec![
                (Proto::Tcp, 80),
                (Proto::Tcp, 443),
                (Proto::Udp, 3478),
                (Proto::Udp, 3481)
            ]
        );
    }

    #[test]
    fn narrowed_to_a_set_or_a_name() {
        let only_two = Filter {
            sets: vec![2],
            names: vec![],
        };
        let plan = Plan::of(&sets(), &[], &only_two);
        assert!(plan.names.iter().all(|n| n.set == 2));
        assert_eq!(plan.names[0].kind, Kind::Wildcard);
        assert_eq!(plan.addresses.len(), 1);
        let one_name = Filter {
            sets: vec![],
            names: vec!["MANAGE.test.".into()],
        };
        let plan = Plan::of(&sets(), &[], &one_name);
        let names: Vec<&str> = plan.names.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, vec!["manage.test"]);
        assert!(plan.addresses.is_empty(), "a name filter checks no prefix");
    }
}
