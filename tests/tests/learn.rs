//! Learning addresses from the DNS answers that cross the gateway: device, gateway (the daemon,
//! enforce mode, learning on) and server (dnsmasq on port 53 answering wildcard names, with
//! CNAME chains, and the "endpoints" the names lead to). Real queries and connections from the
//! device. Needs root.

use std::{
    net::{IpAddr, SocketAddr, TcpListener, UdpSocket},
    process::Child,
    sync::atomic::Ordering,
    time::Duration,
};

use hickory_proto::{op::Message, rr::RData};
use intune_ctl::datapath::pins::Pins;
use intune_tests::{
    dns::{Dnsmasq, query_bytes},
    monitoring::{alert_queries, dashboard_queries, families_named, families_scraped},
    netns::{Gateway, Netns, veth},
    output,
    process::{Lines, metric, scrape, spawn_daemon, test_pins},
    require_root,
};
use serde_json::Value;

const SETS: &str = r#"[
  {"id": 950, "serviceArea": "MEM", "category": "Allow", "required": true,
   "urls": ["*.wild.test"], "tcpPorts": "443"}
]"#;

/// DNS answers live 3 s; learned addresses 3 s more (both longer where the tests run slower).
fn ttl() -> u32 {
    3 * intune_tests::slowdown()
}

fn grace_secs() -> u32 {
    3 * intune_tests::slowdown()
}

struct Net {
    dev: Netns,
    gw: Netns,
    srv: Netns,
    _dns: Dnsmasq,
}

/// dev 192.0.2.1 -- g0 [gw] s0 -- srv 198.51.100.10 (dnsmasq :53), 198.51.100.11 (a hostile
/// "resolver"), and the names' addresses 203.0.113.20-22 on lo, TCP 443 open.
fn net(tag: &str) -> Net {
    let Gateway { dev, gw, srv } =
        Gateway::new(&format!("l{tag}"), &["198.51.100.10", "198.51.100.11"]);
    gw.ip(&["route", "add", "203.0.113.0/24", "via", "198.51.100.10"]);
    for a in ["203.0.113.20/32", "203.0.113.21/32", "203.0.113.22/32"] {
        srv.ip(&["addr", "add", a, "dev", "lo"]);
    }
    for a in ["203.0.113.20:443", "203.0.113.21:443", "203.0.113.22:443"] {
        let addr: SocketAddr = a.parse().unwrap();
        let listener = srv.run(move || TcpListener::bind(addr).expect("bind"));
        std::thread::spawn(move || for _ in listener.incoming() {});
    }
    let hosts =
        "203.0.113.20 edge.cdn.test\n203.0.113.21 direct.wild.test\n203.0.113.22 other.test\n";
    let dns = Dnsmasq::start_on(
        Some(&srv),
        "198.51.100.10".parse().unwrap(),
        Some(53),
        hosts,
        ttl(),
        &["--cname=app.wild.test,edge.cdn.test".to_string()],
    );
    Net {
        dev,
        gw,
        srv,
        _dns: dns,
    }
}

/// Asks the server's dnsmasq for `name` from the device; the A record at the end of the answer.
fn ask(dev: &Netns, name: &str) -> IpAddr {
    ask_from(dev, "192.0.2.1", name)
}

/// As [`ask`], from the device address `src`.
fn ask_from(dev: &Netns, src: &'static str, name: &str) -> IpAddr {
    ask_server(dev, src, "198.51.100.10:53", name)
}

/// Asks `server` for `name` from the device address `src`; the A record at the end of the
/// answer.
fn ask_server(dev: &Netns, src: &'static str, server: &'static str, name: &str) -> IpAddr {
    let query = query_bytes(0x5151, name);
    let answer = dev.run(move || {
        let sock = UdpSocket::bind((src, 0)).expect("bind");
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        sock.send_to(&query, server).expect("send");
        let mut buf = [0u8; 1500];
        let n = sock.recv(&mut buf).expect("an answer");
        buf[..n].to_vec()
    });
    let msg = Message::from_vec(&answer).expect("a DNS answer");
    msg.answers
        .iter()
        .find_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no A record for {name}: {msg:?}"))
}

