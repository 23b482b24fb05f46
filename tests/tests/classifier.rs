//! Named cases: each bullet of the kernel program's contract, through the real program with
//! BPF_PROG_TEST_RUN, with its counters checked. Needs root.

use std::{
    collections::HashMap,
    sync::{Mutex, OnceLock, PoisonError},
};

use intune_common::{
    classify::Decision,
    maps::{MAX_PORT_SLOTS, NO_PORT, NO_RULE, key_port},
    outcome::{Outcome, XDP_DROP, XDP_PASS},
    proto::{IPPROTO_TCP, IPPROTO_UDP},
};
use intune_ctl::{
    datapath::Datapath,
    reference::ReferenceTables,
    ruleset::{
        policy::{AllowProtocol, AllowRule, Direction, Mode, Policy},
        rules::RuleSet,
    },
    sources::endpoints::{Source, parse_endpoint_sets},
};
use intune_tests::{
    frames::{Ext, Frame, L4, arp, ip},
    load, require_root, rule_set, test_sets,
};
use ipnet::IpNet;

struct Case {
    dp: Datapath,
    rules: RuleSet,
    policy: Policy,
    /// The gateway's own addresses, as the daemon would follow them.
    local: Vec<IpNet>,
    /// Held for each frame: a case the tests share runs one frame at a time, so the counter
    /// deltas each run checks are its own.
    running: Mutex<()>,
}

