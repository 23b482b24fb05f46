//! Network namespaces joined by veth pairs: the test's own hosts, with documentation addresses.

use std::{
    fs::File,
    os::fd::AsRawFd,
    process::{Command, Output},
};

/// A named network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

/// `ip ARGS` in the test's own namespace; panics with its stderr when it fails.
pub fn ip(args: &[&str]) -> Output {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Netns {
    /// `ixt-<role>-<pid>`: unique per test process, short enough for interface-name limits.
    pub fn new(role: &str) -> Netns {
        let name = format!("ixt-{role}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// Adds the veth pair `iface`, `peer` here, both up.
    pub fn veth_pair(&self, iface: &str, peer: &str) {
        self.ip(&["link", "add", iface, "type", "veth", "peer", "name", peer]);
        self.ip(&["link", "set", iface, "up"]);
        self.ip(&["link", "set", peer, "up"]);
    }

    pub fn path(&self) -> String {
        format!("/var/run/netns/{}", self.name)
    }

    /// `ip -n NAME ...`, asserting success.
    pub fn ip(&self, args: &[&str]) -> Output {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// A command run inside the namespace with nsenter, which keeps /sys/fs/bpf visible
    /// (`ip netns exec` remounts /sys).
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.path())).arg(program);
        cmd
    }

    /// Runs `f` on a thread that has entered the namespace: sockets it opens live there.
    pub fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
        let file = File::open(self.path()).expect("open netns");
        std::thread::spawn(move || {
            // SAFETY: a valid namespace fd; only this thread changes namespace.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("thread in netns")
    }

    /// Whether a TCP connection from this namespace to `to` opens within `timeout`.
    pub fn connects(&self, to: &str, timeout: std::time::Duration) -> bool {
        let to: std::net::SocketAddr = to.parse().expect("ADDR:PORT");
        self.run(move || std::net::TcpStream::connect_timeout(&to, timeout).is_ok())
    }

    /// A UDP socket bound to `addr` in this namespace and the number of datagrams it has
    /// received so far, counted on a thread of its own.
    pub fn udp_counter(
        &self,
        addr: &'static str,
    ) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
        use std::sync::{
            Arc,
            atomic::{AtomicUsize, Ordering},
        };
        let sock = self.run(move || std::net::UdpSocket::bind(addr).expect("bind"));
        let count = Arc::new(AtomicUsize::new(0));
        let c = Arc::clone(&count);
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while sock.recv(&mut buf).is_ok() {
                c.fetch_add(1, Ordering::SeqCst);
            }
        });
        count
    }

    /// Turns IPv4 forwarding on: the namespace routes between its interfaces.
    pub fn forward(&self) {
        let fwd = self
            .command("sysctl")
            .args(["-qw", "net.ipv4.ip_forward=1"])
            .status()
            .expect("sysctl");
        assert!(fwd.success(), "forwarding in {}", self.name);
    }

    /// Like [`Netns::run`], without waiting.
    pub fn spawn(&self, f: impl FnOnce() + Send + 'static) {
        let file = File::open(self.path()).expect("open netns");
        std::thread::spawn(move || {
            // SAFETY: as in `run`.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f();
        });
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// A veth pair: `a_if` in `a`, `b_if` in `b`, both up.
pub fn veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) {
    ip(&[
        "link", "add", a_if, "netns", &a.name, "type", "veth", "peer", "name", b_if, "netns",
        &b.name,
    ]);
    a.ip(&["link", "set", a_if, "up"]);
    b.ip(&["link", "set", b_if, "up"]);
}

/// Device, gateway and server namespaces in a row:
/// dev 192.0.2.1 (d0) -- (g0) 192.0.2.2 [gw, forwarding] 198.51.100.1 (s0) -- (v0) srv.
/// The device routes everything through the gateway, the server answers through it.
pub struct Gateway {
    pub dev: Netns,
    pub gw: Netns,
    pub srv: Netns,
}

impl Gateway {
    /// Namespaces named after `tag`; the server gets `srv_addrs` (within 198.51.100.0/24) on v0.
    pub fn new(tag: &str, srv_addrs: &[&str]) -> Gateway {
        let dev = Netns::new(&format!("{tag}d"));
        let gw = Netns::new(&format!("{tag}g"));
        let srv = Netns::new(&format!("{tag}s"));
        veth(&dev, "d0", &gw, "g0");
        veth(&gw, "s0", &srv, "v0");
        dev.ip(&["addr", "add", "192.0.2.1/24", "dev", "d0"]);
        dev.ip(&["route", "add", "default", "via", "192.0.2.2"]);
        gw.ip(&["addr", "add", "192.0.2.2/24", "dev", "g0"]);
        gw.ip(&["addr", "add", "198.51.100.1/24", "dev", "s0"]);
        for a in srv_addrs {
            srv.ip(&["addr", "add", &format!("{a}/24"), "dev", "v0"]);
        }
        srv.ip(&["route", "add", "default", "via", "198.51.100.1"]);
        gw.forward();
        Gateway { dev, gw, srv }
    }
}
