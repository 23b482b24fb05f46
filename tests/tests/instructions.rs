//! The bench's instruction count (`intune_tests::insns`): the interpreter of the loaded
//! program reaches the kernel's own verdict on every kind of frame, through the tables and
//! through the tries, and counts what the paths differ in. Needs root.

use intune_common::outcome::{XDP_DROP, XDP_PASS};
use intune_ctl::datapath::Datapath;
use intune_tests::{
    enforce,
    frames::{Ext, Frame, arp},
    insns::Interpreter,
    load, load_trie, require_root, rule_set, test_sets,
};

/// A TCP frame from a device (of the address's family) to `dst`, port `dport`.
fn from_device(dst: &str, dport: u16) -> Frame {
    let device = if dst.contains(':') {
        "2001:db8::10"
    } else {
        "192.0.2.10"
    };
    Frame::tcp(device, dst, 40000, dport)
}

/// Named frames over `TEST_SETS`, and the verdict each must get in enforce mode.
fn frames() -> Vec<(&'static str, Vec<u8>, u32)> {
    let mut truncated = from_device("198.51.100.7", 443).bytes();
    truncated.truncate(14 + 20 + 10);
    let mut options = from_device("198.51.100.7", 443);
    options.v4_option_words = 1;
    let with_options = options.bytes();
    let mut miss_options = from_device("192.0.2.99", 443);
    miss_options.v4_option_words = 1;
    let miss_with_options = miss_options.bytes();
    let with_ext_header = from_device("2001:db8:100::7", 443)
        .ext(Ext::DestOpts)
        .bytes();
    vec![
        (
            "IPv4 hit",
            from_device("198.51.100.7", 443).bytes(),
            XDP_PASS,
        ),
        ("IPv4 hit, IP options", with_options, XDP_PASS),
        (
            "IPv4 on a port not listed",
            from_device("198.51.100.7", 22).bytes(),
            XDP_DROP,
        ),
        (
            "IPv4 nested prefix, its own port",
            from_device("198.51.100.130", 80).bytes(),
            XDP_PASS,
        ),
        (
            "IPv4 miss",
            from_device("192.0.2.99", 443).bytes(),
            XDP_DROP,
        ),
        ("IPv4 miss, IP options", miss_with_options, XDP_DROP),
        (
            "IPv6 hit",
            from_device("2001:db8:100::7", 443).bytes(),
            XDP_PASS,
        ),
        ("IPv6 hit, extension header", with_ext_header, XDP_PASS),
        (
            "IPv6 miss",
            from_device("2001:db8:200::7", 443).bytes(),
            XDP_DROP,
        ),
        (
            "VLAN IPv4 hit",
            from_device("198.51.100.7", 443).vlan(0x8100).bytes(),
            XDP_PASS,
        ),
        ("ARP", arp(), XDP_PASS),
        ("truncated TCP", truncated, XDP_DROP),
    ]
}

/// Each frame's instruction count, after checking the interpreter's verdict against the
/// kernel's and the expected one.
fn counts(dp: &Datapath) -> Vec<(&'static str, u64)> {
    let prog = dp.program().expect("program");
    let fd = std::os::fd::AsFd::as_fd(prog.fd().expect("program fd"));
    let interpreter = Interpreter::of(fd).expect("the program's instructions");
    frames()
        .into_iter()
        .map(|(name, bytes, expected)| {
            let run = interpreter.run(&bytes).expect(name);
            let kernel = dp.run_frame(&bytes).expect(name).verdict;
            assert_eq!(kernel, expected, "{name}: the kernel's verdict");
            assert_eq!(run.verdict, kernel, "{name}: the interpreter's verdict");
            let again = interpreter.run(&bytes).expect(name);
            assert_eq!(again.instructions, run.instructions, "{name}: a second run");
            (name, run.instructions)
        })
        .collect()
}

fn count_of(counts: &[(&str, u64)], name: &str) -> u64 {
    counts.iter().find(|(n, _)| *n == name).expect(name).1
}

#[test]
fn the_interpreter_reaches_the_kernels_verdicts_through_the_tables() {
    require_root!();
    let dp = load(&rule_set(&test_sets(), false), &enforce());
    let c = counts(&dp);
    // A plain IPv4 hit takes the fast path; the same frame with IP options or a VLAN tag goes
    // the whole way, a tag costing a few instructions more than an option word.
    let whole_way = count_of(&c, "IPv4 hit, IP options");
    assert!(count_of(&c, "IPv4 hit") + 100 < whole_way, "{c:?}");
    assert!(count_of(&c, "VLAN IPv4 hit") > whole_way, "{c:?}");
    assert!(count_of(&c, "VLAN IPv4 hit") < whole_way + 30, "{c:?}");
    // So does a plain IPv6 hit; the same frame with an extension header goes the whole way.
    assert!(
        count_of(&c, "IPv6 hit") + 100 < count_of(&c, "IPv6 hit, extension header"),
        "{c:?}"
    );
    // A plain frame the fast path leaves is not parsed again in full: the plain miss, which
    // also pays for the fast path's try, costs no more than the miss with an IP option word,
    // which is parsed once in full (parsed again, the plain miss took 45 more).
    assert!(
        count_of(&c, "IPv4 miss") < count_of(&c, "IPv4 miss, IP options") + 20,
        "{c:?}"
    );
    // A frame that is not IP ends after its Ethernet header.
    assert!(count_of(&c, "ARP") * 2 < whole_way, "{c:?}");
}

#[test]
fn the_interpreter_reaches_the_kernels_verdicts_through_the_tries() {
    require_root!();
    let tables = counts(&load(&rule_set(&test_sets(), false), &enforce()));
    let tries = counts(&load_trie(&rule_set(&test_sets(), false), &enforce()));
    // A trie lookup is one helper call, which counts as one instruction: the tries' hit
    // path is shorter here than the tables' walk (not in time).
    assert!(
        count_of(&tries, "VLAN IPv4 hit") < count_of(&tables, "VLAN IPv4 hit"),
        "{tables:?} {tries:?}"
    );
}
