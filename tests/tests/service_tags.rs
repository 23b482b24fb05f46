//! Azure service tags as a source, from a file in Microsoft's schema (the fixture
//! `tests/fixtures/ServiceTags_Public.json`, written from the published schema): `endpoints
//! --source service-tags` as an admin runs it, and the daemon taking the tags as endpoint sets,
//! keeping them when a new file lacks a tag or shrinks one too much, through reloads and a
//! restart. The first test needs no root; the daemon's does.

use std::{
    path::{Path, PathBuf},
    process::Child,
};

use intune_ctl::datapath::pins::Pins;
use intune_tests::{
    http::{Answer, FakeService},
    netns::Netns,
    output,
    process::{Lines, spawn_configured, test_pins},
    require_root,
};
use serde_json::Value;

const AFD: &str = "AzureFrontDoor.MicrosoftSecurity";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_intune-ctl-test")
}

fn fixture() -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/ServiceTags_Public.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("fixture JSON")
}

/// The fixture with `edit` applied to the tag `name`'s prefixes, written to `path`.
fn write_tags(path: &Path, name: &str, edit: impl Fn(&mut Vec<Value>)) {
    let mut file = fixture();
    for tag in file["values"].as_array_mut().unwrap() {
        if tag["name"] == name {
            let prefixes = tag["properties"]["addressPrefixes"].as_array_mut().unwrap();
            edit(prefixes);
        }
    }
    std::fs::write(path, serde_json::to_string_pretty(&file).unwrap()).unwrap();
}

/// A config taking `tags` from `file`, nothing else but what `extra` adds.
fn config(dir: &Path, file: &Path, tags: &[&str], extra: &str) -> PathBuf {
    let tags: Vec<String> = tags.iter().map(|t| format!("{t:?}")).collect();
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "{extra}\n[sources]\nbuiltin = false\nservice = false\n\
             service_tags = {{ file = {:?}, tags = [{}], tcp_ports = \"80,443\" }}\n\n\
             [dns]\nenabled = false\n\n[paths]\nstate_dir = {:?}\n",
            file.display().to_string(),
            tags.join(", "),
            dir.display().to_string(),
        ),
    )
    .unwrap();
    path
}

fn ctl(args: &[&str], config: &Path) -> (i32, String, String) {
    output(
        std::process::Command::new(bin())
            .args(args)
            .arg("--config")
            .arg(config),
    )
}

