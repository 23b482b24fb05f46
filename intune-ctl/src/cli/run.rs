//! `intune-ctl run`: attach the filter to interfaces, show its hit counters until stopped.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, bail};
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use tokio::signal::unix::{SignalKind, signal};

use super::{
    common::{DnsArgs, PolicyArgs, RuleArgs, ServiceArgs},
    settings::Given,
};
use crate::{
    changes,
    config::DEFAULT_BPFFS_DIR,
    datapath::{Datapath, V4Lookup, XdpChoice, bpffs, load::Attached, pins::Pins},
    endpoints::EndpointSet,
    policy::Direction,
    resolve::Watcher,
    rules::{Rule, RuleSet},
    state::{InstalledRule, StateDir},
    updater,
};

#[derive(Clone, Debug, clap::Args)]
pub struct RunArgs {
    /// The config file; flags given here override it. Default: /etc/intune-ctl/config.toml
    /// when it exists.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Interface to attach to (repeatable); `IF:DIR` gives it its own direction (dst, src, both).
    #[arg(long = "iface", value_name = "IF[:DIR]", value_parser = parse_iface)]
    pub ifaces: Vec<IfaceSpec>,
    #[command(flatten)]
    pub rules: RuleArgs,
    #[command(flatten)]
    pub service: ServiceArgs,
    #[command(flatten)]
    pub dns: DnsArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// auto: native where the driver has it, else generic.
    #[arg(long, value_enum, default_value_t)]
    pub xdp_mode: XdpChoice,
    /// Seconds between hit-counter tables.
    #[arg(long, default_value_t = 5, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub interval: u64,
    /// Where the program, its maps and links are pinned (bpffs is mounted when missing).
    #[arg(long, alias = "bpffs", default_value = DEFAULT_BPFFS_DIR, value_name = "DIR")]
    pub bpffs_dir: PathBuf,
    /// Serve Prometheus metrics on this address.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Remove the filter when the daemon stops (by default it stays attached).
    #[arg(long)]
    pub detach_on_stop: bool,
}

/// One interface to attach to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfaceSpec {
    pub name: String,
    pub direction: Option<Direction>,
    /// The command's `--xdp-mode` when absent.
    pub xdp_mode: Option<XdpChoice>,
}

/// `IF` or `IF:DIR`: an interface name cannot hold a colon.
fn parse_iface(text: &str) -> Result<IfaceSpec, String> {
    let (name, direction) = match text.split_once(':') {
        None => (text, None),
        Some((name, dir)) => {
            let dir = <Direction as clap::ValueEnum>::from_str(dir, true)
                .map_err(|_| format!("{dir:?} is not a direction (dst, src, both)"))?;
            (name, Some(dir))
        }
    };
    Ok(IfaceSpec {
        name: name.to_string(),
        direction,
        xdp_mode: None,
    })
}

