//! The endpoint web service's JSON schema, and the one parser that reads it for the built-in
//! list, for local files and for the service.

use std::{borrow::Cow, collections::HashSet};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::ports::{PortRanges, Ports};

/// An endpoint set as the service writes it. Unknown fields are ignored, as the service adds
/// fields over time.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEndpointSet<'a> {
    id: u32,
    service_area: String,
    #[serde(default)]
    service_area_display_name: Option<String>,
    // Borrowed from the response where they hold no escapes: a list may hold 100,000.
    #[serde(default, borrow)]
    urls: Vec<Cow<'a, str>>,
    #[serde(default, borrow)]
    ips: Vec<Cow<'a, str>>,
    #[serde(default)]
    tcp_ports: Option<String>,
    #[serde(default)]
    udp_ports: Option<String>,
    #[serde(default)]
    express_route: bool,
    category: String,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    notes: Option<String>,
    /// intune-xdp's own: "article" for sets the article lists outside its id tables.
    #[serde(default)]
    origin: Option<String>,
    /// intune-xdp's own: the ports hold for any address (Delivery Optimization peering).
    #[serde(default)]
    any_address: bool,
    /// intune-xdp's own: the versions of the article the set's entries come from.
    #[serde(default)]
    article_versions: Vec<String>,
    /// intune-xdp's own: the tenant region ("na", "eu", "ap") the set is for.
    #[serde(default)]
    region: Option<String>,
}

/// A tenant's region, as the Intune admin center shows its location: some endpoints differ
/// by region, and a gateway needs only its tenant's.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Region {
    /// Every region's endpoints.
    #[default]
    All,
    /// North America.
    Na,
    /// Europe.
    Eu,
    /// Asia Pacific.
    Ap,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
pub enum Category {
    Optimize,
    Allow,
    Default,
}

/// Where a set comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// One of the service's endpoint sets (an id the service uses).
    Service,
    /// Listed in the article outside its id tables; not from the service.
    Article,
}

/// Which source a set was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The list built into the binary.
    Builtin = 0,
    /// The Microsoft 365 endpoint web service.
    Service = 1,
    /// A local endpoint file.
    File = 2,
    /// Addresses a listed name resolved to.
    Dns = 3,
    /// Azure service tags (`ServiceTags_Public_*.json`): the Front Door ranges the web
    /// service does not carry.
    #[serde(rename = "service-tags")]
    ServiceTags = 4,
}

/// A set of sources, without an allocation: a rule set holds one per prefix and set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Sources(u8);

impl Sources {
    pub fn insert(&mut self, source: Source) {
        self.0 |= 1 << source as u8;
    }

    pub fn iter(self) -> impl Iterator<Item = Source> {
        [
            Source::Builtin,
            Source::Service,
            Source::File,
            Source::Dns,
            Source::ServiceTags,
        ]
        .into_iter()
        .filter(move |s| self.0 & (1 << *s as u8) != 0)
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Source::Builtin => "builtin",
            Source::Service => "service",
            Source::File => "file",
            Source::Dns => "dns",
            Source::ServiceTags => "service-tags",
        })
    }
}

/// A validated endpoint set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSet {
    pub id: u32,
    pub service_area: String,
    pub service_area_display_name: String,
    /// Lower-case names; `*` stands for labels.
    pub urls: Vec<String>,
    /// Prefixes with host bits cleared.
    pub ips: Vec<IpNet>,
    #[serde(flatten)]
    pub ports: Ports,
    pub express_route: bool,
    pub category: Category,
    pub required: bool,
    pub notes: String,
    pub origin: Origin,
    pub any_address: bool,
    pub source: Source,
    /// The article versions its entries come from (the built-in list's sets).
    pub article_versions: Vec<String>,
    /// The tenant region it is for; `None`: every region.
    pub region: Option<Region>,
}

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("not JSON in the endpoint schema: {0}")]
    Json(#[from] serde_json::Error),
    #[error("expected an array of endpoint sets")]
    NotAnArray,
    #[error("endpoint set #{index}{id}: {message}")]
    Set {
        index: usize,
        id: String,
        message: String,
    },
    #[error("endpoint set {id}: field `{field}`: {message}")]
    Field {
        id: u32,
        field: &'static str,
        message: String,
    },
    #[error("endpoint set id {0} appears twice")]
    DuplicateId(u32),
}

