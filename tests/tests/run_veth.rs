//! `intune-ctl run` on a real interface: a device namespace talks to a gateway namespace over a
//! veth pair; the filter sits on the gateway's side. Needs root.

use std::{
    io::{BufRead, BufReader},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    path::Path,
    process::{Child, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
        mpsc,
    },
    time::Duration,
};

use intune_ctl::datapath::pins::Pins;
use intune_tests::{
    TEST_SETS,
    netns::{Netns, veth},
    require_root,
};

struct Topology {
    dev: Netns,
    gw: Netns,
    srv: Netns,
}

/// A non-Intune server beyond the gateway (set 903 allows other ports at 203.0.113.0/24).
const ELSEWHERE: &str = "203.0.113.80:8080";
/// The gateway's own service: traffic to it is local, passed even in enforce mode.
const GATEWAY_SERVICE: &str = "192.0.2.2:8080";

/// dev (192.0.2.1/25) -- veth -- (g0, 192.0.2.2/25) gw [routes] (s0, 192.0.2.129/25) --
/// veth -- srv (192.0.2.130/25; 198.51.100.1 an "Intune" address of the test endpoint sets,
/// TCP 443 allowed, and 203.0.113.80, elsewhere). The filter sits on g0.
fn topology(tag: &str) -> Topology {
    let dev = Netns::new(&format!("d{tag}"));
    let gw = Netns::new(&format!("g{tag}"));
    let srv = Netns::new(&format!("s{tag}"));
    veth(&dev, "d0", &gw, "g0");
    veth(&gw, "s0", &srv, "v0");
    dev.ip(&["addr", "add", "192.0.2.1/25", "dev", "d0"]);
    dev.ip(&["route", "add", "default", "via", "192.0.2.2"]);
    gw.ip(&["addr", "add", "192.0.2.2/25", "dev", "g0"]);
    gw.ip(&["addr", "add", "192.0.2.129/25", "dev", "s0"]);
    srv.ip(&["addr", "add", "192.0.2.130/25", "dev", "v0"]);
    srv.ip(&["route", "add", "default", "via", "192.0.2.129"]);
    gw.forward();
    let t = Topology { dev, gw, srv };
    for addr in ["198.51.100.1", "203.0.113.80"] {
        t.server_address(addr);
    }
    for (ns, addr) in [
        (&t.srv, "198.51.100.1:443"),
        (&t.srv, ELSEWHERE),
        (&t.gw, GATEWAY_SERVICE),
    ] {
        let addr: SocketAddr = addr.parse().unwrap();
        let listener = ns.run(move || TcpListener::bind(addr).expect("bind"));
        std::thread::spawn(move || for _ in listener.incoming() {});
    }
    t
}

impl Topology {
    /// One more address on the server, routed to by the gateway.
    fn server_address(&self, addr: &str) {
        self.srv
            .ip(&["addr", "add", &format!("{addr}/32"), "dev", "v0"]);
        self.gw
            .ip(&["route", "add", &format!("{addr}/32"), "via", "192.0.2.130"]);
    }
}

fn connects(ns: &Netns, to: &str) -> bool {
    ns.connects(to, Duration::from_millis(1500))
}

struct Running {
    child: Child,
    /// Holds the endpoint file while the command runs.
    dir: tempfile::TempDir,
    lines: mpsc::Receiver<String>,
    /// The test's own pin directory, removed when the test ends.
    pins: Pins,
    argv: Vec<String>,
}

fn spawn(gw: &Netns, argv: &[String]) -> (Child, mpsc::Receiver<String>) {
    spawn_with(gw, argv, &[], false)
}

/// Runs `argv` in `gw` with `env`; its output lines (the log's too, with `with_log`) arrive on
/// the receiver.
fn spawn_with(
    gw: &Netns,
    argv: &[String],
    env: &[(&str, &str)],
    with_log: bool,
) -> (Child, mpsc::Receiver<String>) {
    let mut child = gw
        .command(env!("CARGO_BIN_EXE_intune-ctl-test"))
        .args(argv)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(if with_log {
            Stdio::piped()
        } else {
            Stdio::inherit()
        })
        .spawn()
        .expect("spawn intune-ctl run");
    let (tx, lines) = mpsc::channel();
    let forward = |out: Box<dyn std::io::Read + Send>, tx: mpsc::Sender<String>| {
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    };
    forward(Box::new(child.stdout.take().unwrap()), tx.clone());
    if let Some(stderr) = child.stderr.take() {
        forward(Box::new(stderr), tx);
    }
    (child, lines)
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = self.pins.remove_all();
    }
}

