//! The daemon's TOML config (`/etc/intune-ctl/config.toml`). Every key has a default, so an
//! empty file works; an unknown key or a bad value is an error naming the key and its line.
//! Flags given on the command line override the file (see `cli::run`).

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use serde::Deserialize;

use crate::{
    cli::common::{parse_category, parse_resolver},
    datapath::XdpChoice,
    sources::endpoints::{
        Category,
        ports::PortRanges,
        schema::Region,
        service::{Instance, MIN_INTERVAL, ServiceConfig},
    },
    ruleset::policy::{AllowProtocol, AllowRule, Direction, Mode, allow_entries},
    daemon::state::DEFAULT_STATE_DIR,
};

pub const DEFAULT_CONFIG: &str = "/etc/intune-ctl/config.toml";
pub const DEFAULT_BPFFS_DIR: &str = "/sys/fs/bpf/intune";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    #[serde(rename = "interface")]
    pub interfaces: Vec<Interface>,
    pub policy: PolicyConfig,
    pub sources: SourcesConfig,
    pub dns: DnsConfig,
    pub paths: PathsConfig,
    pub metrics: MetricsConfig,
    pub daemon: DaemonConfig,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Interface {
    pub name: String,
    /// The policy's direction when absent.
    #[serde(default)]
    pub direction: Option<Direction>,
    #[serde(default)]
    pub xdp_mode: XdpChoice,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub mode: Mode,
    /// Direction of interfaces that name none.
    pub direction: Direction,
    /// Enforce mode: DNS allowed only to these (and answers only from them); empty = any.
    pub dns_resolvers: Vec<IpAddr>,
    /// DHCP servers and relays DHCP may go to besides the broadcast.
    pub dhcp_servers: Vec<IpAddr>,
    /// Traffic to the gateway's own addresses, link-local multicast and broadcast pass as
    /// `local`.
    pub allow_local: bool,
    /// Services that pass as `local`: `[[policy.allow]]` tables.
    #[serde(deserialize_with = "allow_rules")]
    pub allow: Vec<AllowRule>,
    /// What leaves every list passes for its connections until idle this long; 0 = off.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Allow Delivery Optimization peering (TCP 7680, UDP 3544) to any address.
    pub peer_ports: bool,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            mode: Mode::Monitor,
            direction: Direction::Dst,
            dns_resolvers: Vec::new(),
            dhcp_servers: Vec::new(),
            allow_local: true,
            allow: Vec::new(),
            // Longer than the keepalive of push connections (Windows, Apple: up to 30 min).
            idle_timeout: Duration::from_secs(3600),
            peer_ports: false,
        }
    }
}

/// One `[[policy.allow]]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowTable {
    prefix: ipnet::IpNet,
    protocol: AllowProtocol,
    /// "22", "161-162", "80, 443"; absent = every port of the protocol.
    #[serde(default)]
    ports: Option<String>,
}

