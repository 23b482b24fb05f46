//! The benchmark's floors. `xdp_floor` and `xdp_floor_drop` pass (or drop) every frame: the
//! cost of running any XDP program, for frames that pass and for frames that are dropped.
//! `xdp_parse_floor` parses the frame as the classifier does, then passes it: the part of the
//! classifier's cost that is the parse, so the decision's shows apart.
#![no_std]
#![no_main]

use core::mem::MaybeUninit;

// The panic handler, license and parse.
use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use intune_ebpf::{opaque::keep, parse};

#[xdp]
pub fn xdp_floor(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[xdp]
pub fn xdp_floor_drop(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
}

#[xdp]
pub fn xdp_parse_floor(ctx: XdpContext) -> u32 {
    let mut pkt = MaybeUninit::uninit();
    let pkt = parse::zeroed(&mut pkt);
    let kind = parse::frame(&ctx, pkt);
    keep(pkt);
    keep(&kind);
    xdp_action::XDP_PASS
}
