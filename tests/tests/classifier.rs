//! Named cases: each bullet of the kernel program's contract, through the real program with
//! BPF_PROG_TEST_RUN, with its counters checked. Needs root.

use intune_common::{
    classify::Decision,
    maps::{NO_PORT, NO_RULE, key_port},
    outcome::{Outcome, XDP_DROP, XDP_PASS},
};
use intune_common::{
    maps::MAX_PORT_SLOTS,
    proto::{IPPROTO_TCP, IPPROTO_UDP},
};
use intune_ctl::{
    datapath::Datapath,
    endpoints::{Source, parse_endpoint_sets},
    policy::{Direction, Mode, Policy},
    reference::ReferenceTables,
    rules::RuleSet,
};
use intune_tests::{
    frames::{Ext, Frame, L4, arp, ip},
    load, require_root, rule_set, test_sets,
};

struct Case {
    dp: Datapath,
    rules: RuleSet,
    policy: Policy,
}

impl Case {
    fn new(policy: Policy, port_only: bool) -> Case {
        let rules = rule_set(&test_sets(), port_only);
        Case {
            dp: load(&rules, &policy),
            rules,
            policy,
        }
    }

    fn monitor() -> Case {
        Case::new(Policy::default(), false)
    }

    fn enforce() -> Case {
        Case::new(
            Policy {
                mode: Mode::Enforce,
                ..Policy::default()
            },
            false,
        )
    }

    fn rule(&self, prefix: &str) -> u32 {
        self.rules
            .rules
            .iter()
            .find(|r| r.target.to_string() == prefix)
            .unwrap_or_else(|| panic!("no rule for {prefix}"))
            .index
    }

    /// Runs the frame, checks it against the reference and the counters, returns the decision.
    fn run(&self, frame: &[u8]) -> Decision {
        let outcomes_before = self.dp.outcome_counters().expect("outcome counters");
        let rules_before = self
            .dp
            .rule_counters(self.rules.index_bound())
            .expect("rule counters");
        let ports_before = self.dp.port_counters().expect("port counters");
        let d = self.dp.run_frame(frame).expect("test run");
        let reference = ReferenceTables::new(&self.rules, &self.policy).classify(frame, 1);
        assert_eq!(
            d, reference,
            "kernel and reference disagree on {frame:02x?}"
        );

        let outcomes_after = self.dp.outcome_counters().expect("outcome counters");
        for ((o, before), (_, after)) in outcomes_before.iter().zip(outcomes_after.iter()) {
            let (dp, db) = if *o == d.outcome {
                (1, frame.len() as u64)
            } else {
                (0, 0)
            };
            assert_eq!(after.packets - before.packets, dp, "{o:?} packets");
            assert_eq!(after.bytes - before.bytes, db, "{o:?} bytes");
        }
        let rules_after = self
            .dp
            .rule_counters(self.rules.index_bound())
            .expect("rule counters");
        for (i, (before, after)) in rules_before.iter().zip(rules_after.iter()).enumerate() {
            let hit = d.rule == i as u32;
            assert_eq!(
                after.packets - before.packets,
                u64::from(hit),
                "rule {i} packets"
            );
            assert_eq!(
                after.bytes - before.bytes,
                if hit { frame.len() as u64 } else { 0 },
                "rule {i} bytes"
            );
        }
        // The port the rule matched on is counted on its slot, or with the other ports when
        // it has none; nothing else moves.
        let ports_after = self.dp.port_counters().expect("port counters");
        let credited = (d.port_key != NO_PORT).then(|| {
            let port = Some(key_port(d.port_key));
            if ports_after.iter().any(|p| p.port == port) {
                port
            } else {
                None
            }
        });
        for (before, after) in ports_before.iter().zip(ports_after.iter()) {
            assert_eq!(before.port, after.port);
            let hit = credited == Some(after.port);
            assert_eq!(
                after.counter.packets - before.counter.packets,
                u64::from(hit),
                "port {:?} packets",
                after.port
            );
            assert_eq!(
                after.counter.bytes - before.counter.bytes,
                if hit { frame.len() as u64 } else { 0 },
                "port {:?} bytes",
                after.port
            );
        }
        d
    }

