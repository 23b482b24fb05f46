//! The tables' arrays (created with BPF_F_MMAPABLE) written through a shared mapping: plain
//! stores instead of a copy through the kernel for each entry. A chunk array is mapped when a
//! whole table is filled and dropped after; a first level (256 KiB) stays mapped, as every
//! update rewrites a few thousand of its entries.

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
/// A `u32` element's place in an array: the kernel's element size is a multiple of 8.
const WORD_STRIDE: usize = 8;
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

/// A mapped first level (`Array<u32>`): what the program reads first for each address. The
/// kernel rounds an array's elements up to 8 bytes.
pub struct FirstLevel {
    mmap: MmapMut,
    len: usize,
}

impl FirstLevel {
    /// Stores entry `i`, which the program sees whole; the chunks and singles it points at
    /// were written before (by calls, or stores this release orders).
    pub fn set(&mut self, i: usize, entry: u32) {
        assert!(i < self.len, "entry {i} of {}", self.len);
        let slot = &mut self.mmap[i * WORD_STRIDE..i * WORD_STRIDE + 4];
        // SAFETY: the slot is 4-aligned (page-aligned mapping, 8-byte elements) and 4 bytes
        // long.
        #[expect(
            clippy::cast_ptr_alignment,
            reason = "4-aligned, as the SAFETY note says"
        )]
        let atomic = unsafe { AtomicU32::from_ptr(slot.as_mut_ptr().cast::<u32>()) };
        atomic.store(entry, Ordering::Release);
    }
}

impl Datapath {
    /// Maps the `Array<Chunk>` named `name` into this process.
    pub(crate) fn map_chunk_array(&self, name: &'static str) -> Result<ChunkArray, DatapathError> {
        let (mmap, len) = self.map_array(name, STRIDE)?;
        Ok(ChunkArray { mmap, len })
    }

    /// Maps the first-level `Array<u32>` named `name` into this process.
    pub(crate) fn map_first_level(&self, name: &'static str) -> Result<FirstLevel, DatapathError> {
        let (mmap, len) = self.map_array(name, WORD_STRIDE)?;
        Ok(FirstLevel { mmap, len })
    }

    /// The whole array `name`, of elements `stride` bytes apart, and its length.
    pub(crate) fn map_array(
        &self,
        name: &'static str,
        stride: usize,
    ) -> Result<(MmapMut, usize), DatapathError> {
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
                .len(len * stride)
                .map_mut(&data.fd().as_fd())
        }
        .map_err(|e| DatapathError::Mmap { name, source: e })?;
        Ok((mmap, len))
    }
}
