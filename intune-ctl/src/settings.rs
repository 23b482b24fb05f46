//! The one settings type: the TOML config (`/etc/intune-ctl/config.toml`) as read, with each
//! default written once here (an empty file works), and the command line's flags applied over
//! it by `cli::flags`. An unknown key or a bad value is an error naming the key and its line;
//! what only the whole can tell (after the flags) is checked by [`Settings::validate`]. The
//! library takes a `Settings`, never a command-line type.

use std::{
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

use crate::{
    daemon::state::DEFAULT_STATE_DIR,
    datapath::XdpChoice,
    ruleset::policy::{AllowProtocol, AllowRule, Direction, Mode, allow_entries},
    sources::endpoints::{
        Category, Ports,
        ports::PortRanges,
        schema::Region,
        service::{Instance, MIN_INTERVAL, ServiceConfig},
    },
};

pub const DEFAULT_CONFIG: &str = "/etc/intune-ctl/config.toml";
pub const DEFAULT_BPFFS_DIR: &str = "/sys/fs/bpf/intune";

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
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
pub struct Settings {
    #[serde(rename = "interface")]
    pub interfaces: Vec<Interface>,
    pub policy: PolicySettings,
    pub sources: SourcesSettings,
    pub dns: DnsSettings,
    pub paths: PathsSettings,
    pub metrics: MetricsSettings,
    pub daemon: DaemonSettings,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Interface {
    pub name: String,
    /// The policy's direction when absent.
    #[serde(default)]
    pub direction: Option<Direction>,
    /// `[daemon] xdp_mode` when absent.
    #[serde(default)]
    pub xdp_mode: Option<XdpChoice>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PolicySettings {
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

impl Default for PolicySettings {
    fn default() -> Self {
        PolicySettings {
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
pub struct SourcesSettings {
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
    /// Azure service tags to take as endpoint sets.
    pub service_tags: Option<ServiceTagsSettings>,
}

/// `[sources] service_tags = { file = "..." | url = "...", tags = [...], tcp_ports = "80,443" }`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServiceTagsSettings {
    /// A `ServiceTags_Public_YYYYMMDD.json` as Microsoft publishes it, downloaded by the admin.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// Or where to download it (https), at most daily.
    #[serde(default)]
    pub url: Option<String>,
    /// The tags taken, each an endpoint set (from 9000 on, in this order).
    pub tags: Vec<String>,
    #[serde(default = "default_tag_tcp_ports")]
    pub tcp_ports: String,
    #[serde(default)]
    pub udp_ports: String,
}

fn default_tag_tcp_ports() -> String {
    "80,443".into()
}

impl ServiceTagsSettings {
    /// The ports the tags' prefixes allow.
    pub fn ports(&self) -> Result<Ports, String> {
        let parse = |text: &str, key: &str| {
            PortRanges::parse(text).map_err(|e| format!("sources.service_tags.{key}: {e}"))
        };
        Ports::new(
            parse(&self.tcp_ports, "tcp_ports")?,
            parse(&self.udp_ports, "udp_ports")?,
        )
        .map_err(|e| format!("sources.service_tags: {e}"))
    }
}

impl Default for SourcesSettings {
    /// The web service's settings default as the client's do.
    fn default() -> Self {
        let service = ServiceConfig::default();
        SourcesSettings {
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
            service_tags: None,
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DnsSettings {
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

impl Default for DnsSettings {
    fn default() -> Self {
        DnsSettings {
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
pub struct PathsSettings {
    pub state_dir: PathBuf,
    pub bpffs_dir: PathBuf,
    pub control_socket: PathBuf,
}

impl Default for PathsSettings {
    fn default() -> Self {
        PathsSettings {
            state_dir: DEFAULT_STATE_DIR.into(),
            bpffs_dir: DEFAULT_BPFFS_DIR.into(),
            control_socket: crate::daemon::control::DEFAULT_SOCKET.into(),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// `ADDR:PORT` to serve Prometheus metrics on; empty = off.
    #[serde(deserialize_with = "listen")]
    pub listen: Option<SocketAddr>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonSettings {
    /// Remove the filter when the daemon stops. Off: a gateway must not open up because a
    /// daemon stopped.
    pub detach_on_stop: bool,
    /// How often the hit-counter table is printed.
    #[serde(with = "humantime_serde")]
    pub counters_interval: Duration,
    /// How interfaces that name none attach: auto is native where the driver has it.
    pub xdp_mode: XdpChoice,
}

impl Default for DaemonSettings {
    fn default() -> Self {
        DaemonSettings {
            detach_on_stop: false,
            counters_interval: Duration::from_secs(5),
            xdp_mode: XdpChoice::Auto,
        }
    }
}

impl Settings {
    /// Parses `text` read from `path`: errors name the key and the line.
    pub fn parse(text: &str, path: &std::path::Path) -> Result<Settings, SettingsError> {
        let invalid = |message: String| SettingsError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let config: Settings = toml::from_str(text).map_err(|e| invalid(describe(&e, text)))?;
        config.validate().map_err(invalid)?;
        Ok(config)
    }

    pub fn read(path: &std::path::Path) -> Result<Settings, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Settings::parse(&text, path)
    }

    /// The settings of a command: `path` (`--config`), else the default file when it exists,
    /// else every default.
    pub fn load(path: Option<&Path>) -> Result<Settings, SettingsError> {
        match path {
            Some(path) => Settings::read(path),
            None if Path::new(DEFAULT_CONFIG).exists() => Settings::read(Path::new(DEFAULT_CONFIG)),
            None => Ok(Settings::default()),
        }
    }

    /// Checks what serde cannot: shares, ranges, names, and what holds only together. Run on
    /// the file as read and again once the flags are over it; messages name the key and its
    /// flag.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(t) = &self.sources.service_tags {
            match (&t.file, &t.url) {
                (None, None) => return Err("sources.service_tags needs a file or a url".into()),
                (Some(_), Some(_)) => {
                    return Err("sources.service_tags takes a file or a url, not both".into());
                }
                (None, Some(url)) => crate::sources::endpoints::service::check_scheme(url)
                    .map_err(|e| format!("sources.service_tags.url: {e}"))?,
                (Some(_), None) => {}
            }
            if t.tags.is_empty() {
                return Err("sources.service_tags.tags names no tag".into());
            }
            if t.ports()?.is_empty() {
                return Err("sources.service_tags: tcp_ports and udp_ports are both empty".into());
            }
        }
        if !(0.0..=1.0).contains(&self.sources.max_shrink) {
            return Err(format!(
                "--max-shrink {} is not a share between 0 and 1 (sources.max_shrink)",
                self.sources.max_shrink
            ));
        }
        if self.sources.service
            && self.sources.refresh_interval < MIN_INTERVAL
            && self.sources.service_url.trim_end_matches('/')
                == crate::sources::endpoints::service::DEFAULT_URL
        {
            return Err(format!(
                "--refresh-interval {} is below the hour the endpoint web service allows; shorter intervals are for a --service-url of your own (sources.refresh_interval = \"{}\", sources.service_url)",
                self.sources.refresh_interval.as_secs(),
                humantime::format_duration(self.sources.refresh_interval)
            ));
        }
        if self.sources.refresh_interval.is_zero() || self.sources.service_timeout.is_zero() {
            return Err(
                "sources.refresh_interval and service_timeout must be longer than 0".into(),
            );
        }
        if self.dns.min_ttl > self.dns.max_ttl {
            return Err(format!(
                "--dns-min-ttl {} is longer than --dns-max-ttl {} (dns.min_ttl, dns.max_ttl)",
                humantime::format_duration(self.dns.min_ttl),
                humantime::format_duration(self.dns.max_ttl)
            ));
        }
        if self.dns.rate == 0 {
            return Err("dns.rate (--dns-rate) must be at least 1".into());
        }
        if !(1..=1_048_576).contains(&self.dns.learn_max) {
            return Err(format!(
                "dns.learn_max (--learn-max) = {} is not between 1 and 1048576",
                self.dns.learn_max
            ));
        }
        if self.daemon.counters_interval.is_zero() {
            return Err("--interval 0 (daemon.counters_interval): the counter tables need at least a second".into());
        }
        for (i, iface) in self.interfaces.iter().enumerate() {
            // Linux's own rules (dev_valid_name): a name that cannot exist is an error, not
            // an interface waited for.
            let n = &iface.name;
            if n.is_empty()
                || n.len() > 15
                || n == "."
                || n == ".."
                || n.contains([':', '/'])
                || n.chars().any(char::is_whitespace)
            {
                return Err(format!(
                    "interface[{i}].name = {n:?} is not an interface name (1 to 15 bytes, no '/', ':' or spaces)"
                ));
            }
        }
        Ok(())
    }
}

impl Settings {
    /// The resolvers whose answers teach: `learn_trusted`, else the policy's `dns_resolvers`.
    /// With neither, any server a device asks could open any address to every device: learning
    /// is refused.
    pub fn trusted_resolvers(&self) -> Result<Vec<IpAddr>, String> {
        let trusted = if self.dns.learn_trusted.is_empty() {
            &self.policy.dns_resolvers
        } else {
            &self.dns.learn_trusted
        };
        if trusted.is_empty() {
            return Err(
                "learning from DNS needs the resolvers it may trust: set [dns] learn_trusted \
                 (--learn-trusted) or [policy] dns_resolvers (--dns-resolver); an answer from any \
                 other server could open any address to every device"
                    .into(),
            );
        }
        Ok(trusted.clone())
    }

    /// How the interface attaches.
    pub fn xdp_mode_of(&self, iface: &Interface) -> XdpChoice {
        iface.xdp_mode.unwrap_or(self.daemon.xdp_mode)
    }
}

impl SourcesSettings {
    /// Whether `other` asks the same of the web service (files and exclusions aside).
    pub fn same_service(&self, other: &SourcesSettings) -> bool {
        let key = |s: &SourcesSettings| {
            (
                s.service,
                s.service_url.clone(),
                s.instance,
                s.service_areas.clone(),
                s.common_sets.clone(),
                s.no_ipv6,
                s.categories.clone(),
                s.required_only,
                s.refresh_interval,
                s.max_shrink.to_bits(),
                s.service_timeout,
            )
        };
        key(self) == key(other)
    }
}

impl PolicySettings {
    /// The drain's idle timeout, `None` when what leaves leaves at once.
    pub fn drain_idle(&self) -> Option<Duration> {
        (!self.idle_timeout.is_zero()).then_some(self.idle_timeout)
    }
}

/// `--category` and `sources.categories`: Optimize, Allow or Default, any case.
pub fn parse_category(text: &str) -> Result<Category, String> {
    match text.to_ascii_lowercase().as_str() {
        "optimize" => Ok(Category::Optimize),
        "allow" => Ok(Category::Allow),
        "default" => Ok(Category::Default),
        _ => Err(format!("{text:?} is not Optimize, Allow or Default")),
    }
}

/// `ADDR:PORT`, or a bare address for port 53.
pub fn parse_resolver(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    text.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| format!("{text:?} is not ADDR:PORT or an address"))
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
#[expect(clippy::naive_bytecount, reason = "a config file is short")]
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

    fn parse(text: &str) -> Result<Settings, String> {
        Settings::parse(text, std::path::Path::new("c.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn an_empty_file_is_the_defaults() {
        assert_eq!(parse("").unwrap(), Settings::default());
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
        assert_eq!(c.interfaces[0].xdp_mode, Some(XdpChoice::Generic));
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
