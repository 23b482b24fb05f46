//! Learning in the capture program itself: before a DNS answer leaves towards the device, the
//! addresses it gives for an endpoint name (exact, or a leading wildcard) go into `LEARNED` as
//! provisional entries, so the device's first SYN finds them. Userspace reads the same answer
//! a moment later and confirms them (with expiry and a counter of their own) or removes them.
//!
//! Two programs, joined by a tail call, so the verifier checks each on its own: the capture
//! matches the question ([`matches`]), the second reads the answer section ([`answers`]).
//!
//! Only the question name is matched here; the records are taken from the answer section as
//! they come (a resolver answers with the chain of the question), as long as their owner names
//! are compressed. The message is read from the ring buffer record it was copied into, never
//! beyond its captured length.

use aya_ebpf::bindings::BPF_NOEXIST;
use intune_common::{
    classify::v4_mapped,
    learn::{
        DNS_CAPTURE_BYTES, DnsEvent, KEY_EXACT, KEY_SUFFIX, MAX_ANSWER_RECORDS, MAX_NAME_LABELS,
        MAX_QUESTION, NAME_HASH_START, PROVISIONAL_RULE, QUESTION_HASH_START, QueryKey,
        name_hash_push, name_hash_suffix, question_hash_push,
    },
    maps::{Config, RuleRef},
};

use crate::maps::{DNS_QUERIES, LEARN_NAMES, LEARN_TRUSTED, LEARNED, NAME_SCRATCH};

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
/// The question starts after the 12-byte header.
const QUESTION: usize = 12;
/// A name is at most 255 bytes on the wire.
const MAX_NAME: usize = 255;

/// The captured message, read with bounds checks the verifier can follow.
struct Message<'a> {
    data: &'a [u8; DNS_CAPTURE_BYTES],
    len: usize,
}

impl Message<'_> {
    fn of(ev: &DnsEvent) -> Message<'_> {
        Message {
            data: &ev.data,
            len: ev.len as usize,
        }
    }

    #[inline(always)]
    fn byte(&self, at: usize) -> Option<u8> {
        // Opaque to LLVM: it would otherwise fold a loop's index into the pointer as a base
        // and a negative constant, which the verifier cannot bound.
        let at = core::hint::black_box(at);
        if at < self.len && at < DNS_CAPTURE_BYTES {
            Some(self.data[at])
        } else {
            None
        }
    }

    #[inline(always)]
    fn be16(&self, at: usize) -> Option<u16> {
        Some(u16::from_be_bytes([self.byte(at)?, self.byte(at + 1)?]))
    }
}

/// What the question loop carries from one byte to the next. It lives in a per-CPU map, read
/// and written volatile: to the verifier its fields are then unknown numbers, so it walks the
/// loop once instead of once per way a name can be cut into labels.
#[repr(C)]
pub struct NameScratch {
    /// The name's hash before each label, and the text's length there.
    prefix: [u64; MAX_NAME_LABELS],
    at: [u64; MAX_NAME_LABELS],
    hash: u64,
    text: u64,
    next_len: u64,
    labels: u64,
    end: u64,
    /// An answer's address, as `LEARNED` keys it.
    key: [u8; 16],
    /// The port set of the name matched, or [`NO_PORT_SET`].
    port_set: u64,
    /// The name hash key of the program's config.
    key_base: u64,
}

const NO_PORT_SET: u64 = u64::MAX;

macro_rules! get {
    ($s:ident . $f:ident) => {
        // SAFETY: a field of the per-CPU scratch value, ours for this program run.
        unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*$s).$f)) }
    };
}

macro_rules! set {
    ($s:ident . $f:ident, $v:expr) => {{
        let value = $v;
        // SAFETY: as in `get!`.
        unsafe { core::ptr::write_volatile(core::ptr::addr_of_mut!((*$s).$f), value) }
    }};
}