/// Connects once, within less than TCP's first SYN retransmission (1 s): success means the
/// first SYN went through.
fn first_syn_connects(dev: &Netns, to: IpAddr) -> bool {
    dev.connects(&format!("{to}:443"), Duration::from_millis(800))
}

struct Daemon {
    child: Child,
    lines: Lines,
    pins: Pins,
    dir: tempfile::TempDir,
    extra: Vec<String>,
}

impl Daemon {
    fn start(gw: &Netns, extra: &[&str]) -> Daemon {
        let with_iface: Vec<&str> = ["--iface", "g0"].iter().chain(extra).copied().collect();
        Self::start_in(gw, tempfile::tempdir().unwrap(), &with_iface)
    }

    /// With its interfaces from `config` (a file in the state directory, re-read on SIGHUP).
    fn start_configured(gw: &Netns, config: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, config).unwrap();
        let path = path.to_string_lossy().into_owned();
        Self::start_in(gw, dir, &["--config", &path])
    }

    fn start_in(gw: &Netns, dir: tempfile::TempDir, extra: &[&str]) -> Daemon {
        std::fs::write(dir.path().join("sets.json"), SETS).unwrap();
        let pins = test_pins("learn", dir.path());
        let extra: Vec<String> = extra.iter().map(std::string::ToString::to_string).collect();
        let (child, lines) = Self::spawn(gw, dir.path(), &pins, &extra);
        Daemon {
            child,
            lines,
            pins,
            dir,
            extra,
        }
    }

    fn spawn(gw: &Netns, dir: &std::path::Path, pins: &Pins, extra: &[String]) -> (Child, Lines) {
        spawn_daemon(
            gw.command(env!("CARGO_BIN_EXE_intune-ctl-test"))
                .args([
                    "daemon",
                    "--mode",
                    "enforce",
                    "--no-service",
                    "--no-resolve",
                ])
                .args([
                    "--learn-from-dns",
                    "--dns-grace",
                    &format!("{}s", grace_secs()),
                    // An expired address drains a second: then it is gone.
                    "--idle-timeout",
                    "1s",
                ]),
            dir,
            pins,
            extra,
            "g0",
        )
    }

    /// kill -9, and the same command again.
    fn restart(&mut self, gw: &Netns) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (child, lines) = Self::spawn(gw, self.dir.path(), &self.pins, &self.extra);
        self.child = child;
        self.lines = lines;
    }

    /// `intune-ctl ARGS --json --state-dir ..`, and `--bpffs-dir ..` unless it is `list`.
    fn ctl(&self, args: &[&str]) -> Value {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_intune-ctl-test"));
        cmd.args(args)
            .arg("--json")
            .arg("--state-dir")
            .arg(self.dir.path());
        if args[0] != "list" {
            cmd.arg("--bpffs-dir").arg(self.pins.dir());
        }
        let (code, out, err) = output(&mut cmd);
        assert_eq!(code, 0, "{args:?}: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    }

    fn signal(&self, signal: i32) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    fn status(&self) -> Value {
        let (code, out, err) = output(
            std::process::Command::new(env!("CARGO_BIN_EXE_intune-ctl-test"))
                .args(["status", "--json", "--control-socket"])
                .arg(self.dir.path().join("control.sock")),
        );
        assert_eq!(code, 0, "status: {err}");
        serde_json::from_str(&out).unwrap()
    }

    fn learned(&self) -> Value {
        self.status()["learning"].clone()
    }

    /// The learner's view once `done` holds of it, or after 2 s (scaled) as it is then: the
    /// learner reads an answer a moment after it passed, longer under emulation.
    fn learned_once(&self, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + intune_tests::scaled_secs(2);
        loop {
            let learning = self.learned();
            if done(&learning) || std::time::Instant::now() > deadline {
                return learning;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = self.pins.remove_all();
    }
}

/// A response with `id` for x.wild.test holding its address and one of other.test, both
/// with `ttl`.
fn answer_with_stranger(id: u16, ttl: u32) -> Vec<u8> {
    use hickory_proto::{
        op::{OpCode, Query},
        rr::{Name, Record, RecordType, rdata::A},
    };
    let name = |n: &str| Name::from_ascii(n).unwrap();
    let a = |owner: &str, addr: &str| {
        Record::from_rdata(name(owner), ttl, RData::A(A(addr.parse().unwrap())))
    };
    let mut m = Message::response(id, OpCode::Query);
    m.add_query(Query::query(name("x.wild.test."), RecordType::A));
    m.add_answers([
        a("x.wild.test.", "203.0.113.21"),
        a("other.test.", "203.0.113.22"),
    ]);
    m.to_vec().unwrap()
}

/// The "resolver" at 198.51.100.11 answers one query with [`answer_with_stranger`] under the
/// query's id, whatever it asked.
fn stranger_resolver(srv: &Netns, ttl: u32) -> std::thread::JoinHandle<()> {
    let sock = srv.run(|| {
        let sock = UdpSocket::bind("198.51.100.11:53").expect("bind :53");
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        sock
    });
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        if let Ok((n, from)) = sock.recv_from(&mut buf)
            && n >= 2
        {
            let id = u16::from_be_bytes([buf[0], buf[1]]);
            let _ = sock.send_to(&answer_with_stranger(id, ttl), from);
        }
    })
}

#[test]
fn answers_teach_wildcard_addresses_until_they_expire() {
    require_root!();
    let n = net("a");
    let d = Daemon::start(
        &n.gw,
        &[
            "--learn-trusted",
            "198.51.100.10",
            "--metrics-listen",
            "127.0.0.1:9471",
        ],
    );

    // Not asked yet: the address is no Intune address.
    let edge: IpAddr = "203.0.113.20".parse().unwrap();
    assert!(
        !first_syn_connects(&n.dev, edge),
        "unknown before the answer"
    );

    // Through a CNAME chain: app.wild.test -> edge.cdn.test -> 203.0.113.20. The capture
    // program learns it before the answer leaves: the first SYN gets through even with the
    // daemon stopped.
    d.signal(libc::SIGSTOP);
    let asked_at = std::time::Instant::now();
    assert_eq!(ask(&n.dev, "app.wild.test"), edge);
    let first = first_syn_connects(&n.dev, edge);
    d.signal(libc::SIGCONT);
    assert!(
        first,
        "the first SYN, learned in the kernel: {}",
        d.learned()
    );
    let direct = ask(&n.dev, "direct.wild.test");
    assert!(first_syn_connects(&n.dev, direct), "the first SYN");
    // A name of no endpoint set teaches nothing.
    let other = ask(&n.dev, "other.test");
    assert!(!first_syn_connects(&n.dev, other));
    // Only the name's ports.
    assert!(
        !n.dev
            .connects("203.0.113.20:8443", Duration::from_millis(300))
    );

    let learning = d.learned_once(|l| l["addresses"] == 2);
    assert_eq!(learning["addresses"], 2, "{learning}");
    assert!(
        learning["counts"]["not_matched"].as_u64().unwrap() >= 1,
        "{learning}"
    );
    eprintln!("learning: {learning}");
    let m = scrape(&n.gw, "127.0.0.1:9471");
    assert_eq!(
        metric(&m, "intune_xdp_learn_answers_total{result=\"learned\"}"),
        2
    );
    assert_eq!(
        metric(&m, "intune_xdp_learn_answers_total{result=\"not_matched\"}"),
        1
    );
    assert_eq!(metric(&m, "intune_xdp_learned_addresses "), 2);
    assert_eq!(metric(&m, "intune_xdp_learn_duration_seconds_count "), 2);
    assert_eq!(metric(&m, "intune_xdp_learn_ring_lost_total "), 0);
    // Every metric the shipped dashboard and alert rules use is one this daemon exports.
    let exported = families_scraped(&m);
    let used = families_named(&(dashboard_queries().join("\n") + &alert_queries()));
    let missing: Vec<&String> = used.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "not exported: {missing:?}; exported: {exported:?}"
    );

    // list and lookup show them, with the wildcard and the name the device asked for.
    std::thread::sleep(Duration::from_millis(1200));
    let list = d.ctl(&["list", "--no-builtin"]);
    let learned = list["learned"]
        .as_array()
        .unwrap_or_else(|| panic!("{list}"));
    let app = learned
        .iter()
        .find(|l| l["address"] == "203.0.113.20")
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(app["asked"], "app.wild.test");
    assert_eq!(app["pattern"], "*.wild.test");
    assert_eq!(app["endpoint_sets"], serde_json::json!([950]));
    let verdict = d.ctl(&["lookup", "203.0.113.20", "--port", "443"]);
    assert_eq!(
        verdict["action"],
        "pass",
        "{verdict} {} {:?}",
        d.learned(),
        asked_at.elapsed()
    );
    // Confirmed, the address counts on a counter of its own (the first connection, made while
    // it was provisional, counted only as Intune traffic).
    assert!(first_syn_connects(&n.dev, edge));
    let stats = d.ctl(&["stats"]);
    let hits = stats["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["prefix"] == "203.0.113.20/32")
        .unwrap_or_else(|| panic!("{stats}"));
    assert_eq!(hits["source"], "learned");
    assert!(hits["packets"].as_u64().unwrap() >= 2, "{stats}");

    // TTL plus grace later they expire and drain; idle for the idle timeout, they are gone.
    std::thread::sleep(
        Duration::from_secs(u64::from(ttl() + grace_secs()) + 1) + intune_tests::scaled_secs(2),
    );
    assert!(!first_syn_connects(&n.dev, edge), "expired");
    assert_eq!(d.learned()["addresses"], 0);
}

#[test]
fn untrusted_resolvers_and_hostile_answers_teach_nothing_and_pass_as_before() {
    require_root!();
    let n = net("b");
    let d = Daemon::start(&n.gw, &["--learn-trusted", "198.51.100.99"]);
    let edge = ask(&n.dev, "app.wild.test");
    assert!(!first_syn_connects(&n.dev, edge), "an untrusted answer");
    let learning = d.learned_once(|l| l["counts"]["untrusted"].as_u64().unwrap() >= 1);
    assert_eq!(learning["addresses"], 0, "{learning}");
    assert!(learning["counts"]["untrusted"].as_u64().unwrap() >= 1);
    drop(d);

    // The hostile resolver trusted too: what it sends unasked teaches nothing, and garbage
    // must not hurt.
    let d = Daemon::start(
        &n.gw,
        &[
            "--learn-trusted",
            "198.51.100.10",
            "--learn-trusted",
            "198.51.100.11",
        ],
    );
    let received = n.dev.udp_counter("192.0.2.1:5353");
    let mut corpus = intune_tests::dns::hostile_answers();
    // A well-formed answer for an endpoint name, to no query.
    corpus.push(answer_with_stranger(7, 60));
    let count = corpus.len();
    // The capture hands over what is at least a DNS header.
    let captured = corpus.iter().filter(|p| p.len() >= 12).count() as u64;
    n.srv.run(move || {
        let sock = UdpSocket::bind("198.51.100.11:53").expect("bind :53");
        for packet in &corpus {
            sock.send_to(packet, "192.0.2.1:5353").expect("send");
        }
    });
    let learning = d.learned_once(|l| l["counts"]["unsolicited"].as_u64().unwrap() >= captured);
    assert_eq!(
        received.load(Ordering::SeqCst),
        count,
        "every packet passed"
    );
    assert_eq!(
        learning["counts"]["unsolicited"].as_u64(),
        Some(captured),
        "{learning}"
    );
    assert_eq!(learning["addresses"], 0, "{learning}");
    assert!(
        !first_syn_connects(&n.dev, "203.0.113.21".parse().unwrap()),
        "an unsolicited answer leaves nothing in the kernel either"
    );
    // Asked, the same resolver's answer teaches; a record of another name beside the
    // question's does not (the capture program takes both in at once, the learner keeps only
    // the question's).
    let responder = stranger_resolver(&n.srv, 60);
    let asked = ask_server(&n.dev, "192.0.2.1", "198.51.100.11:53", "x.wild.test");
    responder.join().expect("responder");
    assert_eq!(asked.to_string(), "203.0.113.21");
    std::thread::sleep(Duration::from_millis(300) * intune_tests::slowdown());
    assert!(first_syn_connects(&n.dev, "203.0.113.21".parse().unwrap()));
    assert!(
        !first_syn_connects(&n.dev, "203.0.113.22".parse().unwrap()),
        "a record of another name"
    );

    // Still learning.
    let edge = ask(&n.dev, "app.wild.test");
    assert!(first_syn_connects(&n.dev, edge), "{}", d.learned());

    // A restarted daemon takes back what its predecessor learned (recorded within a second).
    std::thread::sleep(Duration::from_millis(1200));
    let mut d = d;
    d.restart(&n.gw);
    let deadline = std::time::Instant::now() + intune_tests::scaled_secs(3);
    while d.learned()["addresses"].as_u64() == Some(0) {
        assert!(std::time::Instant::now() < deadline, "{}", d.learned());
        std::thread::sleep(Duration::from_millis(50));
    }
    // The address with the 60 s TTL: a start-up under emulation may outlast the short ones.
    assert!(
        first_syn_connects(&n.dev, asked),
        "restored without a new answer: {}",
        d.learned()
    );
}

#[test]
fn an_answers_ttl_is_cut_to_max_ttl_and_learning_needs_trusted_resolvers() {
    require_root!();
    let n = net("t");
    let max_ttl = 2 * intune_tests::slowdown();
    let d = Daemon::start(
        &n.gw,
        &[
            "--learn-trusted",
            "198.51.100.11",
            "--dns-min-ttl",
            "1s",
            "--dns-max-ttl",
            &format!("{max_ttl}s"),
        ],
    );
    // 68 years, as a hostile resolver might say.
    let responder = stranger_resolver(&n.srv, i32::MAX as u32);
    let asked = ask_server(&n.dev, "192.0.2.1", "198.51.100.11:53", "x.wild.test");
    responder.join().expect("responder");
    assert!(first_syn_connects(&n.dev, asked), "{}", d.learned());
    std::thread::sleep(
        Duration::from_secs(u64::from(max_ttl + grace_secs()) + 1) + intune_tests::scaled_secs(2),
    );
    assert!(
        !first_syn_connects(&n.dev, asked),
        "gone after max_ttl, grace and the idle timeout: {}",
        d.learned()
    );
    drop(d);

    // Without a resolver to trust, the daemon refuses before it touches anything.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sets.json"), SETS).unwrap();
    let (code, out, err) = output(
        n.gw.command(env!("CARGO_BIN_EXE_intune-ctl-test"))
            .args([
                "daemon",
                "--iface",
                "g0",
                "--no-service",
                "--learn-from-dns",
            ])
            .arg("--endpoints")
            .arg(dir.path().join("sets.json"))
            .arg("--state-dir")
            .arg(dir.path())
            .arg("--control-socket")
            .arg(dir.path().join("control.sock")),
    );
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("learning from DNS needs the resolvers it may trust"),
        "{err}"
    );
    assert!(
        !String::from_utf8_lossy(&n.gw.ip(&["link", "show", "g0"]).stdout).contains("xdp"),
        "nothing attached"
    );
}

