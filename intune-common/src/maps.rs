//! Map names and value layouts. Every layout is `#[repr(C)]` with no implicit padding, so the
//! kernel and userspace read the same bytes.

/// LPM trie of IPv4 prefixes: key `Key<[u8; 4]>` (address in network order), value [`RuleRef`].
pub const LPM_V4: &str = "LPM_V4";
/// LPM trie of IPv6 prefixes: key `Key<[u8; 16]>`, value [`RuleRef`].
pub const LPM_V6: &str = "LPM_V6";
/// The IPv4 lookup table (see `table`): 65,536 first-level entries (u32).
pub const V4_TBL16: &str = "V4_TBL16";
/// Chunks of 256 entries (u32) for both levels below, each indexed by the next byte.
pub const V4_CHUNKS: &str = "V4_CHUNKS";
/// Array of `table::Single`: the one prefix below an entry.
pub const V4_SINGLES: &str = "V4_SINGLES";
/// The IPv6 lookup table, likewise (fourteen chunk levels).
pub const V6_TBL16: &str = "V6_TBL16";
pub const V6_CHUNKS: &str = "V6_CHUNKS";
pub const V6_SINGLES: &str = "V6_SINGLES";
/// Maps of earlier versions' IPv4 table (DIR-16-8-8), whose pins an upgrade removes.
pub const RETIRED_MAPS: [&str; 2] = ["V4_TBL24", "V4_TBL32"];
/// Array of [`PortSet`], indexed by [`RuleRef::port_set`].
pub const PORT_SETS: &str = "PORT_SETS";
/// Per-CPU array of [`Counter`], indexed by rule.
pub const RULE_STATS: &str = "RULE_STATS";
/// Per-CPU array of [`Counter`], indexed by [`crate::outcome::Outcome`].
pub const OUTCOME_STATS: &str = "OUTCOME_STATS";
/// Array of u32 indexed by [`port_key`]: the port's slot in `PORT_STATS`, 0 for a port
/// without one (counted in [`OTHER_PORTS_SLOT`]).
pub const PORT_SLOTS: &str = "PORT_SLOTS";
/// Per-CPU array of [`Counter`], indexed by port slot: Intune hits by the port that matched.
pub const PORT_STATS: &str = "PORT_STATS";
/// Per-CPU array of [`Counter`], indexed by port slot as `PORT_STATS` is: frames dropped (in
/// monitor mode: passed unmatched) by the port they were sent to, so a port the Intune list
/// names that starts to drop says the list misses an address.
pub const DROP_PORT_STATS: &str = "DROP_PORT_STATS";
/// Array of u32 indexed by port slot: the [`port_key`] + 1 the slot counts for, 0 when free.
/// Only userspace reads it: a restarted daemon keeps the slots (and their counts), and `stats`
/// names them while the daemon is down.
pub const PORT_SLOT_KEYS: &str = "PORT_SLOT_KEYS";
/// The program's [`Config`]: a global in a data section of its own, which the program reads at
/// an address the verifier knows, with no map lookup. Its map (an array of one entry) is named
/// after the section, [`CONFIG_SECTION`]; it is pinned as `CONFIG` (bpffs refuses dots).
pub const CONFIG: &str = "CONFIG";
/// The section, and so the map, holding the [`Config`] global [`CONFIG_SYMBOL`].
pub const CONFIG_SECTION: &str = ".data.config";
/// The [`Config`] global's symbol: a program copy starts with a live filter's settings by
/// setting it before load.
pub const CONFIG_SYMBOL: &str = "INTUNE_CONFIG";
/// Hash of ifindex (u32) -> direction bits, consulted when [`Config::FLAG_PER_IFACE`] is set.
pub const IFACE_DIRECTION: &str = "IFACE_DIRECTION";
/// Hash of address (IPv4 as `::ffff:a.b.c.d`) -> role bits ([`ROLE_DNS_RESOLVER`], ...): the
/// addresses the infrastructure and local rules know by name, one lookup for all of them.
pub const ADDR_ROLES: &str = "ADDR_ROLES";
/// LPM tries of `[[policy.allow]]` prefixes: key `Key<[u8; 4]>` / `Key<[u8; 16]>`, value
/// [`AllowEntry`]; consulted when [`Config::FLAG_POLICY_ALLOW`] is set.
pub const ALLOW_V4: &str = "ALLOW_V4";
pub const ALLOW_V6: &str = "ALLOW_V6";
/// LPM trie of [`DrainEntry`], key `Key<[u8; 16]>` (IPv6, or IPv4 mapped with the prefix
/// length plus 96): what left the lists while connections may still use it, consulted when
/// nothing listed allows a packet and [`Config::FLAG_DRAINING`] is set.
pub const DRAIN: &str = "DRAIN";
/// Array with one [`Trace`]: the last decision, written only when [`Config::FLAG_TRACE`] is set.
pub const TRACE: &str = "TRACE";
/// The classifier's tail calls: the log program (debug level only) and the DNS query
/// recorder (learning on).
pub const XDP_TAIL: &str = "XDP_TAIL";
/// `XDP_TAIL`'s entries.
pub const LOG_PROGRAM_INDEX: u32 = 0;
pub const QUERY_PROGRAM_INDEX: u32 = 1;

