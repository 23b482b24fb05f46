//! The rule set: every prefix of the selected endpoint sets with the sets (and sources) that
//! list it, the ports it allows (the union over all prefixes that cover it), and the rule index
//! its hits count under. Indices and port-set ids are stable across rebuilds: a rebuild given the
//! previous rule set keeps them for what is unchanged, so hit counters carry on, and never hands
//! out an index the previous set still used, so a lookup in flight never sees one reused.

use std::{
    collections::{BTreeMap, HashMap},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::atomic::{AtomicU64, Ordering},
};

use intune_common::{
    classify::IpPacket,
    maps::{DIR_DST, DIR_SRC, MAX_PORT_SETS, MAX_RULES, NO_RULE, PortSet, RuleRef},
};
use ipnet::IpNet;
use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use crate::{
    ruleset::paired::Delta,
    sources::endpoints::{EndpointSet, Ports, Sources},
};

/// What a rule matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    Prefix(IpNet),
    /// The port-only rule: its ports hold for any address.
    AnyAddress,
}

impl Target {
    /// A key that sorts as `Target` does (IPv4 before IPv6 before any address; by network,
    /// then length), of plain integers: a radix sort of 100,000 claims takes a fraction of a
    /// comparison sort's time.
    pub(crate) fn sort_key(&self) -> (u8, u128, u8) {
        match self {
            Target::Prefix(IpNet::V4(n)) => (0, u32::from(n.addr()).into(), n.prefix_len()),
            Target::Prefix(IpNet::V6(n)) => (1, u128::from(n.addr()), n.prefix_len()),
            Target::AnyAddress => (2, 0, 0),
        }
    }

    /// A prefix's family and last address, as integers: in target order, a prefix covers a
    /// later one of its family that ends within it.
    fn end(&self) -> Option<(u8, u128)> {
        match self {
            Target::Prefix(IpNet::V4(n)) => Some((0, u32::from(n.broadcast()).into())),
            Target::Prefix(IpNet::V6(n)) => Some((1, u128::from(n.broadcast()))),
            Target::AnyAddress => None,
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Prefix(net) => write!(f, "{net}"),
            Target::AnyAddress => f.write_str("any"),
        }
    }
}

/// One endpoint set's claim on a rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetEntry {
    pub id: u32,
    /// Where the set came from (a set may come from several sources).
    pub sources: Sources,
    pub ports: Ports,
}

/// `RuleSet::by_index` of an index no rule has.
const NOT_IN_USE: u32 = u32::MAX;

/// A rule's endpoint sets: one for nearly every prefix, so held in the rule itself.
pub type SetEntries = SmallVec<[SetEntry; 1]>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The kernel's rule index: stable while the rule exists.
    pub index: u32,
    pub target: Target,
    /// Listed in the exclude list: never allowed, and nothing inside it either.
    pub excluded: bool,
    /// The endpoint sets that list this prefix, each with its own ports.
    pub sets: SetEntries,
    /// Ports allowed to an address whose most specific prefix is this one.
    pub effective: Ports,
    /// Id of `effective` in [`RuleSet::port_sets`].
    pub port_set: u32,
}

impl Rule {
    /// A rule of no set yet, its index and port-set id still to be given.
    fn new(target: Target, excluded: bool, effective: Ports) -> Rule {
        Rule {
            index: 0,
            target,
            excluded,
            sets: SetEntries::new(),
            effective,
            port_set: 0,
        }
    }

    /// What the kernel maps hold for this rule.
    pub fn rule_ref(&self) -> RuleRef {
        RuleRef {
            rule: if self.excluded { NO_RULE } else { self.index },
            port_set: self.port_set,
        }
    }

    /// The sources of the sets that list this rule, sorted, once each.
    pub fn sources(&self) -> Vec<String> {
        let mut sources: Vec<String> = self
            .sets
            .iter()
            .flat_map(|s| s.sources.iter().map(|x| x.to_string()))
            .collect();
        sources.sort();
        sources.dedup();
        sources
    }

    pub fn set_ids(&self) -> Vec<u32> {
        self.sets.iter().map(|s| s.id).collect()
    }
}

#[derive(Clone, Debug)]
pub struct RuleSetOptions {
    /// Include port-only sets (Delivery Optimization peering), which hold for any address.
    pub port_only: bool,
    /// Prefixes never to allow.
    pub exclude: Vec<IpNet>,
    /// Rule indices the program has room for.
    pub max_rules: usize,
}

