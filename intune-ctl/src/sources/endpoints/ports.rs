//! Port lists as the service writes them ("80,443", "3478-3481", "143, 587, 993, 995").

use std::{
    collections::HashSet,
    fmt,
    sync::{Arc, LazyLock, Mutex, PoisonError},
};

use intune_common::{
    maps::PortSet,
    proto::{IPPROTO_TCP, IPPROTO_UDP},
};

/// Sorted, merged, inclusive port ranges of one protocol. Shared, not copied (see [`Ports`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRanges(Arc<[(u16, u16)]>);

impl PortRanges {
    pub fn parse(text: &str) -> Result<PortRanges, String> {
        let mut ranges = Vec::new();
        for item in text.split(',').map(str::trim) {
            if item.is_empty() {
                continue;
            }
            let (lo, hi) = if let Some((lo, hi)) = item.split_once('-') {
                (parse_port(lo.trim())?, parse_port(hi.trim())?)
            } else {
                let p = parse_port(item)?;
                (p, p)
            };
            if lo > hi {
                return Err(format!("port range {item:?} runs backwards"));
            }
            ranges.push((lo, hi));
        }
        Ok(PortRanges::from_ranges(ranges))
    }

    pub fn from_ranges(mut ranges: Vec<(u16, u16)>) -> PortRanges {
        ranges.sort_unstable();
        let mut merged: Vec<(u16, u16)> = Vec::with_capacity(ranges.len());
        for (lo, hi) in ranges {
            match merged.last_mut() {
                Some(last) if u32::from(lo) <= u32::from(last.1) + 1 => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        PortRanges(merged.into())
    }

    pub fn union(&self, other: &PortRanges) -> PortRanges {
        if other.0.is_empty() || self == other {
            return self.clone();
        }
        if self.0.is_empty() {
            return other.clone();
        }
        PortRanges::from_ranges(self.0.iter().chain(other.0.iter()).copied().collect())
    }

    pub fn contains(&self, port: u16) -> bool {
        self.0.iter().any(|&(lo, hi)| lo <= port && port <= hi)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn ranges(&self) -> &[(u16, u16)] {
        &self.0
    }
}

fn parse_port(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{text:?} is not a port (1-65535)")),
        Ok(p) => Ok(p),
    }
}

impl fmt::Display for PortRanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &(lo, hi)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if lo == hi {
                write!(f, "{lo}")?;
            } else {
                write!(f, "{lo}-{hi}")?;
            }
        }
        Ok(())
    }
}

