//! The endpoint names an answer is matched against: exact names, and wildcards. A leading `*`
//! label matches one or more labels (`*.manage.microsoft.com` matches any deeper name); a `*`
//! anywhere else matches one label (`autodiscover.*.onmicrosoft.com`), and a `*` inside a label
//! matches within that label. Names compare case-insensitively, without a trailing dot.

use std::{collections::HashMap, sync::Arc};

use crate::sources::endpoints::{EndpointSet, Ports};

/// One endpoint name as the list writes it, with the sets that list it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    /// Lower case, no trailing dot. Shared, as the sets are, by every address learned
    /// under it (65,536 of them at the cap).
    pub name: Arc<str>,
    pub sets: Arc<[u32]>,
    /// The union of the listing sets' ports.
    pub ports: Ports,
}

/// All names of a rule set, indexed for matching one name in a few hash lookups.
#[derive(Clone, Debug, Default)]
#[expect(
    clippy::struct_field_names,
    reason = "the patterns themselves, beside their indices"
)]
pub struct Patterns {
    patterns: Vec<Pattern>,
    /// Every pattern by its text.
    named: HashMap<String, usize>,
    exact: HashMap<String, usize>,
    /// `*.rest` by `rest`.
    suffix: HashMap<String, usize>,
    /// Wildcards elsewhere, tried one by one (the list has a handful).
    other: Vec<usize>,
}

/// Lower case, no trailing dot.
pub fn normalize(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

impl Patterns {
    pub fn of(sets: &[EndpointSet]) -> Patterns {
        let mut by_name: std::collections::BTreeMap<String, (Vec<u32>, Ports)> =
            std::collections::BTreeMap::default();
        for set in sets {
            for url in &set.urls {
                let name = normalize(url);
                if name.is_empty() {
                    continue;
                }
                let (ids, ports) = by_name.entry(name).or_default();
                if !ids.contains(&set.id) {
                    ids.push(set.id);
                }
                *ports = ports.union(&set.ports);
            }
        }
        let mut patterns = Patterns::default();
        for (i, (name, (ids, ports))) in by_name.into_iter().enumerate() {
            let p = Pattern {
                name: name.into(),
                sets: ids.into(),
                ports,
            };
            patterns.named.insert(p.name.to_string(), i);
            if !p.name.contains('*') {
                patterns.exact.insert(p.name.to_string(), i);
            } else if let Some(rest) = p.name.strip_prefix("*.")
                && !rest.contains('*')
            {
                patterns.suffix.insert(rest.to_string(), i);
            } else {
                patterns.other.push(i);
            }
            patterns.patterns.push(p);
        }
        patterns
    }

    pub fn all(&self) -> &[Pattern] {
        &self.patterns
    }

    /// The pattern written `name` (as the list writes it, normalized).
    pub fn named(&self, name: &str) -> Option<&Pattern> {
        self.named.get(name).map(|&i| &self.patterns[i])
    }

    /// The most specific pattern `name` (normalized) matches: the exact name, else the
    /// wildcard with the longest fixed part.
    pub fn find(&self, name: &str) -> Option<&Pattern> {
        if let Some(&i) = self.exact.get(name) {
            return Some(&self.patterns[i]);
        }
        // Suffixes after each label, longest first.
        let mut rest = name;
        let mut best = None;
        while let Some((_, tail)) = rest.split_once('.') {
            if let Some(&i) = self.suffix.get(tail) {
                best = Some(i);
                break;
            }
            rest = tail;
        }
        for &i in &self.other {
            let fixed = |i: usize| self.patterns[i].name.replace('*', "").len();
            if glob(&self.patterns[i].name, name) && best.is_none_or(|b| fixed(i) > fixed(b)) {
                best = Some(i);
            }
        }
        best.map(|i| &self.patterns[i])
    }
}

/// Whether `name` (normalized) is `pattern` or matches it as a wildcard.
pub fn matches(pattern: &str, name: &str) -> bool {
    pattern == name || (pattern.contains('*') && glob(pattern, name))
}

/// Label-wise match of `pattern` against `name`.
fn glob(pattern: &str, name: &str) -> bool {
    let p: Vec<&str> = pattern.split('.').collect();
    let n: Vec<&str> = name.split('.').collect();
    let (p, n) = if p.first() == Some(&"*") {
        // One or more labels for the leading star.
        if n.len() < p.len() {
            return false;
        }
        (&p[1..], &n[n.len() - (p.len() - 1)..])
    } else {
        if n.len() != p.len() {
            return false;
        }
        (&p[..], &n[..])
    };
    p.iter().zip(n).all(|(p, n)| label_glob(p, n))
}

/// `*` within one label matches any run of its characters.
fn label_glob(pattern: &str, label: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == label,
        Some((head, tail)) => label.strip_prefix(head).is_some_and(|rest| {
            (0..=rest.len())
                .filter(|&i| rest.is_char_boundary(i))
                .any(|i| label_glob(tail, &rest[i..]))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::endpoints::{Source, parse_endpoint_sets};

    fn patterns() -> Patterns {
        let sets = parse_endpoint_sets(
            r#"[{"id": 1, "serviceArea": "MEM", "category": "Allow", "tcpPorts": "443",
                 "urls": ["*.manage.microsoft.com", "Manage.Microsoft.com."]},
                {"id": 2, "serviceArea": "MEM", "category": "Allow", "tcpPorts": "80,443",
                 "urls": ["*.manage.microsoft.com", "*.fe.manage.microsoft.com"]},
                {"id": 3, "serviceArea": "MEM", "category": "Default", "tcpPorts": "443",
                 "urls": ["autodiscover.*.onmicrosoft.com", "*cdn.example"]}]"#,
            Source::File,
        )
        .unwrap();
        Patterns::of(&sets)
    }

    fn found(p: &Patterns, name: &str) -> Option<String> {
        p.find(name).map(|p| p.name.to_string())
    }

    #[test]
    fn wildcards_match_deeper_names_and_the_most_specific_wins() {
        let p = patterns();
        assert_eq!(
            found(&p, "manage.microsoft.com").as_deref(),
            Some("manage.microsoft.com")
        );
        assert_eq!(
            found(&p, "a.b.manage.microsoft.com").as_deref(),
            Some("*.manage.microsoft.com")
        );
        assert_eq!(
            found(&p, "x.fe.manage.microsoft.com").as_deref(),
            Some("*.fe.manage.microsoft.com")
        );
        assert_eq!(found(&p, "manage.microsoft.com.evil.example"), None);
        assert_eq!(found(&p, "xmanage.microsoft.com"), None);
        let both = p.find("x.manage.microsoft.com").unwrap();
        assert_eq!(*both.sets, [1, 2]);
        assert_eq!(both.ports.to_string(), "TCP 80,443");
    }

    #[test]
    fn a_star_inside_a_name_matches_one_label() {
        let p = patterns();
        assert_eq!(
            found(&p, "autodiscover.contoso.onmicrosoft.com").as_deref(),
            Some("autodiscover.*.onmicrosoft.com")
        );
        assert_eq!(found(&p, "autodiscover.a.b.onmicrosoft.com"), None);
        assert_eq!(found(&p, "autodiscover.onmicrosoft.com"), None);
        assert_eq!(found(&p, "mycdn.example").as_deref(), Some("*cdn.example"));
        assert_eq!(found(&p, "cdn.example").as_deref(), Some("*cdn.example"));
        assert_eq!(found(&p, "a.cdn.example"), None);
    }
}