/// `tc filter show dev IF egress` in the gateway: where a capture attached as a tc filter shows.
fn tc_egress(gw: &Netns, iface: &str) -> String {
    let (code, out, err) = output(
        gw.command("tc")
            .args(["filter", "show", "dev", iface, "egress"]),
    );
    assert_eq!(code, 0, "tc: {err}");
    out
}

/// A second device network behind the gateway: dev2 192.0.2.129 (d1) -- (g1) 192.0.2.130.
fn second_device(n: &Net, dev2: &Netns) {
    veth(dev2, "d1", &n.gw, "g1");
    dev2.ip(&["addr", "add", "192.0.2.129/25", "dev", "d1"]);
    dev2.ip(&["route", "add", "default", "via", "192.0.2.130"]);
    n.gw.ip(&["addr", "add", "192.0.2.130/25", "dev", "g1"]);
}

/// The daemon's config naming `ifaces`, learning from the server's dnsmasq.
fn config(ifaces: &[&str]) -> String {
    let mut c = String::new();
    for i in ifaces {
        c.push_str(&format!("[[interface]]\nname = \"{i}\"\n\n"));
    }
    c.push_str("[dns]\nlearn_trusted = [\"198.51.100.10\"]\n");
    c
}

#[test]
fn the_capture_comes_back_with_an_interface_deleted_and_created_again() {
    require_root!();
    let n = net("r");
    let dev2 = Netns::new("lr2");
    second_device(&n, &dev2);
    let d = Daemon::start_configured(&n.gw, &config(&["g0", "g1"]));
    d.lines.wait_for("learning from DNS answers on g1", 30);
    let tc_filter = d.status()["kernel"]["dns_capture"] == "tc filter (clsact)";
    // g1 goes (its device network's link is rebuilt) and comes back with a new ifindex.
    n.gw.ip(&["link", "del", "g1"]);
    d.lines.wait_for("g1 is gone", 10);
    second_device(&n, &dev2);
    d.lines.wait_for("learning from DNS answers on g1", 10);
    // An answer through the new g1 teaches: its wildcard name's address opens at once.
    let edge = ask_from(&dev2, "192.0.2.129", "app.wild.test");
    assert!(
        first_syn_connects(&dev2, edge),
        "learned on the new g1: {}",
        d.learned()
    );
    if tc_filter {
        assert!(tc_egress(&n.gw, "g1").contains("intune_dns"));
    }
}

