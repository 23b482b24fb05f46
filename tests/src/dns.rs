//! Real DNS servers on loopback for the tests: dnsmasq from Debian, answering from a hosts file
//! it re-reads on SIGHUP, and a tiny upstream that answers every query with SERVFAIL.

use std::{
    net::{SocketAddr, UdpSocket},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::netns::Netns;

/// A dnsmasq child on 127.0.0.1 with no upstream but the ones given.
pub struct Dnsmasq {
    child: Child,
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Dnsmasq {
    /// Starts dnsmasq answering `hosts` (hosts-file lines) with `ttl` seconds; `extra` are
    /// further dnsmasq options (`--cname=…`, `--address=/name/`, `--server=/name/addr#port`).
    /// Panics when dnsmasq is not installed: `cargo xtask setup` installs it.
    pub fn start(hosts: &str, ttl: u32, extra: &[String]) -> Dnsmasq {
        Self::start_in(None, hosts, ttl, extra)
    }

    /// As [`Dnsmasq::start`], inside `ns` (on its loopback) when given.
    pub fn start_in(ns: Option<&Netns>, hosts: &str, ttl: u32, extra: &[String]) -> Dnsmasq {
        Self::start_on(ns, [127, 0, 0, 1].into(), None, hosts, ttl, extra)
    }

    /// As [`Dnsmasq::start_in`], listening on `ip` and `port` (a free one when `None`).
    pub fn start_on(
        ns: Option<&Netns>,
        ip: std::net::IpAddr,
        port: Option<u16>,
        hosts: &str,
        ttl: u32,
        extra: &[String],
    ) -> Dnsmasq {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("hosts"), hosts).expect("hosts file");
        for _ in 0..20 {
            let port = port.unwrap_or_else(free_udp_port);
            let mut child = ns
                .map_or_else(|| Command::new("dnsmasq"), |ns| ns.command("dnsmasq"))
                .arg("--no-daemon")
                .arg("--conf-file=/dev/null")
                .arg(format!("--port={port}"))
                .arg(format!("--listen-address={ip}"))
                .arg("--bind-interfaces")
                .args(["--no-resolv", "--no-hosts", "--user=root", "--local=/test/"])
                .arg(format!(
                    "--addn-hosts={}",
                    dir.path().join("hosts").display()
                ))
                .arg(format!("--local-ttl={ttl}"))
                .args(["--log-queries", "--cache-size=0"])
                .arg(format!(
                    "--log-facility={}",
                    dir.path().join("log").display()
                ))
                .args(extra)
                // Nobody reads these: a full pipe would stall dnsmasq.
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("dnsmasq is missing: run `cargo xtask setup`");
            let addr = SocketAddr::new(ip, port);
            // Ready once it answers; an early exit means the port was taken meanwhile.
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                let up = match ns {
                    Some(ns) => ns.run(move || answers(addr)),
                    None => answers(addr),
                };
                if up {
                    return Dnsmasq { child, addr, dir };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("dnsmasq did not start");
    }

    /// Replaces the hosts file and makes dnsmasq re-read it.
    pub fn set_hosts(&self, hosts: &str) {
        std::fs::write(self.dir.path().join("hosts"), hosts).expect("hosts file");
        self.signal(libc::SIGHUP);
    }

    /// Stops answering (SIGSTOP) or answers again (SIGCONT).
    pub fn pause(&self, paused: bool) {
        self.signal(if paused { libc::SIGSTOP } else { libc::SIGCONT });
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
    }

    /// Queries received so far for `name`, of any type.
    pub fn queries_for(&self, name: &str) -> usize {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        log.lines()
            .filter(|l| l.contains("query[") && l.contains(&format!("] {name} from")))
            .count()
    }

    /// Every query received so far.
    pub fn queries(&self) -> usize {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        log.lines().filter(|l| l.contains(" query[")).count()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("log")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        self.signal(libc::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free in the root namespace; a fresh namespace has all of them free.
fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port")
}

/// Whether a DNS server at `addr` answers a query for `probe.test` at all.
fn answers(addr: SocketAddr) -> bool {
    let Ok(sock) = UdpSocket::bind("127.0.0.1:0") else {
        return false;
    };
    let _ = sock.set_read_timeout(Some(Duration::from_millis(200)));
    let query = query_bytes(0x4242, "probe.test");
    if sock.send_to(&query, addr).is_err() {
        return false;
    }
    let mut buf = [0u8; 512];
    matches!(sock.recv_from(&mut buf), Ok((n, _)) if n >= 12 && buf[..2] == [0x42, 0x42])
}

/// A query for an A record, as a resolver sends it.
pub fn query_bytes(id: u16, name: &str) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend(id.to_be_bytes());
    q.extend([0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend(label.as_bytes());
    }
    q.extend([0, 0, 1, 0, 1]);
    q
}

/// An upstream that answers every query with SERVFAIL: what a broken authoritative server
/// gives, passed on by dnsmasq for the domains forwarded to it.
pub struct ServfailServer {
    pub addr: SocketAddr,
}

impl ServfailServer {
    pub fn start() -> ServfailServer {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = sock.local_addr().expect("address");
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                if n < 12 {
                    continue;
                }
                let mut reply = buf[..n].to_vec();
                // QR, the query's opcode and RD; RA; RCODE 2; no answer records.
                reply[2] = 0x80 | (buf[2] & 0x79);
                reply[3] = 0x80 | 2;
                reply[6..12].fill(0);
                // Keep only the question: drop any EDNS record after it.
                if let Some(end) = question_end(&reply) {
                    reply.truncate(end);
                }
                let _ = sock.send_to(&reply, from);
            }
        });
        ServfailServer { addr }
    }
}

/// Where the first question ends (12-byte header, the name, type and class).
fn question_end(msg: &[u8]) -> Option<usize> {
    let mut i = 12;
    loop {
        let len = *msg.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        i += len;
    }
    let end = i + 4;
    (end <= msg.len()).then_some(end)
}

/// DNS responses no parser should trust: garbage, huge counts, compression loops, names over
/// 255 bytes, records cut short. Each claims to be a response (QR set) from port 53.
pub fn hostile_answers() -> Vec<Vec<u8>> {
    let header = |qd: u16, an: u16| {
        let mut h = vec![0x13, 0x37, 0x81, 0x80];
        h.extend(qd.to_be_bytes());
        h.extend(an.to_be_bytes());
        h.extend([0, 0, 0, 0]);
        h
    };
    let mut out = Vec::new();
    // Counts far beyond the data.
    out.push(header(0xffff, 0xffff));
    // A question name that points at itself.
    let mut looped = header(1, 0);
    looped.extend([0xc0, 0x0c, 0, 1, 0, 1]);
    out.push(looped);
    // Two pointers pointing at each other.
    let mut pair = header(1, 1);
    pair.extend([0xc0, 0x0e, 0xc0, 0x0c, 0, 1, 0, 1]);
    out.push(pair);
    // A name of 320 bytes in labels of 63.
    let mut long = header(1, 0);
    for _ in 0..5 {
        long.push(63);
        long.extend([b'a'; 63]);
    }
    long.extend([0, 0, 1, 0, 1]);
    out.push(long);
    // A label length running past the end.
    let mut past = header(1, 0);
    past.extend([60, b'x', b'y']);
    out.push(past);
    // A good question for an endpoint name, then an answer cut inside its address.
    let mut cut = header(1, 1);
    cut.extend(query_bytes(0, "app.wild.test")[12..].iter());
    cut.extend([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 203, 0]);
    out.push(cut);
    // An A record whose length says 200 bytes.
    let mut long_rdata = header(1, 1);
    long_rdata.extend(query_bytes(0, "app.wild.test")[12..].iter());
    long_rdata.extend([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 200, 203, 0, 113, 20]);
    out.push(long_rdata);
    // Header only, and less than a header.
    out.push(header(0, 0)[..12].to_vec());
    out.push(vec![0x81]);
    // Pseudo-random bytes behind a response header.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for len in [20, 64, 300, 512, 1400] {
        let mut p = header(1, 3);
        while p.len() < len {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            p.push(seed as u8);
        }
        out.push(p);
    }
    out
}