impl Default for RuleSetOptions {
    fn default() -> Self {
        RuleSetOptions {
            port_only: false,
            exclude: Vec::new(),
            max_rules: MAX_RULES as usize,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("{0} rules exceed the program's capacity of {1}")]
    TooManyRules(usize, usize),
    #[error("{0} distinct port sets exceed the program's capacity of {MAX_PORT_SETS}")]
    TooManyPortSets(usize),
}

#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    /// Sorted by target.
    pub rules: Vec<Rule>,
    /// Effective port sets by id.
    pub port_sets: BTreeMap<u32, Ports>,
    /// The port-only rule's index, when there is one.
    pub port_only: Option<u32>,
    /// Each index's position in `rules` (`NOT_IN_USE` for none): indices are small and dense.
    by_index: Vec<u32>,
    /// Prefix lengths in use, longest first, per family.
    v4_lens: Vec<u8>,
    v6_lens: Vec<u8>,
    /// Which rule set this is: each built or read back has its own (the empty default, 0).
    generation: u64,
    /// What moving from the set it was built against (by generation) to this one takes.
    delta: Option<(u64, Delta)>,
}

/// A new rule set's generation.
fn next_generation() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// `set`'s claim on `target`, which sorts at or after the last rule of `out` (claims of one
/// target come in set-id order). A rule's effective ports start as its first set's: what
/// nearly every rule keeps.
fn claim(out: &mut Vec<Rule>, target: Target, set: &EndpointSet) {
    if out.last().is_none_or(|r| r.target != target) {
        out.push(Rule::new(target, false, set.ports));
    }
    let Some(Rule { sets: entries, .. }) = out.last_mut() else {
        return;
    };
    match entries.last_mut() {
        Some(e) if e.id == set.id => {
            e.sources.insert(set.source);
            e.ports = e.ports.union(&set.ports);
        }
        _ => {
            let mut sources = Sources::default();
            sources.insert(set.source);
            entries.push(SetEntry {
                id: set.id,
                sources,
                ports: set.ports,
            });
        }
    }
}

/// Rule `i`'s effective ports, the union over the prefixes covering it, where they are not
/// what [`RuleSet::listed`] gave it (its one set's ports): None for nearly every rule. Rules
/// are sorted by network address, shorter prefix first, so the prefixes covering a rule are
/// exactly those on `open`, the stack of prefixes still open when it comes, whose effective
/// ports are final by then: one pass, no lookups. Excluded rules have none.
fn covered_ports(rules: &[Rule], i: usize, open: &mut Vec<((u8, u128), usize)>) -> Option<Ports> {
    let rule = &rules[i];
    let parent = match rule.target.end() {
        Some(_) if rule.excluded => return None,
        Some(end @ (family, last)) => {
            while open
                .last()
                .is_some_and(|((f, e), _)| *f != family || *e < last)
            {
                open.pop();
            }
            let parent = open
                .last()
                .map(|&(_, p)| p)
                .filter(|&p| !rules[p].effective.is_empty());
            open.push((end, i));
            parent
        }
        None => None,
    };
    let as_listed = matches!(rule.sets.as_slice(), [one] if one.ports == rule.effective);
    if parent.is_none() && as_listed {
        return None;
    }
    let mine = match rule.sets.as_slice() {
        [one] => one.ports,
        sets => sets
            .iter()
            .fold(Ports::default(), |acc, s| acc.union(&s.ports)),
    };
    Some(match parent {
        Some(p) => rules[p].effective.union(&mine),
        None => mine,
    })
}

/// Hands out the lowest ids used neither by the previous rule set nor already.
struct Ids {
    taken: Vec<bool>,
    next: u32,
}

impl Ids {
    fn new(previous: impl IntoIterator<Item = u32>) -> Ids {
        let mut taken = Vec::new();
        for id in previous {
            let i = id as usize;
            if taken.len() <= i {
                taken.resize(i + 1, false);
            }
            taken[i] = true;
        }
        Ids { taken, next: 0 }
    }

    fn fresh(&mut self) -> u32 {
        while self.taken.get(self.next as usize).copied().unwrap_or(false) {
            self.next += 1;
        }
        let i = self.next as usize;
        if self.taken.len() <= i {
            self.taken.resize(i + 1, false);
        }
        self.taken[i] = true;
        self.next
    }
}

