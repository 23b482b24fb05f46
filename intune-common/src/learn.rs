//! Learning addresses from the DNS answers that cross the gateway: what the capture program
//! hands to userspace, and the map of learned addresses the classifier consults.

/// Ring buffer of [`DnsEvent`]: DNS responses (UDP source port 53) leaving towards devices.
pub const DNS_EVENTS: &str = "DNS_EVENTS";
/// Hash of address (IPv6, or IPv4 mapped `::ffff:a.b.c.d`) -> [`crate::maps::RuleRef`]: the
/// addresses learned from answers, consulted when the listed prefixes do not allow a packet
/// and [`crate::maps::Config::FLAG_LEARNED`] is set.
pub const LEARNED: &str = "LEARNED";

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
    pub _pad: [u8; 7],
    /// The resolver's address (IPv4 in the first four bytes).
    pub src: [u8; 16],
    /// The device's address.
    pub dst: [u8; 16],
    pub data: [u8; DNS_CAPTURE_BYTES],
}

#[cfg(feature = "user")]
// SAFETY: repr(C), integers and byte arrays only, no implicit padding.
unsafe impl aya::Pod for DnsEvent {}
