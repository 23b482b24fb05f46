//! Writes many entries of an array map in one `BPF_MAP_UPDATE_BATCH` call (5.6 and later):
//! a table update touches thousands of entries, and one syscall each would cost milliseconds,
//! while a mapping of the whole array would keep it resident in the daemon.

use std::os::fd::{AsFd as _, AsRawFd as _, RawFd};

use aya::maps::{Map, MapData};

use super::{Datapath, DatapathError};
use crate::ruleset::table::ArrayWrites;

/// `BPF_MAP_LOOKUP_BATCH` and `BPF_MAP_UPDATE_BATCH` in the kernel's `enum bpf_cmd`.
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;

/// The `batch` member of the kernel's `union bpf_attr`.
#[repr(C, align(8))]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

impl Datapath {
    /// Stores `entries` in the array map named `name`, whose values are `V`s, in order.
    pub(crate) fn update_array<V: aya::Pod>(
        &self,
        name: &'static str,
        entries: &ArrayWrites<V>,
    ) -> Result<(), DatapathError> {
        if entries.is_empty() {
            return Ok(());
        }
        let Some(Map::Array(data)) = self.ebpf.map(name) else {
            return Err(DatapathError::Missing(name));
        };
        // The kernel reads `count` values of the map's value size from `values`.
        check_layout::<V>(name, data)?;
        let (keys, values) = (entries.keys(), entries.values());
        batch_update(
            name,
            data.fd().as_fd().as_raw_fd(),
            keys,
            values.as_ptr().cast(),
        )
    }

    /// Zeroes entries `indices` of the per-CPU array named `name`, whose values are `V`s, on
    /// every CPU, in one call (a syscall each would cost milliseconds for a thousand rules).
    pub(crate) fn zero_per_cpu<V: aya::Pod>(
        &self,
        name: &'static str,
        indices: &[u32],
    ) -> Result<(), DatapathError> {
        if indices.is_empty() {
            return Ok(());
        }
        let Some(Map::PerCpuArray(data)) = self.ebpf.map(name) else {
            return Err(DatapathError::Missing(name));
        };
        check_layout::<V>(name, data)?;
        // The kernel reads a value for each possible CPU, each rounded up to 8 bytes.
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| DatapathError::Cpus(e))?;
        let zeros = vec![0u64; indices.len() * cpus * size_of::<V>().div_ceil(8)];
        batch_update(
            name,
            data.fd().as_fd().as_raw_fd(),
            indices,
            zeros.as_ptr().cast(),
        )
    }
}

/// The map `name` has 4-byte keys and values the size of `V`.
fn check_layout<V>(name: &'static str, data: &MapData) -> Result<(), DatapathError> {
    let info = data
        .info()
        .map_err(|source| DatapathError::Map { name, source })?;
    if info.value_size() as usize != size_of::<V>() || info.key_size() != 4 {
        return Err(DatapathError::Layout {
            name,
            value_size: info.value_size(),
            expected: size_of::<V>(),
        });
    }
    Ok(())
}

/// One `BPF_MAP_UPDATE_BATCH` of `keys` with the values at `values`, which the caller has
/// laid out as the map expects for that many keys.
fn batch_update(
    name: &'static str,
    fd: RawFd,
    keys: &[u32],
    values: *const u8,
) -> Result<(), DatapathError> {
    let mut attr = BatchAttr {
        keys: keys.as_ptr() as u64,
        values: values as u64,
        count: keys.len() as u32,
        map_fd: fd as u32,
        ..BatchAttr::default()
    };
    // SAFETY: the attr points at `keys` and `values`, alive for the call (the callers' borrows),
    // `count` keys and the values the map's layout asks of them (checked by the callers); the
    // kernel reads nothing else.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_UPDATE_BATCH,
            &raw mut attr,
            std::mem::size_of::<BatchAttr>() as u32,
        )
    };
    if rc < 0 {
        return Err(DatapathError::Batch {
            name,
            written: attr.count,
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Reads entries `start..` of the array map `fd` with one `BPF_MAP_LOOKUP_BATCH`, as many as
/// `keys` holds, into `keys` and `values`: `stride` bytes an entry, laid out as the map's values
/// are (for a per-CPU map, each CPU's value rounded up to 8 bytes). Returns how many were read:
/// fewer at the array's end.
pub(super) fn batch_lookup(
    fd: RawFd,
    start: u32,
    keys: &mut [u32],
    values: &mut [u8],
    stride: usize,
) -> std::io::Result<usize> {
    // The kernel starts after the key `in_batch` points at, and at the first without one.
    let before = start.wrapping_sub(1);
    let mut next = 0u32;
    let mut attr = BatchAttr {
        in_batch: if start == 0 {
            0
        } else {
            &raw const before as u64
        },
        out_batch: &raw mut next as u64,
        keys: keys.as_mut_ptr() as u64,
        values: values.as_mut_ptr() as u64,
        count: keys.len() as u32,
        map_fd: fd as u32,
        ..BatchAttr::default()
    };
    if values.len() < keys.len() * stride {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    }
    // SAFETY: the attr points at `before`, `next`, `keys` and `values`, alive for the call; the
    // kernel writes at most `count` keys and values, for which `values` was checked to hold
    // room.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_LOOKUP_BATCH,
            &raw mut attr,
            std::mem::size_of::<BatchAttr>() as u32,
        )
    };
    let end = std::io::Error::last_os_error();
    match rc {
        0.. => Ok(attr.count as usize),
        // Past the last entry: what was read before it.
        _ if end.raw_os_error() == Some(libc::ENOENT) => Ok(attr.count as usize),
        _ => Err(end),
    }
}
