//! The effective endpoint list: the built-in list, the web service's accepted list and local
//! files together, less the names an admin excludes. The service adds to the built-in list and
//! never removes from it: a set id in both contributes the union of both.

use super::EndpointSet;

/// Where the effective list comes from.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    pub builtin: bool,
    pub files: Vec<EndpointSet>,
    /// Host names never to allow (exact, case-insensitive, or the same wildcard).
    pub exclude_names: Vec<String>,
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
    use crate::endpoints::{Source, parse_endpoint_sets};

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
            files: vec![],
            exclude_names: vec!["B.example.".into()],
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