/// Parses and validates a list of endpoint sets read from `source`.
pub fn parse_endpoint_sets(text: &str, source: Source) -> Result<Vec<EndpointSet>, SchemaError> {
    // Each set is read from its own text, straight into its fields (no tree of values), so
    // that an error can still name the set it is in.
    let items: Vec<&RawValue> = match serde_json::from_str(text) {
        Ok(items) => items,
        Err(e) => {
            return Err(match serde_json::from_str::<serde::de::IgnoredAny>(text) {
                Ok(_) => SchemaError::NotAnArray,
                Err(_) => SchemaError::Json(e),
            });
        }
    };
    let mut seen = HashSet::new();
    let mut sets = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let raw =
            serde_json::from_str::<RawEndpointSet>(item.get()).map_err(|e| SchemaError::Set {
                index,
                id: set_id(item).unwrap_or_default(),
                message: e.to_string(),
            })?;
        let set = validate(raw, source)?;
        if !seen.insert(set.id) {
            return Err(SchemaError::DuplicateId(set.id));
        }
        sets.push(set);
    }
    Ok(sets)
}

/// " (id N)" for a set that could not be read, when its id can be.
fn set_id(item: &RawValue) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(item.get()).ok()?;
    value.get("id").map(|id| format!(" (id {id})"))
}

fn validate(raw: RawEndpointSet, source: Source) -> Result<EndpointSet, SchemaError> {
    let id = raw.id;
    let field = |field: &'static str, message: String| SchemaError::Field { id, field, message };
    if raw.service_area.trim().is_empty() {
        return Err(field("serviceArea", "is empty".into()));
    }
    let category = match raw.category.as_str() {
        "Optimize" => Category::Optimize,
        "Allow" => Category::Allow,
        "Default" => Category::Default,
        other => {
            return Err(field(
                "category",
                format!("{other:?} is not Optimize, Allow or Default"),
            ));
        }
    };
    let origin = match raw.origin.as_deref() {
        None | Some("service") => Origin::Service,
        Some("article") => Origin::Article,
        Some(other) => {
            return Err(field(
                "origin",
                format!("{other:?} is not service or article"),
            ));
        }
    };
    let ips = raw
        .ips
        .iter()
        .map(|ip| parse_prefix(ip).map_err(|m| field("ips", m)))
        .collect::<Result<Vec<_>, _>>()?;
    let urls = raw
        .urls
        .iter()
        .map(|url| parse_name(url).map_err(|m| field("urls", m)))
        .collect::<Result<Vec<_>, _>>()?;
    let ports = Ports {
        tcp: PortRanges::parse(raw.tcp_ports.as_deref().unwrap_or(""))
            .map_err(|m| field("tcpPorts", m))?,
        udp: PortRanges::parse(raw.udp_ports.as_deref().unwrap_or(""))
            .map_err(|m| field("udpPorts", m))?,
    };
    if raw.any_address && (!ips.is_empty() || !urls.is_empty() || ports.is_empty()) {
        return Err(field("anyAddress", "needs ports and no urls or ips".into()));
    }
    let region = match raw.region.as_deref() {
        None => None,
        Some("na") => Some(Region::Na),
        Some("eu") => Some(Region::Eu),
        Some("ap") => Some(Region::Ap),
        Some(other) => {
            return Err(field("region", format!("{other:?} is not na, eu or ap")));
        }
    };
    if source == Source::Service {
        // What the network fetches must not open a port to the whole Internet, or a range
        // no service owns: such sets come only from files the admin wrote.
        if raw.any_address {
            return Err(field(
                "anyAddress",
                "port-only sets are not taken from the web service".into(),
            ));
        }
        if let Some(wide) = ips.iter().find(|n| n.prefix_len() < min_service_prefix(n)) {
            return Err(field(
                "ips",
                format!(
                    "{wide} is wider than /{}: not taken from the web service",
                    min_service_prefix(wide)
                ),
            ));
        }
    }
    Ok(EndpointSet {
        id,
        service_area_display_name: raw
            .service_area_display_name
            .unwrap_or_else(|| raw.service_area.clone()),
        service_area: raw.service_area,
        urls,
        ips,
        ports,
        express_route: raw.express_route,
        category,
        required: raw.required,
        notes: raw.notes.unwrap_or_default(),
        origin,
        any_address: raw.any_address,
        source,
        article_versions: raw.article_versions,
        region,
    })
}

/// The shortest prefix the web service may send: /8 for IPv4, /16 for IPv6.
pub(super) fn min_service_prefix(net: &IpNet) -> u8 {
    match net {
        IpNet::V4(_) => 8,
        IpNet::V6(_) => 16,
    }
}

/// A CIDR prefix; host bits are cleared, as the service sometimes sends them set.
pub(super) fn parse_prefix(text: &str) -> Result<IpNet, String> {
    let net: IpNet = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not an IPv4 or IPv6 prefix in CIDR form"))?;
    Ok(net.trunc())
}

