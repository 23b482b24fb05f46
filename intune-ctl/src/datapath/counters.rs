//! Reading the per-CPU hit counters, summed over CPUs: from a loaded program, or from the maps
//! a daemon pinned (so `stats` works while the daemon is down).

use std::os::fd::{AsFd as _, AsRawFd as _};

use aya::maps::{Map, MapData, PerCpuArray};
use intune_common::{
    maps::{
        Counter, DROP_PORT_STATS, OTHER_PORTS_SLOT, OUTCOME_STATS, PORT_SLOT_KEYS, PORT_STATS,
        RULE_STATS, key_port,
    },
    outcome::Outcome,
};

use super::{
    Datapath, DatapathError,
    batch::batch_lookup,
    pins::Pins,
    ports::slot_records,
    sync::{ENOTSUPP, map_err},
};

/// Hits on one port, or on the ports without a counter of their own (`port` is `None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortHits {
    /// Protocol number and port.
    pub port: Option<(u8, u16)>,
    pub counter: Counter,
}

fn sum(values: impl IntoIterator<Item = Counter>) -> Counter {
    values.into_iter().fold(Counter::default(), |a, c| Counter {
        packets: a.packets + c.packets,
        bytes: a.bytes + c.bytes,
    })
}

fn outcomes_in(map: &Map) -> Result<Vec<(Outcome, Counter)>, DatapathError> {
    let array = PerCpuArray::<_, Counter>::try_from(map).map_err(map_err(OUTCOME_STATS))?;
    Outcome::ALL
        .iter()
        .map(|&o| {
            let per_cpu = array.get(&(o as u32), 0).map_err(map_err(OUTCOME_STATS))?;
            Ok((o, sum(per_cpu.iter().copied())))
        })
        .collect()
}

/// A request for at least one in this many of the entries below its highest is read by batches
/// over the whole range; a sparser one, an entry a call. A batch reads every entry between, at
/// about a seventh of a call's cost an entry (250 ns against 1.7 µs, measured at 100,000).
const DENSE: usize = 4;

/// Entries a `BPF_MAP_LOOKUP_BATCH` call: its buffer stays a few hundred KiB on many CPUs.
const LOOKUP_BATCH: usize = 4096;

/// The hits of the rules with `indices`, summed over CPUs: every rule's for `stats` and each
/// metrics scrape, an update's removed ones where the take program does not run (`take`).
fn rules_in(
    map: &Map,
    indices: impl IntoIterator<Item = u32>,
) -> Result<Vec<Counter>, DatapathError> {
    let indices: Vec<u32> = indices.into_iter().collect();
    let bound = indices.iter().max().map_or(0, |&i| i as usize + 1);
    if indices.len() * DENSE >= bound
        && let Some(all) = all_rules_below(map, bound)?
    {
        return Ok(indices.iter().map(|&i| all[i as usize]).collect());
    }
    let array = PerCpuArray::<_, Counter>::try_from(map).map_err(map_err(RULE_STATS))?;
    // A call an entry (about 1.5 µs): an update's thousand removed rules are read by several
    // threads.
    let runs = crate::parallel::runs(&indices, CALLS_PER_THREAD, |run| {
        run.iter()
            .map(|i| {
                let per_cpu = array.get(i, 0).map_err(map_err(RULE_STATS))?;
                Ok(sum(per_cpu.iter().copied()))
            })
            .collect::<Result<Vec<Counter>, DatapathError>>()
    });
    Ok(runs.into_iter().collect::<Result<Vec<_>, _>>()?.concat())
}

/// Entries a thread reads at least, a call each: fewer take less than a thread's start.
const CALLS_PER_THREAD: usize = 256;

/// The hits of rules `0..bound` by batches; `None` where the kernel has no batch reads of
/// per-CPU arrays (before 5.13).
fn all_rules_below(map: &Map, bound: usize) -> Result<Option<Vec<Counter>>, DatapathError> {
    let Map::PerCpuArray(data) = map else {
        return Err(DatapathError::Missing(RULE_STATS));
    };
    let fd = data.fd().as_fd().as_raw_fd();
    let cpus = aya::util::nr_cpus().map_err(|(_, e)| DatapathError::Cpus(e))?;
    let per_cpu = size_of::<Counter>().next_multiple_of(8);
    let stride = cpus * per_cpu;
    let n = LOOKUP_BATCH.min(bound);
    let (mut keys, mut values) = (vec![0u32; n], vec![0u8; n * stride]);
    let mut all = vec![Counter::default(); bound];
    let mut start = 0;
    while start < bound {
        let want = (bound - start).min(n);
        let read = match batch_lookup(fd, start as u32, &mut keys[..want], &mut values, stride) {
            Ok(read) => read,
            Err(e) if start == 0 && matches!(e.raw_os_error(), Some(libc::EINVAL | ENOTSUPP)) => {
                return Ok(None);
            }
            Err(source) => {
                return Err(DatapathError::BatchRead {
                    name: RULE_STATS,
                    source,
                });
            }
        };
        if read == 0 {
            break;
        }
        for (&key, value) in keys[..read].iter().zip(values.chunks_exact(stride)) {
            // SAFETY: each CPU's value is a `Counter` at its 8-byte slot, as the kernel wrote it.
            let per_cpu = (0..cpus).map(|c| unsafe {
                std::ptr::read_unaligned(value.as_ptr().add(c * per_cpu).cast::<Counter>())
            });
            if let Some(slot) = all.get_mut(key as usize) {
                *slot = sum(per_cpu);
            }
        }
        start += read;
    }
    Ok(Some(all))
}