pub async fn run(args: &RunArgs, given: &Given<'_>) -> anyhow::Result<()> {
    // Before anything is attached: a SIGTERM during start-up must stop cleanly too.
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let args = &args.with_config(&args.read_config()?, given)?;
    let mut policy = args.policy.policy();
    if args.ifaces.is_empty() {
        bail!("no interface to attach to: give --iface IF or an [[interface]] in the config");
    }
    for iface in &args.ifaces {
        let ifindex = nix_ifindex(&iface.name);
        if ifindex == 0 {
            bail!("interface {} does not exist", iface.name);
        }
        if let Some(dir) = iface.direction {
            policy.iface_directions.push((ifindex, dir));
        }
    }
    // Read every source before touching the kernel: bad input stops here.
    let mut refresher = args.service.refresher()?;
    let cached: Vec<EndpointSet> = refresher
        .as_ref()
        .and_then(|r| r.accepted())
        .map(|a| a.sets.clone())
        .unwrap_or_default();
    let state = StateDir::open(&args.service.state_dir)?;
    // The rules a previous daemon installed keep their indices: their counters carry on.
    let previous = match state.load_rules() {
        Ok(Some(installed)) => Some(RuleSet::from_indices(
            installed
                .iter()
                .filter_map(|r| r.target().map(|t| (t, r.index))),
        )),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "ignoring the recorded rules; counters start over");
            None
        }
    };
    let (sets, rules) = args.rules.build(&cached, previous.as_ref())?;
    let mut watcher = args.dns.watcher()?;
    if let Some(w) = watcher.as_mut() {
        w.follow(&sets, std::time::Instant::now());
    }
    bpffs::ensure_dir(&args.bpffs_dir).with_context(|| {
        format!(
            "making the pin directory {} on bpffs (are you root?)",
            args.bpffs_dir.display()
        )
    })?;
    // Room for a few addresses per name beside the listed prefixes; beyond it IPv4 falls
    // back to the trie, slower but whole.
    let exact_names = watcher.as_ref().map_or(0, |w| w.names().exact.len());
    let pins = Pins::new(&args.bpffs_dir);
    let mut dp = load_datapath_pinned(&rules, &policy, exact_names * 4, &pins)?;
    if let Some(previous) = &previous {
        forget_left_rules(&mut dp, previous, &rules)?;
    }
    let wildcards = watcher.as_ref().map_or(0, |w| w.names().wildcard.len());
    println!(
        "loaded {} endpoint sets: {} prefixes in {} rules, {} port sets, IPv4 lookup by {}; {} names to resolve, {} wildcard names",
        sets.len(),
        rules.prefix_count(),
        rules.rules.len(),
        rules.port_sets.len(),
        match dp.v4_lookup() {
            V4Lookup::Table => "table",
            V4Lookup::Trie => "trie",
        },
        exact_names,
        wildcards
    );
    for iface in &args.ifaces {
        let how =
            match dp.attach_pinned(&iface.name, iface.xdp_mode.unwrap_or(args.xdp_mode), &pins)? {
                Attached::New(mode) => format!("{mode} XDP"),
                Attached::Replaced => "replaced the running program, no gap".to_string(),
            };
        let dir = iface.direction.unwrap_or(policy.direction);
        println!(
            "attached to {} ({how}), mode {:?}, direction {dir:?}",
            iface.name, policy.mode
        );
    }
    for stale in pins.linked_ifaces() {
        if !args.ifaces.iter().any(|i| i.name == stale) {
            tracing::warn!(
                iface = stale,
                "still filtered by an earlier run's program; `intune-ctl detach --iface {stale}` removes it"
            );
        }
    }
    dp.pin_program_at(&pins).context("pinning the program")?;
    dp.pin_lookup_maps(&pins)
        .context("pinning the lookup maps")?;
    remember(&state, &dp);
    if let Some(r) = &refresher {
        let cause = match r.accepted() {
            Some(a) => format!("start (cached service version {})", a.version),
            None => "start".to_string(),
        };
        updater::record(&state, changes::summarize(None, &rules, &cause));
    }

    let mut ticker = tokio::time::interval(Duration::from_secs(args.interval));
    ticker.tick().await;
    // The first check comes at once; the next after the interval, or what a 429 asks.
    let mut next_poll = tokio::time::Instant::now();
    loop {
        let resolve_at = watcher.as_ref().and_then(|w| w.next_wakeup());
        tokio::select! {
            _ = ticker.tick() => print_counters(&dp, watcher.as_ref())?,
            _ = tokio::time::sleep_until(next_poll), if refresher.is_some() => {
                let Some(r) = refresher.as_mut() else { continue };
                let state = StateDir::open(&args.service.state_dir).ok();
                let build = |service: &[EndpointSet], previous: Option<&RuleSet>| {
                    args.rules.build_resolved(service, watcher.as_ref(), previous).map(|(_, rules)| rules)
                };
                let wait = updater::refresh(r, &build, &mut dp, state.as_ref()).await;
                if let Some(state) = &state {
                    remember(state, &dp);
                }
                next_poll = tokio::time::Instant::now() + wait.max(args.service.interval());
                // The new list may name other hosts: follow them.
                if let Some(w) = watcher.as_mut() {
                    let service = service_sets(refresher.as_ref());
                    if let Ok(sets) = args.rules.effective(&service) {
                        w.follow(&sets, std::time::Instant::now());
                    }
                }
            }
            _ = sleep_until_some(resolve_at), if resolve_at.is_some() => {
                let Some(w) = watcher.as_mut() else { continue };
                let service = service_sets(refresher.as_ref());
                let rebuild = |w: &crate::resolve::Watcher, previous: Option<&RuleSet>| {
                    args.rules.build_resolved(&service, Some(w), previous).map(|(_, rules)| rules)
                };
                if updater::resolve(w, &rebuild, &mut dp).await.changed() {
                    remember(&state, &dp);
                }
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    print_counters(&dp, watcher.as_ref())?;
    let names: Vec<&str> = args.ifaces.iter().map(|i| i.name.as_str()).collect();
    if args.detach_on_stop {
        pins.remove_all()
            .with_context(|| format!("removing the pins under {}", pins.dir().display()))?;
        println!("detached from {}", names.join(", "));
    } else {
        println!(
            "stopped; the filter stays attached to {} (`intune-ctl detach` removes it)",
            names.join(", ")
        );
    }
    Ok(())
}

/// Loads the program with the counters a previous daemon pinned (or new pinned ones), room
/// for `rules` and `headroom` more, and fills its maps.
fn load_datapath_pinned(
    rules: &RuleSet,
    policy: &crate::policy::Policy,
    headroom: usize,
    pins: &Pins,
) -> anyhow::Result<Datapath> {
    let capacity = crate::datapath::Capacity::for_prefixes(rules.index_bound() + headroom);
    let mut dp = Datapath::load_pinned(capacity, pins).context("loading the XDP program")?;
    dp.install(rules, policy, false)
        .context("filling the program's maps")?;
    Ok(dp)
}

/// Rules a previous daemon had that this one does not: their hits are logged once and their
/// counters zeroed, so a new rule given the index later starts from nothing.
fn forget_left_rules(dp: &mut Datapath, previous: &RuleSet, rules: &RuleSet) -> anyhow::Result<()> {
    let left: Vec<&Rule> = previous
        .rules
        .iter()
        .filter(|r| rules.rule_by_target(&r.target).is_none())
        .collect();
    let counters = dp.rule_counters_of(left.iter().map(|r| r.index))?;
    for (rule, c) in left.iter().zip(counters) {
        if c.packets > 0 {
            tracing::info!(prefix = %rule.target, packets = c.packets, bytes = c.bytes, "rule removed since the last run");
        }
    }
    dp.zero_rule_counters(left.iter().map(|r| r.index))?;
    Ok(())
}

/// Records the installed rules in the state directory (for a restart and for `stats`).
fn remember(state: &StateDir, dp: &Datapath) {
    if let Some(Err(e)) = dp
        .installed()
        .map(|rules| state.save_rules(&InstalledRule::of(rules)))
    {
        tracing::warn!(error = %e, "recording the installed rules");
    }
}

/// The service's sets in force (the accepted list), or none.
fn service_sets(refresher: Option<&crate::refresh::Refresher>) -> Vec<EndpointSet> {
    refresher
        .and_then(|r| r.accepted())
        .map(|a| a.sets.clone())
        .unwrap_or_default()
}

async fn sleep_until_some(at: Option<std::time::Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at.into()).await;
    }
}

