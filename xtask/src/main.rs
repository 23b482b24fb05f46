//! Developer tasks: `cargo xtask setup | test | vm-test | run | bench`.

mod setup;
mod vm;

use std::process::{Command, ExitCode};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use setup::Scope;

#[derive(Parser)]
#[command(about = "intune-xdp developer tasks")]
struct Xtask {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what the build and the tests need, when it is missing (idempotent).
    Setup,
    /// Set up, then run the whole test suite: the host's (the root-only tests skip when not
    /// root), then the kernel-facing tests in the Debian guests of `vm-test` (root only).
    Test {
        /// The host's tests only, no guests.
        #[arg(long)]
        host: bool,
        /// Extra arguments for `cargo test`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, then run the kernel-facing tests, the benchmark and the .deb under systemd in
    /// Debian guests with their own kernels (qemu, software emulation).
    VmTest {
        /// Which Debian release's guest: bullseye, bookworm, trixie, or all.
        #[arg(long, default_value = "all")]
        suite: String,
        /// Only these steps: classifier, differential, update, cli_classify, run_veth, learn,
        /// package_systemd, bench (comma-separated; default all).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Run this shell script in the guests instead (for looking into a failure); the
        /// workspace is at its own path there.
        #[arg(long, value_name = "FILE")]
        script: Option<std::path::PathBuf>,
        /// Passed to every test binary in the guest (a test name, --nocapture).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        test_args: Vec<String>,
    },
    /// Install the build toolchain, build in release mode, and run `intune-ctl run` with these arguments.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, then measure the program with BPF_PROG_TEST_RUN; writes BENCHMARKS.md.
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    match run(Xtask::parse().task) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(task: Task) -> anyhow::Result<()> {
    match task {
        Task::Setup => setup::setup(Scope::Tests),
        Task::Test { host, args } => {
            // SAFETY: geteuid has no preconditions.
            let root = unsafe { libc::geteuid() } == 0;
            let guests = !host && root;
            setup::setup(if guests { Scope::Vm } else { Scope::Tests })?;
            lint()?;
            // Each root-only test notes here whether it ran: a root run skips none.
            let log = workspace_root().join("target/root-only-tests.log");
            let _ = std::fs::remove_file(&log);
            let mut host_result = cargo_with(&["test"], &args, &[("INTUNE_ROOT_TESTS_LOG", &log)]);
            let (ran, skipped, unsupported) = root_only_tests(&log);
            eprintln!(
                "xtask: root-only tests: {ran} ran, {skipped} skipped; {unsupported} left to the guests (this kernel lacks what they need)"
            );
            if root && skipped > 0 {
                host_result = host_result.and(Err(anyhow::anyhow!(
                    "{skipped} root-only tests skipped though running as root"
                )));
            }
            if !guests {
                if !host {
                    eprintln!("xtask: skipped the guests of vm-test: they need root; CI runs them");
                }
                return host_result;
            }
            // The guests run even when a host test failed: both results count.
            let opts = vm::Options {
                only: &[],
                test_args: &[],
                record_bench: false,
                script: None,
            };
            let guest_result = vm::vm_test(&workspace_root(), vm::CI_SUITES, &opts);
            host_result.and(guest_result)
        }
        Task::VmTest {
            suite,
            only,
            script,
            test_args,
        } => {
            let suites: Vec<&str> = match suite.as_str() {
                "all" => vm::SUITES.to_vec(),
                s => {
                    s.split(',')
                        .map(|one| {
                            vm::SUITES.iter().copied().find(|x| *x == one).ok_or_else(|| {
                            anyhow::anyhow!(
                                "unknown suite {one:?}: give bullseye, bookworm, trixie or all"
                            )
                        })
                        })
                        .collect::<anyhow::Result<_>>()?
                }
            };
            setup::setup(Scope::Vm)?;
            let opts = vm::Options {
                only: &only,
                test_args: &test_args,
                record_bench: true,
                script: script.as_deref(),
            };
            vm::vm_test(&workspace_root(), &suites, &opts)
        }
        Task::Run { args } => {
            // A gateway gets the toolchain only: no test packages, no services.
            setup::setup(Scope::Build)?;
            cargo(
                &[
                    "run",
                    "--release",
                    "--quiet",
                    "--package",
                    "intune-ctl",
                    "--",
                    "run",
                ],
                &args,
            )
        }
        Task::Bench { args } => {
            setup::setup(Scope::Tests)?;
            // The bench runs the real `intune-ctl` too: build it beside the bench.
            cargo(
                &[
                    "build",
                    "--release",
                    "--quiet",
                    "--package",
                    "intune-tests",
                    "--bins",
                ],
                &[],
            )?;
            cargo(
                &[
                    "run",
                    "--release",
                    "--quiet",
                    "--package",
                    "intune-tests",
                    "--bin",
                    "intune-bench",
                    "--",
                ],
                &args,
            )
        }
    }
}

/// The style checks: rustfmt (nightly, for the import grouping) and clippy with warnings as
/// errors.
fn lint() -> anyhow::Result<()> {
    let status = Command::new("rustup")
        .args(["run", "nightly", "cargo", "fmt", "--all", "--", "--check"])
        .current_dir(workspace_root())
        .status()
        .context("running rustfmt")?;
    if !status.success() {
        bail!("the code is not formatted: run `cargo +nightly fmt --all`");
    }
    cargo(
        &[
            "clippy",
            "--workspace",
            "--exclude",
            "intune-ebpf",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )
}

/// How many root-only tests ran, how many were skipped, and how many this kernel cannot run,
/// from the notes they left.
fn root_only_tests(log: &std::path::Path) -> (usize, usize, usize) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let named = |word: &str| -> std::collections::BTreeSet<&str> {
        text.lines().filter_map(|l| l.strip_prefix(word)).collect()
    };
    let unsupported = named("unsupported ");
    // A test this kernel cannot run noted "ran" first (it is root); it did not.
    let ran = named("ran ").difference(&unsupported).count();
    (ran, named("skipped ").len(), unsupported.len())
}

fn cargo(base: &[&str], extra: &[String]) -> anyhow::Result<()> {
    cargo_with(base, extra, &[])
}

fn cargo_with(
    base: &[&str],
    extra: &[String],
    env: &[(&str, &std::path::Path)],
) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args(base)
        .args(extra)
        .envs(env.iter().copied())
        .current_dir(workspace_root())
        .status()
        .with_context(|| format!("running {cargo}"))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", base.join(" "));
    }
    Ok(())
}

fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| ".".into(), std::path::Path::to_path_buf)
}
