//! The DNS capture program, run with BPF_PROG_TEST_RUN on frames worked out by hand: it reads
//! the headers with the filter's own parser (two VLAN tags, IPv6 extension headers, the same
//! bounds checks) and hands the learner a DNS response's message with who sent it to whom.
//! Needs root.

use intune_common::learn::DnsEvent;
use intune_ctl::{
    datapath::{Capacity, Datapath, pins::Pins},
    ruleset::policy::Policy,
    sources::learn::learner::Maps,
};
use intune_tests::{
    frames::{Ext, Frame, ip},
    require_root, rule_set, test_sets,
};

const PAYLOAD: usize = 32;

/// A DNS response's frame: UDP from 53 to the device's port, a payload of 1, 2, .. 32.
fn response(frame: Frame) -> Vec<u8> {
    let mut frame = frame;
    frame.payload = PAYLOAD;
    let mut bytes = frame.bytes();
    let n = bytes.len();
    for (i, b) in bytes[n - PAYLOAD..].iter_mut().enumerate() {
        *b = i as u8 + 1;
    }
    bytes
}

struct Rig {
    dp: Datapath,
    maps: Maps,
    pins: Pins,
}

impl Rig {
    /// A rig of its own for each test (`tag`): tests run in parallel.
    fn new(tag: &str) -> Rig {
        let pins = Pins::new(format!(
            "/sys/fs/bpf/ixt-capture-{tag}-{}",
            std::process::id()
        ));
        intune_ctl::datapath::bpffs::ensure_dir(pins.dir()).expect("bpffs");
        let rules = rule_set(&test_sets(), false);
        let mut dp = Datapath::load_pinned(Capacity::for_prefixes(rules.index_bound()), &pins)
            .expect("load");
        dp.install(&rules, &Policy::default(), false)
            .expect("install");
        // No interface: the capture is loaded and run by hand. No trusted resolver: nothing is
        // learned in the kernel, every response is only handed over.
        let maps = dp.start_learning(&[], &[], &pins).expect("the capture");
        Rig { dp, maps, pins }
    }

    /// The events the capture handed over for `frame`.
    fn run(&mut self, frame: &[u8]) -> Vec<DnsEvent> {
        assert_eq!(
            self.dp.run_capture(frame).expect("test run"),
            0,
            "TC_ACT_OK always"
        );
        let mut events = Vec::new();
        while let Some(item) = self.maps.events.next() {
            assert_eq!(item.len(), size_of::<DnsEvent>());
            // SAFETY: a DnsEvent the program wrote, read unaligned from the ring.
            events.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<DnsEvent>()) });
        }
        events
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = self.pins.remove_all();
    }
}

fn v4(addr: &str) -> [u8; 16] {
    let mut out = [0; 16];
    if let std::net::IpAddr::V4(a) = ip(addr) {
        out[..4].copy_from_slice(&a.octets());
    }
    out
}

fn v6(addr: &str) -> [u8; 16] {
    match ip(addr) {
        std::net::IpAddr::V6(a) => a.octets(),
        std::net::IpAddr::V4(_) => unreachable!(),
    }
}

/// One event with these addresses and port, carrying the whole payload.
fn assert_handed_over(events: &[DnsEvent], is_v6: bool, src: [u8; 16], dst: [u8; 16], what: &str) {
    assert_eq!(events.len(), 1, "{what}: one event");
    let e = &events[0];
    assert_eq!(e.is_v6, u8::from(is_v6), "{what}");
    assert_eq!(e.src, src, "{what}: the resolver");
    assert_eq!(e.dst, dst, "{what}: the device");
    assert_eq!(e.client_port, 40000, "{what}: the device's port");
    assert_eq!(
        usize::from(e.len),
        PAYLOAD,
        "{what}: the message, no header bytes"
    );
    assert_eq!(usize::from(e.wire_len), PAYLOAD, "{what}");
    let expected: Vec<u8> = (1..=PAYLOAD as u8).collect();
    assert_eq!(
        &e.data[..PAYLOAD],
        &expected[..],
        "{what}: from the message's first byte"
    );
}

#[test]
fn responses_are_read_with_the_filters_parser() {
    require_root!();
    let mut rig = Rig::new("parse");
    let (resolver, device) = ("192.0.2.53", "198.51.100.9");
    let plain = Frame::udp(resolver, device, 53, 40000);
    let events = rig.run(&response(plain.clone()));
    assert_handed_over(&events, false, v4(resolver), v4(device), "plain IPv4");

    // Two tags, 802.1ad outside 802.1Q, as a provider's network carries them.
    let qinq = plain.clone().vlan(0x88a8).vlan(0x8100);
    let events = rig.run(&response(qinq));
    assert_handed_over(&events, false, v4(resolver), v4(device), "two VLAN tags");
    let one = plain.clone().vlan(0x8100);
    assert_handed_over(
        &rig.run(&response(one)),
        false,
        v4(resolver),
        v4(device),
        "one tag",
    );

    // IPv6 through two extension headers.
    let (resolver6, device6) = ("2001:db8::53", "2001:db8:1::9");
    let ipv6 = Frame::udp(resolver6, device6, 53, 40000)
        .ext(Ext::HopByHop)
        .ext(Ext::DestOpts);
    let events = rig.run(&response(ipv6));
    assert_handed_over(
        &events,
        true,
        v6(resolver6),
        v6(device6),
        "IPv6, extension headers",
    );

    // Not a response: nothing handed over.
    let three_tags = plain.clone().vlan(0x88a8).vlan(0x8100).vlan(0x8100);
    assert!(
        rig.run(&response(three_tags)).is_empty(),
        "three tags: the parser stops at two"
    );
    let query = Frame::udp(device, resolver, 40000, 53);
    assert!(rig.run(&response(query)).is_empty(), "a query, to port 53");
    let mdns = Frame::udp(resolver, device, 5353, 40000);
    assert!(rig.run(&response(mdns)).is_empty(), "not from port 53");
    let tcp = Frame::tcp(resolver, device, 53, 40000);
    assert!(
        rig.run(&response(tcp)).is_empty(),
        "DNS over TCP is not read"
    );
    let mut later = plain.clone();
    later.v4_frag_offset = 8;
    assert!(
        rig.run(&response(later)).is_empty(),
        "a later fragment has no UDP header"
    );
    // An IP length beyond the frame: malformed, as the filter would say.
    let mut cut = response(plain);
    cut.truncate(cut.len() - 8);
    assert!(
        rig.run(&cut).is_empty(),
        "a frame shorter than its IP length"
    );
}

#[test]
fn responses_the_ring_has_no_room_for_are_counted() {
    require_root!();
    let mut rig = Rig::new("ring");
    let frame = response(Frame::udp("192.0.2.53", "198.51.100.9", 53, 40000));
    let lost = |rig: &Rig| -> u64 { rig.maps.lost.get(&0, 0).expect("DNS_LOST").iter().sum() };
    assert_eq!(lost(&rig), 0);
    // Nobody reads the ring: each record takes its size and an 8-byte header, rounded up to 8.
    let record = (size_of::<DnsEvent>() + 8).next_multiple_of(8);
    let room = intune_common::learn::DNS_RING_BYTES as usize / record;
    let runs = room + 25;
    for _ in 0..runs {
        rig.dp.run_capture(&frame).expect("test run");
    }
    assert_eq!(lost(&rig), 25, "{room} records fit");
    let mut kept = 0;
    while rig.maps.events.next().is_some() {
        kept += 1;
    }
    assert_eq!(kept, room);
}