#[test]
fn the_capture_follows_interfaces_added_by_sighup_and_detach_leaves_no_filter() {
    require_root!();
    let n = net("c");
    let dev2 = Netns::new("lc2");
    second_device(&n, &dev2);
    let mut d = Daemon::start_configured(&n.gw, &config(&["g0"]));
    let kernel = d.status()["kernel"].clone();
    let tc_filter = kernel["dns_capture"] == "tc filter (clsact)";
    assert!(tc_filter || kernel["dns_capture"] == "tcx", "{kernel}");
    // What the kernel lacks is said: only the tc-filter fallback here.
    assert_eq!(
        kernel["degraded"].as_array().map(Vec::len),
        Some(usize::from(tc_filter)),
        "{kernel}"
    );
    let answers = |d: &Daemon| d.learned()["counts"]["answers"].as_u64().unwrap();

    // g1 is not filtered yet: its answers are not read.
    ask_from(&dev2, "192.0.2.129", "app.wild.test");
    std::thread::sleep(Duration::from_millis(300) * intune_tests::slowdown());
    assert_eq!(answers(&d), 0, "{}", d.learned());

    // SIGHUP adds g1: the filter and the capture come with it.
    let path = d.dir.path().join("config.toml");
    std::fs::write(&path, config(&["g0", "g1"])).unwrap();
    d.signal(libc::SIGHUP);
    d.lines.wait_for("learning from DNS answers on g1", 30);
    let edge = ask_from(&dev2, "192.0.2.129", "app.wild.test");
    assert!(
        first_syn_connects(&dev2, edge),
        "learned on g1: {}",
        d.learned()
    );
    let learning = d.learned_once(|l| l["counts"]["answers"].as_u64().unwrap() >= 1);
    assert!(answers(&d) >= 1, "{learning}");
    if tc_filter {
        assert!(tc_egress(&n.gw, "g1").contains("intune_dns"));
    }

    // SIGHUP takes g1 away again: no more capture there.
    std::fs::write(&path, config(&["g0"])).unwrap();
    d.signal(libc::SIGHUP);
    d.lines.wait_for("detached from g1", 30);
    let before = answers(&d);
    ask_from(&dev2, "192.0.2.129", "direct.wild.test");
    std::thread::sleep(Duration::from_millis(300) * intune_tests::slowdown());
    assert_eq!(answers(&d), before, "{}", d.learned());
    assert!(!tc_egress(&n.gw, "g1").contains("intune_dns"));

    // A daemon killed outright cannot remove a tc filter; `detach` does. A TCX link goes with
    // the process.
    let _ = d.child.kill();
    let _ = d.child.wait();
    assert_eq!(tc_egress(&n.gw, "g0").contains("intune_dns"), tc_filter);
    let (code, out, err) = output(
        n.gw.command(env!("CARGO_BIN_EXE_intune-ctl-test"))
            .args(["detach", "--bpffs-dir"])
            .arg(d.pins.dir()),
    );
    assert_eq!(code, 0, "detach: {out}{err}");
    assert!(!tc_egress(&n.gw, "g0").contains("intune_dns"), "{out}");
}

