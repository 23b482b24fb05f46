//! The endpoint list built into the binary: every table of Microsoft's "Network endpoints for
//! Microsoft Intune" article, plus what the article lists outside its tables (origin "article").

use super::schema::{EndpointSet, SchemaError, Source, parse_endpoint_sets};

const BUILTIN_JSON: &str = include_str!("../../data/intune-endpoints.json");

/// The built-in endpoint sets.
pub fn builtin() -> Result<Vec<EndpointSet>, SchemaError> {
    parse_endpoint_sets(BUILTIN_JSON, Source::Builtin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoints::Origin;

    #[test]
    fn holds_every_table_of_the_article() {
        let sets = builtin().unwrap();
        let ids: Vec<u32> = sets
            .iter()
            .filter(|s| s.origin == Origin::Service)
            .map(|s| s.id)
            .collect();
        let article = [
            163, 172, 170, 97, 190, 189, 164, 165, 169, 173, 182, 181, 187, 188, 171, 178, 179, 56,
            150, 59,
        ];
        let mut want = article.to_vec();
        want.sort();
        let mut got = ids.clone();
        got.sort();
        assert_eq!(got, want);
        let intune = sets.iter().find(|s| s.id == 163).unwrap();
        assert_eq!(intune.ips.len(), 50);
        assert_eq!(intune.ports.to_string(), "TCP 80,443");
        let ntp = sets.iter().find(|s| s.id == 165).unwrap();
        assert_eq!(ntp.ports.to_string(), "UDP 123");
        let apple = sets.iter().find(|s| s.id == 178).unwrap();
        assert_eq!(apple.ports.to_string(), "TCP 80,443,5223");
    }

    #[test]
    fn extra_sets_are_marked_and_peering_is_port_only() {
        let sets = builtin().unwrap();
        for s in sets.iter().filter(|s| s.origin == Origin::Article) {
            assert!(
                s.notes.starts_with("Not from the endpoint web service."),
                "set {}",
                s.id
            );
        }
        let peering = sets.iter().find(|s| s.any_address).unwrap();
        assert_eq!(peering.ports.to_string(), "TCP 7680; UDP 3544");
        for name in [
            "*.dm.microsoft.com",
            "has.spserv.microsoft.com",
            "displaycatalog.mp.microsoft.com",
            "naprodimedatapri.azureedge.net",
        ] {
            assert!(
                sets.iter()
                    .any(|s| s.origin == Origin::Article && s.urls.iter().any(|u| u == name)),
                "{name}"
            );
        }
    }
}
