//! Options several subcommands share.

use std::path::PathBuf;

use anyhow::Context as _;

use std::time::Duration;

use ipnet::IpNet;

use crate::{
    datapath::{Capacity, Datapath},
    sources::endpoints::{
        self, Category, EndpointSet,
        builtin::builtin,
        merge::{self, Selection},
        service::{self, Instance, ServiceClient, ServiceConfig},
    },
    ruleset::policy::{Direction, Mode, Policy},
    sources::refresh::Refresher,
    sources::resolve::{Dns, DnsConfig, ScheduleConfig, Watcher},
    ruleset::rules::{RuleSet, RuleSetOptions},
    daemon::state::{DEFAULT_STATE_DIR, StateDir},
};

/// Which endpoint sets make the rule set (the web service's list is added by [`ServiceArgs`]).
#[derive(Clone, Debug, Default, PartialEq, clap::Args)]
pub struct RuleArgs {
    /// Extra endpoint sets, in the Microsoft 365 endpoint web service's JSON schema, added to
    /// the built-in list (repeatable).
    #[arg(long = "endpoints", value_name = "FILE")]
    pub endpoints: Vec<PathBuf>,
    /// Leave the built-in list out.
    #[arg(long)]
    pub no_builtin: bool,
    /// A prefix or host name never to allow (repeatable).
    #[arg(long = "exclude", value_name = "PREFIX|NAME")]
    pub exclude: Vec<String>,
    /// Also allow the port-only sets for any address (Delivery Optimization peering: TCP 7680,
    /// UDP 3544).
    #[arg(long)]
    pub peer_ports: bool,
    /// The tenant's region (its location in the Intune admin center): the built-in list's
    /// per-region names (Win32 and script CDNs, macOS sidecar, device health attestation,
    /// Remote Help) of the other regions are left out.
    #[arg(long, value_enum, default_value_t)]
    pub region: crate::sources::endpoints::schema::Region,
    /// An endpoint set left out, whatever its source (repeatable; e.g. 1030, Apple's push
    /// service with all of 17.0.0.0/8).
    #[arg(long = "skip-set", value_name = "ID")]
    pub skip_sets: Vec<u32>,
}

impl RuleArgs {
    /// The sources other than the service, read and validated.
    pub fn selection(&self) -> anyhow::Result<Selection> {
        let mut files: Vec<EndpointSet> = Vec::new();
        for file in &self.endpoints {
            files.extend(endpoints::read_file(file)?);
        }
        let exclude_names = self
            .exclude
            .iter()
            .filter(|e| e.parse::<IpNet>().is_err())
            .cloned()
            .collect();
        Ok(Selection {
            builtin: !self.no_builtin,
            files,
            exclude_names,
            region: self.region,
            skip_sets: self.skip_sets.clone(),
        })
    }

    pub fn options(&self) -> anyhow::Result<RuleSetOptions> {
        let mut exclude = Vec::new();
        for e in &self.exclude {
            match e.parse::<IpNet>() {
                Ok(net) => exclude.push(net.trunc()),
                Err(_) if e.contains('/') => {
                    anyhow::bail!("--exclude {e:?} is neither a prefix nor a host name")
                }
                Err(_) => {}
            }
        }
        Ok(RuleSetOptions {
            port_only: self.peer_ports,
            exclude,
            // The program is loaded with room for what the rule set needs (see
            // `Capacity::for_prefixes`): as many rules as the IPv4 trie can hold.
            max_rules: intune_common::maps::MAX_PREFIXES_V4 as usize,
        })
    }

    /// The effective endpoint sets (with `service`'s) and the rule set built from them.
    pub fn build(
        &self,
        service: &[EndpointSet],
        previous: Option<&RuleSet>,
    ) -> anyhow::Result<(Vec<EndpointSet>, RuleSet)> {
        self.build_resolved(service, None, previous)
    }

    /// The effective endpoint sets with `service`'s.
    pub fn effective(&self, service: &[EndpointSet]) -> anyhow::Result<Vec<EndpointSet>> {
        Ok(merge::effective(&self.selection()?, &builtin()?, service))
    }

    /// As [`RuleArgs::build`], with the addresses the watcher holds for the listed names.
    pub fn build_resolved(
        &self,
        service: &[EndpointSet],
        watcher: Option<&Watcher>,
        previous: Option<&RuleSet>,
    ) -> anyhow::Result<(Vec<EndpointSet>, RuleSet)> {
        let sets = self.effective(service)?;
        let resolved = watcher.map(|w| w.resolved_sets(&sets)).unwrap_or_default();
        let all = [&sets[..], &resolved[..]].concat();
        let rules =
            RuleSet::build(&all, &self.options()?, previous).context("building the rule set")?;
        Ok((sets, rules))
    }
}