    fn expect(&self, frame: &Frame, outcome: Outcome, verdict: u32, rule: Option<&str>) {
        self.expect_bytes(&frame.bytes(), outcome, verdict, rule);
    }

    fn expect_bytes(&self, frame: &[u8], outcome: Outcome, verdict: u32, rule: Option<&str>) {
        let d = self.run(frame);
        assert_eq!(d.outcome, outcome, "outcome of {frame:02x?}");
        assert_eq!(d.verdict, verdict, "verdict of {frame:02x?}");
        let want = rule.map(|r| {
            if r == "any" {
                self.rules.port_only.unwrap()
            } else {
                self.rule(r)
            }
        });
        assert_eq!(
            d.rule,
            want.unwrap_or(NO_RULE),
            "rule credited for {frame:02x?}"
        );
    }
}

const DEV: &str = "192.0.2.10";
const DEV6: &str = "2001:db8:ffff::10";

#[test]
fn ipv4_hit_on_an_allowed_port_is_intune() {
    require_root!();
    let c = Case::enforce();
    c.expect(
        &Frame::tcp(DEV, "198.51.100.7", 40000, 443),
        Outcome::Intune,
        XDP_PASS,
        Some("198.51.100.0/24"),
    );
    c.expect(
        &Frame::tcp(DEV, "198.51.100.7", 40000, 22),
        Outcome::Dropped,
        XDP_DROP,
        None,
    );
    c.expect(
        &Frame::udp(DEV, "198.51.100.7", 40000, 443),
        Outcome::Dropped,
        XDP_DROP,
        None,
    );
    c.expect(
        &Frame::udp(DEV, "203.0.113.9", 40000, 3480),
        Outcome::Intune,
        XDP_PASS,
        Some("203.0.113.0/24"),
    );
    c.expect(
        &Frame::udp(DEV, "203.0.113.9", 40000, 3482),
        Outcome::Dropped,
        XDP_DROP,
        None,
    );
}

#[test]
fn hits_are_counted_per_port_with_ports_beyond_the_counters_together() {
    require_root!();
    let ranges = |tcp: &str| {
        let json = format!(
            r#"[{{"id": 1, "serviceArea": "MEM", "category": "Allow", "required": true,
                 "ips": ["198.51.100.0/24"], "tcpPorts": "{tcp}", "udpPorts": "123"}}]"#
        );
        parse_endpoint_sets(&json, Source::File).expect("sets parse")
    };
    let policy = Policy {
        mode: Mode::Enforce,
        ..Policy::default()
    };
    let rules = rule_set(&ranges("443,1000-2999"), false);
    let mut c = Case {
        dp: load(&rules, &policy),
        rules,
        policy,
    };
    let tcp = |port| Frame::tcp(DEV, "198.51.100.7", 40000, port);
    let slotted = |c: &Case| -> Vec<Option<(u8, u16)>> {
        let ports = c.dp.port_counters().expect("port counters");
        ports.iter().map(|p| p.port).collect()
    };
    let ports = slotted(&c);
    assert_eq!(ports.len() as u32, MAX_PORT_SLOTS, "every slot in use");
    assert!(ports.contains(&Some((IPPROTO_TCP, 443))));
    assert!(ports.contains(&Some((IPPROTO_UDP, 123))));
    assert!(
        !ports.contains(&Some((IPPROTO_TCP, 2999))),
        "beyond the slots"
    );
    for port in [443, 1000, 2999, 2999] {
        c.expect(
            &tcp(port),
            Outcome::Intune,
            XDP_PASS,
            Some("198.51.100.0/24"),
        );
    }
    c.expect(
        &Frame::udp(DEV, "198.51.100.7", 40000, 123),
        Outcome::Intune,
        XDP_PASS,
        Some("198.51.100.0/24"),
    );
    let other = c.dp.port_counters().expect("port counters")[0];
    assert_eq!((other.port, other.counter.packets), (None, 2));
    // The range leaves: its ports give their counters back, 443 and 123 keep counting.
    let next = RuleSet::build(&ranges("443"), &Default::default(), Some(&c.rules))
        .expect("rule set builds");
    c.dp.apply(next.clone()).expect("update");
    c.rules = next;
    assert_eq!(
        slotted(&c),
        vec![None, Some((IPPROTO_TCP, 443)), Some((IPPROTO_UDP, 123))]
    );
    let counts = c.dp.port_counters().expect("port counters");
    assert_eq!(counts[1].counter.packets, 1, "443 counts on");
    c.expect(
        &tcp(443),
        Outcome::Intune,
        XDP_PASS,
        Some("198.51.100.0/24"),
    );
    c.expect(&tcp(1000), Outcome::Dropped, XDP_DROP, None);
}

