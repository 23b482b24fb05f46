//! The listed names, resolved: a schedule driven by TTLs, lookups through hickory-resolver,
//! and the answers turned into endpoint sets of /32 and /128 prefixes that the rule set takes
//! like any other source. `intune-ctl resolve` and the daemon run the same [`Watcher`].

pub mod lookup;
pub mod names;
pub mod schedule;

use std::{collections::BTreeMap, net::IpAddr, sync::Arc, time::Instant};

use ipnet::IpNet;
pub use lookup::{Answer, Dns, DnsConfig, LookupError};
pub use names::Names;
pub use schedule::{Schedule, ScheduleConfig};
use serde::Serialize;

use crate::sources::endpoints::{EndpointSet, Source};

/// Follows the list's exact names and keeps their addresses.
pub struct Watcher {
    dns: Arc<Dns>,
    schedule: Schedule,
    names: Names,
    /// Whether the last step found the resolver down (logged on the change only).
    down: bool,
    /// Per cause, the names failing with it now: one line however many they are.
    failures: BTreeMap<String, crate::repeated::Repeated>,
}

/// What the watcher holds, for those who do not own it (the daemon's datapath owner, `status`).
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// The addresses of each name that has some.
    pub by_name: BTreeMap<String, Vec<IpAddr>>,
    /// Names followed.
    pub names: usize,
    /// Names whose last lookup failed.
    pub failing: Vec<String>,
    pub down: bool,
}

impl Snapshot {
    /// The endpoint sets the answers make: per set that lists resolved names, the addresses
    /// as /32 and /128 prefixes with the set's ports, category and required flag.
    pub fn resolved_sets(&self, effective: &[EndpointSet]) -> Vec<EndpointSet> {
        let mut out = Vec::new();
        for set in effective {
            let mut urls = Vec::new();
            let mut ips: Vec<IpNet> = Vec::new();
            for url in set.exact_urls() {
                let name = url.trim_end_matches('.').to_ascii_lowercase();
                let Some(addrs) = self.by_name.get(&name) else {
                    continue;
                };
                ips.extend(addrs.iter().map(|a| IpNet::from(*a)));
                urls.push(name);
            }
            if ips.is_empty() {
                continue;
            }
            ips.sort();
            ips.dedup();
            out.push(EndpointSet {
                urls,
                ips,
                source: Source::Dns,
                any_address: false,
                ..set.clone()
            });
        }
        out
    }

    /// Every address held, with the names that gave it.
    pub fn addresses(&self) -> BTreeMap<IpAddr, Vec<&str>> {
        let mut out: BTreeMap<IpAddr, Vec<&str>> = BTreeMap::new();
        for (name, addrs) in &self.by_name {
            for a in addrs {
                out.entry(*a).or_default().push(name);
            }
        }
        out
    }
}

/// What changed in one step.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Step {
    pub lookups: usize,
    pub added: usize,
    pub expired: usize,
}

impl Step {
    pub fn changed(&self) -> bool {
        self.added + self.expired > 0
    }
}

/// One name as `intune-ctl resolve` shows it.
#[derive(Debug, Serialize)]
pub struct NameReport {
    pub name: String,
    pub sets: Vec<u32>,
    pub addrs: Vec<IpAddr>,
    /// Seconds, as the last answer gave it.
    pub ttl: Option<u64>,
    pub chain: Vec<String>,
    pub error: Option<String>,
}

impl Watcher {
    /// The watcher `[dns]` asks for, or `None` with resolving off.
    pub fn of(s: &crate::settings::DnsSettings) -> Result<Option<Watcher>, lookup::SetupError> {
        if !s.enabled {
            return Ok(None);
        }
        let dns = Dns::new(&DnsConfig {
            servers: s.resolvers.clone(),
            timeout: s.timeout.max(std::time::Duration::from_millis(100)),
            ..DnsConfig::default()
        })?;
        Ok(Some(Watcher::new(
            dns,
            ScheduleConfig {
                min_ttl: s.min_ttl,
                max_ttl: s.max_ttl,
                grace: s.grace,
                max_per_second: s.rate,
                max_backoff: std::time::Duration::from_secs(300).clamp(s.min_ttl, s.max_ttl),
            },
        )))
    }

