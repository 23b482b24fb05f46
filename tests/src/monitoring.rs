//! The dashboard and alert rules shipped in `packaging/`: their queries, and the daemon
//! metrics they use.

use std::{collections::BTreeSet, path::PathBuf};

pub fn packaging(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../packaging")
        .join(file)
}

/// The dashboard's queries, one per panel target.
pub fn dashboard_queries() -> Vec<String> {
    let text = std::fs::read_to_string(packaging("grafana/intune-xdp.json")).expect("dashboard");
    let dash: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
    let mut out = Vec::new();
    for panel in dash["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push(target["expr"].as_str().expect("a target's expr").to_owned());
        }
    }
    out
}

/// The alert rules' expressions.
pub fn alert_queries() -> String {
    std::fs::read_to_string(packaging("prometheus/intune-xdp.rules.yml")).expect("rules")
}

/// The daemon metric families a text of queries names (`intune_xdp_*`, without the
/// `_total`, `_bucket`, `_count` and `_sum` a family's samples add).
pub fn families_named(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("intune_xdp_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let family = ["_total", "_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        out.insert(family.to_owned());
        rest = &tail[end..];
    }
    out
}

/// The families a scrape of the daemon declares (`# TYPE name kind`).
pub fn families_scraped(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}
