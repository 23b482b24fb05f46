//! Learning addresses from the DNS answers that cross the gateway: what the capture program
//! hands to userspace, and the map of learned addresses the classifier consults.

/// Program array whose entry [`ANSWERS_PROGRAM_INDEX`] is the capture's second program,
/// `intune_dns_answers`.
pub const DNS_TAIL: &str = "DNS_TAIL";
pub const ANSWERS_PROGRAM_INDEX: u32 = 0;
/// Ring buffer of [`DnsEvent`]: DNS responses (UDP source port 53) leaving towards devices.
pub const DNS_EVENTS: &str = "DNS_EVENTS";
/// Per-CPU array with one u64: responses the capture could not hand over because the ring was
/// full (the learner behind). The learner counts them; a device whose answer was lost asks
/// again, and its address is learned then.
pub const DNS_LOST: &str = "DNS_LOST";
/// Hash of address (IPv6, or IPv4 mapped `::ffff:a.b.c.d`) -> [`crate::maps::RuleRef`]: the
/// addresses learned from answers, consulted when the listed prefixes do not allow a packet
/// and [`crate::maps::Config::FLAG_LEARNED`] is set.
pub const LEARNED: &str = "LEARNED";

/// Hash of name key (see [`name_key`]) -> port set id: the endpoint names the capture program
/// learns from by itself, before the answer leaves, so that a device's first SYN finds its
/// address. Exact names and leading wildcards (`*.rest`) only; userspace confirms each answer.
pub const LEARN_NAMES: &str = "LEARN_NAMES";
/// Hash of resolver address (as in `DNS_RESOLVERS`) -> 1: the resolvers whose answers the
/// capture program learns from when [`crate::maps::Config::FLAG_LEARN_TRUSTED`] is set.
pub const LEARN_TRUSTED: &str = "LEARN_TRUSTED";
pub const MAX_LEARN_NAMES: u32 = 4096;
pub const MAX_LEARN_TRUSTED: u32 = 64;
/// The rule credited for an address the capture program learned and userspace has not yet
/// confirmed (no counter of its own).
pub const PROVISIONAL_RULE: u32 = u32::MAX - 1;

/// LRU hash of [`QueryKey`] -> [`QueryValue`]: the DNS queries devices sent that the
/// classifier passed, written by its query program and consumed by the capture: only an answer
/// to one of them teaches.
pub const DNS_QUERIES: &str = "DNS_QUERIES";
/// Outstanding queries remembered: a busy site's queries of several seconds.
pub const MAX_DNS_QUERIES: u32 = 16_384;

/// A query as its answer will name it: the resolver asked, the device and its port, the id.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueryKey {
    /// IPv6, or IPv4 mapped.
    pub resolver: [u8; 16],
    pub client: [u8; 16],
    pub client_port: u16,
    pub id: u16,
    pub _pad: [u8; 4],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueryValue {
    /// [`question_hash`] of the question section.
    pub question: u64,
}

/// FNV-1a over the question section's bytes as sent (name, type, class): a resolver echoes
/// them, so the answer's must hash the same.
pub const QUESTION_HASH_START: u64 = 0xcbf2_9ce4_8422_2325;

