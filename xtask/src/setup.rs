//! `cargo xtask setup`: installs what is missing, says nothing when all is there, and names
//! the missing piece when it cannot install it.

use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

const BPF_LINKER_VERSION: &str = "0.10.3";
/// Debian packages the tests and the benchmark use. iproute2 and util-linux give `ip` and
/// `nsenter`; xdp-tools gives xdp-filter's program for the benchmark; dnsmasq-base is the
/// DNS server binary without the `dnsmasq` package's system service; systemd gives
/// `systemd-analyze` for the unit's test; procps gives `sysctl`; prometheus gives `promtool`,
/// which checks and unit-tests the shipped alert rules; netsniff-ng gives `trafgen` and ethtool
/// the veth's XDP counters for the benchmark's real packet path.
const PACKAGES: &[&str] = &[
    "iproute2",
    "util-linux",
    "systemd",
    "procps",
    "bpftool",
    "xdp-tools",
    "dnsmasq-base",
    "tcpdump",
    "nftables",
    "prometheus",
    "netsniff-ng",
    "ethtool",
];

/// What `cargo xtask vm-test` needs beyond the tests' packages: root filesystems, the
/// emulator and its overlay images, a C compiler for the musl target (ring), ext4 images.
const VM_PACKAGES: &[&str] = &[
    "mmdebstrap",
    "qemu-system-x86",
    "qemu-utils",
    "musl-tools",
    "e2fsprogs",
];
/// cargo-deb builds the .deb the bookworm guest installs.
const CARGO_DEB_VERSION: &str = "3.8.0";
const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";

/// What a task needs installed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The toolchain that builds the program: all a gateway running the filter gets.
    Build,
    /// The toolchain and the Debian packages the tests and the benchmark use.
    Tests,
    /// As `Tests`, and what the virtual machines need.
    Vm,
}

pub fn setup(scope: Scope) -> anyhow::Result<()> {
    nightly_rust_src()?;
    bpf_linker()?;
    match scope {
        Scope::Build => {}
        Scope::Tests => {
            debian_packages(PACKAGES)?;
            lint_tools()?;
        }
        Scope::Vm => {
            let all: Vec<&str> = PACKAGES.iter().chain(VM_PACKAGES).copied().collect();
            debian_packages(&all)?;
            lint_tools()?;
            musl_target()?;
            cargo_deb()?;
        }
    }
    Ok(())
}

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn run(cmd: &str, args: &[&str]) -> anyhow::Result<()> {
    eprintln!("setup: {cmd} {}", args.join(" "));
    let status = Command::new(cmd)
        .args(args)
        // apt-get must not ask questions: CI has no terminal.
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .with_context(|| format!("cannot run {cmd}"))?;
    if !status.success() {
        bail!("`{cmd} {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

fn nightly_rust_src() -> anyhow::Result<()> {
    let toolchains = output("rustup", &["toolchain", "list"])
        .context("rustup is missing: the eBPF crate needs rustup's nightly toolchain")?;
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        bail!(
            "the nightly toolchain is missing: the eBPF crate builds with `cargo +nightly -Z build-std`; install it with `rustup toolchain install nightly`"
        );
    }
    let installed = output(
        "rustup",
        &["component", "list", "--toolchain", "nightly", "--installed"],
    )
    .unwrap_or_default();
    if !installed.lines().any(|l| l.starts_with("rust-src")) {
        run(
            "rustup",
            &["component", "add", "rust-src", "--toolchain", "nightly"],
        )
        .context("installing rust-src for nightly (needed by -Z build-std=core)")?;
    }
    Ok(())
}

/// clippy (stable) and rustfmt (nightly: the import grouping of `rustfmt.toml` is unstable),
/// which `cargo xtask test` checks with.
fn lint_tools() -> anyhow::Result<()> {
    for toolchain in ["stable", "nightly"] {
        let component = if toolchain == "stable" {
            "clippy"
        } else {
            "rustfmt"
        };
        let installed = output(
            "rustup",
            &["component", "list", "--toolchain", toolchain, "--installed"],
        )
        .unwrap_or_default();
        if !installed.lines().any(|l| l.starts_with(component)) {
            run(
                "rustup",
                &["component", "add", component, "--toolchain", toolchain],
            )
            .with_context(|| format!("installing {component} for {toolchain}"))?;
        }
    }
    Ok(())
}

fn bpf_linker() -> anyhow::Result<()> {
    // 0.10.x links against rustc's own LLVM; 0.11 and later need a system LLVM 21+.
    let version = output("bpf-linker", &["--version"]).unwrap_or_default();
    if version.split_whitespace().any(|w| w == BPF_LINKER_VERSION) {
        return Ok(());
    }
    let spec = format!("bpf-linker@{BPF_LINKER_VERSION}");
    run("cargo", &["install", &spec, "--locked", "--force"])
        .with_context(|| format!("installing {spec} (the eBPF crate's linker)"))
}

fn musl_target() -> anyhow::Result<()> {
    let installed = output("rustup", &["target", "list", "--installed"]).unwrap_or_default();
    if installed.lines().any(|l| l.trim() == MUSL_TARGET) {
        return Ok(());
    }
    run("rustup", &["target", "add", MUSL_TARGET])
        .context("adding the musl target (static binaries for the guests)")
}

fn cargo_deb() -> anyhow::Result<()> {
    let version = output("cargo-deb", &["--version"]).unwrap_or_default();
    if version.split_whitespace().any(|w| w == CARGO_DEB_VERSION) {
        return Ok(());
    }
    let spec = format!("cargo-deb@{CARGO_DEB_VERSION}");
    run("cargo", &["install", &spec, "--locked"])
        .with_context(|| format!("installing {spec} (builds the .deb)"))
}

fn debian_packages(packages: &[&str]) -> anyhow::Result<()> {
    let missing = missing_packages(packages);
    if missing.is_empty() {
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "Debian packages missing: {}; run `cargo xtask setup` as root, or `apt-get install {}`",
            missing.join(" "),
            missing.join(" ")
        );
    }
    run("apt-get", &["update", "-qq"]).context("apt-get update")?;
    apt_install(&missing)?;
    // An install may remove what was there: a machine with a backported qemu-utils loses it
    // to the distribution's qemu-system-x86, which cannot stand beside it. Installed again,
    // at the distribution's version.
    let removed = missing_packages(packages);
    if !removed.is_empty() {
        apt_install(&removed)?;
    }
    let still = missing_packages(packages);
    if !still.is_empty() {
        bail!(
            "Debian packages still missing after apt-get install: {}",
            still.join(" ")
        );
    }
    Ok(())
}

fn missing_packages<'a>(packages: &[&'a str]) -> Vec<&'a str> {
    packages
        .iter()
        .copied()
        .filter(|p| {
            output("dpkg-query", &["-W", "-f=${Status}", p])
                .is_none_or(|s| !s.contains("install ok installed"))
        })
        .collect()
}

fn apt_install(packages: &[&str]) -> anyhow::Result<()> {
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(packages);
    run("apt-get", &args)
        .with_context(|| format!("installing Debian packages {}", packages.join(" ")))
}
