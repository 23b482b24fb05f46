//! `intune-ctl lookup ADDRESS`: what the running filter does with such a packet, answered by
//! the real program against the live maps (see `datapath::probe`).

use std::net::IpAddr;

use serde::Serialize;

use crate::{
    daemon::state::StateDir,
    datapath::probe::{device_like, frame},
};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    #[default]
    Tcp,
    Udp,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// ADDRESS is the destination: a device talking to it.
    #[default]
    Dst,
    /// ADDRESS is the source: its answer coming back.
    Src,
}

#[derive(Debug, clap::Args)]
pub struct LookupArgs {
    pub address: IpAddr,
    #[arg(long, default_value_t = 443)]
    pub port: u16,
    #[arg(long, value_enum, default_value_t)]
    pub proto: Proto,
    #[arg(long, value_enum, default_value_t)]
    pub direction: Side,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub paths: super::flags::PathFlags,
}

#[derive(Debug, Serialize)]
struct Answer {
    address: IpAddr,
    port: u16,
    proto: Proto,
    direction: Side,
    action: &'static str,
    outcome: &'static str,
    prefix: Option<String>,
    endpoint_sets: Vec<u32>,
    source: Option<String>,
    ports: Option<String>,
}

pub fn run(args: &LookupArgs) -> anyhow::Result<()> {
    let settings = args.paths.settings()?;
    let probe = super::common::live_probe(&settings)?;
    let rules = StateDir::open(&settings.paths.state_dir)?
        .load_rules()?
        .unwrap_or_default();
    let udp = args.proto == Proto::Udp;
    let (src, dst, sport, dport) = match args.direction {
        Side::Dst => (device_like(args.address), args.address, 40000, args.port),
        Side::Src => (args.address, device_like(args.address), args.port, 40000),
    };
    let indices: Vec<u32> = rules.iter().map(|r| r.index).collect();
    let verdict = probe.run(&frame(src, dst, udp, sport, dport), &indices)?;
    let rule = verdict
        .rule
        .and_then(|i| rules.iter().find(|r| r.index == i));
    let answer = Answer {
        address: args.address,
        port: args.port,
        proto: args.proto,
        direction: args.direction,
        action: match verdict.action {
            1 => "drop",
            2 => "pass",
            _ => "other",
        },
        outcome: verdict.outcome.counter_name(),
        prefix: rule.map(|r| r.prefix.clone()),
        endpoint_sets: rule.map(|r| r.endpoint_sets.clone()).unwrap_or_default(),
        source: rule.map(|r| r.sources.join("+")),
        ports: rule.map(|r| r.ports.clone()),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    let proto = if udp { "udp" } else { "tcp" };
    print!(
        "{} port {}/{proto} ({:?}): {}, {}",
        answer.address, answer.port, answer.direction, answer.action, answer.outcome
    );
    match rule {
        Some(r) => {
            let sets: Vec<String> = r.endpoint_sets.iter().map(u32::to_string).collect();
            println!(
                "; rule {} (endpoint sets {}; {}; {})",
                r.prefix,
                sets.join(","),
                r.sources.join("+"),
                r.ports
            );
        }
        None => println!(),
    }
    Ok(())
}
