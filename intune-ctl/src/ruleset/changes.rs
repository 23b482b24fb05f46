//! What changed between two rule sets, per endpoint set: the summary logged and recorded.

use std::collections::BTreeMap;

use crate::{
    daemon::state::{ChangeRecord, SetChange, now_rfc3339},
    ruleset::{
        paired::{Paired, paired},
        rules::RuleSet,
    },
};

pub fn summarize(old: Option<&RuleSet>, new: &RuleSet, cause: &str) -> ChangeRecord {
    let empty = RuleSet::default();
    let old = old.unwrap_or(&empty);
    let mut per_set: BTreeMap<u32, (usize, usize)> = BTreeMap::new();
    let (mut added, mut removed, mut changed) = (0, 0, 0);
    for pair in paired(old, new) {
        match pair {
            Paired::Added(rule) => {
                added += 1;
                for s in &rule.sets {
                    per_set.entry(s.id).or_default().0 += 1;
                }
            }
            Paired::Kept { old: o, new: rule }
                if o.effective != rule.effective
                    || o.excluded != rule.excluded
                    || !o
                        .sets
                        .iter()
                        .map(|s| s.id)
                        .eq(rule.sets.iter().map(|s| s.id)) =>
            {
                changed += 1;
            }
            Paired::Kept { .. } => {}
            Paired::Removed(rule) => {
                removed += 1;
                for s in &rule.sets {
                    per_set.entry(s.id).or_default().1 += 1;
                }
            }
        }
    }
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
