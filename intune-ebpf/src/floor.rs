//! Passes (or drops) every frame: what the benchmark subtracts as the cost of running any XDP
//! program, for frames that pass and for frames that are dropped.
#![no_std]
#![no_main]

// The panic handler and license.
use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use intune_ebpf as _;

#[xdp]
pub fn xdp_floor(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[xdp]
pub fn xdp_floor_drop(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
}