impl Case {
    fn new(policy: Policy, port_only: bool) -> &'static Case {
        Case::with_local(policy, port_only, &[])
    }

    /// The case of these settings, shared by every test that only runs frames through it:
    /// each load verifies the program (a second here, minutes in an emulated guest).
    fn with_local(policy: Policy, port_only: bool, local: &[&str]) -> &'static Case {
        static SHARED: OnceLock<Mutex<HashMap<String, &'static Case>>> = OnceLock::new();
        let key = format!("{policy:?} {port_only} {local:?}");
        let mut shared = SHARED
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        shared
            .entry(key)
            .or_insert_with(|| Box::leak(Box::new(Case::fresh(policy, port_only, local))))
    }

    /// A case of its own, for a test that changes its maps.
    fn fresh(policy: Policy, port_only: bool, local: &[&str]) -> Case {
        let rules = rule_set(&test_sets(), port_only);
        let local: Vec<IpNet> = local.iter().map(|n| n.parse().expect("prefix")).collect();
        let mut dp = load(&rules, &policy);
        dp.set_local_addresses(&local).expect("local addresses");
        Case::of(dp, rules, policy, local)
    }

    fn of(dp: Datapath, rules: RuleSet, policy: Policy, local: Vec<IpNet>) -> Case {
        Case {
            dp,
            rules,
            policy,
            local,
            running: Mutex::new(()),
        }
    }

    fn monitor() -> &'static Case {
        Case::new(Policy::default(), false)
    }

    fn enforce() -> &'static Case {
        Case::new(intune_tests::enforce(), false)
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
        let _one_at_a_time = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let outcomes_before = self.dp.outcome_counters().expect("outcome counters");
        let rules_before = self
            .dp
            .rule_counters(self.rules.index_bound())
            .expect("rule counters");
        let ports_before = self.dp.port_counters().expect("port counters");
        let d = self.dp.run_frame(frame).expect("test run");
        let mut reference = ReferenceTables::new(&self.rules, &self.policy).with_local(&self.local);
        if self.dp.drain_idle().is_some() {
            reference = reference.with_draining(self.dp.drain_entries().expect("drain"));
        }
        let reference = reference.classify(frame, 1);
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
    let mut c = Case::of(load(&rules, &policy), rules, policy, Vec::new());
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
    let next = RuleSet::build(
        &ranges("443"),
        &intune_ctl::ruleset::rules::RuleSetOptions::default(),
        Some(&c.rules),
    )
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
fn a_program_not_yet_configured_passes_what_enforce_would_drop() {
    require_root!();
    // Loaded, no settings written: they start all off (monitor mode), not zeros read as
    // something else; the frame Case::enforce drops above passes.
    let dp = Datapath::load(intune_ctl::datapath::Capacity::default()).expect("program loads");
    assert_eq!(
        dp.config().expect("settings"),
        intune_common::maps::Config::OFF
    );
    let f = Frame::tcp(DEV, "192.0.2.99", 40000, 443).bytes();
    let run = aya::programs::TestRun::test_run(
        dp.program().expect("program"),
        aya::programs::TestRunOptions {
            data_in: Some(&f),
            ..aya::programs::TestRunOptions::new()
        },
    )
    .expect("test run");
    assert_eq!(run.return_value, XDP_PASS);
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
fn udp_cut_short_by_its_ip_length_is_malformed_however_padded() {
    require_root!();
    let c = Case::enforce();
    // 14 + 20 + 8 bytes: a UDP header and no data, to the /28's UDP 123.
    let bare = Frame::udp(DEV, "198.51.100.130", 40000, 123).bytes();
    assert_eq!(bare.len(), 42);
    c.expect_bytes(&bare, Outcome::Intune, XDP_PASS, Some("198.51.100.128/28"));
    // Padded to Ethernet's 60 bytes: long enough for the fast path's fixed offsets.
    let mut padded = bare.clone();
    padded.resize(60, 0);
    c.expect_bytes(
        &padded,
        Outcome::Intune,
        XDP_PASS,
        Some("198.51.100.128/28"),
    );
    // An IP length of 27 leaves the UDP header a byte short, whatever follows in the frame.
    let mut cut = padded.clone();
    cut[16..18].copy_from_slice(&27u16.to_be_bytes());
    c.expect_bytes(&cut, Outcome::Malformed, XDP_DROP, None);
    // An IP length past the frame's end.
    let mut long = padded.clone();
    long[16..18].copy_from_slice(&47u16.to_be_bytes());
    c.expect_bytes(&long, Outcome::Malformed, XDP_DROP, None);
    long[16..18].copy_from_slice(&46u16.to_be_bytes());
    c.expect_bytes(&long, Outcome::Intune, XDP_PASS, Some("198.51.100.128/28"));
}

#[test]
fn ipv6_udp_cut_short_by_its_payload_length_is_malformed_however_padded() {
    require_root!();
    let c = Case::enforce();
    let rule = Some("2001:db8:100:1::/64");
    // 14 + 40 + 8 bytes: a UDP header and no data, to the /64's UDP 123; shorter than the
    // 74 bytes the fast path reads, so it goes the whole way.
    let bare = Frame::udp(DEV6, "2001:db8:100:1::5", 40000, 123).bytes();
    assert_eq!(bare.len(), 62);
    c.expect_bytes(&bare, Outcome::Intune, XDP_PASS, rule);
    // 12 bytes after the packet: the fast path's length, the payload length still 8.
    let mut padded = bare.clone();
    padded.resize(74, 0);
    c.expect_bytes(&padded, Outcome::Intune, XDP_PASS, rule);
    // A payload length of 7 leaves the UDP header a byte short, whatever follows.
    let mut cut = padded.clone();
    cut[18..20].copy_from_slice(&7u16.to_be_bytes());
    c.expect_bytes(&cut, Outcome::Malformed, XDP_DROP, None);
    // A payload length past the frame's end (74 - 54 = 20 bytes are there).
    let mut long = padded.clone();
    long[18..20].copy_from_slice(&21u16.to_be_bytes());
    c.expect_bytes(&long, Outcome::Malformed, XDP_DROP, None);
    long[18..20].copy_from_slice(&20u16.to_be_bytes());
    c.expect_bytes(&long, Outcome::Intune, XDP_PASS, rule);
}

#[test]
fn ipv6_broken_headers_are_malformed() {
    require_root!();
    let c = Case::enforce();
    let good = Frame::tcp(DEV6, "2001:db8:100::9", 40000, 443).bytes();
    c.expect_bytes(&good, Outcome::Intune, XDP_PASS, Some("2001:db8:100::/48"));
    // An IPv6 EtherType over a header whose version is 4.
    let mut version = good.clone();
    version[14] = 0x45;
    c.expect_bytes(&version, Outcome::Malformed, XDP_DROP, None);
    // TCP data offset below 5.
    let mut doff = good.clone();
    doff[14 + 40 + 12] = 0x40;
    c.expect_bytes(&doff, Outcome::Malformed, XDP_DROP, None);
    // The payload length one past the frame, and one short of the TCP header.
    let payload = u16::try_from(good.len() - 54).expect("a short frame");
    let mut long = good.clone();
    long[18..20].copy_from_slice(&(payload + 1).to_be_bytes());
    c.expect_bytes(&long, Outcome::Malformed, XDP_DROP, None);
    let mut short = good.clone();
    short[18..20].copy_from_slice(&19u16.to_be_bytes());
    c.expect_bytes(&short, Outcome::Malformed, XDP_DROP, None);
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
    // On a port the address allows, matched on the address all the same: the offset's top
    // bit alone (4,096 eight-byte units) makes a later fragment.
    let mut later = Frame::tcp(DEV, "198.51.100.7", 40000, 443);
    later.v4_frag_offset = 0x1000;
    c.expect(&later, Outcome::Intune, XDP_PASS, Some("198.51.100.0/24"));
    assert_eq!(
        c.run(&later.bytes()).port_key,
        NO_PORT,
        "no port for a later fragment"
    );
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

fn enforce_with(direction: Direction, resolvers: &[&str]) -> Policy {
    Policy {
        mode: Mode::Enforce,
        direction,
        dns_resolvers: resolvers.iter().map(|r| ip(r)).collect(),
        ..Policy::default()
    }
}

impl Case {
    fn infrastructure(&self, frame: &Frame) {
        self.expect(frame, Outcome::Infrastructure, XDP_PASS, None);
    }

    fn dropped(&self, frame: &Frame) {
        self.expect(frame, Outcome::Dropped, XDP_DROP, None);
    }

    fn local(&self, frame: &Frame) {
        self.expect(frame, Outcome::Local, XDP_PASS, None);
    }
}

/// A frame with `n` bytes of payload.
fn padded(mut f: Frame, n: usize) -> Frame {
    f.payload = n;
    f
}

#[test]
fn dns_queries_go_to_any_resolver_when_none_are_set_and_answers_come_only_from_outside() {
    require_root!();
    let c = Case::enforce();
    c.infrastructure(&Frame::udp(DEV, "192.0.2.53", 40000, 53));
    c.infrastructure(&Frame::tcp(DEV, "192.0.2.53", 40000, 53));
    c.infrastructure(&Frame::udp(DEV6, "2001:db8::99", 40000, 53));
    // `nc -p 53 anyhost 4444`: a device sending from port 53 on the side where destinations
    // are matched is no answer but a tunnel.
    c.dropped(&Frame::udp(DEV, "192.0.2.99", 53, 4444));
    c.dropped(&Frame::tcp(DEV, "192.0.2.99", 53, 4444));
    c.dropped(&Frame::tcp(DEV6, "2001:db8::99", 53, 4444));
    // Where sources are matched (an uplink), answers from any resolver come in.
    let uplink = Case::new(enforce_with(Direction::Src, &[]), false);
    uplink.infrastructure(&Frame::udp("192.0.2.53", DEV, 53, 40000));
    uplink.infrastructure(&Frame::tcp("2001:db8::53", DEV6, 53, 40000));
    // A query arriving there is no device's: dropped.
    uplink.dropped(&Frame::udp(DEV, "192.0.2.53", 40000, 53));
}

#[test]
fn dns_goes_only_to_configured_resolvers_and_answers_only_from_them() {
    require_root!();
    let c = Case::new(
        enforce_with(Direction::Both, &["192.0.2.53", "2001:db8::53"]),
        false,
    );
    c.infrastructure(&Frame::udp(DEV, "192.0.2.53", 40000, 53));
    c.infrastructure(&Frame::tcp(DEV, "192.0.2.53", 40000, 53));
    c.infrastructure(&Frame::udp(DEV6, "2001:db8::53", 40000, 53));
    c.infrastructure(&Frame::udp("192.0.2.53", DEV, 53, 40000));
    c.infrastructure(&Frame::tcp("2001:db8::53", DEV6, 53, 40000));
    c.dropped(&Frame::udp(DEV, "192.0.2.54", 40000, 53));
    c.dropped(&Frame::udp(DEV6, "2001:db8::54", 40000, 53));
    c.dropped(&Frame::udp("192.0.2.54", DEV, 53, 40000));
    c.dropped(&Frame::udp(DEV, "192.0.2.99", 53, 4444));
    // Where only destinations are matched, even the resolver's address as a source is a
    // device's spoof: answers do not come from the devices' side.
    let devices = Case::new(enforce_with(Direction::Dst, &["192.0.2.53"]), false);
    devices.infrastructure(&Frame::udp(DEV, "192.0.2.53", 40000, 53));
    devices.dropped(&Frame::udp("192.0.2.53", DEV, 53, 40000));
}

#[test]
fn dhcp_goes_only_to_the_broadcast_the_servers_group_or_configured_servers() {
    require_root!();
    for resolvers in [&[][..], &["192.0.2.53"][..]] {
        let c = Case::new(enforce_with(Direction::Dst, resolvers), false);
        c.infrastructure(&Frame::udp("0.0.0.0", "255.255.255.255", 68, 67));
        c.infrastructure(&Frame::udp("fe80::1", "ff02::1:2", 546, 547));
        // A VPN client bound to port 68 (or 546) gets no tunnel to anywhere.
        c.dropped(&Frame::udp(DEV, "192.0.2.99", 68, 67));
        c.dropped(&Frame::udp(DEV6, "2001:db8::99", 546, 547));
        c.dropped(&Frame::udp(DEV, "192.0.2.99", 67, 68));
        // ff05::1:3 (All_DHCP_Servers) is site scope: it leaves the link, so it needs a
        // configured server.
        c.dropped(&Frame::udp("fe80::1", "ff05::1:3", 546, 547));
    }
    let c = Case::with_local(
        Policy {
            dhcp_servers: vec![ip("192.0.2.67"), ip("2001:db8::547")],
            allow_local: false,
            ..enforce_with(Direction::Dst, &[])
        },
        false,
        &["192.0.2.1/24"],
    );
    c.infrastructure(&Frame::udp(DEV, "192.0.2.67", 68, 67));
    c.infrastructure(&Frame::udp(DEV6, "2001:db8::547", 546, 547));
    c.dropped(&Frame::udp(DEV, "192.0.2.68", 68, 67));
    // The subnet's broadcast is DHCP's even with local traffic filtered; nothing else is.
    c.infrastructure(&Frame::udp(DEV, "192.0.2.255", 68, 67));
    c.dropped(&Frame::udp(DEV, "192.0.2.255", 40000, 9));
}

#[test]
fn icmp_errors_pass_only_about_allowed_traffic() {
    require_root!();
    // Where destinations are matched: an error a device sends to an Intune address.
    let c = Case::enforce();
    c.infrastructure(&Frame::icmp(DEV, "198.51.100.7", 3));
    c.infrastructure(&Frame::icmp(DEV, "203.0.113.9", 11));
    c.infrastructure(&Frame::icmp(DEV6, "2001:db8:100::7", 1));
    c.dropped(&Frame::icmp(DEV, "192.0.2.99", 3));
    c.dropped(&Frame::icmp(DEV6, "2001:db8::99", 2));
    // One byte over the largest genuine error: a payload in disguise.
    let at_limit = 576 - 20 - 8;
    c.infrastructure(&padded(Frame::icmp(DEV, "198.51.100.7", 3), at_limit));
    c.dropped(&padded(Frame::icmp(DEV, "198.51.100.7", 3), at_limit + 1));
    let at_limit6 = 1280 - 40 - 8;
    c.infrastructure(&padded(Frame::icmp(DEV6, "2001:db8:100::7", 4), at_limit6));
    c.dropped(&padded(
        Frame::icmp(DEV6, "2001:db8:100::7", 4),
        at_limit6 + 1,
    ));
    // Not an error: a ping to Intune has no port a rule allows.
    c.dropped(&Frame::icmp(DEV, "198.51.100.7", 8));
    // Where sources are matched: a router's error back to the device about its packet to
    // an allowed Intune address and port.
    let uplink = Case::new(enforce_with(Direction::Src, &[]), false);
    let to_intune = Frame::tcp(DEV, "198.51.100.7", 40000, 443);
    uplink.infrastructure(&Frame::icmp_error("192.0.2.1", DEV, 3, to_intune.clone()));
    uplink.infrastructure(&Frame::icmp_error(
        "192.0.2.1",
        DEV,
        11,
        Frame::udp(DEV, "198.51.100.130", 40000, 123),
    ));
    uplink.infrastructure(&Frame::icmp_error(
        "2001:db8::1",
        DEV6,
        2,
        Frame::tcp(DEV6, "2001:db8:100::7", 40000, 443),
    ));
    // A port the prefix does not allow, a quote of someone else's packet, a quote too
    // short for ports, no quote at all: dropped.
    uplink.dropped(&Frame::icmp_error(
        "192.0.2.1",
        DEV,
        3,
        Frame::tcp(DEV, "198.51.100.7", 40000, 22),
    ));
    uplink.dropped(&Frame::icmp_error(
        "192.0.2.1",
        "192.0.2.77",
        3,
        to_intune.clone(),
    ));
    let mut short = Frame::icmp_error("192.0.2.1", DEV, 3, to_intune.clone());
    if let L4::IcmpError { quote, .. } = &mut short.l4 {
        *quote = 20 + 3;
    }
    uplink.dropped(&short);
    uplink.dropped(&Frame::icmp("192.0.2.1", DEV, 3));
    uplink.dropped(&Frame::icmp_error(
        "2001:db8::1",
        DEV6,
        1,
        Frame::tcp(DEV6, "2001:db8::99", 40000, 443),
    ));
    // Too big, even about an allowed packet.
    uplink.dropped(&padded(
        Frame::icmp_error("192.0.2.1", DEV, 3, to_intune),
        576,
    ));
}

#[test]
fn neighbour_discovery_and_mld_pass_only_within_the_link() {
    require_root!();
    let c = Case::new(
        Policy {
            allow_local: false,
            ..enforce_with(Direction::Dst, &[])
        },
        false,
    );
    c.infrastructure(&Frame::icmp("fe80::10", "ff02::1:ff00:1", 135));
    c.infrastructure(&Frame::icmp(DEV6, "fe80::1", 136));
    c.infrastructure(&Frame::icmp("fe80::10", "ff02::2", 133));
    c.infrastructure(&Frame::icmp("::", "ff02::16", 143));
    c.infrastructure(&Frame::icmp("fe80::10", "ff02::16", 131));
    c.dropped(&Frame::icmp(DEV6, "2001:db8::1", 135));
    c.dropped(&Frame::icmp("fe80::10", "2001:db8::99", 143));
    c.dropped(&Frame::icmp("fe80::10", "ff05::2", 130));
}

#[test]
fn the_gateways_own_traffic_and_link_local_groups_pass_as_local() {
    require_root!();
    let local = ["192.0.2.1/24", "2001:db8:ffff::1/64", "198.51.100.250/32"];
    let c = Case::with_local(enforce_with(Direction::Dst, &["192.0.2.53"]), false, &local);
    c.local(&Frame::tcp(DEV, "192.0.2.1", 40000, 22));
    c.local(&Frame::udp(DEV, "192.0.2.1", 40000, 161));
    c.local(&Frame::tcp(DEV6, "2001:db8:ffff::1", 40000, 22));
    // The gateway's own resolver, not one of the configured ones: its business.
    c.local(&Frame::udp(DEV, "192.0.2.1", 40000, 53));
    // A /32 inside an Intune prefix: Intune still comes first where its ports match.
    c.expect(
        &Frame::tcp(DEV, "198.51.100.250", 40000, 443),
        Outcome::Intune,
        XDP_PASS,
        Some("198.51.100.0/24"),
    );
    c.local(&Frame::tcp(DEV, "198.51.100.250", 40000, 22));
    // VRRP (keepalived), OSPF, the limited and the subnet broadcast.
    c.local(&Frame::new(
        ip("192.0.2.2"),
        ip("224.0.0.18"),
        L4::Other(112),
    ));
    c.local(&Frame::new(ip("fe80::2"), ip("ff02::5"), L4::Other(89)));
    c.local(&Frame::udp(DEV, "255.255.255.255", 40000, 9));
    c.local(&Frame::udp(DEV, "192.0.2.255", 40000, 9));
    // Groups that leave the link, the gateway's neighbours, another subnet's broadcast.
    c.dropped(&Frame::udp(DEV, "224.0.1.1", 40000, 123));
    c.dropped(&Frame::new(ip("fe80::2"), ip("ff05::2"), L4::Other(89)));
    c.dropped(&Frame::tcp(DEV, "192.0.2.2", 40000, 22));
    c.dropped(&Frame::udp(DEV, "192.0.3.255", 40000, 9));
    // Monitor mode counts it as local too.
    let m = Case::with_local(Policy::default(), false, &local);
    m.local(&Frame::tcp(DEV, "192.0.2.1", 40000, 22));
    // Off: the gateway's traffic is filtered like any other.
    let off = Case::with_local(
        Policy {
            allow_local: false,
            ..enforce_with(Direction::Dst, &[])
        },
        false,
        &local,
    );
    off.dropped(&Frame::tcp(DEV, "192.0.2.1", 40000, 22));
    off.dropped(&Frame::new(
        ip("192.0.2.2"),
        ip("224.0.0.18"),
        L4::Other(112),
    ));
    off.dropped(&Frame::udp(DEV, "255.255.255.255", 40000, 9));
}

#[test]
fn policy_allow_entries_pass_their_services_as_local() {
    require_root!();
    let allow = vec![
        AllowRule::new(
            "192.0.2.160/27".parse().unwrap(),
            AllowProtocol::Tcp,
            vec![(22, 22)],
        )
        .unwrap(),
        AllowRule::new(
            "192.0.2.160/27".parse().unwrap(),
            AllowProtocol::Udp,
            vec![(161, 162)],
        )
        .unwrap(),
        AllowRule::new(
            "2001:db8:aaaa::/48".parse().unwrap(),
            AllowProtocol::Any,
            vec![],
        )
        .unwrap(),
    ];
    let c = Case::new(
        Policy {
            allow,
            allow_local: false,
            ..enforce_with(Direction::Dst, &[])
        },
        false,
    );
    c.local(&Frame::tcp(DEV, "192.0.2.170", 40000, 22));
    c.local(&Frame::udp(DEV, "192.0.2.170", 40000, 161));
    c.local(&Frame::udp(DEV, "192.0.2.191", 40000, 162));
    // The service's answers, from its port.
    c.local(&Frame::tcp("192.0.2.170", DEV, 22, 40000));
    c.local(&Frame::icmp(DEV6, "2001:db8:aaaa::1", 128));
    c.local(&Frame::tcp(DEV6, "2001:db8:aaaa::1", 40000, 8443));
    // Another port, another protocol, outside the prefix, or a device choosing the
    // service's port as its own source: dropped.
    c.dropped(&Frame::tcp(DEV, "192.0.2.170", 40000, 23));
    c.dropped(&Frame::udp(DEV, "192.0.2.170", 40000, 22));
    c.dropped(&Frame::tcp(DEV, "192.0.2.192", 40000, 22));
    c.dropped(&Frame::tcp(DEV, "192.0.2.170", 22, 4444));
    c.dropped(&Frame::icmp(DEV, "192.0.2.170", 8));
}

#[test]
fn what_leaves_the_lists_drains_for_its_connections_on_its_old_ports() {
    require_root!();
    let mut c = Case::fresh(intune_tests::enforce(), false, &[]);
    c.dp.set_drain(Some(std::time::Duration::from_secs(3600)))
        .expect("draining on");
    // Set 903 (203.0.113.0/24: TCP 5223, UDP 3478-3481) leaves; 198.51.100.64/26, inside a
    // listed prefix, becomes an exclusion.
    let kept: Vec<_> = test_sets().into_iter().filter(|s| s.id != 903).collect();
    let next = RuleSet::build(
        &kept,
        &intune_ctl::ruleset::rules::RuleSetOptions {
            exclude: vec!["198.51.100.64/26".parse().unwrap()],
            ..Default::default()
        },
        Some(&c.rules),
    )
    .expect("rules");
    c.dp.apply(next.clone()).expect("apply");
    c.rules = next;
    let drained: Vec<String> =
        c.dp.draining()
            .expect("draining")
            .iter()
            .map(|d| d.prefix.to_string())
            .collect();
    assert_eq!(drained, ["203.0.113.0/24"], "only what left drains");
    // Its old ports pass, credited to no rule (the rule is gone); others do not.
    c.expect(
        &Frame::tcp(DEV, "203.0.113.9", 40000, 5223),
        Outcome::Intune,
        XDP_PASS,
        None,
    );
    c.expect(
        &Frame::udp(DEV, "203.0.113.9", 40000, 3480),
        Outcome::Intune,
        XDP_PASS,
        None,
    );
    c.dropped(&Frame::tcp(DEV, "203.0.113.9", 40000, 443));
    c.dropped(&Frame::udp(DEV, "203.0.113.9", 40000, 3482));
    // An exclusion wins at once, and what is listed decides as listed.
    c.dropped(&Frame::tcp(DEV, "198.51.100.70", 40000, 443));
    c.expect(
        &Frame::tcp(DEV, "198.51.100.7", 40000, 443),
        Outcome::Intune,
        XDP_PASS,
        Some("198.51.100.0/24"),
    );
    // Listed again: it stops draining, its rule decides.
    let back = RuleSet::build(
        &test_sets(),
        &intune_ctl::ruleset::rules::RuleSetOptions::default(),
        Some(&c.rules),
    )
    .expect("rules");
    c.dp.apply(back.clone()).expect("apply");
    c.rules = back;
    assert!(c.dp.draining().expect("draining").is_empty());
    c.expect(
        &Frame::tcp(DEV, "203.0.113.9", 40000, 5223),
        Outcome::Intune,
        XDP_PASS,
        Some("203.0.113.0/24"),
    );
}

#[test]
fn enforce_passes_link_layer_and_drops_other_protocols() {
    require_root!();
    let c = Case::enforce();
    c.expect_bytes(&arp(), Outcome::NotIp, XDP_PASS, None);
    // ICMP with no room for its header is malformed, not infrastructure.
    let mut short_icmp = Frame::icmp(DEV, "198.51.100.7", 3).bytes();
    short_icmp.truncate(14 + 20 + 2);
    short_icmp[16..18].copy_from_slice(&22u16.to_be_bytes());
    c.expect_bytes(&short_icmp, Outcome::Malformed, XDP_DROP, None);
    // Another protocol with no ports (GRE) is neither, even to an Intune address.
    c.dropped(&Frame::new(ip(DEV), ip("198.51.100.7"), L4::Other(47)));
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
    let c = Case::of(dp, rules, policy, Vec::new());
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
    // Azure Front Door, since December 2025 (set 163, TCP 80 and 443), IPv4 and IPv6.
    c.expect(
        &Frame::tcp(DEV, "13.107.228.200", 40000, 443),
        Outcome::Intune,
        XDP_PASS,
        Some("13.107.228.0/23"),
    );
    c.expect(
        &Frame::tcp(DEV6, "2620:1ec:4b::1", 40000, 80),
        Outcome::Intune,
        XDP_PASS,
        Some("2620:1ec:4a::/47"),
    );
    c.dropped(&Frame::tcp(DEV6, "2620:1ec:4c::1", 40000, 443));
    // A prefix the 2026-03 article added, and Apple's push service on 5223.
    c.expect(
        &Frame::tcp(DEV, "74.242.35.9", 40000, 443),
        Outcome::Intune,
        XDP_PASS,
        Some("74.242.35.0/25"),
    );
    c.expect(
        &Frame::tcp(DEV, "17.57.144.10", 40000, 5223),
        Outcome::Intune,
        XDP_PASS,
        Some("17.0.0.0/8"),
    );
    c.dropped(&Frame::tcp(DEV, "17.57.144.10", 40000, 22));
}

/// Unmatched frames by the port sent to: its own slot for a port the list names, the other
/// ports together; nothing for frames a rule matched.
#[test]
fn unmatched_frames_count_by_the_port_they_were_sent_to() {
    require_root!();
    let unmatched = |c: &Case, proto: u8, port: u16| -> u64 {
        let counts =
            c.dp.dropped_port_counters()
                .expect("unmatched port counters");
        counts
            .iter()
            .find(|p| p.port == Some((proto, port)))
            .map_or(0, |p| p.counter.packets)
    };
    let other = |c: &Case| {
        c.dp.dropped_port_counters().expect("counters")[0]
            .counter
            .packets
    };
    // Counters read whole: cases of this test's own.
    let c = &Case::fresh(intune_tests::enforce(), false, &[]);
    // 192.0.2.99 is in no set: dropped on 443 (a listed port) and on 8080 (not listed).
    c.expect(
        &Frame::tcp(DEV, "192.0.2.99", 40000, 443),
        Outcome::Dropped,
        XDP_DROP,
        None,
    );
    c.expect(
        &Frame::tcp(DEV, "192.0.2.99", 40000, 443),
        Outcome::Dropped,
        XDP_DROP,
        None,
    );
    c.expect(
        &Frame::udp(DEV, "192.0.2.99", 40000, 123),
        Outcome::Dropped,
        XDP_DROP,
        None,
    );
    c.expect(
        &Frame::tcp(DEV, "192.0.2.99", 40000, 8080),
        Outcome::Dropped,
        XDP_DROP,
        None,
    );
    // A listed address on a port its prefix does not allow: dropped, counted on that port.
    c.expect(
        &Frame::tcp(DEV, "198.51.100.7", 40000, 80),
        Outcome::Dropped,
        XDP_DROP,
        None,
    );
    // Matched: counted as Intune traffic, not here.
    c.expect(
        &Frame::tcp(DEV, "198.51.100.7", 40000, 443),
        Outcome::Intune,
        XDP_PASS,
        Some("198.51.100.0/24"),
    );
    assert_eq!(unmatched(c, IPPROTO_TCP, 443), 2);
    assert_eq!(unmatched(c, IPPROTO_UDP, 123), 1);
    assert_eq!(unmatched(c, IPPROTO_TCP, 80), 1);
    assert_eq!(other(c), 1, "8080 has no slot of its own");

    // Monitor mode counts what enforce mode would drop.
    let m = &Case::fresh(Policy::default(), false, &[]);
    let f = Frame::tcp(DEV, "192.0.2.99", 40000, 443);
    m.expect(&f, Outcome::UnmatchedPassed, XDP_PASS, None);
    assert_eq!(unmatched(m, IPPROTO_TCP, 443), 1);

    // Matching sources: the answer's source port is the one counted.
    let s = &Case::fresh(enforce_with(Direction::Src, &[]), false, &[]);
    let answer = Frame::tcp("192.0.2.99", DEV, 443, 40000);
    s.expect(&answer, Outcome::Dropped, XDP_DROP, None);
    assert_eq!(unmatched(s, IPPROTO_TCP, 443), 1);
    assert_eq!(other(s), 0, "not the device's port 40000");
}