#[test]
fn a_provisional_address_whose_record_was_lost_leaves_at_the_second_sweep() {
    require_root!();
    let n = net("s");
    let d = Daemon::start(&n.gw, &["--learn-trusted", "198.51.100.10"]);
    // What the capture leaves when the ring had no room for its record: an entry under the
    // provisional rule, and one more in its count of lost records. The learner sees the count
    // grow; the next sweep (every 10 s) finds the entry, the one after removes it.
    let path = d.pins.map(intune_common::learn::LEARNED);
    let data = aya::maps::MapData::from_pin(&path).expect("LEARNED pinned");
    let learned_id = data.info().expect("LEARNED's info").id();
    let mut learned: aya::maps::HashMap<_, [u8; 16], intune_common::maps::RuleRef> =
        aya::maps::HashMap::try_from(aya::maps::Map::HashMap(data)).expect("LEARNED is a hash");
    let mut key = [0u8; 16];
    key[10..12].copy_from_slice(&[0xff, 0xff]);
    key[12..].copy_from_slice(&[203, 0, 113, 99]);
    let provisional = intune_common::maps::RuleRef {
        rule: intune_common::learn::PROVISIONAL_RULE,
        port_set: 0,
    };
    learned.insert(key, provisional, 0).expect("insert");
    // Nothing was lost: the two sweeps of the next 21 s (real time, whatever the machine's
    // speed) leave the map alone.
    std::thread::sleep(Duration::from_secs(21));
    assert!(
        learned.get(&key, 0).is_ok(),
        "with nothing lost, no sweep walks the map"
    );
    count_a_lost_record(learned_id);
    let lost_at = std::time::Instant::now();
    let deadline = lost_at + intune_tests::scaled_secs(25);
    while learned.get(&key, 0).is_ok() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        learned.get(&key, 0).is_err(),
        "the unconfirmed entry is still there {:?} after the loss",
        lost_at.elapsed()
    );
    // Answers are read and confirmed meanwhile.
    let edge = ask(&n.dev, "app.wild.test");
    assert!(first_syn_connects(&n.dev, edge), "{}", d.learned());
}

