//! What both programs of this crate share: the panic handler and the license. The programs are
//! the binaries; intune-ctl names this crate as a build-dependency so cargo rebuilds it when
//! they change.
#![no_std]

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