impl Running {
    fn start(gw: &Netns, args: &[&str]) -> Running {
        let dir = tempfile::tempdir().expect("temp dir");
        let sets = dir.path().join("sets.json");
        std::fs::write(&sets, TEST_SETS).unwrap();
        let pins = Pins::new(
            Path::new("/sys/fs/bpf").join(
                dir.path()
                    .file_name()
                    .expect("temp dir name")
                    .to_string_lossy()
                    .trim_start_matches('.'),
            ),
        );
        let mut argv: Vec<String> = vec!["run".into(), "--bpffs-dir".into()];
        argv.push(pins.dir().to_string_lossy().into_owned());
        argv.push("--control-socket".into());
        argv.push(
            dir.path()
                .join("control.sock")
                .to_string_lossy()
                .into_owned(),
        );
        argv.extend(
            [
                "--interval",
                "1",
                "--no-service",
                "--no-resolve",
                "--state-dir",
                dir.path().to_str().unwrap(),
                "--endpoints",
                sets.to_str().unwrap(),
            ]
            .map(String::from),
        );
        if !args.contains(&"--iface") && !args.contains(&"--config") {
            argv.extend(["--iface".into(), "g0".into()]);
        }
        argv.extend(args.iter().map(std::string::ToString::to_string));
        let (child, lines) = spawn(gw, &argv);
        Running {
            child,
            dir,
            lines,
            pins,
            argv,
        }
    }

    /// Starts the same command again (after the last one stopped or was killed).
    fn restart(&mut self, gw: &Netns) {
        let (child, lines) = spawn(gw, &self.argv);
        self.child = child;
        self.lines = lines;
    }

    fn state_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Output lines until one contains `needle`, or panics after `secs`.
    fn wait_for(&self, needle: &str, secs: u64) -> Vec<String> {
        let mut seen = Vec::new();
        let deadline = std::time::Instant::now() + intune_tests::scaled_secs(secs);
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = line.contains(needle);
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "no line with {needle:?} in {secs}s; saw:\n{}",
            seen.join("\n")
        );
    }

    fn terminate(&mut self) -> (i32, Vec<String>) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let status = self.child.wait().expect("wait");
        let rest: Vec<String> = self.lines.iter().collect();
        (status.code().unwrap_or(-1), rest)
    }
}

fn xdp_attached(gw: &Netns) -> bool {
    String::from_utf8_lossy(&gw.ip(&["link", "show", "g0"]).stdout).contains("xdp")
}

#[test]
fn enforce_on_a_veth_passes_intune_drops_the_rest_and_detaches_on_sigterm() {
    require_root!();
    let t = topology("e");
    assert!(connects(&t.dev, ELSEWHERE), "reachable before the filter");

    let mut run = Running::start(&t.gw, &["--mode", "enforce", "--detach-on-stop"]);
    let start = run.wait_for("attached to g0", 30);
    assert!(start.iter().any(|l| l.contains("native XDP")), "{start:?}");
    assert!(xdp_attached(&t.gw));

    assert!(
        connects(&t.dev, "198.51.100.1:443"),
        "Intune address and port pass"
    );
    assert!(!connects(&t.dev, ELSEWHERE), "the rest is dropped");
    assert!(
        connects(&t.dev, GATEWAY_SERVICE),
        "the gateway's own service is local"
    );
    // The counter table shows the rule's hits: the SYN and the rest of the handshake.
    run.wait_for("198.51.100.0/24", 10);

    let (code, rest) = run.terminate();
    assert_eq!(code, 0, "{rest:?}");
    assert!(
        rest.iter().any(|l| l.starts_with("detached from g0")),
        "{rest:?}"
    );
    assert!(!xdp_attached(&t.gw), "detached");
    assert!(connects(&t.dev, ELSEWHERE), "reachable again once detached");
}

#[test]
fn monitor_passes_everything_and_generic_mode_is_used_when_asked() {
    require_root!();
    let t = topology("m");
    let mut run = Running::start(&t.gw, &["--xdp-mode", "generic"]);
    let start = run.wait_for("attached to g0", 30);
    assert!(start.iter().any(|l| l.contains("generic XDP")), "{start:?}");
    assert!(connects(&t.dev, ELSEWHERE));
    assert!(connects(&t.dev, "198.51.100.1:443"));
    let lines = run.wait_for("unmatched_passed", 10);
    assert!(!lines.is_empty());
    let (code, _) = run.terminate();
    assert_eq!(code, 0);
}

