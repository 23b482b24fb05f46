//! The differential test: random and mutated frames through the loaded program
//! (BPF_PROG_TEST_RUN) and through the pure-Rust reference must get identical verdicts,
//! outcomes and credited rules. Needs root.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use intune_common::outcome::Outcome;
use intune_ctl::{
    reference::ReferenceTables,
    ruleset::{
        policy::{AllowProtocol, AllowRule, Direction, Mode, Policy},
        rules::{RuleSet, Target},
    },
};
use intune_tests::{
    builtin_sets,
    frames::{Ext, Frame, L4, ip},
    load, load_trie, require_root, rule_set_excluding, test_sets,
};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::IndexedRandom};

/// Frames of each policy; a guest under software emulation asks for fewer
/// (`INTUNE_DIFF_FRAMES_PER_POLICY`, at least 5,000: 25,000 frames in all).
const FRAMES_PER_POLICY: usize = 20_400;
const MIN_FRAMES_PER_POLICY: usize = 5_000;
const PORTS: [u16; 16] = [
    443, 80, 123, 5223, 7680, 3544, 53, 67, 68, 546, 547, 3478, 3481, 3482, 22, 0,
];

/// The gateway's own addresses in the policies that follow them.
const LOCAL: [&str; 3] = ["192.0.2.1/24", "2001:db8:ffff::1/64", "198.51.100.250/32"];

/// Addresses worth hitting: hosts inside every rule's prefix, the resolvers, DHCP servers,
/// the gateway's own addresses and groups, the allowed services, and their edges.
fn interesting_addresses(rules: &RuleSet, rng: &mut StdRng) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = [
        "192.0.2.53",
        "2001:db8::53",
        "192.0.2.10",
        "2001:db8:ffff::10",
        "192.0.2.67",
        "192.0.2.1",
        "192.0.2.255",
        "2001:db8:ffff::1",
        "255.255.255.255",
        "224.0.0.18",
        "224.0.1.1",
        "ff02::1:2",
        "ff02::16",
        "ff05::1:3",
        "fe80::1",
        "::",
        "0.0.0.0",
        "192.0.2.170",
        "2001:db8:aaaa::1",
    ]
    .iter()
    .map(|a| ip(a))
    .collect();
    for rule in &rules.rules {
        if let Target::Prefix(net) = rule.target {
            out.push(net.network());
            out.push(net.broadcast());
            out.push(random_inside(net, rng));
        }
    }
    out
}

fn net(s: &str) -> ipnet::IpNet {
    s.parse().expect("prefix")
}

fn random_inside(net: ipnet::IpNet, rng: &mut StdRng) -> IpAddr {
    match net {
        ipnet::IpNet::V4(n) => {
            let host = rng.random::<u32>() & !u32::from(n.netmask());
            IpAddr::V4(Ipv4Addr::from(u32::from(n.network()) | host))
        }
        ipnet::IpNet::V6(n) => {
            let host = rng.random::<u128>() & !u128::from(n.netmask());
            IpAddr::V6(Ipv6Addr::from(u128::from(n.network()) | host))
        }
    }
}

fn address(v6: bool, pool: &[IpAddr], rng: &mut StdRng) -> IpAddr {
    if rng.random_bool(0.6) {
        let same: Vec<&IpAddr> = pool.iter().filter(|a| a.is_ipv6() == v6).collect();
        if let Some(a) = same.choose(rng) {
            return **a;
        }
    }
    if v6 {
        IpAddr::V6(Ipv6Addr::from(rng.random::<u128>()))
    } else {
        IpAddr::V4(Ipv4Addr::from(rng.random::<u32>()))
    }
}

fn port(rng: &mut StdRng) -> u16 {
    match PORTS.choose(rng) {
        Some(0) | None => rng.random(),
        Some(p) => *p,
    }
}

fn random_frame(pool: &[IpAddr], rng: &mut StdRng) -> Vec<u8> {
    random_packet(pool, rng, 0).bytes()
}

