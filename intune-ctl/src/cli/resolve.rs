//! `intune-ctl resolve`: every exact name of the rule set looked up once, with the daemon's
//! own watcher (same lookups, same pacing), then printed.

use anyhow::bail;
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use serde::Serialize;

use super::flags::{DnsFlags, PathFlags, RuleFlags, ServiceFlags, validated};
use crate::{
    ruleset::build::RuleBuilder,
    sources::{
        refresh::Refresher,
        resolve::{NameReport, Watcher},
    },
};

#[derive(Debug, clap::Args)]
pub struct ResolveArgs {
    #[command(flatten)]
    pub paths: PathFlags,
    #[command(flatten)]
    pub rules: RuleFlags,
    #[command(flatten)]
    pub service: ServiceFlags,
    #[command(flatten)]
    pub dns: DnsFlags,
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Report {
    names: Vec<NameReport>,
    /// Wildcard names and their sets: not resolvable ahead of time.
    wildcards: Vec<Wildcard>,
}

#[derive(Serialize)]
struct Wildcard {
    name: String,
    sets: Vec<u32>,
}

pub async fn run(args: &ResolveArgs) -> anyhow::Result<()> {
    let mut settings = args.paths.settings()?;
    args.rules.apply(&mut settings);
    args.service.apply(&mut settings);
    args.dns.apply(&mut settings);
    let settings = validated(settings)?;
    if !settings.dns.enabled {
        bail!("--no-resolve (dns.enabled = false) leaves nothing for resolve to do");
    }
    let cached = Refresher::cached_sets(&settings.sources, &settings.paths.state_dir);
    let sets = RuleBuilder::new(&settings)?.effective(&cached);
    let Some(mut watcher) = Watcher::of(&settings.dns)? else {
        return Ok(());
    };
    let report = Report {
        names: watcher.resolve_all(&sets, None).await,
        wildcards: watcher
            .names()
            .wildcard
            .iter()
            .map(|(name, sets)| Wildcard {
                name: name.clone(),
                sets: sets.clone(),
            })
            .collect(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_tables(&report);
    }
    let answered = report
        .names
        .iter()
        .any(|n| n.error.is_none() || n.error.as_deref() == Some("NXDOMAIN"));
    if !report.names.is_empty() && !answered {
        bail!(
            "no name got an answer from {}",
            resolvers_text(&settings.dns.resolvers)
        );
    }
    Ok(())
}

fn resolvers_text(resolvers: &[std::net::SocketAddr]) -> String {
    if resolvers.is_empty() {
        return "the system's resolvers".into();
    }
    let list: Vec<String> = resolvers.iter().map(ToString::to_string).collect();
    list.join(", ")
}

fn print_tables(report: &Report) {
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY).set_header([
        "name",
        "addresses",
        "TTL",
        "endpoint sets",
        "CNAMEs / error",
    ]);
    for n in &report.names {
        let addrs: Vec<String> = n.addrs.iter().map(ToString::to_string).collect();
        let sets: Vec<String> = n.sets.iter().map(u32::to_string).collect();
        let note = match &n.error {
            Some(e) => e.clone(),
            None => n.chain.join(" > "),
        };
        table.add_row([
            n.name.clone(),
            addrs.join("\n"),
            n.ttl.map(|t| format!("{t}s")).unwrap_or_default(),
            sets.join(","),
            note,
        ]);
    }
    println!("{table}");
    if !report.wildcards.is_empty() {
        let mut table = Table::new();
        table.load_preset(UTF8_BORDERS_ONLY).set_header([
            "wildcard name (not resolvable ahead of time)",
            "endpoint sets",
        ]);
        for w in &report.wildcards {
            let sets: Vec<String> = w.sets.iter().map(u32::to_string).collect();
            table.add_row([w.name.clone(), sets.join(",")]);
        }
        println!("{table}");
    }
}
