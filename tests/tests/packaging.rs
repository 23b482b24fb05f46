//! The packaging files: the systemd unit passes `systemd-analyze verify`, and the man page and
//! completions are what the binary generates (regenerate with `intune-ctl man` and
//! `intune-ctl completions SHELL` into packaging/ when the CLI changes).

use std::{path::PathBuf, process::Command};

fn packaging() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../packaging")
}

fn generated(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_intune-ctl-test"))
        .args(args)
        .output()
        .expect("intune-ctl");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).expect("UTF-8")
}

#[test]
fn man_page_and_completions_are_up_to_date() {
    let man = std::fs::read_to_string(packaging().join("intune-ctl.1")).unwrap();
    // The test binary names itself like the real one: clap's name is fixed to intune-ctl.
    assert_eq!(
        man,
        generated(&["man"]),
        "packaging/intune-ctl.1 is stale: run `cargo run -p intune-ctl -- man > packaging/intune-ctl.1`"
    );
    for shell in ["bash", "zsh", "fish"] {
        let file = packaging().join(format!("completions/intune-ctl.{shell}"));
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            generated(&["completions", shell]),
            "{} is stale: run `cargo run -p intune-ctl -- completions {shell} > {}`",
            file.display(),
            file.display()
        );
    }
}

#[test]
fn the_unit_verifies() {
    let dir = tempfile::tempdir().unwrap();
    // The unit as installed, pointing at the binary built here; its man page where man finds it.
    let unit = std::fs::read_to_string(packaging().join("intune-ctl.service"))
        .unwrap()
        .replace("/usr/bin/intune-ctl", env!("CARGO_BIN_EXE_intune-ctl-test"));
    let path = dir.path().join("intune-ctl.service");
    std::fs::write(&path, unit).unwrap();
    std::fs::create_dir_all(dir.path().join("man/man1")).unwrap();
    std::fs::copy(
        packaging().join("intune-ctl.1"),
        dir.path().join("man/man1/intune-ctl.1"),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .env("MANPATH", dir.path().join("man"))
        .output()
        .expect("systemd-analyze (systemd) is installed");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&path).unwrap();
    for key in [
        "Type=notify",
        "Restart=on-failure",
        "WatchdogSec=",
        "StateDirectory=",
        "RuntimeDirectory=",
        "ConfigurationDirectory=",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "NoNewPrivileges=yes",
        "ReadWritePaths=/sys/fs/bpf",
    ] {
        assert!(text.contains(key), "{key}");
    }
    let caps: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.starts_with("CapabilityBoundingSet=") || l.starts_with("AmbientCapabilities=")
        })
        .collect();
    assert_eq!(caps.len(), 2);
    for line in caps {
        assert!(
            line.contains("CAP_BPF") && line.contains("CAP_NET_ADMIN"),
            "{line}"
        );
        assert!(
            !line.contains("CAP_SYS_ADMIN"),
            "bpffs is mounted by systemd: {line}"
        );
    }
}
