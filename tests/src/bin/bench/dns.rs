//! The resolver at scale: the real `intune-ctl run` on a veth interface, following 1,000 names
//! of 4 addresses each with 60 s TTLs from dnsmasq on loopback. After the first round, counts
//! over a window: queries dnsmasq received, map operations the daemon logged (prefixes added
//! and removed), the daemon's CPU time, and its resident memory.

use std::{
    fmt::Write as _,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use intune_tests::dns::Dnsmasq;

pub const NAMES: usize = 1_000;
pub const ADDRS_PER_NAME: usize = 4;
pub const TTL_SECS: u32 = 60;
const IFACE: &str = "ixb-dns0";
const PEER: &str = "ixb-dns1";

/// A veth pair (kernels may lack the dummy driver), deleted however the bench ends.
pub struct Veth(&'static str);

impl Veth {
    pub fn create(name: &'static str, peer: &str) -> anyhow::Result<Veth> {
        let _ = Command::new("ip").args(["link", "del", name]).status();
        for args in [
            &["link", "add", name, "type", "veth", "peer", "name", peer][..],
            &["link", "set", name, "up"],
            &["link", "set", peer, "up"],
        ] {
            let ok = Command::new("ip")
                .args(args)
                .status()
                .context("running ip")?;
            if !ok.success() {
                bail!("ip {} failed", args.join(" "));
            }
        }
        Ok(Veth(name))
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", self.0]).status();
    }
}

/// Stops the daemon however the bench ends.
pub struct Daemon(pub Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// Each name's addresses, each in a /24 of its own so the IPv4 table works for its chunks.
fn hosts() -> String {
    let mut hosts = String::new();
    for i in 0..NAMES {
        for k in 0..ADDRS_PER_NAME {
            let j = i * ADDRS_PER_NAME + k;
            let _ = writeln!(hosts, "10.{}.{}.1 n{i}.bench.test", j % 256, j / 256);
        }
    }
    hosts
}

fn sets() -> String {
    let urls: Vec<String> = (0..NAMES).map(|i| format!("\"n{i}.bench.test\"")).collect();
    format!(
        r#"[{{"id": 5000, "serviceArea": "MEM", "urls": [{}], "tcpPorts": "443", "category": "Default", "required": true}}]"#,
        urls.join(",")
    )
}

/// user + system CPU time of `pid`.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces): state is the first.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11).context("utime")?.parse::<u64>()?
        + fields.get(12).context("stime")?.parse::<u64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(Duration::from_millis(ticks * 1000 / hz))
}

/// A `/proc/PID/status` field in KiB.
pub fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("{field} in /proc/{pid}/status"))
}

/// Prefixes added plus removed over every "applied" line of the daemon's log.
fn map_operations(log: &Path) -> u64 {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_once("applied the endpoint list: ").map(|(_, r)| r))
        .map(|r| {
            // "+N / -M prefixes ..."
            let mut nums = r
                .split(|c: char| !c.is_ascii_digit())
                .filter(|s| !s.is_empty())
                .map(|s| s.parse::<u64>().unwrap_or(0));
            nums.next().unwrap_or(0) + nums.next().unwrap_or(0)
        })
        .sum()
}

/// Runs the scenario; returns the markdown table's row.
pub fn dns_scale(ctl: &Path, window: Duration) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let sets_path = dir.path().join("sets.json");
    std::fs::write(&sets_path, sets())?;
    let dns = Dnsmasq::start(&hosts(), TTL_SECS, &[]);
    let _veth = Veth::create(IFACE, PEER)?;
    let log = dir.path().join("daemon.log");
    let daemon = Command::new(ctl)
        .args(["run", "--iface", IFACE, "--xdp-mode", "generic"])
        .args(["--no-service", "--no-builtin", "--interval", "3600"])
        .arg("--bpffs-dir")
        .arg(format!("/sys/fs/bpf/ixb-dns-{}", std::process::id()))
        .arg("--control-socket")
        .arg(dir.path().join("control.sock"))
        .arg("--detach-on-stop")
        .arg("--endpoints")
        .arg(&sets_path)
        .arg("--state-dir")
        .arg(dir.path())
        .args(["--resolver", &dns.addr.to_string()])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .with_context(|| format!("starting {}", ctl.display()))?;
    let daemon = Daemon(daemon);
    let pid = daemon.0.id();

    // The first round: every name asked for A and AAAA.
    let started = Instant::now();
    while dns.queries() < 2 * NAMES {
        if started.elapsed() > Duration::from_secs(120) {
            bail!(
                "the first round did not finish: {} queries in 2 minutes",
                dns.queries()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let first_round = started.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let ops_first = map_operations(&log);

    let (cpu0, q0, ops0, t0) = (
        cpu_time(pid)?,
        dns.queries(),
        map_operations(&log),
        Instant::now(),
    );
    std::thread::sleep(window);
    let (cpu1, q1, ops1, wall) = (
        cpu_time(pid)?,
        dns.queries(),
        map_operations(&log),
        t0.elapsed(),
    );
    let rss = status_kib(pid, "VmRSS:")?;
    let hwm = status_kib(pid, "VmHWM:")?;
    let anon = status_kib(pid, "RssAnon:")?;
    let minutes = wall.as_secs_f64() / 60.0;
    let cpu_pct = 100.0 * cpu1.checked_sub(cpu0).unwrap().as_secs_f64() / wall.as_secs_f64();
    let queries = (q1 - q0) as f64 / minutes;
    let ops = (ops1 - ops0) as f64 / minutes;
    eprintln!(
        "dns {NAMES} names x {ADDRS_PER_NAME}, TTL {TTL_SECS}s: first round {first_round:.1?} ({ops_first} map operations); over {wall:.0?}: {queries:.0} queries/min, {ops:.0} map operations/min, CPU {cpu_pct:.2}% of a core, RSS {:.1} MiB (anon {:.1}, peak {:.1})",
        rss as f64 / 1024.0,
        anon as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    Ok(format!(
        "| {NAMES} | {} | {TTL_SECS} s | {:.1} s ({ops_first} ops) | {:.0} s | {queries:.0} | {ops:.0} | {cpu_pct:.2}% | {:.1} ({:.1}) | {:.1} |\n",
        NAMES * ADDRS_PER_NAME,
        first_round.as_secs_f64(),
        wall.as_secs_f64(),
        rss as f64 / 1024.0,
        anon as f64 / 1024.0,
        hwm as f64 / 1024.0
    ))
}