fn random_packet(pool: &[IpAddr], rng: &mut StdRng, depth: u8) -> Frame {
    if depth == 0 && rng.random_bool(0.03) {
        // Not IP at all.
        let mut f: Vec<u8> = (0..rng.random_range(14..80))
            .map(|_| rng.random())
            .collect();
        let types: [u16; 4] = [0x0806, 0x88cc, 0x8100, 0x0800];
        f[12..14].copy_from_slice(&types.choose(rng).copied().unwrap_or(0x0806).to_be_bytes());
        return Frame::raw(f);
    }
    let v6 = rng.random_bool(0.4);
    let (src, dst) = (address(v6, pool, rng), address(v6, pool, rng));
    let l4 = match rng.random_range(0..10) {
        0..=3 => L4::Tcp {
            sport: port(rng),
            dport: port(rng),
        },
        4..=6 => L4::Udp {
            sport: port(rng),
            dport: port(rng),
        },
        7..=8 => L4::Icmp {
            ty: *[
                0u8, 1, 2, 3, 4, 8, 11, 12, 128, 130, 133, 135, 136, 137, 143, 200,
            ]
            .choose(rng)
            .unwrap_or(&3),
        },
        9 if depth == 0 => {
            // An error quoting a packet, mostly one sent by its destination (as a genuine
            // error is), cut anywhere.
            let mut quoted = random_packet(pool, rng, 1);
            if quoted.src.is_ipv6() == v6 && rng.random_bool(0.7) {
                quoted.src = dst;
            }
            let quote = rng.random_range(0..80);
            let ty = if v6 {
                *[1u8, 2, 3, 4, 128].choose(rng).unwrap_or(&1)
            } else {
                *[3u8, 11, 12, 8].choose(rng).unwrap_or(&3)
            };
            L4::IcmpError {
                ty,
                quoted: Box::new(quoted),
                quote,
            }
        }
        _ => L4::Other(*[47u8, 50, 59, 132, 1, 58, 112].choose(rng).unwrap_or(&47)),
    };
    let mut f = Frame::new(src, dst, l4);
    for _ in 0..rng.random_range(0..4usize).saturating_sub(1) {
        f.vlans
            .push(if rng.random_bool(0.5) { 0x8100 } else { 0x88a8 });
    }
    f.payload = if rng.random_bool(0.05) {
        rng.random_range(500..1300)
    } else {
        rng.random_range(0..48)
    };
    if v6 {
        for _ in 0..rng.random_range(0..9usize).saturating_sub(2) {
            f.v6_ext.push(match rng.random_range(0..5) {
                0 => Ext::HopByHop,
                1 => Ext::Routing,
                2 => Ext::DestOpts,
                3 => Ext::Ah,
                _ => Ext::Fragment {
                    offset: if rng.random_bool(0.5) {
                        0
                    } else {
                        rng.random_range(1..8000)
                    },
                },
            });
        }
    } else {
        f.v4_option_words = if rng.random_bool(0.2) {
            rng.random_range(1..=10)
        } else {
            0
        };
        f.v4_more_fragments = rng.random_bool(0.1);
        f.v4_frag_offset = if rng.random_bool(0.1) {
            rng.random_range(1..8191)
        } else {
            0
        };
    }
    f
}

/// Damages a frame the way a broken sender, a truncating capture or an attacker might.
fn mutate(mut f: Vec<u8>, rng: &mut StdRng) -> Vec<u8> {
    match rng.random_range(0..7) {
        0 => {
            let len = rng.random_range(14..=f.len().max(14));
            f.truncate(len);
        }
        1 => {
            for _ in 0..rng.random_range(1..=4) {
                let i = rng.random_range(0..f.len());
                f[i] ^= 1 << rng.random_range(0..8);
            }
        }
        2 => {
            // A random byte in the first 80, where the headers are.
            let i = rng.random_range(0..f.len().min(80));
            f[i] = rng.random();
        }
        3 => {
            // Length fields: IPv4 total length or IPv6 payload length, wherever the IP header is.
            let at = [16usize, 18, 20, 22, 24, 26];
            let i = *at.choose(rng).unwrap_or(&16);
            if i + 1 < f.len() {
                let v: u16 = rng.random_range(0..200);
                f[i..i + 2].copy_from_slice(&v.to_be_bytes());
            }
        }
        4 => f.extend((0..rng.random_range(1..40)).map(|_| rng.random::<u8>())),
        5 => {
            // What the fast path reads at fixed offsets of a plain frame: the EtherType, and
            // of IPv4 version and header length, total length, fragment field, protocol,
            // destination, destination port and TCP data offset; of IPv6 version, payload
            // length, next header, destination, destination port and TCP data offset.
            let v4 = [12usize, 13, 14, 16, 17, 20, 21, 23, 33, 36, 37, 46, 46, 46];
            let v6 = [12usize, 13, 14, 18, 19, 20, 38, 45, 53, 56, 57, 66, 66, 66];
            let at = if f.get(12..14) == Some(&[0x86, 0xdd][..]) {
                &v6[..]
            } else {
                &v4[..]
            };
            let i = *at.choose(rng).unwrap_or(&46);
            if i < f.len() {
                f[i] = rng.random();
            }
        }
        _ => {
            // IPv4 version/IHL byte.
            if f.len() > 14 {
                f[14] = (f[14] & 0xf0) | rng.random_range(0..16);
            }
        }
    }
    f
}