/// The program that takes rules' counters: run once on each CPU (a test run pinned to it), it
/// adds that CPU's counters of the rules listed in [`TAKE_INDICES`] to [`TAKE_SUMS`] and zeroes
/// them. An update reads its removed rules so: a call a CPU, where the syscalls read and zero a
/// per-CPU entry a call each.
pub const TAKE_PROGRAM: &str = "intune_take_counters";
/// Array of u32, mapped by userspace: the rule indices to take, as many as the run's first
/// argument says.
pub const TAKE_INDICES: &str = "TAKE_INDICES";
/// Array of [`Counter`], mapped by userspace: the sums of the indices' counters over the CPUs
/// the program ran on, in their order.
pub const TAKE_SUMS: &str = "TAKE_SUMS";
/// Rules one run takes at most: the loop's bound, which the verifier walks through (about
/// 50 ms at 256, 175 ms at 1,024).
pub const MAX_TAKE: u32 = 256;

/// Default capacities; userspace may raise them before loading.
pub const MAX_PREFIXES_V4: u32 = 1 << 21;
pub const MAX_PREFIXES_V6: u32 = 1 << 20;
pub const MAX_RULES: u32 = 1 << 16;
pub const MAX_PORT_SETS: u32 = 64;
/// Chunks (1 KiB each) and singles (40 bytes each) of each family's table, by default.
pub const V4_TABLE_CHUNKS: u32 = 512;
pub const V4_TABLE_SINGLES: u32 = 16_384;
pub const V6_TABLE_CHUNKS: u32 = 1024;
pub const V6_TABLE_SINGLES: u32 = 16_384;
pub const MAX_IFACES: u32 = 256;
/// Resolvers, DHCP servers, the gateway's own addresses and its subnets' broadcasts.
pub const MAX_ADDR_ROLES: u32 = 4096;
pub const MAX_ALLOW_ENTRIES: u32 = 1024;
/// Prefixes and addresses draining at most; beyond, a leaving one leaves at once.
pub const MAX_DRAIN: u32 = 65_536;

/// Role bits of an address in `ADDR_ROLES`.
pub const ROLE_DNS_RESOLVER: u32 = 1;
pub const ROLE_DHCP_SERVER: u32 = 2;
/// One of the gateway's own interface addresses.
pub const ROLE_LOCAL: u32 = 4;
/// The broadcast address of one of the gateway's IPv4 subnets.
pub const ROLE_BROADCAST: u32 = 8;
/// Entries of `PORT_SLOTS`: every TCP port, then every UDP port.
pub const PORT_KEYS: u32 = 2 * 65536;
/// Slots of `PORT_STATS`, the first for ports without a slot of their own: far more than the
/// Intune list names (six ports), few enough to cost 16 KiB a CPU.
pub const MAX_PORT_SLOTS: u32 = 1024;
pub const OTHER_PORTS_SLOT: u32 = 0;
/// Port key of a decision that matched no port (a later fragment, or no match).
pub const NO_PORT: u32 = u32::MAX;

/// The index of a TCP or UDP port in `PORT_SLOTS`.
#[inline(always)]
pub fn port_key(l4: u8, port: u16) -> u32 {
    match l4 {
        crate::proto::IPPROTO_UDP => 65536 + u32::from(port),
        _ => u32::from(port),
    }
}

/// The protocol and port of a [`port_key`].
pub fn key_port(key: u32) -> (u8, u16) {
    let proto = if key >= 65536 {
        crate::proto::IPPROTO_UDP
    } else {
        crate::proto::IPPROTO_TCP
    };
    (proto, (key & 0xffff) as u16)
}

