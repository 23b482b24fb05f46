//! A hostile device behind a gateway in enforce mode: device, gateway (the daemon, enforce
//! mode, learning on, the site's resolver configured) and servers, in three namespaces. Every
//! way around enforce mode the device can try with real sockets is dropped and counted; the
//! gateway's own services and link-local groups pass as local; a restart with the resolver
//! stopped keeps the resolved names reachable. Needs root.

use std::{
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    process::Child,
    sync::atomic::Ordering,
    time::Duration,
};

use intune_ctl::datapath::pins::Pins;
use intune_tests::{
    dns::Dnsmasq,
    netns::{Gateway, Netns},
    output,
    process::{Lines, spawn_daemon, test_pins, wait_until_reachable},
    require_root,
};
use serde_json::Value;

/// An exact name the daemon resolves, and the wildcard it learns under.
const SETS: &str = r#"[
  {"id": 960, "serviceArea": "MEM", "category": "Allow", "required": true,
   "urls": ["push.test", "*.wild.test"], "tcpPorts": "443"}
]"#;

/// The site's resolver.
const RESOLVER: &str = "198.51.100.10";
/// A server that is nothing of Intune's, listening on every port the tests try.
const ELSEWHERE: &str = "198.51.100.77";
/// push.test's address.
const PUSH: &str = "198.51.100.20";

struct Site {
    dev: Netns,
    gw: Netns,
    srv: Netns,
    dns: Dnsmasq,
}

/// push.test's address once it moved.
const PUSH_MOVED: &str = "198.51.100.21";

/// The namespaces, dnsmasq answering with `ttl`.
fn site(tag: &str, ttl: u32) -> Site {
    let Gateway { dev, gw, srv } = Gateway::new(tag, &[RESOLVER, ELSEWHERE, PUSH, PUSH_MOVED]);
    let dns = Dnsmasq::start_on(
        Some(&srv),
        RESOLVER.parse().unwrap(),
        Some(53),
        &format!("{PUSH} push.test\n"),
        ttl,
        &[],
    );
    // The gateway's own service (an SSH stand-in) and push.test's new address.
    listen(&gw, "192.0.2.2:2222");
    listen(&srv, "198.51.100.21:443");
    Site { dev, gw, srv, dns }
}

/// A TCP listener in `ns` that accepts and forgets.
fn listen(ns: &Netns, addr: &str) {
    let addr: SocketAddr = addr.parse().unwrap();
    let listener = ns.run(move || TcpListener::bind(addr).expect("bind"));
    std::thread::spawn(move || for _ in listener.incoming() {});
}

struct Daemon {
    child: Child,
    lines: Lines,
    pins: Pins,
    dir: tempfile::TempDir,
    extra: Vec<String>,
}

impl Daemon {
    fn start(gw: &Netns) -> Daemon {
        Self::start_with(gw, &[])
    }

