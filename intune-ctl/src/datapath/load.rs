//! Loading the embedded kernel program and attaching it to interfaces.

use std::path::PathBuf;

use aya::{
    Ebpf, EbpfLoader,
    programs::{
        ProgramError, Xdp, XdpMode,
        links::{FdLink, LinkError, PinnedLink},
        xdp::{XdpLink, XdpLinkId},
    },
};
use intune_common::{
    learn::LEARNED,
    maps::{
        LPM_V4, LPM_V6, MAX_PREFIXES_V4, MAX_PREFIXES_V6, MAX_RULES, RETIRED_MAPS, RULE_STATS,
        V4_CHUNKS, V4_SINGLES, V4_TABLE_CHUNKS, V4_TABLE_SINGLES, V6_CHUNKS, V6_SINGLES,
        V6_TABLE_CHUNKS, V6_TABLE_SINGLES,
    },
};

use super::pins::{LOOKUP_MAPS, Pins, SHARED_MAPS, object_map};
use crate::ruleset::{
    policy::Policy,
    rules::RuleSet,
    table::{Family, PrefixTable},
};

/// The kernel program, built by build.rs from the `intune-ebpf` crate.
static PROGRAM: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/intune-xdp"));
/// An XDP program that passes everything: the benchmark's floor.
pub static FLOOR_PROGRAM: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdp-floor"));

pub const PROGRAM_NAME: &str = "intune_xdp";

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("loading the BPF object failed (are you root?): {0}")]
    Load(#[from] aya::EbpfError),
    #[error("the BPF program: {0}")]
    Program(#[from] ProgramError),
    #[error("BPF map {name}: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
    #[error("the object has no {0}")]
    Missing(&'static str),
    #[error("interface {0} does not exist")]
    NoInterface(String),
    #[error("attaching to {iface} in {mode} mode failed: {source}")]
    Attach {
        iface: String,
        mode: &'static str,
        source: ProgramError,
    },
    #[error("mapping BPF map {name} into memory: {source}")]
    Mmap {
        name: &'static str,
        source: std::io::Error,
    },
    #[error(
        "BPF map {name} holds {value_size}-byte values (or keys not 4 bytes), not the {expected} bytes written"
    )]
    Layout {
        name: &'static str,
        value_size: u32,
        expected: usize,
    },
    #[error("writing BPF map {name} in a batch ({written} entries done): {source}")]
    Batch {
        name: &'static str,
        written: u32,
        source: std::io::Error,
    },
    #[error("reading BPF map {name} in a batch: {source}")]
    BatchRead {
        name: &'static str,
        source: std::io::Error,
    },
    #[error("pinning: {0}")]
    Pin(#[from] aya::pin::PinError),
    #[error("counting CPUs: {0}")]
    Cpus(std::io::Error),
    #[error("the pinned XDP link: {0}")]
    Link(LinkError),
    #[error("the pin directory: {0}")]
    Pins(std::io::Error),
    #[error("duplicating a program's descriptor: {0}")]
    Fd(std::io::Error),
    #[error("the kernel program's log: {0}")]
    KernelLog(String),
    #[error("the policy: {0}")]
    Allow(#[from] crate::ruleset::policy::AllowError),
}

/// Map sizes the program is loaded with.
#[derive(Clone, Copy, Debug)]
pub struct Capacity {
    pub prefixes_v4: u32,
    pub prefixes_v6: u32,
    pub rules: u32,
    /// Chunks and singles of each family's table; 0 chunks leaves the family to its trie.
    pub v4_table_chunks: u32,
    pub v4_table_singles: u32,
    pub v6_table_chunks: u32,
    pub v6_table_singles: u32,
    /// Addresses learned from DNS answers, each with a rule counter after the rules'.
    pub learned: u32,
}

impl Default for Capacity {
    fn default() -> Self {
        Capacity {
            prefixes_v4: MAX_PREFIXES_V4,
            prefixes_v6: MAX_PREFIXES_V6,
            rules: MAX_RULES,
            v4_table_chunks: V4_TABLE_CHUNKS,
            v4_table_singles: V4_TABLE_SINGLES,
            v6_table_chunks: V6_TABLE_CHUNKS,
            v6_table_singles: V6_TABLE_SINGLES,
            learned: 0,
        }
    }
}

impl Capacity {
    /// Chunks and singles a large rule set may take in the IPv4 table: 80 MiB of chunks (about
    /// one for each /16 that holds two or more prefixes longer than /16, and a few under
    /// them), 40 MiB of singles.
    const MAX_V4_TABLE_CHUNKS: u32 = (1 << 16) + (1 << 14);
    const MAX_V4_TABLE_SINGLES: u32 = 1 << 20;
    /// And in the IPv6 table: 128 MiB of chunks, 40 MiB of singles at most. A random rule
    /// set's IPv6 prefixes need about one chunk for every four and a single each.
    const MAX_V6_TABLE_CHUNKS: u32 = 1 << 17;
    const MAX_V6_TABLE_SINGLES: u32 = 1 << 20;
    /// Rule counters a program is loaded with at least. The kernel allocates a per-CPU
    /// array's elements one by one (about a microsecond each, under a lock): the 65,536 this
    /// once was took 80 ms of every start. A rule set that outgrows its counters moves to a
    /// copy of the program with more (`grow.rs`).
    const MIN_RULE_COUNTERS: u32 = 4096;

    /// Room for at least `prefixes` prefixes of either family, counters for as many rules and
    /// half as many again (a refresh that adds some needs no bigger maps; a counter is 16 bytes
    /// on each CPU), and an IPv4 table that grows with them (beyond its largest size, IPv4
    /// falls back to the trie).
    pub fn for_prefixes(prefixes: usize) -> Capacity {
        let d = Capacity::default();
        let need = u32::try_from(prefixes + 1).unwrap_or(u32::MAX);
        Capacity {
            prefixes_v4: d.prefixes_v4.max(need),
            prefixes_v6: d.prefixes_v6.max(need),
            rules: need.saturating_add(need / 2).max(Self::MIN_RULE_COUNTERS),
            v4_table_chunks: d.v4_table_chunks.max(need.min(Self::MAX_V4_TABLE_CHUNKS)),
            v4_table_singles: d.v4_table_singles.max(need.min(Self::MAX_V4_TABLE_SINGLES)),
            v6_table_chunks: d
                .v6_table_chunks
                .max((need / 2).min(Self::MAX_V6_TABLE_CHUNKS)),
            v6_table_singles: d.v6_table_singles.max(need.min(Self::MAX_V6_TABLE_SINGLES)),
            learned: 0,
        }
    }
}

/// How to attach.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpChoice {
    /// Native, falling back to generic when the driver has no XDP support.
    #[default]
    Auto,
    Native,
    Generic,
}

/// How the program looks addresses of a family up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The family's table (16 bits, then a byte a level; a lone prefix as one entry).
    Table,
    /// The LPM trie: the table did not fit its maps.
    Trie,
}