#[test]
fn an_interface_can_match_return_traffic_only() {
    require_root!();
    let t = topology("s");
    // Enforce, source direction on g0: the device's SYN to 198.51.100.1:443 has an Intune
    // destination, not source, so it is dropped.
    let mut run = Running::start(&t.gw, &["--mode", "enforce", "--iface", "g0:src"]);
    let start = run.wait_for("attached to g0", 30);
    assert!(
        start.iter().any(|l| l.contains("direction Src")),
        "{start:?}"
    );
    assert!(!connects(&t.dev, "198.51.100.1:443"));
    let (code, _) = run.terminate();
    assert_eq!(code, 0);
}

#[test]
fn the_config_file_sets_the_daemon_up_and_flags_override_it() {
    require_root!();
    let t = topology("c");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[[interface]]\nname = \"g0\"\ndirection = \"src\"\nxdp_mode = \"generic\"\n\n[policy]\nmode = \"enforce\"\n",
    )
    .unwrap();
    // The file says enforce; the flag says monitor, and wins. The rest comes from the file.
    let mut run = Running::start(
        &t.gw,
        &["--config", config.to_str().unwrap(), "--mode", "monitor"],
    );
    let start = run.wait_for("attached to g0", 30);
    assert!(
        start.iter().any(|l| l.contains("generic XDP")
            && l.contains("mode Monitor")
            && l.contains("direction Src")),
        "{start:?}"
    );
    assert!(connects(&t.dev, ELSEWHERE), "monitor passes");
    let (code, rest) = run.terminate();
    assert_eq!(code, 0);
    assert!(
        rest.iter()
            .any(|l| l.contains("the filter stays attached to g0")),
        "{rest:?}"
    );
    assert!(
        xdp_attached(&t.gw),
        "a stopped daemon leaves the filter in place"
    );

    // A bad config stops the daemon before it touches anything: one line, exit 2.
    std::fs::write(&config, "[policy]\nmode = \"lax\"\n").unwrap();
    let out =
        t.gw.command(env!("CARGO_BIN_EXE_intune-ctl-test"))
            .args(["daemon", "--config", config.to_str().unwrap()])
            .output()
            .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 2") && stderr.contains("lax"),
        "{stderr}"
    );
    assert!(xdp_attached(&t.gw), "untouched");

    // detach is the explicit way out: the link and every pin go.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_intune-ctl-test"))
        .arg("detach")
        .arg("--bpffs-dir")
        .arg(run.pins.dir())
        .output()
        .expect("detach");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("detached from g0"));
    assert!(!xdp_attached(&t.gw));
    assert!(!run.pins.dir().exists(), "no pins left");
}

/// The packets counted so far on the rule for `prefix`, read from the pinned counters with
/// the index the daemon recorded.
fn rule_packets(run: &Running, prefix: &str) -> u64 {
    let state = intune_ctl::daemon::state::StateDir::open(run.state_dir()).expect("state dir");
    let rules = state.load_rules().expect("rules").expect("recorded rules");
    let index = rules
        .iter()
        .find(|r| r.prefix == prefix)
        .unwrap_or_else(|| panic!("{prefix} recorded"))
        .index;
    let map = aya::maps::MapData::from_pin(run.pins.map(intune_common::maps::RULE_STATS))
        .expect("pinned counters");
    let stats = aya::maps::PerCpuArray::<_, intune_common::maps::Counter>::try_from(
        aya::maps::Map::PerCpuArray(map),
    )
    .expect("per-CPU array");
    stats
        .get(&index, 0)
        .expect("counter")
        .iter()
        .map(|c| c.packets)
        .sum()
}