fn allow_rules<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<AllowRule>, D::Error> {
    let tables = Vec::<AllowTable>::deserialize(d)?;
    let rules = tables
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let ports = match &t.ports {
                None => Vec::new(),
                Some(text) => PortRanges::parse(text)
                    .map_err(|e| serde::de::Error::custom(format!("policy.allow[{i}].ports: {e}")))?
                    .ranges()
                    .to_vec(),
            };
            AllowRule::new(t.prefix, t.protocol, ports)
                .map_err(|e| serde::de::Error::custom(format!("policy.allow[{i}]: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    allow_entries(&rules).map_err(|e| serde::de::Error::custom(format!("policy.allow: {e}")))?;
    Ok(rules)
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SourcesConfig {
    pub builtin: bool,
    pub service: bool,
    pub service_url: String,
    pub instance: Instance,
    pub service_areas: Vec<String>,
    /// Common sets kept: the article's Intune dependencies.
    pub common_sets: Vec<u32>,
    pub no_ipv6: bool,
    /// Optimize, Allow, Default; empty = all.
    #[serde(deserialize_with = "categories")]
    pub categories: Vec<Category>,
    pub required_only: bool,
    #[serde(with = "humantime_serde")]
    pub refresh_interval: Duration,
    /// Share of the service's prefixes a new list may remove before it is rejected.
    pub max_shrink: f64,
    #[serde(with = "humantime_serde")]
    pub service_timeout: Duration,
    pub files: Vec<PathBuf>,
    /// Prefixes and names never to allow.
    pub exclude: Vec<String>,
    /// The tenant's region: "all", "na", "eu" or "ap".
    pub region: Region,
    /// Endpoint set ids left out.
    pub skip_sets: Vec<u32>,
}

impl Default for SourcesConfig {
    /// The web service's settings default as the client's do.
    fn default() -> Self {
        let service = ServiceConfig::default();
        SourcesConfig {
            builtin: true,
            service: true,
            service_url: service.base_url,
            instance: service.instance,
            service_areas: service.service_areas,
            common_sets: service.common_sets,
            no_ipv6: service.no_ipv6,
            categories: service.categories,
            required_only: service.required_only,
            refresh_interval: MIN_INTERVAL,
            max_shrink: 0.5,
            service_timeout: service.request_timeout,
            files: Vec::new(),
            exclude: Vec::new(),
            region: Region::All,
            skip_sets: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// Resolve the listed names at all.
    pub enabled: bool,
    /// `ADDR:PORT` or `ADDR`; empty = the system's.
    #[serde(deserialize_with = "resolvers")]
    pub resolvers: Vec<SocketAddr>,
    #[serde(with = "humantime_serde")]
    pub min_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub max_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Lookups started per second at most.
    pub rate: u32,
    /// Learn the addresses of endpoint names (wildcards too) from the DNS answers that leave
    /// through the filtered interfaces towards devices.
    pub learn_from_dns: bool,
    /// Resolvers whose answers are learned from; empty = any.
    pub learn_trusted: Vec<std::net::IpAddr>,
    /// Learned addresses kept at most; the least recently seen goes first.
    pub learn_max: u32,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            enabled: true,
            resolvers: Vec::new(),
            min_ttl: Duration::from_secs(30),
            max_ttl: Duration::from_secs(3600),
            grace: Duration::from_secs(600),
            timeout: Duration::from_secs(3),
            rate: 50,
            learn_from_dns: false,
            learn_trusted: Vec::new(),
            learn_max: intune_common::learn::MAX_LEARNED,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PathsConfig {
    pub state_dir: PathBuf,
    pub bpffs_dir: PathBuf,
    pub control_socket: PathBuf,
}

impl Default for PathsConfig {
    fn default() -> Self {
        PathsConfig {
            state_dir: DEFAULT_STATE_DIR.into(),
            bpffs_dir: DEFAULT_BPFFS_DIR.into(),
            control_socket: crate::daemon::control::DEFAULT_SOCKET.into(),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `ADDR:PORT` to serve Prometheus metrics on; empty = off.
    #[serde(deserialize_with = "listen")]
    pub listen: Option<SocketAddr>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// Remove the filter when the daemon stops. Off: a gateway must not open up because a
    /// daemon stopped.
    pub detach_on_stop: bool,
    /// How often the hit-counter table is printed.
    #[serde(with = "humantime_serde")]
    pub counters_interval: Duration,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            detach_on_stop: false,
            counters_interval: Duration::from_secs(5),
        }
    }
}

impl Config {
    /// Parses `text` read from `path`: errors name the key and the line.
    pub fn parse(text: &str, path: &std::path::Path) -> Result<Config, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let config: Config = toml::from_str(text).map_err(|e| invalid(describe(&e, text)))?;
        config.validate().map_err(invalid)?;
        Ok(config)
    }

    pub fn read(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Checks what serde cannot: shares, ranges, names.
    fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.sources.max_shrink) {
            return Err(format!(
                "sources.max_shrink = {} is not a share between 0 and 1",
                self.sources.max_shrink
            ));
        }
        if self.dns.min_ttl > self.dns.max_ttl {
            return Err("dns.min_ttl is longer than dns.max_ttl".into());
        }
        if self.dns.rate == 0 {
            return Err("dns.rate must be at least 1".into());
        }
        for (i, iface) in self.interfaces.iter().enumerate() {
            if iface.name.is_empty() || iface.name.contains([':', '/', ' ']) {
                return Err(format!(
                    "interface[{i}].name = {:?} is not an interface name",
                    iface.name
                ));
            }
        }
        Ok(())
    }
}

/// Category names, checked as they are read (the error gets the key's line).
fn categories<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Category>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|t| {
            parse_category(t)
                .map_err(|e| serde::de::Error::custom(format!("sources.categories: {e}")))
        })
        .collect()
}

fn resolvers<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<SocketAddr>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|t| {
            parse_resolver(t).map_err(|e| serde::de::Error::custom(format!("dns.resolvers: {e}")))
        })
        .collect()
}

/// `ADDR:PORT`, or "" for off.
fn listen<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    match String::deserialize(d)?.as_str() {
        "" => Ok(None),
        text => text.parse().map(Some).map_err(|_| {
            serde::de::Error::custom(format!("metrics.listen = {text:?} is not ADDR:PORT"))
        }),
    }
}

