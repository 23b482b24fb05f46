//! What the daemon leaves on bpffs so the filter outlives it: the counter maps (a restarted
//! daemon counts on in them), one XDP link per interface (the filter stays attached; a new
//! program replaces the old one through it atomically), and the program (the read-only
//! commands test-run it against its live maps).
//!
//! ```text
//! DIR/maps/RULE_STATS, DIR/maps/OUTCOME_STATS, DIR/maps/PORT_{STATS,SLOTS,SLOT_KEYS}
//! DIR/links/IFACE (a dot written %2e, a percent sign %25)
//! DIR/prog
//! ```

use std::{
    io,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use aya::{
    maps::MapData,
    programs::links::{FdLink, PinnedLink},
};
use intune_common::{
    learn::LEARNED,
    maps::{
        ADDR_ROLES, ALLOW_V4, ALLOW_V6, CONFIG, CONFIG_SECTION, DROP_PORT_STATS, IFACE_DIRECTION,
        LPM_V4, LPM_V6, OUTCOME_STATS, PORT_SETS, PORT_SLOT_KEYS, PORT_SLOTS, PORT_STATS,
        RETIRED_MAPS, RULE_STATS, V4_CHUNKS, V4_SINGLES, V4_TBL16, V6_CHUNKS, V6_SINGLES, V6_TBL16,
    },
    outcome::OUTCOME_COUNT,
};

/// The maps shared by every program the daemon loads: the counters, and the port slots that
/// say which port each port counter counts.
pub const SHARED_MAPS: [&str; 6] = [
    RULE_STATS,
    OUTCOME_STATS,
    PORT_STATS,
    DROP_PORT_STATS,
    PORT_SLOTS,
    PORT_SLOT_KEYS,
];

/// The maps a decision reads: pinned by each daemon for its program, so `lookup` can ask a
/// copy of the program against them (with counters of its own).
pub const LOOKUP_MAPS: [&str; 15] = [
    LEARNED,
    LPM_V4,
    LPM_V6,
    V4_TBL16,
    V4_CHUNKS,
    V4_SINGLES,
    V6_TBL16,
    V6_CHUNKS,
    V6_SINGLES,
    PORT_SETS,
    CONFIG,
    IFACE_DIRECTION,
    ADDR_ROLES,
    ALLOW_V4,
    ALLOW_V6,
];

/// The name in the program of the map pinned as `pin`: the settings' map is named after their
/// section, which has a dot.
pub fn object_map(pin: &'static str) -> &'static str {
    if pin == CONFIG { CONFIG_SECTION } else { pin }
}

/// The pin name of `iface`'s link. bpffs refuses names with a dot (EPERM: "reserved for
/// future use", 5.10 to 6.18 at least), and VLANs have one (`eth0.100`): a dot is written
/// `%2e` and a percent sign `%25`, so every name maps back and names without either are
/// unchanged.
fn pin_name(iface: &str) -> String {
    iface.replace('%', "%25").replace('.', "%2e")
}

/// The interface a link's pin name stands for.
fn iface_of(pin_name: &str) -> String {
    let mut out = String::with_capacity(pin_name.len());
    let mut rest = pin_name;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(r) = rest.strip_prefix("%2e") {
            out.push('.');
            rest = r;
        } else if let Some(r) = rest.strip_prefix("%25") {
            out.push('%');
            rest = r;
        } else {
            out.push('%');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    out
}

#[derive(Clone, Debug)]
pub struct Pins {
    dir: PathBuf,
}

impl Pins {
    pub fn new(dir: impl Into<PathBuf>) -> Pins {
        Pins { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn map(&self, name: &str) -> PathBuf {
        self.dir.join("maps").join(name)
    }

    pub fn link(&self, iface: &str) -> PathBuf {
        self.dir.join("links").join(pin_name(iface))
    }

    pub fn program(&self) -> PathBuf {
        self.dir.join("prog")
    }

    /// Creates the directories; drops a pinned counter map too small for `rules` rules, or
    /// for the outcomes this program counts (its counters start over, which is said in the
    /// log).
    pub fn prepare(&self, rules: u32) -> io::Result<()> {
        std::fs::create_dir_all(self.dir.join("maps"))?;
        std::fs::create_dir_all(self.dir.join("links"))?;
        for (name, needed) in [(RULE_STATS, rules), (OUTCOME_STATS, OUTCOME_COUNT)] {
            let path = self.map(name);
            if let Ok(map) = MapData::from_pin(&path) {
                let entries = map.info().map_or(0, |i| i.max_entries());
                if entries < needed {
                    tracing::warn!(
                        map = name,
                        entries,
                        needed,
                        "a pinned counter map is too small for this program; its counters start over"
                    );
                    std::fs::remove_file(&path)?;
                }
            }
        }
        Ok(())
    }

    /// Interfaces with a pinned link.
    pub fn linked_ifaces(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.dir.join("links")) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .map(|n| iface_of(&n))
            .collect();
        names.sort();
        names
    }

    /// The ifindex `iface`'s pinned link is on: 0 when it is severed (the interface was
    /// deleted), `None` without a readable pin.
    pub fn link_ifindex(&self, iface: &str) -> Option<u32> {
        super::link_ifindex::pinned_xdp_ifindex(&self.link(iface)).ok()
    }

    /// Unpins `iface`'s link: with no process holding it, the filter leaves the interface.
    /// Returns whether there was one, once the kernel has released it (it does so from a
    /// work queue, a moment after the unpin).
    pub fn remove_link(&self, iface: &str) -> io::Result<bool> {
        let path = self.link(iface);
        let id = PinnedLink::from_pin(&path)
            .ok()
            .and_then(|p| FdLink::from(p).info().ok())
            .map(|info| info.id());
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        }
        if let Some(id) = id {
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline
                && aya::programs::loaded_links().any(|l| l.is_ok_and(|l| l.id() == id))
            {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        Ok(true)
    }

    /// Removes every pin and the directory: nothing of the filter stays.
    pub fn remove_all(&self) -> io::Result<()> {
        for iface in self.linked_ifaces() {
            self.remove_link(&iface)?;
        }
        for path in SHARED_MAPS
            .iter()
            .chain(LOOKUP_MAPS.iter())
            .chain(RETIRED_MAPS.iter())
            .map(|m| self.map(m))
            .chain([self.program()])
        {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        for sub in ["maps", "links", ""] {
            let _ = std::fs::remove_dir(self.dir.join(sub));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{iface_of, pin_name};

    #[test]
    fn link_pin_names_have_no_dot_and_map_back() {
        for (iface, pin) in [
            ("eth0", "eth0"),
            ("eth0.100", "eth0%2e100"),
            ("a%2e", "a%252e"),
            ("x.%.y", "x%2e%25%2ey"),
            ("%2e", "%252e"),
            ("%.", "%25%2e"),
        ] {
            assert_eq!(pin_name(iface), pin, "{iface}");
            assert_eq!(iface_of(pin), iface, "{pin}");
        }
    }
}
