//! What changed between two rule sets, per endpoint set: the summary logged and recorded.

use std::collections::BTreeMap;

use crate::{
    daemon::state::{ChangeRecord, SetChange, now_rfc3339},
    datapath::sync::UpdateReport,
    ruleset::rules::RuleSet,
};

/// The summary of the first rule set installed: everything in it added.
pub fn of_first(rules: &RuleSet, cause: &str) -> ChangeRecord {
    let mut per_set: BTreeMap<u32, (usize, usize)> = BTreeMap::new();
    for rule in &rules.rules {
        for s in &rule.sets {
            per_set.entry(s.id).or_default().0 += 1;
        }
    }
    record(cause, rules.rules.len(), 0, 0, per_set)
}

/// The summary of an update, from what the datapath reported it changed.
pub fn of_update(report: &UpdateReport, cause: &str) -> ChangeRecord {
    record(
        cause,
        report.added.len(),
        report.removed.len(),
        report.changed,
        report.per_set.clone(),
    )
}

fn record(
    cause: &str,
    added: usize,
    removed: usize,
    changed: usize,
    per_set: BTreeMap<u32, (usize, usize)>,
) -> ChangeRecord {
    ChangeRecord {
        at: now_rfc3339(),
        cause: cause.to_string(),
        added,
        removed,
        changed,
        per_set: per_set
            .into_iter()
            .map(|(set, (added, removed))| SetChange {
                set,
                added,
                removed,
            })
            .collect(),
    }
}

/// One line for the log: "+3 / -1 prefixes, 2 changed (set 163 +3 -1)".
pub fn describe(c: &ChangeRecord) -> String {
    let sets: Vec<String> = c
        .per_set
        .iter()
        .map(|s| format!("set {} +{} -{}", s.set, s.added, s.removed))
        .collect();
    let mut line = format!(
        "+{} / -{} prefixes, {} changed",
        c.added, c.removed, c.changed
    );
    if !sets.is_empty() {
        line.push_str(&format!(" ({})", sets.join(", ")));
    }
    line
}
