//! The daemon as tasks around its datapath owner, as an admin meets it: a web service that
//! accepts and never answers delays no signal, no `status` and no resolver step; a control
//! client that says nothing delays nobody; a reload that fails half way is undone; the read
//! commands find the daemon's files through its config. Real daemon, real program on veth
//! interfaces in a namespace, real dnsmasq, a real (silent) HTTP server. Needs root.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::TcpListener,
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::Child,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use intune_ctl::datapath::pins::Pins;
use intune_tests::{
    dns::Dnsmasq,
    netns::Netns,
    output,
    process::{Lines, spawn_configured, spawn_daemon, test_pins},
    require_root, scaled_secs, slowdown,
};
use serde_json::Value;

/// a.test resolves; 203.0.113.0/24 is listed; both TCP 443.
const SETS: &str = r#"[
  {"id": 960, "serviceArea": "MEM", "category": "Allow", "required": true,
   "urls": ["a.test"], "ips": ["203.0.113.0/24"], "tcpPorts": "443"}
]"#;

/// 198.51.100.0/24, TCP 443: what a reload adds.
const MORE_SETS: &str = r#"[
  {"id": 961, "serviceArea": "MEM", "category": "Allow", "required": true,
   "ips": ["198.51.100.0/24"], "tcpPorts": "443"}
]"#;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_intune-ctl-test")
}

/// A namespace with veth interfaces `t0` and `t1` up (their peers `p0`, `p1` beside them).
fn namespace(tag: &str) -> Netns {
    let ns = Netns::new(tag);
    for (iface, peer) in [("t0", "p0"), ("t1", "p1")] {
        ns.veth_pair(iface, peer);
    }
    ns
}

