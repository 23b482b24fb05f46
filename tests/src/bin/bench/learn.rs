//! Learning from DNS answers under load: the real daemon (release build, monitor mode, learning
//! on) on the gateway of three namespaces; a device asks a resolver in the server namespace
//! 1,000 times a second, each query a new name under an endpoint wildcard, and the resolver
//! answers each with an address of its own (only answers to queries the gateway saw teach). Measured: the capture-to-confirmation times the daemon reports (p50, p99, max), how
//! many answers it learned from, and its CPU time and memory over the window.

use std::{
    net::UdpSocket,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use hickory_proto::{
    op::{Message, OpCode, Query},
    rr::{Name, RData, Record, RecordType, rdata::AAAA},
};
use intune_tests::{netns::Gateway, process::Lines};

use super::dns::{Daemon, cpu_time, status_kib};

pub const RATE: u32 = 1_000;
/// Seconds of the short run, and of the run at the cap: long enough past the 65,536 addresses
/// the learned table holds for evictions to run a while.
pub const SECONDS: u32 = 10;
pub const SECONDS_AT_CAP: u32 = 80;

const SETS: &str = r#"[{"id": 950, "serviceArea": "MEM", "category": "Allow", "required": true,
  "urls": ["*.wild.test"], "tcpPorts": "443"}]"#;

fn name(i: u32) -> anyhow::Result<Name> {
    Ok(Name::from_ascii(format!("n{i}.wild.test."))?)
}

/// The device's query for n{i}.wild.test (AAAA), with id `i`.
fn query(i: u32) -> anyhow::Result<Vec<u8>> {
    let mut m = Message::query();
    m.metadata.id = i as u16;
    m.add_query(Query::query(name(i)?, RecordType::AAAA));
    Ok(m.to_vec()?)
}

/// An answer for n{i}.wild.test: 2001:db8:f::{i}, TTL 300.
fn answer(i: u32) -> anyhow::Result<Vec<u8>> {
    let name = name(i)?;
    let mut m = Message::response(i as u16, OpCode::Query);
    m.add_query(Query::query(name.clone(), RecordType::AAAA));
    let addr = std::net::Ipv6Addr::new(0x2001, 0xdb8, 0xf, 0, 0, 0, (i >> 16) as u16, i as u16);
    m.add_answer(Record::from_rdata(name, 300, RData::AAAA(AAAA(addr))));
    Ok(m.to_vec()?)
}

/// The i of the n{i}.wild.test a query asks for.
fn asked(query: &[u8]) -> Option<u32> {
    let len = usize::from(*query.get(12)?);
    let label = query.get(13..13 + len)?;
    std::str::from_utf8(label.strip_prefix(b"n")?)
        .ok()?
        .parse()
        .ok()
}

/// Runs the scenario for `seconds`; returns the markdown table's row.
pub fn learn_bench(ctl: &Path, seconds: u32) -> anyhow::Result<String> {
    let Gateway { dev, gw, srv } = Gateway::new("bl", &["198.51.100.11"]);
    let device = dev.run(|| UdpSocket::bind("192.0.2.1:5353"))?;
    let sink = device.try_clone()?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while sink.recv(&mut buf).is_ok() {}
    });
    // The resolver answers each query with its answer, found by the number in the name asked
    // (ids repeat past 65,536).
    let resolver = srv.run(|| UdpSocket::bind("198.51.100.11:53"))?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = resolver.recv_from(&mut buf) {
            let Some(i) = asked(&buf[..n]) else {
                continue;
            };
            if let Ok(a) = answer(i) {
                let _ = resolver.send_to(&a, from);
            }
        }
    });

    let dir = tempfile::tempdir()?;
    let sets = dir.path().join("sets.json");
    std::fs::write(&sets, SETS)?;
    let pins = format!("/sys/fs/bpf/ixb-learn-{}", std::process::id());
    let socket = dir.path().join("control.sock");
    let mut child = gw
        .command(ctl.to_str().context("non-UTF-8 path to intune-ctl")?)
        .args([
            "run",
            "--iface",
            "g0",
            "--no-service",
            "--no-resolve",
            "--detach-on-stop",
        ])
        .args(["--learn-from-dns", "--learn-trusted", "198.51.100.11"])
        .args(["--interval", "3600"])
        .arg("--endpoints")
        .arg(&sets)
        .arg("--state-dir")
        .arg(dir.path())
        .arg("--bpffs-dir")
        .arg(&pins)
        .arg("--control-socket")
        .arg(&socket)
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", ctl.display()))?;
    let lines = Lines::of(&mut child);
    let daemon = Daemon(child);
    lines.wait_for("attached to g0", 30);
    let pid = daemon.0.id();

    let queries: Vec<Vec<u8>> = (0..RATE * seconds).map(query).collect::<Result<_, _>>()?;
    let (cpu0, t0) = (cpu_time(pid)?, Instant::now());
    // Ten queries every 10 ms.
    let start = Instant::now();
    for (i, q) in queries.iter().enumerate() {
        if i % 10 == 0 {
            let due = start + Duration::from_millis(i as u64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        device.send_to(q, "198.51.100.11:53")?;
    }
    std::thread::sleep(Duration::from_millis(500));
    let (cpu1, wall) = (cpu_time(pid)?, t0.elapsed());
    let rss = status_kib(pid, "VmRSS:")? as f64 / 1024.0;
    let out = Command::new(ctl)
        .args(["status", "--json", "--control-socket"])
        .arg(&socket)
        .output()?;
    let status: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("status: {}", String::from_utf8_lossy(&out.stderr)))?;
    drop(daemon);
    let _ = std::fs::remove_dir_all(&pins);
    let learning = &status["learning"];
    let ms = |k: &str| learning["latency_ms"][k].as_f64().unwrap_or(f64::NAN);
    let (p50, p99, max) = (ms("p50"), ms("p99"), ms("max"));
    let learned = learning["counts"]["learned"].as_u64().unwrap_or(0);
    let answers = learning["counts"]["answers"].as_u64().unwrap_or(0);
    let cpu = 100.0 * cpu1.checked_sub(cpu0).unwrap().as_secs_f64() / wall.as_secs_f64();
    eprintln!(
        "learning {RATE}/s for {seconds} s: {answers} answers captured, {learned} addresses learned; confirmed p50 {p50:.3} ms, p99 {p99:.3} ms, max {max:.3} ms; CPU {cpu:.1}%, RSS {rss:.1} MiB"
    );
    Ok(format!(
        "| {RATE}/s for {seconds} s | {answers} | {learned} | {p50:.3} | {p99:.3} | {max:.3} | {cpu:.1}% | {rss:.1} |\n"
    ))
}
