//! `intune-ctl run` on a real interface: a device namespace talks to a gateway namespace over a
//! veth pair; the filter sits on the gateway's side. Needs root.

use std::{
    io::{BufRead, BufReader},
    net::{SocketAddr, TcpListener, TcpStream},
    process::{Child, Stdio},
    sync::mpsc,
    time::Duration,
};

use intune_tests::{
    TEST_SETS,
    netns::{Netns, veth},
    require_root,
};

struct Topology {
    dev: Netns,
    gw: Netns,
}

/// dev (192.0.2.1) -- veth -- gw (192.0.2.2, and 198.51.100.1 on lo: an "Intune" address of
/// the test endpoint sets, TCP 443 allowed).
fn topology(tag: &str) -> Topology {
    let dev = Netns::new(&format!("d{tag}"));
    let gw = Netns::new(&format!("g{tag}"));
    veth(&dev, "d0", &gw, "g0");
    dev.ip(&["addr", "add", "192.0.2.1/24", "dev", "d0"]);
    dev.ip(&["route", "add", "198.51.100.0/24", "via", "192.0.2.2"]);
    gw.ip(&["addr", "add", "192.0.2.2/24", "dev", "g0"]);
    gw.ip(&["addr", "add", "198.51.100.1/32", "dev", "lo"]);
    for addr in ["198.51.100.1:443", "192.0.2.2:8080"] {
        let addr: SocketAddr = addr.parse().unwrap();
        let listener = gw.run(move || TcpListener::bind(addr).expect("bind"));
        std::thread::spawn(move || for _ in listener.incoming() {});
    }
    Topology { dev, gw }
}

fn connects(ns: &Netns, to: &str) -> bool {
    let to: SocketAddr = to.parse().unwrap();
    ns.run(move || TcpStream::connect_timeout(&to, Duration::from_millis(1500)).is_ok())
}

struct Running {
    child: Child,
    /// Holds the endpoint file while the command runs.
    _dir: tempfile::TempDir,
    lines: mpsc::Receiver<String>,
}

impl Running {
    fn start(gw: &Netns, args: &[&str]) -> Running {
        let dir = tempfile::tempdir().expect("temp dir");
        let sets = dir.path().join("sets.json");
        std::fs::write(&sets, TEST_SETS).unwrap();
        let mut cmd = gw.command(env!("CARGO_BIN_EXE_intune-ctl-test"));
        cmd.args([
            "run",
            "--interval",
            "1",
            "--no-service",
            "--no-resolve",
            "--state-dir",
            dir.path().to_str().unwrap(),
            "--endpoints",
            sets.to_str().unwrap(),
        ]);
        if !args.contains(&"--iface") && !args.contains(&"--config") {
            cmd.args(["--iface", "g0"]);
        }
        let mut child = cmd
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn intune-ctl run");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Running {
            child,
            _dir: dir,
            lines,
        }
    }

    /// Output lines until one contains `needle`, or panics after `secs`.
    fn wait_for(&self, needle: &str, secs: u64) -> Vec<String> {
        let mut seen = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
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

    fn terminate(mut self) -> (i32, Vec<String>) {
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
    assert!(
        connects(&t.dev, "192.0.2.2:8080"),
        "reachable before the filter"
    );

    let run = Running::start(&t.gw, &["--mode", "enforce"]);
    let start = run.wait_for("attached to g0", 30);
    assert!(start.iter().any(|l| l.contains("native XDP")), "{start:?}");
    assert!(xdp_attached(&t.gw));

    assert!(
        connects(&t.dev, "198.51.100.1:443"),
        "Intune address and port pass"
    );
    assert!(!connects(&t.dev, "192.0.2.2:8080"), "the rest is dropped");
    // The counter table shows the rule's hits: the SYN and the rest of the handshake.
    run.wait_for("198.51.100.0/24", 10);

    let (code, rest) = run.terminate();
    assert_eq!(code, 0, "{rest:?}");
    assert!(
        rest.iter().any(|l| l.starts_with("detached from g0")),
        "{rest:?}"
    );
    assert!(!xdp_attached(&t.gw), "detached");
    assert!(
        connects(&t.dev, "192.0.2.2:8080"),
        "reachable again once detached"
    );
}

#[test]
fn monitor_passes_everything_and_generic_mode_is_used_when_asked() {
    require_root!();
    let t = topology("m");
    let run = Running::start(&t.gw, &["--xdp-mode", "generic"]);
    let start = run.wait_for("attached to g0", 30);
    assert!(start.iter().any(|l| l.contains("generic XDP")), "{start:?}");
    assert!(connects(&t.dev, "192.0.2.2:8080"));
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
    let run = Running::start(&t.gw, &["--mode", "enforce", "--iface", "g0:src"]);
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
    let run = Running::start(
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
    assert!(connects(&t.dev, "192.0.2.2:8080"), "monitor passes");
    let (code, _) = run.terminate();
    assert_eq!(code, 0);

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
    assert!(!xdp_attached(&t.gw));
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
fn a_missing_interface_is_a_one_line_error() {
    require_root!();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_intune-ctl-test"))
        .args(["run", "--iface", "ixt-no-such-if"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("interface ixt-no-such-if does not exist"),
        "{stderr}"
    );
}