/// A web service that accepts every connection and never says a word; counts them.
fn silent_service(ns: &Netns) -> (String, Arc<AtomicUsize>) {
    let listener = ns.run(|| TcpListener::bind("127.0.0.1:0").expect("bind"));
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().map_while(Result::ok) {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    (url, accepted)
}

fn pins_for(dir: &Path) -> Pins {
    test_pins("tasks", dir)
}

struct Daemon {
    child: Child,
    lines: Lines,
    pins: Pins,
    dir: tempfile::TempDir,
}

impl Daemon {
    /// `daemon --config CONFIG` in `ns` (and `extra`), its files in `dir`; once attached to t0.
    fn configured(ns: &Netns, dir: tempfile::TempDir, config: &Path, extra: &[&str]) -> Daemon {
        let pins = pins_for(dir.path());
        let (child, lines) = spawn_configured(ns, bin(), config, extra, "t0");
        Daemon {
            child,
            lines,
            pins,
            dir,
        }
    }

    fn signal(&self, signal: i32) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("control.sock")
    }

    /// One `status` on the control socket, and how long the answer took.
    fn status(&self) -> (Value, Duration) {
        let started = Instant::now();
        let mut s = UnixStream::connect(self.socket()).expect("control socket");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"{\"command\":\"status\"}\n").unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).expect("an answer");
        let took = started.elapsed();
        (serde_json::from_str(&line).expect("JSON"), took)
    }

    /// `intune-ctl ARGS --json` with the daemon's paths.
    fn ctl(&self, args: &[&str]) -> Value {
        let (code, out, err) = output(
            std::process::Command::new(bin())
                .args(args)
                .arg("--json")
                .arg("--state-dir")
                .arg(self.dir.path())
                .arg("--bpffs-dir")
                .arg(self.pins.dir()),
        );
        assert_eq!(code, 0, "{args:?}: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    }

    fn passes(&self, address: &str) -> bool {
        self.ctl(&["lookup", address, "--port", "443"])["action"] == "pass"
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = self.pins.remove_all();
    }
}

#[test]
fn a_hanging_web_service_delays_no_signal_status_or_resolver_step() {
    require_root!();
    let ns = namespace("tk");
    let (url, accepted) = silent_service(&ns);
    let dns = Dnsmasq::start_in(Some(&ns), "198.51.100.7 a.test\n", 1, &[]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sets.json"), SETS).unwrap();
    let pins = pins_for(dir.path());
    let extra: Vec<String> = [
        "--no-builtin",
        "--service-url",
        &url,
        "--service-timeout",
        "60",
        "--resolver",
        &dns.addr.to_string(),
        "--dns-min-ttl",
        "1s",
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    let (child, lines) = spawn_daemon(
        ns.command(bin())
            .args(["daemon", "--iface", "t0", "--xdp-mode", "generic"]),
        dir.path(),
        &pins,
        &extra,
        "t0",
    );
    let d = Daemon {
        child,
        lines,
        pins,
        dir,
    };

    // The first check is under way and hangs: the service took the connection.
    let deadline = Instant::now() + scaled_secs(10);
    while accepted.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "the daemon never asked the service"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The 100 ms an admin may wait (more under emulation).
    let limit = Duration::from_millis(100) * slowdown();
    for _ in 0..5 {
        let (status, took) = d.status();
        assert!(took < limit, "status took {took:?}");
        assert_eq!(status["service"]["checking"], true, "{status}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A control client that connects and says nothing holds up nobody.
    let _silent = UnixStream::connect(d.socket()).expect("control socket");
    let (_, took) = d.status();
    assert!(took < limit, "status beside a silent client took {took:?}");

    // The resolver goes on: a.test's address, then its next one, reach the maps.
    let deadline = Instant::now() + scaled_secs(10);
    while !d.passes("198.51.100.7") {
        assert!(Instant::now() < deadline, "a.test never resolved");
        std::thread::sleep(Duration::from_millis(200));
    }
    dns.set_hosts("198.51.100.8 a.test\n");
    let deadline = Instant::now() + scaled_secs(10);
    while !d.passes("198.51.100.8") {
        assert!(
            Instant::now() < deadline,
            "a.test's new address never arrived"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, _) = d.status();
    assert_eq!(
        status["service"]["checking"], true,
        "still hanging: {status}"
    );
    assert!(
        status["resolver"]["resolved_addresses"].as_u64() >= Some(1),
        "{status}"
    );

    // A reload is not held up either.
    d.signal(libc::SIGHUP);
    d.lines.wait_for("reloaded the config", 2);

    // SIGTERM ends it within a second, the check still hanging.
    let mut d = d;
    let asked = Instant::now();
    d.signal(libc::SIGTERM);
    let exited = loop {
        if let Some(status) = d.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(1) * slowdown(),
            "still running {:?} after SIGTERM",
            asked.elapsed()
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(exited.success(), "{exited:?}");
    assert_eq!(
        d.pins.linked_ifaces(),
        ["t0"],
        "the filter stays attached after a stop"
    );
}

/// The reload test's config: enforce mode on `ifaces`, endpoint `files`, nothing remote.
fn reload_config(dir: &Path, pins: &Pins, ifaces: &str, files: &[&str]) -> String {
    let files: Vec<String> = files
        .iter()
        .map(|f| format!("{:?}", dir.join(f).display().to_string()))
        .collect();
    format!(
        "{ifaces}\n[policy]\nmode = \"enforce\"\n\n[sources]\nbuiltin = false\nservice = false\nfiles = [{}]\n\n[dns]\nenabled = false\n\n\
         [paths]\nstate_dir = {:?}\nbpffs_dir = {:?}\ncontrol_socket = {:?}\n",
        files.join(", "),
        dir.display().to_string(),
        pins.dir().display().to_string(),
        dir.join("control.sock").display().to_string(),
    )
}

const T0: &str = "[[interface]]\nname = \"t0\"\nxdp_mode = \"generic\"\n";
const T1: &str = "[[interface]]\nname = \"t1\"\nxdp_mode = \"generic\"\n";
/// Loopback has no native XDP: attaching so fails.
const T2_NATIVE: &str = "[[interface]]\nname = \"lo\"\nxdp_mode = \"native\"\n";

#[test]
fn a_reload_that_fails_half_way_is_undone_and_the_read_commands_follow_the_config() {
    require_root!();
    let ns = namespace("tr");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sets.json"), SETS).unwrap();
    std::fs::write(dir.path().join("more.json"), MORE_SETS).unwrap();
    let pins = pins_for(dir.path());
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        reload_config(dir.path(), &pins, T0, &["sets.json"]),
    )
    .unwrap();
    // Only the config says where the daemon's files are; a flag adds an exclusion the config
    // does not hold, so a rule set rebuilt from the config alone would differ.
    let d = Daemon::configured(&ns, dir, &config, &["--exclude", "203.0.113.128/25"]);
    let read = |args: &[&str]| -> Value {
        let (code, out, err) = output(
            std::process::Command::new(bin())
                .args(args)
                .arg("--json")
                .arg("--config")
                .arg(&config),
        );
        assert_eq!(code, 0, "{args:?}: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    };

    // The read commands, given only the config, see what the daemon runs.
    assert_eq!(read(&["status"])["daemon"], "running");
    let list = read(&["list"]);
    let prefixes: Vec<&str> = list["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["prefix"].as_str().unwrap())
        .collect();
    assert!(prefixes.contains(&"203.0.113.0/24"), "{list}");
    assert!(
        prefixes.contains(&"203.0.113.128/25"),
        "the installed exclusion, which only the daemon's flag holds: {list}"
    );
    assert_eq!(read(&["lookup", "203.0.113.5"])["action"], "pass");
    assert_eq!(read(&["lookup", "203.0.113.200"])["action"], "drop");
    let stats = read(&["stats"]);
    assert!(stats["outcomes"].is_object(), "{stats}");

    // A reload that attaches t1, then fails on lo: t1 goes again, the new list is not in force.
    std::fs::write(
        &config,
        reload_config(
            d.dir.path(),
            &d.pins,
            &format!("{T0}{T1}{T2_NATIVE}"),
            &["sets.json", "more.json"],
        ),
    )
    .unwrap();
    d.signal(libc::SIGHUP);
    d.lines
        .wait_for("the reload was undone: attaching to lo", 10);
    assert_eq!(d.pins.linked_ifaces(), ["t0"], "t1 was detached again");
    assert_eq!(read(&["lookup", "198.51.100.5"])["action"], "drop");
    assert_eq!(read(&["lookup", "203.0.113.5"])["action"], "pass");
    let status = read(&["status"]);
    let names: Vec<&str> = status["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["t0"], "{status}");

    // Mended, it applies whole.
    std::fs::write(
        &config,
        reload_config(
            d.dir.path(),
            &d.pins,
            &format!("{T0}{T1}"),
            &["sets.json", "more.json"],
        ),
    )
    .unwrap();
    d.signal(libc::SIGHUP);
    d.lines.wait_for("reloaded the config", 10);
    let mut linked = d.pins.linked_ifaces();
    linked.sort();
    assert_eq!(linked, ["t0", "t1"]);
    assert_eq!(read(&["lookup", "198.51.100.5"])["action"], "pass");
    let list = read(&["list"]);
    assert!(list.to_string().contains("198.51.100.0/24"), "{list}");
}

/// SYNs from `p0` to 203.0.113.5:443, which `t0`'s filter sees arrive; each connect sends one.
fn send_syns(ns: &Netns, count: usize) {
    ns.run(move || {
        let to: std::net::SocketAddr = "203.0.113.5:443".parse().unwrap();
        for _ in 0..count {
            let _ = std::net::TcpStream::connect_timeout(&to, Duration::from_millis(5));
        }
    });
}

/// The packets `stats` counts on `prefix`'s rule.
fn rule_packets(stats: &Value, prefix: &str) -> u64 {
    stats["rules"]
        .as_array()
        .and_then(|rules| rules.iter().find(|r| r["prefix"] == prefix))
        .and_then(|r| r["packets"].as_u64())
        .unwrap_or(0)
}

#[test]
fn a_rule_set_that_outgrows_the_maps_moves_to_bigger_ones_without_a_gap() {
    require_root!();
    let ns = namespace("tg");
    // p0 sends to 203.0.113.5 straight at t0.
    ns.ip(&["link", "set", "t0", "address", "02:00:00:00:00:01"]);
    ns.ip(&["addr", "add", "192.0.2.1/24", "dev", "p0"]);
    ns.ip(&["route", "add", "203.0.113.0/24", "dev", "p0"]);
    ns.ip(&[
        "neigh",
        "add",
        "203.0.113.5",
        "lladdr",
        "02:00:00:00:00:01",
        "dev",
        "p0",
    ]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sets.json"), SETS).unwrap();
    // More rules than the counters the program starts with (4,096, the least it is loaded
    // with): 6,000 addresses of the shared address space (only in the maps; nothing is sent
    // to them).
    let ips: Vec<String> = (0..6_000u32)
        .map(|i| {
            format!(
                "\"100.{}.{}.{}/32\"",
                64 + i / 65_536,
                (i / 256) % 256,
                i % 256
            )
        })
        .collect();
    let big = format!(
        r#"[{{"id": 962, "serviceArea": "MEM", "category": "Default", "required": true,
            "ips": [{}], "tcpPorts": "443"}}]"#,
        ips.join(",")
    );
    std::fs::write(dir.path().join("big.json"), big).unwrap();
    let pins = pins_for(dir.path());
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        reload_config(dir.path(), &pins, T0, &["sets.json"]),
    )
    .unwrap();
    let d = Daemon::configured(&ns, dir, &config, &[]);
    send_syns(&ns, 20);
    assert_eq!(rule_packets(&d.ctl(&["stats"]), "203.0.113.0/24"), 20);

    // The reload, with SYNs flowing all through it.
    std::fs::write(
        &config,
        reload_config(d.dir.path(), &d.pins, T0, &["sets.json", "big.json"]),
    )
    .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let sender = {
        let (stop, sent) = (Arc::clone(&stop), Arc::clone(&sent));
        let path = ns.path();
        std::thread::spawn(move || {
            let file = std::fs::File::open(path).expect("netns");
            // SAFETY: a valid namespace fd; only this thread changes namespace.
            let rc =
                unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0);
            let to: std::net::SocketAddr = "203.0.113.5:443".parse().unwrap();
            while !stop.load(Ordering::SeqCst) {
                let _ = std::net::TcpStream::connect_timeout(&to, Duration::from_millis(5));
                sent.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    d.signal(libc::SIGHUP);
    d.lines
        .wait_for("moved the filter to bigger ones without a gap", 60);
    d.lines.wait_for("reloaded the config", 60);
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::SeqCst);
    sender.join().expect("sender");
    let during = sent.load(Ordering::SeqCst) as u64;
    assert!(during > 0, "SYNs flowed through the swap");
    std::thread::sleep(Duration::from_millis(100));
    // Every SYN counted, before and during: the filter never left t0, its counts came along.
    let stats = d.ctl(&["stats"]);
    assert_eq!(
        rule_packets(&stats, "203.0.113.0/24"),
        20 + during,
        "{during} sent during the reload"
    );
    assert_eq!(d.pins.linked_ifaces(), ["t0"]);
    let (status, _) = d.status();
    assert!(status["rules"].as_u64() > Some(6_000), "{status}");
    // The 5,128th address: its rule's index is past the old counters.
    assert!(d.passes("100.64.20.7"), "a rule beyond the old maps' room");
    assert!(d.passes("203.0.113.5"));
}
