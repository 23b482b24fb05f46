//! A daemon's output and metrics, as the tests follow them.

use std::{
    io::{BufRead, BufReader},
    process::Child,
    sync::mpsc,
    time::Instant,
};

/// A child's stdout lines, read on a thread of their own (a full pipe would stall it).
pub struct Lines(mpsc::Receiver<String>);

impl Lines {
    /// Takes `child`'s piped stdout.
    pub fn of(child: &mut Child) -> Lines {
        let stdout = child.stdout.take().expect("stdout piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Lines(rx)
    }

    /// Waits for a line with `needle`; panics after `secs` with the lines that came instead.
    pub fn wait_for(&self, needle: &str, secs: u64) {
        let deadline = Instant::now() + crate::scaled_secs(secs);
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.0.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return,
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
        panic!("no {needle:?} in {secs} s: {seen:#?}");
    }
}

/// The metrics text a daemon in `ns` serves on `addr`.
pub fn scrape(ns: &crate::netns::Netns, addr: &'static str) -> String {
    use std::io::{Read, Write};
    ns.run(move || {
        let mut s = std::net::TcpStream::connect(addr).expect("metrics endpoint");
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    })
}

/// The value of the sample `name` (with its labels) in a metrics text.
pub fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .unwrap_or_else(|| panic!("{name} in {text}"))
        .trim()
        .parse::<f64>()
        .unwrap() as u64
}

/// Pins of a test's own under bpffs, named by `tag`, the test process and the test's
/// temporary directory `dir`: parallel tests never share them.
pub fn test_pins(tag: &str, dir: &std::path::Path) -> intune_ctl::datapath::pins::Pins {
    intune_ctl::datapath::pins::Pins::new(format!(
        "/sys/fs/bpf/ixt-{tag}-{}-{}",
        std::process::id(),
        dir.file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .trim_start_matches('.')
    ))
}

/// Spawns `cmd` (a daemon command line already in its namespace) with its files in `dir`
/// (`sets.json` as its endpoints, state and control socket) and its pins under `pins`, then
/// `extra`; returns once it attached to `iface`.
pub fn spawn_daemon(
    cmd: &mut std::process::Command,
    dir: &std::path::Path,
    pins: &intune_ctl::datapath::pins::Pins,
    extra: &[String],
    iface: &str,
) -> (Child, Lines) {
    cmd.arg("--endpoints")
        .arg(dir.join("sets.json"))
        .arg("--state-dir")
        .arg(dir)
        .arg("--bpffs-dir")
        .arg(pins.dir())
        .arg("--control-socket")
        .arg(dir.join("control.sock"))
        .args(extra);
    spawn_attached(cmd, iface)
}

/// `BIN daemon --config CONFIG EXTRA` in `ns`, its stderr the test's; returns once it
/// attached to `iface`.
pub fn spawn_configured(
    ns: &crate::netns::Netns,
    bin: &str,
    config: &std::path::Path,
    extra: &[&str],
    iface: &str,
) -> (Child, Lines) {
    let mut cmd = ns.command(bin);
    cmd.args(["daemon", "--config"]).arg(config).args(extra);
    spawn_attached(&mut cmd, iface)
}

/// Spawns `cmd` (a daemon), its stdout read by [`Lines`] and its stderr the test's; returns
/// once it attached to `iface`.
fn spawn_attached(cmd: &mut std::process::Command, iface: &str) -> (Child, Lines) {
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("daemon");
    let lines = Lines::of(&mut child);
    lines.wait_for(&format!("attached to {iface}"), 30);
    (child, lines)
}

/// Waits until a TCP connection from `ns` to `to` opens (the name behind it resolved).
pub fn wait_until_reachable(ns: &crate::netns::Netns, to: &str, secs: u64) {
    let deadline = Instant::now() + crate::scaled_secs(secs);
    while !ns.connects(to, std::time::Duration::from_millis(500)) {
        assert!(Instant::now() < deadline, "{to} not reachable in {secs} s");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
