//! `intune-ctl status`: what the daemon says on its control socket; when it is not running,
//! what bpffs and the state directory still tell (the filter may well be attached).

use std::time::Duration;

use crate::{
    daemon::{
        control,
        protocol::{InterfaceStatus, Request, StatusReport},
        state::StateDir,
    },
    datapath::pins::Pins,
};

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub paths: super::flags::PathFlags,
}

pub fn run(args: &StatusArgs) -> anyhow::Result<()> {
    let settings = args.paths.settings()?;
    let paths = &settings.paths;
    let status = match control::ask::<StatusReport>(
        &paths.control_socket,
        Request::Status,
        Duration::from_secs(5),
    ) {
        Ok(status) => status,
        Err(e) => {
            tracing::debug!(error = format!("{e:#}"), "no daemon on the control socket");
            let rules = StateDir::open(&paths.state_dir)
                .ok()
                .and_then(|s| s.load_rules().ok().flatten())
                .map_or(0, |r| r.len());
            let pins = Pins::new(&paths.bpffs_dir);
            StatusReport {
                daemon: "not running".into(),
                interfaces: pins
                    .linked_ifaces()
                    .into_iter()
                    .map(|name| pinned_status(&pins, name))
                    .collect(),
                rules,
                ..StatusReport::default()
            }
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    print!("{}", human(&status));
    Ok(())
}

/// What the pin of `name`'s link tells with no daemon running: the filter is on the
/// interface, on nothing (severed: the interface was deleted; the next start attaches anew),
/// or on the interface that had the name before a rename.
fn pinned_status(pins: &Pins, name: String) -> InterfaceStatus {
    let on = pins.link_ifindex(&name);
    let here = crate::datapath::link_ifindex::ifindex_of(&name);
    let (state, attached, error) = match on {
        Some(0) => (
            "severed",
            None,
            Some(
                "its interface was deleted: the filter is on nothing until the daemon starts"
                    .into(),
            ),
        ),
        Some(i) if Some(i) != here => (
            "elsewhere",
            Some("pinned".into()),
            Some(format!(
                "the link is on ifindex {i}, not on the interface named so now (renamed?)"
            )),
        ),
        _ => ("pinned", Some("pinned".into()), None),
    };
    InterfaceStatus {
        ifindex: on.filter(|i| *i != 0),
        state: Some(state.into()),
        attached,
        error,
        ..InterfaceStatus::named(name)
    }
}

/// The status as lines for a person.
fn human(s: &StatusReport) -> String {
    use std::fmt::Write as _;
    let or_dash = |v: Option<&str>| v.unwrap_or("-").to_string();
    let mut out = String::new();
    let _ = write!(out, "daemon: {}", s.daemon);
    if let Some(pid) = s.pid {
        let up = humantime::format_duration(Duration::from_secs(s.uptime_seconds.unwrap_or(0)));
        let _ = write!(out, " (pid {pid}, up {up})");
    }
    out.push('\n');
    for i in &s.interfaces {
        let dir = i
            .direction
            .map(|d| format!("{d:?}").to_lowercase())
            .unwrap_or_default();
        let state = i.state.as_deref().unwrap_or("attached");
        let how = i
            .attached
            .as_deref()
            .filter(|h| *h != state)
            .map(|h| format!(" ({h})"))
            .unwrap_or_default();
        let why = i
            .error
            .as_deref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        let _ = writeln!(out, "interface {}: {state}{how} {dir}{why}", i.name);
    }
    if let Some(mode) = s.mode {
        let _ = writeln!(out, "mode: {}", format!("{mode:?}").to_lowercase());
    }
    let _ = write!(out, "rules: {}", s.rules);
    if !s.rules_by_source.is_empty() {
        let parts: Vec<String> = s
            .rules_by_source
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = write!(out, " ({})", parts.join(", "));
    }
    out.push('\n');
    if let Some(svc) = &s.service {
        let last = svc
            .last_check
            .as_ref()
            .map_or("-".into(), |c| format!("{} ({})", c.at, c.outcome));
        let checking = if svc.checking { ", checking now" } else { "" };
        let _ = writeln!(
            out,
            "web service: {} version {}, last check {last}, next in {} s{checking}",
            svc.url,
            or_dash(svc.version.as_deref()),
            svc.next_check_in_seconds
        );
    } else if s.daemon == "running" {
        out.push_str("web service: off\n");
    }
    if let Some(r) = &s.resolver {
        let down = if r.down {
            ", DOWN (addresses kept)"
        } else {
            ""
        };
        let failing = if r.failing.is_empty() {
            String::new()
        } else {
            format!(", failing: {}", r.failing.join(" "))
        };
        let _ = writeln!(
            out,
            "resolver: {} names, {} addresses{down}{failing}",
            r.names, r.resolved_addresses
        );
    }
    if !s.wildcards.is_empty() {
        let _ = writeln!(
            out,
            "wildcard names (not resolvable ahead of time): {}",
            s.wildcards.join(" ")
        );
    }
    if let Some(l) = &s.learning {
        let c = &l.counts;
        let _ = writeln!(
            out,
            "learning: {} of at most {} addresses held; {} answers captured, {} addresses taken in, {} lost to a full ring",
            l.addresses, l.max_addresses, c.answers, c.learned, c.ring_lost
        );
    }
    for w in &s.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    if let Some(k) = &s.kernel {
        let _ = writeln!(
            out,
            "kernel: Linux {}, DNS capture by {}",
            k.version, k.dns_capture
        );
        for d in &k.degraded {
            let _ = writeln!(out, "  degraded: {d}");
        }
    }
    out
}
