//! The cost on a real packet path: trafgen (Debian's netsniff-ng) in one namespace sends a fixed
//! mix of frames as fast as it can through a veth pair; the program under test is attached in
//! native mode to the other end, in a namespace of its own (no forwarding: a passed frame ends
//! in that namespace's stack). Counted: the frames the receiving side's XDP handled (the veth's
//! own `xdp_packets` counters) a second, and the CPU the whole machine spent a frame (sender,
//! XDP and stack: what a frame costs end to end).

use std::{
    fmt::Write as _,
    fs::File,
    os::fd::AsRawFd as _,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use aya::programs::{Xdp, XdpMode};
use intune_tests::netns::{Netns, veth};

/// Frames a run sends; runs a median is taken of.
const PACKETS: u64 = 1_000_000;
const RUNS: usize = 3;
const RX_IF: &str = "prx0";
const TX_IF: &str = "ptx0";

pub struct RealPath {
    tx: Netns,
    rx: Netns,
    conf: tempfile::TempDir,
}

/// One program on one mix: frames handled a second, CPU a frame.
#[derive(Clone, Copy)]
pub struct Sample {
    pub pps: f64,
    pub cpu_ns: f64,
}

impl RealPath {
    pub fn new() -> anyhow::Result<RealPath> {
        if Command::new("trafgen").arg("--version").output().is_err() {
            bail!("trafgen is missing: install Debian's netsniff-ng (cargo xtask setup does)");
        }
        let tx = Netns::new("ptx");
        let rx = Netns::new("prx");
        veth(&tx, TX_IF, &rx, RX_IF);
        Ok(RealPath {
            tx,
            rx,
            conf: tempfile::tempdir()?,
        })
    }

    /// `prog` attached natively on the receiving end, `frames` sent round-robin; the median of
    /// [`RUNS`] runs.
    pub fn measure(&self, prog: &mut Xdp, frames: &[&[u8]]) -> anyhow::Result<Sample> {
        let conf = self.conf.path().join("frames.cfg");
        let mut text = String::new();
        for f in frames {
            let bytes: Vec<String> = f.iter().map(|b| format!("0x{b:02x}")).collect();
            writeln!(text, "{{ {} }}", bytes.join(", "))?;
        }
        std::fs::write(&conf, text)?;
        let link = in_netns(&self.rx, || prog.attach(RX_IF, XdpMode::Driver))?
            .context("attaching natively to the veth")?;
        let mut samples = Vec::new();
        for _ in 0..RUNS {
            samples.push(self.run_again_if_busy(&conf));
        }
        prog.detach(link)?;
        let mut samples = samples.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
        samples.sort_by(|a, b| a.pps.total_cmp(&b.pps));
        Ok(samples[RUNS / 2])
    }

    /// trafgen now and then gives up flushing its ring to a veth whose queue is full
    /// ("Resource temporarily unavailable"): such a run is tried again, twice at most.
    fn run_again_if_busy(&self, conf: &std::path::Path) -> anyhow::Result<Sample> {
        let mut again = 0;
        loop {
            match self.run(conf) {
                Err(e) if again < 2 && e.to_string().contains("temporarily unavailable") => {
                    eprintln!("{e:#}; running it again");
                    again += 1;
                }
                done => return done,
            }
        }
    }

    fn run(&self, conf: &std::path::Path) -> anyhow::Result<Sample> {
        let (handled0, busy0, t0) = (self.xdp_packets()?, busy_ns()?, Instant::now());
        let out = self
            .tx
            .command("trafgen")
            .args(["--dev", TX_IF, "--conf"])
            .arg(conf)
            .args([
                "--num",
                &PACKETS.to_string(),
                "--cpus",
                "1",
                "--notouch-irq",
            ])
            .output()
            .context("running trafgen")?;
        if !out.status.success() {
            bail!("trafgen: {}", String::from_utf8_lossy(&out.stderr));
        }
        let (wall, busy1, handled1) = (t0.elapsed(), busy_ns()?, self.xdp_packets()?);
        let handled = handled1.saturating_sub(handled0);
        if handled < PACKETS / 10 {
            bail!("the receiving XDP program handled only {handled} of {PACKETS} frames");
        }
        Ok(Sample {
            pps: handled as f64 / wall.max(Duration::from_millis(1)).as_secs_f64(),
            cpu_ns: busy1.saturating_sub(busy0) as f64 / handled as f64,
        })
    }

    /// Frames the receiving veth's XDP program handled, all queues.
    fn xdp_packets(&self) -> anyhow::Result<u64> {
        let out = self
            .rx
            .command("ethtool")
            .args(["-S", RX_IF])
            .output()
            .context("running ethtool")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let counts: Vec<u64> = text
            .lines()
            .filter_map(|l| l.trim().split_once(": "))
            .filter(|(k, _)| k.starts_with("rx_queue_") && k.ends_with("_xdp_packets"))
            .filter_map(|(_, v)| v.trim().parse().ok())
            .collect();
        if counts.is_empty() {
            bail!("no XDP counters in `ethtool -S {RX_IF}`: {text}");
        }
        Ok(counts.iter().sum())
    }
}

/// Runs `f` with this thread in `ns`'s network namespace (where an attach by name finds the
/// interface), and back.
fn in_netns<R>(ns: &Netns, f: impl FnOnce() -> R) -> anyhow::Result<R> {
    let home = File::open("/proc/thread-self/ns/net")?;
    let there = File::open(ns.path())?;
    let enter = |fd: &File| {
        // SAFETY: a namespace descriptor; only this thread moves.
        if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    enter(&there).context("entering the receiving namespace")?;
    let r = f();
    enter(&home).context("back from the receiving namespace")?;
    Ok(r)
}

/// CPU time the machine spent, all CPUs, in ns: /proc/stat's busy columns (user, nice, system,
/// irq, softirq, steal), in USER_HZ ticks.
fn busy_ns() -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().context("empty /proc/stat")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 8 {
        bail!("unexpected /proc/stat: {line}");
    }
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let ticks = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    Ok(ticks * 1_000_000_000 / hz)
}

/// The section's rows: each mix through the floor (the empty program with the same verdict),
/// intune-xdp and xdp-filter.
pub fn rows(mixes: &[(&str, Sample, Sample, Option<Sample>)]) -> String {
    let mut out = String::new();
    for (mix, floor, ours, theirs) in mixes {
        let (theirs_pps, theirs_cpu, ratio) = match theirs {
            Some(t) => (
                format!("{:.0}", t.pps / 1000.0),
                format!("{:.0}", t.cpu_ns),
                format!("{:.2}", ours.pps / t.pps),
            ),
            None => ("n/a".into(), "n/a".into(), "n/a".into()),
        };
        let _ = writeln!(
            out,
            "| {mix} | {:.0} | {:.0} | {theirs_pps} | {:.2} | {ratio} | {:.0} | {:.0} | {theirs_cpu} |",
            floor.pps / 1000.0,
            ours.pps / 1000.0,
            ours.pps / floor.pps,
            floor.cpu_ns,
            ours.cpu_ns,
        );
    }
    out
}
