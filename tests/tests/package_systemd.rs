//! The .deb under real systemd: install, enable, reload, stop, start, remove, purge. Runs in
//! the bookworm guest of `cargo xtask vm-test`, which boots with systemd as PID 1 and names the
//! package in INTUNE_DEB; anywhere else it says why it is skipped.

use std::{
    net::UdpSocket,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use intune_tests::{netns::Netns, output, require_root};
use serde_json::Value;

const IFACE: &str = "ixpkg0";
const PEER: &str = "ixpkg1";
const PINS: &str = "/sys/fs/bpf/intune";
const STATE: &str = "/var/lib/intune-ctl";
const CONFIG: &str = "/etc/intune-ctl/config.toml";

fn sh(cmd: &str, args: &[&str]) -> String {
    let (code, out, err) = output(Command::new(cmd).args(args));
    assert_eq!(code, 0, "{cmd} {args:?} failed: {out}{err}");
    out
}

fn systemctl(args: &[&str]) -> String {
    sh("systemctl", args)
}

fn ctl_json(args: &[&str]) -> Value {
    let out = sh("intune-ctl", &[args, &["--json"]].concat());
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("intune-ctl {args:?}: {e}: {out}"))
}

/// Packets the filter counted, all outcomes together.
fn counted() -> u64 {
    let stats = ctl_json(&["stats"]);
    stats["outcomes"]
        .as_object()
        .expect("outcomes")
        .values()
        .map(|o| o["packets"].as_u64().unwrap_or(0))
        .sum()
}

/// Sends `n` datagrams from the device namespace across the filtered interface.
fn send(dev: &Netns, n: usize) {
    dev.run(move || {
        let sock = UdpSocket::bind("192.0.2.20:0").expect("bind");
        for _ in 0..n {
            sock.send_to(b"x", "192.0.2.10:9").expect("send");
        }
    });
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let t = Instant::now();
    while !ok() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "timed out waiting: {what}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn config(mode: &str) -> String {
    format!(
        "[[interface]]\nname = \"{IFACE}\"\nxdp_mode = \"generic\"\n\n\
         [policy]\nmode = \"{mode}\"\n\n[sources]\nservice = false\n\n\
         [dns]\nenabled = false\nlearn_from_dns = true\nlearn_trusted = [\"192.0.2.53\"]\n"
    )
}

#[test]
fn the_package_installs_runs_under_systemd_and_removes_itself() {
    require_root!();
    let Some(deb) = std::env::var_os("INTUNE_DEB") else {
        eprintln!(
            "skipped: needs a guest booted with systemd and the .deb in INTUNE_DEB; `cargo xtask vm-test --suite bookworm` runs it"
        );
        return;
    };
    let pid1 = std::fs::read_to_string("/proc/1/comm").unwrap_or_default();
    assert_eq!(pid1.trim(), "systemd", "PID 1 must be systemd");
    let dev = Netns::new("pkg");
    sh(
        "ip",
        &[
            "link", "add", IFACE, "type", "veth", "peer", "name", PEER, "netns", &dev.name,
        ],
    );
    sh("ip", &["addr", "add", "192.0.2.10/24", "dev", IFACE]);
    sh("ip", &["link", "set", IFACE, "up"]);
    dev.ip(&["addr", "add", "192.0.2.20/24", "dev", PEER]);
    dev.ip(&["link", "set", PEER, "up"]);

    let deb = Path::new(&deb);
    sh(
        "apt-get",
        &["install", "-y", "-q", &deb.display().to_string()],
    );
    assert!(Path::new("/usr/bin/intune-ctl").exists());
    for shipped in [
        "/usr/share/intune-ctl/grafana/intune-xdp.json",
        "/usr/share/intune-ctl/prometheus/intune-xdp.rules.yml",
    ] {
        assert!(Path::new(shipped).exists(), "{shipped} installed");
    }
    std::fs::write(CONFIG, config("monitor")).expect("write the config");
    sh("intune-ctl", &["check-config", CONFIG]);

    // enable --now returns once the daemon said READY (Type=notify).
    systemctl(&["enable", "--now", "intune-ctl"]);
    assert_eq!(systemctl(&["is-active", "intune-ctl"]).trim(), "active");
    let status = systemctl(&["show", "-p", "StatusText", "--value", "intune-ctl"]);
    assert!(status.contains("1 interfaces"), "StatusText: {status}");
    let journal = sh(
        "journalctl",
        &["-u", "intune-ctl", "--no-pager", "-o", "cat"],
    );
    assert!(journal.contains(IFACE), "journal: {journal}");
    let st = ctl_json(&["status"]);
    assert_eq!(st["mode"], "monitor", "{st}");
    assert!(st["interfaces"][0]["attached"].is_string(), "{st}");
    assert!(st["learning"].is_object(), "learning on: {st}");

    send(&dev, 20);
    wait_for("20 datagrams counted", || counted() >= 20);

    // reload applies a changed config.
    std::fs::write(CONFIG, config("enforce")).expect("write the config");
    systemctl(&["reload", "intune-ctl"]);
    wait_for("the reload applied", || {
        ctl_json(&["status"])["mode"] == "enforce"
    });

    // stop leaves the filter attached and counting.
    systemctl(&["stop", "intune-ctl"]);
    assert_ne!(
        Command::new("systemctl")
            .args(["is-active", "--quiet", "intune-ctl"])
            .status()
            .expect("systemctl")
            .code(),
        Some(0)
    );
    let before = counted();
    send(&dev, 10);
    wait_for("counted while stopped", || counted() >= before + 10);
    let xdp = sh("ip", &["-d", "link", "show", IFACE]);
    assert!(xdp.contains("xdp"), "still attached: {xdp}");
    // The DNS capture belongs to the daemon: a clean stop takes a tc filter away too.
    let tc = sh("tc", &["filter", "show", "dev", IFACE, "egress"]);
    assert!(!tc.contains("intune_dns"), "capture left after stop: {tc}");

    // start again carries the counters on.
    let stopped_at = counted();
    systemctl(&["start", "intune-ctl"]);
    assert_eq!(systemctl(&["is-active", "intune-ctl"]).trim(), "active");
    assert!(counted() >= stopped_at, "counters carried on");

    // remove detaches and removes the pins; purge removes the state.
    sh("apt-get", &["remove", "-y", "-q", "intune-ctl"]);
    let xdp = sh("ip", &["-d", "link", "show", IFACE]);
    assert!(!xdp.contains("prog/xdp"), "detached: {xdp}");
    assert!(!Path::new(PINS).exists(), "pins removed");
    assert!(Path::new(STATE).exists(), "remove keeps the state");
    sh("apt-get", &["purge", "-y", "-q", "intune-ctl"]);
    assert!(!Path::new(STATE).exists(), "purge removes the state");
    assert!(!Path::new(CONFIG).exists(), "purge removes the config");
    let _ = Command::new("ip").args(["link", "del", IFACE]).status();
}
