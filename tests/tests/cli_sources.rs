//! The source commands: `endpoints`, `list`, `changes`, against a real HTTP server on loopback
//! where the web service is needed. These read no BPF map and run without root.

use std::process::Command;

use intune_ctl::daemon::state::{ChangeRecord, SetChange, StateDir};
use intune_tests::http::{Answer, FakeService, version_body};
use serde_json::Value;

fn intune_ctl(args: &[&str]) -> (i32, String, String) {
    intune_tests::output(Command::new(env!("CARGO_BIN_EXE_intune-ctl-test")).args(args))
}

const LIST: &str = r#"[
  {"id": 900, "serviceArea": "MEM", "urls": ["*.manage.microsoft.com", "x.example.com"], "ips": ["198.51.100.0/24", "2001:db8::/32"], "tcpPorts": "443, 80", "category": "Default", "required": true},
  {"id": 46, "serviceArea": "Common", "ips": ["192.0.2.0/24"], "tcpPorts": "443", "category": "Allow", "required": true}
]"#;

#[test]
fn endpoints_from_the_service_once() {
    let svc = FakeService::start();
    svc.set_version(Answer::ok(version_body("7")));
    svc.set_endpoints(Answer::ok(LIST));
    let state = tempfile::tempdir().unwrap();
    let base = [
        "endpoints",
        "--source",
        "service",
        "--service-url",
        &svc.url,
        "--state-dir",
        state.path().to_str().unwrap(),
    ];
    let (code, stdout, stderr) = intune_ctl(&[&base[..], &["--json"]].concat());
    assert_eq!(code, 0, "{stderr}");
    let sets: Value = serde_json::from_str(&stdout).unwrap();
    let ids: Vec<u64> = sets
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [900], "Common set 46 is not an Intune dependency");
    assert_eq!(sets[0]["tcpPorts"], "80,443");
    assert_eq!(sets[0]["source"], "service");

    let (_, ips, _) = intune_ctl(&[&base[..], &["--ips"]].concat());
    assert_eq!(ips, "198.51.100.0/24\n2001:db8::/32\n");
    let (_, urls, _) = intune_ctl(&[&base[..], &["--urls"]].concat());
    assert_eq!(urls, "*.manage.microsoft.com\nx.example.com\n");
    let asked = svc.take_requests();
    assert!(
        asked.iter().all(|p| p.contains("ClientRequestId=")),
        "{asked:?}"
    );
    let ids: std::collections::BTreeSet<&str> = asked
        .iter()
        .filter_map(|p| p.rsplit("ClientRequestId=").next())
        .collect();
    assert_eq!(ids.len(), 1, "one id for the installation: {asked:?}");

    svc.set_version(Answer::status(503));
    let (code, stdout, stderr) = intune_ctl(&[&base[..], &["--service-timeout", "2"]].concat());
    assert_eq!(code, 2);
    assert!(stdout.is_empty());
    let last = stderr.trim().lines().last().unwrap_or("");
    assert!(
        last.starts_with("intune-ctl: http://127.0.0.1:")
            && last.contains("/version/Worldwide")
            && last.ends_with("HTTP 503"),
        "{stderr}"
    );

    svc.set_version(Answer::ok(version_body("8")));
    svc.set_endpoints(Answer::ok("[{\"id\": 1,"));
    let (code, _, stderr) = intune_ctl(&base);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("/endpoints/Worldwide")
            && stderr.contains("not JSON in the endpoint schema"),
        "{stderr}"
    );

    // An empty list is rejected, as the daemon rejects it.
    svc.set_version(Answer::ok(version_body("9")));
    svc.set_endpoints(Answer::ok("[]"));
    let (code, stdout, stderr) = intune_ctl(&base);
    assert_eq!(code, 2, "{stdout}");
    assert!(
        stderr.contains("version 9 is rejected: the list holds no endpoint set"),
        "{stderr}"
    );
}

