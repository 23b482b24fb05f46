//! Interfaces that come and go (issue 14): deleted and created again under their name (a
//! VLAN's ifdown/ifup, a PPPoE reconnect, a replugged NIC), missing at start, renamed. The
//! daemon follows them through netlink and keeps each configured name filtered; a pinned link
//! whose interface was deleted (severed) is replaced, never fatal. Real daemon, real program,
//! veth pairs and VLANs in namespaces, enforce mode. Needs root.

use std::{
    net::UdpSocket,
    path::{Path, PathBuf},
    process::Child,
    time::{Duration, Instant},
};

use intune_tests::{
    netns::{Netns, veth},
    output,
    process::{Lines, scrape, test_pins},
    require_root, scaled_secs,
};
use serde_json::Value;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_intune-ctl-test")
}

/// 198.51.100.0/24 on UDP 123 is listed; everything else is dropped (enforce mode).
const SETS: &str = r#"[
  {"id": 980, "serviceArea": "MEM", "category": "Allow", "required": true,
   "ips": ["198.51.100.0/24"], "udpPorts": "123"}
]"#;
const LISTED: &str = "198.51.100.7:123";
const UNLISTED: &str = "203.0.113.9:123";

/// A gateway namespace and a device namespace, the daemon's files in a directory of their
/// own, its config naming `iface` (generic XDP, direction `dst`) with `src` as the default
/// direction: a frame judged by a stale direction entry is judged by the device's address,
/// which is not listed, and dropped.
struct Site {
    gw: Netns,
    dev: Netns,
    /// Holds the daemon's files until the site goes.
    _dir: tempfile::TempDir,
    pins: intune_ctl::datapath::pins::Pins,
    cfg: PathBuf,
}