    fn start_with(gw: &Netns, extra: &[&str]) -> Daemon {
        let extra: Vec<String> = extra.iter().map(std::string::ToString::to_string).collect();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("sets.json"), SETS).unwrap();
        let pins = test_pins("hostile", dir.path());
        let (child, lines) = Self::spawn(gw, dir.path(), &pins, &extra);
        Daemon {
            child,
            lines,
            pins,
            dir,
            extra,
        }
    }

    /// kill -9, and the same command again.
    fn restart(&mut self, gw: &Netns) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        (self.child, self.lines) = Self::spawn(gw, self.dir.path(), &self.pins, &self.extra);
    }

    fn spawn(gw: &Netns, dir: &std::path::Path, pins: &Pins, extra: &[String]) -> (Child, Lines) {
        spawn_daemon(
            gw.command(env!("CARGO_BIN_EXE_intune-ctl-test"))
                .args([
                    "daemon",
                    "--iface",
                    "g0",
                    "--mode",
                    "enforce",
                    "--no-service",
                ])
                .arg("--no-builtin")
                .args(["--dns-resolver", RESOLVER, "--resolver", "198.51.100.10:53"])
                .args(["--dns-min-ttl", "1s", "--learn-from-dns"]),
            dir,
            pins,
            extra,
            "g0",
        )
    }

    /// `intune-ctl ARGS --json` with this daemon's paths.
    fn ctl(&self, args: &[&str]) -> Value {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_intune-ctl-test"));
        cmd.args(args)
            .arg("--json")
            .arg("--state-dir")
            .arg(self.dir.path());
        match args[0] {
            "list" => {}
            "status" => {
                cmd.arg("--bpffs-dir")
                    .arg(self.pins.dir())
                    .arg("--control-socket")
                    .arg(self.dir.path().join("control.sock"));
            }
            _ => {
                cmd.arg("--bpffs-dir").arg(self.pins.dir());
            }
        }
        let (code, out, err) = output(&mut cmd);
        assert_eq!(code, 0, "{args:?}: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    }

    /// Packets counted under `outcome`.
    fn outcome(&self, outcome: &str) -> u64 {
        let stats = self.ctl(&["stats", "--by", "outcome"]);
        stats["outcomes"][outcome]["packets"]
            .as_u64()
            .unwrap_or_else(|| panic!("{stats}"))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = self.pins.remove_all();
    }
}

/// Sends one raw IP datagram of `proto` with `payload` from `ns` to `dst` (the kernel writes
/// the IP header).
fn send_raw(ns: &Netns, proto: i32, dst: &'static str, payload: Vec<u8>) {
    ns.run(move || {
        // SAFETY: plain socket calls on a descriptor this closure owns.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_RAW, proto);
            assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
            let fd = OwnedFd::from_raw_fd(fd);
            let addr = libc::sockaddr_in {
                sin_family: libc::AF_INET as u16,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(dst.parse::<std::net::Ipv4Addr>().unwrap().octets()),
                },
                sin_zero: [0; 8],
            };
            let sent = libc::sendto(
                fd.as_raw_fd(),
                payload.as_ptr().cast(),
                payload.len(),
                0,
                (&raw const addr).cast(),
                size_of::<libc::sockaddr_in>() as u32,
            );
            assert_eq!(
                sent,
                payload.len() as isize,
                "sendto: {}",
                std::io::Error::last_os_error()
            );
        }
    });
}

/// An ICMP destination unreachable of `len` bytes (header included), checksummed.
fn icmp_unreachable(len: usize) -> Vec<u8> {
    let mut m = vec![0xabu8; len.max(8)];
    m[..8].copy_from_slice(&[3, 1, 0, 0, 0, 0, 0, 0]);
    let mut sum: u32 = m
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    m[2..4].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    m
}

/// A UDP datagram from `src` (the device's address and a port of its choice) to `dst`.
fn send_udp_from(dev: &Netns, src: &'static str, dst: &'static str) {
    dev.run(move || {
        let sock = UdpSocket::bind(src).expect("bind");
        for _ in 0..3 {
            sock.send_to(b"tunnel", dst).expect("send");
        }
    });
}

/// Whether a TCP connection from `src` to `dst` opens within 800 ms.
fn tcp_from(dev: &Netns, src: &'static str, dst: &'static str) -> bool {
    dev.run(move || {
        // std cannot bind before connect: a socket of our own.
        // SAFETY: plain socket calls on a descriptor owned by the TcpStream at the end.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            assert!(fd >= 0);
            let one: libc::c_int = 1;
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_REUSEADDR,
                (&raw const one).cast(),
                size_of::<libc::c_int>() as u32,
            );
            let sa = |s: &str| {
                let a: std::net::SocketAddrV4 = s.parse().unwrap();
                libc::sockaddr_in {
                    sin_family: libc::AF_INET as u16,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(a.ip().octets()),
                    },
                    sin_zero: [0; 8],
                }
            };
            let (local, remote) = (sa(src), sa(dst));
            let len = size_of::<libc::sockaddr_in>() as u32;
            assert_eq!(
                libc::bind(fd, (&raw const local).cast(), len),
                0,
                "bind {src}: {}",
                std::io::Error::last_os_error()
            );
            let stream = TcpStream::from_raw_fd(fd);
            stream.set_nonblocking(true).unwrap();
            libc::connect(fd, (&raw const remote).cast(), len);
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLOUT,
                revents: 0,
            };
            libc::poll(&raw mut pfd, 1, 800) == 1 && stream.peer_addr().is_ok()
        }
    })
}

