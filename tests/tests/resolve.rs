//! The listed names, resolved by a real DNS server on loopback (dnsmasq): `intune-ctl resolve`
//! as a user runs it, and the daemon's watcher driving the real program's maps through TTL
//! expiry, an address rotating out, NXDOMAIN, and a resolver that stops answering.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use intune_common::outcome::XDP_PASS;
use intune_ctl::{
    daemon::updater,
    datapath::Datapath,
    ruleset::{
        build::RuleBuilder,
        policy::{Mode, Policy},
    },
    settings::Settings,
    sources::resolve::{Dns, DnsConfig, ScheduleConfig, Watcher},
};
use intune_tests::{
    dns::{Dnsmasq, ServfailServer},
    frames::Frame,
    http::Logs,
    load, require_root,
};
use serde_json::Value;

const DEV: &str = "192.0.2.10";
const DEV6: &str = "2001:db8:1::10";

/// Two sets list a.test (ports 443 and 80/UDP 123); the rest are in one set each.
const SETS: &str = r#"[
  {"id": 901, "serviceArea": "MEM", "urls": ["a.test", "v6only.test", "alias.test", "nx.test", "sf.test", "gone.test", "*.wild.test", "autodiscover.*.test"], "tcpPorts": "443", "category": "Default", "required": true},
  {"id": 902, "serviceArea": "MEM", "urls": ["a.test"], "tcpPorts": "80", "udpPorts": "123", "category": "Allow", "required": false}
]"#;

const HOSTS: &str = "\
198.51.100.10 a.test
198.51.100.11 a.test
2001:db8::10 a.test
2001:db8::20 v6only.test
198.51.100.30 target.test
198.51.100.40 gone.test
";

/// a.test rotates to .12; gone.test leaves (NXDOMAIN from now on).
const HOSTS_ROTATED: &str = "\
198.51.100.12 a.test
2001:db8::10 a.test
2001:db8::20 v6only.test
198.51.100.30 target.test
";

fn dnsmasq(ttl: u32, servfail: &ServfailServer) -> Dnsmasq {
    Dnsmasq::start(
        HOSTS,
        ttl,
        &[
            "--cname=alias.test,target.test".into(),
            "--address=/nx.test/".into(),
            format!(
                "--server=/sf.test/{}#{}",
                servfail.addr.ip(),
                servfail.addr.port()
            ),
        ],
    )
}

fn write_sets(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let path = dir.path().join("sets.json");
    std::fs::write(&path, SETS).expect("write sets");
    path
}

fn intune_ctl(args: &[&str]) -> (i32, String, String) {
    intune_tests::output(Command::new(env!("CARGO_BIN_EXE_intune-ctl-test")).args(args))
}

