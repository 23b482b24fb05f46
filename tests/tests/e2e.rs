//! End to end, as root: a device, a gateway and a server in network namespaces; the real
//! daemon on the gateway's device-facing veth, fed by a web service and a DNS server that run
//! on the gateway's loopback; real sockets across it; stats, lookup and metrics compared with
//! the traffic sent; monitor mode through SIGHUP; detach at the end.
//!
//! ```text
//! dev 192.0.2.1 --d0/g0-- gw 192.0.2.2 | 198.51.100.1 --s0/v0-- srv 198.51.100.10, 203.0.113.10
//! ```

use std::{
    net::{SocketAddr, TcpListener, UdpSocket},
    process::{Child, Stdio},
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use intune_ctl::datapath::pins::Pins;
use intune_tests::{
    dns::Dnsmasq,
    http::{Answer, FakeService, version_body},
    netns::{Gateway, Netns},
    process::{Lines, metric, scrape},
    require_root,
};
use serde_json::Value;

/// The service's list: the server's address by prefix, and a name dnsmasq resolves to the
/// server's other address. TCP 443 and UDP 123.
const LIST: &str = r#"[
  {"id": 900, "serviceArea": "MEM", "serviceAreaDisplayName": "Microsoft Intune",
   "urls": ["app.e2e.test"], "ips": ["198.51.100.10/32"],
   "tcpPorts": "443", "udpPorts": "123", "category": "Allow", "required": true}
]"#;

struct Net {
    dev: Netns,
    gw: Netns,
    srv: Netns,
}

fn net() -> Net {
    let Gateway { dev, gw, srv } = Gateway::new("e", &["198.51.100.10"]);
    srv.ip(&["addr", "add", "203.0.113.10/32", "dev", "lo"]);
    gw.ip(&["route", "add", "203.0.113.10/32", "via", "198.51.100.10"]);
    for addr in [
        "198.51.100.10:443",
        "198.51.100.10:8080",
        "203.0.113.10:443",
    ] {
        let addr: SocketAddr = addr.parse().unwrap();
        let listener = srv.run(move || TcpListener::bind(addr).expect("bind"));
        std::thread::spawn(move || for _ in listener.incoming() {});
    }
    Net { dev, gw, srv }
}

fn connects(ns: &Netns, to: &str) -> bool {
    ns.connects(to, Duration::from_millis(1000))
}

fn send_udp(ns: &Netns, to: &'static str, n: usize) {
    ns.run(move || {
        let sock = UdpSocket::bind("0.0.0.0:0").expect("bind");
        for i in 0..n {
            sock.send_to(&(i as u32).to_be_bytes(), to).expect("send");
        }
    });
    std::thread::sleep(Duration::from_millis(200));
}

/// Removes the test's pins however it ends.
struct PinsGuard(Pins);

impl Drop for PinsGuard {
    fn drop(&mut self) {
        let _ = self.0.remove_all();
    }
}

struct Daemon {
    child: Child,
    lines: Lines,
}