/// Rule index that means "no rule" in a [`Trace`].
pub const NO_RULE: u32 = u32::MAX;

/// What an LPM trie entry points at: the rule credited with the hit and the port set it allows.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleRef {
    pub rule: u32,
    pub port_set: u32,
}

pub const PORT_WORDS: usize = 65536 / 64;

/// Allowed TCP and UDP ports, one bit a port: one lookup answers any port, ranges included.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortSet {
    pub tcp: [u64; PORT_WORDS],
    pub udp: [u64; PORT_WORDS],
}

impl PortSet {
    pub const EMPTY: PortSet = PortSet {
        tcp: [0; PORT_WORDS],
        udp: [0; PORT_WORDS],
    };

    #[inline(always)]
    pub fn bits(&self, l4: u8) -> Option<&[u64; PORT_WORDS]> {
        match l4 {
            crate::proto::IPPROTO_TCP => Some(&self.tcp),
            crate::proto::IPPROTO_UDP => Some(&self.udp),
            _ => None,
        }
    }

    #[inline(always)]
    pub fn allows(&self, l4: u8, port: u16) -> bool {
        match self.bits(l4) {
            Some(bits) => bits[(port >> 6) as usize] & (1u64 << (port & 63)) != 0,
            None => false,
        }
    }

    pub fn insert(&mut self, l4: u8, port: u16) {
        let bits = match l4 {
            crate::proto::IPPROTO_TCP => &mut self.tcp,
            crate::proto::IPPROTO_UDP => &mut self.udp,
            _ => return,
        };
        bits[(port >> 6) as usize] |= 1u64 << (port & 63);
    }

    pub fn union_with(&mut self, other: &PortSet) {
        for (a, b) in self.tcp.iter_mut().zip(other.tcp.iter()) {
            *a |= *b;
        }
        for (a, b) in self.udp.iter_mut().zip(other.udp.iter()) {
            *a |= *b;
        }
    }
}

/// Port ranges an [`AllowEntry`] holds at most.
pub const MAX_ALLOW_RANGES: usize = 8;

/// The `[[policy.allow]]` services at one prefix. A packet to the prefix on one of the
/// ranges' ports, or from it from one of them, passes as local.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllowEntry {
    /// Ranges in use.
    pub ranges: u8,
    pub _pad: [u8; 3],
    /// Each range's protocol: `IPPROTO_TCP`, `IPPROTO_UDP`, or 0 for every protocol and port.
    pub l4: [u8; MAX_ALLOW_RANGES],
    /// Inclusive port ranges.
    pub first: [u16; MAX_ALLOW_RANGES],
    pub last: [u16; MAX_ALLOW_RANGES],
}

impl AllowEntry {
    /// Whether a range allows `port` of `l4` (`None`: the packet has no ports).
    #[inline(always)]
    pub fn allows(&self, l4: u8, port: Option<u16>) -> bool {
        for i in 0..MAX_ALLOW_RANGES {
            if i >= self.ranges as usize {
                return false;
            }
            if self.l4[i] == 0 {
                return true;
            }
            if let Some(p) = port
                && self.l4[i] == l4
                && self.first[i] <= p
                && p <= self.last[i]
            {
                return true;
            }
        }
        false
    }
}

/// A prefix or address that left every list: its ports (as the rule had them) pass until no
/// packet came for the idle timeout. The program writes `last_seen_ns` on the packets it
/// passes (at most once a second); the daemon removes the entry when it is old.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DrainEntry {
    pub ports: AllowEntry,
    pub _pad: u32,
    /// `bpf_ktime_get_ns` (CLOCK_MONOTONIC) of the last packet, or of the entry's start.
    pub last_seen_ns: u64,
}

/// How much newer than `last_seen_ns` a packet must be to be written: one store a second,
/// not one a packet.
pub const DRAIN_TOUCH_NS: u64 = 1_000_000_000;

/// Packets and bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

/// Policy mode.
pub const MODE_MONITOR: u32 = 0;
pub const MODE_ENFORCE: u32 = 1;

/// Direction bits: which address (and port) of a packet is matched against the rules.
pub const DIR_DST: u32 = 1;
pub const DIR_SRC: u32 = 2;
pub const DIR_BOTH: u32 = DIR_DST | DIR_SRC;