/// Whether the answer in `ev` is one to read further: learning on, its resolver trusted, a
/// response without error to one question the capture can read. The port set of the endpoint
/// name asked for (or none), the end of the question and the hash key are left in the scratch
/// map for [`answers`].
#[inline(always)]
pub fn matches(ev: &DnsEvent, cfg: &Config) -> bool {
    if cfg.flags & Config::FLAG_LEARNED == 0 {
        return false;
    }
    if let Some(s) = NAME_SCRATCH.get_ptr_mut(0) {
        set!(s.key_base, cfg.name_hash_key);
    }
    if cfg.flags & Config::FLAG_LEARN_TRUSTED != 0 {
        let resolver = if ev.is_v6 != 0 {
            ev.src
        } else {
            v4_mapped(&ev.src)
        };
        // SAFETY: only the entry's presence is used.
        if unsafe { LEARN_TRUSTED.get(&resolver) }.is_none() {
            return false;
        }
    }
    let msg = Message::of(ev);
    let Some(flags) = msg.be16(2) else {
        return false;
    };
    // A response (QR), standard query, no error, one question.
    if flags & 0x8000 == 0 || flags & 0x7800 != 0 || flags & 0x000f != 0 || msg.be16(4) != Some(1) {
        return false;
    }
    question(&msg).is_some()
}

/// Whether `ev` answers a query the classifier saw a device send (see `query`); the query is
/// consumed, so one answer teaches at most once.
#[inline(always)]
pub fn solicited(ev: &DnsEvent) -> Option<bool> {
    let msg = Message::of(ev);
    let s = NAME_SCRATCH.get_ptr_mut(0)?;
    // The question section: from the header's end past the name's zero, type and class.
    let qend = get!(s.end) as usize + 5;
    let mut h = QUESTION_HASH_START;
    for i in 0..MAX_QUESTION {
        let at = QUESTION + i;
        if at >= qend {
            break;
        }
        h = question_hash_push(h, msg.byte(at)?);
    }
    let (resolver, client) = if ev.is_v6 != 0 {
        (ev.src, ev.dst)
    } else {
        (v4_mapped(&ev.src), v4_mapped(&ev.dst))
    };
    let key = QueryKey {
        resolver,
        client,
        client_port: ev.client_port,
        id: msg.be16(0)?,
        _pad: [0; 4],
    };
    // SAFETY: a u64 copied out at once.
    let asked = unsafe { DNS_QUERIES.get(&key) }.map(|q| q.question);
    if asked != Some(h) {
        return Some(false);
    }
    let _ = DNS_QUERIES.remove(&key);
    Some(true)
}

/// Takes in the A and AAAA records of the answer section of `ev`, which [`matches`] matched
/// to an endpoint name and [`solicited`] to a query.
#[inline(always)]
pub fn answers(ev: &DnsEvent) -> Option<()> {
    let msg = Message::of(ev);
    let s = NAME_SCRATCH.get_ptr_mut(0)?;
    if get!(s.port_set) == NO_PORT_SET {
        return None;
    }
    let port_set = get!(s.port_set) as u32;
    let answers = msg.be16(6)? as usize;
    // Past the name's terminating zero, QTYPE and QCLASS.
    set!(s.end, get!(s.end) + 5);
    for _ in 0..MAX_ANSWER_RECORDS.min(answers) {
        let off = skip_name(&msg, get!(s.end) as usize)?;
        let kind = msg.be16(off)?;
        let rdlen = msg.be16(off + 8)? as usize;
        let data = off + 10;
        // The key is built in the scratch map, not on the stack: stack bytes written on one
        // path and not on another would keep the verifier from merging the paths.
        let family = match (kind, rdlen) {
            (TYPE_A, 4) => Some(false),
            (TYPE_AAAA, 16) => Some(true),
            _ => None,
        };
        if let Some(v6) = family {
            for i in 0..16 {
                let byte = if v6 {
                    msg.byte(data + i)?
                } else if i < 10 {
                    0
                } else if i < 12 {
                    0xff
                } else {
                    msg.byte(data + i - 12)?
                };
                // SAFETY: `i` is within the key.
                unsafe { core::ptr::write_volatile(core::ptr::addr_of_mut!((*s).key[i]), byte) };
            }
            // SAFETY: the scratch value is ours for this run.
            insert(unsafe { &(*s).key }, port_set);
        }
        set!(s.end, (data + rdlen) as u64);
    }
    Some(())
}

