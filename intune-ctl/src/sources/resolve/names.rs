//! The names of the effective endpoint list: exact ones to resolve, wildcards to leave to a
//! later stage. A name in several sets carries all of them.

use std::collections::BTreeMap;

use crate::sources::endpoints::EndpointSet;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Names {
    /// Exact names (lower case, no root dot) and the ids of the sets that list them.
    pub exact: BTreeMap<String, Vec<u32>>,
    /// Names with a `*` anywhere: they cannot be resolved ahead of time.
    pub wildcard: BTreeMap<String, Vec<u32>>,
}

impl Names {
    pub fn of(sets: &[EndpointSet]) -> Names {
        let mut names = Names::default();
        for set in sets {
            for url in &set.urls {
                let name = url.trim().trim_end_matches('.').to_ascii_lowercase();
                if name.is_empty() {
                    continue;
                }
                let map = if name.contains('*') {
                    &mut names.wildcard
                } else {
                    &mut names.exact
                };
                let ids = map.entry(name).or_default();
                if !ids.contains(&set.id) {
                    ids.push(set.id);
                }
            }
        }
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::endpoints::{Source, parse_endpoint_sets};

    #[test]
    fn exact_and_wildcard_names_with_their_sets() {
        let sets = parse_endpoint_sets(
            r#"[{"id": 1, "serviceArea": "MEM", "category": "Default", "urls": ["A.example.", "*.b.example", "autodiscover.*.example"]},
                {"id": 2, "serviceArea": "MEM", "category": "Default", "urls": ["a.example"]}]"#,
            Source::File,
        )
        .unwrap();
        let names = Names::of(&sets);
        assert_eq!(names.exact.get("a.example"), Some(&vec![1, 2]));
        assert_eq!(
            names.wildcard.keys().collect::<Vec<_>>(),
            ["*.b.example", "autodiscover.*.example"]
        );
    }
}
