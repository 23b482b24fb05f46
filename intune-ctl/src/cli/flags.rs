//! The flags several commands share, each applied over the one field of [`Settings`] it
//! overrides. A flag is `None` (or empty, or false) unless typed: the defaults live in
//! `Settings` alone, and a renamed flag cannot silently lose to the file.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use crate::{
    datapath::XdpChoice,
    ruleset::policy::{Direction, Mode},
    settings::{Interface, Settings, parse_category, parse_resolver},
    sources::endpoints::{Category, schema::Region, service::Instance},
};

/// Sets `$field` to the flag's value when the flag was given.
macro_rules! over {
    ($flag:expr => $field:expr) => {
        if let Some(v) = &$flag {
            $field = v.clone();
        }
    };
    (vec $flag:expr => $field:expr) => {
        if !$flag.is_empty() {
            $field = $flag.clone();
        }
    };
}

/// Where the settings and the daemon's files are: every command that reads what the daemon
/// runs takes these, and finds the rest in the config file.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct PathFlags {
    /// The config file (default: /etc/intune-ctl/config.toml when it exists); flags given
    /// here override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where the program, its maps and links are pinned [config: paths.bpffs_dir].
    #[arg(long, alias = "bpffs", value_name = "DIR")]
    pub bpffs_dir: Option<PathBuf>,
    /// The state directory: recorded rules, caches, changes [config: paths.state_dir].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// The daemon's control socket [config: paths.control_socket].
    #[arg(long, value_name = "PATH")]
    pub control_socket: Option<PathBuf>,
}

impl PathFlags {
    /// The config file with these paths over it.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let mut s = Settings::load(self.config.as_deref())?;
        self.apply(&mut s);
        Ok(s)
    }

    pub fn apply(&self, s: &mut Settings) {
        over!(self.bpffs_dir => s.paths.bpffs_dir);
        over!(self.state_dir => s.paths.state_dir);
        over!(self.control_socket => s.paths.control_socket);
    }
}

/// Which endpoint sets make the rule set (the web service's list is added by [`ServiceFlags`]).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct RuleFlags {
    /// Extra endpoint sets, in the Microsoft 365 endpoint web service's JSON schema, added to
    /// the built-in list (repeatable) [config: sources.files].
    #[arg(long = "endpoints", value_name = "FILE")]
    pub endpoints: Vec<PathBuf>,
    /// Leave the built-in list out [config: sources.builtin = false].
    #[arg(long)]
    pub no_builtin: bool,
    /// A prefix or host name never to allow (repeatable) [config: sources.exclude].
    #[arg(long = "exclude", value_name = "PREFIX|NAME")]
    pub exclude: Vec<String>,
    /// Also allow the port-only sets for any address (Delivery Optimization peering: TCP 7680,
    /// UDP 3544) [config: policy.peer_ports].
    #[arg(long)]
    pub peer_ports: bool,
    /// The tenant's region (its location in the Intune admin center): the built-in list's
    /// per-region names (Win32 and script CDNs, macOS sidecar, device health attestation,
    /// Remote Help) of the other regions are left out [config: sources.region; default all].
    #[arg(long, value_enum)]
    pub region: Option<Region>,
    /// An endpoint set left out, whatever its source (repeatable; e.g. 1030, Apple's push
    /// service with all of 17.0.0.0/8) [config: sources.skip_sets].
    #[arg(long = "skip-set", value_name = "ID")]
    pub skip_sets: Vec<u32>,
}

impl RuleFlags {
    pub fn apply(&self, s: &mut Settings) {
        over!(vec self.endpoints => s.sources.files);
        if self.no_builtin {
            s.sources.builtin = false;
        }
        over!(vec self.exclude => s.sources.exclude);
        if self.peer_ports {
            s.policy.peer_ports = true;
        }
        over!(self.region => s.sources.region);
        over!(vec self.skip_sets => s.sources.skip_sets);
    }

    /// Whether any flag shapes the rule set (then `list` shows what they make).
    pub fn any(&self) -> bool {
        !self.endpoints.is_empty()
            || self.no_builtin
            || !self.exclude.is_empty()
            || self.peer_ports
            || self.region.is_some()
            || !self.skip_sets.is_empty()
    }
}

