//! The daemon as an admin meets it: the real `intune-ctl run` on a veth, timed from spawn to
//! "attached" (built-in list only, and with a last-known-good cache of 10,000 prefixes), its
//! resident memory with 10,000 rules, the part of the start that is the program's load (the
//! maps created and the program verified), and `intune-ctl stats --json` against 100,000 rules.

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use intune_ctl::{
    daemon::state::{CachedResponse, StateDir, now_rfc3339},
    datapath::{Capacity, Datapath},
};
use rand::{SeedableRng, rngs::StdRng};

use super::{
    dns::{Daemon, Veth, status_kib},
    random_v4, response,
};

const IFACE: &str = "ixb-dmn0";
const PEER: &str = "ixb-dmn1";
const RUNS: usize = 5;

/// A state directory whose service cache holds `n` random IPv4 prefixes.
fn state_with_cache(dir: &Path, n: usize) -> anyhow::Result<PathBuf> {
    let state_dir = dir.join(format!("state-{n}"));
    let state = StateDir::open(&state_dir)?;
    if n > 0 {
        let mut rng = StdRng::seed_from_u64(11);
        let ips: Vec<_> = (0..n).map(|_| random_v4(&mut rng)).collect();
        state.save_cache(&CachedResponse {
            instance: "Worldwide".into(),
            version: "2026112500".into(),
            fetched_at: now_rfc3339(),
            endpoints: serde_json::from_str(&response(&ips))?,
        })?;
    }
    Ok(state_dir)
}

struct Started {
    daemon: Daemon,
    attached_after: Duration,
    pins: PathBuf,
}

/// Starts the daemon with `state_dir`; returns once it printed "attached".
fn start(ctl: &Path, state_dir: &Path, tag: &str, mode: &str) -> anyhow::Result<Started> {
    let pins = PathBuf::from(format!("/sys/fs/bpf/ixb-{tag}-{}", std::process::id()));
    let began = Instant::now();
    let mut child = Command::new(ctl)
        .args(["run", "--iface", IFACE, "--xdp-mode", mode])
        .args(["--no-resolve", "--interval", "3600", "--detach-on-stop"])
        // A service that is not there: its check runs after the attach, in the background.
        .args(["--service-url", "http://127.0.0.1:9"])
        .arg("--state-dir")
        .arg(state_dir)
        .arg("--bpffs-dir")
        .arg(&pins)
        .arg("--control-socket")
        .arg(state_dir.join("control.sock"))
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", ctl.display()))?;
    let stdout = child.stdout.take().context("stdout")?;
    let daemon = Daemon(child);
    let mut lines = BufReader::new(stdout).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.starts_with("attached to") => break,
            Some(Ok(_)) => {}
            _ => bail!("the daemon ended before attaching"),
        }
    }
    let attached_after = began.elapsed();
    // Keep reading so the daemon never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Ok(Started {
        daemon,
        attached_after,
        pins,
    })
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e3)
}