impl Site {
    fn new(tag: &str, iface: &str, extra: &str) -> Site {
        let gw = Netns::new(&format!("{tag}g"));
        let dev = Netns::new(&format!("{tag}d"));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("sets.json"), SETS).unwrap();
        let pins = test_pins(tag, dir.path());
        let cfg = dir.path().join("config.toml");
        std::fs::write(
            &cfg,
            format!(
                "[[interface]]\nname = {iface:?}\nxdp_mode = \"generic\"\ndirection = \"dst\"\n\n\
                 [policy]\nmode = \"enforce\"\ndirection = \"src\"\n\n\
                 [sources]\nbuiltin = false\nservice = false\nfiles = [{:?}]\n\n[dns]\nenabled = false\n\n\
                 [paths]\nstate_dir = {:?}\nbpffs_dir = {:?}\ncontrol_socket = {:?}\n{extra}",
                dir.path().join("sets.json").display().to_string(),
                dir.path().display().to_string(),
                pins.dir().display().to_string(),
                dir.path().join("control.sock").display().to_string()
            ),
        )
        .unwrap();
        Site {
            gw,
            dev,
            _dir: dir,
            pins,
            cfg,
        }
    }

    /// The veth pair g0 -- d0, addressed, the device routing through the gateway.
    fn make_veth(&self) {
        veth(&self.gw, "g0", &self.dev, "d0");
        self.gw.ip(&["addr", "add", "192.0.2.1/24", "dev", "g0"]);
        self.dev.ip(&["addr", "add", "192.0.2.20/24", "dev", "d0"]);
        self.dev
            .ip(&["route", "add", "default", "via", "192.0.2.1"]);
    }

    /// The daemon, once it printed `line`.
    fn start(&self, line: &str) -> Daemon {
        let mut child = self
            .gw
            .command(bin())
            .args(["daemon", "--config"])
            .arg(&self.cfg)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("daemon");
        let lines = Lines::of(&mut child);
        lines.wait_for(line, 30);
        Daemon { child, lines }
    }

    fn ctl(&self, cmd: &str) -> Value {
        let (code, out, err) = output(
            std::process::Command::new(bin())
                .args([cmd, "--json", "--config"])
                .arg(&self.cfg),
        );
        assert_eq!(code, 0, "{cmd}: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    fn outcome(&self, outcome: &str) -> u64 {
        let stats = self.ctl("stats");
        stats["outcomes"][outcome]["packets"]
            .as_u64()
            .unwrap_or_else(|| panic!("{stats}"))
    }

    /// The state `status` gives the first interface, and its ifindex.
    fn iface_state(&self) -> (String, Option<u64>) {
        let status = self.ctl("status");
        let i = &status["interfaces"][0];
        (
            i["state"].as_str().unwrap_or("?").to_string(),
            i["ifindex"].as_u64(),
        )
    }

    /// A datagram from the device to `to` through `iface`, until the gateway counts it as
    /// `outcome`: proof the filter on the interface there now judged it.
    fn counted_as(&self, to: &'static str, outcome: &str) {
        let before = self.outcome(outcome);
        let deadline = Instant::now() + scaled_secs(10);
        while self.outcome(outcome) == before {
            assert!(
                Instant::now() < deadline,
                "no datagram to {to} counted as {outcome}"
            );
            self.dev.run(move || {
                let s = UdpSocket::bind("0.0.0.0:0").expect("bind");
                let _ = s.send_to(b"ntp?", to);
            });
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Listed passes, unlisted is dropped: the filter works on the interface there now.
    fn filters(&self) {
        self.counted_as(LISTED, "intune");
        self.counted_as(UNLISTED, "dropped");
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = self.pins.remove_all();
    }
}

struct Daemon {
    child: Child,
    lines: Lines,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// Whether `iface` in `ns` carries an XDP program.
fn has_xdp(ns: &Netns, iface: &str) -> bool {
    let out = ns.ip(&["link", "show", iface]);
    out.status.success() && String::from_utf8_lossy(&out.stdout).contains("xdp")
}

/// Waits until `iface` carries an XDP program; how long that took from `since`. Panics when
/// it took longer than `within` (scaled for slow guests).
fn attached_within(ns: &Netns, iface: &str, since: Instant, within: Duration) -> Duration {
    let within = within * intune_tests::slowdown();
    while !has_xdp(ns, iface) {
        assert!(
            since.elapsed() < within,
            "{iface} unfiltered {within:?} after it appeared"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    since.elapsed()
}

#[test]
fn a_restart_after_the_interface_was_recreated_replaces_the_severed_link() {
    require_root!();
    let s = Site::new("ifr", "g0", "");
    s.make_veth();
    let d = s.start("attached to g0");
    s.filters();
    let counted = s.outcome("intune");
    let (_, old_ifindex) = s.iface_state();
    // Stopped: the filter stays through its pinned link.
    drop(d);
    assert!(has_xdp(&s.gw, "g0"));

    // The interface goes and comes back under its name, with a new ifindex: the pinned link
    // is severed, and the new g0 carries no filter.
    s.gw.ip(&["link", "del", "g0"]);
    s.make_veth();
    assert!(!has_xdp(&s.gw, "g0"), "a new interface, unfiltered");
    // `status` with no daemon says so.
    let (state, _) = s.iface_state();
    assert_eq!(state, "severed");

    // The next start attaches to it (no `Link has been severed`, no exit), and the counters
    // carry on.
    let _d = s.start("attached to g0");
    assert!(has_xdp(&s.gw, "g0"));
    let (state, ifindex) = s.iface_state();
    assert_eq!(state, "attached");
    assert_ne!(ifindex, old_ifindex);
    s.filters();
    assert!(s.outcome("intune") > counted);
}

#[test]
fn an_interface_recreated_while_running_is_filtered_again_within_a_second() {
    require_root!();
    let s = Site::new("ifw", "g0", "");
    s.make_veth();
    let d = s.start("attached to g0");
    s.filters();
    let (_, first) = s.iface_state();
    let counted = s.outcome("intune");
    for round in 0..3 {
        s.gw.ip(&["link", "del", "g0"]);
        d.lines.wait_for("g0 is gone", 5);
        assert_eq!(s.iface_state().0, "gone");
        let created = Instant::now();
        s.make_veth();
        let took = attached_within(&s.gw, "g0", created, Duration::from_secs(1));
        eprintln!("round {round}: filtered {took:?} after the ip command began");
        d.lines.wait_for("attached to g0", 5);
        let (state, ifindex) = s.iface_state();
        assert_eq!(state, "attached");
        assert_ne!(ifindex, first);
        // Judged by its own direction (dst) on the new ifindex: a stale entry would judge by
        // the device's unlisted source and drop the listed datagram.
        s.filters();
    }
    // The counters carried on across all of it.
    assert!(s.outcome("intune") >= counted + 3);
    let status = s.ctl("status");
    assert!(
        status["interfaces"][0]["attach_ms"].as_f64().is_some(),
        "{status}"
    );
}

#[test]
fn a_daemon_started_before_its_interface_waits_and_attaches_when_it_appears() {
    require_root!();
    let s = Site::new("ifm", "g0", "\n[metrics]\nlisten = \"127.0.0.1:9731\"\n");
    // No g0: not an error; the daemon runs and says it waits.
    let d = s.start("waiting for g0");
    let (state, ifindex) = s.iface_state();
    assert_eq!((state.as_str(), ifindex), ("waiting", None));
    let text = scrape(&s.gw, "127.0.0.1:9731");
    assert!(
        text.contains(r#"intune_xdp_interface_state{iface="g0",state="waiting"} 1"#),
        "{text}"
    );
    // Created down, as ifupdown, networkd and pppd create theirs before they bring them up:
    // attached while still down, so not one frame crosses it unfiltered.
    let created = Instant::now();
    intune_tests::netns::ip(&[
        "link",
        "add",
        "g0",
        "netns",
        &s.gw.name,
        "type",
        "veth",
        "peer",
        "name",
        "d0",
        "netns",
        &s.dev.name,
    ]);
    attached_within(&s.gw, "g0", created, Duration::from_secs(1));
    let shown = String::from_utf8_lossy(&s.gw.ip(&["link", "show", "g0"]).stdout).into_owned();
    assert!(
        shown.contains("state DOWN"),
        "attached before it is up: {shown}"
    );
    d.lines.wait_for("attached to g0", 5);
    s.gw.ip(&["link", "set", "g0", "up"]);
    s.dev.ip(&["link", "set", "d0", "up"]);
    s.gw.ip(&["addr", "add", "192.0.2.1/24", "dev", "g0"]);
    s.dev.ip(&["addr", "add", "192.0.2.20/24", "dev", "d0"]);
    s.dev.ip(&["route", "add", "default", "via", "192.0.2.1"]);
    s.filters();
    let text = scrape(&s.gw, "127.0.0.1:9731");
    for line in [
        r#"intune_xdp_interface_state{iface="g0",state="attached"} 1"#,
        r#"intune_xdp_interface_state{iface="g0",state="waiting"} 0"#,
        r#"intune_xdp_interface_attaches_total{iface="g0"} 1"#,
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }
}

#[test]
fn a_vlan_deleted_and_recreated_keeps_its_filter() {
    require_root!();
    let s = Site::new("ifv", "g0.100", "");
    // The VLAN rides on the veth; the device's side tags its frames too.
    veth(&s.gw, "g0", &s.dev, "d0");
    let _ = std::process::Command::new("modprobe").arg("8021q").output();
    let probe = std::process::Command::new("ip")
        .args([
            "-n",
            &s.dev.name,
            "link",
            "add",
            "link",
            "d0",
            "name",
            "d0.100",
        ])
        .args(["type", "vlan", "id", "100"])
        .output()
        .expect("ip");
    if !intune_tests::kernel_has(
        "interfaces::a_vlan_deleted_and_recreated_keeps_its_filter",
        "802.1Q VLANs (CONFIG_VLAN_8021Q)",
        probe.status.success(),
    ) {
        return;
    }
    let vlan = |s: &Site| {
        s.gw.ip(&[
            "link", "add", "link", "g0", "name", "g0.100", "type", "vlan", "id", "100",
        ]);
        s.gw.ip(&["addr", "add", "192.0.2.1/24", "dev", "g0.100"]);
        s.gw.ip(&["link", "set", "g0.100", "up"]);
    };
    s.dev.ip(&["addr", "add", "192.0.2.20/24", "dev", "d0.100"]);
    s.dev.ip(&["link", "set", "d0.100", "up"]);
    s.dev.ip(&["route", "add", "default", "via", "192.0.2.1"]);
    vlan(&s);
    let d = s.start("attached to g0.100");
    s.filters();
    // ifdown/ifup of the VLAN.
    s.gw.ip(&["link", "del", "g0.100"]);
    d.lines.wait_for("g0.100 is gone", 5);
    let created = Instant::now();
    vlan(&s);
    attached_within(&s.gw, "g0.100", created, Duration::from_secs(1));
    s.filters();
    // The lower interface was never ours; the VLAN's link is pinned under its name (a dot,
    // which bpffs on 5.10 refuses in a name, written %2e).
    assert!(!has_xdp(&s.gw, "g0"));
    assert_eq!(s.pins.linked_ifaces(), ["g0.100"]);
}

#[test]
fn an_interface_renamed_to_a_configured_name_is_attached_and_one_renamed_away_is_left() {
    require_root!();
    let s = Site::new("ifn", "g0", "");
    // Created under another name (as udev names a NIC after the kernel did): waited for.
    veth(&s.gw, "tmp0", &s.dev, "d0");
    s.dev.ip(&["addr", "add", "192.0.2.20/24", "dev", "d0"]);
    s.dev.ip(&["route", "add", "default", "via", "192.0.2.1"]);
    let d = s.start("waiting for g0");
    assert!(!has_xdp(&s.gw, "tmp0"));
    // Renamed to the configured name (a rename needs the interface down): attached.
    s.gw.ip(&["link", "set", "tmp0", "down"]);
    s.gw.ip(&["link", "set", "tmp0", "name", "g0"]);
    d.lines.wait_for("attached to g0", 5);
    s.gw.ip(&["addr", "add", "192.0.2.1/24", "dev", "g0"]);
    s.gw.ip(&["link", "set", "g0", "up"]);
    s.filters();
    // Renamed away: the filter follows the name, so it leaves the interface (its pin goes,
    // nothing is left pointing at it), and waits for g0.
    s.gw.ip(&["link", "set", "g0", "down"]);
    s.gw.ip(&["link", "set", "g0", "name", "other0"]);
    d.lines.wait_for("g0 was renamed to other0", 5);
    assert!(
        !has_xdp(&s.gw, "other0"),
        "the renamed interface keeps no filter of ours"
    );
    assert_eq!(s.iface_state().0, "gone");
    assert!(
        s.pins.linked_ifaces().is_empty(),
        "{:?}",
        s.pins.linked_ifaces()
    );
    // Back under the name: attached again.
    s.gw.ip(&["link", "set", "other0", "name", "g0"]);
    d.lines.wait_for("attached to g0", 5);
    s.gw.ip(&["link", "set", "g0", "up"]);
    s.filters();
}

#[test]
fn detach_removes_a_severed_link() {
    require_root!();
    let s = Site::new("ifx", "g0", "");
    s.make_veth();
    drop(s.start("attached to g0"));
    s.gw.ip(&["link", "del", "g0"]);
    assert_eq!(s.iface_state().0, "severed");
    let (code, out, err) = output(
        std::process::Command::new(bin())
            .args(["detach", "--config"])
            .arg(&s.cfg),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("detached from g0"), "{out}");
    assert!(!Path::new(&s.pins.dir()).exists(), "the pins are gone");
}

#[test]
fn an_interface_with_a_dot_in_its_name_is_pinned_and_replaced_on_restart() {
    require_root!();
    // A VLAN's usual name, on a veth (the VLAN test needs 802.1Q): bpffs refuses a dot in a
    // pin's name, so the link's pin escapes it.
    let s = Site::new("ifp", "g0.5", "");
    veth(&s.gw, "g0.5", &s.dev, "d0");
    drop(s.start("attached to g0.5"));
    let links = s.pins.dir().join("links");
    assert!(
        links.join("g0%2e5").exists(),
        "pinned under its escaped name"
    );
    assert_eq!(s.pins.linked_ifaces(), ["g0.5"]);
    // bpffs does refuse the name itself.
    let err = std::fs::rename(links.join("g0%2e5"), links.join("g0.5")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
    // The next start finds the pin and replaces the program through it.
    let _d = s.start("attached to g0.5 (replaced the running program, no gap)");
    assert!(has_xdp(&s.gw, "g0.5"));
}