#[inline(always)]
fn insert(key: &[u8; 16], port_set: u32) {
    let value = RuleRef {
        rule: PROVISIONAL_RULE,
        port_set,
    };
    // NOEXIST: an address userspace confirmed keeps its own counter.
    let _ = LEARNED.insert(key, &value, BPF_NOEXIST as u64);
}

/// The port set of the endpoint name the question asks for (in the scratch map, or
/// [`NO_PORT_SET`]), and where the name's terminating zero is.
///
/// One pass from the front: the name's hash (see `name_hash_push`) and, at each label's start,
/// the hash so far and the text's length there, from which any suffix's hash follows. Then the
/// whole name is looked up as an exact name, and the suffixes, longest first, as wildcards.
#[inline(always)]
fn question(msg: &Message) -> Option<usize> {
    let s = NAME_SCRATCH.get_ptr_mut(0)?;
    let key = get!(s.key_base);
    set!(s.hash, NAME_HASH_START);
    set!(s.text, 0);
    set!(s.next_len, QUESTION as u64);
    set!(s.labels, 0);
    set!(s.end, 0);
    for pos in QUESTION..QUESTION + MAX_NAME {
        let b = msg.byte(pos)?;
        if pos as u64 != get!(s.next_len) {
            set!(s.hash, name_hash_push(get!(s.hash), b, key));
            set!(s.text, get!(s.text) + 1);
            continue;
        }
        if b == 0 {
            set!(s.end, pos as u64);
            break;
        }
        // A pointer in a question, or a label too long: not for this reader.
        if b > 63 {
            return None;
        }
        let labels = get!(s.labels);
        if labels >= MAX_NAME_LABELS as u64 {
            return None;
        }
        if labels > 0 {
            set!(s.hash, name_hash_push(get!(s.hash), b'.', key));
            set!(s.text, get!(s.text) + 1);
        }
        let k = labels as usize & (MAX_NAME_LABELS - 1);
        let (hash, text) = (get!(s.hash), get!(s.text));
        // SAFETY: `k` is within the arrays.
        unsafe {
            core::ptr::write_volatile(core::ptr::addr_of_mut!((*s).prefix[k]), hash);
            core::ptr::write_volatile(core::ptr::addr_of_mut!((*s).at[k]), text);
        }
        set!(s.labels, labels + 1);
        set!(s.next_len, pos as u64 + b as u64 + 1);
    }
    let end = get!(s.end) as usize;
    if end == 0 {
        return None;
    }
    let (whole, text, labels) = (get!(s.hash), get!(s.text), get!(s.labels));
    // The match goes through the scratch map too: every way out of the lookups below then
    // looks the same to the verifier, which walks the answer section once, not once each.
    set!(s.port_set, NO_PORT_SET);
    // SAFETY: a u32 copied out at once.
    if let Some(ps) = unsafe { LEARN_NAMES.get(&(whole ^ KEY_EXACT)) } {
        set!(s.port_set, *ps as u64);
    } else {
        for k in 1..MAX_NAME_LABELS {
            if k as u64 >= labels {
                break;
            }
            // SAFETY: `k` is within the arrays.
            let (before, at) = unsafe {
                (
                    core::ptr::read_volatile(core::ptr::addr_of!((*s).prefix[k])),
                    core::ptr::read_volatile(core::ptr::addr_of!((*s).at[k])),
                )
            };
            let suffix = name_hash_suffix(whole, before, text.wrapping_sub(at) as usize, key);
            // SAFETY: as above.
            if let Some(ps) = unsafe { LEARN_NAMES.get(&(suffix ^ KEY_SUFFIX)) } {
                set!(s.port_set, *ps as u64);
                break;
            }
        }
    }
    Some(get!(s.end) as usize)
}

/// Past a record's owner name, which resolvers write as a pointer (two bytes) to a name met
/// before. A name spelled out ends the reading here: the verifier cannot afford a label loop
/// per record, and userspace reads such answers whole a moment later.
#[inline(always)]
fn skip_name(msg: &Message, off: usize) -> Option<usize> {
    if msg.byte(off)? & 0xc0 == 0xc0 {
        Some(off + 2)
    } else {
        None
    }
}
