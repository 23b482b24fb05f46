//! `intune-ctl check`: would a device behind this gateway reach what Intune needs, right now?
//! Answered by the live filter (see `check`); exit 0 when every required set passes, 1 when
//! something required would be blocked, 2 when the check could not run.

use std::{fmt::Write as _, process::ExitCode};

use anyhow::bail;

use super::flags::PathFlags;
use crate::{
    check::{
        Finding, Kind, Outcome, Totals,
        ask::{Filter, Installed},
        connect::connect_all,
        plan::{self, Plan},
        resolve,
    },
    daemon::state::StateDir,
    ruleset::build::RuleBuilder,
    sources::{endpoints::EndpointSet, refresh::Refresher},
};

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Only this endpoint set (repeat for more).
    #[arg(long = "set", value_name = "ID")]
    pub sets: Vec<u32>,
    /// Only this name (repeat for more); no listed prefix is checked then.
    #[arg(long = "name", value_name = "NAME")]
    pub names: Vec<String>,
    /// Also open a TCP connection from the gateway to one address of each name on port 443
    /// (off by default: it sends traffic).
    #[arg(long)]
    pub connect: bool,
    /// One JSON object per checked (set, name, address, port).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub paths: PathFlags,
}

pub async fn run(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let settings = args.paths.settings()?;
    let probe = super::common::live_probe(&settings)?;
    let state = StateDir::open(&settings.paths.state_dir)?;
    let rules = state.load_rules()?.unwrap_or_default();
    let listing = state.load_listing()?.map(|l| l.rules).unwrap_or_default();
    let learned = state.load_learned()?;
    let cached = Refresher::cached_sets(&settings.sources, &settings.paths.state_dir);
    let sets = RuleBuilder::new(&settings)?.effective(&cached);
    let narrow = plan::Filter {
        sets: args.sets.clone(),
        names: args.names.clone(),
    };
    let plan = Plan::of(&sets, &learned, &narrow);
    if let Some(id) = args
        .sets
        .iter()
        .find(|id| !sets.iter().any(|s| s.id == **id))
    {
        bail!("--set {id}: the rule set has no endpoint set {id}");
    }
    if let Some(name) = args
        .names
        .iter()
        .find(|n| !plan.names.iter().any(|c| c.name.eq_ignore_ascii_case(n)))
    {
        bail!("--name {name}: no endpoint set (of those checked) lists that name");
    }
    let resolved = resolve::names_of(&plan, &sets, &settings.dns).await?;
    let filter = Filter::new(
        &probe,
        Installed {
            rules: &rules,
            listing: &listing,
            learned: &learned,
            learning: settings.dns.learn_from_dns,
        },
    )?;
    let mut findings = filter.findings(&plan, &resolved)?;
    if args.connect {
        connect_all(&mut findings).await;
    }
    let totals = Totals::of(&findings);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&findings)?);
    } else {
        print!("{}", text(&sets, &findings, &totals, filter.enforcing));
    }
    Ok(if totals.blocked_required > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The report: by set (required first), one line per name or prefix address and result with
/// its ports; totals at the end.
fn text(sets: &[EndpointSet], findings: &[Finding], totals: &Totals, enforcing: bool) -> String {
    let mut out = String::new();
    if !enforcing {
        out.push_str("The filter is in monitor mode: this is what enforce mode would do.\n");
    }
    let mut last_set = None;
    let mut i = 0;
    while i < findings.len() {
        let f = &findings[i];
        if last_set != Some(f.set) {
            last_set = Some(f.set);
            let area = sets
                .iter()
                .find(|s| s.id == f.set)
                .map(|s| s.service_area_display_name.clone())
                .unwrap_or_default();
            let required = if f.required { ", required" } else { "" };
            let _ = writeln!(out, "\nendpoint set {} ({area}{required})", f.set);
        }
        // Findings that differ only in their port share a line.
        let (label, status) = (label(f), status(f));
        let mut ports = Vec::new();
        let mut connect = None;
        while i < findings.len()
            && findings[i].set == f.set
            && label == self::label(&findings[i])
            && status == self::status(&findings[i])
        {
            if let (Some(proto), Some(port)) = (findings[i].proto, findings[i].port) {
                ports.push(format!("{proto:?}/{port}").to_lowercase());
            }
            connect = connect.or(findings[i].connect.clone());
            i += 1;
        }
        let (word, detail) = status;
        let mut line = format!("  {word:<9} {label}");
        if !ports.is_empty() {
            let _ = write!(line, " {}", ports.join(" "));
        }
        if let Some(detail) = detail {
            let _ = write!(line, ": {detail}");
        }
        if let Some(c) = connect {
            let _ = write!(line, " (connect to 443 from the gateway: {c})");
        }
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(
        out,
        "\n{} packets pass, {} blocked ({} in required sets), {} learnable when a device asks; {} names unresolved, {} wildcards with nothing to try",
        totals.passes,
        totals.blocked,
        totals.blocked_required,
        totals.learnable,
        totals.unresolved,
        totals.untried
    );
    out
}

/// The name (with how it came to be checked) or the prefix, and the address.
fn label(f: &Finding) -> String {
    let name = f.name.clone().unwrap_or_default();
    let address = f.address.map(|a| format!(" {a}")).unwrap_or_default();
    match &f.kind {
        Kind::Name => format!("{name}{address}"),
        Kind::Example { wildcard } => format!("{name} (example of {wildcard}){address}"),
        Kind::Learned { wildcard } => format!("{name} (learned under {wildcard}){address}"),
        Kind::Wildcard => name,
        Kind::Prefix { prefix } => format!("{}, of {prefix},", address.trim_start()),
    }
}

/// The result in a word, and what there is to say about it.
fn status(f: &Finding) -> (&'static str, Option<String>) {
    match &f.result {
        Outcome::Passes { .. } => ("pass", None),
        Outcome::Blocked { why, .. } => ("BLOCKED", Some(why.to_string())),
        Outcome::Learnable => (
            "learnable",
            Some("not listed yet; learned from a device's own DNS answer".into()),
        ),
        Outcome::Unresolved { error } => ("no answer", Some(error.clone())),
        Outcome::Untried => (
            "untried",
            Some("no learned or example name under it".into()),
        ),
    }
}
