//! `intune-ctl list`: the rule set the daemon installed, every prefix with its ports, endpoint
//! sets and where they came from, the names it matches, and the addresses resolved and
//! learned for them.

use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use serde::Serialize;

use super::flags::{PathFlags, RuleFlags, ServiceFlags, validated};
use crate::{
    daemon::state::{LearnedAddress, ResolvedAddress, StateDir},
    ruleset::{
        build::RuleBuilder,
        listing::{Listing, NameRow, Provenance, Row},
    },
    sources::refresh::Refresher,
};

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub paths: PathFlags,
    #[command(flatten)]
    pub rules: RuleFlags,
    #[command(flatten)]
    pub service: ServiceFlags,
    #[arg(long)]
    pub json: bool,
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

/// The rules the daemon installed, as it recorded them; with flags that shape the rule set,
/// or when no daemon recorded any, the rule set the settings make (from the service's cached
/// list, without a request).
pub fn run(args: &ListArgs) -> anyhow::Result<()> {
    let mut settings = args.paths.settings()?;
    args.rules.apply(&mut settings);
    args.service.apply(&mut settings);
    let settings = validated(settings)?;
    let state = StateDir::open(&settings.paths.state_dir).ok();
    let recorded = if args.rules.any() {
        None
    } else {
        state.as_ref().and_then(|s| match s.load_listing() {
            Ok(listing) => listing,
            Err(e) => {
                tracing::warn!(error = %e, "the daemon's listing; showing what the settings make");
                None
            }
        })
    };
    let Listing {
        rules: rows,
        names: name_rows,
    } = if let Some(listing) = recorded {
        listing
    } else {
        if state
            .as_ref()
            .is_some_and(|s| s.load_rules().ok().flatten().is_none())
            && !args.rules.any()
        {
            eprintln!(
                "no rules recorded by a daemon in {}: this is the rule set the settings make",
                settings.paths.state_dir.display()
            );
        }
        let cached = Refresher::cached_sets(&settings.sources, &settings.paths.state_dir);
        let (sets, rules) = RuleBuilder::new(&settings)?.build(&cached, &[], None)?;
        Listing::of(&sets, &rules)
    };
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