#[inline(always)]
pub fn question_hash_push(h: u64, byte: u8) -> u64 {
    (h ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
}

/// Bytes of a question section at most: a 255-byte name, type and class.
pub const MAX_QUESTION: usize = 255 + 4;

/// Told apart in the key: an exact name, or the part of a wildcard after `*.`.
pub const KEY_EXACT: u64 = 0x5a5a_0000_0000_0001;
pub const KEY_SUFFIX: u64 = 0xa5a5_0000_0000_0002;

/// A name's hash is a polynomial over its text, lower case, in wrapping u64 arithmetic:
/// `h = h * B + byte` from the first character on. From the hash of the whole name, the hash
/// of the text before a position and the length after it, the hash of the suffix from there
/// follows without reading it again: that lets the kernel read a name once, from the front.
///
/// `B` is [`Config::name_hash_key`](crate::maps::Config::name_hash_key), odd and chosen at
/// random at every load: with a public base anyone could compute a name that collides with an
/// endpoint name and have the capture take its addresses in. A name is at most 255 bytes,
/// far too short for the base-independent collisions of such hashes (2,048 bytes and up).
pub const NAME_HASH_START: u64 = 0;
/// Labels of a question name the capture program reads at most (a power of two).
pub const MAX_NAME_LABELS: usize = 16;
/// Answer records it reads at most.
pub const MAX_ANSWER_RECORDS: usize = 16;

#[inline(always)]
pub fn name_hash_push(h: u64, byte: u8, key: u64) -> u64 {
    let lower = if byte.is_ascii_uppercase() {
        byte | 0x20
    } else {
        byte
    };
    h.wrapping_mul(key).wrapping_add(u64::from(lower))
}

/// The hash of the last `len` characters of a text whose hash is `whole`, when the text
/// before them hashes to `before`.
#[inline(always)]
pub fn name_hash_suffix(whole: u64, before: u64, len: usize, key: u64) -> u64 {
    // KEY^len by squaring: eight rounds cover any name (len < 256).
    let (mut power, mut base, mut e) = (1u64, key, len);
    for _ in 0..8 {
        if e & 1 != 0 {
            power = power.wrapping_mul(base);
        }
        base = base.wrapping_mul(base);
        e >>= 1;
    }
    whole.wrapping_sub(before.wrapping_mul(power))
}

/// The key of a name (labels joined by dots, no trailing dot) of `kind`, under the hash key
/// of the loaded program.
pub fn name_key(name: &str, kind: u64, key: u64) -> u64 {
    name.bytes()
        .fold(NAME_HASH_START, |h, b| name_hash_push(h, b, key))
        ^ kind
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_suffix_hash_follows_from_the_whole_and_the_part_before() {
        for key in [0x0000_0100_0000_01b3, 0x9e37_79b9_7f4a_7c15] {
            let hash = |t: &str| {
                t.bytes()
                    .fold(NAME_HASH_START, |h, b| name_hash_push(h, b, key))
            };
            let whole = hash("X.Manage.Microsoft.com");
            let before = hash("x.");
            let suffix = name_hash_suffix(whole, before, "manage.microsoft.com".len(), key);
            assert_eq!(
                suffix ^ KEY_SUFFIX,
                name_key("manage.microsoft.com", KEY_SUFFIX, key)
            );
            assert_ne!(
                suffix ^ KEY_SUFFIX,
                name_key("manage.microsoft.co", KEY_SUFFIX, key)
            );
        }
    }

    #[test]
    fn the_key_changes_every_name_hash() {
        let a = name_key("manage.microsoft.com", KEY_SUFFIX, 0x0000_0100_0000_01b3);
        let b = name_key("manage.microsoft.com", KEY_SUFFIX, 0x9e37_79b9_7f4a_7c15);
        assert_ne!(a, b);
    }
}

/// Bytes of a DNS message the capture copies: a full answer over UDP on a 1500-byte link.
pub const DNS_CAPTURE_BYTES: usize = 1472;
/// The ring buffer's size: about 1,400 answers waiting before the capture starts to miss some.
pub const DNS_RING_BYTES: u32 = 1 << 21;
/// Learned addresses the map holds by default; userspace may raise or lower it before loading.
pub const MAX_LEARNED: u32 = 65_536;

/// One DNS response as it left the gateway.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct DnsEvent {
    /// `bpf_ktime_get_ns` at capture (CLOCK_MONOTONIC): how long learning took is measured
    /// from here.
    pub ktime_ns: u64,
    pub ifindex: u32,
    /// Bytes of the message in `data`.
    pub len: u16,
    /// Bytes of the message in the packet: more than `len` when it was cut.
    pub wire_len: u16,
    pub is_v6: u8,
    /// 1 when the answer matches a query the classifier saw a device send (resolver, device
    /// and port, id, question), which it consumed: only such answers teach.
    pub solicited: u8,
    /// The device's port (the answer's destination port).
    pub client_port: u16,
    pub _pad: [u8; 4],
    /// The resolver's address (IPv4 in the first four bytes).
    pub src: [u8; 16],
    /// The device's address.
    pub dst: [u8; 16],
    pub data: [u8; DNS_CAPTURE_BYTES],
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C), integers and byte arrays only, no implicit padding.
    unsafe impl aya::Pod for super::DnsEvent {}
    unsafe impl aya::Pod for super::QueryKey {}
    unsafe impl aya::Pod for super::QueryValue {}
}