#[test]
fn unmatched_traffic_passes_in_monitor_and_drops_in_enforce() {
    require_root!();
    let f = Frame::tcp(DEV, "192.0.2.99", 40000, 443);
    Case::monitor().expect(&f, Outcome::UnmatchedPassed, XDP_PASS, None);
    Case::enforce().expect(&f, Outcome::Dropped, XDP_DROP, None);
}

#[test]
fn nested_prefixes_allow_the_union_and_credit_the_most_specific() {
    require_root!();
    let c = Case::enforce();
    // Inside the /28: its own ports (TCP 80, UDP 123) and the covering /24's (TCP 443).
    for f in [
        Frame::tcp(DEV, "198.51.100.130", 40000, 443),
        Frame::tcp(DEV, "198.51.100.130", 40000, 80),
        Frame::udp(DEV, "198.51.100.130", 40000, 123),
    ] {
        c.expect(&f, Outcome::Intune, XDP_PASS, Some("198.51.100.128/28"));
    }
    // Outside the /28 the inner set's ports do not hold.
    c.expect(
        &Frame::tcp(DEV, "198.51.100.200", 40000, 80),
        Outcome::Dropped,
        XDP_DROP,
        None,
    );
    c.expect(
        &Frame::tcp(DEV6, "2001:db8:100:1::5", 40000, 443),
        Outcome::Intune,
        XDP_PASS,
        Some("2001:db8:100:1::/64"),
    );
    c.expect(
        &Frame::tcp(DEV6, "2001:db8:100:2::5", 40000, 80),
        Outcome::Dropped,
        XDP_DROP,
        None,
    );
}

#[test]
fn vlan_tags_up_to_two_then_malformed() {
    require_root!();
    let c = Case::enforce();
    let f = Frame::tcp(DEV, "198.51.100.7", 40000, 443);
    c.expect(
        &f.clone().vlan(0x8100),
        Outcome::Intune,
        XDP_PASS,
        Some("198.51.100.0/24"),
    );
    c.expect(
        &f.clone().vlan(0x88a8).vlan(0x8100),
        Outcome::Intune,
        XDP_PASS,
        Some("198.51.100.0/24"),
    );
    c.expect(
        &f.clone().vlan(0x88a8).vlan(0x8100).vlan(0x8100),
        Outcome::Malformed,
        XDP_DROP,
        None,
    );
    let miss = Frame::tcp(DEV, "192.0.2.99", 40000, 443).vlan(0x8100);
    c.expect(&miss, Outcome::Dropped, XDP_DROP, None);
}

