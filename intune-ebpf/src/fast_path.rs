//! The fast path: a plain IPv4 TCP or UDP frame (`parse::plain_ipv4`) whose destination a
//! listed prefix allows on its port, the commonest frame a gateway passes. `decide` matches
//! the destination before anything else, so for such a frame its answer is this rule; the
//! fast path reads the few fields that takes at fixed offsets and skips the packet summary,
//! the other rules and the hand-overs: about 210 instructions where the whole way takes 335.
//! Everything else, and every frame whose settings ask for more, goes the whole way, which
//! the differential test holds both to.

use aya_ebpf::programs::XdpContext;
use aya_log_ebpf::macro_support::{Level, level_enabled};
use intune_common::{
    classify::{Decision, listed_port_rule},
    maps::{Config, DIR_DST, port_key},
    outcome::{Outcome, verdict},
    proto::{IPPROTO_UDP, PORT_DNS},
};
use intune_ebpf::parse;

use crate::{
    count,
    lookup::{KeySlot, MapTables},
};

/// Settings under which a listed destination is not the whole answer, or is looked up
/// elsewhere: the IPv4 trie, directions per interface.
const WHOLE_WAY_FLAGS: u32 = Config::FLAG_V4_TRIE | Config::FLAG_PER_IFACE;

/// The verdict on a plain IPv4 frame to a listed destination on an allowed port, counted and
/// traced as the whole way does; `None` for any other frame, which the caller then parses and
/// decides in full. `key` is the slot for the lookups' keys (see `MapTables::with_key_slot`).
#[inline(always)]
pub fn listed_ipv4(ctx: &XdpContext, cfg: &Config, key: &mut KeySlot) -> Option<u32> {
    let frame = parse::plain_ipv4(ctx)?;
    // A DNS query may be the query program's to remember; a debug log wants every decision.
    if cfg.flags & WHOLE_WAY_FLAGS != 0
        || cfg.direction & DIR_DST == 0
        || (frame.l4 == IPPROTO_UDP && frame.dport == PORT_DNS)
        || level_enabled(Level::Debug)
    {
        return None;
    }
    let tables = MapTables::with_key_slot(cfg.flags, key);
    let rule = listed_port_rule(false, &frame.dst, frame.l4, frame.dport, &tables)?;
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
