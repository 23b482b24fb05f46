//! What runs in a guest: the kernel-facing tests and the benchmark, built as static musl
//! binaries (they run on the oldest guest's glibc too), the .deb, and the script that runs
//! them there.

use std::{collections::BTreeMap, fmt::Write as _, path::PathBuf, process::Command};

use anyhow::{Context as _, bail};

pub const TARGET: &str = "x86_64-unknown-linux-musl";
/// Frames of each of the differential test's four policies in a guest: software emulation is
/// slow, 4 x 5,100 = 20,400 frames.
const DIFF_FRAMES_PER_POLICY: u32 = 5_100;

/// How much slower than the host the tests run under emulation: their timeouts and the
/// lifetimes they wait out are scaled by it.
const SLOWDOWN: u32 = 5;

/// The test binaries (by test target name) and the benchmark, built for the guests.
pub struct Binaries {
    pub tests: BTreeMap<String, PathBuf>,
    pub bench: PathBuf,
    pub deb: Option<PathBuf>,
}

/// The integration tests that touch the kernel, in the order they run in a guest.
const GUEST_TESTS: &[&str] = &[
    "classifier",
    "differential",
    // Batch writes, mappings and trie refills: what an update asks of the kernel.
    "update",
    "cli_classify",
    "run_veth",
    "learn",
    "capture",
    "interfaces",
];

const PACKAGE_TEST: &str = "package_systemd";

/// Builds the tests and the benchmark for the musl target, and the .deb when asked.
pub fn build(workspace: &std::path::Path, deb: bool) -> anyhow::Result<Binaries> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(&cargo)
        .args([
            "test",
            "--no-run",
            "--package",
            "intune-tests",
            "--target",
            TARGET,
        ])
        .args(["--message-format", "json-render-diagnostics"])
        .current_dir(workspace)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running cargo test --no-run")?;
    if !out.status.success() {
        bail!("building the guest tests failed ({})", out.status);
    }
    let mut tests = BTreeMap::new();
    let mut bench = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let (Some(exe), Some(name)) = (msg["executable"].as_str(), msg["target"]["name"].as_str())
        else {
            continue;
        };
        let kinds = msg["target"]["kind"].to_string();
        let test_profile = msg["profile"]["test"] == true;
        if test_profile && kinds.contains("\"test\"") {
            tests.insert(name.to_owned(), PathBuf::from(exe));
        } else if !test_profile && name == "intune-bench" {
            bench = Some(PathBuf::from(exe));
        }
    }
    for t in GUEST_TESTS.iter().chain([&PACKAGE_TEST]) {
        if !tests.contains_key(*t) {
            bail!("cargo built no test binary named {t}");
        }
    }
    let bench = bench.context("cargo built no intune-bench binary")?;
    let deb = if deb {
        Some(build_deb(workspace, &cargo)?)
    } else {
        None
    };
    Ok(Binaries { tests, bench, deb })
}

/// `intune-ctl` in release mode for the guests and its .deb (cargo-deb, assets from
/// intune-ctl's `[package.metadata.deb]`).
fn build_deb(workspace: &std::path::Path, cargo: &str) -> anyhow::Result<PathBuf> {
    let run = |args: &[&str]| -> anyhow::Result<String> {
        let out = Command::new(cargo)
            .args(args)
            .current_dir(workspace)
            .stderr(std::process::Stdio::inherit())
            .output()
            .with_context(|| format!("running cargo {}", args.join(" ")))?;
        if !out.status.success() {
            bail!("cargo {} failed ({})", args.join(" "), out.status);
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    run(&[
        "build",
        "--release",
        "--quiet",
        "--package",
        "intune-ctl",
        "--target",
        TARGET,
    ])?;
    let printed = run(&[
        "deb",
        "--package",
        "intune-ctl",
        "--target",
        TARGET,
        "--no-build",
        "--no-strip",
    ])?;
    let deb = printed
        .lines()
        .map(str::trim)
        .rfind(|l| {
            std::path::Path::new(l)
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("deb"))
        })
        .context("cargo deb named no package file")?;
    Ok(PathBuf::from(deb))
}

/// Which steps a guest runs, and what the test binaries are given.
pub struct Plan<'a> {
    /// Only these steps (test names, `package_systemd`, `bench`); all when empty.
    pub only: &'a [String],
    /// Passed to every test binary (a test name filter, `--nocapture`).
    pub test_args: &'a [String],
    /// This guest installs the .deb.
    pub package: bool,
}

/// Every step a guest can run, for `--only`.
pub fn steps() -> Vec<&'static str> {
    GUEST_TESTS
        .iter()
        .copied()
        .chain([PACKAGE_TEST, "bench"])
        .collect()
}

impl Plan<'_> {
    fn runs(&self, step: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == step)
    }
}

/// The script a guest runs: every step, each failure named, the exit code 1 when any failed.
/// `bench_out` receives the benchmark's table row.
pub fn script(bins: &Binaries, plan: &Plan, bench_out: &std::path::Path) -> String {
    let mut s = String::from(
        "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
         export RUST_BACKTRACE=1\n\
         cd /tmp\n\
         fail=0\n\
         step() { echo \"vm-test: $1\"; shift; \"$@\" || { echo \"vm-test: FAILED: $*\"; fail=1; }; }\n\
         echo \"vm-test: guest kernel $(uname -r), $(. /etc/os-release; echo $PRETTY_NAME), $(systemctl --version | head -1)\"\n",
    );
    let _ = writeln!(
        s,
        "export INTUNE_DIFF_FRAMES_PER_POLICY={DIFF_FRAMES_PER_POLICY} INTUNE_TEST_SLOWDOWN={SLOWDOWN} INTUNE_GUEST=1"
    );
    let extra = plan.test_args.join(" ");
    for t in GUEST_TESTS.iter().filter(|t| plan.runs(t)) {
        let _ = writeln!(s, "step {t} {} {extra}", bins.tests[*t].display());
    }
    if plan.package
        && plan.runs(PACKAGE_TEST)
        && let Some(deb) = &bins.deb
    {
        let _ = writeln!(
            s,
            "export INTUNE_DEB={}\nstep {PACKAGE_TEST} {} {extra}",
            deb.display(),
            bins.tests[PACKAGE_TEST].display()
        );
    }
    if plan.runs("bench") {
        let _ = writeln!(
            s,
            "step bench {} --guest --out {}",
            bins.bench.display(),
            bench_out.display()
        );
    }
    s.push_str("exit $fail\n");
    s
}