impl Lookup {
    pub fn name(self) -> &'static str {
        match self {
            Lookup::Table => "table",
            Lookup::Trie => "trie",
        }
    }
}

/// How a pinned attach went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attached {
    /// A new link, in this mode ("native" or "generic").
    New(&'static str),
    /// The program replaced the one on an existing link (a restart): no gap.
    Replaced,
}

pub struct Datapath {
    pub(crate) ebpf: Ebpf,
    pub(crate) capacity: Capacity,
    pub(crate) v4_lookup: Lookup,
    pub(crate) v6_lookup: Lookup,
    /// The rule set the maps hold.
    pub(crate) installed: Option<RuleSet>,
    /// What the kernel's IPv4 table holds.
    pub(crate) v4_table: Option<PrefixTable>,
    /// What the kernel's IPv6 table holds.
    pub(crate) v6_table: Option<PrefixTable>,
    /// Each family's first level (IPv4, IPv6), mapped at its first update and kept.
    pub(crate) first_levels: [Option<super::mmap::FirstLevel>; 2],
    /// Whether each family's trie (IPv4, IPv6) holds exactly the installed rule set's
    /// prefixes. A family on its table leaves its trie alone: a million prefixes load in a
    /// fraction of the time and the kernel keeps no nodes for them. The trie is written anew
    /// when the table no longer fits.
    pub(crate) trie_current: [bool; 2],
    /// The last update failed: the tables may hold more than the installed rule set.
    pub(crate) tables_resync: bool,
    pub(crate) policy: Policy,
    pub(crate) trace: bool,
    /// Which port each port counter counts; read from the maps at the first update.
    pub(crate) port_slots: Option<super::ports::PortSlots>,
    /// The program was loaded with its debug log on.
    pub(crate) kernel_log_on: bool,
    /// Learned addresses count as Intune (the DNS capture runs).
    pub(crate) learning: bool,
    /// The capture's name hash key (odd, random at each load; see `learn::NAME_HASH_START`).
    pub(crate) name_hash_key: u64,
    /// The interfaces the DNS capture is attached to.
    pub(crate) captures: Vec<(String, aya::programs::tc::SchedClassifierLinkId)>,
    /// The gateway's own interface addresses, as last told.
    pub(crate) local: Vec<ipnet::IpNet>,
    /// What `ADDR_ROLES` holds.
    pub(crate) roles: std::collections::HashMap<[u8; 16], u32>,
    /// Entries being removed from `ADDR_ROLES`: their bits stay in the config until they left.
    pub(crate) roles_leaving: Vec<[u8; 16]>,
    /// The prefixes `ALLOW_V4` / `ALLOW_V6` hold.
    pub(crate) allowed: Vec<ipnet::IpNet>,
    /// What leaves the lists drains for its connections until idle this long (off: `None`).
    pub(crate) drain_idle: Option<std::time::Duration>,
    /// How removed rules' counters are taken (`take`).
    pub(crate) taker: super::take::Taker,
}

