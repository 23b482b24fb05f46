//! The tables' chunk arrays (created with BPF_F_MMAPABLE), written through a shared mapping
//! when a whole table is filled: plain stores instead of a copy through the kernel for each.

use std::{
    os::fd::AsFd as _,
    sync::atomic::{AtomicU32, Ordering},
};

use aya::maps::Map;
use intune_common::table::Chunk;
use memmap2::{MmapMut, MmapOptions};

use super::{Datapath, DatapathError};

/// A mapped `Array<Chunk>`; the kernel lays its elements out back to back (1 KiB each, a
/// multiple of its 8-byte alignment).
pub struct ChunkArray {
    mmap: MmapMut,
    len: usize,
}

const STRIDE: usize = size_of::<Chunk>();
const _: () = assert!(STRIDE.is_multiple_of(8));

impl ChunkArray {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Stores chunk `id`, entry by entry; each entry the program sees whole (an aligned
    /// 32-bit store).
    pub fn set(&mut self, id: usize, chunk: &Chunk) {
        assert!(id < self.len, "chunk {id} of {}", self.len);
        let at = id * STRIDE;
        for (i, &entry) in chunk.iter().enumerate() {
            let slot = &mut self.mmap[at + i * 4..at + i * 4 + 4];
            // SAFETY: the slot is 4-aligned (page-aligned mapping, 1 KiB elements) and 4
            // bytes long.
            #[expect(
                clippy::cast_ptr_alignment,
                reason = "4-aligned, as the SAFETY note says"
            )]
            let atomic = unsafe { AtomicU32::from_ptr(slot.as_mut_ptr().cast::<u32>()) };
            atomic.store(entry, Ordering::Release);
        }
    }
}

impl Datapath {
    /// Maps the `Array<Chunk>` named `name` into this process.
    pub(crate) fn map_chunk_array(&self, name: &'static str) -> Result<ChunkArray, DatapathError> {
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
        Ok(ChunkArray { mmap, len })
    }
}
