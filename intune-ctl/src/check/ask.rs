//! The plan's packets through the live filter: a device's packet to each address on each port
//! of its set (or the answer back, when the filter matches sources only), run by the real
//! program on the pinned maps; a blocked one explained from the rules the daemon installed.

use std::{collections::HashMap, net::IpAddr};

use intune_common::{
    maps::{DIR_DST, MODE_ENFORCE},
    outcome::Outcome as Counted,
};
use ipnet::IpNet;

use super::{
    Finding, Kind, Outcome, Proto, Why,
    plan::{Plan, ports_to_try},
};
use crate::{
    daemon::state::{InstalledRule, LearnedAddress},
    datapath::{
        DatapathError,
        probe::{Probe, device_like, frame},
    },
    ruleset::{listing::Row, rules::Target},
    sources::resolve::NameReport,
};

/// What the filter holds, for naming rules and explaining drops.
pub struct Installed<'a> {
    pub rules: &'a [InstalledRule],
    /// The listing the daemon recorded (prefixes with their ports); empty when none was.
    pub listing: &'a [Row],
    pub learned: &'a [LearnedAddress],
    /// Learning from DNS answers is on: a name under a wildcard is learned when a device asks.
    pub learning: bool,
}

/// The live filter, asked one packet at a time.
pub struct Filter<'a> {
    probe: &'a Probe,
    installed: Installed<'a>,
    /// The filter matches destinations (a device's packet is what it judges).
    matches_dst: bool,
    pub enforcing: bool,
    listing: Vec<(IpNet, &'a Row)>,
    /// The installed rules' targets with their indices, parsed once for every question.
    targets: Vec<(Target, u32)>,
}

impl<'a> Filter<'a> {
    pub fn new(probe: &'a Probe, installed: Installed<'a>) -> Result<Filter<'a>, DatapathError> {
        let cfg = probe.config()?;
        let listing = installed
            .listing
            .iter()
            .filter_map(|r| Some((r.prefix.parse::<IpNet>().ok()?, r)))
            .collect();
        let targets = installed
            .rules
            .iter()
            .filter_map(|r| Some((r.target()?, r.index)))
            .collect();
        Ok(Filter {
            probe,
            installed,
            matches_dst: cfg.direction & DIR_DST != 0,
            enforcing: cfg.mode == MODE_ENFORCE,
            listing,
            targets,
        })
    }

    /// Every finding of `plan`, the names resolved as `resolved` says.
    pub fn findings(
        &self,
        plan: &Plan,
        resolved: &[NameReport],
    ) -> Result<Vec<Finding>, DatapathError> {
        let by_name: HashMap<&str, &NameReport> =
            resolved.iter().map(|r| (r.name.as_str(), r)).collect();
        let mut out = Vec::new();
        for n in &plan.names {
            let finding = |address, port, proto, result| Finding {
                set: n.set,
                required: n.required,
                name: Some(n.name.clone()),
                kind: n.kind.clone(),
                address,
                port,
                proto,
                result,
                connect: None,
            };
            if n.kind == Kind::Wildcard {
                out.push(finding(None, None, None, Outcome::Untried));
                continue;
            }
            let addresses = if n.known.is_empty() {
                let report = by_name.get(n.name.as_str());
                let addrs = report.map(|r| r.addrs.clone()).unwrap_or_default();
                if addrs.is_empty() {
                    let error = report
                        .and_then(|r| r.error.clone())
                        .unwrap_or_else(|| "no address".into());
                    out.push(finding(None, None, None, Outcome::Unresolved { error }));
                    continue;
                }
                addrs
            } else {
                n.known.clone()
            };
            let learnable = self.installed.learning && matches!(n.kind, Kind::Example { .. });
            for address in addresses {
                for (proto, port) in ports_to_try(&plan.ports[&n.set]) {
                    let mut result = self.ask(address, proto, port)?;
                    if learnable
                        && matches!(
                            result,
                            Outcome::Blocked {
                                why: Why::NotListed,
                                ..
                            }
                        )
                    {
                        result = Outcome::Learnable;
                    }
                    out.push(finding(Some(address), Some(port), Some(proto), result));
                }
            }
        }
        for a in &plan.addresses {
            for (proto, port) in ports_to_try(&plan.ports[&a.set]) {
                out.push(Finding {
                    set: a.set,
                    required: a.required,
                    name: None,
                    kind: Kind::Prefix {
                        prefix: a.prefix.to_string(),
                    },
                    address: Some(a.address),
                    port: Some(port),
                    proto: Some(proto),
                    result: self.ask(a.address, proto, port)?,
                    connect: None,
                });
            }
        }
        // Each set's names and prefixes together, in the plan's order (required sets first).
        out.sort_by_key(|f| plan.order.iter().position(|s| *s == f.set));
        Ok(out)
    }

    /// What the filter does with a device's packet to `address` on `port` (or with the answer
    /// from there, when it matches sources only).
    pub fn ask(&self, address: IpAddr, proto: Proto, port: u16) -> Result<Outcome, DatapathError> {
        let udp = proto == Proto::Udp;
        let device = device_like(address);
        let packet = if self.matches_dst {
            frame(device, address, udp, 40000, port)
        } else {
            frame(address, device, udp, port, 40000)
        };
        let verdict = self.probe.run(&packet, &self.candidates(address))?;
        let outcome = verdict.outcome.counter_name().to_owned();
        let passes = matches!(
            verdict.outcome,
            Counted::Intune | Counted::Infrastructure | Counted::Local | Counted::NotIp
        );
        if passes {
            let rule = verdict
                .rule
                .and_then(|i| self.installed.rules.iter().find(|r| r.index == i))
                .map(|r| r.prefix.clone());
            return Ok(Outcome::Passes { outcome, rule });
        }
        Ok(Outcome::Blocked {
            why: self.why(address, proto, port),
            outcome,
        })
    }

    /// The rules a packet to `address` could be credited to: those holding it, and its
    /// learned slot.
    fn candidates(&self, address: IpAddr) -> Vec<u32> {
        let listed = self.targets.iter().filter(|(t, _)| match t {
            Target::AnyAddress => true,
            Target::Prefix(net) => net.contains(&address),
        });
        let learned = self
            .installed
            .learned
            .iter()
            .filter(|l| l.address == address);
        listed
            .map(|(_, index)| *index)
            .chain(learned.map(|l| l.index))
            .collect()
    }

    /// Why a packet is dropped: an exclusion holding the address wins; else the most specific
    /// listed prefix and its ports.
    fn why(&self, address: IpAddr, proto: Proto, port: u16) -> Why {
        let holding = || self.listing.iter().filter(|(n, _)| n.contains(&address));
        if let Some((net, _)) = holding().find(|(_, r)| r.excluded) {
            return Why::Excluded {
                prefix: net.to_string(),
            };
        }
        let Some((net, row)) = holding().max_by_key(|(n, _)| n.prefix_len()) else {
            return Why::NotListed;
        };
        let l4 = match proto {
            Proto::Tcp => intune_common::proto::IPPROTO_TCP,
            Proto::Udp => intune_common::proto::IPPROTO_UDP,
        };
        if row.ports.admits(l4, port) {
            Why::Other
        } else {
            Why::PortNotAllowed {
                prefix: net.to_string(),
                ports: row.ports.to_string(),
            }
        }
    }
}
