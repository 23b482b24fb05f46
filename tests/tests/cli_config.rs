//! `intune-ctl check-config`: the example config and broken ones, checked offline.

use std::process::Command;

fn check(file: &std::path::Path) -> (i32, String, String) {
    intune_tests::output(
        Command::new(env!("CARGO_BIN_EXE_intune-ctl-test"))
            .arg("check-config")
            .arg(file),
    )
}

#[test]
fn the_example_config_checks() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/config.toml");
    let (code, stdout, stderr) = check(&example);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(": ok; 1 interfaces, mode Monitor"),
        "{stdout}"
    );
}

#[test]
fn broken_configs_name_the_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    for (text, expect) in [
        ("[sources]\nbuiltin = true\nfiels = []\n", "line 3"),
        ("[dns]\nmin_ttl = \"soon\"\n", "line 2"),
        ("[[interface]]\nname = \"eth0:1\"\n", "interface[0].name"),
        (
            "[sources]\nfiles = [\"/nonexistent/extra.json\"]\n",
            "/nonexistent/extra.json",
        ),
        ("[sources]\nexclude = [\"10.0.0.0/33\"]\n", "10.0.0.0/33"),
        ("[policy\n", "line 1"),
        (
            "[dns]\nlearn_from_dns = true\n",
            "learning from DNS needs the resolvers it may trust",
        ),
        (
            "[[policy.allow]]\nprefix = \"192.0.2.0/24\"\nprotocol = \"tcp\"\nports = \"443-80\"\n",
            "policy.allow[0]",
        ),
        ("[sources]\nregion = \"mars\"\n", "mars"),
    ] {
        std::fs::write(&file, text).unwrap();
        let (code, _, stderr) = check(&file);
        assert_eq!(code, 2, "{text}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(expect), "{text}: {stderr}");
    }
    // Enforce mode with DNS to anywhere checks, and says what that opens.
    std::fs::write(&file, "[policy]\nmode = \"enforce\"\n").unwrap();
    let (code, _, stderr) = check(&file);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("warning: enforce mode with no dns_resolvers")
            && stderr.contains("a tunnel on port 53"),
        "{stderr}"
    );
    std::fs::write(
        &file,
        "[policy]\nmode = \"enforce\"\ndns_resolvers = [\"192.0.2.53\"]\n\n[dns]\nlearn_from_dns = true\n",
    )
    .unwrap();
    let (code, _, stderr) = check(&file);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    let (code, _, stderr) = check(&dir.path().join("missing.toml"));
    assert_eq!(code, 2);
    assert!(stderr.contains("missing.toml"), "{stderr}");
}
