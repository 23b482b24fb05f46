//! The fast path: a plain IPv4 or IPv6 TCP or UDP frame (`parse::plain_ipv4`,
//! `parse::plain_ipv6`) whose destination a listed prefix allows on its port, the commonest
//! frame a gateway passes. `decide` matches the destination before anything else, so for such
//! a frame its answer is this rule; the fast path reads the few fields that takes at fixed
//! offsets and skips the packet summary, the other rules and the hand-overs (an IPv4 hit: 208
//! instructions where the whole way takes 335). Everything else, and every frame whose
//! settings ask for more, goes the whole way, which the differential test holds both to.

use core::mem::MaybeUninit;

use aya_ebpf::programs::XdpContext;
use aya_log_ebpf::macro_support::{Level, level_enabled};
use intune_common::{
    classify::{Decision, listed_port_rule},
    maps::{Config, DIR_DST, port_key},
    outcome::{Outcome, verdict},
    proto::{IPPROTO_UDP, PORT_DNS},
};
use intune_ebpf::parse::{self, Plain};

use crate::{
    count,
    lookup::{KeySlot, MapTables},
};

/// What the whole way learns of a frame the fast path did not answer.
#[derive(Clone, Copy)]
#[repr(u8)]
pub enum Left {
    /// A plain frame: the whole way need not parse it in full (`parse::plain_packet`).
    PlainIpv4,
    PlainIpv6,
    /// Any other frame.
    NotPlain,
}

/// Where [`listed`] leaves a [`Left`]: a stack slot written on the paths that leave a frame,
/// never on the hit's. Returned in registers, the family and the kind stayed live through the
/// hit's lookup, which spilled (4 instructions more on a hit).
pub struct LeftSlot(MaybeUninit<Left>);

impl LeftSlot {
    #[inline(always)]
    pub fn uninit() -> LeftSlot {
        LeftSlot(MaybeUninit::uninit())
    }

    #[inline(always)]
    fn set(&mut self, left: Left) {
        // SAFETY: a store to our own slot.
        unsafe { self.0.as_mut_ptr().write_volatile(left) };
    }

    /// What [`listed`] left, once it has answered `None`.
    #[inline(always)]
    pub fn get(&self) -> Left {
        // SAFETY: every path on which `listed` answers `None` sets the slot first.
        unsafe { self.0.as_ptr().read_volatile() }
    }
}

/// The verdict on a plain IPv4 or IPv6 frame to a listed destination on an allowed port,
/// counted and traced as the whole way does; `None` for any other frame, which the caller
/// then decides the whole way, told by `left` what the fast path saw of it. `key` is the slot
/// for the lookups' keys (see `MapTables::with_key_slot`).
#[inline(always)]
pub fn listed(
    ctx: &XdpContext,
    cfg: &Config,
    key: &mut KeySlot,
    left: &mut LeftSlot,
) -> Option<u32> {
    // IPv4 first: an IPv6 frame pays its check, an IPv4 one nothing for IPv6's. One call
    // each, the family a constant in it: with the family in a register, the hit took 40
    // instructions more.
    if let Some(frame) = parse::plain_ipv4(ctx) {
        let verdict = answer(ctx, cfg, key, false, &frame);
        if verdict.is_none() {
            left.set(Left::PlainIpv4);
        }
        return verdict;
    }
    let Some(frame) = parse::plain_ipv6(ctx) else {
        left.set(Left::NotPlain);
        return None;
    };
    let verdict = answer(ctx, cfg, key, true, &frame);
    if verdict.is_none() {
        left.set(Left::PlainIpv6);
    }
    verdict
}

/// The answer for a plain frame of the family `v6` says, as [`listed`].
#[inline(always)]
fn answer(
    ctx: &XdpContext,
    cfg: &Config,
    key: &mut KeySlot,
    v6: bool,
    frame: &Plain,
) -> Option<u32> {
    // A family on its trie: its key would not be in the fast path's slot (see
    // `MapTables::with_key_slot`). Directions per interface: the question is elsewhere. A DNS
    // query may be the query program's to remember; a debug log wants every decision.
    let trie = if v6 {
        Config::FLAG_V6_TRIE
    } else {
        Config::FLAG_V4_TRIE
    };
    if cfg.flags & (trie | Config::FLAG_PER_IFACE) != 0
        || cfg.direction & DIR_DST == 0
        || (frame.l4 == IPPROTO_UDP && frame.dport == PORT_DNS)
        || level_enabled(Level::Debug)
    {
        return None;
    }
    let tables = MapTables::with_key_slot(cfg.flags, key);
    let rule = listed_port_rule(v6, &frame.dst, frame.l4, frame.dport, &tables)?;
    let decision = Decision {
        outcome: Outcome::Intune,
        verdict: verdict(Outcome::Intune, cfg.mode),
        rule,
        port_key: port_key(frame.l4, frame.dport),
    };
    count::decision(count::frame_bytes(ctx), &decision);
    crate::trace(cfg, &decision);
    Some(decision.verdict)
}