fn nix_ifindex(iface: &str) -> u32 {
    match std::ffi::CString::new(iface) {
        // SAFETY: a valid C string.
        Ok(c) => unsafe { libc::if_nametoindex(c.as_ptr()) },
        Err(_) => 0,
    }
}

/// The outcome counters, then the rules with hits, most hits first, with the names that
/// resolved to each address.
pub fn print_counters(dp: &Datapath, watcher: Option<&Watcher>) -> anyhow::Result<()> {
    let empty = RuleSet::default();
    let rules = dp.installed().unwrap_or(&empty);
    let mut table = Table::new();
    table
        .load_preset(UTF8_BORDERS_ONLY)
        .set_header(["outcome", "packets", "bytes"]);
    for (outcome, c) in dp.outcome_counters()? {
        table.add_row([
            outcome.counter_name().to_string(),
            c.packets.to_string(),
            c.bytes.to_string(),
        ]);
    }
    println!("{table}");
    let counters = dp.rule_counters_of(rules.rules.iter().map(|r| r.index))?;
    let mut hits: Vec<(&Rule, _)> = rules
        .rules
        .iter()
        .zip(counters)
        .filter(|(_, c)| c.packets > 0)
        .collect();
    hits.sort_by_key(|(_, c)| std::cmp::Reverse(c.packets));
    if hits.is_empty() {
        println!("no rule hits yet");
        return Ok(());
    }
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY).set_header([
        "prefix",
        "names",
        "endpoint sets",
        "ports",
        "packets",
        "bytes",
    ]);
    let addresses = watcher.map(Watcher::addresses).unwrap_or_default();
    for (rule, c) in hits {
        let sets: Vec<String> = rule.sets.iter().map(|s| s.id.to_string()).collect();
        let names = match rule.target {
            crate::rules::Target::Prefix(net) if net.prefix_len() == net.max_prefix_len() => {
                addresses
                    .get(&net.addr())
                    .map(|n| n.join(","))
                    .unwrap_or_default()
            }
            _ => String::new(),
        };
        table.add_row([
            rule.target.to_string(),
            names,
            sets.join(","),
            rule.effective.to_string(),
            c.packets.to_string(),
            c.bytes.to_string(),
        ]);
    }
    println!("{table}");
    Ok(())
}