/// The markdown rows: start-up, memory, stats latency.
pub fn daemon_bench(ctl: &Path) -> anyhow::Result<String> {
    let _veth = Veth::create(IFACE, PEER)?;
    let dir = tempfile::tempdir()?;
    let mut out = String::new();
    for (label, n) in [
        ("built-in list, no cache", 0),
        ("cache of 10,000 prefixes", 10_000),
    ] {
        let state = state_with_cache(dir.path(), n)?;
        let mut times = Vec::new();
        let mut rss = 0;
        for _ in 0..RUNS {
            let s = start(ctl, &state, "start", "generic")?;
            times.push(s.attached_after);
            std::thread::sleep(Duration::from_millis(500));
            rss = status_kib(s.daemon.0.id(), "VmRSS:")?;
            drop(s.daemon);
            let _ = std::fs::remove_dir_all(&s.pins);
        }
        let t = median(times);
        eprintln!("daemon start-up, {label}: attached after {t:.1?}, RSS {rss} KiB");
        out.push_str(&format!(
            "| start-up to attached, {label} | {} ms | RSS {:.1} MiB |\n",
            ms(t),
            rss as f64 / 1024.0
        ));
    }
    out.push_str(&load_row()?);
    let state = state_with_cache(dir.path(), 100_000)?;
    let s = start(ctl, &state, "stats", "generic")?;
    // The daemon records its rules just after it attached: stats names counters with them.
    let recorded = Instant::now();
    while !state.join("rules.json").exists() {
        if recorded.elapsed() > Duration::from_secs(30) {
            bail!("the daemon never recorded its rules");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let mut times = Vec::new();
    for _ in 0..RUNS {
        let began = Instant::now();
        let out = Command::new(ctl)
            .args(["stats", "--json", "--bpffs-dir"])
            .arg(&s.pins)
            .arg("--state-dir")
            .arg(&state)
            .output()?;
        times.push(began.elapsed());
        if !out.status.success() {
            bail!(
                "intune-ctl stats failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let t = median(times);
    eprintln!("stats with 100,000 rules: {t:.1?}");
    out.push_str(&format!(
        "| `intune-ctl stats --json`, 100,000 rules | {} ms | |\n",
        ms(t)
    ));
    drop(s.daemon);
    let _ = std::fs::remove_dir_all(&s.pins);
    out.push_str(&recreate_rows(ctl, dir.path())?);
    Ok(out)
}

/// The program's load with the room a small list gets (what the built-in list's start-up
/// loads): the maps created and the program verified, median of 5, and the instructions the
/// verifier processed (the kernel's count, which moves only with the code and the kernel).
fn load_row() -> anyhow::Result<String> {
    let mut times = Vec::new();
    let mut verified = None;
    for _ in 0..RUNS {
        let began = Instant::now();
        let dp = Datapath::load(Capacity::for_prefixes(0))?;
        times.push(began.elapsed());
        verified = dp.program()?.info()?.verified_instruction_count();
    }
    let t = median(times);
    let verified = verified.map_or("n/a (kernel before 5.16)".into(), |n| n.to_string());
    eprintln!("program load: {t:.1?}, {verified} instructions verified");
    Ok(format!(
        "| of it, the program's load (maps created; the program verified: {verified} instructions processed) | {} ms | |\n",
        ms(t)
    ))
}

/// How often the interface is deleted and created again per XDP mode.
const ROUNDS: usize = 20;

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running ip")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The veth deleted and created again `ROUNDS` times under the running daemon, which follows
/// it through netlink: the daemon's own figure from the link event to the attach (`status`'s
/// `attach_ms`), median and max, in generic and native mode. The new veth is brought up only
/// after the attach: the filter is there before the first frame can be.
fn recreate_rows(ctl: &Path, dir: &Path) -> anyhow::Result<String> {
    let mut out = String::new();
    for mode in ["generic", "native"] {
        let state = state_with_cache(dir, 0)?;
        let s = start(ctl, &state, "recreate", mode)?;
        let mut took = Vec::new();
        let mut last_ifindex = None;
        for _ in 0..ROUNDS {
            ip(&["link", "del", IFACE])?;
            ip(&["link", "add", IFACE, "type", "veth", "peer", "name", PEER])?;
            let deadline = Instant::now() + Duration::from_secs(10);
            let (ifindex, ms) = loop {
                let out = Command::new(ctl)
                    .args(["status", "--json", "--control-socket"])
                    .arg(state.join("control.sock"))
                    .output()?;
                let status: serde_json::Value =
                    serde_json::from_slice(&out.stdout).context("status --json")?;
                let i = &status["interfaces"][0];
                if i["state"] == "attached"
                    && i["ifindex"].as_u64() != last_ifindex
                    && let Some(ms) = i["attach_ms"].as_f64()
                {
                    break (i["ifindex"].as_u64(), ms);
                }
                if Instant::now() > deadline {
                    bail!("{IFACE} not attached again within 10 s: {status}");
                }
                std::thread::sleep(Duration::from_millis(5));
            };
            last_ifindex = ifindex;
            took.push(ms);
            ip(&["link", "set", IFACE, "up"])?;
            ip(&["link", "set", PEER, "up"])?;
        }
        took.sort_by(f64::total_cmp);
        let (median, max) = (took[took.len() / 2], took[took.len() - 1]);
        eprintln!("{mode} XDP: link event to attach median {median:.2} ms, max {max:.2} ms");
        out.push_str(&format!(
            "| interface deleted and created again ({ROUNDS} times), {mode} XDP: link event to attach | median {median:.1} ms, max {max:.1} ms | |\n"
        ));
        drop(s.daemon);
        let _ = std::fs::remove_dir_all(&s.pins);
    }
    Ok(out)
}
