//! The effective endpoint list: the built-in list, the web service's accepted list, local
//! files and Azure service tags together, less the names an admin excludes. The service adds to the built-in list and
//! never removes from it: a set id in both contributes the union of both.

use super::{EndpointSet, schema::Region};

/// Where the effective list comes from.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    pub builtin: bool,
    pub files: Vec<EndpointSet>,
    /// Host names never to allow (exact, case-insensitive, or the same wildcard).
    pub exclude_names: Vec<String>,
    /// The tenant's region: sets for other regions are left out.
    pub region: Region,
    /// Set ids left out, whatever their source.
    pub skip_sets: Vec<u32>,
    /// The Azure service tags taken, as endpoint sets.
    pub service_tags: Vec<EndpointSet>,
}

pub fn effective(
    selection: &Selection,
    builtin: &[EndpointSet],
    service: &[EndpointSet],
) -> Vec<EndpointSet> {
    let excluded: Vec<String> = selection
        .exclude_names
        .iter()
        .map(|n| n.trim().trim_end_matches('.').to_ascii_lowercase())
        .collect();
    let builtin = if selection.builtin { builtin } else { &[] };
    builtin
        .iter()
        .chain(service)
        .chain(&selection.files)
        .chain(&selection.service_tags)
        .filter(|set| {
            !selection.skip_sets.contains(&set.id)
                && (selection.region == Region::All
                    || set.region.is_none_or(|r| r == selection.region))
        })
        .map(|set| {
            let mut set = set.clone();
            set.urls.retain(|u| !excluded.contains(u));
            set
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::endpoints::{Source, parse_endpoint_sets};

    #[test]
    fn a_region_leaves_the_others_out_and_skipped_sets_go() {
        let builtin = crate::sources::endpoints::builtin::builtin().unwrap();
        let ids = |selection: &Selection| -> Vec<u32> {
            effective(selection, &builtin, &[])
                .iter()
                .map(|s| s.id)
                .collect()
        };
        let all = ids(&Selection {
            builtin: true,
            ..Selection::default()
        });
        let eu = ids(&Selection {
            builtin: true,
            region: Region::Eu,
            skip_sets: vec![1030],
            ..Selection::default()
        });
        for id in [1011, 1012, 1013, 1014, 1015, 1016, 1030] {
            assert!(all.contains(&id), "{id}");
        }
        assert!(eu.contains(&1012) && eu.contains(&1015) && eu.contains(&1008));
        for id in [1011, 1013, 1014, 1016, 1003, 1009, 1030] {
            assert!(!eu.contains(&id), "{id} is not Europe's");
        }
        assert!(
            eu.contains(&163) && eu.contains(&178),
            "regionless sets stay"
        );
    }

    #[test]
    fn sources_add_up_and_excluded_names_go() {
        let builtin = parse_endpoint_sets(r#"[{"id": 1, "serviceArea": "MEM", "category": "Default", "urls": ["a.example", "b.example"]}]"#, Source::Builtin).unwrap();
        let service = parse_endpoint_sets(
            r#"[{"id": 1, "serviceArea": "MEM", "category": "Default", "urls": ["c.example"]}]"#,
            Source::Service,
        )
        .unwrap();
        let selection = Selection {
            builtin: true,
            exclude_names: vec!["B.example.".into()],
            ..Selection::default()
        };
        let all = effective(&selection, &builtin, &service);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].urls, ["a.example"]);
        assert_eq!(
            (all[1].source, all[1].urls.clone()),
            (Source::Service, vec!["c.example".to_string()])
        );
        let none = effective(&Selection::default(), &builtin, &[]);
        assert!(none.is_empty());
    }
}