/// The Microsoft 365 endpoint web service: where, what, how often.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ServiceFlags {
    /// Do not use the endpoint web service [config: sources.service = false].
    #[arg(long)]
    pub no_service: bool,
    /// [config: sources.service_url]
    #[arg(long, value_name = "URL")]
    pub service_url: Option<String>,
    /// [config: sources.instance; default Worldwide]
    #[arg(long, value_enum)]
    pub instance: Option<Instance>,
    /// Service areas to ask for (repeatable) [config: sources.service_areas; default MEM, Common].
    #[arg(long = "service-area", value_name = "AREA")]
    pub service_areas: Vec<String>,
    /// Common sets to keep (repeatable) [config: sources.common_sets; default the article's
    /// Intune dependencies].
    #[arg(long = "common-set", value_name = "ID")]
    pub common_sets: Vec<u32>,
    /// Ask for IPv4 prefixes only [config: sources.no_ipv6].
    #[arg(long)]
    pub no_ipv6: bool,
    /// Keep only sets of this category (repeatable): Optimize, Allow, Default
    /// [config: sources.categories].
    #[arg(long = "category", value_name = "CATEGORY", value_parser = parse_category)]
    pub categories: Vec<Category>,
    /// Keep only sets the service marks required [config: sources.required_only].
    #[arg(long)]
    pub required_only: bool,
    /// Seconds between version checks; at least 3600 against the real service
    /// [config: sources.refresh_interval; default 1h].
    #[arg(long, value_name = "SECONDS")]
    pub refresh_interval: Option<u64>,
    /// Share of the service's prefixes a new list may remove before it is rejected
    /// [config: sources.max_shrink; default 0.5].
    #[arg(long, value_name = "SHARE")]
    pub max_shrink: Option<f64>,
    /// Seconds a request may take, and to wait for a connection (a third of it)
    /// [config: sources.service_timeout; default 30].
    #[arg(long, value_name = "SECONDS")]
    pub service_timeout: Option<u64>,
}

impl ServiceFlags {
    pub fn apply(&self, s: &mut Settings) {
        let src = &mut s.sources;
        if self.no_service {
            src.service = false;
        }
        over!(self.service_url => src.service_url);
        over!(self.instance => src.instance);
        over!(vec self.service_areas => src.service_areas);
        over!(vec self.common_sets => src.common_sets);
        if self.no_ipv6 {
            src.no_ipv6 = true;
        }
        over!(vec self.categories => src.categories);
        if self.required_only {
            src.required_only = true;
        }
        over!(self.refresh_interval.map(Duration::from_secs) => src.refresh_interval);
        over!(self.max_shrink => src.max_shrink);
        over!(self.service_timeout.map(Duration::from_secs) => src.service_timeout);
    }
}

/// Resolving the listed names: where to ask, how often, how long addresses stay.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct DnsFlags {
    /// Resolver to look the listed names up with (repeatable; default: the system's, from
    /// /etc/resolv.conf). Not the same as --dns-resolver, which says where devices may send
    /// DNS [config: dns.resolvers].
    #[arg(long = "resolver", value_name = "ADDR:PORT", value_parser = parse_resolver)]
    pub resolvers: Vec<SocketAddr>,
    /// Do not resolve the listed names: match the listed prefixes only
    /// [config: dns.enabled = false].
    #[arg(long)]
    pub no_resolve: bool,
    /// Shortest time between lookups of a name, whatever its TTL [config: dns.min_ttl; 30s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub dns_min_ttl: Option<Duration>,
    /// Longest time between lookups of a name, whatever its TTL [config: dns.max_ttl; 1h].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub dns_max_ttl: Option<Duration>,
    /// How long an address stays after the TTL of the last answer that held it
    /// [config: dns.grace; 10m].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub dns_grace: Option<Duration>,
    /// How long one query waits for an answer [config: dns.timeout; 3s].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub dns_timeout: Option<Duration>,
    /// Lookups started per second at most [config: dns.rate; 50].
    #[arg(long, value_name = "N")]
    pub dns_rate: Option<u32>,
    /// Learn the addresses of endpoint names, wildcards too, from the DNS answers leaving
    /// through the filtered interfaces (reads device traffic: off unless asked)
    /// [config: dns.learn_from_dns].
    #[arg(long)]
    pub learn_from_dns: bool,
    /// Learn only from answers of this resolver (repeatable; default: the --dns-resolver
    /// ones; learning needs one or the other) [config: dns.learn_trusted].
    #[arg(long, value_name = "ADDR")]
    pub learn_trusted: Vec<IpAddr>,
    /// Learned addresses kept at most; the least recently seen goes first
    /// [config: dns.learn_max].
    #[arg(long, value_name = "N")]
    pub learn_max: Option<u32>,
}

