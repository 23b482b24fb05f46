//! `intune-ctl list`: the effective rule set, every prefix with its ports, endpoint sets and
//! where they came from.

use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use std::collections::HashMap;

use serde::Serialize;

use super::common::{RuleArgs, ServiceArgs};
use crate::{
    sources::endpoints::{Category, Ports},
    sources::resolve::Names,
    ruleset::rules::Target,
    daemon::state::{LearnedAddress, ResolvedAddress, StateDir},
};

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
    /// Per endpoint set: where it came from, its category, whether it is required.
    provenance: Vec<Provenance>,
    excluded: bool,
}

/// What `list --json` prints.
#[derive(Serialize)]
struct List {
    rules: Vec<Row>,
    names: Vec<NameRow>,
    /// The addresses the daemon resolved the names to, with their expiry (from its state).
    resolved: Vec<ResolvedAddress>,
    /// The addresses the daemon learned from DNS answers crossing the gateway.
    learned: Vec<LearnedAddress>,
}

#[derive(Serialize)]
struct NameRow {
    name: String,
    endpoint_sets: Vec<u32>,
    /// Has a `*`: cannot be resolved ahead of time.
    wildcard: bool,
}

#[derive(Serialize)]
struct Provenance {
    set: u32,
    sources: Vec<String>,
    category: Option<Category>,
    required: Option<bool>,
}

impl std::fmt::Display for Provenance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.set, self.sources.join("+"))?;
        if let Some(category) = self.category {
            write!(f, " {category:?}")?;
        }
        if self.required == Some(true) {
            f.write_str(" required")?;
        }
        Ok(())
    }
}

pub fn run(args: &ListArgs) -> anyhow::Result<()> {
    let cached = if args.service.no_service {
        Vec::new()
    } else {
        super::endpoints::cached_sets(&args.service)
    };
    let (sets, rules) = args.rules.build(&cached, None)?;
    // Sets of one id from several sources share category and required: the first tells.
    let mut about: HashMap<u32, (Category, bool)> = HashMap::new();
    for set in &sets {
        about.entry(set.id).or_insert((set.category, set.required));
    }
    let rows: Vec<Row> = rules
        .rules
        .iter()
        .map(|r| {
            let sources = r.sources();
            let provenance = r
                .sets
                .iter()
                .map(|s| Provenance {
                    set: s.id,
                    sources: s.sources.iter().map(|x| x.to_string()).collect(),
                    category: about.get(&s.id).map(|a| a.0),
                    required: about.get(&s.id).map(|a| a.1),
                })
                .collect();
            Row {
                prefix: match r.target {
                    Target::Prefix(n) => n.to_string(),
                    Target::AnyAddress => "any".into(),
                },
                ports: r.effective.clone(),
                endpoint_sets: r.set_ids(),
                sources,
                provenance,
                excluded: r.excluded,
            }
        })
        .collect();
    let names = Names::of(&sets);
    let name_rows: Vec<NameRow> = names
        .exact
        .iter()
        .map(|(n, ids)| (n, ids, false))
        .chain(names.wildcard.iter().map(|(n, ids)| (n, ids, true)))
        .map(|(name, sets, wildcard)| NameRow {
            name: name.clone(),
            endpoint_sets: sets.clone(),
            wildcard,
        })
        .collect();
    let state = StateDir::open(&args.service.state_dir).ok();
    let resolved = state
        .as_ref()
        .and_then(|s| s.load_resolved().ok())
        .unwrap_or_default();
    let learned = state
        .as_ref()
        .and_then(|s| s.load_learned().ok())
        .unwrap_or_default();
    if args.json {
        let list = List {
            rules: rows,
            names: name_rows,
            resolved,
            learned,
        };
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY).set_header([
        "prefix",
        "ports",
        "endpoint sets (source, category)",
    ]);
    for r in rows {
        let sets: Vec<String> = r.provenance.iter().map(Provenance::to_string).collect();
        let ports = if r.excluded {
            "excluded".to_string()
        } else {
            r.ports.to_string()
        };
        table.add_row([r.prefix, ports, sets.join("\n")]);
    }
    println!("{table}");
    let mut table = Table::new();
    table
        .load_preset(UTF8_BORDERS_ONLY)
        .set_header(["name", "endpoint sets", "matched by"]);
    for n in name_rows {
        let sets: Vec<String> = n.endpoint_sets.iter().map(u32::to_string).collect();
        let how = if n.wildcard {
            "wildcard: not resolvable ahead of time"
        } else {
            "its addresses, resolved on a schedule"
        };
        table.add_row([n.name, sets.join(","), how.to_string()]);
    }
    println!("{table}");
    if !resolved.is_empty() {
        let mut table = Table::new();
        table.load_preset(UTF8_BORDERS_ONLY).set_header([
            "resolved address",
            "name",
            "endpoint sets",
            "expires",
        ]);
        for r in resolved {
            let sets: Vec<String> = r.endpoint_sets.iter().map(u32::to_string).collect();
            table.add_row([r.address.to_string(), r.name, sets.join(","), r.expires_at]);
        }
        println!("{table}");
    }
    if !learned.is_empty() {
        let mut table = Table::new();
        table.load_preset(UTF8_BORDERS_ONLY).set_header([
            "learned address",
            "asked for",
            "endpoint name",
            "endpoint sets",
            "expires",
        ]);
        for l in learned {
            let sets: Vec<String> = l.endpoint_sets.iter().map(u32::to_string).collect();
            table.add_row([
                l.address.to_string(),
                l.asked,
                l.pattern,
                sets.join(","),
                l.expires_at,
            ]);
        }
        println!("{table}");
    }
    Ok(())
}
