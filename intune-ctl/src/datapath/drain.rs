//! Draining: what leaves every list (a prefix a refresh removed, an address that rotated out
//! of DNS, a learned address that expired) goes into `DRAIN` with its ports instead of
//! vanishing, so the connections that use it (push, remote help, long downloads) are not cut.
//! The program notes the time of the packets it passes through an entry; the daemon removes
//! an entry once no packet came for the idle timeout. The listed path costs nothing: the
//! program looks here only for packets nothing listed allows.

use std::{borrow::BorrowMut, net::IpAddr, time::Duration};

use aya::maps::{LpmTrie, Map, MapData, lpm_trie::Key};
use intune_common::{
    maps::{AllowEntry, DRAIN, DrainEntry, MAX_ALLOW_RANGES},
    proto::{IPPROTO_TCP, IPPROTO_UDP},
};
use ipnet::IpNet;

use super::{Datapath, DatapathError, sync::map_err};
use crate::{
    ruleset::rules::{RuleSet, Target},
    sources::endpoints::Ports,
};

pub type DrainMap = LpmTrie<MapData, [u8; 16], DrainEntry>;

/// `DRAIN`'s key of a prefix: IPv6 as is, IPv4 mapped (its length plus 96).
pub fn drain_key(net: &IpNet) -> Key<[u8; 16]> {
    match net {
        IpNet::V4(n) => Key::new(
            u32::from(n.prefix_len()) + 96,
            n.network().to_ipv6_mapped().octets(),
        ),
        IpNet::V6(n) => Key::new(u32::from(n.prefix_len()), n.network().octets()),
    }
}

/// A rule's ports as a drain entry's ranges. More ranges than an entry holds (no Intune set
/// comes close) widen each protocol to one range from its first port to its last.
pub fn drain_ports(ports: &Ports) -> AllowEntry {
    let mut ranges: Vec<(u8, u16, u16)> = ports
        .tcp
        .ranges()
        .iter()
        .map(|(a, b)| (IPPROTO_TCP, *a, *b))
        .chain(
            ports
                .udp
                .ranges()
                .iter()
                .map(|(a, b)| (IPPROTO_UDP, *a, *b)),
        )
        .collect();
    if ranges.len() > MAX_ALLOW_RANGES {
        let span = |r: &[(u16, u16)]| Some((r.first()?.0, r.last()?.1));
        ranges = [
            (IPPROTO_TCP, ports.tcp.ranges()),
            (IPPROTO_UDP, ports.udp.ranges()),
        ]
        .into_iter()
        .filter_map(|(l4, r)| span(r).map(|(a, b)| (l4, a, b)))
        .collect();
    }
    let mut e = AllowEntry {
        ranges: ranges.len() as u8,
        ..AllowEntry::default()
    };
    for (i, (l4, a, b)) in ranges.into_iter().enumerate() {
        (e.l4[i], e.first[i], e.last[i]) = (l4, a, b);
    }
    e
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Puts `net` in the drain with `ports`, its idle time starting now. An entry already there
/// keeps its time.
pub fn start_draining<T: BorrowMut<MapData>>(
    map: &mut LpmTrie<T, [u8; 16], DrainEntry>,
    net: &IpNet,
    ports: &Ports,
) -> Result<(), DatapathError> {
    let key = drain_key(net);
    if map.get(&key, 0).is_ok() {
        return Ok(());
    }
    let entry = DrainEntry {
        ports: drain_ports(ports),
        _pad: 0,
        last_seen_ns: monotonic_ns(),
    };
    map.insert(&key, entry, 0).map_err(map_err(DRAIN))
}

/// What drains, with how long since its last packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Draining {
    pub prefix: IpNet,
    pub idle: Duration,
}

impl Datapath {
    /// Turns draining on (`Some(idle timeout)`) or off; off, what leaves a list leaves at once.
    pub fn set_drain(&mut self, idle: Option<Duration>) -> Result<(), DatapathError> {
        self.drain_idle = idle;
        if let Some(config) = self.installed.as_ref().map(|r| self.config_for(r)) {
            self.write_config(config)?;
        }
        Ok(())
    }

    pub fn drain_idle(&self) -> Option<Duration> {
        self.drain_idle
    }