impl DnsFlags {
    pub fn apply(&self, s: &mut Settings) {
        let d = &mut s.dns;
        over!(vec self.resolvers => d.resolvers);
        if self.no_resolve {
            d.enabled = false;
        }
        over!(self.dns_min_ttl => d.min_ttl);
        over!(self.dns_max_ttl => d.max_ttl);
        over!(self.dns_grace => d.grace);
        over!(self.dns_timeout => d.timeout);
        over!(self.dns_rate => d.rate);
        if self.learn_from_dns {
            d.learn_from_dns = true;
        }
        over!(vec self.learn_trusted => d.learn_trusted);
        over!(self.learn_max => d.learn_max);
    }
}

/// What the filter does with what it matched.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct PolicyFlags {
    /// monitor: pass everything and count; enforce: drop what is neither Intune nor
    /// infrastructure [config: policy.mode; default monitor].
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// Which address is matched: dst (traffic from devices), src (return traffic) or both
    /// [config: policy.direction; default dst].
    #[arg(long, value_enum)]
    pub direction: Option<Direction>,
    /// In enforce mode, allow DNS only to this resolver and answers only from it (repeatable;
    /// default: any resolver, which makes DNS a way around enforce mode)
    /// [config: policy.dns_resolvers].
    #[arg(long = "dns-resolver", value_name = "ADDRESS")]
    pub dns_resolvers: Vec<IpAddr>,
    /// A DHCP server or relay DHCP may go to besides the broadcast (repeatable)
    /// [config: policy.dhcp_servers].
    #[arg(long = "dhcp-server", value_name = "ADDRESS")]
    pub dhcp_servers: Vec<IpAddr>,
    /// Filter the gateway's own traffic, link-local multicast and broadcast like any other
    /// (by default they pass as `local`) [config: policy.allow_local = false].
    #[arg(long)]
    pub no_local: bool,
    /// What leaves every list (a prefix a refresh removed, an address out of DNS, an expired
    /// learned address) still passes for its connections until no packet came for this long;
    /// 0 removes it at once [config: policy.idle_timeout; default 1h].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub idle_timeout: Option<Duration>,
}

impl PolicyFlags {
    pub fn apply(&self, s: &mut Settings) {
        let p = &mut s.policy;
        over!(self.mode => p.mode);
        over!(self.direction => p.direction);
        over!(vec self.dns_resolvers => p.dns_resolvers);
        over!(vec self.dhcp_servers => p.dhcp_servers);
        if self.no_local {
            p.allow_local = false;
        }
        over!(self.idle_timeout => p.idle_timeout);
    }
}

/// The daemon's own flags.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct DaemonFlags {
    /// Interface to attach to (repeatable); `IF:DIR` gives it its own direction (dst, src,
    /// both) [config: [[interface]]].
    #[arg(long = "iface", value_name = "IF[:DIR]", value_parser = parse_iface)]
    pub ifaces: Vec<Interface>,
    /// auto: native where the driver has it, else generic [config: daemon.xdp_mode].
    #[arg(long, value_enum)]
    pub xdp_mode: Option<XdpChoice>,
    /// Seconds between hit-counter tables [config: daemon.counters_interval; default 5].
    #[arg(long, value_name = "SECONDS")]
    pub interval: Option<u64>,
    /// Serve Prometheus metrics on this address [config: metrics.listen].
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_listen: Option<SocketAddr>,
    /// Remove the filter when the daemon stops (by default it stays attached)
    /// [config: daemon.detach_on_stop].
    #[arg(long)]
    pub detach_on_stop: bool,
}

impl DaemonFlags {
    pub fn apply(&self, s: &mut Settings) {
        over!(vec self.ifaces => s.interfaces);
        over!(self.xdp_mode => s.daemon.xdp_mode);
        over!(self.interval.map(Duration::from_secs) => s.daemon.counters_interval);
        if self.metrics_listen.is_some() {
            s.metrics.listen = self.metrics_listen;
        }
        if self.detach_on_stop {
            s.daemon.detach_on_stop = true;
        }
    }
}

/// `IF` or `IF:DIR`: an interface name cannot hold a colon.
fn parse_iface(text: &str) -> Result<Interface, String> {
    let (name, direction) = match text.split_once(':') {
        None => (text, None),
        Some((name, dir)) => {
            let dir = <Direction as clap::ValueEnum>::from_str(dir, true)
                .map_err(|_| format!("{dir:?} is not a direction (dst, src, both)"))?;
            (name, Some(dir))
        }
    };
    Ok(Interface {
        name: name.to_string(),
        direction,
        xdp_mode: None,
    })
}

/// Checks the settings once the flags are over them.
pub fn validated(s: Settings) -> anyhow::Result<Settings> {
    s.validate().map_err(anyhow::Error::msg)?;
    Ok(s)
}