#[test]
fn a_hostile_device_finds_no_way_around_enforce_mode() {
    require_root!();
    let s = site("hx", 60);
    listen(&s.srv, "198.51.100.20:443");
    // Before the filter it gets through: the drops below are the filter's.
    let before = s.srv.udp_counter("198.51.100.77:9");
    send_udp_from(&s.dev, "192.0.2.1:0", "198.51.100.77:9");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        before.load(Ordering::SeqCst),
        3,
        "reachable before the filter"
    );
    let d = Daemon::start(&s.gw);
    // Listeners elsewhere on every port a tunnel might use.
    let udp: Vec<_> = [
        "198.51.100.77:4444",
        "198.51.100.77:67",
        "198.51.100.77:547",
    ]
    .into_iter()
    .map(|a| (a, s.srv.udp_counter(a)))
    .collect();
    let other_resolver = s.srv.udp_counter("198.51.100.77:53");

    listen(&s.srv, "198.51.100.77:4444");
    assert!(
        s.dev
            .connects("198.51.100.20:443", Duration::from_millis(800))
            || {
                // The name's address comes with the first resolver step: wait for it.
                std::thread::sleep(Duration::from_secs(2));
                s.dev
                    .connects("198.51.100.20:443", Duration::from_millis(800))
            },
        "Intune passes"
    );
    let dropped_before = d.outcome("dropped");

    // `nc -p 53 anyhost 4444`, UDP and TCP; a VPN client on the DHCP ports; DNS to a
    // resolver that is not the site's; an ICMP error of 1,000 bytes to anywhere.
    send_udp_from(&s.dev, "192.0.2.1:53", "198.51.100.77:4444");
    assert!(!tcp_from(&s.dev, "192.0.2.1:53", "198.51.100.77:4444"));
    send_udp_from(&s.dev, "192.0.2.1:68", "198.51.100.77:67");
    send_udp_from(&s.dev, "192.0.2.1:546", "198.51.100.77:547");
    send_udp_from(&s.dev, "192.0.2.1:0", "198.51.100.77:53");

    send_raw(
        &s.dev,
        libc::IPPROTO_ICMP,
        ELSEWHERE,
        icmp_unreachable(1000),
    );
    send_raw(&s.dev, libc::IPPROTO_ICMP, ELSEWHERE, icmp_unreachable(100));
    std::thread::sleep(Duration::from_millis(300));
    for (addr, count) in &udp {
        assert_eq!(count.load(Ordering::SeqCst), 0, "{addr} got through");
    }
    assert_eq!(other_resolver.load(Ordering::SeqCst), 0, "another resolver");

    // 4 × 3 datagrams, the SYN (and maybe its retransmission), 2 ICMP errors.
    let dropped = d.outcome("dropped") - dropped_before;
    assert!(dropped >= 15, "dropped and counted: {dropped}");

    // The gateway's own service, and VRRP to its link-local group, pass as local.
    let local_before = d.outcome("local");
    assert!(
        s.dev.connects("192.0.2.2:2222", Duration::from_millis(800)),
        "the gateway's own service"
    );
    for _ in 0..3 {
        send_raw(&s.dev, 112, "224.0.0.18", vec![0x21, 1, 100, 0, 0, 0, 0, 0]);
    }
    std::thread::sleep(Duration::from_millis(200));
    let local = d.outcome("local") - local_before;
    // SYN, ACK (and maybe a FIN) of the connection, three VRRP adverts.
    assert!(local >= 5, "local: {local}");
    // The device's own DNS to the site's resolver still works, and so does learning.
    let status = d.ctl(&["status"]);
    assert!(
        status["warnings"]
            .as_array()
            .is_some_and(std::vec::Vec::is_empty),
        "{status}"
    );
    assert!(
        status["local_addresses"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == "192.0.2.2/24")),
        "{status}"
    );
    // An address the gateway gains later (a lease, a VIP keepalived moves in) is followed.
    assert!(!s.dev.connects("192.0.2.3:2223", Duration::from_millis(300)));
    s.gw.ip(&["addr", "add", "192.0.2.3/24", "dev", "g0"]);
    listen(&s.gw, "192.0.2.3:2223");
    let deadline = std::time::Instant::now() + intune_tests::scaled_secs(3);
    while !d.ctl(&["status"])["local_addresses"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x == "192.0.2.3/24"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the new address is followed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        s.dev.connects("192.0.2.3:2223", Duration::from_millis(800)),
        "a service on the new address"
    );
}