/// The Microsoft 365 endpoint web service: where, what, how often.
#[derive(Clone, Debug, PartialEq, clap::Args)]
pub struct ServiceArgs {
    /// Do not use the endpoint web service.
    #[arg(long)]
    pub no_service: bool,
    #[arg(long, default_value = service::DEFAULT_URL, value_name = "URL")]
    pub service_url: String,
    #[arg(long, value_enum, default_value_t)]
    pub instance: Instance,
    /// Service areas to ask for (repeatable).
    #[arg(long = "service-area", value_name = "AREA", default_values_t = ["MEM".to_string(), "Common".to_string()])]
    pub service_areas: Vec<String>,
    /// Common sets to keep: the article's Intune dependencies by default (repeatable).
    #[arg(long = "common-set", value_name = "ID", default_values_t = [56u32, 59, 97, 150])]
    pub common_sets: Vec<u32>,
    /// Ask for IPv4 prefixes only.
    #[arg(long)]
    pub no_ipv6: bool,
    /// Keep only sets of this category (repeatable): Optimize, Allow, Default.
    #[arg(long = "category", value_name = "CATEGORY", value_parser = parse_category)]
    pub categories: Vec<Category>,
    /// Keep only sets the service marks required.
    #[arg(long)]
    pub required_only: bool,
    /// Where the client request id, the last-known-good cache and the change record live.
    #[arg(long, default_value = DEFAULT_STATE_DIR, value_name = "DIR")]
    pub state_dir: PathBuf,
    /// Seconds between version checks; at least 3600 against the real service.
    #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
    pub refresh_interval: u64,
    /// Share of the service's prefixes a new list may remove before it is rejected.
    #[arg(long, default_value_t = 0.5, value_name = "SHARE")]
    pub max_shrink: f64,
    /// Seconds a request may take, and to wait for a connection (a third of it).
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub service_timeout: u64,
}

pub fn parse_category(text: &str) -> Result<Category, String> {
    match text.to_ascii_lowercase().as_str() {
        "optimize" => Ok(Category::Optimize),
        "allow" => Ok(Category::Allow),
        "default" => Ok(Category::Default),
        _ => Err(format!("{text:?} is not Optimize, Allow or Default")),
    }
}

impl ServiceArgs {
    pub fn config(&self) -> anyhow::Result<ServiceConfig> {
        if !(0.0..=1.0).contains(&self.max_shrink) {
            anyhow::bail!(
                "--max-shrink {} is not a share between 0 and 1",
                self.max_shrink
            );
        }
        let cfg = ServiceConfig {
            base_url: self.service_url.clone(),
            instance: self.instance,
            service_areas: self.service_areas.clone(),
            common_sets: self.common_sets.clone(),
            no_ipv6: self.no_ipv6,
            categories: self.categories.clone(),
            required_only: self.required_only,
            connect_timeout: Duration::from_secs(self.service_timeout.div_ceil(3).max(1)),
            request_timeout: Duration::from_secs(self.service_timeout.max(1)),
            ..ServiceConfig::default()
        };
        if cfg.is_default_url() && self.interval() < service::MIN_INTERVAL {
            anyhow::bail!(
                "--refresh-interval {} is below the hour the endpoint web service allows; shorter intervals are for a --service-url of your own",
                self.refresh_interval
            );
        }
        Ok(cfg)
    }

    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.refresh_interval.max(1))
    }

    /// The refresher (from the cache), or `None` with `--no-service`.
    pub fn refresher(&self) -> anyhow::Result<Option<Refresher>> {
        if self.no_service {
            return Ok(None);
        }
        let cfg = self.config()?;
        let state = StateDir::open(&self.state_dir)?;
        let client = ServiceClient::new(cfg, state.client_request_id()?)?;
        Ok(Some(Refresher::new(client, state, self.max_shrink)))
    }
}

/// Resolving the listed names: where to ask, how often, how long addresses stay.
#[derive(Clone, Debug, PartialEq, clap::Args)]
pub struct DnsArgs {
    /// Resolver to look the listed names up with (repeatable; default: the system's, from
    /// /etc/resolv.conf). Not the same as --dns-resolver, which says where devices may send DNS.
    #[arg(long = "resolver", value_name = "ADDR:PORT", value_parser = parse_resolver)]
    pub resolvers: Vec<std::net::SocketAddr>,
    /// Do not resolve the listed names: match the listed prefixes only.
    #[arg(long)]
    pub no_resolve: bool,
    /// Shortest time between lookups of a name, whatever its TTL.
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub dns_min_ttl: Duration,
    /// Longest time between lookups of a name, whatever its TTL.
    #[arg(long, default_value = "1h", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub dns_max_ttl: Duration,
    /// How long an address stays after the TTL of the last answer that held it.
    #[arg(long, default_value = "10m", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub dns_grace: Duration,
    /// How long one query waits for an answer.
    #[arg(long, default_value = "3s", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub dns_timeout: Duration,
    /// Lookups started per second at most.
    #[arg(long, default_value_t = 50, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub dns_rate: u32,
    /// Learn the addresses of endpoint names, wildcards too, from the DNS answers leaving
    /// through the filtered interfaces (reads device traffic: off unless asked).
    #[arg(long)]
    pub learn_from_dns: bool,
    /// Learn only from answers of this resolver (repeatable; default: the --dns-resolver
    /// ones; learning needs one or the other).
    #[arg(long, value_name = "ADDR")]
    pub learn_trusted: Vec<std::net::IpAddr>,
    /// Learned addresses kept at most; the least recently seen goes first.
    #[arg(long, default_value_t = intune_common::learn::MAX_LEARNED, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    pub learn_max: u32,
}