#[test]
fn the_real_service_is_not_asked_more_than_hourly() {
    let (code, _, stderr) = intune_ctl(&["run", "--iface", "lo", "--refresh-interval", "60"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("below the hour the endpoint web service allows"),
        "{stderr}"
    );
}

#[test]
fn builtin_lists_and_the_effective_rule_set() {
    let (code, ips, _) = intune_ctl(&["endpoints", "--source", "builtin", "--ips"]);
    assert_eq!(code, 0);
    // Set 163's prefixes: the seed's 50, the 2026-03 article's 37 and its seven Azure Front
    // Door ranges; and Apple's 17.0.0.0/8 (set 1030).
    assert_eq!(ips.lines().count(), 50 + 37 + 7 + 1, "{ips}");
    let (_, urls, _) = intune_ctl(&["endpoints", "--source", "builtin", "--urls"]);
    for name in [
        "manage.microsoft.com",
        "*.manage.microsoft.com",
        "time.windows.com",
        "*.dm.microsoft.com",
    ] {
        assert!(urls.lines().any(|l| l == name), "{name}");
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("extra.json");
    std::fs::write(&file, r#"[{"id": 5000, "serviceArea": "MEM", "ips": ["198.51.100.0/24"], "tcpPorts": "8443", "category": "Default"}]"#).unwrap();
    let (code, stdout, stderr) = intune_ctl(&[
        "list",
        "--no-service",
        "--json",
        "--endpoints",
        file.to_str().unwrap(),
        "--exclude",
        "13.67.13.176/29",
        "--exclude",
        "manage.microsoft.com",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let list: Value = serde_json::from_str(&stdout).unwrap();
    let rows = &list["rules"];
    let row = |p: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["prefix"] == p)
            .cloned()
            .unwrap_or_else(|| panic!("{p}"))
    };
    assert_eq!(
        row("198.51.100.0/24")["sources"],
        serde_json::json!(["file"])
    );
    assert_eq!(row("198.51.100.0/24")["ports"]["tcpPorts"], "8443");
    assert_eq!(
        row("13.67.13.176/28")["endpoint_sets"],
        serde_json::json!([163])
    );
    assert_eq!(
        row("13.67.13.176/28")["sources"],
        serde_json::json!(["builtin"])
    );
    assert_eq!(row("13.67.13.176/29")["excluded"], true);
    assert_eq!(
        row("198.51.100.0/24")["provenance"],
        serde_json::json!([{"set": 5000, "sources": ["file"], "category": "Default", "required": false}])
    );
    assert_eq!(
        row("13.67.13.176/28")["provenance"][0]["category"],
        "Allow",
        "set 163 is an Allow set in the article"
    );
    assert_eq!(row("13.67.13.176/28")["provenance"][0]["required"], true);
    let name = |n: &str| {
        list["names"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("{n}"))
    };
    assert_eq!(name("*.manage.microsoft.com")["wildcard"], true);
    assert_eq!(name("time.windows.com")["wildcard"], false);
    assert!(
        list["names"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["name"] != "manage.microsoft.com"),
        "excluded names are not listed"
    );

    let (code, _, stderr) = intune_ctl(&["list", "--no-service", "--exclude", "10.0.0.0/33"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("--exclude \"10.0.0.0/33\" is neither a prefix nor a host name"),
        "{stderr}"
    );
}

#[test]
fn changes_shows_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::open(dir.path()).unwrap();
    state
        .record_change(ChangeRecord {
            at: "2026-11-25T10:00:00Z".into(),
            cause: "service version 2026033100".into(),
            added: 3,
            removed: 1,
            changed: 0,
            per_set: vec![SetChange {
                set: 163,
                added: 3,
                removed: 1,
            }],
        })
        .unwrap();
    let (code, stdout, _) = intune_ctl(&["changes", "--state-dir", dir.path().to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("service version 2026033100")
            && stdout.contains("+3 / -1 prefixes, 0 changed (set 163 +3 -1)"),
        "{stdout}"
    );
    let (_, json, _) = intune_ctl(&[
        "changes",
        "--state-dir",
        dir.path().to_str().unwrap(),
        "--json",
    ]);
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v[0]["per_set"][0]["set"], 163);
}