/// Port-set ids: the previous rule set's id for the same ports, else a fresh one.
struct PortSetIds<'a> {
    fresh: Ids,
    previous: HashMap<&'a Ports, u32>,
    given: FxHashMap<Ports, u32>,
    /// The ports asked for last and their id.
    last: Option<(Ports, u32)>,
}

impl<'a> PortSetIds<'a> {
    fn new(previous: Option<&'a RuleSet>) -> PortSetIds<'a> {
        PortSetIds {
            fresh: Ids::new(
                previous
                    .into_iter()
                    .flat_map(|p| p.port_sets.keys().copied()),
            ),
            previous: previous
                .map(|p| p.port_sets.iter().map(|(id, ports)| (ports, *id)).collect())
                .unwrap_or_default(),
            given: FxHashMap::default(),
            last: None,
        }
    }

    /// The id of `ports`, entered in `sets` the first time.
    fn id(&mut self, ports: Ports, sets: &mut BTreeMap<u32, Ports>) -> u32 {
        // Neighbouring rules mostly share their ports (one list, shared): no hash for them.
        if let Some((last, id)) = self.last
            && last == ports
        {
            return id;
        }
        if let Some(&id) = self.given.get(&ports) {
            self.last = Some((ports, id));
            return id;
        }
        let id = self
            .previous
            .get(&ports)
            .copied()
            .unwrap_or_else(|| self.fresh.fresh());
        self.given.insert(ports, id);
        self.last = Some((ports, id));
        sets.insert(id, ports);
        id
    }
}

impl RuleSet {
    /// Builds the rule set of `sets`; with `previous`, unchanged rules and port sets keep their
    /// indices and ids.
    pub fn build(
        sets: &[EndpointSet],
        opts: &RuleSetOptions,
        previous: Option<&RuleSet>,
    ) -> Result<RuleSet, RulesError> {
        let mut rs = RuleSet {
            rules: Self::listed(sets, opts),
            ..RuleSet::default()
        };
        let mut port_ids = PortSetIds::new(previous);
        // From the lookup by index (4 bytes an index), not a walk of the previous rules.
        let mut rule_ids = Ids::new(previous.into_iter().flat_map(|p| {
            p.by_index
                .iter()
                .enumerate()
                .filter(|&(_, &at)| at != NOT_IN_USE)
                .map(|(index, _)| index as u32)
        }));
        // Both sets' rules are sorted by target: the previous index of each is found by
        // walking the previous rules alongside, which also finds what left and what changed.
        let before = previous.map_or(&[][..], |p| p.rules.as_slice());
        let mut next_before = 0;
        let mut delta = Delta::default();
        let mut present = [[false; 129]; 2];
        let mut open = Vec::new();
        let mut by_index = Vec::with_capacity(rs.rules.len());
        // One pass gives each rule its effective ports, port-set id and index (a pass over
        // 100,000 rules walks 6 MiB; each of these used to take one of its own).
        for i in 0..rs.rules.len() {
            if let Some(effective) = covered_ports(&rs.rules, i, &mut open) {
                rs.rules[i].effective = effective;
            }
            let rule = &mut rs.rules[i];
            if let Target::Prefix(n) = &rule.target {
                present[usize::from(matches!(n, IpNet::V6(_)))][usize::from(n.prefix_len())] = true;
            }
            rule.port_set = port_ids.id(rule.effective, &mut rs.port_sets);
            let key = rule.target.sort_key();
            while before
                .get(next_before)
                .is_some_and(|b| b.target.sort_key() < key)
            {
                delta.removed.push(next_before as u32);
                next_before += 1;
            }
            if let Some(b) = before.get(next_before).filter(|b| b.target == rule.target) {
                rule.index = b.index;
                delta.kept(b, rule, i);
                next_before += 1;
            } else {
                rule.index = rule_ids.fresh();
                delta.added.push(i as u32);
            }
            let at = rule.index as usize;
            if by_index.len() <= at {
                by_index.resize(at + 1, NOT_IN_USE);
            }
            by_index[at] = i as u32;
        }
        // The lengths present, by family, longest first (no sort).
        let lens = |family: &[bool; 129]| {
            (0..=128u8)
                .rev()
                .filter(|&l| family[usize::from(l)])
                .collect()
        };
        rs.v4_lens = lens(&present[0]);
        rs.v6_lens = lens(&present[1]);
        // The ports of each endpoint name, for the addresses learned under it.
        for pattern in crate::sources::learn::patterns::Patterns::of(sets).all() {
            if !pattern.ports.is_empty() {
                port_ids.id(pattern.ports, &mut rs.port_sets);
            }
        }
        // One more than the highest index.
        let highest = by_index.len();
        if highest > opts.max_rules {
            return Err(RulesError::TooManyRules(highest, opts.max_rules));
        }
        if rs.port_sets.keys().any(|&id| id >= MAX_PORT_SETS) {
            return Err(RulesError::TooManyPortSets(rs.port_sets.len()));
        }
        delta
            .removed
            .extend(next_before as u32..before.len() as u32);
        rs.by_index = by_index;
        rs.port_only = rs.rule_by_target(&Target::AnyAddress).map(|r| r.index);
        rs.generation = next_generation();
        rs.delta = Some((previous.map_or(0, |p| p.generation), delta));
        Ok(rs)
    }