impl serde::Serialize for PortRanges {
    /// As the service writes it: "80,443".
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for PortRanges {
    /// What [`Serialize`](serde::Serialize) wrote: "80,443", "" for none.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<PortRanges, D::Error> {
        let text = String::deserialize(d)?;
        if text.trim().is_empty() {
            return Ok(PortRanges::default());
        }
        PortRanges::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// TCP and UDP ports.
#[derive(
    Clone,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub struct PortLists {
    #[serde(rename = "tcpPorts")]
    pub tcp: PortRanges,
    #[serde(rename = "udpPorts")]
    pub udp: PortRanges,
}

/// TCP and UDP ports, interned: one copy of each distinct pair of lists, made the first time
/// it is seen and kept for the life of the process (there are a handful: the lists the sources
/// write and their unions), so that taking a list is copying a pointer. A rule set of 100,000
/// prefixes takes one for every rule twice; a shared count to change each time (an atomic
/// operation, which waits for the rule's own stores) cost more than the rest of making a rule.
/// Equal lists are one copy: equality is a pointer comparison. What the sources' lists may
/// add in all is bounded ([`MAX_LISTED_RANGES`]).
#[derive(Clone, Copy)]
pub struct Ports(&'static PortLists);

/// The ranges the lists read from sources may add to the interned ones (256 KiB): every list a
/// gateway reads in a year takes a few hundred. More is a source writing ever new lists; its
/// new lists are refused (the rules in force stay) rather than kept without end.
pub const MAX_LISTED_RANGES: usize = 1 << 15;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "the port lists read so far hold {MAX_LISTED_RANGES} ranges, the most kept (does a source write new port lists on every read?); restart intune-ctl to read new ones"
)]
pub struct TooManyPortLists;

#[derive(Default)]
struct Interned {
    lists: HashSet<&'static PortLists>,
    /// The ranges of the lists interned as read (not unions).
    listed_ranges: usize,
}

impl Interned {
    /// Runs `f` on the process's interned lists.
    fn with<R>(f: impl FnOnce(&mut Interned) -> R) -> R {
        static INTERNED: LazyLock<Mutex<Interned>> = LazyLock::new(Mutex::default);
        // A panic while they were held cannot leave them half-changed: an insert is one call.
        f(&mut INTERNED.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn get(&self, lists: &PortLists) -> Option<Ports> {
        self.lists.get(lists).map(|&lists| Ports(lists))
    }

    /// The copy of a list read from a source: a new one only while the bound allows.
    fn listed(&mut self, lists: PortLists) -> Result<Ports, TooManyPortLists> {
        if let Some(ports) = self.get(&lists) {
            return Ok(ports);
        }
        let ranges = lists.tcp.ranges().len() + lists.udp.ranges().len();
        if self.listed_ranges + ranges > MAX_LISTED_RANGES {
            return Err(TooManyPortLists);
        }
        self.listed_ranges += ranges;
        Ok(self.insert(lists))
    }

    fn insert(&mut self, lists: PortLists) -> Ports {
        let lists: &'static PortLists = Box::leak(Box::new(lists));
        self.lists.insert(lists);
        Ports(lists)
    }
}

impl PartialEq for Ports {
    fn eq(&self, other: &Ports) -> bool {
        std::ptr::eq(self.0, other.0)
    }
}

impl Eq for Ports {}

impl std::hash::Hash for Ports {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::ptr::hash(self.0, state);
    }
}

impl PartialOrd for Ports {
    fn partial_cmp(&self, other: &Ports) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ports {
    /// By the lists (equal only when one copy, as they are interned).
    fn cmp(&self, other: &Ports) -> std::cmp::Ordering {
        self.0.cmp(other.0)
    }
}

impl fmt::Debug for Ports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::ops::Deref for Ports {
    type Target = PortLists;
    fn deref(&self) -> &PortLists {
        self.0
    }
}

impl Default for Ports {
    /// No ports: what every rule starts with, so kept at hand rather than looked up.
    fn default() -> Self {
        static NONE: LazyLock<Ports> = LazyLock::new(|| {
            Ports::made(PortLists {
                tcp: PortRanges::default(),
                udp: PortRanges::default(),
            })
        });
        *NONE
    }
}

impl serde::Serialize for Ports {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Ports {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Ports, D::Error> {
        let lists = PortLists::deserialize(d)?;
        Ports::listed(lists).map_err(serde::de::Error::custom)
    }
}

impl Ports {
    /// The ports of a list read from a source.
    pub fn new(tcp: PortRanges, udp: PortRanges) -> Result<Ports, TooManyPortLists> {
        Ports::listed(PortLists { tcp, udp })
    }

    fn listed(lists: PortLists) -> Result<Ports, TooManyPortLists> {
        Interned::with(|known| known.listed(lists))
    }

    /// A list made here, not read (a union of lists held already, or none at all): not
    /// counted against the bound (a rule set makes at most `MAX_PORT_SETS` unions).
    fn made(lists: PortLists) -> Ports {
        Interned::with(|known| known.get(&lists).unwrap_or_else(|| known.insert(lists)))
    }

    pub fn union(&self, other: &Ports) -> Ports {
        if other.is_empty() || self == other {
            return *self;
        }
        if self.is_empty() {
            return *other;
        }
        Ports::made(PortLists {
            tcp: self.tcp.union(&other.tcp),
            udp: self.udp.union(&other.udp),
        })
    }