/// A host name, possibly with `*` labels ("*.manage.microsoft.com", "autodiscover.*.onmicrosoft.com").
fn parse_name(text: &str) -> Result<String, String> {
    let name = text.trim().trim_end_matches('.').to_ascii_lowercase();
    let bad = |why: &str| Err(format!("{text:?} is not a host name: {why}"));
    if name.is_empty() || name.len() > 253 {
        return bad("empty or longer than 253 characters");
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return bad("empty label or label over 63 characters");
        }
        let ok = label == "*"
            || label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'*');
        if !ok {
            return bad("characters other than letters, digits, '-', '_' and '*'");
        }
    }
    Ok(name)
}

impl EndpointSet {
    /// Names without wildcards: those a resolver can look up ahead of time.
    pub fn exact_urls(&self) -> impl Iterator<Item = &str> {
        self.urls
            .iter()
            .map(String::as_str)
            .filter(|u| !u.contains('*'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(json: &str) -> Result<EndpointSet, SchemaError> {
        parse_endpoint_sets(&format!("[{json}]"), Source::File).map(|mut v| v.remove(0))
    }

    #[test]
    fn accepts_the_services_quirks() {
        let set = one(r#"{"id": 46, "serviceArea": "Common", "urls": ["Autodiscover.*.onmicrosoft.com."],
            "ips": ["13.107.6.171/24", "2603:1006:1400::/40"], "tcpPorts": "443,80", "udpPorts": "3478-3481",
            "expressRoute": true, "category": "Optimize", "required": false, "notes": "", "newField": 1}"#)
        .unwrap();
        assert_eq!(set.urls, ["autodiscover.*.onmicrosoft.com"]);
        assert_eq!(set.ips[0].to_string(), "13.107.6.0/24");
        assert_eq!(set.ips[1].to_string(), "2603:1006:1400::/40");
        assert_eq!(set.ports.to_string(), "TCP 80,443; UDP 3478-3481");
        assert_eq!(set.origin, Origin::Service);
    }

    #[test]
    fn missing_urls_ips_and_ports_are_empty() {
        let set = one(r#"{"id": 9, "serviceArea": "MEM", "category": "Default"}"#).unwrap();
        assert!(set.urls.is_empty() && set.ips.is_empty() && set.ports.is_empty());
    }

    #[test]
    fn errors_name_the_set_and_field() {
        let cases = [
            (
                r#"{"id": 7, "serviceArea": "MEM", "category": "Default", "tcpPorts": "80,x"}"#,
                "endpoint set 7: field `tcpPorts`",
            ),
            (
                r#"{"id": 8, "serviceArea": "MEM", "category": "Default", "ips": ["10.0.0.0/33"]}"#,
                "endpoint set 8: field `ips`",
            ),
            (
                r#"{"id": 9, "serviceArea": "MEM", "category": "Maybe"}"#,
                "endpoint set 9: field `category`",
            ),
            (
                r#"{"id": 10, "serviceArea": "MEM", "category": "Default", "urls": ["bad name.com"]}"#,
                "endpoint set 10: field `urls`",
            ),
            (
                r#"{"id": "x", "serviceArea": "MEM", "category": "Default"}"#,
                "endpoint set #0 (id \"x\")",
            ),
            (
                r#"{"serviceArea": "MEM", "category": "Default"}"#,
                "endpoint set #0: missing field `id`",
            ),
        ];
        for (json, expected) in cases {
            let err = one(json).unwrap_err().to_string();
            assert!(
                err.starts_with(expected),
                "{err:?} does not start with {expected:?}"
            );
        }
    }

    #[test]
    fn duplicate_ids_and_non_arrays_are_rejected() {
        let dup = r#"[{"id": 1, "serviceArea": "MEM", "category": "Default"}, {"id": 1, "serviceArea": "MEM", "category": "Default"}]"#;
        assert!(matches!(
            parse_endpoint_sets(dup, Source::File),
            Err(SchemaError::DuplicateId(1))
        ));
        assert!(matches!(
            parse_endpoint_sets("{}", Source::File),
            Err(SchemaError::NotAnArray)
        ));
        assert!(matches!(
            parse_endpoint_sets("[1,", Source::File),
            Err(SchemaError::Json(_))
        ));
    }

    #[test]
    fn reads_a_real_service_response() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/fixtures/m365-worldwide-sample.json"
        ));
        let Ok(text) = text else {
            eprintln!("skipped: ../shared/fixtures is not beside this checkout");
            return;
        };
        let sets = parse_endpoint_sets(&text, Source::Service).unwrap();
        assert_eq!(sets.len(), 63);
        assert!(
            sets.iter()
                .any(|s| s.urls.iter().any(|u| u == "autodiscover.*.onmicrosoft.com"))
        );
    }
}