impl Daemon {
    fn wait_for(&self, needle: &str, secs: u64) {
        self.lines.wait_for(needle, secs);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ctl(args: &[&str]) -> Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_intune-ctl-test"))
        .args(args)
        .arg("--json")
        .output()
        .expect("intune-ctl");
    assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn metrics(gw: &Netns) -> String {
    scrape(gw, "127.0.0.1:9470")
}

#[test]
fn the_daemon_filters_counts_and_reports_end_to_end() {
    require_root!();
    let n = net();
    let svc = n.gw.run(FakeService::start);
    svc.set_version(Answer::ok(version_body("2026112500")));
    svc.set_endpoints(Answer::ok(LIST));
    let dns = Dnsmasq::start_in(Some(&n.gw), "203.0.113.10 app.e2e.test\n", 60, &[]);
    let allowed_udp = n.srv.udp_counter("198.51.100.10:123");
    let other_udp = n.srv.udp_counter("198.51.100.10:5000");

    let dir = tempfile::tempdir().unwrap();
    let pins = PinsGuard(Pins::new(format!(
        "/sys/fs/bpf/ixt-e2e-{}",
        std::process::id()
    )));
    let pins = &pins.0;
    let state = dir.path().join("state");
    let socket = dir.path().join("control.sock");
    let config = dir.path().join("config.toml");
    let write_config = |mode: &str| {
        std::fs::write(
            &config,
            format!(
                r#"
[[interface]]
name = "g0"
direction = "dst"

[policy]
mode = "{mode}"

[sources]
builtin = false
service_url = "{url}"
refresh_interval = "1h"

[dns]
resolvers = ["{dns}"]

[paths]
state_dir = "{state}"
bpffs_dir = "{bpffs}"
control_socket = "{socket}"

[metrics]
listen = "127.0.0.1:9470"
"#,
                url = svc.url,
                dns = dns.addr,
                state = state.display(),
                bpffs = pins.dir().display(),
                socket = socket.display(),
            ),
        )
        .unwrap();
    };
    write_config("enforce");
    let mut child =
        n.gw.command(env!("CARGO_BIN_EXE_intune-ctl-test"))
            .arg("daemon")
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("daemon");
    let lines = Lines::of(&mut child);
    let daemon = Daemon { child, lines };
    daemon.wait_for("attached to g0", 30);

    // The service's list and the resolved name arrive in the background.
    let st = |args: &[&str]| {
        let mut all = args.to_vec();
        let (b, s) = (pins.dir().to_str().unwrap(), state.to_str().unwrap());
        all.extend(["--bpffs-dir", b, "--state-dir", s]);
        ctl(&all)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let a = st(&["lookup", "198.51.100.10"]);
        let b = st(&["lookup", "203.0.113.10"]);
        if a["action"] == "pass" && b["action"] == "pass" {
            assert_eq!(b["source"], "dns", "{b}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the list and the name never arrived: {a} {b}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Enforce: Intune TCP and UDP pass; other ports and addresses are dropped.
    assert!(connects(&n.dev, "198.51.100.10:443"));
    assert!(connects(&n.dev, "203.0.113.10:443"), "the resolved name");
    assert!(!connects(&n.dev, "198.51.100.10:8080"));
    send_udp(&n.dev, "198.51.100.10:123", 10);
    send_udp(&n.dev, "198.51.100.10:5000", 10);
    assert_eq!(allowed_udp.load(Ordering::SeqCst), 10);
    assert_eq!(other_udp.load(Ordering::SeqCst), 0);

    let stats = st(&["stats"]);
    let rule = |prefix: &str| {
        stats["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["prefix"] == prefix)
            .cloned()
            .unwrap_or_else(|| panic!("{prefix} in {stats}"))
    };
    let by_prefix = rule("198.51.100.10/32");
    assert_eq!(by_prefix["endpoint_sets"], serde_json::json!([900]));
    assert_eq!(by_prefix["source"], "service");
    // The SYN, the ACK of the handshake and the FIN exchange, and the 10 datagrams.
    assert!(by_prefix["packets"].as_u64().unwrap() >= 12, "{by_prefix}");
    let by_name = rule("203.0.113.10/32");
    assert_eq!(by_name["source"], "dns");
    assert!(
        stats["outcomes"]["dropped"]["packets"].as_u64().unwrap() >= 11,
        "{stats}"
    );

    // By port: the 10 datagrams on UDP 123, the rest of the Intune hits on TCP 443.
    let ports = st(&["stats", "--by", "port"]);
    let port = |proto: &str, number: u64| {
        ports["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["proto"] == proto && p["port"] == number)
            .and_then(|p| p["packets"].as_u64())
            .unwrap_or_else(|| panic!("{proto}/{number} in {ports}"))
    };
    let intune = by_prefix["packets"].as_u64().unwrap() + by_name["packets"].as_u64().unwrap();
    assert_eq!(port("udp", 123), 10, "{ports}");
    assert_eq!(port("tcp", 443), intune - 10, "{ports}");
    assert_eq!(ports["ports"].as_array().unwrap().len(), 2, "{ports}");

    let m = metrics(&n.gw);
    assert_eq!(
        metric(
            &m,
            "intune_xdp_port_packets_total{proto=\"udp\",port=\"123\"}"
        ),
        10
    );
    assert_eq!(
        metric(&m, "intune_xdp_set_packets_total{set=\"900\"}"),
        intune
    );
    assert_eq!(
        metric(&m, "intune_xdp_outcome_packets_total{outcome=\"dropped\"}"),
        stats["outcomes"]["dropped"]["packets"].as_u64().unwrap()
    );
    assert!(metric(&m, "intune_xdp_refreshes_total{result=\"success\"}") >= 1);
    assert!(metric(&m, "intune_xdp_resolver_lookups_total{result=\"success\"}") >= 1);

    // list: the rule set from the cached service list, and the addresses the daemon resolved.
    let list = ctl(&[
        "list",
        "--no-builtin",
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    let listed = list["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["prefix"] == "198.51.100.10/32")
        .cloned()
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(listed["sources"], serde_json::json!(["service"]));
    let resolved = &list["resolved"][0];
    assert_eq!(resolved["address"], "203.0.113.10", "{list}");
    assert_eq!(resolved["name"], "app.e2e.test");
    assert_eq!(resolved["endpoint_sets"], serde_json::json!([900]));
    assert!(
        resolved["expires_at"].as_str().unwrap().starts_with("20"),
        "{resolved}"
    );

    let status = ctl(&["status", "--control-socket", socket.to_str().unwrap()]);
    assert_eq!(status["service"]["version"], "2026112500", "{status}");
    assert_eq!(status["resolver"]["resolved_addresses"], 1);

    // Monitor, by SIGHUP: everything passes and is counted the same way.
    write_config("monitor");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(daemon.child.id() as i32, libc::SIGHUP) };
    daemon.wait_for("reloaded the config", 10);
    let before = st(&["stats"])["outcomes"]["unmatched_passed"]["packets"]
        .as_u64()
        .unwrap();
    assert!(connects(&n.dev, "198.51.100.10:8080"));
    send_udp(&n.dev, "198.51.100.10:5000", 10);
    assert_eq!(other_udp.load(Ordering::SeqCst), 10);
    let after = st(&["stats"])["outcomes"]["unmatched_passed"]["packets"]
        .as_u64()
        .unwrap();
    assert!(after >= before + 12, "{before} -> {after}");

    drop(daemon);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_intune-ctl-test"))
        .args(["detach", "--bpffs-dir", pins.dir().to_str().unwrap()])
        .output()
        .expect("detach");
    assert!(out.status.success(), "{out:?}");
    assert!(!pins.dir().exists());
    drop(dns);
}
