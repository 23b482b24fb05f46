//! Azure service tags: Microsoft's weekly `ServiceTags_Public_YYYYMMDD.json`, where the Azure
//! Front Door ranges Intune needs are published (the endpoint web service does not carry
//! them). The tags an admin names become endpoint sets of their own, numbered from
//! [`FIRST_SET_ID`] in the order named, with the ports the admin gives.

use std::collections::HashSet;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{
    Category, EndpointSet, Origin, Ports, Source,
    schema::{min_service_prefix, parse_prefix},
};

/// The first tag named becomes endpoint set 9000, the next 9001, ...: far from the ids the
/// web service and the built-in list use.
pub const FIRST_SET_ID: u32 = 9000;

/// The file, as Microsoft writes it (fields it adds are ignored).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TagsFile {
    pub change_number: u64,
    pub cloud: String,
    pub values: Vec<Tag>,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Tag {
    pub name: String,
    #[serde(default)]
    pub id: String,
    pub properties: TagProperties,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TagProperties {
    #[serde(default)]
    pub change_number: u64,
    #[serde(default)]
    pub region: String,
    #[serde(default)]
    pub system_service: String,
    #[serde(default)]
    pub address_prefixes: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TagsError {
    #[error("not a service tags file (changeNumber, cloud, values): {0}")]
    Json(String),
    #[error("the file has no service tag {0:?}")]
    Missing(String),
    #[error("service tag {tag:?}: {message}")]
    Prefix { tag: String, message: String },
    #[error("service tag {0:?} lists no address prefix")]
    Empty(String),
    #[error(
        "service tag {tag:?} would lose {removed} of its {previous} prefixes, more than the {limit_percent}% allowed (sources.max_shrink)"
    )]
    Shrinks {
        tag: String,
        removed: usize,
        previous: usize,
        limit_percent: u32,
    },
}

/// Parses the file.
pub fn parse(text: &str) -> Result<TagsFile, TagsError> {
    serde_json::from_str(text).map_err(|e| TagsError::Json(e.to_string()))
}

impl TagsFile {
    /// The file with only the named tags, in the order named; each checked (present, its
    /// prefixes CIDR prefixes no wider than the web service may send).
    pub fn select(&self, names: &[String]) -> Result<TagsFile, TagsError> {
        let mut values = Vec::with_capacity(names.len());
        for name in names {
            let tag = self
                .values
                .iter()
                .find(|t| t.name.eq_ignore_ascii_case(name))
                .ok_or_else(|| TagsError::Missing(name.clone()))?;
            prefixes(tag)?;
            values.push(tag.clone());
        }
        Ok(TagsFile {
            change_number: self.change_number,
            cloud: self.cloud.clone(),
            values,
        })
    }

    /// Checks each tag against the same tag in `previous` (the one in force): none may lose
    /// more than `max_shrink` (a share) of its prefixes.
    pub fn guard(&self, previous: &TagsFile, max_shrink: f64) -> Result<(), TagsError> {
        for tag in &self.values {
            let Some(before) = previous.values.iter().find(|t| t.name == tag.name) else {
                continue;
            };
            let before: HashSet<IpNet> = prefixes(before)?.into_iter().collect();
            let after: HashSet<IpNet> = prefixes(tag)?.into_iter().collect();
            let removed = before.difference(&after).count();
            if removed as f64 > max_shrink * before.len() as f64 {
                return Err(TagsError::Shrinks {
                    tag: tag.name.clone(),
                    removed,
                    previous: before.len(),
                    limit_percent: (max_shrink * 100.0).round() as u32,
                });
            }
        }
        Ok(())
    }

    /// One endpoint set per tag, with `ports`; their notes say where they come from.
    pub fn sets(&self, ports: &Ports) -> Result<Vec<EndpointSet>, TagsError> {
        (0u32..)
            .zip(&self.values)
            .map(|(i, tag)| {
                Ok(EndpointSet {
                    id: FIRST_SET_ID + i,
                    service_area: tag.name.clone(),
                    service_area_display_name: tag.name.clone(),
                    urls: Vec::new(),
                    ips: prefixes(tag)?,
                    ports: *ports,
                    express_route: false,
                    category: Category::Allow,
                    required: true,
                    notes: format!(
                        "service tag changeNumber {}, file changeNumber {} ({})",
                        tag.properties.change_number, self.change_number, self.cloud
                    ),
                    origin: Origin::Service,
                    any_address: false,
                    source: Source::ServiceTags,
                    article_versions: Vec::new(),
                    region: None,
                })
            })
            .collect()
    }
}