#[test]
fn kernel_and_reference_agree_on_random_and_mutated_frames() {
    require_root!();
    let seed: u64 = std::env::var("INTUNE_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x1a7e_2026);
    eprintln!("differential test seed {seed} (set INTUNE_DIFF_SEED to replay)");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut sets = test_sets();
    sets.extend(builtin_sets());
    // (policy, port-only rules, IPv4 in the trie rather than the table); the last two also
    // exclude prefixes inside listed ones.
    let policies = [
        (Policy::default(), false, false),
        (
            Policy {
                mode: Mode::Enforce,
                direction: Direction::Both,
                dns_resolvers: vec![ip("192.0.2.53"), ip("2001:db8::53")],
                ..Policy::default()
            },
            true,
            false,
        ),
        (
            Policy {
                mode: Mode::Enforce,
                direction: Direction::Src,
                ..Policy::default()
            },
            false,
            false,
        ),
        (
            Policy {
                mode: Mode::Enforce,
                direction: Direction::Both,
                ..Policy::default()
            },
            true,
            true,
        ),
        (
            Policy {
                mode: Mode::Enforce,
                direction: Direction::Both,
                dns_resolvers: vec![ip("192.0.2.53")],
                dhcp_servers: vec![ip("192.0.2.67")],
                allow: vec![
                    AllowRule::new(net("192.0.2.160/27"), AllowProtocol::Tcp, vec![(22, 22)])
                        .expect("allow rule"),
                    AllowRule::new(net("192.0.2.160/27"), AllowProtocol::Udp, vec![(53, 68)])
                        .expect("allow rule"),
                    AllowRule::new(net("2001:db8:aaaa::/48"), AllowProtocol::Any, vec![])
                        .expect("allow rule"),
                ],
                ..Policy::default()
            },
            false,
            false,
        ),
    ];
    let per_policy =
        std::env::var("INTUNE_DIFF_FRAMES_PER_POLICY")
            .ok()
            .map_or(FRAMES_PER_POLICY, |s| {
                s.parse::<usize>()
                    .expect("INTUNE_DIFF_FRAMES_PER_POLICY is a number")
            });
    assert!(
        per_policy >= MIN_FRAMES_PER_POLICY,
        "INTUNE_DIFF_FRAMES_PER_POLICY must be at least {MIN_FRAMES_PER_POLICY}"
    );
    let policy_count = policies.len();
    let mut total = 0;
    let mut seen = std::collections::BTreeMap::new();
    for (i, (policy, port_only, trie)) in policies.into_iter().enumerate() {
        let exclude: &[&str] = if i >= 2 {
            &["198.51.100.64/26", "2001:db8:100:2::/64", "13.67.13.176/29"]
        } else {
            &[]
        };
        let rules = rule_set_excluding(&sets, port_only, exclude);
        let mut dp = if trie {
            load_trie(&rules, &policy)
        } else {
            load(&rules, &policy)
        };
        // The gateway's addresses in every other policy, and with local traffic filtered in
        // one of those.
        let local: Vec<ipnet::IpNet> = if i % 2 == 0 {
            LOCAL.iter().map(|n| net(n)).collect()
        } else {
            Vec::new()
        };
        dp.set_local_addresses(&local).expect("local addresses");
        // Addresses of the whole list, also those that leave it below.
        let pool = interesting_addresses(&rules, &mut rng);
        // The last policy drains: the test sets' 903 and 901 leave (901's /24 holds 902's
        // /28, which stays) and drain for their connections; the exclusions stay.
        let (rules, drain) = if i == policy_count - 1 {
            dp.set_drain(Some(std::time::Duration::from_secs(3600)))
                .expect("draining on");
            let kept: Vec<_> = sets
                .iter()
                .filter(|s| s.id != 903 && s.id != 901)
                .cloned()
                .collect();
            let next = intune_ctl::ruleset::rules::RuleSet::build(
                &kept,
                &intune_ctl::ruleset::rules::RuleSetOptions {
                    port_only,
                    exclude: exclude.iter().map(|p| net(p)).collect(),
                    ..Default::default()
                },
                Some(&rules),
            )
            .expect("rules");
            dp.apply(next.clone()).expect("apply");
            let drain = dp.drain_entries().expect("drain");
            assert!(drain.len() >= 3, "{drain:?}");
            (next, drain)
        } else {
            (rules, Vec::new())
        };
        let mut reference = ReferenceTables::new(&rules, &policy).with_local(&local);
        if !drain.is_empty() {
            reference = reference.with_draining(drain);
        }
        let mut mismatches = Vec::new();
        for _ in 0..per_policy {
            let mut frame = random_frame(&pool, &mut rng);
            if rng.random_bool(0.5) {
                frame = mutate(frame, &mut rng);
            }
            let kernel = dp.run_frame(&frame).expect("test run");
            let want = reference.classify(&frame, 1);
            *seen.entry(format!("{:?}", want.outcome)).or_insert(0u64) += 1;
            if kernel != want && mismatches.len() < 10 {
                mismatches.push(format!(
                    "kernel {kernel:?}\nreference {want:?}\nframe {frame:02x?}"
                ));
            }
            total += 1;
        }
        assert!(
            mismatches.is_empty(),
            "policy {policy:?}, IPv4 trie {trie}: kernel and reference disagree:\n{}",
            mismatches.join("\n\n")
        );
    }
    eprintln!("{total} frames agreed; reference outcomes {seen:?}");
    assert_eq!(total, policy_count * per_policy);
    // The generator must reach every outcome, or the agreement proves little.
    assert_eq!(seen.len(), Outcome::ALL.len(), "outcomes reached: {seen:?}");
}