/// `ADDR:PORT`, or a bare address for port 53.
pub fn parse_resolver(text: &str) -> Result<std::net::SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    text.parse::<std::net::IpAddr>()
        .map(|ip| std::net::SocketAddr::new(ip, 53))
        .map_err(|_| format!("{text:?} is not ADDR:PORT or an address"))
}

impl DnsArgs {
    /// The watcher, or `None` with `--no-resolve`.
    pub fn watcher(&self) -> anyhow::Result<Option<Watcher>> {
        if self.no_resolve {
            return Ok(None);
        }
        if self.dns_min_ttl > self.dns_max_ttl {
            anyhow::bail!(
                "--dns-min-ttl {} is longer than --dns-max-ttl {}",
                humantime::format_duration(self.dns_min_ttl),
                humantime::format_duration(self.dns_max_ttl)
            );
        }
        let dns = Dns::new(&DnsConfig {
            servers: self.resolvers.clone(),
            timeout: self.dns_timeout.max(Duration::from_millis(100)),
            ..DnsConfig::default()
        })?;
        Ok(Some(Watcher::new(
            dns,
            ScheduleConfig {
                min_ttl: self.dns_min_ttl,
                max_ttl: self.dns_max_ttl,
                grace: self.dns_grace,
                max_per_second: self.dns_rate,
                max_backoff: Duration::from_secs(300).clamp(self.dns_min_ttl, self.dns_max_ttl),
            },
        )))
    }
}

/// What the filter does with what it matched.
#[derive(Clone, Debug, Default, PartialEq, clap::Args)]
pub struct PolicyArgs {
    /// monitor: pass everything and count; enforce: drop what is neither Intune nor infrastructure.
    #[arg(long, value_enum, default_value_t)]
    pub mode: Mode,
    /// Which address is matched: dst (traffic from devices), src (return traffic) or both.
    #[arg(long, value_enum, default_value_t)]
    pub direction: Direction,
    /// In enforce mode, allow DNS only to this resolver and answers only from it (repeatable;
    /// default: any resolver, which makes DNS a way around enforce mode).
    #[arg(long = "dns-resolver", value_name = "ADDRESS")]
    pub dns_resolvers: Vec<std::net::IpAddr>,
    /// A DHCP server or relay DHCP may go to besides the broadcast (repeatable).
    #[arg(long = "dhcp-server", value_name = "ADDRESS")]
    pub dhcp_servers: Vec<std::net::IpAddr>,
    /// Filter the gateway's own traffic, link-local multicast and broadcast like any other
    /// (by default they pass as `local`).
    #[arg(long)]
    pub no_local: bool,
    /// `[[policy.allow]]` services (config file only).
    #[arg(skip)]
    pub allow: Vec<crate::ruleset::policy::AllowRule>,
    /// What leaves every list (a prefix a refresh removed, an address out of DNS, an expired
    /// learned address) still passes for its connections until no packet came for this long;
    /// 0 removes it at once.
    #[arg(long, default_value = "1h", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,
}

impl PolicyArgs {
    pub fn policy(&self) -> Policy {
        Policy {
            mode: self.mode,
            direction: self.direction,
            iface_directions: Vec::new(),
            dns_resolvers: self.dns_resolvers.clone(),
            dhcp_servers: self.dhcp_servers.clone(),
            allow_local: !self.no_local,
            allow: self.allow.clone(),
        }
    }

    /// The drain's idle timeout, `None` when what leaves leaves at once.
    pub fn drain_idle(&self) -> Option<Duration> {
        (!self.idle_timeout.is_zero()).then_some(self.idle_timeout)
    }
}

/// Loads the program with room for `rules` and fills its maps.
pub fn load_datapath(rules: &RuleSet, policy: &Policy, trace: bool) -> anyhow::Result<Datapath> {
    let mut dp = Datapath::load(Capacity::for_prefixes(rules.index_bound()))
        .context("loading the XDP program")?;
    dp.install(rules, policy, trace)
        .context("filling the program's maps")?;
    Ok(dp)
}