#[test]
fn a_restart_keeps_filtering_and_counting_without_a_gap() {
    require_root!();
    let t = topology("r");
    t.server_address("198.51.100.129");
    // UDP 123 to 198.51.100.129 is Intune (set 902); UDP 9999 is not.
    let allowed = t.srv.udp_counter("198.51.100.129:123");
    let other = t.srv.udp_counter("198.51.100.1:9999");

    let mut run = Running::start(&t.gw, &["--mode", "enforce"]);
    run.wait_for("attached to g0 (native XDP)", 30);

    // A steady flow of both across the whole restart.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let sender = {
        let (stop, sent) = (Arc::clone(&stop), Arc::clone(&sent));
        let sock = t.dev.run(|| UdpSocket::bind("192.0.2.1:0").expect("bind"));
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let n = sent.fetch_add(1, Ordering::SeqCst);
                let seq = (n as u32).to_be_bytes();
                sock.send_to(&seq, "198.51.100.129:123").expect("send");
                sock.send_to(&seq, "198.51.100.1:9999").expect("send");
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let before = rule_packets(&run, "198.51.100.128/28");
    assert!(before > 0);

    // kill -9: no clean-up at all. The pinned link keeps the program filtering.
    run.child.kill().expect("kill -9");
    run.child.wait().expect("wait");
    assert!(xdp_attached(&t.gw), "still attached with the daemon dead");
    std::thread::sleep(Duration::from_millis(200));
    run.restart(&t.gw);
    run.wait_for("attached to g0 (replaced the running program, no gap)", 30);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    sender.join().expect("sender");
    std::thread::sleep(Duration::from_millis(200));

    let sent = sent.load(Ordering::SeqCst);
    assert_eq!(
        allowed.load(Ordering::SeqCst),
        sent,
        "every Intune datagram got through the restart"
    );
    assert_eq!(
        other.load(Ordering::SeqCst),
        0,
        "nothing else did, at any moment"
    );
    let after = rule_packets(&run, "198.51.100.128/28");
    assert_eq!(
        after, sent as u64,
        "one count a datagram, across both programs"
    );
    // The port counters carry on too: the new daemon found the slots the old one left.
    let ports = ctl_json(&run, &["stats", "--by", "port"]);
    assert_eq!(
        ports["ports"],
        serde_json::json!([{"proto": "udp", "port": 123, "packets": sent, "bytes": sent as u64 * 46}]),
        "{ports}"
    );
    let (code, _) = run.terminate();
    assert_eq!(code, 0);
}