#[test]
fn resolve_prints_addresses_ttls_chains_errors_and_skipped_wildcards() {
    let servfail = ServfailServer::start();
    let dns = dnsmasq(120, &servfail);
    let dir = tempfile::tempdir().unwrap();
    let sets = write_sets(&dir);
    let resolver = dns.addr.to_string();
    let (code, stdout, stderr) = intune_ctl(&[
        "resolve",
        "--no-service",
        "--no-builtin",
        "--endpoints",
        sets.to_str().unwrap(),
        "--resolver",
        &resolver,
        "--dns-timeout",
        "1s",
        "--json",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).expect("JSON");
    let name = |n: &str| {
        report["names"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == n)
            .cloned()
            .unwrap_or_else(|| panic!("{n} in {stdout}"))
    };
    let a = name("a.test");
    assert_eq!(
        a["addrs"],
        serde_json::json!(["198.51.100.10", "198.51.100.11", "2001:db8::10"])
    );
    assert_eq!(a["ttl"], 120);
    assert_eq!(
        a["sets"],
        serde_json::json!([901, 902]),
        "a name in two sets"
    );
    assert_eq!(a["error"], Value::Null);
    let alias = name("alias.test");
    assert_eq!(alias["addrs"], serde_json::json!(["198.51.100.30"]));
    assert_eq!(
        alias["chain"],
        serde_json::json!(["target.test"]),
        "CNAME followed"
    );
    assert_eq!(
        name("v6only.test")["addrs"],
        serde_json::json!(["2001:db8::20"]),
        "AAAA only"
    );
    assert_eq!(name("nx.test")["error"], "NXDOMAIN");
    assert_eq!(name("sf.test")["error"], "SERVFAIL");
    let wildcards: Vec<&str> = report["wildcards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(wildcards, ["*.wild.test", "autodiscover.*.test"]);
    assert_eq!(
        dns.queries_for("*.wild.test"),
        0,
        "wildcards are not looked up"
    );
    // Every name was asked once for A and once for AAAA.
    assert_eq!(dns.queries_for("a.test"), 2);
    // The log names each failing name.
    assert!(
        stderr.contains("nx.test") && stderr.contains("NXDOMAIN"),
        "{stderr}"
    );
    assert!(
        stderr.contains("sf.test") && stderr.contains("SERVFAIL"),
        "{stderr}"
    );

    // The table form shows the same.
    let (code, table, _) = intune_ctl(&[
        "resolve",
        "--no-service",
        "--no-builtin",
        "--endpoints",
        sets.to_str().unwrap(),
        "--resolver",
        &resolver,
    ]);
    assert_eq!(code, 0);
    assert!(
        table.contains("198.51.100.11") && table.contains("*.wild.test"),
        "{table}"
    );
}

#[test]
fn resolve_without_an_answering_resolver_exits_2() {
    // A port nothing listens on: every query fails.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let sets = write_sets(&dir);
    let resolver = format!("127.0.0.1:{port}");
    let (code, stdout, stderr) = intune_ctl(&[
        "resolve",
        "--no-service",
        "--no-builtin",
        "--endpoints",
        sets.to_str().unwrap(),
        "--resolver",
        &resolver,
        "--dns-timeout",
        "200ms",
    ]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    let last = stderr.trim().lines().last().unwrap_or("");
    assert_eq!(
        last,
        format!("intune-ctl: no name got an answer from {resolver}")
    );
    let (code, _, stderr) = intune_ctl(&["resolve", "--resolver", "localhost:53"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("\"localhost:53\" is not ADDR:PORT"),
        "{stderr}"
    );
}

/// The daemon's pieces: the watcher, the rule builder `run` uses, the real program.
struct Rig {
    rules: RuleBuilder,
    watcher: Watcher,
    dp: Datapath,
    logs: Logs,
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl Rig {
    fn new(dns: &Dnsmasq) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings::default();
        settings.sources.files = vec![write_sets(&dir)];
        settings.sources.builtin = false;
        let rules = RuleBuilder::new(&settings).expect("the endpoint file");
        let (sets, initial) = rules.build(&[], &[], None).expect("rule set");
        let dp = load(
            &initial,
            &Policy {
                mode: Mode::Enforce,
                ..Policy::default()
            },
        );
        let resolver = Dns::new(&DnsConfig {
            servers: vec![dns.addr],
            timeout: Duration::from_millis(300),
            attempts: 1,
        })
        .expect("resolver");
        let mut watcher = Watcher::new(
            resolver,
            ScheduleConfig {
                min_ttl: Duration::from_secs(1),
                max_ttl: Duration::from_secs(3600),
                grace: Duration::from_secs(3),
                max_per_second: 100,
                max_backoff: Duration::from_secs(2),
            },
        );
        watcher.follow(&sets, Instant::now());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        Rig {
            rules,
            watcher,
            dp,
            logs: Logs::default(),
            rt,
            _dir: dir,
        }
    }

    /// Runs the watcher as `run` does, for `time`.
    fn run_for(&mut self, time: Duration) {
        let until = Instant::now() + time;
        let Rig {
            rules,
            watcher,
            dp,
            logs,
            rt,
            ..
        } = self;
        tracing::subscriber::with_default(logs.subscriber(), || {
            rt.block_on(async {
                while Instant::now() < until {
                    let at = watcher.next_wakeup().unwrap_or(until).min(until);
                    tokio::time::sleep_until(at.into()).await;
                    // What the resolver task and the datapath owner do with a round.
                    if watcher.step(Instant::now()).await.changed() {
                        let resolved = watcher.resolved_sets(&rules.effective(&[]));
                        let (_, new) = rules
                            .build(&[], &resolved, dp.installed())
                            .expect("rule set");
                        updater::apply(dp, new, "DNS answers");
                    }
                }
            });
        });
    }

    fn passes(&self, dst: &str, port: u16) -> bool {
        let src = if dst.contains(':') { DEV6 } else { DEV };
        self.dp
            .run_frame(&Frame::tcp(src, dst, 40000, port).bytes())
            .expect("test run")
            .verdict
            == XDP_PASS
    }
}

#[test]
fn the_maps_follow_ttls_rotation_grace_and_a_silent_resolver() {
    require_root!();
    let servfail = ServfailServer::start();
    let dns = dnsmasq(1, &servfail);
    let mut rig = Rig::new(&dns);
    assert!(
        !rig.passes("198.51.100.10", 443),
        "nothing before the first answers"
    );

    rig.run_for(Duration::from_millis(800));
    assert!(rig.watcher.all_tried());
    for dst in [
        "198.51.100.10",
        "198.51.100.11",
        "198.51.100.30",
        "198.51.100.40",
    ] {
        assert!(rig.passes(dst, 443), "{dst}:443");
    }
    assert!(rig.passes("2001:db8::10", 443) && rig.passes("2001:db8::20", 443));
    // a.test is in both sets: their ports together, nothing else.
    assert!(rig.passes("198.51.100.10", 80));
    assert!(!rig.passes("198.51.100.10", 8443));
    assert!(
        !rig.passes("198.51.100.30", 80),
        "alias.test is in 901 only"
    );
    assert!(!rig.passes("198.51.100.12", 443), "not an answer yet");
    let rule = rig
        .dp
        .installed()
        .and_then(|r| r.lookup("198.51.100.10".parse().unwrap()))
        .expect("a rule for a.test's address");
    assert_eq!(rule.set_ids(), [901, 902]);

    // a.test rotates to .12; gone.test is gone (NXDOMAIN).
    dns.set_hosts(HOSTS_ROTATED);
    let rotated = Instant::now();
    rig.run_for(Duration::from_millis(1600));
    assert!(
        rig.passes("198.51.100.12", 443),
        "the new address, after the TTL"
    );
    assert!(
        rig.passes("198.51.100.10", 443) && rig.passes("198.51.100.40", 443),
        "old addresses stay through their grace"
    );
    assert!(rig.logs.text().contains("gone.test"), "{}", rig.logs.text());
    // TTL 1 s + grace 3 s after the last answer that held them (at most 1.1 s before the
    // rotation: the TTL plus the spread).
    rig.run_for(Duration::from_millis(4500).saturating_sub(rotated.elapsed()));
    assert!(
        !rig.passes("198.51.100.10", 443),
        "expired after TTL and grace"
    );
    assert!(
        !rig.passes("198.51.100.40", 443),
        "NXDOMAIN: expired after grace"
    );
    assert!(rig.passes("198.51.100.12", 443) && !rig.passes("198.51.100.11", 443));
    assert!(
        dns.queries_for("a.test") >= 6,
        "re-resolved as the 1 s TTL ran out: {} queries",
        dns.queries_for("a.test")
    );
    assert!(rig.logs.text().contains("address expired"));

    // The resolver stops answering: nothing expires, however long.
    dns.pause(true);
    rig.logs.clear();
    rig.run_for(Duration::from_secs(6));
    assert!(
        rig.passes("198.51.100.12", 443),
        "a silent resolver never empties the map"
    );
    assert!(rig.passes("2001:db8::20", 443));
    let logs = rig.logs.text();
    assert!(logs.contains("no resolver answers"), "{logs}");
    assert!(logs.contains("timed out"), "{logs}");
    // Every round fails for every name, for 6 s: said once, not once a name a round.
    assert_eq!(logs.matches("names failed to resolve").count(), 1, "{logs}");
    dns.pause(false);
    rig.logs.clear();
    rig.run_for(Duration::from_secs(3));
    let logs = rig.logs.text();
    assert!(logs.contains("the resolver answers again"), "{logs}");
    assert!(logs.contains("works again"), "{logs}");
    assert!(
        logs.contains("repeated"),
        "how often the failure repeated: {logs}"
    );
    assert!(rig.passes("198.51.100.12", 443));
}