    /// The rules of `sets` sorted by target, with excluded prefixes and nothing listed inside
    /// them; their indices and port-set ids still to be given, and the effective ports of a
    /// rule under another or of several sets. This runs for every accepted list: a list whose
    /// prefixes are in one set needs no sort, several sets' are sorted once (not a map entry a
    /// prefix).
    fn listed(sets: &[EndpointSet], opts: &RuleSetOptions) -> Vec<Rule> {
        let excluded = |n: &IpNet| opts.exclude.iter().any(|x| x.contains(n));
        let mut out: Vec<Rule> = Vec::with_capacity(sets.iter().map(|s| s.ips.len().max(1)).sum());
        let mut with_prefixes = sets.iter().filter(|s| !s.any_address && !s.ips.is_empty());
        match (with_prefixes.next(), with_prefixes.next()) {
            (None, _) => {}
            // One set's prefixes come sorted (`EndpointSet::ips`): its rules in their order.
            (Some(set), None) if set.ips.is_sorted() => {
                for net in set.ips.iter().filter(|n| !excluded(n)) {
                    claim(&mut out, Target::Prefix(*net), set);
                }
            }
            _ => {
                let mut claims: Vec<(Target, u32, &EndpointSet)> = sets
                    .iter()
                    .filter(|s| !s.any_address)
                    .flat_map(|set| set.ips.iter().map(move |n| (n, set)))
                    .filter(|(n, _)| !excluded(n))
                    .map(|(n, set)| (Target::Prefix(*n), set.id, set))
                    .collect();
                radsort::sort_by_key(&mut claims, |&(t, id, _)| {
                    let (kind, addr, len) = t.sort_key();
                    (kind, addr, len, id)
                });
                for (target, _, set) in claims {
                    claim(&mut out, target, set);
                }
            }
        }
        // The port-only rule sorts after every prefix; its sets by id.
        if opts.port_only {
            let mut any: Vec<&EndpointSet> = sets.iter().filter(|s| s.any_address).collect();
            any.sort_by_key(|s| s.id);
            for set in any {
                claim(&mut out, Target::AnyAddress, set);
            }
        }
        for x in &opts.exclude {
            let target = Target::Prefix(x.trunc());
            out.retain(|r| r.target != target);
            out.push(Rule::new(target, true, Ports::default()));
        }
        if !opts.exclude.is_empty() {
            out.sort_by_key(|r| r.target);
        }
        out
    }

    fn lens(&self, addr: &IpAddr) -> &[u8] {
        match addr {
            IpAddr::V4(_) => &self.v4_lens,
            IpAddr::V6(_) => &self.v6_lens,
        }
    }

    /// Positions of the rules whose prefix covers `addr` within `max_len`, most specific first.
    fn matching(&self, addr: IpAddr, max_len: u8) -> impl Iterator<Item = usize> + '_ {
        self.lens(&addr)
            .iter()
            .filter(move |&&len| len <= max_len)
            .filter_map(move |&len| {
                let net = IpNet::new(addr, len).ok()?.trunc();
                self.position(&Target::Prefix(net))
            })
    }

