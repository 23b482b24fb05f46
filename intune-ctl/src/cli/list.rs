//! `intune-ctl list`: the effective rule set, every prefix with its ports, endpoint sets and
//! where they came from.

use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use serde::Serialize;

use super::common::{RuleArgs, ServiceArgs};
use crate::{endpoints::Ports, rules::Target};

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub rules: RuleArgs,
    #[command(flatten)]
    pub service: ServiceArgs,
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Row {
    prefix: String,
    ports: Ports,
    endpoint_sets: Vec<u32>,
    sources: Vec<String>,
    excluded: bool,
}

pub fn run(args: &ListArgs) -> anyhow::Result<()> {
    let cached = if args.service.no_service {
        Vec::new()
    } else {
        super::endpoints::cached_sets(&args.service)
    };
    let (_, rules) = args.rules.build(&cached, None)?;
    let rows: Vec<Row> = rules
        .rules
        .iter()
        .map(|r| {
            let mut sources: Vec<String> = r
                .sets
                .iter()
                .flat_map(|s| s.sources.iter().map(|x| x.to_string()))
                .collect();
            sources.sort();
            sources.dedup();
            Row {
                prefix: match r.target {
                    Target::Prefix(n) => n.to_string(),
                    Target::AnyAddress => "any".into(),
                },
                ports: r.effective.clone(),
                endpoint_sets: r.set_ids(),
                sources,
                excluded: r.excluded,
            }
        })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let mut table = Table::new();
    table
        .load_preset(UTF8_BORDERS_ONLY)
        .set_header(["prefix", "ports", "endpoint sets", "source"]);
    for r in rows {
        let sets: Vec<String> = r.endpoint_sets.iter().map(u32::to_string).collect();
        let ports = if r.excluded {
            "excluded".to_string()
        } else {
            r.ports.to_string()
        };
        table.add_row([r.prefix, ports, sets.join(","), r.sources.join(",")]);
    }
    println!("{table}");
    Ok(())
}