/// Runs `intune-ctl ARGS --bpffs-dir .. --state-dir ..` of `run` and parses its JSON.
fn ctl_json(run: &Running, args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_intune-ctl-test"))
        .args(args)
        .arg("--json")
        .arg("--bpffs-dir")
        .arg(run.pins.dir())
        .arg("--state-dir")
        .arg(run.state_dir())
        .output()
        .expect("intune-ctl");
    assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[test]
fn stats_and_lookup_read_the_live_filter_and_lookup_counts_nothing() {
    require_root!();
    let t = topology("l");
    let mut run = Running::start(
        &t.gw,
        &["--mode", "enforce", "--metrics-listen", "127.0.0.1:9469"],
    );
    run.wait_for("attached to g0", 30);
    assert!(connects(&t.dev, "198.51.100.1:443"));
    assert!(!connects(&t.dev, ELSEWHERE));

    let stats = ctl_json(&run, &["stats"]);
    let metrics = t.gw.run(|| {
        let mut s = TcpStream::connect("127.0.0.1:9469").expect("metrics endpoint");
        std::io::Write::write_all(&mut s, b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut s, &mut text).unwrap();
        text
    });
    let metric = |line_start: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(line_start))
            .unwrap_or_else(|| panic!("{line_start} in {metrics}"))
            .trim()
            .parse::<f64>()
            .unwrap() as u64
    };
    assert!(
        metrics.starts_with("HTTP/1.0 200") || metrics.starts_with("HTTP/1.1 200"),
        "{metrics}"
    );
    assert_eq!(
        metric("intune_xdp_outcome_packets_total{outcome=\"intune\"}"),
        stats["outcomes"]["intune"]["packets"].as_u64().unwrap()
    );
    assert_eq!(
        metric("intune_xdp_set_packets_total{set=\"901\"}"),
        stats["rules"][0]["packets"].as_u64().unwrap()
    );
    assert!(metric("intune_xdp_rules{source=\"file\"}") >= 3);
    assert!(metric("intune_xdp_map_update_duration_seconds_count") >= 1);
    assert!(
        stats["outcomes"]["intune"]["packets"].as_u64().unwrap() >= 2,
        "{stats}"
    );
    assert!(
        stats["outcomes"]["dropped"]["packets"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    let rule = &stats["rules"][0];
    assert_eq!(rule["prefix"], "198.51.100.0/24", "{stats}");
    assert_eq!(rule["endpoint_sets"], serde_json::json!([901]));
    assert_eq!(rule["source"], "file");
    assert_eq!(
        rule["packets"], stats["outcomes"]["intune"]["packets"],
        "every Intune packet on that rule"
    );

    let pass = ctl_json(&run, &["lookup", "198.51.100.1", "--port", "443"]);
    assert_eq!(pass["action"], "pass");
    assert_eq!(pass["outcome"], "intune");
    assert_eq!(pass["prefix"], "198.51.100.0/24");
    let drop = ctl_json(&run, &["lookup", "198.51.100.1", "--port", "8443"]);
    assert_eq!(
        (drop["action"].as_str(), drop["outcome"].as_str()),
        (Some("drop"), Some("dropped"))
    );
    let udp = ctl_json(
        &run,
        &[
            "lookup",
            "198.51.100.130",
            "--proto",
            "udp",
            "--port",
            "123",
        ],
    );
    assert_eq!(udp["prefix"], "198.51.100.128/28", "{udp}");
    assert_eq!(udp["endpoint_sets"], serde_json::json!([902]));
    let ports = udp["ports"].as_str().unwrap();
    assert!(
        ports.contains("123") && ports.contains("443"),
        "covering /24's ports too: {ports}"
    );
    let back = ctl_json(
        &run,
        &[
            "lookup",
            "198.51.100.1",
            "--port",
            "443",
            "--direction",
            "src",
        ],
    );
    assert_eq!(
        back["action"], "drop",
        "the interface matches destinations only"
    );

    let again = ctl_json(&run, &["stats", "--by", "outcome"]);
    // (Neighbour discovery on the veth may add infrastructure packets meanwhile.)
    for outcome in ["intune", "dropped"] {
        assert_eq!(
            again["outcomes"][outcome], stats["outcomes"][outcome],
            "lookups count nothing"
        );
    }
    let by_set = ctl_json(&run, &["stats", "--by", "set"]);
    assert_eq!(by_set["sets"][0]["set"], 901, "{by_set}");
    // A lookup loads a copy of the program with the live settings: the live filter's own
    // settings stay as they were, still enforcing.
    assert!(!connects(&t.dev, ELSEWHERE), "enforcing after the lookups");
    assert!(connects(&t.dev, "198.51.100.1:443"));
    let stats = ctl_json(&run, &["stats", "--by", "outcome"]);

    let socket = run.state_dir().join("control.sock");
    let ctl_socket = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_intune-ctl-test"))
            .args(args)
            .arg("--json")
            .arg("--control-socket")
            .arg(&socket)
            .output()
            .expect("intune-ctl");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("JSON")
    };
    let status = ctl_socket(&["status"]);
    assert_eq!(status["daemon"], "running", "{status}");
    assert_eq!(status["interfaces"][0]["name"], "g0");
    assert_eq!(status["interfaces"][0]["attached"], "native XDP");
    assert_eq!(status["mode"], "enforce");
    assert!(
        status["rules_by_source"]["file"].as_u64().unwrap() >= 3,
        "{status}"
    );
    assert!(status["service"].is_null(), "--no-service");
    let refreshed = ctl_socket(&["refresh"]);
    assert_eq!(refreshed["service"], "off", "{refreshed}");

    // A second daemon on the same socket refuses to start, before touching anything.
    let (code, _, stderr) = intune_tests::output(
        t.gw.command(env!("CARGO_BIN_EXE_intune-ctl-test"))
            .args(&run.argv),
    );
    assert_eq!(code, 2);
    assert!(
        stderr.contains("another intune-ctl daemon answers"),
        "{stderr}"
    );
    assert_eq!(
        ctl_socket(&["status"])["daemon"],
        "running",
        "the first one still answers"
    );

    // The daemon stops; the filter and its counters stay, and so does stats.
    let (code, _) = run.terminate();
    assert_eq!(code, 0);
    let after = ctl_json(&run, &["stats", "--by", "outcome"]);
    assert_eq!(after["outcomes"]["intune"], stats["outcomes"]["intune"]);
    let bpffs = run.pins.dir().to_string_lossy().into_owned();
    let state = run.state_dir().to_string_lossy().into_owned();
    let status = ctl_socket(&["status", "--bpffs-dir", &bpffs, "--state-dir", &state]);
    assert_eq!(status["daemon"], "not running");
    assert_eq!(
        status["interfaces"][0]["name"], "g0",
        "still attached, from its pin"
    );
}

