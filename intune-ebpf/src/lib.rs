//! What both programs of this crate share: the panic handler, the license and the parse (the
//! benchmark's parse floor runs the classifier's own). The programs are the binaries;
//! intune-ctl names this crate as a build-dependency so cargo rebuilds it when they change.
#![no_std]
// Inline assembly for BPF (one unaligned load of packet data: `parse::load`).
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

pub mod opaque;
pub mod parse;

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