#[test]
fn a_restart_with_the_resolver_stopped_keeps_resolved_names_reachable() {
    require_root!();
    let s = site("hr", 60);
    listen(&s.srv, "198.51.100.20:443");
    // Nothing drains here: what stays reachable stays because its address came back.
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), "[dns]\nrate = 50\n").unwrap();
    let path = config.path().to_string_lossy().into_owned();
    let mut d = Daemon::start_with(&s.gw, &["--config", &path, "--idle-timeout", "0s"]);
    wait_until_reachable(&s.dev, "198.51.100.20:443", 10);
    // Recorded within a second of the answer.
    std::thread::sleep(Duration::from_millis(1500));
    // The resolver goes down, the daemon dies, and comes back: attached with the name's
    // address already in the maps.
    s.dns.pause(true);
    d.restart(&s.gw);
    assert!(
        s.dev
            .connects("198.51.100.20:443", Duration::from_millis(800)),
        "push.test reachable with its resolver down"
    );
    let list = d.ctl(&["list"]);
    assert!(list.to_string().contains(PUSH), "{list}");
    // A SIGHUP that changes [dns] starts a new resolver state: the addresses carry over.
    std::fs::write(config.path(), "[dns]\nrate = 40\n").unwrap();
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(d.child.id() as i32, libc::SIGHUP) };
    d.lines.wait_for("reloaded the config", 10);
    assert!(
        s.dev
            .connects("198.51.100.20:443", Duration::from_millis(800)),
        "push.test reachable after the reload, its resolver still down"
    );
    let list = d.ctl(&["list"]);
    assert!(list.to_string().contains(PUSH), "{list}");
    // And once the new resolver state is in force (at once, though the old one was waiting
    // out a lookup): it holds the carried addresses (not a drain keeping them), its resolver
    // still down.
    d.lines
        .wait_for("in force: 1 resolved addresses carried over", 2);
    std::thread::sleep(Duration::from_millis(500));
    let status = d.ctl(&["status"]);
    assert!(
        status["resolver"]["resolved_addresses"].as_u64() >= Some(1),
        "{status}"
    );
    assert!(
        status["draining"].as_array().is_none_or(Vec::is_empty),
        "{status}"
    );
    assert!(
        s.dev
            .connects("198.51.100.20:443", Duration::from_millis(800)),
        "push.test reachable from the new resolver state"
    );
    s.dns.pause(false);
}

#[test]
fn a_long_connection_outlives_its_address_leaving_dns_and_ends_idle() {
    require_root!();
    // TTL 2 s, grace and idle timeout 5 s (longer where the tests run slower).
    let slow = intune_tests::slowdown();
    let s = site("hl", 2 * slow);
    let grace = format!("{}s", 5 * slow);
    let d = Daemon::start_with(&s.gw, &["--dns-grace", &grace, "--idle-timeout", &grace]);
    // The server reads what the device sends: bytes counted.
    let received = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let addr: SocketAddr = "198.51.100.20:443".parse().unwrap();
    let listener = s.srv.run(move || TcpListener::bind(addr).expect("bind"));
    {
        let received = std::sync::Arc::clone(&received);
        std::thread::spawn(move || {
            use std::io::Read;
            for mut conn in listener.incoming().map_while(Result::ok) {
                let received = std::sync::Arc::clone(&received);
                std::thread::spawn(move || {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = conn.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        received.fetch_add(n, Ordering::SeqCst);
                    }
                });
            }
        });
    }
    wait_until_reachable(&s.dev, "198.51.100.20:443", 10);
    let to: SocketAddr = "198.51.100.20:443".parse().unwrap();
    let mut conn = s
        .dev
        .run(move || TcpStream::connect_timeout(&to, Duration::from_secs(2)))
        .expect("the long connection");
    conn.set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    // The name moves: dnsmasq answers with its new address from now on.
    s.dns.set_hosts(&format!("{PUSH_MOVED} push.test\n"));
    let before = received.load(Ordering::SeqCst);
    let seconds = 30;
    for _ in 0..seconds {
        use std::io::Write;
        conn.write_all(b"x").expect("the connection carries on");
        std::thread::sleep(Duration::from_secs(1));
    }
    let carried = received.load(Ordering::SeqCst) - before;
    assert!(
        carried >= seconds - 1,
        "{carried} of {seconds} bytes arrived: the connection was cut"
    );
    // The old address left DNS long ago and drains; the new one is listed.
    let status = d.ctl(&["status"]);
    let draining = status["draining"].to_string();
    assert!(draining.contains("198.51.100.20/32"), "{status}");
    assert!(
        s.dev
            .connects("198.51.100.21:443", Duration::from_millis(800))
    );
    // Quiet (closed: its FIN is its last packet): gone after the idle timeout; a new
    // connection to the old address is dropped.
    conn.shutdown(std::net::Shutdown::Both).ok();
    std::thread::sleep(Duration::from_secs(u64::from(5 * slow) + 3));
    let status = d.ctl(&["status"]);
    assert!(
        !status["draining"].to_string().contains("198.51.100.20"),
        "{status}"
    );
    assert!(
        !s.dev
            .connects("198.51.100.20:443", Duration::from_millis(800)),
        "the old address is gone"
    );
}