impl Datapath {
    /// Loads the program (not attached) with maps of the given capacity.
    pub fn load(capacity: Capacity) -> Result<Datapath, DatapathError> {
        Self::load_inner(capacity, None)
    }

    /// As [`Datapath::load`], with the counter maps pinned under `pins` (re-used when a
    /// previous daemon left them: its counts carry on).
    pub fn load_pinned(capacity: Capacity, pins: &Pins) -> Result<Datapath, DatapathError> {
        pins.prepare(capacity.rules + capacity.learned)
            .map_err(DatapathError::Pins)?;
        Self::load_inner(capacity, Some(pins))
    }

    fn load_inner(capacity: Capacity, pins: Option<&Pins>) -> Result<Datapath, DatapathError> {
        let mut loader = EbpfLoader::new();
        let paths: Vec<(&str, PathBuf)> = pins
            .map(|p| SHARED_MAPS.iter().map(|m| (*m, p.map(m))).collect())
            .unwrap_or_default();
        for (name, path) in &paths {
            loader.map_pin_path(name, path.as_path());
        }
        Self::load_with(&mut loader, capacity)
    }

    /// Loads the program with `loader` (which may name pinned maps to re-use).
    pub(crate) fn load_with(
        loader: &mut EbpfLoader,
        capacity: Capacity,
    ) -> Result<Datapath, DatapathError> {
        super::kernel::Kernel::current().raise_memlock();
        // An array map needs at least one entry, even when the table is off.
        let log_level = super::kernel_log::level();
        let mut ebpf = loader
            .override_global(aya_log::LEVEL, log_level, true)
            .map_max_entries(LPM_V4, capacity.prefixes_v4)
            .map_max_entries(LPM_V6, capacity.prefixes_v6)
            .map_max_entries(RULE_STATS, capacity.rules + capacity.learned)
            .map_max_entries(LEARNED, capacity.learned.max(1))
            .map_max_entries(V4_CHUNKS, capacity.v4_table_chunks.max(1))
            .map_max_entries(V4_SINGLES, capacity.v4_table_singles.max(1))
            .map_max_entries(V6_CHUNKS, capacity.v6_table_chunks.max(1))
            .map_max_entries(V6_SINGLES, capacity.v6_table_singles.max(1))
            .load(PROGRAM)?;
        program_mut(&mut ebpf)?.load()?;
        release_object_pages();
        if *log_level != 0 {
            super::kernel_log::install(&mut ebpf)?;
        }
        Ok(Datapath {
            ebpf,
            capacity,
            v4_lookup: Lookup::Trie,
            v6_lookup: Lookup::Trie,
            installed: None,
            v4_table: None,
            v6_table: None,
            first_levels: [None, None],
            trie_current: [true, true],
            tables_resync: false,
            policy: Policy::default(),
            trace: false,
            port_slots: None,
            kernel_log_on: *log_level != 0,
            learning: false,
            name_hash_key: rand::random::<u64>() | 1,
            captures: Vec::new(),
            local: Vec::new(),
            roles: std::collections::HashMap::new(),
            roles_leaving: Vec::new(),
            allowed: Vec::new(),
            drain_idle: None,
            taker: super::take::Taker::Untried,
        })
    }