    pub fn new(dns: Dns, config: ScheduleConfig) -> Watcher {
        Watcher {
            dns: Arc::new(dns),
            schedule: Schedule::new(config),
            names: Names::default(),
            down: false,
            failures: BTreeMap::new(),
        }
    }

    /// Takes the names of the effective list; returns whether addresses left with names.
    pub fn follow(&mut self, sets: &[EndpointSet], now: Instant) -> bool {
        self.names = Names::of(sets);
        self.schedule.set_names(&self.names.exact, now)
    }

    pub fn names(&self) -> &Names {
        &self.names
    }

    /// Looks every name up again, soon (paced).
    pub fn all_due(&mut self, now: Instant) {
        self.schedule.all_due(now);
    }

    /// Names whose last lookup failed.
    pub fn failing(&self) -> Vec<&str> {
        self.schedule
            .names()
            .iter()
            .filter(|(_, s)| s.error.is_some())
            .map(|(n, _)| n.as_str())
            .collect()
    }

    pub fn resolver_down(&self) -> bool {
        self.schedule.resolver_down()
    }

    pub fn next_wakeup(&self) -> Option<Instant> {
        self.schedule.next_wakeup()
    }

    /// Whether every name has had an answer or an error at least once.
    pub fn all_tried(&self) -> bool {
        self.schedule
            .names()
            .values()
            .all(|s| s.ttl.is_some() || s.error.is_some())
    }

    /// Looks up the names that are due (concurrently), records the answers, expires what ran
    /// out. Logs what came and went; failures per name at debug, together in one line.
    pub async fn step(&mut self, now: Instant) -> Step {
        let due = self.schedule.take_due(now);
        let mut step = Step {
            lookups: due.len(),
            ..Step::default()
        };
        let mut lookups = tokio::task::JoinSet::new();
        for name in due {
            let dns = Arc::clone(&self.dns);
            lookups.spawn(async move {
                let result = dns.resolve(&name).await;
                (name, result)
            });
        }
        while let Some(joined) = lookups.join_next().await {
            let Ok((name, result)) = joined else { continue };
            let error = result.as_ref().err().cloned();
            crate::daemon::metrics::daemon()
                .looked_up(matches!(error, None | Some(LookupError::NxDomain)));
            let done = Instant::now();
            let recorded = self.schedule.record(&name, result, done);
            let retry_in = humantime::format_duration(recorded.retry_in).to_string();
            match error {
                None if !recorded.added.is_empty() => {
                    tracing::info!(name, added = ?recorded.added, "name resolved to new addresses");
                }
                None => tracing::debug!(name, retry_in, "name resolved"),
                Some(error) => {
                    let kept = self
                        .schedule
                        .names()
                        .get(&name)
                        .map_or(0, |s| s.addrs.len());
                    tracing::debug!(name, %error, retry_in, kept, "resolving failed; the name's addresses stay until their grace ends");
                }
            }
            step.added += recorded.added.len();
        }
        if step.lookups > 0 {
            self.log_failures();
        }
        let down = self.schedule.resolver_down();
        if down != self.down {
            if down {
                tracing::warn!("no resolver answers: every resolved address stays until one does");
            } else {
                tracing::info!("the resolver answers again");
            }
            self.down = down;
        }
        for (name, addr) in self.schedule.expire(Instant::now().max(now)) {
            tracing::info!(name, %addr, "address expired (TTL and grace passed since the last answer that held it)");
            step.expired += 1;
        }
        step
    }

    /// One line for each cause names fail with, however many names it hits, said again only
    /// hourly (with the count); one line when no name fails with it any more.
    fn log_failures(&mut self) {
        // Per cause: how many names, and the first few of them.
        let mut failed: BTreeMap<String, (usize, Vec<String>)> = BTreeMap::new();
        for (name, s) in self.schedule.names() {
            if let Some(error) = &s.error {
                let (count, names) = failed.entry(error.to_string()).or_default();
                *count += 1;
                if names.len() < 3 {
                    names.push(name.clone());
                }
            }
        }
        self.failures.retain(|cause, repeated| {
            let still = failed.contains_key(cause);
            if !still {
                repeated.clear();
            }
            still
        });
        let total = self.names.exact.len();
        for (cause, (count, names)) in failed {
            let more = if count > names.len() { ", ..." } else { "" };
            let message = format!(
                "{count} of {total} names failed to resolve: {cause} ({}{more}); their addresses stay until their grace ends",
                names.join(", ")
            );
            self.failures
                .entry(cause.clone())
                .or_insert_with(|| crate::repeated::Repeated::new("resolving the listed names"))
                .warn(&cause, &message);
        }
    }