#[test]
fn endpoints_prints_the_named_tags_as_endpoint_sets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ServiceTags_Public.json");
    write_tags(&file, AFD, |_| {});
    let cfg = config(dir.path(), &file, &[AFD, "AzureFrontDoor.Frontend"], "");

    let (code, out, err) = ctl(&["endpoints", "--source", "service-tags", "--json"], &cfg);
    assert_eq!(code, 0, "{err}");
    let sets: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(sets.len(), 2, "{out}");
    assert_eq!(sets[0]["id"], 9000);
    assert_eq!(sets[0]["serviceArea"], AFD);
    assert_eq!(sets[0]["source"], "service-tags");
    assert_eq!(sets[0]["tcpPorts"], "80,443");
    assert_eq!(sets[0]["ips"].as_array().unwrap().len(), 7);
    assert!(
        sets[0]["notes"]
            .as_str()
            .unwrap()
            .contains("file changeNumber 391"),
        "{out}"
    );
    assert_eq!(sets[1]["id"], 9001);

    // What the article's one-liner prints, for the tags: the unique prefixes.
    let (code, out, _) = ctl(&["endpoints", "--source", "service-tags", "--ips"], &cfg);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 12, "{out}");
    assert!(lines.contains(&"2620:1ec:4a::/47") && lines.contains(&"13.107.246.0/24"));

    // The effective list has them too, beside nothing else (built-in list off).
    let (code, out, _) = ctl(&["endpoints", "--json"], &cfg);
    assert_eq!(code, 0);
    let ids: Vec<u64> = serde_json::from_str::<Vec<Value>>(&out)
        .unwrap()
        .iter()
        .map(|s| s["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![9000, 9001]);

    // A tag the file lacks, with nothing taken before: an error naming it.
    let cfg = config(dir.path(), &file, &["AzureFrontDoor.Nope"], "");
    let (code, _, err) = ctl(&["endpoints", "--source", "service-tags"], &cfg);
    assert_eq!(code, 2);
    assert!(
        err.contains("has no service tag \"AzureFrontDoor.Nope\"")
            && err.contains(&file.display().to_string()),
        "{err}"
    );
    // Not configured at all.
    let bare = dir.path().join("bare.toml");
    std::fs::write(&bare, "[sources]\nbuiltin = false\n").unwrap();
    let (code, _, err) = ctl(&["endpoints", "--source", "service-tags"], &bare);
    assert_eq!(code, 2);
    assert!(err.contains("[sources] service_tags"), "{err}");
    // A config with no tag named is a config error.
    let cfg = config(dir.path(), &file, &[], "");
    let (code, _, err) = output(
        std::process::Command::new(bin())
            .arg("check-config")
            .arg(&cfg),
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("sources.service_tags.tags names no tag"),
        "{err}"
    );
}

struct Daemon {
    child: Child,
    lines: Lines,
}

impl Daemon {
    fn start(ns: &Netns, config: &Path) -> Daemon {
        let (child, lines) = spawn_configured(ns, bin(), config, &[], "t0");
        Daemon { child, lines }
    }

    fn reload(&self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGHUP) };
        self.lines.wait_for("reloaded the config", 30);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read(config: &Path, args: &[&str]) -> Value {
    let (code, out, err) = ctl(&[args, &["--json"]].concat(), config);
    assert_eq!(code, 0, "{args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

/// What the live filter does with a device's packet to `address` on TCP 443 (a test run:
/// Microsoft's addresses never go on a wire here).
fn action(config: &Path, address: &str) -> String {
    read(config, &["lookup", address, "--port", "443"])["action"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The daemon's config: enforce mode on t0, nothing but the tag from `source` (`file = ...`
/// or `url = ...`), its files in `dir`.
fn daemon_config(dir: &Path, pins: &Pins, source: &str) -> PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[[interface]]\nname = \"t0\"\nxdp_mode = \"generic\"\n\n[policy]\nmode = \"enforce\"\n\n\
             [sources]\nbuiltin = false\nservice = false\n\
             service_tags = {{ {source}, tags = [{AFD:?}] }}\n\n[dns]\nenabled = false\n\n\
             [paths]\nstate_dir = {:?}\nbpffs_dir = {:?}\ncontrol_socket = {:?}\n",
            dir.display().to_string(),
            pins.dir().display().to_string(),
            dir.join("control.sock").display().to_string()
        ),
    )
    .unwrap();
    path
}

#[test]
fn the_daemon_takes_the_tags_and_keeps_them_when_a_new_file_is_rejected() {
    require_root!();
    let ns = Netns::new("tg");
    ns.veth_pair("t0", "p0");
    let dir = tempfile::tempdir().unwrap();
    let pins = test_pins("tags", dir.path());
    let file = dir.path().join("ServiceTags_Public.json");
    write_tags(&file, AFD, |_| {});
    // Enforce mode on t0, the tag alone (its ports by default: TCP 80, 443).
    let source = format!("file = {:?}", file.display().to_string());
    let cfg = daemon_config(dir.path(), &pins, &source);
    let d = Daemon::start(&ns, &cfg);
    assert_eq!(action(&cfg, "13.107.219.5"), "pass");
    assert_eq!(
        action(&cfg, "2620:1ec:4b::1"),
        "pass",
        "inside 2620:1ec:4a::/47"
    );
    assert_eq!(
        action(&cfg, "13.107.246.1"),
        "drop",
        "Frontend is not taken"
    );
    let list = read(&cfg, &["list"]);
    let row = list["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["prefix"] == "13.107.219.0/24")
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(row["sources"], serde_json::json!(["service-tags"]), "{row}");
    assert_eq!(row["endpoint_sets"], serde_json::json!([9000]));

    // A new file that lost 5 of the tag's 7 prefixes: rejected, the tags in force stay.
    write_tags(&file, AFD, |p| p.truncate(2));
    d.reload();
    assert_eq!(action(&cfg, "150.171.97.9"), "pass", "kept from before");
    let (_, text, _) = ctl(&["status"], &cfg);
    assert!(text.contains("warning: service tags file"), "{text}");
    let status = read(&cfg, &["status"]);
    let warnings = status["warnings"].to_string();
    assert!(
        warnings.contains("would lose 5 of its 7 prefixes") && warnings.contains("stay"),
        "{status}"
    );

    // A file that adds a prefix: taken.
    write_tags(&file, AFD, |p| p.push("198.51.100.0/24".into()));
    d.reload();
    assert_eq!(action(&cfg, "198.51.100.7"), "pass");
    let warnings = read(&cfg, &["status"])["warnings"].to_string();
    assert!(!warnings.contains("service tag"), "{warnings}");

    // A restart with a file that lacks the tag: the daemon starts on the tags it took last.
    drop(d);
    let mut lacking = fixture();
    lacking["values"]
        .as_array_mut()
        .unwrap()
        .retain(|t| t["name"] != AFD);
    std::fs::write(&file, lacking.to_string()).unwrap();
    let d = Daemon::start(&ns, &cfg);
    assert_eq!(
        action(&cfg, "198.51.100.7"),
        "pass",
        "the last accepted file's"
    );
    assert!(
        read(&cfg, &["status"])["warnings"]
            .to_string()
            .contains("has no service tag"),
    );
    drop(d);
    let _ = pins.remove_all();
}

const DOWNLOAD: &str = "/download/ServiceTags_Public.json";

#[test]
fn tags_from_a_url_are_downloaded_checked_and_kept_when_a_download_is_bad() {
    require_root!();
    let ns = Netns::new("tu");
    ns.veth_pair("t0", "p0");
    let svc = ns.run(FakeService::start);
    let dir = tempfile::tempdir().unwrap();
    let pins = test_pins("tagsurl", dir.path());
    let body = |edit: &dyn Fn(&mut Vec<Value>)| {
        let path = dir.path().join("body.json");
        write_tags(&path, AFD, edit);
        Answer::ok(std::fs::read_to_string(path).unwrap())
    };
    svc.set_file(DOWNLOAD, body(&|_| {}));
    let cfg = daemon_config(
        dir.path(),
        &pins,
        &format!("url = \"{}{DOWNLOAD}\"", svc.url),
    );
    let in_ns = |args: &[&str]| -> Value {
        let (code, out, err) = output(
            ns.command(bin())
                .args(args)
                .arg("--json")
                .arg("--config")
                .arg(&cfg),
        );
        assert_eq!(code, 0, "{args:?}: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    };

    // `endpoints` downloads once and records nothing.
    let sets = in_ns(&["endpoints", "--source", "service-tags"]);
    assert_eq!(sets[0]["ips"].as_array().unwrap().len(), 7, "{sets}");
    assert!(!dir.path().join("service-tags.json").exists());

    // The daemon starts with no tags (nothing taken before), downloads them after the attach.
    let d = Daemon::start(&ns, &cfg);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while action(&cfg, "13.107.219.5") != "pass" {
        assert!(std::time::Instant::now() < deadline, "never downloaded");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let asked = svc.take_requests();
    assert_eq!(
        asked,
        vec![DOWNLOAD.to_owned(), DOWNLOAD.to_owned()],
        "endpoints, then the daemon"
    );

    // A download that lost most of the tag: rejected on `refresh`, the tags in force stay.
    svc.set_file(DOWNLOAD, body(&|p| p.truncate(1)));
    in_ns(&["refresh"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let warnings = read(&cfg, &["status"])["warnings"].to_string();
        if warnings.contains("would lose 6 of its 7 prefixes") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{warnings}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(action(&cfg, "150.171.97.9"), "pass", "kept");

    // A restart a moment later: the tags taken are in force at once, and no download is due
    // for a day.
    drop(d);
    svc.take_requests();
    let d = Daemon::start(&ns, &cfg);
    assert_eq!(action(&cfg, "150.171.97.9"), "pass");
    std::thread::sleep(std::time::Duration::from_secs(1));
    assert!(svc.take_requests().is_empty(), "downloaded at most daily");
    drop(d);
    let _ = pins.remove_all();
}
