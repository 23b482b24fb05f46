//! The fast path: a plain IPv4 or IPv6 TCP or UDP frame (`parse::plain_ipv4`,
//! `parse::plain_ipv6`) whose destination a listed prefix allows on its port, the commonest
//! frame a gateway passes. `decide` matches the destination before anything else, so for such
//! a frame its answer is this rule; the fast path reads the few fields that takes at fixed
//! offsets and skips the packet summary, the other rules and the hand-overs (an IPv4 hit: 208
//! instructions where the whole way takes 335). Everything else, and every frame whose
//! settings ask for more, goes the whole way, which the differential test holds both to.

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

/// The verdict on a plain IPv4 or IPv6 frame to a listed destination on an allowed port,
/// counted and traced as the whole way does; `None` for any other frame, which the caller then
/// parses and decides in full. `key` is the slot for the lookups' keys (see
/// `MapTables::with_key_slot`).
#[inline(always)]
pub fn listed(ctx: &XdpContext, cfg: &Config, key: &mut KeySlot) -> Option<u32> {
    // IPv4 first: an IPv6 frame pays its check, an IPv4 one nothing for IPv6's.
    if let Some(frame) = parse::plain_ipv4(ctx) {
        return answer(ctx, cfg, key, false, &frame);
    }
    answer(ctx, cfg, key, true, &parse::plain_ipv6(ctx)?)
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
    // The family's trie, or directions per interface: the lookup or the question is
    // elsewhere. A DNS query may be the query program's to remember; a debug log wants every
    // decision.
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