#[test]
fn ipv4_options_and_broken_headers() {
    require_root!();
    let c = Case::enforce();
    let mut f = Frame::tcp(DEV, "198.51.100.7", 40000, 443);
    f.v4_option_words = 10; // IHL 15, the largest
    c.expect(&f, Outcome::Intune, XDP_PASS, Some("198.51.100.0/24"));

    let good = Frame::tcp(DEV, "198.51.100.7", 40000, 443).bytes();
    let mut ihl4 = good.clone();
    ihl4[14] = 0x44;
    c.expect_bytes(&ihl4, Outcome::Malformed, XDP_DROP, None);
    let mut version = good.clone();
    version[14] = 0x65;
    c.expect_bytes(&version, Outcome::Malformed, XDP_DROP, None);
    let mut too_long = good.clone();
    too_long[16..18].copy_from_slice(&1000u16.to_be_bytes());
    c.expect_bytes(&too_long, Outcome::Malformed, XDP_DROP, None);
    // Cut inside the TCP header; the IP length still claims all of it.
    c.expect_bytes(&good[..14 + 20 + 10], Outcome::Malformed, XDP_DROP, None);
    // Cut inside the IP header.
    c.expect_bytes(&good[..14 + 12], Outcome::Malformed, XDP_DROP, None);
    // Ethernet padding after a short IP packet is not read as TCP.
    let mut padded = good.clone();
    padded[16..18].copy_from_slice(&30u16.to_be_bytes());
    c.expect_bytes(&padded, Outcome::Malformed, XDP_DROP, None);
    // TCP data offset below 5.
    let mut doff = good.clone();
    doff[14 + 20 + 12] = 0x40;
    c.expect_bytes(&doff, Outcome::Malformed, XDP_DROP, None);
}

#[test]
fn malformed_frames_pass_in_monitor() {
    require_root!();
    let good = Frame::tcp(DEV, "198.51.100.7", 40000, 443).bytes();
    Case::monitor().expect_bytes(&good[..40], Outcome::Malformed, XDP_PASS, None);
}

#[test]
fn ipv6_extension_headers_are_skipped_up_to_six() {
    require_root!();
    let c = Case::enforce();
    let f = Frame::tcp(DEV6, "2001:db8:100::9", 40000, 443)
        .ext(Ext::HopByHop)
        .ext(Ext::Routing)
        .ext(Ext::Fragment { offset: 0 })
        .ext(Ext::Ah)
        .ext(Ext::DestOpts);
    c.expect(&f, Outcome::Intune, XDP_PASS, Some("2001:db8:100::/48"));
    let six = f.clone().ext(Ext::DestOpts);
    c.expect(&six, Outcome::Intune, XDP_PASS, Some("2001:db8:100::/48"));
    let seven = six.ext(Ext::DestOpts);
    c.expect(&seven, Outcome::Malformed, XDP_DROP, None);
    // An extension header cut short.
    let cut = Frame::tcp(DEV6, "2001:db8:100::9", 40000, 443)
        .ext(Ext::Routing)
        .bytes();
    let mut short = cut[..14 + 40 + 8].to_vec();
    short[14 + 4..14 + 6].copy_from_slice(&8u16.to_be_bytes());
    c.expect_bytes(&short, Outcome::Malformed, XDP_DROP, None);
}

#[test]
fn later_fragments_match_on_the_address_alone() {
    require_root!();
    let c = Case::enforce();
    let mut later = Frame::tcp(DEV, "198.51.100.7", 40000, 9999);
    later.v4_frag_offset = 185;
    c.expect(&later, Outcome::Intune, XDP_PASS, Some("198.51.100.0/24"));
    let mut later_miss = Frame::tcp(DEV, "192.0.2.99", 40000, 443);
    later_miss.v4_frag_offset = 185;
    c.expect(&later_miss, Outcome::Dropped, XDP_DROP, None);
    // A first fragment is matched on its ports.
    let mut first = Frame::tcp(DEV, "198.51.100.7", 40000, 9999);
    first.v4_more_fragments = true;
    c.expect(&first, Outcome::Dropped, XDP_DROP, None);
    first.l4 = L4::Tcp {
        sport: 40000,
        dport: 443,
    };
    c.expect(&first, Outcome::Intune, XDP_PASS, Some("198.51.100.0/24"));
    // IPv6: a fragment header with a non-zero offset ends parsing.
    let v6 = Frame::tcp(DEV6, "2001:db8:100::9", 40000, 9999).ext(Ext::Fragment { offset: 100 });
    c.expect(&v6, Outcome::Intune, XDP_PASS, Some("2001:db8:100::/48"));
}

