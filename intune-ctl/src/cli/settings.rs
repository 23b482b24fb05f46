//! The daemon's settings: the config file, with the flags given on the command line on top.
//! A flag counts as given only when it was typed: clap's defaults never override the file.

use std::{path::Path, time::Duration};

use clap::parser::{ArgMatches, ValueSource};

use super::run::{IfaceSpec, RunArgs};
use crate::config::{Config, DEFAULT_CONFIG};

/// Which flags were typed on the command line.
pub struct Given<'a>(pub Option<&'a ArgMatches>);

impl Given<'_> {
    fn has(&self, id: &str) -> bool {
        self.0
            .and_then(|m| m.try_get_raw(id).ok().flatten().map(|_| m.value_source(id)))
            .flatten()
            == Some(ValueSource::CommandLine)
    }
}

impl RunArgs {
    /// The config this command reads: `--config`, else the default file when it exists, else
    /// none (every default).
    pub fn read_config(&self) -> anyhow::Result<Config> {
        match &self.config {
            Some(path) => Ok(Config::read(path)?),
            None if Path::new(DEFAULT_CONFIG).exists() => {
                Ok(Config::read(Path::new(DEFAULT_CONFIG))?)
            }
            None => Ok(Config::default()),
        }
    }

    /// These arguments with every setting not given on the command line taken from `config`.
    pub fn with_config(&self, config: &Config, given: &Given) -> RunArgs {
        let mut a = self.clone();
        let c = config;
        macro_rules! from_config {
            ($id:literal, $field:expr, $value:expr) => {
                if !given.has($id) {
                    $field = $value;
                }
            };
        }
        from_config!(
            "ifaces",
            a.ifaces,
            c.interfaces
                .iter()
                .map(|i| IfaceSpec {
                    name: i.name.clone(),
                    direction: i.direction,
                    xdp_mode: Some(i.xdp_mode),
                })
                .collect()
        );
        from_config!("endpoints", a.rules.endpoints, c.sources.files.clone());
        from_config!("no_builtin", a.rules.no_builtin, !c.sources.builtin);
        from_config!("exclude", a.rules.exclude, c.sources.exclude.clone());
        from_config!("region", a.rules.region, c.sources.region);
        from_config!("skip_sets", a.rules.skip_sets, c.sources.skip_sets.clone());
        from_config!("peer_ports", a.rules.peer_ports, c.policy.peer_ports);
        from_config!("no_service", a.service.no_service, !c.sources.service);
        from_config!(
            "service_url",
            a.service.service_url,
            c.sources.service_url.clone()
        );
        from_config!("instance", a.service.instance, c.sources.instance);
        from_config!(
            "service_areas",
            a.service.service_areas,
            c.sources.service_areas.clone()
        );
        from_config!(
            "common_sets",
            a.service.common_sets,
            c.sources.common_sets.clone()
        );
        from_config!("no_ipv6", a.service.no_ipv6, c.sources.no_ipv6);
        from_config!(
            "categories",
            a.service.categories,
            c.sources.categories.clone()
        );
        from_config!(
            "required_only",
            a.service.required_only,
            c.sources.required_only
        );
        from_config!("state_dir", a.service.state_dir, c.paths.state_dir.clone());
        from_config!(
            "refresh_interval",
            a.service.refresh_interval,
            c.sources.refresh_interval.as_secs()
        );
        from_config!("max_shrink", a.service.max_shrink, c.sources.max_shrink);
        from_config!(
            "service_timeout",
            a.service.service_timeout,
            c.sources.service_timeout.as_secs()
        );
        from_config!("resolvers", a.dns.resolvers, c.dns.resolvers.clone());
        from_config!("no_resolve", a.dns.no_resolve, !c.dns.enabled);
        from_config!("dns_min_ttl", a.dns.dns_min_ttl, c.dns.min_ttl);
        from_config!("dns_max_ttl", a.dns.dns_max_ttl, c.dns.max_ttl);
        from_config!("dns_grace", a.dns.dns_grace, c.dns.grace);
        from_config!("dns_timeout", a.dns.dns_timeout, c.dns.timeout);
        from_config!("dns_rate", a.dns.dns_rate, c.dns.rate);
        from_config!("learn_from_dns", a.dns.learn_from_dns, c.dns.learn_from_dns);
        from_config!(
            "learn_trusted",
            a.dns.learn_trusted,
            c.dns.learn_trusted.clone()
        );
        from_config!("learn_max", a.dns.learn_max, c.dns.learn_max);
        from_config!("mode", a.policy.mode, c.policy.mode);
        from_config!("direction", a.policy.direction, c.policy.direction);
        from_config!(
            "dns_resolvers",
            a.policy.dns_resolvers,
            c.policy.dns_resolvers.clone()
        );
        from_config!(
            "dhcp_servers",
            a.policy.dhcp_servers,
            c.policy.dhcp_servers.clone()
        );
        from_config!("no_local", a.policy.no_local, !c.policy.allow_local);
        a.policy.allow = c.policy.allow.clone();
        from_config!("idle_timeout", a.policy.idle_timeout, c.policy.idle_timeout);
        from_config!(
            "interval",
            a.interval,
            c.daemon
                .counters_interval
                .max(Duration::from_secs(1))
                .as_secs()
        );
        from_config!("bpffs_dir", a.bpffs_dir, c.paths.bpffs_dir.clone());
        from_config!(
            "control_socket",
            a.control_socket,
            c.paths.control_socket.clone()
        );
        from_config!("metrics_listen", a.metrics_listen, c.metrics.listen);
        from_config!("detach_on_stop", a.detach_on_stop, c.daemon.detach_on_stop);
        a
    }
}
