//! Array maps created with BPF_F_MMAPABLE, written through a shared mapping.

use std::{
    os::fd::AsFd as _,
    sync::atomic::{AtomicU32, Ordering},
};

use aya::maps::Map;
use memmap2::{MmapMut, MmapOptions};

use super::{Datapath, DatapathError};

/// A mapped `Array<u32>`. The kernel lays array elements out 8 bytes apart.
pub struct U32Array {
    mmap: MmapMut,
    len: usize,
}

const STRIDE: usize = 8;

impl U32Array {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Stores one entry; the program sees it at once, whole (an aligned 32-bit store).
    pub fn set(&mut self, index: usize, value: u32) {
        assert!(index < self.len, "entry {index} of {}", self.len);
        let slot = &mut self.mmap[index * STRIDE..index * STRIDE + 4];
        // SAFETY: the slot is 8-aligned (page-aligned mapping, 8-byte stride) and 4 bytes long.
        #[expect(
            clippy::cast_ptr_alignment,
            reason = "8-aligned, as the SAFETY note says"
        )]
        let atomic = unsafe { AtomicU32::from_ptr(slot.as_mut_ptr().cast::<u32>()) };
        atomic.store(value, Ordering::Release);
    }

    /// Stores `values` at `start..`, each as [`U32Array::set`] does.
    pub fn set_run(&mut self, start: usize, values: &[u32]) {
        for (i, &v) in values.iter().enumerate() {
            self.set(start + i, v);
        }
    }
}

impl Datapath {
    /// Maps the `Array<u32>` named `name` into this process.
    pub(crate) fn map_u32_array(&self, name: &'static str) -> Result<U32Array, DatapathError> {
        let Some(Map::Array(data)) = self.ebpf.map(name) else {
            return Err(DatapathError::Missing(name));
        };
        let info = data
            .info()
            .map_err(|source| DatapathError::Map { name, source })?;
        let len = info.max_entries() as usize;
        // SAFETY: a BPF array created with BPF_F_MMAPABLE; the kernel keeps the memory alive
        // while the mapping exists, and only aligned 32-bit stores are made through it.
        let mmap = unsafe {
            MmapOptions::new()
                .len(len * STRIDE)
                .map_mut(&data.fd().as_fd())
        }
        .map_err(|e| DatapathError::Mmap { name, source: e })?;
        Ok(U32Array { mmap, len })
    }
}
