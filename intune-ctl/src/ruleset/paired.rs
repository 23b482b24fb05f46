//! Two rule sets side by side: what an update adds, keeps and removes. Both hold their rules
//! sorted by target, so one walk pairs them, with no lookup of one in the other.

use std::{cmp::Ordering, iter::Peekable, slice::Iter};

use crate::ruleset::rules::{Rule, RuleSet};

/// A target's rule in the old set, the new one, or both.
#[derive(Clone, Copy, Debug)]
pub enum Paired<'a> {
    Added(&'a Rule),
    Removed(&'a Rule),
    Kept { old: &'a Rule, new: &'a Rule },
}

/// The rules of `old` and `new` by target, in target order.
pub fn paired<'a>(old: &'a RuleSet, new: &'a RuleSet) -> Pairs<'a> {
    Pairs {
        old: old.rules.iter().peekable(),
        new: new.rules.iter().peekable(),
    }
}

pub struct Pairs<'a> {
    old: Peekable<Iter<'a, Rule>>,
    new: Peekable<Iter<'a, Rule>>,
}

impl<'a> Iterator for Pairs<'a> {
    type Item = Paired<'a>;

    fn next(&mut self) -> Option<Paired<'a>> {
        let order = match (self.old.peek(), self.new.peek()) {
            (None, None) => return None,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            // Nearly all are kept: equality first, then the order of plain integer keys.
            (Some(o), Some(n)) if o.target == n.target => Ordering::Equal,
            (Some(o), Some(n)) => o.target.sort_key().cmp(&n.target.sort_key()),
        };
        Some(match order {
            Ordering::Less => Paired::Removed(self.old.next()?),
            Ordering::Greater => Paired::Added(self.new.next()?),
            Ordering::Equal => Paired::Kept {
                old: self.old.next()?,
                new: self.new.next()?,
            },
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
                Paired::Added(r) => format!("+{} {}", r.target, r.index),
                Paired::Removed(r) => format!("-{} {}", r.target, r.index),
                Paired::Kept { old, new } => {
                    format!("={} {}>{}", new.target, old.index, new.index)
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
