//! The DNS queries devices send, remembered for the capture: only an answer to a query the
//! classifier saw (same resolver, device and port, id and question) teaches an address. A
//! program of its own, reached by a tail call for passed queries when learning is on, so the
//! classifier's verification does not carry the question's loops.

use aya_ebpf::{macros::xdp, programs::XdpContext};
use intune_common::{
    classify::{Decision, IpPacket, v4_mapped},
    learn::{MAX_QUESTION, QUESTION_HASH_START, QueryKey, QueryValue, question_hash_push},
    maps::{Config, QUERY_PROGRAM_INDEX},
    outcome::XDP_PASS,
    proto::{IPPROTO_UDP, PORT_DNS, UDP_HLEN},
};

use crate::{
    log,
    maps::{DNS_QUERIES, QUERY_SCRATCH, XDP_TAIL},
    parse::{bytes, field16},
};

/// What the classifier hands the query program.
pub struct QueryRecord {
    verdict: u32,
    l4_off: u32,
    key: QueryKey,
}

const DNS_HEADER_LEN: usize = 12;
/// Queries whose UDP header starts further in (IPv6 extension headers) are not remembered:
/// the verifier must see a packet offset well below 64 KiB.
const MAX_L4_OFF: usize = 1023;
/// Labels of a question name walked at most (a 255-byte name has at most 127).
const MAX_LABELS: usize = 128;
const MAX_NAME: usize = 255;

/// A UDP query to port 53 the classifier passed, with learning on: recorded by the query
/// program, which answers for the classifier. Returns when it is no such query or the program
/// is not installed.
#[inline(always)]
pub fn hand_over(ctx: &XdpContext, cfg: &Config, pkt: &IpPacket, d: &Decision) {
    if cfg.flags & Config::FLAG_LEARNED == 0
        || d.verdict != XDP_PASS
        || !pkt.has_ports
        || pkt.l4 != IPPROTO_UDP
        || pkt.dport != PORT_DNS
    {
        return;
    }
    let Some(rec) = QUERY_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    let (resolver, client) = if pkt.is_v6 {
        (pkt.dst, pkt.src)
    } else {
        (v4_mapped(&pkt.dst), v4_mapped(&pkt.src))
    };
    // SAFETY: this CPU's record, ours until this run ends.
    unsafe {
        (*rec).verdict = d.verdict;
        (*rec).l4_off = u32::from(pkt.l4_off);
        (*rec).key = QueryKey {
            resolver,
            client,
            client_port: pkt.sport,
            id: 0,
            _pad: [0; 4],
        };
        let _ = XDP_TAIL.tail_call(ctx, QUERY_PROGRAM_INDEX);
    }
}

#[xdp]
pub fn intune_xdp_query(ctx: XdpContext) -> u32 {
    let Some(rec) = QUERY_SCRATCH.get_ptr_mut(0) else {
        return XDP_PASS;
    };
    // SAFETY: the record the classifier filled on this CPU just before the tail call.
    let rec = unsafe { &mut *rec };
    let _ = remember(&ctx, rec);
    log::hand_over(&ctx);
    rec.verdict
}

/// A standard query with one question: its id and question's hash go into `DNS_QUERIES`.
#[inline(always)]
fn remember(ctx: &XdpContext, rec: &mut QueryRecord) -> Option<()> {
    let end = ctx.data_end();
    let l4_off = rec.l4_off as usize;
    if l4_off > MAX_L4_OFF {
        return None;
    }
    let dns = ctx.data() + (l4_off & MAX_L4_OFF) + UDP_HLEN;
    let hdr = bytes::<DNS_HEADER_LEN>(dns, end)?;
    // QR clear, opcode QUERY, one question.
    if hdr[2] & 0xf8 != 0 || field16::<4, DNS_HEADER_LEN>(hdr) != 1 {
        return None;
    }
    rec.key.id = field16::<0, DNS_HEADER_LEN>(hdr);
    let question = dns + DNS_HEADER_LEN;
    // The name's end: labels of at most 63 bytes, no pointers in a query.
    let mut off = 0usize;
    for _ in 0..MAX_LABELS {
        let len = bytes::<1>(question + off, end)?[0] as usize;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        off += len + 1;
        if off > MAX_NAME {
            return None;
        }
    }
    // The zero byte, the type and the class.
    let qlen = off + 5;
    let mut h = QUESTION_HASH_START;
    for i in 0..MAX_QUESTION {
        if i >= qlen {
            break;
        }
        h = question_hash_push(h, bytes::<1>(question + i, end)?[0]);
    }
    let _ = DNS_QUERIES.insert(&rec.key, &QueryValue { question: h }, 0);
    Some(())
}
