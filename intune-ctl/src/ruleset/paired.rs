//! Two rule sets side by side: what an update adds, keeps and removes. Both hold their rules
//! sorted by target, so one walk pairs them, with no lookup of one in the other.

use std::cmp::Ordering;

use crate::ruleset::rules::{Rule, RuleSet};

/// What moving the maps from one rule set to another takes: positions in the rule sets'
/// `rules`, in target order. [`RuleSet::build`] finds it in the pass that keeps indices; [`delta`]
/// by a walk of both sets, for a set built against another.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delta {
    /// Rules of the new set only.
    pub added: Vec<u32>,
    /// Rules of the old set only.
    pub removed: Vec<u32>,
    /// Kept rules the maps must be given again (their leaf or ports changed): in the new set.
    pub rewritten: Vec<u32>,
    /// Kept rules whose ports, endpoint sets or exclusion changed.
    pub changed: usize,
}

impl Delta {
    /// Notes that `new` (at `at`) keeps the target of `old`.
    pub fn kept(&mut self, old: &Rule, new: &Rule, at: usize) {
        let ports = old.effective != new.effective;
        if ports
            || old.excluded != new.excluded
            || !old
                .sets
                .iter()
                .map(|s| s.id)
                .eq(new.sets.iter().map(|s| s.id))
        {
            self.changed += 1;
        }
        // The maps hold the leaf and the port set: nothing to write otherwise.
        if old.rule_ref() != new.rule_ref() || ports {
            self.rewritten.push(at as u32);
        }
    }
}

/// The delta from `old` to `new`, by walking both.
pub fn delta(old: &RuleSet, new: &RuleSet) -> Delta {
    let mut d = Delta::default();
    for pair in paired(old, new) {
        match pair {
            Paired::Removed(o) => d.removed.push(o as u32),
            Paired::Added(n) => d.added.push(n as u32),
            Paired::Kept { old: o, new: n } => d.kept(&old.rules[o], &new.rules[n], n),
        }
    }
    d
}

/// A target's rule in the old set, the new one, or both: positions in their `rules`.
#[derive(Clone, Copy, Debug)]
pub enum Paired {
    Added(usize),
    Removed(usize),
    Kept { old: usize, new: usize },
}

/// The rules of `old` and `new` by target, in target order.
pub fn paired<'a>(old: &'a RuleSet, new: &'a RuleSet) -> Pairs<'a> {
    Pairs {
        old: &old.rules,
        new: &new.rules,
        at: (0, 0),
    }
}

pub struct Pairs<'a> {
    old: &'a [Rule],
    new: &'a [Rule],
    /// The next position in each.
    at: (usize, usize),
}

impl Iterator for Pairs<'_> {
    type Item = Paired;

    fn next(&mut self) -> Option<Paired> {
        let (i, j) = self.at;
        let order = match (self.old.get(i), self.new.get(j)) {
            (None, None) => return None,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            // Nearly all are kept: equality first, then the order of plain integer keys.
            (Some(o), Some(n)) if o.target == n.target => Ordering::Equal,
            (Some(o), Some(n)) => o.target.sort_key().cmp(&n.target.sort_key()),
        };
        Some(match order {
            Ordering::Less => {
                self.at.0 += 1;
                Paired::Removed(i)
            }
            Ordering::Greater => {
                self.at.1 += 1;
                Paired::Added(j)
            }
            Ordering::Equal => {
                self.at = (i + 1, j + 1);
                Paired::Kept { old: i, new: j }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ruleset::rules::Target;

    fn set(entries: &[(&str, u32)]) -> RuleSet {
        RuleSet::from_indices(
            entries
                .iter()
                .map(|(net, i)| (Target::Prefix(net.parse().unwrap()), *i)),
        )
    }

    #[test]
    fn pairs_added_kept_and_removed_in_target_order() {
        let old = set(&[
            ("198.51.100.0/24", 0),
            ("192.0.2.0/24", 1),
            ("2001:db8::/32", 2),
        ]);
        let new = set(&[
            ("203.0.113.0/24", 5),
            ("192.0.2.0/24", 7),
            ("192.0.2.0/25", 8),
        ]);
        let seen: Vec<String> = paired(&old, &new)
            .map(|p| match p {
                Paired::Added(n) => format!("+{} {}", new.rules[n].target, new.rules[n].index),
                Paired::Removed(o) => format!("-{} {}", old.rules[o].target, old.rules[o].index),
                Paired::Kept { old: o, new: n } => {
                    let (o, n) = (&old.rules[o], &new.rules[n]);
                    format!("={} {}>{}", n.target, o.index, n.index)
                }
            })
            .collect();
        assert_eq!(
            seen,
            [
                "=192.0.2.0/24 1>7",
                "+192.0.2.0/25 8",
                "-198.51.100.0/24 0",
                "+203.0.113.0/24 5",
                "-2001:db8::/32 2",
            ]
        );
        assert_eq!(paired(&RuleSet::default(), &RuleSet::default()).count(), 0);
    }
}