/// The counters of `stats` (`name`: `PORT_STATS` or `DROP_PORT_STATS`) by the port each slot
/// counts.
fn ports_in(
    stats: &Map,
    name: &'static str,
    slot_keys: &Map,
) -> Result<Vec<PortHits>, DatapathError> {
    let array = PerCpuArray::<_, Counter>::try_from(stats).map_err(map_err(name))?;
    slot_records(slot_keys)?
        .into_iter()
        .filter(|&(slot, record)| slot == OTHER_PORTS_SLOT || record != 0)
        .map(|(slot, record)| {
            let per_cpu = array.get(&slot, 0).map_err(map_err(name))?;
            Ok(PortHits {
                port: (slot != OTHER_PORTS_SLOT).then(|| key_port(record - 1)),
                counter: sum(per_cpu.iter().copied()),
            })
        })
        .collect()
}

impl Datapath {
    /// Packets and bytes per outcome.
    pub fn outcome_counters(&self) -> Result<Vec<(Outcome, Counter)>, DatapathError> {
        let map = self
            .ebpf
            .map(OUTCOME_STATS)
            .ok_or(DatapathError::Missing(OUTCOME_STATS))?;
        outcomes_in(map)
    }

    /// Packets and bytes of rules `0..count`.
    pub fn rule_counters(&self, count: usize) -> Result<Vec<Counter>, DatapathError> {
        self.rule_counters_of(0..count as u32)
    }

    /// Packets and bytes of the rules with these indices.
    pub fn rule_counters_of(
        &self,
        indices: impl IntoIterator<Item = u32>,
    ) -> Result<Vec<Counter>, DatapathError> {
        let map = self
            .ebpf
            .map(RULE_STATS)
            .ok_or(DatapathError::Missing(RULE_STATS))?;
        rules_in(map, indices)
    }

    /// Intune hits per port with a counter, and on the other ports together.
    pub fn port_counters(&self) -> Result<Vec<PortHits>, DatapathError> {
        self.ports_of(PORT_STATS)
    }

    /// Frames no rule matched, per port with a counter (the ports the list names), and to the
    /// other ports together.
    pub fn dropped_port_counters(&self) -> Result<Vec<PortHits>, DatapathError> {
        self.ports_of(DROP_PORT_STATS)
    }

    fn ports_of(&self, stats: &'static str) -> Result<Vec<PortHits>, DatapathError> {
        let map = |name| self.ebpf.map(name).ok_or(DatapathError::Missing(name));
        ports_in(map(stats)?, stats, map(PORT_SLOT_KEYS)?)
    }
}

/// The counter maps a daemon pinned, opened without it.
pub struct PinnedCounters {
    outcomes: Map,
    rules: Map,
    ports: Map,
    /// `None` for a filter pinned by a version that did not count them.
    dropped_ports: Option<Map>,
    port_slot_keys: Map,
}

impl PinnedCounters {
    pub fn open(pins: &Pins) -> Result<PinnedCounters, DatapathError> {
        let open = |name: &'static str| MapData::from_pin(pins.map(name)).map_err(map_err(name));
        Ok(PinnedCounters {
            outcomes: Map::PerCpuArray(open(OUTCOME_STATS)?),
            rules: Map::PerCpuArray(open(RULE_STATS)?),
            ports: Map::PerCpuArray(open(PORT_STATS)?),
            dropped_ports: open(DROP_PORT_STATS).ok().map(Map::PerCpuArray),
            port_slot_keys: Map::Array(open(PORT_SLOT_KEYS)?),
        })
    }

    pub fn ports(&self) -> Result<Vec<PortHits>, DatapathError> {
        ports_in(&self.ports, PORT_STATS, &self.port_slot_keys)
    }

    /// As [`Datapath::dropped_port_counters`]; empty for a filter that does not count them.
    pub fn dropped_ports(&self) -> Result<Vec<PortHits>, DatapathError> {
        match &self.dropped_ports {
            Some(map) => ports_in(map, DROP_PORT_STATS, &self.port_slot_keys),
            None => Ok(Vec::new()),
        }
    }

    pub fn outcomes(&self) -> Result<Vec<(Outcome, Counter)>, DatapathError> {
        outcomes_in(&self.outcomes)
    }

    pub fn rules_of(
        &self,
        indices: impl IntoIterator<Item = u32>,
    ) -> Result<Vec<Counter>, DatapathError> {
        rules_in(&self.rules, indices)
    }
}
