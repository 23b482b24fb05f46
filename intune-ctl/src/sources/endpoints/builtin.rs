//! The endpoint list built into the binary: every table of Microsoft's "Network endpoints for
//! Microsoft Intune" article, plus what the article lists outside its tables (origin "article").

use super::schema::{EndpointSet, SchemaError, Source, parse_endpoint_sets};

const BUILTIN_JSON: &str = include_str!("../../../data/intune-endpoints.json");

/// The built-in endpoint sets.
pub fn builtin() -> Result<Vec<EndpointSet>, SchemaError> {
    parse_endpoint_sets(BUILTIN_JSON, Source::Builtin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::endpoints::Origin;

    #[test]
    fn holds_every_table_of_the_article() {
        let sets = builtin().unwrap();
        let ids: Vec<u32> = sets
            .iter()
            .filter(|s| s.origin == Origin::Service)
            .map(|s| s.id)
            .collect();
        // The seed's tables, and set 192 of the English article of 2026-03-24.
        let article = [
            163, 172, 170, 97, 190, 189, 164, 165, 169, 173, 182, 181, 187, 188, 171, 178, 179, 56,
            150, 59, 192,
        ];
        let mut want = article.to_vec();
        want.sort_unstable();
        let mut got = ids.clone();
        got.sort_unstable();
        assert_eq!(got, want);
        let intune = sets.iter().find(|s| s.id == 163).unwrap();
        // The seed's 50, the 36 the 2026-03 article adds, its consolidated list's one, and the
        // seven Azure Front Door ranges.
        assert_eq!(intune.ips.len(), 50 + 36 + 1 + 7);
        let has = |p: &str| intune.ips.iter().any(|n| n.to_string() == p);
        for p in [
            "13.107.219.0/24",
            "150.171.97.0/24",
            "2620:1ec:4a::/47",
            "74.242.35.0/25",
            "20.189.172.160/27",
            // Dropped by the 2026-03 article, kept from the seed: the union.
            "13.71.199.64/28",
            "20.49.93.160/27",
        ] {
            assert!(has(p), "{p}");
        }
        assert_eq!(intune.ips.iter().filter(|n| n.addr().is_ipv6()).count(), 3);
        assert_eq!(intune.ports.to_string(), "TCP 80,443");
        let win32 = sets.iter().find(|s| s.id == 170).unwrap();
        assert_eq!(win32.ports.to_string(), "TCP 80,443");
        let ntp = sets.iter().find(|s| s.id == 165).unwrap();
        assert_eq!(ntp.ports.to_string(), "UDP 123");
        let apple = sets.iter().find(|s| s.id == 178).unwrap();
        assert_eq!(apple.ports.to_string(), "TCP 80,443,5223");
        let push = sets.iter().find(|s| s.id == 1030).unwrap();
        assert_eq!(push.ports.to_string(), "TCP 443,5223");
        assert_eq!(push.ips[0].to_string(), "17.0.0.0/8");
    }

    #[test]
    fn every_set_names_its_article_versions_and_regions_are_whole() {
        let sets = builtin().unwrap();
        for s in &sets {
            assert!(!s.article_versions.is_empty(), "set {}", s.id);
            for v in &s.article_versions {
                assert!(
                    ["sv-seed", "en-2026-03-24"].contains(&v.as_str()),
                    "set {}: {v}",
                    s.id
                );
            }
        }
        let only_new: Vec<u32> = sets
            .iter()
            .filter(|s| s.article_versions == ["en-2026-03-24"])
            .map(|s| s.id)
            .collect();
        assert!(
            only_new.contains(&192) && only_new.contains(&1014),
            "{only_new:?}"
        );
        // Each per-region kind of endpoint exists for all three regions.
        use crate::sources::endpoints::schema::Region;
        for name in [
            "prodimedata",
            "macsidecar",
            "intunemaape",
            "trouter.communications",
        ] {
            for region in [Region::Na, Region::Eu, Region::Ap] {
                assert!(
                    sets.iter().any(
                        |s| s.region == Some(region) && s.urls.iter().any(|u| u.contains(name))
                    ),
                    "{name} in {region:?}"
                );
            }
        }
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
