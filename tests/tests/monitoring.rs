//! The shipped alert rules and Grafana dashboard: promtool checks the rules and runs their unit
//! tests (series and expected alerts written by hand), and parses every dashboard query. That
//! the daemon exports every metric they use is checked against a real daemon's scrape in
//! `learn.rs`. Needs promtool (Debian's prometheus; `cargo xtask setup` installs it).

use std::process::Command;

use intune_tests::{
    monitoring::{alert_queries, dashboard_queries, families_named, packaging},
    output,
};

fn promtool(args: &[&str], dir: &std::path::Path) -> (i32, String, String) {
    output(Command::new("promtool").args(args).current_dir(dir))
}

#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests() {
    let rules = packaging("prometheus/intune-xdp.rules.yml");
    let (code, out, err) = promtool(
        &["check", "rules", rules.to_str().unwrap()],
        std::path::Path::new("."),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("SUCCESS: 6 rules found"), "{out}");
    let tests = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("prometheus");
    let (code, out, err) = promtool(&["test", "rules", "intune-xdp.rules.test.yml"], &tests);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn every_dashboard_query_parses() {
    let queries = dashboard_queries();
    assert!(queries.len() >= 15, "{queries:#?}");
    // Grafana's variables, as Grafana fills them in, then each query as a recording rule.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, q) in queries.iter().enumerate() {
        let q = q
            .replace("$__rate_interval", "5m")
            .replace("$instance", ".*");
        rules.push_str(&format!(
            "      - record: dashboard_query_{i}\n        expr: {}\n",
            serde_json::to_string(&q).unwrap()
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard.rules.yml");
    std::fs::write(&file, rules).unwrap();
    let (code, out, err) = promtool(&["check", "rules", file.to_str().unwrap()], dir.path());
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn the_dashboard_shows_what_an_admin_watches() {
    let used = families_named(&dashboard_queries().join("\n"));
    for family in [
        "intune_xdp_outcome_packets",
        "intune_xdp_set_bytes",
        "intune_xdp_port_packets",
        "intune_xdp_unmatched_port_packets",
        "intune_xdp_learned_addresses",
        "intune_xdp_learn_answers",
        "intune_xdp_learn_ring_lost",
        "intune_xdp_resolver_lookups",
        "intune_xdp_resolver_failing_names",
        "intune_xdp_refresh_last_success_timestamp_seconds",
        "intune_xdp_map_update_duration_seconds",
    ] {
        assert!(
            used.contains(family),
            "{family} not on the dashboard: {used:?}"
        );
    }
    let alerts = families_named(&alert_queries());
    assert!(
        alerts.contains("intune_xdp_unmatched_port_packets"),
        "{alerts:?}"
    );
}