fn prefixes(tag: &Tag) -> Result<Vec<IpNet>, TagsError> {
    let err = |message: String| TagsError::Prefix {
        tag: tag.name.clone(),
        message,
    };
    if tag.properties.address_prefixes.is_empty() {
        return Err(TagsError::Empty(tag.name.clone()));
    }
    tag.properties
        .address_prefixes
        .iter()
        .map(|p| {
            let net = parse_prefix(p).map_err(err)?;
            if net.prefix_len() < min_service_prefix(&net) {
                return Err(err(format!(
                    "{p} is wider than /{}",
                    min_service_prefix(&net)
                )));
            }
            Ok(net)
        })
        .collect::<Result<Vec<_>, _>>()
        .map(|nets| super::order::sorted(&nets))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = include_str!("../../../../tests/fixtures/ServiceTags_Public.json");

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_named_tags_become_sets_in_the_order_named() {
        let file = parse(FILE).unwrap();
        let picked = file
            .select(&names(&[
                "AzureFrontDoor.MicrosoftSecurity",
                "AzureFrontDoor.Frontend",
            ]))
            .unwrap();
        let ports = Ports::new(
            super::super::ports::PortRanges::parse("80,443").unwrap(),
            super::super::ports::PortRanges::default(),
        )
        .unwrap();
        let sets = picked.sets(&ports).unwrap();
        assert_eq!(sets.len(), 2);
        assert_eq!(
            (sets[0].id, sets[0].service_area_display_name.as_str()),
            (9000, "AzureFrontDoor.MicrosoftSecurity")
        );
        assert_eq!(sets[1].id, 9001);
        let ips: Vec<String> = sets[0].ips.iter().map(ToString::to_string).collect();
        assert_eq!(
            ips,
            vec![
                "13.107.219.0/24",
                "13.107.227.0/24",
                "13.107.228.0/23",
                "150.171.97.0/24",
                "2620:1ec:40::/48",
                "2620:1ec:49::/48",
                "2620:1ec:4a::/47"
            ]
        );
        assert_eq!(sets[0].source, Source::ServiceTags);
        assert_eq!(sets[0].ports.to_string(), "TCP 80,443");
        assert!(sets[0].notes.contains("changeNumber 7") && sets[0].notes.contains("391"));
    }

    #[test]
    fn a_missing_tag_a_bad_prefix_or_a_big_shrink_is_rejected() {
        let file = parse(FILE).unwrap();
        assert_eq!(
            file.select(&names(&["AzureFrontDoor.Nope"])).unwrap_err(),
            TagsError::Missing("AzureFrontDoor.Nope".into())
        );
        let mut bad = file.clone();
        bad.values[0]
            .properties
            .address_prefixes
            .push("13.0.0.0/6".into());
        let err = bad
            .select(&names(&[&bad.values[0].name.clone()]))
            .unwrap_err();
        assert!(
            err.to_string().contains("13.0.0.0/6 is wider than /8"),
            "{err}"
        );
        let mut bad = file.clone();
        bad.values[0]
            .properties
            .address_prefixes
            .push("13.107.x".into());
        assert!(bad.select(&names(&[&bad.values[0].name.clone()])).is_err());
        assert!(parse("{\"values\": 3}").is_err());

        let wanted = names(&["AzureFrontDoor.MicrosoftSecurity"]);
        let before = file.select(&wanted).unwrap();
        let mut after = before.clone();
        after.values[0].properties.address_prefixes.truncate(2);
        assert_eq!(
            after.guard(&before, 0.5).unwrap_err(),
            TagsError::Shrinks {
                tag: "AzureFrontDoor.MicrosoftSecurity".into(),
                removed: 5,
                previous: 7,
                limit_percent: 50
            }
        );
        after.values[0].properties.address_prefixes =
            before.values[0].properties.address_prefixes[..4].to_vec();
        assert_eq!(
            after.guard(&before, 0.5),
            Ok(()),
            "3 of 7 removed is within half"
        );
    }
}
