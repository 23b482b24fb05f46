//! `intune-ctl check` as an admin runs it on a gateway: the real daemon in enforce mode on a
//! veth interface in a namespace, names resolved by a real dnsmasq there, every verdict from
//! the real program on the pinned maps. The expected verdicts are worked out by hand from the
//! sets below. Needs root.

use std::{net::TcpListener, path::Path, process::Child};

use intune_ctl::datapath::pins::Pins;
use intune_tests::{
    dns::Dnsmasq,
    netns::Netns,
    output,
    process::{spawn_configured, test_pins},
    require_root,
};
use serde_json::Value;

/// 970 (required, TCP 443): 192.0.2.0/24 and five names; 971 (TCP 8443): a name whose address
/// 970 lists for 443 only; 972: a wildcard with an example name under it, in 203.0.113.0/24.
const SETS: &str = r#"[
  {"id": 970, "serviceArea": "MEM", "serviceAreaDisplayName": "Core", "category": "Allow",
   "required": true, "tcpPorts": "443", "ips": ["192.0.2.0/24"],
   "urls": ["ok.test", "outside.test", "ex.test", "nx.test"]},
  {"id": 971, "serviceArea": "MEM", "category": "Default", "tcpPorts": "8443",
   "urls": ["alt.test"]},
  {"id": 972, "serviceArea": "MEM", "category": "Default", "tcpPorts": "443",
   "urls": ["*.wild.test", "eg.wild.test"], "ips": ["203.0.113.0/24"]},
  {"id": 973, "serviceArea": "MEM", "category": "Default", "tcpPorts": "443",
   "urls": ["*.quiet.test"]},
  {"id": 974, "serviceArea": "MEM", "category": "Default", "tcpPorts": "443",
   "urls": ["*.cdn.test", "x.cdn.test"]}
]"#;

/// ok.test inside the listed /24; outside.test in no listed prefix; ex.test in the excluded
/// upper half; alt.test listed, but for 443 only; eg.wild.test in 972's prefix.
const HOSTS: &str = "\
192.0.2.10 ok.test
198.51.100.7 outside.test
192.0.2.200 ex.test
192.0.2.20 alt.test
203.0.113.5 eg.wild.test
198.51.100.50 x.cdn.test
";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_intune-ctl-test")
}

/// Enforce mode, or monitor mode learning from DNS answers (`learning`).
fn config(dir: &Path, pins: &Pins, dns: &Dnsmasq, learning: bool) -> String {
    let (mode, learn) = if learning {
        (
            "monitor",
            "learn_from_dns = true\nlearn_trusted = [\"127.0.0.1\"]\n",
        )
    } else {
        ("enforce", "")
    };
    format!(
        "[[interface]]\nname = \"t0\"\nxdp_mode = \"generic\"\n\n[policy]\nmode = \"{mode}\"\n\n\
         [sources]\nbuiltin = false\nservice = false\nfiles = [{:?}]\nexclude = [\"192.0.2.128/25\"]\n\n\
         [dns]\nenabled = false\nresolvers = [\"{}\"]\n{learn}\n\
         [paths]\nstate_dir = {:?}\nbpffs_dir = {:?}\ncontrol_socket = {:?}\n",
        dir.join("sets.json").display().to_string(),
        dns.addr,
        dir.display().to_string(),
        pins.dir().display().to_string(),
        dir.join("control.sock").display().to_string(),
    )
}

struct Daemon {
    child: Child,
    pins: Pins,
}

impl Daemon {
    /// `daemon --config CONFIG` in `ns`, once attached to t0.
    fn start(ns: &Netns, config: &Path, pins: &Pins) -> Daemon {
        let (child, _) = spawn_configured(ns, bin(), config, &[], "t0");
        Daemon {
            child,
            pins: pins.clone(),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = self.pins.remove_all();
    }
}

/// `intune-ctl check --config CONFIG ARGS` in `ns`: exit code, stdout, stderr.
fn check(ns: &Netns, config: &Path, args: &[&str]) -> (i32, String, String) {
    output(
        ns.command(bin())
            .args(["check", "--config"])
            .arg(config)
            .args(args),
    )
}

fn check_json(ns: &Netns, config: &Path, args: &[&str]) -> (i32, Vec<Value>) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (code, out, err) = check(ns, config, &all);
    let findings: Vec<Value> =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out} / {err}"));
    (code, findings)
}

