//! `cargo xtask vm-test`: the kernel-facing tests, the benchmark and the .deb under real
//! systemd, in Debian guests with their own kernels.

mod guest;
mod qemu;
mod rootfs;

use std::{path::Path, time::Duration};

use anyhow::{Context as _, bail};

/// The Debian releases a gateway runs, oldest first.
pub const SUITES: &[&str] = &["bullseye", "bookworm", "trixie"];
/// The guest `cargo xtask test` (and so CI) runs: the oldest kernel (5.10: the strictest
/// verifier, the tc-filter capture, the memlock limit) and systemd (247). A second guest
/// would take a fresh machine's CI run past 30 minutes; `cargo xtask vm-test --suite all`
/// runs all three.
pub const CI_SUITES: &[&str] = &["bullseye"];
/// A guest that has not finished by then has hung.
const GUEST_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// BENCHMARKS.md's section of guest-kernel ratios starts here and runs to the end of the file.
pub const BENCH_HEADING: &str = "## Guest kernels";

/// What to run in the guests, and whether their benchmark rows go into BENCHMARKS.md.
pub struct Options<'a> {
    pub only: &'a [String],
    pub test_args: &'a [String],
    /// `cargo xtask vm-test` records; `cargo xtask test` (CI) only prints.
    pub record_bench: bool,
    /// A shell script to run in the guests instead of the tests (for looking into a failure).
    pub script: Option<&'a Path>,
}

/// Runs the matrix for `suites`; every suite runs even when an earlier one failed.
pub fn vm_test(workspace: &Path, suites: &[&str], opts: &Options) -> anyhow::Result<()> {
    let (only, test_args) = (opts.only, opts.test_args);
    let steps = guest::steps();
    if let Some(unknown) = only.iter().find(|s| !steps.contains(&s.as_str())) {
        bail!(
            "unknown step {unknown:?} for --only: give {}",
            steps.join(", ")
        );
    }
    // Every guest puts the .deb through systemd: the hardened unit must work on each kernel.
    let package = only.is_empty() || only.iter().any(|s| s == "package_systemd");
    let bins = guest::build(workspace, package)?;
    let out_root = workspace.join("target/vm");
    let mut failed = Vec::new();
    let mut rows = Vec::new();
    for suite in suites {
        let image = rootfs::ensure(suite)?;
        rootfs::prune(suite, &image);
        let out = out_root.join(suite);
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        let bench_out = out.join("bench.md");
        let _ = std::fs::remove_file(&bench_out);
        let plan = guest::Plan {
            only,
            test_args,
            package,
        };
        let script = match opts.script {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?,
            None => guest::script(&bins, &plan, &bench_out),
        };
        std::fs::write(out.join("guest.sh"), script).context("writing the guest script")?;
        eprintln!("vm-test: booting {suite}");
        let outcome = qemu::boot(&image, workspace, &out, GUEST_TIMEOUT)?;
        eprintln!(
            "vm-test: {suite} finished in {:.0} s, {}",
            outcome.elapsed.as_secs_f64(),
            match outcome.rc {
                Some(0) => "all passed".to_owned(),
                Some(rc) => format!("failed (exit {rc})"),
                None => "no result".to_owned(),
            }
        );
        if outcome.rc != Some(0) {
            failed.push(*suite);
        }
        if let Ok(row) = std::fs::read_to_string(&bench_out) {
            rows.push(format!("| {suite} | {}", row.trim()));
        }
    }
    if !rows.is_empty() {
        rows.push(host_bench_row(&bins, &out_root)?);
        for row in &rows {
            eprintln!("vm-test: bench {row}");
        }
        if opts.record_bench {
            write_bench_section(workspace, &rows)?;
        }
    }
    if !failed.is_empty() {
        bail!("the guests of {} failed", failed.join(", "));
    }
    Ok(())
}

/// The same measurement on this machine, natively, for scale.
fn host_bench_row(bins: &guest::Binaries, out_root: &Path) -> anyhow::Result<String> {
    let out = out_root.join("host-bench.md");
    let status = std::process::Command::new(&bins.bench)
        .arg("--guest")
        .arg("--out")
        .arg(&out)
        .status()
        .context("running the benchmark on the host")?;
    if !status.success() {
        bail!("the host benchmark failed ({status})");
    }
    let row = std::fs::read_to_string(&out).context("the host benchmark's row")?;
    Ok(format!("| {HOST_ROW} | {}", row.trim()))
}

/// The benchmark row of this machine (not a guest).
const HOST_ROW: &str = "host (native)";

/// Replaces BENCHMARKS.md's guest section with `rows`, keeping the rows of suites not run.
fn write_bench_section(workspace: &Path, rows: &[String]) -> anyhow::Result<()> {
    let path = workspace.join("BENCHMARKS.md");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let (head, old) = match text.find(BENCH_HEADING) {
        Some(at) => (&text[..at], &text[at..]),
        None => (text.as_str(), ""),
    };
    let suite_of = |row: &str| row.split('|').nth(1).map(|c| c.trim().to_owned());
    let mut kept: Vec<String> = old
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| guest"))
        .filter(|l| {
            let s = suite_of(l);
            (SUITES.iter().any(|x| Some(x.to_string()) == s) || s.as_deref() == Some(HOST_ROW))
                && !rows.iter().any(|r| suite_of(r) == s)
        })
        .map(str::to_owned)
        .collect();
    kept.extend(rows.iter().map(|r| r.trim_end().to_owned()));
    kept.sort_by_key(|r| {
        SUITES
            .iter()
            .position(|s| suite_of(r).as_deref() == Some(*s))
            .unwrap_or(SUITES.len())
    });
    let mut md = head.trim_end().to_owned();
    md.push_str(&format!(
        "\n\n{BENCH_HEADING}\n\nWritten by `cargo xtask vm-test` (xtask/src/vm): each Debian release's own kernel in a guest under software emulation (qemu TCG), so only ratios mean anything: ns per frame of intune-xdp (enforce mode, 10,000 prefixes, IPv4 by the table) divided by the floor program's in the same guest, median of 5 runs of 20,000 repetitions. A TCG guest runs the JIT's x86 code through the emulator, which stretches a lookup's memory accesses more than the floor's few instructions, so guest ratios run higher than the host's; compare guests with each other, and the last row (this machine, natively, the same measurement) for scale.\n\n\
         | guest | kernel | IPv4 hit | IPv4 miss | IPv6 hit | floor ns |\n|---|---|---:|---:|---:|---:|\n"
    ));
    for r in &kept {
        md.push_str(r);
        md.push('\n');
    }
    std::fs::write(&path, md).with_context(|| format!("writing {}", path.display()))
}
