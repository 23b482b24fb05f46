//! `intune-ctl status`: what the daemon says on its control socket; when it is not running,
//! what bpffs and the state directory still tell (the filter may well be attached).

use std::{path::PathBuf, time::Duration};

use crate::{
    config::DEFAULT_BPFFS_DIR,
    daemon::control::{self, DEFAULT_SOCKET, Request},
    datapath::pins::Pins,
    daemon::state::{DEFAULT_STATE_DIR, StateDir},
};

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[arg(long)]
    pub json: bool,
    #[arg(long, default_value = DEFAULT_SOCKET, value_name = "PATH")]
    pub control_socket: PathBuf,
    #[arg(long, default_value = DEFAULT_BPFFS_DIR, value_name = "DIR")]
    pub bpffs_dir: PathBuf,
    #[arg(long, default_value = DEFAULT_STATE_DIR, value_name = "DIR")]
    pub state_dir: PathBuf,
}

pub fn run(args: &StatusArgs) -> anyhow::Result<()> {
    let status = match control::ask(
        &args.control_socket,
        Request::Status,
        Duration::from_secs(5),
    ) {
        Ok(status) => status,
        Err(e) => {
            tracing::debug!(error = format!("{e:#}"), "no daemon on the control socket");
            let rules = StateDir::open(&args.state_dir)
                .ok()
                .and_then(|s| s.load_rules().ok().flatten())
                .map_or(0, |r| r.len());
            let linked = Pins::new(&args.bpffs_dir).linked_ifaces();
            serde_json::json!({
                "daemon": "not running",
                "interfaces": linked.iter().map(|n| serde_json::json!({"name": n, "attached": "pinned"})).collect::<Vec<_>>(),
                "rules": rules,
            })
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    print!("{}", human(&status));
    Ok(())
}

/// The status as lines for a person.
fn human(s: &serde_json::Value) -> String {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    };
    let mut out = String::new();
    out.push_str(&format!("daemon: {}", text(&s["daemon"])));
    if s["pid"].is_number() {
        out.push_str(&format!(
            " (pid {}, up {})",
            s["pid"],
            humantime::format_duration(Duration::from_secs(
                s["uptime_seconds"].as_u64().unwrap_or(0)
            ))
        ));
    }
    out.push('\n');
    for i in s["interfaces"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "interface {}: {} {}\n",
            text(&i["name"]),
            text(&i["attached"]),
            i.get("direction").map(text).unwrap_or_default()
        ));
    }
    if !s["mode"].is_null() {
        out.push_str(&format!("mode: {}\n", text(&s["mode"])));
    }
    out.push_str(&format!("rules: {}", text(&s["rules"])));
    if let Some(by) = s["rules_by_source"].as_object() {
        let parts: Vec<String> = by.iter().map(|(k, v)| format!("{k} {v}")).collect();
        out.push_str(&format!(" ({})", parts.join(", ")));
    }
    out.push('\n');
    if let Some(svc) = s["service"].as_object() {
        out.push_str(&format!(
            "web service: {} version {}, last check {}, next in {} s\n",
            text(&svc["url"]),
            text(&svc["version"]),
            svc["last_check"]
                .as_object()
                .map_or("-".into(), |c| format!(
                    "{} ({})",
                    text(&c["at"]),
                    text(&c["outcome"])
                )),
            text(&svc["next_check_in_seconds"])
        ));
    } else if s["daemon"] == "running" {
        out.push_str("web service: off\n");
    }
    if let Some(r) = s["resolver"].as_object() {
        out.push_str(&format!(
            "resolver: {} names, {} addresses{}{}\n",
            text(&r["names"]),
            text(&r["resolved_addresses"]),
            if r["down"] == true {
                ", DOWN (addresses kept)"
            } else {
                ""
            },
            r["failing"]
                .as_array()
                .filter(|f| !f.is_empty())
                .map_or(String::new(), |f| format!(
                    ", failing: {}",
                    f.iter().map(text).collect::<Vec<_>>().join(" ")
                ))
        ));
    }
    if let Some(w) = s["wildcards"].as_array().filter(|w| !w.is_empty()) {
        out.push_str(&format!(
            "wildcard names (not resolvable ahead of time): {}\n",
            w.iter().map(text).collect::<Vec<_>>().join(" ")
        ));
    }
    if let Some(k) = s["kernel"].as_object() {
        out.push_str(&format!(
            "kernel: Linux {}, DNS capture by {}\n",
            text(&k["version"]),
            text(&k["dns_capture"])
        ));
        for d in k["degraded"].as_array().into_iter().flatten() {
            out.push_str(&format!("  degraded: {}\n", text(d)));
        }
    }
    out
}