/// The findings for `name` (or, with `None`, for prefix addresses) at `address`.
fn about<'a>(findings: &'a [Value], name: Option<&str>, address: Option<&str>) -> Vec<&'a Value> {
    findings
        .iter()
        .filter(|f| f["name"].as_str() == name && f["address"].as_str() == address)
        .collect()
}

fn one<'a>(findings: &'a [Value], name: Option<&str>, address: Option<&str>) -> &'a Value {
    let found = about(findings, name, address);
    assert_eq!(found.len(), 1, "{name:?} {address:?}: {findings:#?}");
    found[0]
}

#[test]
fn check_reports_what_the_live_filter_passes_and_why_it_blocks_the_rest() {
    require_root!();
    let ns = Netns::new("ck");
    ns.veth_pair("t0", "p0");
    let dns = Dnsmasq::start_in(Some(&ns), HOSTS, 60, &["--address=/nx.test/".into()]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sets.json"), SETS).unwrap();
    let pins = test_pins("check", dir.path());
    let cfg = dir.path().join("config.toml");

    // No filter pinned yet: the check cannot run.
    std::fs::write(&cfg, config(dir.path(), &pins, &dns, false)).unwrap();
    let (code, _, err) = check(&ns, &cfg, &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no running filter pinned"), "{err}");

    let daemon = Daemon::start(&ns, &cfg, &pins);

    let (code, f) = check_json(&ns, &cfg, &[]);
    assert_eq!(code, 1, "required set 970 has blocked names: {f:#?}");

    let ok = one(&f, Some("ok.test"), Some("192.0.2.10"));
    assert_eq!(ok["result"], "passes", "{ok}");
    assert_eq!(ok["outcome"], "intune");
    assert_eq!(ok["rule"], "192.0.2.0/24");
    assert_eq!(
        (ok["set"].as_u64(), ok["port"].as_u64()),
        (Some(970), Some(443))
    );
    assert_eq!(
        (ok["kind"].as_str(), ok["proto"].as_str()),
        (Some("name"), Some("tcp"))
    );

    let outside = one(&f, Some("outside.test"), Some("198.51.100.7"));
    assert_eq!(outside["result"], "blocked", "{outside}");
    assert_eq!(outside["reason"], "not_listed");
    assert_eq!(outside["outcome"], "dropped");

    let ex = one(&f, Some("ex.test"), Some("192.0.2.200"));
    assert_eq!(
        (ex["result"].as_str(), ex["reason"].as_str()),
        (Some("blocked"), Some("excluded"))
    );
    assert_eq!(ex["prefix"], "192.0.2.128/25");

    let alt = one(&f, Some("alt.test"), Some("192.0.2.20"));
    assert_eq!(alt["port"], 8443);
    assert_eq!(
        (alt["result"].as_str(), alt["reason"].as_str()),
        (Some("blocked"), Some("port_not_allowed")),
        "{alt}"
    );
    assert_eq!(alt["prefix"], "192.0.2.0/24");
    assert_eq!(alt["ports"], "TCP 443");
    assert_eq!(alt["required"], false);

    let nx = one(&f, Some("nx.test"), None);
    assert_eq!(nx["result"], "unresolved", "{nx}");
    assert!(nx["error"].as_str().is_some_and(|e| !e.is_empty()), "{nx}");

    let eg = one(&f, Some("eg.wild.test"), Some("203.0.113.5"));
    assert_eq!(
        (eg["result"].as_str(), eg["kind"].as_str()),
        (Some("passes"), Some("example"))
    );
    assert_eq!(eg["wildcard"], "*.wild.test");
    // An example name whose address nothing lists, with learning off.
    let x = one(&f, Some("x.cdn.test"), Some("198.51.100.50"));
    assert_eq!(
        (x["result"].as_str(), x["reason"].as_str()),
        (Some("blocked"), Some("not_listed"))
    );
    let quiet = one(&f, Some("*.quiet.test"), None);
    assert_eq!(
        (quiet["result"].as_str(), quiet["kind"].as_str()),
        (Some("untried"), Some("wildcard"))
    );

    // Listed prefixes through their first and last address: the last of 192.0.2.0/24 is in
    // the excluded half.
    let first = one(&f, None, Some("192.0.2.0"));
    assert_eq!(
        (first["result"].as_str(), first["kind"].as_str()),
        (Some("passes"), Some("prefix"))
    );
    let last = one(&f, None, Some("192.0.2.255"));
    assert_eq!(
        (last["result"].as_str(), last["reason"].as_str()),
        (Some("blocked"), Some("excluded"))
    );
    assert_eq!(one(&f, None, Some("203.0.113.255"))["result"], "passes");

    // Narrowed: set 971 alone is blocked but not required (exit 0); one name alone.
    let (code, only) = check_json(&ns, &cfg, &["--set", "971"]);
    assert_eq!(code, 0, "{only:#?}");
    assert!(
        only.iter().all(|x| x["set"] == 971) && only.len() == 1,
        "{only:#?}"
    );
    let (code, only) = check_json(&ns, &cfg, &["--name", "OK.test"]);
    assert_eq!(code, 0, "{only:#?}");
    assert!(only.iter().all(|x| x["name"] == "ok.test"), "{only:#?}");
    let (code, _, err) = check(&ns, &cfg, &["--set", "999"]);
    assert_eq!(code, 2);
    assert!(err.contains("--set 999"), "{err}");

    // The text report: by set, required first, with the reasons and the totals.
    let (code, text, _) = check(&ns, &cfg, &[]);
    assert_eq!(code, 1);
    let core = text.find("endpoint set 970 (Core, required)").expect(&text);
    assert!(core < text.find("endpoint set 971").expect(&text), "{text}");
    for line in [
        "  pass      ok.test 192.0.2.10 tcp/443\n",
        "  BLOCKED   outside.test 198.51.100.7 tcp/443: not listed\n",
        "  BLOCKED   ex.test 192.0.2.200 tcp/443: excluded (192.0.2.128/25)\n",
        "  no answer nx.test: NXDOMAIN\n",
        "  BLOCKED   alt.test 192.0.2.20 tcp/8443: port not allowed (192.0.2.0/24 allows TCP 443)\n",
        "  pass      eg.wild.test (example of *.wild.test) 203.0.113.5 tcp/443\n",
        "  untried   *.quiet.test: no learned or example name under it\n",
        "  BLOCKED   192.0.2.255, of 192.0.2.0/24, tcp/443: excluded (192.0.2.128/25)\n",
        "5 packets pass, 5 blocked (3 in required sets)",
    ] {
        assert!(text.contains(line), "{line:?} in\n{text}");
    }
    // The prefixes of 970 come with its names, before set 971.
    let last = text.find("192.0.2.255, of").expect(&text);
    assert!(last < text.find("endpoint set 971").expect(&text), "{text}");

    // No resolver answers (nothing listens there): every name says so, nothing is blocked.
    let silent = dir.path().join("silent.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&silent, text.replace(&dns.addr.to_string(), "127.0.0.1:9")).unwrap();
    let (code, f) = check_json(&ns, &silent, &["--name", "ok.test"]);
    assert_eq!(code, 0, "nothing resolved, nothing blocked: {f:#?}");
    let ok = one(&f, Some("ok.test"), None);
    assert_eq!(ok["result"], "unresolved", "{ok}");
    let error = ok["error"].as_str().unwrap();
    assert!(
        error == "no resolver answers" || error.contains("timed out") || error.contains("refused"),
        "{error}"
    );

    // --connect: the gateway itself connects to ok.test's address on 443.
    ns.ip(&["addr", "add", "192.0.2.10/32", "dev", "lo"]);
    let listener = ns.run(|| TcpListener::bind("192.0.2.10:443").expect("bind 443"));
    let (_, f) = check_json(&ns, &cfg, &["--name", "ok.test", "--connect"]);
    assert_eq!(
        one(&f, Some("ok.test"), Some("192.0.2.10"))["connect"],
        "connected",
        "{f:#?}"
    );
    drop(listener);

    // Monitor mode, learning: the same verdicts, said to be enforce mode's; the example name
    // under a wildcard is learnable now (learning needs a restart).
    drop(daemon);
    std::fs::write(&cfg, config(dir.path(), &pins, &dns, true)).unwrap();
    let daemon = Daemon::start(&ns, &cfg, &pins);
    let (code, text, _) = check(&ns, &cfg, &[]);
    assert_eq!(code, 1, "{text}");
    assert!(text.starts_with("The filter is in monitor mode"), "{text}");
    assert!(
        text.contains("BLOCKED   outside.test 198.51.100.7 tcp/443: not listed"),
        "{text}"
    );
    let (_, f) = check_json(&ns, &cfg, &["--name", "outside.test"]);
    assert_eq!(
        one(&f, Some("outside.test"), Some("198.51.100.7"))["outcome"],
        "unmatched_passed"
    );
    let (_, f) = check_json(&ns, &cfg, &["--name", "x.cdn.test"]);
    assert_eq!(
        one(&f, Some("x.cdn.test"), Some("198.51.100.50"))["result"],
        "learnable"
    );
    drop(daemon);
}