    /// A handle of `DRAIN` of its own, for the learner's thread: a duplicate of the
    /// descriptor (opening the map by id would need CAP_SYS_ADMIN, which the unit withholds).
    pub fn drain_map(&self) -> Result<DrainMap, DatapathError> {
        use std::os::fd::AsFd as _;
        let map = self.ebpf.map(DRAIN).ok_or(DatapathError::Missing(DRAIN))?;
        let Map::LpmTrie(data) = map else {
            return Err(DatapathError::Missing(DRAIN));
        };
        let fd = data
            .fd()
            .as_fd()
            .try_clone_to_owned()
            .map_err(DatapathError::Fd)?;
        let own = MapData::from_fd(fd).map_err(map_err(DRAIN))?;
        LpmTrie::try_from(Map::LpmTrie(own)).map_err(map_err(DRAIN))
    }

    pub(super) fn drain(
        &mut self,
    ) -> Result<LpmTrie<&mut MapData, [u8; 16], DrainEntry>, DatapathError> {
        LpmTrie::try_from(self.map_mut(DRAIN)?).map_err(map_err(DRAIN))
    }

    /// Rules that left the rule set start draining (when draining is on).
    pub(super) fn drain_left(&mut self, left: &[(IpNet, Ports)]) -> Result<(), DatapathError> {
        if self.drain_idle.is_none() || left.is_empty() {
            return Ok(());
        }
        let mut map = self.drain()?;
        for (net, ports) in left {
            if let Err(e) = start_draining(&mut map, net, ports) {
                // Full: this one leaves at once, as it would without draining.
                tracing::warn!(prefix = %net, error = %e, "cannot keep a leaving prefix for its connections");
            }
        }
        Ok(())
    }

    /// Prefixes `rules` lists again stop draining: their rule decides again.
    pub(super) fn drain_relisted(&mut self, rules: &RuleSet) -> Result<(), DatapathError> {
        if self.drain_idle.is_none() {
            return Ok(());
        }
        let mut map = self.drain()?;
        let listed: Vec<Key<[u8; 16]>> = map
            .keys()
            .filter_map(Result::ok)
            .filter(|k| {
                key_net(k).is_some_and(|net| rules.rule_by_target(&Target::Prefix(net)).is_some())
            })
            .collect();
        for key in listed {
            match map.remove(&key) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => return Err(map_err(DRAIN)(e)),
            }
        }
        Ok(())
    }

    /// Removes what has been idle for the idle timeout; returns it.
    pub fn drain_sweep(&mut self) -> Result<Vec<IpNet>, DatapathError> {
        let Some(idle) = self.drain_idle else {
            return Ok(Vec::new());
        };
        let mut map = self.drain()?;
        let now = monotonic_ns();
        let old: Vec<Key<[u8; 16]>> = map
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, e)| now.saturating_sub(e.last_seen_ns) >= idle.as_nanos() as u64)
            .map(|(k, _)| k)
            .collect();
        let mut gone = Vec::new();
        for key in old {
            match map.remove(&key) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => gone.push(key_net(&key)),
                Err(e) => return Err(map_err(DRAIN)(e)),
            }
        }
        Ok(gone.into_iter().flatten().collect())
    }

    /// What drains now, with how long since its last packet.
    pub fn draining(&self) -> Result<Vec<Draining>, DatapathError> {
        let now = monotonic_ns();
        Ok(self
            .drain_entries()?
            .into_iter()
            .map(|(prefix, e)| Draining {
                prefix,
                idle: Duration::from_nanos(now.saturating_sub(e.last_seen_ns)),
            })
            .collect())
    }

    /// `DRAIN` as it is, by prefix (what the reference classifier needs to decide alike).
    pub fn drain_entries(&self) -> Result<Vec<(IpNet, DrainEntry)>, DatapathError> {
        let data = self.ebpf.map(DRAIN).ok_or(DatapathError::Missing(DRAIN))?;
        let map = LpmTrie::<_, [u8; 16], DrainEntry>::try_from(data).map_err(map_err(DRAIN))?;
        let mut out: Vec<(IpNet, DrainEntry)> = map
            .iter()
            .filter_map(Result::ok)
            .filter_map(|(k, e)| Some((key_net(&k)?, e)))
            .collect();
        out.sort_by_key(|(net, _)| *net);
        Ok(out)
    }
}

/// The prefix of a `DRAIN` key.
fn key_net(key: &Key<[u8; 16]>) -> Option<IpNet> {
    let v6 = std::net::Ipv6Addr::from(key.data());
    match v6.to_ipv4_mapped() {
        Some(v4) if key.prefix_len() >= 96 => {
            IpNet::new(IpAddr::V4(v4), (key.prefix_len() - 96) as u8).ok()
        }
        _ => IpNet::new(IpAddr::V6(v6), key.prefix_len() as u8).ok(),
    }
}