/// The toml error with its line number and the key it is about.
fn describe(e: &toml::de::Error, text: &str) -> String {
    let line = e.span().map(|s| {
        text.as_bytes()[..s.start.min(text.len())]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    });
    let message = e.message().trim_end();
    match line {
        Some(line) => format!("line {line}: {message}"),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, std::path::Path::new("c.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn an_empty_file_is_the_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
    }

    #[test]
    fn the_documented_keys_parse() {
        let c = parse(
            r#"
[[interface]]
name = "eth1"
direction = "src"
xdp_mode = "generic"

[policy]
mode = "enforce"
dns_resolvers = ["192.0.2.53"]

[sources]
builtin = true
service = false
service_url = "http://127.0.0.1:8080"
instance = "USGovDoD"
service_areas = ["MEM"]
files = ["/etc/intune-ctl/extra.json"]
exclude = ["203.0.113.0/24", "bad.example"]

[dns]
resolvers = ["127.0.0.1:5353"]
min_ttl = "10s"
max_ttl = "30m"
grace = "5m"

[paths]
state_dir = "/tmp/s"
bpffs_dir = "/sys/fs/bpf/x"

[metrics]
listen = "127.0.0.1:9469"
"#,
        )
        .unwrap();
        assert_eq!(c.interfaces[0].direction, Some(Direction::Src));
        assert_eq!(c.interfaces[0].xdp_mode, XdpChoice::Generic);
        assert_eq!(c.policy.mode, Mode::Enforce);
        assert_eq!(c.sources.instance, Instance::UsGovDod);
        assert_eq!(c.dns.grace, Duration::from_secs(300));
        assert_eq!(c.paths.bpffs_dir, PathBuf::from("/sys/fs/bpf/x"));
    }

    #[test]
    fn errors_name_the_key_and_line() {
        let e = parse("[policy]\nmode = \"monitor\"\nmood = 1\n").unwrap_err();
        assert!(e.contains("line 3") && e.contains("mood"), "{e}");
        let e = parse("[policy]\nmode = \"lax\"\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("lax"), "{e}");
        let e = parse("[dns]\ngrace = \"ten minutes\"\n").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        let e = parse("[sources]\nmax_shrink = 2.0\n").unwrap_err();
        assert!(e.contains("sources.max_shrink"), "{e}");
        let e = parse("[metrics]\nlisten = \"localhost\"\n").unwrap_err();
        assert!(e.contains("metrics.listen"), "{e}");
    }

    #[test]
    fn policy_allow_tables_parse_and_bad_ones_are_named() {
        let c = parse(
            "[policy]\nallow_local = false\ndhcp_servers = [\"192.0.2.67\"]\n\n\
             [[policy.allow]]\nprefix = \"192.0.2.160/27\"\nprotocol = \"tcp\"\nports = \"22, 8000-8010\"\n\n\
             [[policy.allow]]\nprefix = \"2001:db8:aaaa::/48\"\nprotocol = \"any\"\n",
        )
        .unwrap();
        assert!(!c.policy.allow_local);
        assert_eq!(c.policy.allow.len(), 2);
        assert_eq!(c.policy.allow[0].ports, vec![(22, 22), (8000, 8010)]);
        assert!(parse("").unwrap().policy.allow_local, "on by default");
        let e = parse(
            "[[policy.allow]]\nprefix = \"192.0.2.0/24\"\nprotocol = \"tcp\"\nports = \"22-\"\n",
        )
        .unwrap_err();
        assert!(
            e.contains("policy.allow[0].ports") && e.contains("line"),
            "{e}"
        );
        let e = parse(
            "[[policy.allow]]\nprefix = \"192.0.2.0/24\"\nprotocol = \"any\"\nports = \"22\"\n",
        )
        .unwrap_err();
        assert!(e.contains("takes no ports"), "{e}");
        let e =
            parse("[[policy.allow]]\nprefix = \"192.0.2.0/33\"\nprotocol = \"tcp\"\n").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        let e = parse("[[policy.allow]]\nprefix = \"192.0.2.0/24\"\nprotocol = \"sctp\"\n")
            .unwrap_err();
        assert!(e.contains("sctp"), "{e}");
    }
}
