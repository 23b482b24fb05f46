//! The rule set as `intune-ctl list` shows it: every prefix with its ports, endpoint sets and
//! where each came from, and the names matched. The daemon records the listing of what it
//! installed, so `list` shows the rules in force, not ones rebuilt from its own flags.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::rules::{RuleSet, Target};
use crate::sources::{
    endpoints::{Category, EndpointSet, Ports},
    resolve::Names,
};

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Listing {
    pub rules: Vec<Row>,
    pub names: Vec<NameRow>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    pub prefix: String,
    pub ports: Ports,
    pub endpoint_sets: Vec<u32>,
    pub sources: Vec<String>,
    /// Per endpoint set: where it came from, its category, whether it is required.
    pub provenance: Vec<Provenance>,
    pub excluded: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NameRow {
    pub name: String,
    pub endpoint_sets: Vec<u32>,
    /// Has a `*`: cannot be resolved ahead of time.
    pub wildcard: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Provenance {
    pub set: u32,
    pub sources: Vec<String>,
    pub category: Option<Category>,
    pub required: Option<bool>,
}

impl std::fmt::Display for Provenance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.set, self.sources.join("+"))?;
        if let Some(category) = self.category {
            write!(f, " {category:?}")?;
        }
        if self.required == Some(true) {
            f.write_str(" required")?;
        }
        Ok(())
    }
}

impl Listing {
    /// The listing of `rules`, built from the effective endpoint list `sets`.
    pub fn of(sets: &[EndpointSet], rules: &RuleSet) -> Listing {
        // Sets of one id from several sources share category and required: the first tells.
        let mut about: HashMap<u32, (Category, bool)> = HashMap::new();
        for set in sets {
            about.entry(set.id).or_insert((set.category, set.required));
        }
        let rows = rules
            .rules
            .iter()
            .map(|r| Row {
                prefix: match r.target {
                    Target::Prefix(n) => n.to_string(),
                    Target::AnyAddress => "any".into(),
                },
                ports: r.effective,
                endpoint_sets: r.set_ids(),
                sources: r.sources(),
                provenance: r
                    .sets
                    .iter()
                    .map(|s| Provenance {
                        set: s.id,
                        sources: s.sources.iter().map(|x| x.to_string()).collect(),
                        category: about.get(&s.id).map(|a| a.0),
                        required: about.get(&s.id).map(|a| a.1),
                    })
                    .collect(),
                excluded: r.excluded,
            })
            .collect();
        let names = Names::of(sets);
        let names = names
            .exact
            .iter()
            .map(|(n, ids)| (n, ids, false))
            .chain(names.wildcard.iter().map(|(n, ids)| (n, ids, true)))
            .map(|(name, sets, wildcard)| NameRow {
                name: name.clone(),
                endpoint_sets: sets.clone(),
                wildcard,
            })
            .collect();
        Listing { rules: rows, names }
    }
}
