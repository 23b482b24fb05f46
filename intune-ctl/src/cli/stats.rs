//! `intune-ctl stats`: the hit counters the daemon pinned, named with the rules it recorded.
//! Reads bpffs and the state directory only, so it works while the daemon is down.

use std::{collections::BTreeMap, time::Duration};

use anyhow::Context as _;
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use intune_common::maps::Counter;
use serde::Serialize;

use crate::{
    daemon::state::{InstalledRule, LearnedAddress, StateDir},
    datapath::{counters::PinnedCounters, pins::Pins},
    sources::endpoints::builtin::builtin,
};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum By {
    /// Every rule with hits: prefix or resolved address.
    #[default]
    Prefix,
    /// Per endpoint set (a rule's hits count for each set that lists it).
    Set,
    /// Per port that Intune traffic matched on (ports beyond the counters count as "other").
    Port,
    /// The outcome counters only.
    Outcome,
}

#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    #[arg(long, value_enum, default_value_t)]
    pub by: By,
    /// Print again every SECONDS, with rates.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub watch: Option<u64>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub paths: super::flags::PathFlags,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
struct Hits {
    packets: u64,
    bytes: u64,
    /// Per second since the last print (watch mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    packets_per_second: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes_per_second: Option<f64>,
}

#[derive(Debug, Serialize)]
struct RuleRow {
    prefix: String,
    endpoint_sets: Vec<u32>,
    source: String,
    /// A learned address: the name the device asked for and the endpoint name it matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    learned_from: Option<String>,
    #[serde(flatten)]
    hits: Hits,
}

#[derive(Debug, Serialize)]
struct SetRow {
    set: u32,
    description: String,
    prefixes_hit: usize,
    #[serde(flatten)]
    hits: Hits,
}

#[derive(Debug, Serialize)]
struct PortRow {
    /// "tcp" or "udp"; none for the row of ports without a counter of their own.
    proto: Option<&'static str>,
    port: Option<u16>,
    #[serde(flatten)]
    hits: Hits,
}

impl PortRow {
    fn label(&self) -> String {
        match (self.proto, self.port) {
            (Some(proto), Some(port)) => format!("{proto}/{port}"),
            _ => "other".into(),
        }
    }
}

#[derive(Debug, Default, Serialize)]
struct Snapshot {
    outcomes: BTreeMap<String, Hits>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    rules: Vec<RuleRow>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    sets: Vec<SetRow>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ports: Vec<PortRow>,
}

pub fn run(args: &StatsArgs) -> anyhow::Result<()> {
    let settings = args.paths.settings()?;
    let pins = Pins::new(&settings.paths.bpffs_dir);
    let counters = PinnedCounters::open(&pins).with_context(|| {
        format!(
            "no counters pinned under {} (is the daemon installed and started?)",
            pins.dir().display()
        )
    })?;
    let state = StateDir::open(&settings.paths.state_dir)?;
    let mut previous: Option<Snapshot> = None;
    loop {
        // Re-read each time: the daemon records a new rule set as it applies one.
        let mut rules = state.load_rules()?.unwrap_or_default();
        let learned = state.load_learned()?;
        rules.extend(learned.iter().map(InstalledRule::learned));
        let mut snap = snapshot(&counters, &rules, &learned, args.by)?;
        if let (Some(prev), Some(secs)) = (&previous, args.watch) {
            add_rates(&mut snap, prev, secs as f64);
        }
        if args.json {
            println!("{}", serde_json::to_string(&snap)?);
        } else {
            print_tables(&snap, args.watch.is_some());
        }
        let Some(secs) = args.watch else {
            return Ok(());
        };
        previous = Some(snap);
        std::thread::sleep(Duration::from_secs(secs));
    }
}

fn hits(c: Counter) -> Hits {
    Hits {
        packets: c.packets,
        bytes: c.bytes,
        ..Hits::default()
    }
}

fn snapshot(
    counters: &PinnedCounters,
    rules: &[InstalledRule],
    learned: &[LearnedAddress],
    by: By,
) -> anyhow::Result<Snapshot> {
    let mut snap = Snapshot {
        outcomes: counters
            .outcomes()?
            .into_iter()
            .map(|(o, c)| (o.counter_name().to_string(), hits(c)))
            .collect(),
        ..Snapshot::default()
    };
    match by {
        By::Outcome => return Ok(snap),
        By::Port => {
            snap.ports = port_rows(counters)?;
            return Ok(snap);
        }
        By::Prefix | By::Set => {}
    }
    let counts = counters.rules_of(rules.iter().map(|r| r.index))?;
    let mut hit: Vec<(&InstalledRule, Counter)> = rules
        .iter()
        .zip(counts)
        .filter(|(_, c)| c.packets > 0)
        .collect();
    hit.sort_by_key(|(r, c)| (std::cmp::Reverse(c.packets), r.index));
    match by {
        By::Prefix => {
            let learned_by_index: std::collections::HashMap<u32, &LearnedAddress> =
                learned.iter().map(|l| (l.index, l)).collect();
            snap.rules = hit
                .into_iter()
                .map(|(r, c)| RuleRow {
                    prefix: r.prefix.clone(),
                    endpoint_sets: r.endpoint_sets.clone(),
                    source: r.sources.join("+"),
                    learned_from: learned_by_index
                        .get(&r.index)
                        .map(|l| format!("{} ({}, until {})", l.asked, l.pattern, l.expires_at)),
                    hits: hits(c),
                })
                .collect();
        }
        By::Set => {
            let described: BTreeMap<u32, String> = builtin()
                .unwrap_or_default()
                .into_iter()
                .map(|s| (s.id, s.notes))
                .collect();
            let mut sets: BTreeMap<u32, (usize, Counter)> = BTreeMap::new();
            for (r, c) in hit {
                for id in &r.endpoint_sets {
                    let e = sets.entry(*id).or_default();
                    e.0 += 1;
                    e.1.packets += c.packets;
                    e.1.bytes += c.bytes;
                }
            }
            let mut rows: Vec<SetRow> = sets
                .into_iter()
                .map(|(set, (n, c))| SetRow {
                    set,
                    description: described.get(&set).cloned().unwrap_or_default(),
                    prefixes_hit: n,
                    hits: hits(c),
                })
                .collect();
            rows.sort_by_key(|r| (std::cmp::Reverse(r.hits.packets), r.set));
            snap.sets = rows;
        }
        By::Outcome | By::Port => {}
    }
    Ok(snap)
}