    /// The endpoint sets the answers make (see [`Snapshot::resolved_sets`]).
    pub fn resolved_sets(&self, effective: &[EndpointSet]) -> Vec<EndpointSet> {
        self.snapshot().resolved_sets(effective)
    }

    /// What the watcher holds now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            by_name: self
                .schedule
                .names()
                .iter()
                .filter(|(_, s)| !s.addrs.is_empty())
                .map(|(n, s)| (n.clone(), s.addrs.keys().copied().collect()))
                .collect(),
            names: self.names.exact.len(),
            failing: self.failing().into_iter().map(str::to_string).collect(),
            down: self.resolver_down(),
        }
    }

    /// Every address held, with the names that gave it.
    pub fn addresses(&self) -> BTreeMap<IpAddr, Vec<&str>> {
        self.schedule.addresses()
    }

    /// Takes back the unexpired addresses of `held` (what a previous daemon recorded, or the
    /// watcher a reload replaces) for the names followed now, each for what was left of it,
    /// `max_ttl` plus grace at most. The names are still looked up at once. Returns how many.
    pub fn restore(
        &mut self,
        held: &[crate::daemon::state::ResolvedAddress],
        now: Instant,
    ) -> usize {
        let wall = std::time::SystemTime::now();
        held.iter()
            .filter(|r| {
                let remaining = humantime::parse_rfc3339(&r.expires_at)
                    .ok()
                    .and_then(|at| at.duration_since(wall).ok())
                    .unwrap_or_default();
                self.schedule.restore(&r.name, r.address, remaining, now)
            })
            .count()
    }

    /// Takes over the unexpired addresses `old` holds (the watcher a reload replaces) for the
    /// names followed now, as [`Watcher::restore`] does. Returns how many.
    pub fn take_over(&mut self, old: &Watcher, now: Instant) -> usize {
        let mut taken = 0;
        for (name, s) in old.schedule.names() {
            for (addr, until) in &s.addrs {
                let remaining = until.saturating_duration_since(now);
                taken += usize::from(self.schedule.restore(name, *addr, remaining, now));
            }
        }
        taken
    }

    /// Every address held: the name that gave it, its sets, and when it leaves unless an
    /// answer holds it again.
    pub fn held(&self) -> Vec<crate::daemon::state::ResolvedAddress> {
        let now = Instant::now();
        let wall = std::time::SystemTime::now();
        let mut out = Vec::new();
        for (name, s) in self.schedule.names() {
            for (addr, until) in &s.addrs {
                let expires = wall + until.saturating_duration_since(now);
                out.push(crate::daemon::state::ResolvedAddress {
                    address: *addr,
                    name: name.clone(),
                    endpoint_sets: s.sets.clone(),
                    expires_at: humantime::format_rfc3339_seconds(expires).to_string(),
                });
            }
        }
        out.sort_by(|a, b| (a.address, &a.name).cmp(&(b.address, &b.name)));
        out
    }

    /// Looks every exact name of `sets` up once, at the watcher's own pace, and reports.
    /// With `give_up`: no later than then, and not once no resolver answers at all (the
    /// names not tried by then have no answer and no error in the report).
    pub async fn resolve_all(
        &mut self,
        sets: &[EndpointSet],
        give_up: Option<Instant>,
    ) -> Vec<NameReport> {
        self.follow(sets, Instant::now());
        while !self.all_tried() {
            if let Some(at) = give_up
                && (Instant::now() >= at || self.resolver_down())
            {
                break;
            }
            if let Some(at) = self.next_wakeup() {
                let at = give_up.map_or(at, |g| at.min(g));
                tokio::time::sleep_until(at.into()).await;
            }
            self.step(Instant::now()).await;
        }
        self.report()
    }

    pub fn report(&self) -> Vec<NameReport> {
        self.schedule
            .names()
            .iter()
            .map(|(name, s)| NameReport {
                name: name.clone(),
                sets: s.sets.clone(),
                addrs: s.addrs.keys().copied().collect(),
                ttl: s.ttl.map(|t| t.as_secs()),
                chain: s.chain.clone(),
                error: s.error.as_ref().map(ToString::to_string),
            })
            .collect()
    }
}