    /// Pins the maps a decision reads, replacing a previous daemon's: `lookup` runs a copy of
    /// the program against them.
    pub fn pin_lookup_maps(&self, pins: &Pins) -> Result<(), DatapathError> {
        // An earlier version's pins go too: `detach` would otherwise leave them behind.
        for name in RETIRED_MAPS {
            match std::fs::remove_file(pins.map(name)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(DatapathError::Pins(e));
                }
                _ => {}
            }
        }
        for name in LOOKUP_MAPS {
            let path = pins.map(name);
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(DatapathError::Pins(e));
                }
                _ => {}
            }
            self.ebpf
                .map(object_map(name))
                .ok_or(DatapathError::Missing(name))?
                .pin(&path)?;
        }
        Ok(())
    }

    /// The key the capture hashes names with; the learner writes `LEARN_NAMES` with it.
    pub fn name_hash_key(&self) -> u64 {
        self.name_hash_key
    }

    /// How the program looks IPv4 up since the last `install`.
    pub fn v4_lookup(&self) -> Lookup {
        self.v4_lookup
    }

    pub fn v6_lookup(&self) -> Lookup {
        self.v6_lookup
    }

    /// Chunks and singles the family's table holds.
    pub fn table_size(&self, family: Family) -> (usize, usize) {
        match family {
            Family::V4 => &self.v4_table,
            Family::V6 => &self.v6_table,
        }
        .as_ref()
        .map_or((0, 0), |t| (t.chunks(), t.singles()))
    }

    /// The program itself, to attach it some other way (the benchmark's real packet path).
    pub fn program_mut(&mut self) -> Result<&mut Xdp, DatapathError> {
        program_mut(&mut self.ebpf)
    }

    pub fn program(&self) -> Result<&Xdp, DatapathError> {
        self.ebpf
            .program(PROGRAM_NAME)
            .ok_or(DatapathError::Missing("XDP program"))?
            .try_into()
            .map_err(DatapathError::Program)
    }

    /// Attaches to `iface` (ifindex `ifindex`) through the link pinned for it, replacing the
    /// program there atomically, or through a new link it pins. The link belongs to the pin,
    /// not to this process: the filter stays when the daemon stops. A pinned link that is
    /// not on this interface any more goes first: severed (the interface was deleted, and
    /// perhaps created again under its name: a VLAN's ifdown/ifup, a PPPoE reconnect, a
    /// replugged NIC), or on another interface (renamed away: the filter follows the name).
    pub fn attach_pinned(
        &mut self,
        iface: &str,
        ifindex: u32,
        choice: XdpChoice,
        pins: &Pins,
    ) -> Result<Attached, DatapathError> {
        let path = pins.link(iface);
        let stale = match pins.link_ifindex(iface) {
            None => None,
            Some(on) if on == ifindex => None,
            Some(0) => Some(
                "the pinned link's interface was deleted since (the link is severed): attaching anew",
            ),
            Some(_) => Some(
                "the pinned link is on another interface now (renamed away): moving the filter to the one named so",
            ),
        };
        if let Some(why) = stale {
            tracing::warn!(iface, "{why}");
            pins.remove_link(iface).map_err(DatapathError::Pins)?;
        }
        let prog = program_mut(&mut self.ebpf)?;
        if let Ok(pinned) = PinnedLink::from_pin(&path) {
            let link = XdpLink::try_from(FdLink::from(pinned)).map_err(DatapathError::Link)?;
            match prog.attach_to_link(link) {
                Ok(id) => {
                    // Hand the link back to its pin: dropping our handle must not detach it.
                    let _handle: FdLink = prog
                        .take_link(id)?
                        .try_into()
                        .map_err(DatapathError::Link)?;
                    return Ok(Attached::Replaced);
                }
                // Deleted between the look and the update.
                Err(e) if severed(&e) => {
                    tracing::warn!(
                        iface,
                        "the pinned link's interface was deleted since (the link is severed): attaching anew"
                    );
                    std::fs::remove_file(&path).map_err(DatapathError::Pins)?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        let (id, mode) = self.attach_link(iface, choice)?;
        let prog = program_mut(&mut self.ebpf)?;
        let link: FdLink = prog
            .take_link(id)?
            .try_into()
            .map_err(DatapathError::Link)?;
        link.pin(&path)?;
        Ok(Attached::New(mode))
    }

    /// Pins the program at `pins`' program path, replacing a previous daemon's.
    pub fn pin_program_at(&mut self, pins: &Pins) -> Result<(), DatapathError> {
        let path = pins.program();
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(DatapathError::Pins(e));
            }
            _ => {}
        }
        self.pin_program(&path)
    }

    fn attach_link(
        &mut self,
        iface: &str,
        choice: XdpChoice,
    ) -> Result<(XdpLinkId, &'static str), DatapathError> {
        let prog = program_mut(&mut self.ebpf)?;
        let attempt = |prog: &mut Xdp, mode: XdpMode, name: &'static str| {
            prog.attach(iface, mode)
                .map(|id| (id, name))
                .map_err(|source| match source {
                    ProgramError::UnknownInterface { .. } => {
                        DatapathError::NoInterface(iface.into())
                    }
                    source => DatapathError::Attach {
                        iface: iface.into(),
                        mode: name,
                        source,
                    },
                })
        };
        match choice {
            XdpChoice::Native => attempt(prog, XdpMode::Driver, "native"),
            XdpChoice::Generic => attempt(prog, XdpMode::Skb, "generic"),
            XdpChoice::Auto => match attempt(prog, XdpMode::Driver, "native") {
                Err(DatapathError::Attach { source, .. }) if native_unsupported(&source) => {
                    tracing::warn!(
                        iface,
                        "the driver has no native XDP; attaching in generic mode"
                    );
                    attempt(prog, XdpMode::Skb, "generic")
                }
                other => other,
            },
        }
    }

    /// Pins the program at `path` on a bpffs, where another handle can find it.
    pub fn pin_program(&mut self, path: &std::path::Path) -> Result<(), DatapathError> {
        program_mut(&mut self.ebpf)?.pin(path)?;
        Ok(())
    }
}