    /// Whether `port` of transport protocol `l4` is allowed.
    pub fn admits(&self, l4: u8, port: u16) -> bool {
        match l4 {
            IPPROTO_TCP => self.tcp.contains(port),
            IPPROTO_UDP => self.udp.contains(port),
            _ => false,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tcp.is_empty() && self.udp.is_empty()
    }

    /// The kernel's one-bit-a-port form.
    pub fn to_port_set(&self) -> PortSet {
        let mut set = PortSet::EMPTY;
        for (l4, ranges) in [(IPPROTO_TCP, &self.tcp), (IPPROTO_UDP, &self.udp)] {
            for &(lo, hi) in ranges.ranges() {
                for port in lo..=hi {
                    set.insert(l4, port);
                }
            }
        }
        set
    }
}

impl fmt::Display for Ports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.tcp.is_empty() {
            parts.push(format!("TCP {}", self.tcp));
        }
        if !self.udp.is_empty() {
            parts.push(format!("UDP {}", self.udp));
        }
        f.write_str(&parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_the_service_writes() {
        assert_eq!(PortRanges::parse("80,443").unwrap().to_string(), "80,443");
        assert_eq!(PortRanges::parse("443,80").unwrap().to_string(), "80,443");
        assert_eq!(
            PortRanges::parse("143, 587, 993, 995").unwrap().to_string(),
            "143,587,993,995"
        );
        assert_eq!(
            PortRanges::parse("3478-3481").unwrap().to_string(),
            "3478-3481"
        );
        assert_eq!(
            PortRanges::parse("3478-3480,3481").unwrap().to_string(),
            "3478-3481"
        );
        assert!(PortRanges::parse("").unwrap().is_empty());
    }

    #[test]
    fn rejects_what_is_not_a_port() {
        for bad in ["0", "65536", "http", "443-80", "80;443", "-5", "1-"] {
            assert!(PortRanges::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn bitmap_holds_exactly_the_ranges() {
        let ports = Ports::new(
            PortRanges::parse("80,5223-5224").unwrap(),
            PortRanges::parse("123").unwrap(),
        )
        .unwrap();
        let set = ports.to_port_set();
        for p in 0..=u16::MAX {
            assert_eq!(
                set.allows(IPPROTO_TCP, p),
                ports.admits(IPPROTO_TCP, p),
                "tcp {p}"
            );
            assert_eq!(
                set.allows(IPPROTO_UDP, p),
                ports.admits(IPPROTO_UDP, p),
                "udp {p}"
            );
        }
    }

    /// Equal lists are one copy; lists read from sources may add at most `MAX_LISTED_RANGES`
    /// ranges in all (here in interned lists of the test's own, not the process's), and a list
    /// past that is refused, while lists held already are still had.
    #[test]
    fn lists_are_one_copy_each_and_new_ones_are_bounded() {
        let ranges = |start: u16, n: u16| {
            PortRanges::from_ranges((0..n).map(|i| (start + 2 * i, start + 2 * i)).collect())
        };
        let lists = |tcp: PortRanges, udp: PortRanges| PortLists { tcp, udp };
        let mut known = Interned::default();
        let a = known
            .listed(lists(ranges(1, 3), PortRanges::default()))
            .unwrap();
        let b = known
            .listed(lists(ranges(1, 3), PortRanges::default()))
            .unwrap();
        assert!(std::ptr::eq(a.0, b.0));
        // Distinct lists of 1,001 ranges each, until one is refused: no later than the bound.
        let mut taken = 0;
        let refused = (0..=MAX_LISTED_RANGES / 1000)
            .find_map(
                |i| match known.listed(lists(ranges(1, 1000), ranges(1 + i as u16, 1))) {
                    Ok(_) => {
                        taken += 1;
                        None
                    }
                    Err(e) => Some(e),
                },
            )
            .expect("lists without end are kept");
        assert_eq!(taken, (MAX_LISTED_RANGES - 3) / 1001);
        assert!(
            refused.to_string().contains("restart intune-ctl"),
            "{refused}"
        );
        // What is held stays had, even past the bound.
        assert_eq!(
            known.listed(lists(ranges(1, 3), PortRanges::default())),
            Ok(a)
        );
        assert!(known.listed(lists(ranges(1, 1000), ranges(1, 1))).is_ok());
    }
}
