//! A value LLVM cannot reason about: for checks and loads it must not fold away.

/// `v`, which LLVM can no longer relate to anything it knows: copied to another register in
/// an instruction LLVM cannot see into. `black_box` would store it to the stack and load it
/// back, four instructions at each of the frame's bounds checks. A move to another register
/// (`out`, not `lateout`), since the x86-64 JIT emits a move of a register to itself as nothing,
/// which leaves two line-info records at one address: bpftool then refuses to show them.
#[inline(always)]
pub fn opaque(v: usize) -> usize {
    #[cfg(target_arch = "bpf")]
    {
        let copy: usize;
        // SAFETY: a register copied to another: it touches nothing else.
        unsafe {
            core::arch::asm!("{0} = {1}", out(reg) copy, in(reg) v, options(nomem, nostack, preserves_flags))
        };
        copy
    }
    #[cfg(not(target_arch = "bpf"))]
    {
        core::hint::black_box(v)
    }
}

/// Makes LLVM take `v` as read here, so the stores that filled it stay: the benchmark's parse
/// floor keeps the whole parse's work this way, without reads of its own to pay for.
#[inline(always)]
pub fn keep<T>(v: &T) {
    #[cfg(target_arch = "bpf")]
    {
        let p = v as *const T;
        // SAFETY: a register copied to another; the asm may read memory, and writes none.
        unsafe {
            core::arch::asm!("{0} = {1}", out(reg) _, in(reg) p, options(readonly, nostack, preserves_flags))
        };
    }
    #[cfg(not(target_arch = "bpf"))]
    {
        core::hint::black_box(v);
    }
}