/// Hands back the resident pages of the embedded program object (a megabyte, mostly BTF):
/// aya has parsed all of it into its own structures, and a daemon keeps running for months.
/// They are clean pages of the executable, read again from it if a later load needs them.
fn release_object_pages() {
    // SAFETY: sysconf has no preconditions.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    let start = PROGRAM.as_ptr() as usize;
    let first = start.div_ceil(page) * page;
    let last = (start + PROGRAM.len()) / page * page;
    if last > first {
        // SAFETY: whole pages inside a read-only, file-backed mapping of our own executable:
        // dropping them only makes the next read fault them in again from the file.
        unsafe {
            libc::madvise(
                first as *mut libc::c_void,
                last - first,
                libc::MADV_DONTNEED,
            );
        }
    }
}

fn program_mut(ebpf: &mut Ebpf) -> Result<&mut Xdp, DatapathError> {
    ebpf.program_mut(PROGRAM_NAME)
        .ok_or(DatapathError::Missing("XDP program"))?
        .try_into()
        .map_err(DatapathError::Program)
}

/// Whether an error says a link's interface is gone (ENOLINK from `bpf_link_update`).
fn severed(err: &ProgramError) -> bool {
    os_error(err) == Some(libc::ENOLINK)
}

/// The OS error code an error carries, if any.
fn os_error(err: &ProgramError) -> Option<i32> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return io.raw_os_error();
        }
        source = e.source();
    }
    None
}

/// Whether an attach error says the driver cannot run XDP natively.
fn native_unsupported(err: &ProgramError) -> bool {
    matches!(os_error(err), Some(libc::EOPNOTSUPP | libc::EINVAL))
}

#[cfg(test)]
mod tests {
    use super::Capacity;

    /// Worked by hand: the built-in list's 95 rules get the least (4,096); 10,000 prefixes
    /// need 10,001 counters (index 0 to 10,000) and half as many again, 15,001; the sum never
    /// wraps.
    #[test]
    fn rule_counters_are_what_the_rules_need_and_half_again_with_a_floor() {
        assert_eq!(Capacity::for_prefixes(95).rules, 4096);
        // 2,731 + 1,365 = 4,096; one more prefix, 2,732 + 1,366.
        assert_eq!(Capacity::for_prefixes(2730).rules, 4096);
        assert_eq!(Capacity::for_prefixes(2731).rules, 4098);
        assert_eq!(Capacity::for_prefixes(10_000).rules, 15_001);
        assert_eq!(Capacity::for_prefixes(u32::MAX as usize).rules, u32::MAX);
    }
}