#[test]
fn sighup_applies_a_good_config_and_rejects_a_broken_one() {
    require_root!();
    let t = topology("h");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let write = |mode: &str| {
        std::fs::write(
            &config,
            format!("[[interface]]\nname = \"g0\"\n\n[policy]\nmode = \"{mode}\"\n"),
        )
        .unwrap();
    };
    write("monitor");
    let mut run = Running::start(&t.gw, &["--config", config.to_str().unwrap()]);
    run.wait_for("attached to g0", 30);
    assert!(connects(&t.dev, ELSEWHERE), "monitor");

    let hup = |run: &Running| {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(run.child.id() as i32, libc::SIGHUP) };
    };
    write("enforce");
    hup(&run);
    run.wait_for("reloaded the config", 10);
    assert!(!connects(&t.dev, ELSEWHERE), "enforce after the reload");
    assert!(connects(&t.dev, "198.51.100.1:443"));

    write("lax");
    hup(&run);
    let lines = run.wait_for("the new config is rejected", 10);
    assert!(lines.iter().any(|l| l.contains("lax")), "{lines:?}");
    assert!(!connects(&t.dev, ELSEWHERE), "still enforcing");
    assert!(connects(&t.dev, "198.51.100.1:443"));
    let (code, _) = run.terminate();
    assert_eq!(code, 0);
}

#[test]
fn systemd_hears_ready_status_and_the_watchdog() {
    require_root!();
    let t = topology("n");
    // systemd's side of the notify protocol: a datagram socket named in NOTIFY_SOCKET.
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut run = Running::start(&t.gw, &[]);
    run.wait_for("attached to g0", 30);
    run.terminate();
    // Again, under "systemd": the same command line with the notify environment.
    let (child, lines) = spawn_with(
        &t.gw,
        &run.argv,
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "400000"),
        ],
        false,
    );
    run.child = child;
    run.lines = lines;
    let mut got = String::new();
    let mut buf = [0u8; 4096];
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !(got.contains("READY=1") && got.matches("WATCHDOG=1").count() >= 2) {
        assert!(std::time::Instant::now() < deadline, "{got}");
        let n = sock.recv(&mut buf).expect("a notification");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
        got.push('\n');
    }
    assert!(got.contains("STATUS=1 interfaces, "), "{got}");
    let ready_at = got.find("READY=1").unwrap();
    assert!(
        got.find("WATCHDOG=1").unwrap() > ready_at,
        "ready before the first watchdog ping: {got}"
    );
    run.terminate();
    let mut rest = String::new();
    while let Ok(n) = sock.recv(&mut buf) {
        rest.push_str(&String::from_utf8_lossy(&buf[..n]));
        if rest.contains("STOPPING=1") {
            break;
        }
    }
    assert!(rest.contains("STOPPING=1"), "{rest}");
}

#[test]
fn the_kernel_program_logs_its_decisions_at_debug_level_only() {
    require_root!();
    let t = topology("k");
    let mut run = Running::start(&t.gw, &["--mode", "enforce"]);
    run.wait_for("attached to g0", 30);
    run.terminate();
    let decision = "pass intune rule ";
    for (filter, logged) in [("info", false), ("info,intune_xdp::kernel=debug", true)] {
        let (child, lines) = spawn_with(&t.gw, &run.argv, &[("RUST_LOG", filter)], true);
        run.child = child;
        run.lines = lines;
        run.wait_for("attached to g0", 30);
        assert!(connects(&t.dev, "198.51.100.1:443"));
        assert!(!connects(&t.dev, "198.51.100.1:8443"));
        if logged {
            let seen = run.wait_for(decision, 10);
            assert!(
                seen.iter()
                    .any(|l| l.contains(": tcp 192.0.2.1:") && l.ends_with("-> 198.51.100.1:443")),
                "{seen:?}"
            );
            run.wait_for("drop dropped rule -1: tcp 192.0.2.1:", 10);
        }
        let (code, rest) = run.terminate();
        assert_eq!(code, 0);
        let kernel: Vec<&String> = rest.iter().filter(|l| l.contains(" rule ")).collect();
        assert!(
            logged || kernel.is_empty(),
            "logged at {filter}: {kernel:?}"
        );
    }
}

#[test]
fn without_privilege_run_is_a_one_line_error() {
    require_root!();
    // setpriv drops to nobody with no capabilities: what an admin sees without sudo.
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(env!("CARGO_BIN_EXE_intune-ctl-test"))
        .args(["run", "--iface", "lo"])
        .output()
        .expect("run setpriv");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("are you root?"), "{stderr}");
}

#[test]
fn an_impossible_interface_name_is_a_one_line_error() {
    require_root!();
    // A name Linux cannot give (16 bytes) is an error; a missing one is waited for (the
    // interfaces test).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_intune-ctl-test"))
        .args(["run", "--iface", "ixt-no-such-if00"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(r#"interface[0].name = "ixt-no-such-if00" is not an interface name"#),
        "{stderr}"
    );
}
