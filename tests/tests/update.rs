//! Moving the maps from one rule set to the next: no gap for addresses allowed before and after,
//! counters that carry on, removed rules reported once. Needs root.

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use aya::programs::{TestRun, TestRunOptions, Xdp};
use aya_obj::programs::XdpAttachType;
use intune_common::outcome::{XDP_DROP, XDP_PASS};
use intune_ctl::{
    datapath::{Capacity, Datapath, Lookup, bpffs},
    ruleset::rules::{RuleSet, RuleSetOptions, Target},
    sources::endpoints::{EndpointSet, Source, parse_endpoint_sets},
};
use intune_tests::{TEST_SETS, enforce, frames::Frame, load, load_with, require_root};

/// TEST_SETS changed where the stream's addresses live: set 901 gains TCP 8443 (the /24's and
/// the nested /28's port sets change), a /27 and a /30 arrive inside the /24 (new table chunks),
/// set 903 leaves.
const CHANGED: &str = r#"[
  {"id": 901, "serviceArea": "MEM", "category": "Default", "required": true,
   "ips": ["198.51.100.0/24", "2001:db8:100::/48"], "tcpPorts": "443,8443"},
  {"id": 902, "serviceArea": "MEM", "category": "Default", "required": true,
   "ips": ["198.51.100.128/28", "2001:db8:100:1::/64"], "tcpPorts": "80", "udpPorts": "123"},
  {"id": 905, "serviceArea": "MEM", "category": "Default", "required": true,
   "ips": ["198.51.100.32/27", "198.51.100.4/30"], "tcpPorts": "5223"}
]"#;

fn sets(json: &str) -> Vec<EndpointSet> {
    parse_endpoint_sets(json, Source::File).expect("sets parse")
}

fn build(json: &str, previous: Option<&RuleSet>) -> RuleSet {
    RuleSet::build(&sets(json), &RuleSetOptions::default(), previous).expect("rule set builds")
}

fn target(p: &str) -> Target {
    Target::Prefix(p.parse().expect("prefix"))
}

struct Pin(PathBuf);

impl Drop for Pin {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn updates_leave_no_gap_keep_counters_and_report_removed_rules() {
    require_root!();
    let policy = enforce();
    let first = build(TEST_SETS, None);
    let mut dp = load(&first, &policy);

    // Hits before the update: two on the /24, one on 203.0.113.0/24 (which leaves).
    let dev = "192.0.2.10";
    for f in [
        Frame::tcp(dev, "198.51.100.7", 40000, 443),
        Frame::tcp(dev, "198.51.100.9", 40000, 443),
        Frame::tcp(dev, "203.0.113.9", 40000, 5223),
    ] {
        assert_eq!(dp.run_frame(&f.bytes()).expect("run").verdict, XDP_PASS);
    }
    let index_24 = first
        .rule_by_target(&target("198.51.100.0/24"))
        .expect("/24")
        .index;

