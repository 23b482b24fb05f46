//! The program's maps. Names, key and value layouts come from `intune_common::maps`.

use core::cell::UnsafeCell;

use aya_ebpf::{
    bindings::BPF_F_MMAPABLE,
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, ProgramArray, RingBuf},
};
use intune_common::{
    learn::{
        DNS_RING_BYTES, DnsEvent, MAX_DNS_QUERIES, MAX_LEARN_NAMES, MAX_LEARN_TRUSTED, MAX_LEARNED,
        QueryKey, QueryValue,
    },
    maps::{
        AllowEntry, Config, Counter, MAX_ADDR_ROLES, MAX_ALLOW_ENTRIES, MAX_DRAIN, MAX_IFACES,
        MAX_PORT_SETS, MAX_PORT_SLOTS, MAX_PREFIXES_V4, MAX_PREFIXES_V6, MAX_RULES, MAX_TAKE,
        PORT_KEYS, PortSet, RuleRef, Trace, V4_TABLE_CHUNKS, V4_TABLE_SINGLES, V6_TABLE_CHUNKS,
        V6_TABLE_SINGLES,
    },
    outcome::OUTCOME_COUNT,
    table::{Chunk, Single, TBL16_ENTRIES},
};
use intune_ebpf::opaque::opaque;

#[map]
pub static LPM_V4: LpmTrie<[u8; 4], RuleRef> = LpmTrie::with_max_entries(MAX_PREFIXES_V4, 0);

#[map]
pub static LPM_V6: LpmTrie<[u8; 16], RuleRef> = LpmTrie::with_max_entries(MAX_PREFIXES_V6, 0);

// Memory-mapped by userspace: a rule set's table is written with stores, not a syscall an entry.
#[map]
pub static V4_TBL16: Array<u32> = Array::with_max_entries(TBL16_ENTRIES, BPF_F_MMAPABLE);

#[map]
pub static V4_CHUNKS: Array<Chunk> = Array::with_max_entries(V4_TABLE_CHUNKS, BPF_F_MMAPABLE);

#[map]
pub static V4_SINGLES: Array<Single> = Array::with_max_entries(V4_TABLE_SINGLES, 0);

#[map]
pub static V6_TBL16: Array<u32> = Array::with_max_entries(TBL16_ENTRIES, BPF_F_MMAPABLE);

#[map]
pub static V6_CHUNKS: Array<Chunk> = Array::with_max_entries(V6_TABLE_CHUNKS, BPF_F_MMAPABLE);

#[map]
pub static V6_SINGLES: Array<Single> = Array::with_max_entries(V6_TABLE_SINGLES, 0);

#[map]
pub static PORT_SETS: Array<PortSet> = Array::with_max_entries(MAX_PORT_SETS, 0);

#[map]
pub static RULE_STATS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(MAX_RULES, 0);

// What `take` reads and writes: userspace maps both.
#[map]
pub static TAKE_INDICES: Array<u32> = Array::with_max_entries(MAX_TAKE, BPF_F_MMAPABLE);

#[map]
pub static TAKE_SUMS: Array<Counter> = Array::with_max_entries(MAX_TAKE, BPF_F_MMAPABLE);

#[map]
pub static OUTCOME_STATS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(OUTCOME_COUNT, 0);

#[map]
pub static PORT_SLOTS: Array<u32> = Array::with_max_entries(PORT_KEYS, 0);

#[map]
pub static PORT_STATS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(MAX_PORT_SLOTS, 0);

#[map]
pub static DROP_PORT_STATS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(MAX_PORT_SLOTS, 0);

// Not read here: userspace's record of what each port slot counts (see intune_common::maps).
#[map]
pub static PORT_SLOT_KEYS: Array<u32> = Array::with_max_entries(MAX_PORT_SLOTS, 0);

/// The program's settings (see `intune_common::maps::CONFIG`): a global, so reading them takes
/// no lookup and no check for a missing entry. Userspace writes it whole through its map.
#[unsafe(no_mangle)]
#[unsafe(link_section = ".data.config")]
pub static INTUNE_CONFIG: Settings = Settings(UnsafeCell::new(Config::OFF));

#[repr(transparent)]
pub struct Settings(UnsafeCell<Config>);

// SAFETY: the program only reads it; userspace replaces it whole.
unsafe impl Sync for Settings {}

impl Settings {
    /// The settings as userspace last wrote them. Reached through an address LLVM cannot see
    /// into: it finds no store to the global, and would read the initial zeros as constants.
    #[inline(always)]
    pub fn get(&self) -> &Config {
        let at = opaque(self.0.get() as usize);
        // SAFETY: the global's own address; nothing in the program writes it.
        unsafe { &*(at as *const Config) }
    }
}

#[map]
pub static IFACE_DIRECTION: HashMap<u32, u32> = HashMap::with_max_entries(MAX_IFACES, 0);

#[map]
pub static ADDR_ROLES: HashMap<[u8; 16], u32> = HashMap::with_max_entries(MAX_ADDR_ROLES, 0);

#[map]
pub static ALLOW_V4: LpmTrie<[u8; 4], AllowEntry> = LpmTrie::with_max_entries(MAX_ALLOW_ENTRIES, 0);

#[map]
pub static ALLOW_V6: LpmTrie<[u8; 16], AllowEntry> =
    LpmTrie::with_max_entries(MAX_ALLOW_ENTRIES, 0);

#[map]
pub static DRAIN: LpmTrie<[u8; 16], crate::lookup::DrainValue> =
    LpmTrie::with_max_entries(MAX_DRAIN, 0);

#[map]
pub static LEARNED: HashMap<[u8; 16], RuleRef> = HashMap::with_max_entries(MAX_LEARNED, 0);

#[map]
pub static LEARN_NAMES: HashMap<u64, u32> = HashMap::with_max_entries(MAX_LEARN_NAMES, 0);

#[map]
pub static LEARN_TRUSTED: HashMap<[u8; 16], u8> = HashMap::with_max_entries(MAX_LEARN_TRUSTED, 0);

#[map]
pub static NAME_SCRATCH: PerCpuArray<crate::learn::NameScratch> =
    PerCpuArray::with_max_entries(1, 0);

// The record being captured: the capture and the answer reader share it across the tail call.
#[map]
pub static DNS_SCRATCH: PerCpuArray<DnsEvent> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static DNS_TAIL: ProgramArray = ProgramArray::with_max_entries(1, 0);

#[map]
pub static DNS_LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static DNS_EVENTS: RingBuf = RingBuf::with_byte_size(DNS_RING_BYTES, 0);

// The decision being logged: the classifier and the log program share it across the tail call.
#[map]
pub static LOG_SCRATCH: PerCpuArray<crate::log::LogRecord> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static XDP_TAIL: ProgramArray = ProgramArray::with_max_entries(2, 0);

#[map]
pub static DNS_QUERIES: LruHashMap<QueryKey, QueryValue> =
    LruHashMap::with_max_entries(MAX_DNS_QUERIES, 0);

// The query being recorded: the classifier and the query program share it across the call.
#[map]
pub static QUERY_SCRATCH: PerCpuArray<crate::query::QueryRecord> =
    PerCpuArray::with_max_entries(1, 0);

#[map]
pub static TRACE: Array<Trace> = Array::with_max_entries(1, 0);