    /// A rule set that knows only targets and their indices: what a restarted daemon reads
    /// back, so that a rebuild against it keeps the indices (and the counters) rules had.
    pub fn from_indices(entries: impl IntoIterator<Item = (Target, u32)>) -> RuleSet {
        let mut rs = RuleSet {
            rules: entries
                .into_iter()
                .map(|(target, index)| Rule {
                    index,
                    target,
                    excluded: false,
                    sets: SetEntries::new(),
                    effective: Ports::default(),
                    port_set: 0,
                })
                .collect(),
            ..RuleSet::default()
        };
        rs.rules.sort_by_key(|r| r.target);
        rs.rules.dedup_by_key(|r| r.target);
        rs.index_rules();
        rs.generation = next_generation();
        rs
    }

    /// What moving the maps from `old` to this set takes, found while it was built, if it was
    /// built against `old`; taken, as it is needed once.
    pub fn take_delta_from(&mut self, old: &RuleSet) -> Option<Delta> {
        let (base, delta) = self.delta.take()?;
        // Generation 0 is the empty set's, any empty set's.
        (base == old.generation && (base != 0 || old.rules.is_empty())).then_some(delta)
    }

    /// Where the rule of `target` is: `rules` is sorted by target (built so), so a binary
    /// search, and no map of 100,000 targets to build with every rule set.
    fn position(&self, target: &Target) -> Option<usize> {
        self.rules.binary_search_by(|r| r.target.cmp(target)).ok()
    }

    /// Rebuilds the lookup of rules by index, after `rules` changed.
    fn index_rules(&mut self) {
        let bound = self
            .rules
            .iter()
            .map(|r| r.index as usize + 1)
            .max()
            .unwrap_or(0);
        self.by_index = vec![NOT_IN_USE; bound];
        for (at, r) in self.rules.iter().enumerate() {
            self.by_index[r.index as usize] = at as u32;
        }
    }

    pub fn rule(&self, index: u32) -> Option<&Rule> {
        let at = *self.by_index.get(index as usize)?;
        self.rules.get(at as usize)
    }

    pub fn rule_by_target(&self, target: &Target) -> Option<&Rule> {
        self.position(target).map(|i| &self.rules[i])
    }

    /// The most specific rule whose prefix covers `addr`, excluded ones included.
    pub fn lookup(&self, addr: IpAddr) -> Option<&Rule> {
        self.matching(addr, 128).next().map(|i| &self.rules[i])
    }

    /// The endpoint sets that allow a packet credited to `rule`: among the rule and the rules
    /// covering it, the sets whose ports admit `port` of `l4`, or every set when the packet has
    /// no port to check (a later fragment).
    pub fn allowing_sets(&self, rule: &Rule, l4: u8, port: Option<u16>) -> Vec<u32> {
        let covering: Vec<usize> = match rule.target {
            Target::Prefix(net) => self.matching(net.addr(), net.prefix_len()).collect(),
            Target::AnyAddress => self.position(&rule.target).into_iter().collect(),
        };
        let mut ids: Vec<u32> = covering
            .into_iter()
            .flat_map(|r| self.rules[r].sets.iter())
            .filter(|s| port.is_none_or(|p| s.ports.admits(l4, p)))
            .map(|s| s.id)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The endpoint sets that allow `pkt`, credited to rule `index` by a program matching in
    /// `direction` (direction bits): the address side that hit decides which port counts.
    pub fn sets_for_packet(&self, pkt: &IpPacket, direction: u32, index: u32) -> Vec<u32> {
        let Some(r) = self.rule(index) else {
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
            let admitted = pkt.has_ports && r.effective.admits(pkt.l4, port);
            let hit = match r.target {
                Target::AnyAddress => admitted,
                Target::Prefix(_) => {
                    self.lookup(addr(a)).map(|l| l.index) == Some(index)
                        && (pkt.later_fragment || admitted)
                }
            };
            if hit {
                let port = (!pkt.later_fragment).then_some(port);
                return self.allowing_sets(r, pkt.l4, port);
            }
        }
        Vec::new()
    }

    /// The kernel's LPM entries: (prefix, value).
    pub fn lpm_entries(&self) -> impl Iterator<Item = (IpNet, RuleRef)> + '_ {
        self.rules.iter().filter_map(|r| match r.target {
            Target::Prefix(net) => Some((net, r.rule_ref())),
            Target::AnyAddress => None,
        })
    }

