//! What enforce mode's own rules cost, on the paths they add, at 10,000 prefixes: the drain
//! (looked up only when nothing listed allows a packet) empty and full, the gateway's own
//! addresses, `[[policy.allow]]` services, an ICMP error whose quote is parsed and matched.
//! Each beside the floor program and the same frame with the rule off.

use std::{fmt::Write as _, net::Ipv4Addr, time::Duration};

use aya::programs::Xdp;
use intune_ctl::{
    datapath::{Capacity, Datapath},
    ruleset::{
        policy::{AllowProtocol, AllowRule, Policy},
        rules::{RuleSet, RuleSetOptions},
    },
    sources::endpoints::{EndpointSet, Source, parse_endpoint_sets},
};
use intune_tests::{enforce, frames::Frame};
use rand::{Rng, rngs::StdRng};

use super::{MISS_V4, OnOneCpu, interleaved_ns, synthetic_sets, time_xdp};

const PREFIXES: usize = 10_000;
const DEV: &str = "192.0.2.10";

/// `n` distinct /32s in 100.64.0.0/10 as one set (synthetic frames only, never on a wire).
fn host_set(n: usize, rng: &mut StdRng) -> Vec<EndpointSet> {
    let mut seen = std::collections::HashSet::new();
    while seen.len() < n {
        let a = Ipv4Addr::from(0x6440_0000 | (rng.random::<u32>() & 0x003f_ffff));
        seen.insert(format!("{a}/32"));
    }
    let ips: Vec<String> = seen.into_iter().collect();
    let json = serde_json::json!([{
        "id": 2, "serviceArea": "MEM", "category": "Default", "ips": ips, "tcpPorts": "443"
    }]);
    parse_endpoint_sets(&json.to_string(), Source::File).expect("host set parses")
}

fn loaded(rules: &RuleSet, policy: &Policy) -> anyhow::Result<Datapath> {
    let mut dp = Datapath::load(Capacity::for_prefixes(rules.index_bound()))?;
    dp.install(rules, policy, false)?;
    Ok(dp)
}

/// The table's rows.
pub fn enforce_costs(floor: &Xdp, repeat: u32, rng: &mut StdRng) -> anyhow::Result<String> {
    let sets = synthetic_sets(PREFIXES, rng);
    let opts = RuleSetOptions {
        max_rules: PREFIXES + 70_000,
        ..RuleSetOptions::default()
    };
    let base = RuleSet::build(&sets, &opts, None)?;
    let miss = Frame::tcp(DEV, MISS_V4, 40000, 443).bytes();
    let hit = Frame::tcp(DEV, "13.67.13.180", 40000, 443).bytes();
    let mut out = String::new();
    let mut row = |what: &str, dp: &Datapath, frame: &[u8]| -> anyhow::Result<()> {
        let _cpu = OnOneCpu::last();
        let [ours, floor_ns] =
            interleaved_ns([&mut || Ok(dp.time_frame(frame, repeat)?), &mut || {
                time_xdp(floor, frame, repeat)
            }])?;
        writeln!(
            out,
            "| {what} | {ours:.1} | {floor_ns:.1} | {:.1} |",
            ours - floor_ns
        )?;
        eprintln!("enforce paths: {what}: {ours:.1} ns (floor {floor_ns:.1})");
        Ok(())
    };

    let plain = loaded(&base, &enforce())?;
    row("IPv4 miss, nothing else on", &plain, &miss)?;
    row("IPv4 hit, nothing else on", &plain, &hit)?;
    drop(plain);

    // The drain, empty and holding `n` addresses that left the list.
    for n in [0, 1_000, 65_000] {
        let mut full_sets = sets.clone();
        full_sets.extend(host_set(n, rng));
        let full = RuleSet::build(&full_sets, &opts, None)?;
        let mut dp = loaded(&full, &enforce())?;
        dp.set_drain(Some(Duration::from_secs(3600)))?;
        dp.apply(RuleSet::build(&sets, &opts, Some(&full))?)?;
        let drained = dp.drain_entries()?.len();
        row(&format!("IPv4 miss, {drained} draining"), &dp, &miss)?;
        row(&format!("IPv4 hit, {drained} draining"), &dp, &hit)?;
        if let Some((net, _)) = dp.drain_entries()?.first() {
            let to = net.addr().to_string();
            let frame = Frame::tcp(DEV, &to, 40000, 443).bytes();
            row(
                &format!("IPv4 to a draining address ({drained})"),
                &dp,
                &frame,
            )?;
        }
    }

    // The gateway's own addresses (64 of them) and a frame to one.
    let mut dp = loaded(&base, &enforce())?;
    let local: Vec<ipnet::IpNet> = (0..64)
        .map(|i| format!("192.0.2.{}/24", i + 1).parse().expect("prefix"))
        .collect();
    dp.set_local_addresses(&local)?;
    row(
        "IPv4 to the gateway's own address (64 known)",
        &dp,
        &Frame::tcp(DEV, "192.0.2.1", 40000, 22).bytes(),
    )?;
    row("IPv4 miss, 64 own addresses known", &dp, &miss)?;
    drop(dp);

    // 16 `[[policy.allow]]` services.
    let allow: Vec<AllowRule> = (0..16)
        .map(|i| {
            AllowRule::new(
                format!("198.51.100.{}/28", i * 16).parse().expect("prefix"),
                AllowProtocol::Tcp,
                vec![(22, 22), (161, 162)],
            )
            .expect("allow rule")
        })
        .collect();
    let dp = loaded(&base, &Policy { allow, ..enforce() })?;
    row(
        "IPv4 to a [[policy.allow]] service (16)",
        &dp,
        &Frame::tcp(DEV, "198.51.100.20", 40000, 22).bytes(),
    )?;
    row("IPv4 miss, 16 [[policy.allow]] entries", &dp, &miss)?;
    drop(dp);

    // An ICMP error back to a device about its packet to Intune: the quote parsed and matched.
    let dp = loaded(
        &base,
        &Policy {
            direction: intune_ctl::ruleset::policy::Direction::Src,
            ..enforce()
        },
    )?;
    let quoted = Frame::tcp(DEV, "13.67.13.180", 40000, 443);
    row(
        "ICMP error about an allowed packet (source matched)",
        &dp,
        &Frame::icmp_error("192.0.2.1", DEV, 3, quoted).bytes(),
    )?;
    Ok(out)
}
