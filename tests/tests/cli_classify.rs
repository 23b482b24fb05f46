//! `intune-ctl classify`: the real command on pcap and pcapng captures. Needs root.

use std::{
    borrow::Cow,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use intune_tests::{
    TEST_SETS,
    frames::{Frame, arp},
    require_root,
};
use pcap_file::{
    DataLink,
    pcap::{PcapHeader, PcapPacket, PcapWriter},
    pcapng::{
        PcapNgWriter,
        blocks::{
            enhanced_packet::EnhancedPacketBlock, interface_description::InterfaceDescriptionBlock,
        },
    },
};
use serde_json::Value;

/// A file name in a directory removed when the test ends.
fn tmp(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

fn write_pcap(path: &Path, frames: &[Vec<u8>], datalink: DataLink) {
    let file = std::fs::File::create(path).expect("create pcap");
    let header = PcapHeader {
        datalink,
        ..PcapHeader::default()
    };
    let mut w = PcapWriter::with_header(file, header).expect("pcap header");
    for f in frames {
        w.write_packet(&PcapPacket::new(Duration::from_secs(1), f.len() as u32, f))
            .expect("pcap packet");
    }
}

fn write_pcapng(path: &Path, frames: &[Vec<u8>]) {
    let file = std::fs::File::create(path).expect("create pcapng");
    let mut w = PcapNgWriter::new(file).expect("pcapng header");
    w.write_pcapng_block(InterfaceDescriptionBlock::new(DataLink::ETHERNET, 65535))
        .expect("idb");
    for f in frames {
        let epb = EnhancedPacketBlock {
            interface_id: 0,
            timestamp: Duration::from_secs(1),
            original_len: f.len() as u32,
            data: Cow::Borrowed(f),
            options: vec![],
        };
        w.write_pcapng_block(epb).expect("epb");
    }
}

fn intune_ctl(args: &[&str]) -> (i32, String, String) {
    intune_tests::output(Command::new(env!("CARGO_BIN_EXE_intune-ctl-test")).args(args))
}

fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

fn capture() -> Vec<Vec<u8>> {
    let mut later = Frame::tcp("192.0.2.10", "13.67.13.180", 40000, 9);
    later.v4_frag_offset = 100;
    vec![
        Frame::tcp("192.0.2.10", "13.67.13.180", 40000, 443).bytes(),
        Frame::tcp("192.0.2.10", "192.0.2.99", 40000, 443).bytes(),
        arp(),
        Frame::tcp("192.0.2.10", "13.67.13.180", 40000, 443).bytes()[..40].to_vec(),
        later.bytes(),
        Frame::udp("192.0.2.10", "192.0.2.53", 40000, 53).bytes(),
    ]
}

#[test]
fn json_output_has_one_object_a_frame_and_totals() {
    require_root!();
    let dir = tempfile::tempdir().expect("temp dir");
    let pcap = tmp(&dir, "builtin.pcap");
    write_pcap(&pcap, &capture(), DataLink::ETHERNET);
    let (code, stdout, stderr) = intune_ctl(&[
        "classify",
        "--pcap",
        pcap.to_str().unwrap(),
        "--json",
        "--mode",
        "enforce",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let lines = json_lines(&stdout);
    assert_eq!(lines.len(), 7);
    for (i, l) in lines[..6].iter().enumerate() {
        let mut keys: Vec<&str> = l.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["endpoint_sets", "frame", "outcome", "prefix", "verdict"]
        );
        assert_eq!(l["frame"], i + 1);
    }
    let expect = [
        ("pass", "intune", Value::from("13.67.13.176/28"), vec![163]),
        ("drop", "unmatched", Value::Null, vec![]),
        ("pass", "not-ip", Value::Null, vec![]),
        ("drop", "malformed", Value::Null, vec![]),
        ("pass", "intune", Value::from("13.67.13.176/28"), vec![163]),
        ("pass", "infrastructure", Value::Null, vec![]),
    ];
    for (l, (verdict, outcome, prefix, sets)) in lines.iter().zip(expect) {
        assert_eq!(l["verdict"], verdict, "{l}");
        assert_eq!(l["outcome"], outcome, "{l}");
        assert_eq!(l["prefix"], prefix, "{l}");
        assert_eq!(l["endpoint_sets"], Value::from(sets), "{l}");
    }
    let totals = &lines[6]["totals"];
    assert_eq!(totals["frames"], 6);
    assert_eq!(totals["pass"], 4);
    assert_eq!(totals["drop"], 2);
    assert_eq!(totals["intune"], 2);
    assert_eq!(totals["malformed"], 1);
}

#[test]
fn pcapng_with_an_endpoint_file_names_the_sets_whose_ports_admit() {
    require_root!();
    let dir = tempfile::tempdir().expect("temp dir");
    let sets = tmp(&dir, "sets.json");
    std::fs::write(&sets, TEST_SETS).unwrap();
    let frames = vec![
        Frame::tcp("192.0.2.10", "198.51.100.130", 40000, 443).bytes(),
        Frame::tcp("192.0.2.10", "198.51.100.130", 40000, 80).bytes(),
        Frame::tcp("198.51.100.130", "192.0.2.10", 443, 40000).bytes(),
    ];
    let pcapng = tmp(&dir, "nested.pcapng");
    write_pcapng(&pcapng, &frames);
    let (code, stdout, stderr) = intune_ctl(&[
        "classify",
        "--pcap",
        pcapng.to_str().unwrap(),
        "--endpoints",
        sets.to_str().unwrap(),
        "--json",
        "--direction",
        "both",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let lines = json_lines(&stdout);
    assert_eq!(lines[0]["prefix"], "198.51.100.128/28");
    assert_eq!(lines[0]["endpoint_sets"], Value::from(vec![901]));
    assert_eq!(lines[1]["endpoint_sets"], Value::from(vec![902]));
    assert_eq!(
        lines[2]["endpoint_sets"],
        Value::from(vec![901]),
        "return traffic matched on its source"
    );
    assert_eq!(lines[3]["totals"]["intune"], 3);
}

#[test]
fn text_output_ends_with_totals() {
    require_root!();
    let dir = tempfile::tempdir().expect("temp dir");
    let pcap = tmp(&dir, "text.pcap");
    write_pcap(&pcap, &capture(), DataLink::ETHERNET);
    let (code, stdout, stderr) = intune_ctl(&["classify", "--pcap", pcap.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.lines().nth(1).unwrap().contains("13.67.13.176/28"),
        "{stdout}"
    );
    let last = stdout.lines().last().unwrap();
    assert!(
        last.starts_with("totals: ") && last.contains("frames 6") && last.contains("pass 6"),
        "{last}"
    );
}

#[test]
fn bad_input_is_a_one_line_error_with_exit_code_2() {
    require_root!();
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = tmp(&dir, "missing.pcap");
    let not_pcap = tmp(&dir, "not.pcap");
    std::fs::write(&not_pcap, b"this is not a capture at all").unwrap();
    let raw_ip = tmp(&dir, "rawip.pcap");
    write_pcap(&raw_ip, &capture(), DataLink::RAW);
    let bad_sets = tmp(&dir, "bad.json");
    std::fs::write(
        &bad_sets,
        r#"[{"id": 77, "serviceArea": "MEM", "category": "Default", "tcpPorts": "443,http"}]"#,
    )
    .unwrap();
    let good = tmp(&dir, "good.pcap");
    write_pcap(&good, &capture(), DataLink::ETHERNET);
    let cases: [(Vec<&str>, &str); 4] = [
        (
            vec!["--pcap", missing.to_str().unwrap()],
            "cannot read capture",
        ),
        (
            vec!["--pcap", not_pcap.to_str().unwrap()],
            "not a pcap or pcapng capture",
        ),
        (vec!["--pcap", raw_ip.to_str().unwrap()], "is not Ethernet"),
        (
            vec![
                "--pcap",
                good.to_str().unwrap(),
                "--endpoints",
                bad_sets.to_str().unwrap(),
            ],
            "endpoint set 77: field `tcpPorts`",
        ),
    ];
    for (args, needle) in cases {
        let mut all = vec!["classify"];
        all.extend(args);
        let (code, stdout, stderr) = intune_ctl(&all);
        assert_eq!(code, 2, "{all:?}: {stderr}");
        assert!(stdout.is_empty(), "{all:?} printed {stdout}");
        assert_eq!(stderr.trim().lines().count(), 1, "{all:?}: {stderr}");
        assert!(
            stderr.contains(needle),
            "{all:?}: {stderr:?} lacks {needle:?}"
        );
    }
}
