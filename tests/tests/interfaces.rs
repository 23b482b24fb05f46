//! Interfaces that come and go (issue 14, in part): a filter whose interface was deleted and
//! created again under its name while the daemon was stopped (a VLAN's ifdown/ifup, a PPPoE
//! reconnect, a replugged NIC) leaves a severed pinned link; the daemon's next start replaces
//! it and filters the new interface, instead of failing. Real daemon, real program, a veth pair
//! in a namespace. Needs root.

use std::{
    net::UdpSocket,
    path::Path,
    time::{Duration, Instant},
};

use intune_tests::{
    netns::{Netns, veth},
    output,
    process::{spawn_configured, test_pins},
    require_root,
};
use serde_json::Value;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_intune-ctl-test")
}

/// 198.51.100.0/24 on UDP 123 is listed; enforce mode on the gateway's `g0`.
const SETS: &str = r#"[
  {"id": 980, "serviceArea": "MEM", "category": "Allow", "required": true,
   "ips": ["198.51.100.0/24"], "udpPorts": "123"}
]"#;

fn stats(config: &Path) -> Value {
    let (code, out, err) = output(
        std::process::Command::new(bin())
            .args(["stats", "--json", "--config"])
            .arg(config),
    );
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn intune_packets(stats: &Value) -> u64 {
    stats["outcomes"]["intune"]["packets"]
        .as_u64()
        .unwrap_or_else(|| panic!("{stats}"))
}

/// Datagrams from the device to a listed address through `g0` until the gateway counts them.
fn send_until_counted(dev: &Netns, config: &Path, before: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        dev.run(|| {
            let s = UdpSocket::bind("192.0.2.20:0").expect("bind");
            let _ = s.send_to(b"ntp?", "198.51.100.7:123");
        });
        let now = intune_packets(&stats(config));
        if now > before {
            return now;
        }
        assert!(Instant::now() < deadline, "no datagram counted");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_restart_after_the_interface_was_recreated_replaces_the_severed_link() {
    require_root!();
    let gw = Netns::new("ifg");
    let dev = Netns::new("ifd");
    let make_link = || {
        veth(&gw, "g0", &dev, "d0");
        gw.ip(&["addr", "add", "192.0.2.1/24", "dev", "g0"]);
        dev.ip(&["addr", "add", "192.0.2.20/24", "dev", "d0"]);
        dev.ip(&["route", "add", "default", "via", "192.0.2.1"]);
    };
    make_link();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sets.json"), SETS).unwrap();
    let pins = test_pins("ifaces", dir.path());
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[interface]]\nname = \"g0\"\nxdp_mode = \"generic\"\n\n[policy]\nmode = \"enforce\"\n\n\
             [sources]\nbuiltin = false\nservice = false\nfiles = [{:?}]\n\n[dns]\nenabled = false\n\n\
             [paths]\nstate_dir = {:?}\nbpffs_dir = {:?}\ncontrol_socket = {:?}\n",
            dir.path().join("sets.json").display().to_string(),
            dir.path().display().to_string(),
            pins.dir().display().to_string(),
            dir.path().join("control.sock").display().to_string()
        ),
    )
    .unwrap();

    let (mut child, _) = spawn_configured(&gw, bin(), &cfg, &[], "g0");
    let counted = send_until_counted(&dev, &cfg, 0);
    let _ = child.kill();
    let _ = child.wait();

    // The interface goes and comes back under its name, with a new ifindex: the pinned link
    // is severed, and the new g0 carries no filter.
    gw.ip(&["link", "del", "g0"]);
    make_link();
    let shown = String::from_utf8_lossy(&gw.ip(&["link", "show", "g0"]).stdout).into_owned();
    assert!(
        !shown.contains("xdp"),
        "a new interface, unfiltered: {shown}"
    );

    // The next start attaches to it (no `Link has been severed`, no exit), and the counters
    // carry on.
    let (mut child, _) = spawn_configured(&gw, bin(), &cfg, &[], "g0");
    let shown = String::from_utf8_lossy(&gw.ip(&["link", "show", "g0"]).stdout).into_owned();
    assert!(shown.contains("xdpgeneric"), "filtered again: {shown}");
    let again = send_until_counted(&dev, &cfg, counted);
    assert!(again > counted, "{again} after {counted}");
    let _ = child.kill();
    let _ = child.wait();
    let _ = pins.remove_all();
}