#[test]
fn port_only_rules_hold_for_any_address_when_configured() {
    require_root!();
    let f = Frame::tcp(DEV, "192.0.2.77", 40000, 7680);
    Case::enforce().expect(&f, Outcome::Dropped, XDP_DROP, None);
    let c = Case::new(
        Policy {
            mode: Mode::Enforce,
            ..Policy::default()
        },
        true,
    );
    c.expect(&f, Outcome::Intune, XDP_PASS, Some("any"));
    c.expect(
        &Frame::udp(DEV6, "2001:db8:5::1", 40000, 3544),
        Outcome::Intune,
        XDP_PASS,
        Some("any"),
    );
    c.expect(
        &Frame::udp(DEV, "192.0.2.77", 40000, 7680),
        Outcome::Dropped,
        XDP_DROP,
        None,
    );
    // An address rule still wins and gets the credit.
    c.expect(
        &Frame::tcp(DEV, "198.51.100.7", 40000, 443),
        Outcome::Intune,
        XDP_PASS,
        Some("198.51.100.0/24"),
    );
}

#[test]
fn direction_selects_the_address_matched() {
    require_root!();
    let ret = Frame::tcp("198.51.100.7", DEV, 443, 40000);
    let out = Frame::tcp(DEV, "198.51.100.7", 40000, 443);
    let enforce = |direction| Policy {
        mode: Mode::Enforce,
        direction,
        ..Policy::default()
    };
    let dst = Case::new(enforce(Direction::Dst), false);
    dst.expect(&ret, Outcome::Dropped, XDP_DROP, None);
    dst.expect(&out, Outcome::Intune, XDP_PASS, Some("198.51.100.0/24"));
    let src = Case::new(enforce(Direction::Src), false);
    src.expect(&ret, Outcome::Intune, XDP_PASS, Some("198.51.100.0/24"));
    src.expect(&out, Outcome::Dropped, XDP_DROP, None);
    let both = Case::new(enforce(Direction::Both), false);
    both.expect(&ret, Outcome::Intune, XDP_PASS, Some("198.51.100.0/24"));
    both.expect(&out, Outcome::Intune, XDP_PASS, Some("198.51.100.0/24"));
}

#[test]
fn an_interface_can_have_its_own_direction() {
    require_root!();
    // BPF_PROG_TEST_RUN runs the program as if it arrived on the loopback device, ifindex 1.
    let policy = Policy {
        mode: Mode::Enforce,
        direction: Direction::Dst,
        iface_directions: vec![(1, Direction::Src)],
        ..Policy::default()
    };
    let c = Case::new(policy, false);
    c.expect(
        &Frame::tcp("198.51.100.7", DEV, 443, 40000),
        Outcome::Intune,
        XDP_PASS,
        Some("198.51.100.0/24"),
    );
    c.expect(
        &Frame::tcp(DEV, "198.51.100.7", 40000, 443),
        Outcome::Dropped,
        XDP_DROP,
        None,
    );
}