/// Ports with hits, most hit first.
fn port_rows(counters: &PinnedCounters) -> anyhow::Result<Vec<PortRow>> {
    let mut rows: Vec<PortRow> = counters
        .ports()?
        .into_iter()
        .filter(|p| p.counter.packets > 0)
        .map(|p| PortRow {
            proto: p.port.map(|(l4, _)| intune_common::proto::l4_name(l4)),
            port: p.port.map(|(_, port)| port),
            hits: hits(p.counter),
        })
        .collect();
    rows.sort_by_key(|r| (std::cmp::Reverse(r.hits.packets), r.proto.is_none(), r.port));
    Ok(rows)
}

fn add_rates(snap: &mut Snapshot, prev: &Snapshot, secs: f64) {
    let rate = |now: &mut Hits, before: Option<&Hits>| {
        let (p, b) = before.map_or((0, 0), |h| (h.packets, h.bytes));
        now.packets_per_second = Some(now.packets.saturating_sub(p) as f64 / secs);
        now.bytes_per_second = Some(now.bytes.saturating_sub(b) as f64 / secs);
    };
    for (name, h) in &mut snap.outcomes {
        rate(h, prev.outcomes.get(name));
    }
    for r in &mut snap.rules {
        rate(
            &mut r.hits,
            prev.rules
                .iter()
                .find(|p| p.prefix == r.prefix)
                .map(|p| &p.hits),
        );
    }
    for s in &mut snap.sets {
        rate(
            &mut s.hits,
            prev.sets.iter().find(|p| p.set == s.set).map(|p| &p.hits),
        );
    }
    for p in &mut snap.ports {
        rate(
            &mut p.hits,
            prev.ports
                .iter()
                .find(|q| (q.proto, q.port) == (p.proto, p.port))
                .map(|q| &q.hits),
        );
    }
}

/// 1234567 -> "1.2M"; small numbers as they are.
pub fn count(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1}k", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1}M", n as f64 / 1e6),
        _ => format!("{:.1}G", n as f64 / 1e9),
    }
}

pub fn bytes(n: u64) -> String {
    humansize::format_size(n, humansize::BINARY)
}

fn cells(h: &Hits, watch: bool) -> Vec<String> {
    let mut out = vec![count(h.packets), bytes(h.bytes)];
    if watch {
        out.push(
            h.packets_per_second
                .map_or(String::new(), |r| format!("{r:.1}/s")),
        );
        out.push(
            h.bytes_per_second
                .map_or(String::new(), |r| format!("{}/s", bytes(r as u64))),
        );
    }
    out
}

fn header(first: &[&str], watch: bool) -> Vec<String> {
    let mut h: Vec<String> = first.iter().map(std::string::ToString::to_string).collect();
    h.extend(["packets", "bytes"].map(String::from));
    if watch {
        h.extend(["packets/s", "bytes/s"].map(String::from));
    }
    h
}

fn print_tables(snap: &Snapshot, watch: bool) {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY)
        .set_header(header(&["outcome"], watch));
    for (name, h) in &snap.outcomes {
        let mut row = vec![name.clone()];
        row.extend(cells(h, watch));
        t.add_row(row);
    }
    println!("{t}");
    if !snap.rules.is_empty() {
        let mut t = Table::new();
        t.load_preset(UTF8_BORDERS_ONLY)
            .set_header(header(&["prefix", "endpoint sets", "source"], watch));
        for r in &snap.rules {
            let sets: Vec<String> = r.endpoint_sets.iter().map(u32::to_string).collect();
            let source = match &r.learned_from {
                Some(from) => format!("{}: {from}", r.source),
                None => r.source.clone(),
            };
            let mut row = vec![r.prefix.clone(), sets.join(","), source];
            row.extend(cells(&r.hits, watch));
            t.add_row(row);
        }
        println!("{t}");
    }
    if !snap.sets.is_empty() {
        let mut t = Table::new();
        t.load_preset(UTF8_BORDERS_ONLY)
            .set_header(header(&["set", "description", "prefixes hit"], watch));
        for s in &snap.sets {
            let mut row = vec![
                s.set.to_string(),
                s.description.clone(),
                s.prefixes_hit.to_string(),
            ];
            row.extend(cells(&s.hits, watch));
            t.add_row(row);
        }
        println!("{t}");
    }
    if !snap.ports.is_empty() {
        let mut t = Table::new();
        t.load_preset(UTF8_BORDERS_ONLY)
            .set_header(header(&["port"], watch));
        for p in &snap.ports {
            let mut row = vec![p.label()];
            row.extend(cells(&p.hits, watch));
            t.add_row(row);
        }
        println!("{t}");
    }
}