/// Adds one to `DNS_LOST` of the program that uses the `LEARNED` map `learned_id`, as the
/// capture does for a record the ring had no room for.
fn count_a_lost_record(learned_id: u32) {
    for prog in aya::programs::loaded_programs().flatten() {
        let Ok(Some(ids)) = prog.map_ids() else {
            continue;
        };
        if !ids.contains(&learned_id) {
            continue;
        }
        for id in ids {
            let Ok(data) = aya::maps::MapData::from_id(id) else {
                continue;
            };
            if data
                .info()
                .ok()
                .and_then(|i| i.name_as_str().map(str::to_owned))
                != Some(intune_common::learn::DNS_LOST.to_owned())
            {
                continue;
            }
            let mut lost: aya::maps::PerCpuArray<_, u64> =
                aya::maps::PerCpuArray::try_from(aya::maps::Map::PerCpuArray(data))
                    .expect("DNS_LOST is a per-CPU array");
            let mut values: Vec<u64> = lost.get(&0, 0).expect("DNS_LOST").iter().copied().collect();
            values[0] += 1;
            lost.set(
                0,
                aya::maps::PerCpuValues::try_from(values).expect("per-CPU values"),
                0,
            )
            .expect("DNS_LOST written");
            return;
        }
    }
    panic!("no program with the LEARNED map {learned_id} and a DNS_LOST map");
}