/// The program's settings, one entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// [`MODE_MONITOR`] or [`MODE_ENFORCE`].
    pub mode: u32,
    /// Direction bits for interfaces without their own entry in `IFACE_DIRECTION`.
    pub direction: u32,
    pub flags: u32,
    /// Port set of the port-only rules (any address), used when [`Config::FLAG_PORT_ONLY`].
    pub port_only_set: u32,
    /// Rule credited with port-only hits.
    pub port_only_rule: u32,
    /// Explicit padding: keeps the layout free of compiler-chosen bytes.
    pub _pad: u32,
    /// The capture's name hash key (see `learn::NAME_HASH_START`): odd, random at each load.
    pub name_hash_key: u64,
    /// One bit for each value of the last byte of the addresses in `ADDR_ROLES` (keys as
    /// there): an address whose bit is clear has no role, and is not looked up.
    pub role_bytes: [u64; 4],
}

impl Default for Config {
    fn default() -> Config {
        Config::OFF
    }
}

impl Config {
    /// All settings off: monitor mode, no direction, no flags. What a program starts with,
    /// and the default.
    pub const OFF: Config = Config {
        mode: MODE_MONITOR,
        direction: 0,
        flags: 0,
        port_only_set: 0,
        port_only_rule: 0,
        _pad: 0,
        name_hash_key: 0,
        role_bytes: [0; 4],
    };

    /// Write the last decision to the `TRACE` map (test runs, `classify`, `lookup`).
    pub const FLAG_TRACE: u32 = 1;
    /// Port-only rules are on.
    pub const FLAG_PORT_ONLY: u32 = 2;
    /// DNS to any resolver counts as infrastructure.
    pub const FLAG_DNS_ANY: u32 = 4;
    /// Some interface has its own direction in `IFACE_DIRECTION`.
    pub const FLAG_PER_IFACE: u32 = 8;
    /// Look IPv4 addresses up in the LPM trie: the table did not fit its maps.
    pub const FLAG_V4_TRIE: u32 = 16;
    /// Addresses learned from DNS answers (the `LEARNED` map) count as Intune too.
    pub const FLAG_LEARNED: u32 = 32;
    /// The capture program learns only from the resolvers in `LEARN_TRUSTED`.
    pub const FLAG_LEARN_TRUSTED: u32 = 64;
    /// Traffic to the gateway's own addresses, link-local multicast and broadcast passes as
    /// local (`[policy] allow_local`).
    pub const FLAG_ALLOW_LOCAL: u32 = 128;
    /// `[[policy.allow]]` entries are in `ALLOW_V4` / `ALLOW_V6`.
    pub const FLAG_POLICY_ALLOW: u32 = 256;
    /// `DRAIN` holds entries.
    pub const FLAG_DRAINING: u32 = 512;
    /// Look IPv6 addresses up in the LPM trie: the table did not fit its maps.
    pub const FLAG_V6_TRIE: u32 = 1024;

    /// Marks `key` (an `ADDR_ROLES` key) in [`Config::role_bytes`].
    pub fn mark_role(&mut self, key: &[u8; 16]) {
        let b = key[15];
        self.role_bytes[(b >> 6) as usize] |= 1u64 << (b & 63);
    }

    /// Whether an address with a role ends in byte `b` (an `ADDR_ROLES` key's last byte).
    #[inline(always)]
    pub fn may_end_a_role(&self, b: u8) -> bool {
        self.role_bytes[(b >> 6) as usize & 3] & (1u64 << (b & 63)) != 0
    }
}

/// The last decision, for callers of BPF_PROG_TEST_RUN.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Trace {
    /// Incremented on every traced run, so a reader can tell a fresh trace from a stale one.
    pub seq: u32,
    pub outcome: u32,
    pub verdict: u32,
    /// The rule credited, or [`NO_RULE`].
    pub rule: u32,
    /// The [`port_key`] of the port that matched, or [`NO_PORT`].
    pub port_key: u32,
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all are repr(C), contain only integers and have no implicit padding.
    unsafe impl aya::Pod for super::RuleRef {}
    unsafe impl aya::Pod for super::PortSet {}
    unsafe impl aya::Pod for super::Counter {}
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::Trace {}
    unsafe impl aya::Pod for super::AllowEntry {}
    unsafe impl aya::Pod for super::DrainEntry {}
}