    /// The kernel's port-set bitmaps, by id.
    pub fn port_set_bitmaps(&self) -> impl Iterator<Item = (u32, PortSet)> + '_ {
        self.port_sets.iter().map(|(id, p)| (*id, p.to_port_set()))
    }

    /// The id of the port set holding exactly `ports`.
    pub fn port_set_of(&self, ports: &Ports) -> Option<u32> {
        self.port_sets
            .iter()
            .find_map(|(id, p)| (p == ports).then_some(*id))
    }

    /// Every port some rule allows.
    pub fn all_ports(&self) -> Ports {
        self.port_sets
            .values()
            .fold(Ports::default(), |acc, p| acc.union(p))
    }

    /// One more than the highest rule index: the counters worth reading. The lookup by index
    /// reaches exactly that far.
    pub fn index_bound(&self) -> usize {
        self.by_index.len()
    }

    pub fn prefix_count(&self) -> usize {
        self.rules
            .iter()
            .filter(|r| matches!(r.target, Target::Prefix(_)) && !r.excluded)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use intune_common::proto::{IPPROTO_TCP, IPPROTO_UDP};

    use super::*;
    use crate::sources::endpoints::{Source, parse_endpoint_sets};

    fn sets(json: &str) -> Vec<EndpointSet> {
        parse_endpoint_sets(json, Source::File).unwrap()
    }

    fn example() -> Vec<EndpointSet> {
        sets(
            r#"[
            {"id": 1, "serviceArea": "MEM", "category": "Default", "ips": ["198.51.100.0/24"], "tcpPorts": "443"},
            {"id": 2, "serviceArea": "MEM", "category": "Default", "ips": ["198.51.100.128/25", "2001:db8::/32"], "tcpPorts": "80"},
            {"id": 3, "serviceArea": "MEM", "category": "Default", "ips": ["198.51.100.128/25"], "udpPorts": "123"},
            {"id": 4, "serviceArea": "MEM", "category": "Default", "tcpPorts": "7680", "udpPorts": "3544", "anyAddress": true}
        ]"#,
        )
    }

    /// `example` without set 1 (198.51.100.0/24), with a new prefix.
    fn second_example() -> Vec<EndpointSet> {
        sets(
            r#"[
            {"id": 2, "serviceArea": "MEM", "category": "Default", "ips": ["198.51.100.128/25", "2001:db8::/32"], "tcpPorts": "80"},
            {"id": 3, "serviceArea": "MEM", "category": "Default", "ips": ["198.51.100.128/25"], "udpPorts": "123"},
            {"id": 5, "serviceArea": "MEM", "category": "Default", "ips": ["203.0.113.0/24"], "tcpPorts": "443"}
        ]"#,
        )
    }

    fn build(sets: &[EndpointSet], opts: &RuleSetOptions) -> RuleSet {
        RuleSet::build(sets, opts, None).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_sort_key_orders_as_targets_do() {
        use rand::{Rng as _, SeedableRng as _, rngs::StdRng};
        let mut rng = StdRng::seed_from_u64(3);
        let mut targets: Vec<Target> = (0..2_000)
            .map(|i| match i % 5 {
                0 => Target::AnyAddress,
                1 | 2 => {
                    // Few distinct addresses, so equal networks of other lengths meet.
                    let addr = Ipv4Addr::from(rng.random::<u32>() & 0xff00_0f0f);
                    Target::Prefix(
                        IpNet::new(addr.into(), rng.random_range(0..=32))
                            .unwrap()
                            .trunc(),
                    )
                }
                _ => {
                    let addr = Ipv6Addr::from(rng.random::<u128>() & (0xffff_u128 << 112 | 0xff));
                    Target::Prefix(
                        IpNet::new(addr.into(), rng.random_range(0..=128))
                            .unwrap()
                            .trunc(),
                    )
                }
            })
            .collect();
        let mut by_key = targets.clone();
        targets.sort();
        by_key.sort_by_key(Target::sort_key);
        assert_eq!(by_key, targets);
        // Not all in one order by accident: the kinds interleave before the sort.
        assert!(
            targets
                .first()
                .is_some_and(|t| matches!(t, Target::Prefix(IpNet::V4(_))))
        );
        assert_eq!(targets.last(), Some(&Target::AnyAddress));
    }

    #[test]
    fn nested_prefixes_get_the_union_of_covering_ports() {
        let rs = build(&example(), &RuleSetOptions::default());
        let inner = rs.lookup(ip("198.51.100.200")).unwrap();
        let outer = rs.lookup(ip("198.51.100.1")).unwrap();
        assert_eq!(inner.target.to_string(), "198.51.100.128/25");
        assert_eq!(inner.effective.to_string(), "TCP 80,443; UDP 123");
        assert_eq!(outer.effective.to_string(), "TCP 443");
        assert_eq!(rs.allowing_sets(inner, IPPROTO_TCP, Some(443)), [1]);
        assert_eq!(rs.allowing_sets(inner, IPPROTO_TCP, Some(80)), [2]);
        assert_eq!(rs.allowing_sets(inner, IPPROTO_UDP, Some(123)), [3]);
        assert_eq!(rs.allowing_sets(inner, IPPROTO_TCP, None), [1, 2, 3]);
        assert!(rs.lookup(ip("192.0.2.1")).is_none());
        assert!(rs.lookup(ip("2001:db8:1::1")).is_some());
        assert!(rs.port_only.is_none());
    }

    #[test]
    fn port_only_rules_come_when_asked() {
        let rs = build(
            &example(),
            &RuleSetOptions {
                port_only: true,
                ..Default::default()
            },
        );
        let rule = rs.rule(rs.port_only.unwrap()).unwrap();
        assert_eq!(rule.effective.to_string(), "TCP 7680; UDP 3544");
        assert_eq!(rs.allowing_sets(rule, IPPROTO_UDP, Some(3544)), [4]);
    }

    #[test]
    fn capacity_is_enforced() {
        let opts = RuleSetOptions {
            max_rules: 2,
            ..Default::default()
        };
        assert!(matches!(
            RuleSet::build(&example(), &opts, None),
            Err(RulesError::TooManyRules(3, 2))
        ));
    }

    #[test]
    fn excluded_prefixes_and_what_they_hold_are_never_allowed() {
        let opts = RuleSetOptions {
            exclude: vec!["198.51.100.128/26".parse().unwrap()],
            ..Default::default()
        };
        let rs = build(&example(), &opts);
        assert!(
            rs.rule_by_target(&Target::Prefix("198.51.100.128/25".parse().unwrap()))
                .is_some()
        );
        let x = rs.lookup(ip("198.51.100.130")).unwrap();
        assert!(x.excluded && x.effective.is_empty());
        assert_eq!(x.rule_ref().rule, NO_RULE);
        // A prefix inside the exclusion is dropped; one around it stays.
        let opts = RuleSetOptions {
            exclude: vec!["198.51.100.0/23".parse().unwrap()],
            ..Default::default()
        };
        let rs = build(&example(), &opts);
        assert!(rs.lookup(ip("198.51.100.200")).unwrap().excluded);
        assert_eq!(rs.prefix_count(), 1, "only 2001:db8::/32 is left");
    }

    #[test]
    fn sources_are_kept_per_set() {
        let mut all = example();
        let mut service = example().remove(0);
        service.source = Source::Service;
        all.push(service);
        // The same set id from two sources: one claim, both sources.
        let dup = parse_endpoint_sets(r#"[{"id": 1, "serviceArea": "MEM", "category": "Default", "ips": ["198.51.100.0/24"], "tcpPorts": "80"}]"#, Source::Service).unwrap();
        all.extend(dup);
        let rs = build(&all, &RuleSetOptions::default());
        let r = rs
            .rule_by_target(&Target::Prefix("198.51.100.0/24".parse().unwrap()))
            .unwrap();
        assert_eq!(r.sets.len(), 1);
        assert_eq!(
            r.sets[0].sources.iter().collect::<Vec<_>>(),
            [Source::Service, Source::File]
        );
        assert_eq!(r.sets[0].ports.to_string(), "TCP 80,443");
        // Its effective ports are both sources' too, not the first one's alone.
        assert_eq!(r.effective.to_string(), "TCP 80,443");
    }

    #[test]
    fn rebuilds_keep_indices_and_never_reuse_a_freed_one_at_once() {
        let opts = RuleSetOptions::default();
        let first = build(&example(), &opts);
        let a = |rs: &RuleSet, p: &str| {
            rs.rule_by_target(&Target::Prefix(p.parse().unwrap()))
                .map(|r| (r.index, r.port_set))
        };
        let second_sets = second_example();
        let second = RuleSet::build(&second_sets, &opts, Some(&first)).unwrap();
        assert_eq!(a(&second, "2001:db8::/32"), a(&first, "2001:db8::/32"));
        assert_eq!(
            a(&second, "198.51.100.128/25").map(|x| x.0),
            a(&first, "198.51.100.128/25").map(|x| x.0)
        );
        let freed = a(&first, "198.51.100.0/24").unwrap().0;
        let new = a(&second, "203.0.113.0/24").unwrap().0;
        assert!(
            first.rules.iter().all(|r| r.index != new),
            "index {new} of a new rule was in use"
        );
        assert_ne!(new, freed);
        // The /25 lost the /24's TCP 443: a different port set, with an id the first set did not use.
        let ps = a(&second, "198.51.100.128/25").unwrap().1;
        assert!(
            !first.port_sets.contains_key(&ps) || first.port_sets[&ps] == second.port_sets[&ps]
        );
    }

    /// Worked by hand from `example` to `second_example`: the /24 leaves
    /// (position 0 of the first set), 203.0.113.0/24 comes (position 1 of the second), the /25
    /// stays but loses the /24's TCP 443 (changed, written again), 2001:db8::/32 stays as it
    /// was.
    #[test]
    fn a_rebuild_finds_what_came_left_and_changed() {
        let opts = RuleSetOptions::default();
        let first = build(&example(), &opts);
        let second_sets = second_example();
        let mut second = RuleSet::build(&second_sets, &opts, Some(&first)).unwrap();
        let expected = Delta {
            added: vec![1],
            removed: vec![0],
            rewritten: vec![0],
            changed: 1,
        };
        assert_eq!(crate::ruleset::paired::delta(&first, &second), expected);
        // Not for a set it was not built against; taken once.
        assert_eq!(second.clone().take_delta_from(&RuleSet::default()), None);
        assert_eq!(second.clone().take_delta_from(&second.clone()), None);
        assert_eq!(second.take_delta_from(&first), Some(expected));
        assert_eq!(second.take_delta_from(&first), None);
        // Built against nothing: everything is added, onto the empty set only.
        let mut fresh = build(&second_sets, &opts);
        assert_eq!(fresh.clone().take_delta_from(&first), None);
        let all = fresh.take_delta_from(&RuleSet::default()).unwrap();
        assert_eq!(all.added, [0, 1, 2]);
        assert!(all.removed.is_empty() && all.rewritten.is_empty());
    }

    /// Random lists changed at random (prefixes come and go, nested ones, ports change,
    /// exclusions): what the build finds is what a walk of both sets finds.
    #[test]
    fn the_delta_found_in_building_is_the_walks() {
        use rand::{Rng as _, SeedableRng as _, rngs::StdRng};
        let mut rng = StdRng::seed_from_u64(17);
        let random_sets = |rng: &mut StdRng| -> Vec<EndpointSet> {
            let json: Vec<String> = (1..=4)
                .map(|id| {
                    let ips: Vec<String> = (0..rng.random_range(0..60))
                        .map(|_| {
                            if rng.random_bool(0.8) {
                                // Few networks, so that prefixes nest and repeat across sets.
                                let a = rng.random_range(0..4u8);
                                let len = rng.random_range(22..=26u8);
                                format!("198.51.{a}.{}/{len}", rng.random_range(0..4u8) * 64)
                            } else {
                                format!("2001:db8:{:x}::/48", rng.random_range(0..8u8))
                            }
                        })
                        .collect();
                    let port = [80, 443, 5223][rng.random_range(0..3)];
                    format!(
                        r#"{{"id": {id}, "serviceArea": "MEM", "category": "Default", "ips": {}, "tcpPorts": "{port}"}}"#,
                        serde_json::to_string(&ips).unwrap()
                    )
                })
                .collect();
            sets(&format!("[{}]", json.join(",")))
        };
        let mut previous = build(&random_sets(&mut rng), &RuleSetOptions::default());
        for round in 0..200 {
            let opts = RuleSetOptions {
                exclude: if round % 3 == 0 {
                    vec!["198.51.1.0/24".parse().unwrap()]
                } else {
                    Vec::new()
                },
                ..RuleSetOptions::default()
            };
            let mut next = RuleSet::build(&random_sets(&mut rng), &opts, Some(&previous)).unwrap();
            let highest = next.rules.iter().map(|r| r.index as usize + 1).max();
            assert_eq!(next.index_bound(), highest.unwrap_or(0), "round {round}");
            let walked = crate::ruleset::paired::delta(&previous, &next);
            assert_eq!(
                next.take_delta_from(&previous),
                Some(walked),
                "round {round}"
            );
            previous = next;
        }
    }
}
