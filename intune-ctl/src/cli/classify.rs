//! `intune-ctl classify`: every frame of a capture through the real program.

use std::{collections::BTreeMap, path::PathBuf};

use anyhow::Context as _;
use intune_common::{
    classify::{Parsed, parse_frame},
    maps::NO_RULE,
    outcome::XDP_DROP,
};
use serde::Serialize;

use super::{
    common::load_datapath,
    flags::{PolicyFlags, RuleFlags, validated},
};
use crate::{
    capture::read_frames,
    reference::ReferenceTables,
    ruleset::{build::RuleBuilder, policy::Policy, rules::RuleSet},
    settings::Settings,
};

/// Frame sizes BPF_PROG_TEST_RUN accepts for an XDP program: an Ethernet header at least, and
/// what fits a page after XDP headroom (256) and skb_shared_info (320). Shorter frames never
/// reach XDP; longer ones appear in captures taken with GRO.
const TEST_RUN_FRAME_SIZES: std::ops::RangeInclusive<usize> = 14..=3520;

#[derive(Debug, clap::Args)]
pub struct ClassifyArgs {
    /// Capture to classify (pcap or pcapng, Ethernet link type).
    #[arg(long, value_name = "FILE")]
    pub pcap: PathBuf,
    #[command(flatten)]
    pub rules: RuleFlags,
    #[command(flatten)]
    pub policy: PolicyFlags,
    /// One of the gateway's own addresses with its prefix length (repeatable): frames to it
    /// are local, as the daemon decides for the addresses it follows.
    #[arg(long = "local-address", value_name = "ADDR/LEN")]
    pub local: Vec<ipnet::IpNet>,
    /// One JSON object a frame, then one with the totals.
    #[arg(long)]
    pub json: bool,
}

/// What the program did with one frame.
#[derive(Debug, Serialize)]
pub struct FrameResult {
    /// 1-based, as capture tools number frames.
    pub frame: usize,
    pub verdict: &'static str,
    pub outcome: &'static str,
    /// The most specific prefix matched (the one credited), "any" for a port-only rule.
    pub prefix: Option<String>,
    /// The endpoint sets whose ports admit this packet.
    pub endpoint_sets: Vec<u32>,
}

pub fn run(args: &ClassifyArgs) -> anyhow::Result<()> {
    let frames = read_frames(&args.pcap)?;
    // A capture is classified against the flags alone: the gateway's config file may hold
    // another policy than the one asked about.
    let mut settings = Settings::default();
    args.rules.apply(&mut settings);
    args.policy.apply(&mut settings);
    let settings = validated(settings)?;
    let (_, rules) = RuleBuilder::new(&settings)?.build(&[], &[], None)?;
    let policy = Policy::of(&settings.policy);
    let mut dp = load_datapath(&rules, &policy, true)?;
    dp.set_local_addresses(&args.local)
        .context("writing the local addresses")?;
    let mut totals: BTreeMap<&'static str, u64> = BTreeMap::new();
    if !args.json {
        println!(
            "{:>7}  {:<7}  {:<14}  {:<20}  endpoint sets",
            "frame", "verdict", "outcome", "prefix"
        );
    }
    let reference = ReferenceTables::try_new(&rules, &policy)?.with_local(&args.local);
    for (i, frame) in frames.iter().enumerate() {
        let decision = if TEST_RUN_FRAME_SIZES.contains(&frame.len()) {
            dp.run_frame(frame)
                .with_context(|| format!("frame {}", i + 1))?
        } else {
            tracing::warn!(
                frame = i + 1,
                bytes = frame.len(),
                "BPF_PROG_TEST_RUN takes frames of {} to {} bytes; this one is decided by the reference classifier",
                TEST_RUN_FRAME_SIZES.start(),
                TEST_RUN_FRAME_SIZES.end()
            );
            reference.classify(frame, 1)
        };
        let result = describe(i + 1, frame, decision, &rules, policy.direction.bits());
        *totals.entry(result.verdict).or_default() += 1;
        *totals.entry(result.outcome).or_default() += 1;
        if args.json {
            println!("{}", serde_json::to_string(&result)?);
        } else {
            let sets: Vec<String> = result.endpoint_sets.iter().map(u32::to_string).collect();
            println!(
                "{:>7}  {:<7}  {:<14}  {:<20}  {}",
                result.frame,
                result.verdict,
                result.outcome,
                result.prefix.as_deref().unwrap_or("-"),
                sets.join(",")
            );
        }
    }
    let mut all: BTreeMap<&str, u64> = [
        "pass",
        "drop",
        "intune",
        "infrastructure",
        "unmatched",
        "not-ip",
        "malformed",
    ]
    .into_iter()
    .map(|k| (k, totals.get(k).copied().unwrap_or(0)))
    .collect();
    all.insert("frames", frames.len() as u64);
    if args.json {
        println!("{}", serde_json::json!({ "totals": all }));
    } else {
        let line: Vec<String> = all.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!("totals: {}", line.join(", "));
    }
    Ok(())
}

fn describe(
    frame: usize,
    bytes: &[u8],
    decision: intune_common::classify::Decision,
    rules: &RuleSet,
    direction: u32,
) -> FrameResult {
    let (prefix, endpoint_sets) = match (decision.rule, parse_frame(bytes)) {
        (NO_RULE, _) => (None, Vec::new()),
        (rule, Parsed::Ip(pkt)) => (
            rules.rule(rule).map(|r| r.target.to_string()),
            rules.sets_for_packet(&pkt, direction, rule),
        ),
        (rule, _) => (rules.rule(rule).map(|r| r.target.to_string()), Vec::new()),
    };
    FrameResult {
        frame,
        verdict: if decision.verdict == XDP_DROP {
            "drop"
        } else {
            "pass"
        },
        outcome: decision.outcome.class(),
        prefix,
        endpoint_sets,
    }
}