#[test]
fn enforce_passes_the_infrastructure_a_network_needs() {
    require_root!();
    let c = Case::enforce();
    c.expect_bytes(&arp(), Outcome::NotIp, XDP_PASS, None);
    c.expect(
        &Frame::icmp(DEV, "192.0.2.1", 3),
        Outcome::Infrastructure,
        XDP_PASS,
        None,
    );
    c.expect(
        &Frame::icmp(DEV, "192.0.2.1", 11),
        Outcome::Infrastructure,
        XDP_PASS,
        None,
    );
    c.expect(
        &Frame::icmp(DEV, "192.0.2.1", 8),
        Outcome::Dropped,
        XDP_DROP,
        None,
    );
    c.expect(
        &Frame::icmp(DEV6, "2001:db8::1", 135),
        Outcome::Infrastructure,
        XDP_PASS,
        None,
    );
    c.expect(
        &Frame::icmp(DEV6, "2001:db8::1", 2),
        Outcome::Infrastructure,
        XDP_PASS,
        None,
    );
    c.expect(
        &Frame::icmp(DEV6, "2001:db8::1", 128),
        Outcome::Dropped,
        XDP_DROP,
        None,
    );
    c.expect(
        &Frame::udp("0.0.0.0", "255.255.255.255", 68, 67),
        Outcome::Infrastructure,
        XDP_PASS,
        None,
    );
    c.expect(
        &Frame::udp("fe80::1", "ff02::1:2", 546, 547),
        Outcome::Infrastructure,
        XDP_PASS,
        None,
    );
    c.expect(
        &Frame::udp(DEV, "192.0.2.53", 40000, 53),
        Outcome::Infrastructure,
        XDP_PASS,
        None,
    );
    c.expect(
        &Frame::tcp(DEV, "192.0.2.53", 40000, 53),
        Outcome::Infrastructure,
        XDP_PASS,
        None,
    );
    // ICMP with no room for its header is malformed, not infrastructure.
    let mut short_icmp = Frame::icmp(DEV, "192.0.2.1", 3).bytes();
    short_icmp.truncate(14 + 20 + 2);
    short_icmp[16..18].copy_from_slice(&22u16.to_be_bytes());
    c.expect_bytes(&short_icmp, Outcome::Malformed, XDP_DROP, None);
    // Another protocol with no ports (GRE) is neither.
    c.expect(
        &Frame::new(ip(DEV), ip("198.51.100.7"), L4::Other(47)),
        Outcome::Dropped,
        XDP_DROP,
        None,
    );
}

#[test]
fn dns_goes_only_to_configured_resolvers_when_some_are_set() {
    require_root!();
    let policy = Policy {
        mode: Mode::Enforce,
        dns_resolvers: vec![ip("192.0.2.53"), ip("2001:db8::53")],
        ..Policy::default()
    };
    let c = Case::new(policy, false);
    c.expect(
        &Frame::udp(DEV, "192.0.2.53", 40000, 53),
        Outcome::Infrastructure,
        XDP_PASS,
        None,
    );
    c.expect(
        &Frame::udp("192.0.2.53", DEV, 53, 40000),
        Outcome::Infrastructure,
        XDP_PASS,
        None,
    );
    c.expect(
        &Frame::udp(DEV6, "2001:db8::53", 40000, 53),
        Outcome::Infrastructure,
        XDP_PASS,
        None,
    );
    c.expect(
        &Frame::udp(DEV, "192.0.2.54", 40000, 53),
        Outcome::Dropped,
        XDP_DROP,
        None,
    );
    c.expect(
        &Frame::udp(DEV6, "2001:db8::54", 40000, 53),
        Outcome::Dropped,
        XDP_DROP,
        None,
    );
}

#[test]
fn builtin_list_matches_intune_service_prefixes() {
    require_root!();
    for trie in [false, true] {
        builtin_list_case(trie);
    }
}

fn builtin_list_case(trie: bool) {
    let rules = intune_tests::rule_set(&intune_tests::builtin_sets(), false);
    let policy = Policy {
        mode: Mode::Enforce,
        ..Policy::default()
    };
    let dp = if trie {
        intune_tests::load_trie(&rules, &policy)
    } else {
        load(&rules, &policy)
    };
    let c = Case { dp, rules, policy };
    // 13.67.13.176/28 is in set 163 (TCP 80, 443); synthetic frames only, never on a wire.
    c.expect(
        &Frame::tcp(DEV, "13.67.13.180", 40000, 443),
        Outcome::Intune,
        XDP_PASS,
        Some("13.67.13.176/28"),
    );
    c.expect(
        &Frame::tcp(DEV, "13.67.13.180", 40000, 80),
        Outcome::Intune,
        XDP_PASS,
        Some("13.67.13.176/28"),
    );
    c.expect(
        &Frame::tcp(DEV, "13.67.13.192", 40000, 443),
        Outcome::Dropped,
        XDP_DROP,
        None,
    );
    c.expect(
        &Frame::tcp(DEV, "20.204.193.11", 40000, 443),
        Outcome::Intune,
        XDP_PASS,
        Some("20.204.193.10/31"),
    );
}