    // A second handle on the same program streams frames while the maps change.
    bpffs::ensure_mounted(std::path::Path::new("/sys/fs/bpf")).expect("bpffs");
    let pin = Pin(PathBuf::from(format!(
        "/sys/fs/bpf/intune-update-test-{}",
        std::process::id()
    )));
    dp.pin_program(&pin.0).expect("pin");
    let stream = Xdp::from_pin(&pin.0, XdpAttachType::Interface).expect("program from pin");
    // Allowed before and after: inside the /24 (.200 under no nested prefix of either set, so
    // its hits land on the /24 whichever set is in force), inside the nested /28, IPv6.
    let frames: Vec<Vec<u8>> = [
        Frame::tcp(dev, "198.51.100.200", 40000, 443),
        Frame::tcp(dev, "198.51.100.7", 40000, 443),
        Frame::tcp(dev, "198.51.100.36", 40000, 443),
        Frame::tcp(dev, "198.51.100.130", 40000, 80),
        Frame::tcp(dev, "198.51.100.130", 40000, 443),
        Frame::tcp("2001:db8:ffff::10", "2001:db8:100::9", 40000, 443),
    ]
    .iter()
    .map(Frame::bytes)
    .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let (runs, misses) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let streamer = {
        let (stop, runs, misses) = (stop.clone(), runs.clone(), misses.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for f in &frames {
                    let r = stream
                        .test_run(TestRunOptions {
                            data_in: Some(f),
                            ..TestRunOptions::new()
                        })
                        .expect("test run");
                    runs.fetch_add(1, Ordering::Relaxed);
                    if r.return_value != XDP_PASS {
                        misses.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };

    // Back and forth while the stream runs: at least 40 times, and until the stream has run
    // a thousand frames (updates are quick), ending on TEST_SETS.
    let mut reports = Vec::new();
    let mut round = 0usize;
    while round < 40 || runs.load(Ordering::Relaxed) <= 1000 || !round.is_multiple_of(2) {
        assert!(round < 1_000_000, "the stream never ran");
        let json = if round.is_multiple_of(2) {
            CHANGED
        } else {
            TEST_SETS
        };
        let next = build(json, dp.installed());
        reports.push(dp.apply(next).expect("apply"));
        round += 1;
    }
    let during = runs.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    streamer.join().expect("streamer");
    assert!(
        during > 1000,
        "the stream ran only {during} frames during the updates"
    );
    assert_eq!(
        misses.load(Ordering::Relaxed),
        0,
        "frames allowed before and after were dropped during an update"
    );

    // The last round installed TEST_SETS again. The /24 kept its index through every round.
    let now = dp.installed().expect("installed");
    assert_eq!(
        now.rule_by_target(&target("198.51.100.0/24"))
            .unwrap()
            .index,
        index_24
    );
    // The first update removed 203.0.113.0/24 and reported its one hit.
    let removed = &reports[0].removed;
    let gone: Vec<_> = removed
        .iter()
        .map(|(t, c)| (t.to_string(), c.packets))
        .collect();
    assert!(
        gone.contains(&("203.0.113.0/24".to_string(), 1)),
        "{gone:?}"
    );
    assert!(reports[0].added.contains(&target("198.51.100.32/27")));
    // What the summary says of it, by hand: set 905's /27 and /30 came, 903's /24 left; the
    // /24 and /48 gained 8443, and so did what lies under them (the /28, the /64).
    let first = &reports[0];
    assert_eq!(
        (first.added.len(), first.removed.len(), first.changed),
        (2, 1, 4)
    );
    assert_eq!(
        first.per_set,
        std::collections::BTreeMap::from([(903, (0, 1)), (905, (2, 0))])
    );
    assert_eq!(
        intune_ctl::ruleset::changes::describe(&intune_ctl::ruleset::changes::of_update(
            first, "test"
        )),
        "+2 / -1 prefixes, 4 changed (set 903 +0 -1, set 905 +2 -0)"
    );
    // And of the way back: the /24 returned, the /27 and /30 left.
    let back = &reports[1];
    assert_eq!(
        (back.added.len(), back.removed.len(), back.changed),
        (1, 2, 4)
    );
    assert_eq!(
        back.per_set,
        std::collections::BTreeMap::from([(903, (1, 0)), (905, (0, 2))])
    );
    // Counters of the /24 carried on: the two hits before, plus the stream's.
    let c = dp.rule_counters_of([index_24]).expect("counters")[0];
    assert!(c.packets > 2, "{c:?}");
    // The rule set in force decides: 203.0.113.0/24 is back (a fresh index, zero hits),
    // 8443 is gone again.
    let back = now.rule_by_target(&target("203.0.113.0/24")).unwrap().index;
    assert_eq!(dp.rule_counters_of([back]).unwrap()[0].packets, 0);
    assert_eq!(
        dp.run_frame(&Frame::tcp(dev, "203.0.113.9", 40000, 5223).bytes())
            .unwrap()
            .verdict,
        XDP_PASS
    );
    assert_eq!(
        dp.run_frame(&Frame::tcp(dev, "198.51.100.7", 40000, 8443).bytes())
            .unwrap()
            .verdict,
        XDP_DROP
    );
    let changed = build(CHANGED, dp.installed());
    dp.apply(changed).expect("apply");
    assert_eq!(
        dp.run_frame(&Frame::tcp(dev, "198.51.100.7", 40000, 8443).bytes())
            .unwrap()
            .verdict,
        XDP_PASS
    );
    assert_eq!(
        dp.run_frame(&Frame::tcp(dev, "198.51.100.5", 40000, 5223).bytes())
            .unwrap()
            .verdict,
        XDP_PASS
    );
    assert_eq!(
        dp.run_frame(&Frame::tcp(dev, "203.0.113.9", 40000, 5223).bytes())
            .unwrap()
            .verdict,
        XDP_DROP
    );
}

/// A port set's id is reused with other ports two updates later: a set is written only when
/// its id is new to the rule set, so an id that comes back must be written whole again, its
/// old ports gone. Worked by hand: A's {TCP 443} is id 0; B's {TCP 8443} gets id 1 (0 is A's);
/// C's {TCP 5223, UDP 443} gets id 0 again (B holds only 1).
#[test]
fn a_reused_port_set_id_allows_only_its_new_ports() {
    require_root!();
    let policy = enforce();
    let with_ports = |ports: &str| {
        format!(
            r#"[{{"id": 901, "serviceArea": "MEM", "category": "Default", "required": true, "ips": ["198.51.100.0/24", "2001:db8:100::/48"], {ports}}}]"#
        )
    };
    let a = build(&with_ports(r#""tcpPorts": "443""#), None);
    let mut dp = load(&a, &policy);
    let b = build(&with_ports(r#""tcpPorts": "8443""#), dp.installed());
    dp.apply(b).expect("apply B");
    let c = build(
        &with_ports(r#""tcpPorts": "5223", "udpPorts": "443""#),
        dp.installed(),
    );
    let ids = |r: &RuleSet| r.port_sets.keys().copied().collect::<Vec<_>>();
    assert_eq!(ids(&c), [0], "C must reuse A's id for other ports");
    dp.apply(c).expect("apply C");

    let dev4 = "192.0.2.10";
    let dev6 = "2001:db8:ffff::10";
    for (dev, dst) in [(dev4, "198.51.100.7"), (dev6, "2001:db8:100::7")] {
        for (frame, want, why) in [
            (
                Frame::tcp(dev, dst, 40000, 443),
                XDP_DROP,
                "A's port, which id 0 allowed before",
            ),
            (Frame::tcp(dev, dst, 40000, 8443), XDP_DROP, "B's port"),
            (Frame::tcp(dev, dst, 40000, 5223), XDP_PASS, "C's TCP port"),
            (Frame::udp(dev, dst, 40000, 443), XDP_PASS, "C's UDP port"),
            (
                Frame::udp(dev, dst, 40000, 5223),
                XDP_DROP,
                "C's TCP port over UDP",
            ),
        ] {
            let verdict = dp.run_frame(&frame.bytes()).expect("run").verdict;
            assert_eq!(verdict, want, "{dst} {why}");
        }
    }
}

fn one_set<S: AsRef<str>>(ips: &[S]) -> String {
    let ips: Vec<String> = ips.iter().map(|p| format!("\"{}\"", p.as_ref())).collect();
    format!(
        r#"[{{"id": 901, "serviceArea": "MEM", "category": "Default", "required": true, "ips": [{}], "tcpPorts": "443"}}]"#,
        ips.join(", ")
    )
}

/// A table with room for two singles: a family moves to its trie when a third lone prefix
/// comes and back when it goes. The trie is left alone while the table is in use, so when the
/// family moves to it again it must be written anew: a prefix that left meanwhile must not be
/// found in it, and one that came meanwhile must.
#[test]
fn a_family_moves_between_its_table_and_its_trie_and_the_trie_holds_only_the_rules_in_force() {
    require_root!();
    let policy = enforce();
    let capacity = Capacity {
        v4_table_chunks: 1,
        v4_table_singles: 2,
        ..Capacity::for_prefixes(64)
    };
    let dev = "10.0.0.2";
    let verdict = |dp: &Datapath, dst: &str| {
        dp.run_frame(&Frame::tcp(dev, dst, 40000, 443).bytes())
            .expect("run")
            .verdict
    };

    // Two lone /24s: two singles, the table.
    let two = build(&one_set(&["198.51.100.0/24", "203.0.113.0/24"]), None);
    let mut dp = load_with(&two, &policy, capacity);
    assert_eq!(
        (dp.v4_lookup(), dp.v6_lookup()),
        (Lookup::Table, Lookup::Table)
    );
    assert_eq!(verdict(&dp, "203.0.113.9"), XDP_PASS);

    // Three: the trie, holding exactly these (203.0.113.0/24 left).
    let three = build(
        &one_set(&["198.51.100.0/24", "192.0.2.128/25", "100.64.0.0/24"]),
        dp.installed(),
    );
    dp.apply(three).expect("apply");
    assert_eq!(dp.v4_lookup(), Lookup::Trie);
    for (dst, want) in [
        ("198.51.100.7", XDP_PASS),
        ("192.0.2.200", XDP_PASS),
        ("100.64.0.1", XDP_PASS),
        ("203.0.113.9", XDP_DROP),
        ("192.0.2.100", XDP_DROP),
    ] {
        assert_eq!(verdict(&dp, dst), want, "on the trie: {dst}");
    }

    // Two again: the table; 100.64.0.0/24 leaves while the trie is not kept.
    let two_again = build(
        &one_set(&["198.51.100.0/24", "203.0.113.0/24"]),
        dp.installed(),
    );
    dp.apply(two_again).expect("apply");
    assert_eq!(dp.v4_lookup(), Lookup::Table);
    assert_eq!(verdict(&dp, "100.64.0.1"), XDP_DROP);
    assert_eq!(verdict(&dp, "203.0.113.9"), XDP_PASS);

    // Three again: the trie, written anew. Kept up to date incrementally from where it was,
    // it would still hold 100.64.0.0/24 and lack 203.0.113.0/24.
    let three_again = build(
        &one_set(&["198.51.100.0/24", "203.0.113.0/24", "192.0.2.128/25"]),
        dp.installed(),
    );
    dp.apply(three_again).expect("apply");
    assert_eq!(dp.v4_lookup(), Lookup::Trie);
    for (dst, want) in [
        ("198.51.100.7", XDP_PASS),
        ("203.0.113.9", XDP_PASS),
        ("192.0.2.200", XDP_PASS),
        ("100.64.0.1", XDP_DROP),
    ] {
        assert_eq!(verdict(&dp, dst), want, "on the trie again: {dst}");
    }
    // And while it is in use, an update changes it in place: one leaves, one comes.
    let moved = build(
        &one_set(&["198.51.100.0/24", "203.0.113.0/24", "100.64.0.0/24"]),
        dp.installed(),
    );
    dp.apply(moved).expect("apply");
    assert_eq!(dp.v4_lookup(), Lookup::Trie);
    assert_eq!(verdict(&dp, "192.0.2.200"), XDP_DROP);
    assert_eq!(verdict(&dp, "100.64.0.1"), XDP_PASS);
    assert_eq!(
        dp.v6_lookup(),
        Lookup::Table,
        "IPv6 stayed on its table throughout"
    );
}

/// As above for IPv6: once the family has moved to its trie, a prefix that left in that
/// update is not found in the table it left, by the whole way or the fast path.
#[test]
fn ipv6_on_its_trie_finds_nothing_in_the_table_it_left() {
    require_root!();
    let capacity = Capacity {
        v6_table_chunks: 1,
        v6_table_singles: 2,
        ..Capacity::for_prefixes(64)
    };
    let verdict = |dp: &Datapath, dst: &str| {
        dp.run_frame(&Frame::tcp("2001:db8:ffff::2", dst, 40000, 443).bytes())
            .expect("run")
            .verdict
    };
    // Lone /48s under different top 16 bits: a single each.
    let two = build(&one_set(&["2001:db8:1::/48", "3fff:0:1::/48"]), None);
    let mut dp = load_with(&two, &enforce(), capacity);
    assert_eq!(dp.v6_lookup(), Lookup::Table);
    assert_eq!(verdict(&dp, "3fff:0:1::9"), XDP_PASS);

    let three = build(
        &one_set(&["2001:db8:1::/48", "fc00:1::/48", "fd00:1::/48"]),
        dp.installed(),
    );
    dp.apply(three).expect("apply");
    assert_eq!(dp.v6_lookup(), Lookup::Trie);
    for (dst, want) in [
        ("2001:db8:1::9", XDP_PASS),
        ("fc00:1::9", XDP_PASS),
        ("fd00:1::9", XDP_PASS),
        ("3fff:0:1::9", XDP_DROP),
    ] {
        assert_eq!(verdict(&dp, dst), want, "on the trie: {dst}");
    }
}

/// `n` host prefixes in one set, 10.a.b.1/32 for the i = 256a + b below `n`.
fn hosts(n: u32) -> RuleSet {
    let hosts: Vec<String> = (0..n)
        .map(|i| format!("10.{}.{}.1/32", i / 256, i % 256))
        .collect();
    build(&one_set(&hosts), None)
}

/// The rule index of `host`'s /32.
fn host_index(rules: &RuleSet, host: &str) -> u32 {
    rules
        .rule_by_target(&target(&format!("{host}/32")))
        .expect("rule")
        .index
}

/// Every rule's counters are read in batches of thousands (`stats`, metrics), an update's few
/// removed ones one by one: both give the hits each rule had, across the batches' seams.
#[test]
fn counters_read_in_batches_agree_with_one_by_one_and_with_the_hits_sent() {
    require_root!();
    let policy = enforce();
    // 10,000 host prefixes: rule indices 0..10,000, so a whole read takes three batches.
    let rules = hosts(10_000);
    let dp = load_with(&rules, &policy, Capacity::for_prefixes(16_384));
    let index = |host: &str| host_index(&rules, host);
    // Hits by hand: a rule at each batch's edges gets a count of its own.
    let sent = [
        ("10.0.0.1", 1),
        ("10.15.255.1", 2),
        ("10.16.0.1", 3),
        ("10.16.1.1", 4),
        ("10.39.15.1", 5),
    ];
    for (host, n) in sent {
        for _ in 0..n {
            let f = Frame::tcp("192.0.2.10", host, 40000, 443);
            assert_eq!(dp.run_frame(&f.bytes()).expect("run").verdict, XDP_PASS);
        }
    }
    let all = dp.rule_counters(rules.index_bound()).expect("all counters");
    assert_eq!(all.len(), rules.index_bound());
    for (host, n) in sent {
        let i = index(host);
        assert_eq!(
            all[i as usize].packets, n,
            "{host} (rule {i}) in the batch read"
        );
        let one = dp.rule_counters_of([i]).expect("one counter")[0];
        assert_eq!(one, all[i as usize], "{host} (rule {i}) read alone");
    }
    let total: u64 = all.iter().map(|c| c.packets).sum();
    assert_eq!(total, sent.iter().map(|(_, n)| n).sum::<u64>());
    // A sparse read, as of an update's removed rules: a call an entry, split between threads,
    // each counter in the place it was asked for (here backwards, the hit rules among them).
    let sparse: Vec<u32> = sent
        .iter()
        .map(|(host, _)| index(host))
        .chain((0..10_000).step_by(10))
        .rev()
        .collect();
    let read = dp
        .rule_counters_of(sparse.iter().copied())
        .expect("sparse read");
    let expected: Vec<_> = sparse.iter().map(|&i| all[i as usize]).collect();
    assert_eq!(read, expected);
}

/// A large update (half of 20,000 prefixes replaced): its thousands of chunks and singles go
/// to the kernel in two writes side by side. After it, an address in each new, kept and
/// removed prefix gets the reference classifier's decision from the kernel.
#[test]
fn a_large_update_reaches_the_kernel_whole() {
    require_root!();
    use rand::{Rng as _, SeedableRng as _, rngs::StdRng};
    let mut rng = StdRng::seed_from_u64(15);
    let mut random = || {
        let len = rng.random_range(20..=32);
        ipnet::Ipv4Net::new_assert(rng.random::<u32>().into(), len)
            .trunc()
            .to_string()
    };
    let before: Vec<String> = (0..20_000).map(|_| random()).collect();
    let mut after = before.clone();
    for p in after.iter_mut().step_by(2) {
        *p = random();
    }
    let policy = enforce();
    let old = build(&one_set(&before), None);
    let mut dp = load_with(&old, &policy, Capacity::for_prefixes(40_000));
    let (chunks, singles) = dp.table_size(intune_ctl::ruleset::table::Family::V4);
    assert!(
        chunks >= 1_000 && singles >= 1_000,
        "a table of {chunks} chunks and {singles} singles"
    );
    let new = build(&one_set(&after), Some(&old));
    dp.apply(new.clone()).expect("apply");
    assert_eq!(dp.v4_lookup(), Lookup::Table);
    let reference = intune_ctl::reference::ReferenceTables::new(&new, &policy);
    for p in before.iter().chain(&after) {
        let net: ipnet::Ipv4Net = p.parse().expect("prefix");
        let f = Frame::tcp("192.0.2.10", &net.broadcast().to_string(), 40000, 443);
        let kernel = dp.run_frame(&f.bytes()).expect("run");
        assert_eq!(kernel, reference.classify(&f.bytes(), 1), "{p}");
    }
}

/// An update's removed rules are taken: their hits read, summed over every CPU, and zeroed
/// (by the take program, one run a CPU, where the kernel runs it). Hits sent from each CPU by
/// hand; more rules than one run takes, in no order; the rules not taken keep their hits. Then
/// a run that fails half way (on a CPU that does not exist, as on one gone offline): what the
/// runs took and what the syscalls then find add up, and the syscalls take over.
#[test]
fn taking_counters_sums_every_cpu_and_zeroes_only_those_taken() {
    require_root!();
    let policy = enforce();
    let rules = hosts(3_000);
    let mut dp = load_with(&rules, &policy, Capacity::for_prefixes(4_096));
    let index = |host: &str| host_index(&rules, host);
    let cpus = aya::util::online_cpus().expect("online CPUs");
    let n = cpus.len() as u64;
    let (seven, other, nine) = (index("10.0.7.1"), index("10.9.128.1"), index("10.0.9.1"));
    // 2,500 rules backwards (three runs' worth), the hit ones among them; not 10.0.9.1.
    let taken: Vec<u32> = (0..2_500u32)
        .rev()
        .map(|i| index(&format!("10.{}.{}.1", i / 256, i % 256)))
        .filter(|&i| i != nine)
        .collect();
    assert!(taken.contains(&seven) && taken.contains(&other));
    // What the frames `send` sends leave on the taken rules: n(n + 1)/2 on 10.0.7.1, n on
    // 10.9.128.1, none on the rest.
    let expected = |i: u32| {
        if i == seven {
            n * (n + 1) / 2
        } else if i == other {
            n
        } else {
            0
        }
    };
    let check = |dp: &Datapath, counters: &[intune_common::maps::Counter]| {
        for (&i, c) in taken.iter().zip(counters) {
            assert_eq!(c.packets, expected(i), "rule {i}");
            assert_eq!(c.bytes > 0, expected(i) > 0, "rule {i}: {c:?}");
        }
        let after = dp.rule_counters_of(taken.iter().copied()).expect("read");
        assert!(after.iter().all(|c| c.packets == 0 && c.bytes == 0));
    };

    send(&mut dp, &cpus);
    let counters = dp.take_rule_counters(&taken).expect("take");
    // The program takes them on 5.10 and later, with every CPU online and not too many.
    let possible = aya::util::nr_cpus().expect("possible CPUs");
    let by_program =
        cpus.len() == possible && cpus.len() <= intune_ctl::datapath::take::MAX_TAKE_CPUS;
    assert_eq!(dp.takes_by_program(), by_program);
    check(&dp, &counters);
    assert_eq!(dp.rule_counters_of([nine]).expect("read")[0].packets, 2);

    if by_program {
        send(&mut dp, &cpus);
        let mut failing = cpus.clone();
        failing.insert(1, u32::MAX);
        let counters = dp
            .take_rule_counters_on(&taken, &failing)
            .expect("take, half by the program");
        assert!(!dp.takes_by_program(), "the syscalls took over");
        check(&dp, &counters);
        assert_eq!(dp.rule_counters_of([nine]).expect("read")[0].packets, 4);
    }
}

/// From CPU k (each online one in turn): k + 1 frames to 10.0.7.1 and one to 10.9.128.1; from
/// the first, two more to 10.0.9.1 as well.
fn send(dp: &mut Datapath, cpus: &[u32]) {
    let program = &*dp.program_mut().expect("program");
    for (k, &cpu) in cpus.iter().enumerate() {
        let mut to: Vec<&str> = vec!["10.0.7.1"; k + 1];
        to.push("10.9.128.1");
        if k == 0 {
            to.extend(["10.0.9.1", "10.0.9.1"]);
        }
        let frames: Vec<Vec<u8>> = to
            .iter()
            .map(|h| Frame::tcp("192.0.2.10", h, 40000, 443).bytes())
            .collect();
        std::thread::scope(|s| {
            s.spawn(|| {
                on_cpu(cpu);
                for f in &frames {
                    let r = program
                        .test_run(TestRunOptions {
                            data_in: Some(f),
                            ..TestRunOptions::new()
                        })
                        .expect("test run");
                    assert_eq!(r.return_value, XDP_PASS);
                }
            });
        });
    }
}

/// Keeps the calling thread on `cpu`.
fn on_cpu(cpu: u32) {
    // SAFETY: a zeroed cpu_set_t is valid; the call reads only it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu as usize, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const set),
            0,
            "pinning to CPU {cpu}"
        );
    }
}
