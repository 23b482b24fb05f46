//! Helpers for the tests that need root: frames built byte by byte, fixtures, a root check.

pub mod dns;
pub mod frames;
pub mod http;
pub mod insns;
pub mod monitoring;
pub mod netns;
pub mod process;

use intune_ctl::{
    datapath::{Capacity, Datapath, Lookup},
    ruleset::{
        policy::{Mode, Policy},
        rules::{RuleSet, RuleSetOptions},
    },
    sources::endpoints::{EndpointSet, Source, parse_endpoint_sets},
};

/// Runs `cmd` to the end: its exit code (-1 when killed), stdout and stderr.
pub fn output(cmd: &mut std::process::Command) -> (i32, String, String) {
    let out = cmd.output().expect("run the command");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// How many times slower than a native machine the tests run: a guest under software
/// emulation sets `INTUNE_TEST_SLOWDOWN` (`cargo xtask vm-test` does). Timeouts, and the
/// lifetimes tests wait out (DNS TTLs, grace), are scaled by it; what they assert is not.
pub fn slowdown() -> u32 {
    std::env::var("INTUNE_TEST_SLOWDOWN")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n >= 1)
        .unwrap_or(1)
}

/// `secs` seconds, scaled by [`slowdown`].
pub fn scaled_secs(secs: u64) -> std::time::Duration {
    std::time::Duration::from_secs(secs * u64::from(slowdown()))
}

/// True when running as root; otherwise says why the test is skipped. Either way notes it in
/// `INTUNE_ROOT_TESTS_LOG` when set (`cargo xtask test` counts them, and fails a root run that
/// skipped any).
pub fn is_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipped {test}: needs root (BPF and network namespaces); CI runs it as root");
    }
    note_root_test(if root { "ran" } else { "skipped" }, test);
    root
}

/// Whether the kernel has what a test needs (`has`); otherwise says the test is left to the
/// guest kernels of `cargo xtask vm-test` (this machine's kernel may be built without, say,
/// 802.1Q VLANs) and notes it for `cargo xtask test`. In a guest (`INTUNE_GUEST` set) a
/// missing feature fails the test: that is where it must run.
pub fn kernel_has(test: &str, what: &str, has: bool) -> bool {
    if has {
        return true;
    }
    assert!(
        std::env::var_os("INTUNE_GUEST").is_none(),
        "{test}: this guest's kernel lacks {what}"
    );
    eprintln!("skipped {test}: this kernel lacks {what}; the guest kernels run it");
    note_root_test("unsupported", test);
    false
}

/// Notes `what` became of `test` in `INTUNE_ROOT_TESTS_LOG`, when set.
fn note_root_test(what: &str, test: &str) {
    use std::io::Write as _;
    let Some(log) = std::env::var_os("INTUNE_ROOT_TESTS_LOG") else {
        return;
    };
    // One short append: lines of parallel tests do not interleave.
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
    {
        let _ = f.write_all(format!("{what} {test}\n").as_bytes());
    }
}

/// Skips the calling test with a message unless running as root.
#[macro_export]
macro_rules! require_root {
    () => {{
        fn here() {}
        let name = std::any::type_name_of_val(&here);
        if !$crate::is_root(name.strip_suffix("::here").unwrap_or(name)) {
            return;
        }
    }};
}

/// Endpoint sets for tests: nested prefixes with different ports, IPv6, and a port-only set.
pub const TEST_SETS: &str = r#"[
  {"id": 901, "serviceArea": "MEM", "category": "Default", "required": true,
   "ips": ["198.51.100.0/24", "2001:db8:100::/48"], "tcpPorts": "443"},
  {"id": 902, "serviceArea": "MEM", "category": "Default", "required": true,
   "ips": ["198.51.100.128/28", "2001:db8:100:1::/64"], "tcpPorts": "80", "udpPorts": "123"},
  {"id": 903, "serviceArea": "MEM", "category": "Allow", "required": true,
   "ips": ["203.0.113.0/24"], "tcpPorts": "5223", "udpPorts": "3478-3481"},
  {"id": 904, "serviceArea": "MEM", "category": "Default", "required": false,
   "tcpPorts": "7680", "udpPorts": "3544", "anyAddress": true}
]"#;

pub fn test_sets() -> Vec<EndpointSet> {
    parse_endpoint_sets(TEST_SETS, Source::File).expect("TEST_SETS parse")
}

pub fn builtin_sets() -> Vec<EndpointSet> {
    intune_ctl::sources::endpoints::builtin::builtin().expect("built-in list parses")
}

pub fn rule_set(sets: &[EndpointSet], port_only: bool) -> RuleSet {
    rule_set_excluding(sets, port_only, &[])
}

/// As [`rule_set`], never allowing the `exclude` prefixes.
pub fn rule_set_excluding(sets: &[EndpointSet], port_only: bool, exclude: &[&str]) -> RuleSet {
    let exclude = exclude
        .iter()
        .map(|p| p.parse().expect("exclude prefix"))
        .collect();
    let opts = RuleSetOptions {
        port_only,
        exclude,
        ..RuleSetOptions::default()
    };
    RuleSet::build(sets, &opts, None).expect("rule set builds")
}

/// The default policy in enforce mode: what the rules do not allow is dropped.
pub fn enforce() -> Policy {
    Policy {
        mode: Mode::Enforce,
        ..Policy::default()
    }
}

/// The real program, loaded with `rules` and `policy`, tracing on; both families looked up
/// in their tables.
pub fn load(rules: &RuleSet, policy: &Policy) -> Datapath {
    let dp = load_with(rules, policy, Capacity::for_prefixes(rules.index_bound()));
    assert_eq!(
        (dp.v4_lookup(), dp.v6_lookup()),
        (Lookup::Table, Lookup::Table),
        "the rules must fit the tables"
    );
    dp
}

/// As [`load`], looking IPv4 and IPv6 up in the LPM tries rather than the tables.
pub fn load_trie(rules: &RuleSet, policy: &Policy) -> Datapath {
    let capacity = Capacity {
        v4_table_chunks: 0,
        v6_table_chunks: 0,
        ..Capacity::for_prefixes(rules.index_bound())
    };
    let dp = load_with(rules, policy, capacity);
    assert_eq!(
        (dp.v4_lookup(), dp.v6_lookup()),
        (Lookup::Trie, Lookup::Trie),
        "no table chunks must leave both families to the tries"
    );
    dp
}

pub fn load_with(rules: &RuleSet, policy: &Policy, capacity: Capacity) -> Datapath {
    let mut dp = Datapath::load(capacity).expect("program loads");
    dp.install(rules, policy, true).expect("maps fill");
    dp
}
