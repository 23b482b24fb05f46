//! Writes many entries of an array map in one `BPF_MAP_UPDATE_BATCH` call: a table update
//! touches thousands of entries, and one syscall each would cost milliseconds, while a mapping
//! of the whole array would keep it resident in the daemon.

use std::os::fd::{AsFd as _, AsRawFd as _};

use aya::maps::Map;

use super::{Datapath, DatapathError};

/// `BPF_MAP_UPDATE_BATCH` in the kernel's `enum bpf_cmd`.
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
    /// Stores `entries` (index, value) in the `Array<u32>` named `name`, in order.
    pub(crate) fn update_u32_array(
        &self,
        name: &'static str,
        entries: &[(usize, u32)],
    ) -> Result<(), DatapathError> {
        self.update_array(name, entries)
    }

    /// Stores `entries` (index, value) in the array map named `name`, whose values are `V`s.
    pub(crate) fn update_array<V: aya::Pod>(
        &self,
        name: &'static str,
        entries: &[(usize, V)],
    ) -> Result<(), DatapathError> {
        if entries.is_empty() {
            return Ok(());
        }
        let Some(Map::Array(data)) = self.ebpf.map(name) else {
            return Err(DatapathError::Missing(name));
        };
        // The kernel reads `count` values of the map's value size from `values`.
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
        let keys: Vec<u32> = entries
            .iter()
            .map(|&(i, _)| u32::try_from(i).map_err(|_| DatapathError::Missing(name)))
            .collect::<Result<_, _>>()?;
        let values: Vec<V> = entries.iter().map(|&(_, v)| v).collect();
        let fd = data.fd().as_fd().as_raw_fd();
        let mut attr = BatchAttr {
            keys: keys.as_ptr() as u64,
            values: values.as_ptr() as u64,
            count: keys.len() as u32,
            map_fd: fd as u32,
            ..BatchAttr::default()
        };
        // SAFETY: the attr points at `keys` and `values`, alive for the call, each `count`
        // elements of the map's key and value size (checked above); the kernel reads nothing
        // else.
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
}
