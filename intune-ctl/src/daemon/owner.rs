//! The datapath owner: the only code that touches the maps. It takes what the tasks send (a
//! new service list, the resolver's addresses, the gateway's addresses, a reload, a control
//! request), builds the rule set and applies it. Nothing here waits on a network or a disk:
//! state is written by the recorder's thread, lists are fetched and names resolved by tasks.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use tokio::sync::mpsc;

use super::{
    counters_table,
    interfaces::{IfaceState, directions},
    links::LinkTable,
    protocol::{
        DrainingStatus, InterfaceStatus, KernelStatus, Latency, LearningStatus, ResolverStatus,
        ServiceStatus, StatusReport,
    },
    recorder::{Record, Recorder},
    resolver_task::ResolverCmd,
    service_task::ServiceCmd,
    state::InstalledRule,
    tags_task::{TagsCmd, TagsEvent},
};
use crate::{
    datapath::{Datapath, XdpChoice, kernel::Kernel, pins::Pins},
    repeated::Repeated,
    ruleset::{build::RuleBuilder, changes, listing::Listing, policy::Policy, rules::RuleSet},
    settings::{Interface, Settings},
    sources::{
        endpoints::EndpointSet,
        learn::{
            learner::{Learner, View},
            patterns::Patterns,
        },
        refresh::Refresher,
        resolve::{Names, Snapshot, Watcher},
        tags_file::TagsPoller,
    },
};

/// Everything the owner holds.
pub struct Owner {
    pub settings: Settings,
    pub builder: RuleBuilder,
    pub dp: Datapath,
    pub pins: Pins,
    pub recorder: Recorder,
    pub policy: Policy,
    /// The service's list in force (shared with the web-service task's refresher).
    pub service_sets: Arc<Vec<EndpointSet>>,
    pub service: Option<(ServiceStatus, tokio::time::Instant)>,
    /// What the resolver holds; `None` with resolving off.
    pub resolved: Option<Snapshot>,
    pub learner: Option<Learner>,
    pub started: Instant,
    /// Each configured interface's state, by name.
    pub ifaces: BTreeMap<String, IfaceState>,
    /// The gateway's interfaces now, as netlink last told.
    pub links: LinkTable,
    /// Unbounded: the owner never waits on a task, and no command is lost.
    pub to_service: mpsc::UnboundedSender<ServiceCmd>,
    pub to_resolver: mpsc::UnboundedSender<ResolverCmd>,
    pub to_tags: mpsc::UnboundedSender<TagsCmd>,
    /// Why the last download of the service tags was not taken.
    pub tags_problem: Option<String>,
    pub counter_reads: Repeated,
}

/// What a reload built before anything is applied: the settings and everything made from
/// them that needs a disk (endpoint files, the service cache, resolv.conf).
pub struct Prepared {
    pub settings: Settings,
    pub builder: RuleBuilder,
    /// `Some` when the service settings changed: the refresher to use from now on.
    pub refresher: Option<Option<Refresher>>,
    /// `Some` when the `[dns]` settings changed.
    pub watcher: Option<Option<Watcher>>,
    /// `Some` when `[sources] service_tags` changed: the poller of a URL (or none).
    pub tags_poller: Option<Option<TagsPoller>>,
}

impl Prepared {
    /// Reads what `settings` name, against the settings running now.
    pub fn new(settings: Settings, running: &Settings) -> anyhow::Result<Prepared> {
        let builder = RuleBuilder::for_daemon(&settings)?;
        if let Some(why) = &builder.service_tags().rejected {
            tracing::warn!("{why}");
        }
        let refresher = if settings.sources.same_service(&running.sources)
            && settings.paths.state_dir == running.paths.state_dir
        {
            None
        } else {
            Some(Refresher::of(&settings.sources, &settings.paths.state_dir)?)
        };
        let watcher = if settings.dns == running.dns {
            None
        } else {
            Some(Watcher::of(&settings.dns)?)
        };
        let tags_poller = if settings.sources.service_tags == running.sources.service_tags
            && settings.paths.state_dir == running.paths.state_dir
        {
            None
        } else {
            Some(TagsPoller::of(
                &settings.sources,
                &settings.paths.state_dir,
            )?)
        };
        Ok(Prepared {
            settings,
            builder,
            refresher,
            watcher,
            tags_poller,
        })
    }
}

/// The policy of `s`, with the directions of the interfaces there now by their ifindex.
pub fn policy_of(s: &Settings, links: &LinkTable) -> anyhow::Result<Policy> {
    if s.dns.learn_from_dns {
        s.trusted_resolvers().map_err(anyhow::Error::msg)?;
    }
    let mut policy = Policy::of(&s.policy);
    if s.interfaces.is_empty() {
        bail!("no interface to attach to: give --iface IF or an [[interface]] in the config");
    }
    policy.iface_directions = directions(&s.interfaces, links);
    Ok(policy)
}

impl Owner {
    fn resolved_sets(&self, sets: &[EndpointSet]) -> Vec<EndpointSet> {
        self.resolved
            .as_ref()
            .map(|r| r.resolved_sets(sets))
            .unwrap_or_default()
    }

    /// The rule set of `service` and what the resolver holds, with the one in force as its
    /// previous.
    fn build(&self, service: &[EndpointSet]) -> anyhow::Result<(Vec<EndpointSet>, RuleSet)> {
        let sets = self.builder.effective(service);
        let resolved = self.resolved_sets(&sets);
        self.builder.build(service, &resolved, self.dp.installed())
    }

    /// Records the installed rules and their listing.
    pub fn remember(&self, sets: &[EndpointSet]) {
        if let Some(rules) = self.dp.installed() {
            self.recorder.record(Record::Installed(
                InstalledRule::of(rules),
                Box::new(Listing::of(sets, rules)),
            ));
        }
    }

    /// Moves the filter onto a program with bigger maps when `rules` outgrow the ones it was
    /// loaded with: swapped onto the pinned links without a gap, rule counters carried over,
    /// the learner restarted on the new maps (taking back what it learned from its record).
    pub fn make_room(&mut self, rules: &RuleSet) -> anyhow::Result<()> {
        if self.dp.fits(rules) {
            return Ok(());
        }
        let before = self.dp.capacity();
        let mut next = self
            .dp
            .grown_for(rules, &self.pins)
            .context("loading the program with bigger maps")?;
        // The learner writes into the old maps: it stops, and starts again on the new ones.
        let learning = self.learner.take().is_some();
        let mut moved: Vec<(String, u32, XdpChoice)> = Vec::new();
        for (name, ifindex) in self.attached() {
            let choice = self
                .settings
                .interfaces
                .iter()
                .find(|i| i.name == name)
                .map_or(self.settings.daemon.xdp_mode, |i| {
                    self.settings.xdp_mode_of(i)
                });
            if let Err(e) = next.attach_pinned(&name, ifindex, choice, &self.pins) {
                // Back onto the program that still holds everything.
                for (done, ifindex, choice) in &moved {
                    if let Err(undo) = self.dp.attach_pinned(done, *ifindex, *choice, &self.pins) {
                        tracing::error!(iface = done, error = %undo, "moving back to the old program");
                    }
                }
                let _ = self.dp.pin_program_at(&self.pins);
                let _ = self.dp.pin_lookup_maps(&self.pins);
                if learning {
                    self.restart_learner()?;
                }
                return Err(
                    anyhow::Error::new(e).context(format!("moving {name} to the bigger maps"))
                );
            }
            moved.push((name, ifindex, choice));
        }
        // Packets already inside the old program finish within microseconds.
        std::thread::sleep(Duration::from_millis(10));
        if let Err(e) = next.carry_rule_counters_from(&self.dp) {
            tracing::warn!(error = %e, "carrying the rule counters over to the bigger maps");
        }
        drop(std::mem::replace(&mut self.dp, next));
        if learning {
            self.restart_learner()?;
        }
        let after = self.dp.capacity();
        println!(
            "the rule set outgrew the maps: moved the filter to bigger ones without a gap ({} rule counters, were {})",
            after.rules, before.rules
        );
        tracing::info!(
            rules_before = before.rules,
            rules_after = after.rules,
            "the rule set outgrew the maps: moved the filter to bigger ones without a gap"
        );
        Ok(())
    }

    fn restart_learner(&mut self) -> anyhow::Result<()> {
        let state = super::state::StateDir::open(&self.settings.paths.state_dir)?;
        self.learner = Some(super::start_learning(self, state)?);
        let sets = self.builder.effective(&self.service_sets);
        self.learn_names(&sets);
        Ok(())
    }

    /// Applies `rules` hitlessly (on bigger maps when they need them), records the change;
    /// the error says what failed.
    fn apply(
        &mut self,
        sets: &[EndpointSet],
        rules: RuleSet,
        cause: &str,
    ) -> Result<String, String> {
        if let Err(e) = self.make_room(&rules) {
            tracing::error!(
                cause,
                error = format!("{e:#}"),
                "the rule set outgrew the maps and bigger ones failed; the rule set in force stays"
            );
            return Err(format!("{e:#}"));
        }
        match super::updater::apply(&mut self.dp, rules, cause) {
            Some(change) => {
                let text = changes::describe(&change);
                self.recorder.record(Record::Change(change));
                self.remember(sets);
                super::release_freed_memory();
                Ok(text)
            }
            None => Err("the map update failed; the maps still allow what they allowed".into()),
        }
    }

    /// A list the service task validated: built and applied, or the reason why not.
    pub fn take_service_list(
        &mut self,
        version: &str,
        sets: Arc<Vec<EndpointSet>>,
    ) -> Result<String, String> {
        let effective = self.builder.effective(&sets);
        let resolved = self.resolved_sets(&effective);
        let built = self.builder.build(&sets, &resolved, self.dp.installed());
        if let Ok((_, rules)) = &built
            && let Err(e) = self.make_room(rules)
        {
            tracing::error!(
                error = format!("{e:#}"),
                "the new endpoint list outgrew the maps and bigger ones failed; keeping the one in force"
            );
            return Err(format!("service version {version} not applied: {e:#}"));
        }
        let taken = super::updater::take_list(&mut self.dp, built, version)?;
        self.recorder.record(Record::Change(taken.change));
        self.remember(&taken.effective);
        self.service_sets = sets;
        self.follow_names(&taken.effective);
        super::release_freed_memory();
        Ok(taken.outcome)
    }

    /// The resolver's addresses came or went (or it follows other names now).
    pub fn take_resolved(&mut self, snapshot: Option<Snapshot>, changed: bool) {
        let failing = snapshot.as_ref().map_or(0, |s| s.failing.len());
        super::metrics::daemon()
            .resolver_failing_names
            .set(i64::try_from(failing).unwrap_or(i64::MAX));
        self.resolved = snapshot;
        if !changed {
            return;
        }
        match self.build(&self.service_sets.clone()) {
            Ok((sets, rules)) => {
                if self.dp.installed().is_some_and(|r| same_rules(r, &rules)) {
                    return;
                }
                let _ = self.apply(&sets, rules, "DNS answers");
            }
            Err(e) => tracing::error!(
                error = format!("{e:#}"),
                "the resolved addresses do not make a rule set; keeping the one in force"
            ),
        }
    }

    /// A download of the service tags: taken into the rule set, or why not.
    pub fn take_service_tags(&mut self, event: TagsEvent) {
        match event {
            Ok(sets) => {
                self.tags_problem = None;
                self.builder.set_service_tags(sets);
                match self.build(&self.service_sets.clone()) {
                    Ok((sets, rules)) => {
                        if !self.dp.installed().is_some_and(|r| same_rules(r, &rules)) {
                            let _ = self.apply(&sets, rules, "service tags");
                        }
                    }
                    Err(e) => tracing::error!(
                        error = format!("{e:#}"),
                        "the service tags do not make a rule set; keeping the one in force"
                    ),
                }
            }
            Err(why) => {
                tracing::warn!("{why}");
                self.tags_problem = Some(why);
            }
        }
    }

    /// Has the resolver and the learner follow the names of `sets` (the effective list).
    fn follow_names(&self, sets: &[EndpointSet]) {
        if self
            .to_resolver
            .send(ResolverCmd::Follow(sets.to_vec()))
            .is_err()
        {
            tracing::error!("the resolver task is gone; the new names are not looked up");
        }
        self.learn_names(sets);
    }

    /// Has the learner follow the names of `sets`, with the port sets the installed rule set
    /// holds for them.
    pub fn learn_names(&self, sets: &[EndpointSet]) {
        if let (Some(learner), Some(rules)) = (&self.learner, self.dp.installed()) {
            learner.follow(Patterns::of(sets), |p| rules.port_set_of(p));
        }
    }

    /// Removes what drained for the idle timeout with no packet.
    pub fn sweep_drain(&mut self) {
        match self.dp.drain_sweep() {
            Ok(gone) => {
                for prefix in gone {
                    tracing::info!(%prefix, "idle for the idle timeout after leaving the lists: removed");
                }
            }
            Err(e) => tracing::warn!(error = %e, "sweeping the draining prefixes"),
        }
    }

    /// The gateway's addresses changed: traffic to the new ones is local from now on.
    pub fn set_local_addresses(&mut self, local: &[ipnet::IpNet]) {
        if self.dp.local_addresses() == local {
            return;
        }
        match self.dp.set_local_addresses(local) {
            Ok(()) => tracing::info!(
                addresses = %local.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "),
                "the gateway's own addresses"
            ),
            Err(e) => tracing::error!(error = %e, "writing the gateway's own addresses"),
        }
    }

    /// The counter tables; a failed read is a warning (said once while it lasts).
    pub fn print_counters(&mut self) {
        let addresses = self
            .resolved
            .as_ref()
            .map(Snapshot::addresses)
            .unwrap_or_default();
        match counters_table::print(&self.dp, &addresses) {
            Ok(()) => self.counter_reads.clear(),
            Err(e) => self.counter_reads.warn(&e.to_string(), &format!("{e:#}")),
        }
    }

    /// One line for systemd's STATUS.
    pub fn status_line(&self) -> String {
        let rules = self.dp.installed().map_or(0, |r| r.rules.len());
        let version = self
            .service
            .as_ref()
            .and_then(|(s, _)| s.version.clone())
            .unwrap_or_else(|| "none".to_string());
        let resolved = self.resolved.as_ref().map_or(0, |r| r.addresses().len());
        format!(
            "{} interfaces, {rules} rules, service version {version}, {resolved} resolved addresses",
            self.settings.interfaces.len()
        )
    }

    /// What `intune-ctl status` shows.
    pub fn status(&self) -> StatusReport {
        let mut by_source: BTreeMap<String, usize> = BTreeMap::new();
        for rule in self.dp.installed().map_or(&[][..], |r| &r.rules) {
            for s in rule.sources() {
                *by_source.entry(s).or_default() += 1;
            }
        }
        let p = &self.settings.policy;
        let wildcards = match &self.resolved {
            Some(_) => Names::of(&self.builder.effective(&self.service_sets))
                .wildcard
                .into_keys()
                .collect(),
            None => Vec::new(),
        };
        StatusReport {
            daemon: "running".into(),
            pid: Some(std::process::id()),
            uptime_seconds: Some(self.started.elapsed().as_secs()),
            interfaces: self
                .settings
                .interfaces
                .iter()
                .map(|i| {
                    let state = self.ifaces.get(&i.name).unwrap_or(&IfaceState::Waiting);
                    let (ifindex, attached, took_ms, error) = match state {
                        IfaceState::Attached {
                            ifindex,
                            how,
                            took_ms,
                        } => (Some(*ifindex), Some(how.clone()), *took_ms, None),
                        IfaceState::Failed { ifindex, error } => {
                            (Some(*ifindex), None, None, Some(error.clone()))
                        }
                        IfaceState::Waiting | IfaceState::Gone => (None, None, None, None),
                    };
                    InterfaceStatus {
                        name: i.name.clone(),
                        direction: Some(i.direction.unwrap_or(p.direction)),
                        attached,
                        state: Some(state.name().to_string()),
                        ifindex,
                        attach_ms: took_ms,
                        error,
                    }
                })
                .collect(),
            mode: Some(p.mode),
            dns_resolvers: p.dns_resolvers.clone(),
            dhcp_servers: p.dhcp_servers.clone(),
            allow_local: Some(p.allow_local),
            local_addresses: self
                .dp
                .local_addresses()
                .iter()
                .map(ToString::to_string)
                .collect(),
            draining: self
                .dp
                .draining()
                .unwrap_or_default()
                .iter()
                .map(|d| DrainingStatus {
                    prefix: d.prefix.to_string(),
                    idle_seconds: d.idle.as_secs(),
                })
                .collect(),
            warnings: self
                .dp
                .policy()
                .warnings()
                .into_iter()
                .chain(self.builder.service_tags().rejected.clone())
                .chain(self.tags_problem.clone())
                .collect(),
            rules: self.dp.installed().map_or(0, |r| r.rules.len()),
            rules_by_source: by_source,
            service: self.service.as_ref().map(|(s, next)| ServiceStatus {
                next_check_in_seconds: next
                    .saturating_duration_since(tokio::time::Instant::now())
                    .as_secs(),
                ..s.clone()
            }),
            resolver: self.resolved.as_ref().map(|r| ResolverStatus {
                names: r.names,
                resolved_addresses: r.addresses().len(),
                failing: r.failing.clone(),
                down: r.down,
            }),
            wildcards,
            learning: self.learner.as_ref().map(|l| learning_status(&l.view())),
            kernel: Some(kernel_status()),
        }
    }

    /// Applies prepared settings whole, or nothing of them: everything that can fail without
    /// touching the kernel is checked first; if applying fails, what was applied is put back.
    pub fn reload(&mut self, new: Prepared) -> anyhow::Result<()> {
        let (s, old) = (&new.settings, &self.settings);
        if s.paths.bpffs_dir != old.paths.bpffs_dir {
            bail!("paths.bpffs_dir cannot change while the daemon runs; restart it");
        }
        if s.paths.state_dir != old.paths.state_dir {
            bail!("paths.state_dir cannot change while the daemon runs; restart it");
        }
        if (s.dns.learn_from_dns, s.dns.learn_max, &s.dns.learn_trusted)
            != (
                old.dns.learn_from_dns,
                old.dns.learn_max,
                &old.dns.learn_trusted,
            )
        {
            bail!(
                "dns.learn_from_dns, learn_max and learn_trusted cannot change while the daemon runs; restart it"
            );
        }
        let policy = policy_of(s, &self.links)?;
        let service_sets = match &new.refresher {
            Some(r) => r
                .as_ref()
                .and_then(Refresher::accepted)
                .map(|a| Arc::clone(&a.sets))
                .unwrap_or_default(),
            None => self.service_sets.clone(),
        };
        let effective = new.builder.effective(&service_sets);
        // New resolver settings: the resolver task carries the addresses held so far into the
        // new watcher; until it sends what that holds, the rules keep what the old one held.
        let mut watcher = new.watcher;
        let resolved = match watcher.as_mut() {
            Some(None) => None,
            Some(Some(w)) => {
                w.follow(&effective, Instant::now());
                self.resolved.clone()
            }
            None => self.resolved.clone(),
        };
        let resolved_sets = resolved
            .as_ref()
            .map(|r| r.resolved_sets(&effective))
            .unwrap_or_default();
        let (_, rules) = new
            .builder
            .build(&service_sets, &resolved_sets, self.dp.installed())?;
        // From here on the kernel changes; a failure puts back what was applied.
        let old_policy = self.policy.clone();
        let old_drain = self.dp.drain_idle();
        let added: Vec<Interface> = s
            .interfaces
            .iter()
            .filter(|i| !old.interfaces.iter().any(|o| o.name == i.name))
            .cloned()
            .collect();
        let removed: Vec<String> = old
            .interfaces
            .iter()
            .filter(|o| !s.interfaces.iter().any(|i| i.name == o.name))
            .map(|o| o.name.clone())
            .collect();
        let mut attached_now: Vec<(String, u32, String)> = Vec::new();
        let applied = (|| -> anyhow::Result<()> {
            self.policy = policy.clone();
            // The directions first: the new interfaces' first frames find theirs.
            self.dp
                .set_policy(&policy)
                .context("writing the new policy")?;
            for iface in &added {
                // Not there: waited for, as at start.
                let Some(&ifindex) = self.links.get(&iface.name) else {
                    continue;
                };
                // The new interface's own xdp mode, or the new default.
                let iface = Interface {
                    xdp_mode: Some(new.settings.xdp_mode_of(iface)),
                    ..iface.clone()
                };
                let how = self.attach(&iface, ifindex)?;
                attached_now.push((iface.name.clone(), ifindex, how));
            }
            self.make_room(&rules)?;
            self.dp
                .set_drain(new.settings.policy.drain_idle())
                .context("turning draining on or off")?;
            if super::updater::apply(&mut self.dp, rules, "config reload").is_none() {
                bail!("applying the new rule set failed");
            }
            Ok(())
        })();
        if let Err(e) = applied {
            self.policy = old_policy.clone();
            if let Err(undo) = self.dp.set_policy(&old_policy) {
                tracing::error!(error = %undo, "putting the old policy back");
            }
            if let Err(undo) = self.dp.set_drain(old_drain) {
                tracing::error!(error = %undo, "putting the old drain setting back");
            }
            for (name, _, _) in attached_now {
                if let Err(undo) = self.detach(&name) {
                    tracing::error!(iface = name, error = %undo, "detaching what the failed reload attached");
                }
            }
            return Err(e.context("the reload was undone"));
        }
        // Applied: the tasks take their new parts, the learner its new interfaces.
        for (name, ifindex, how) in attached_now {
            self.now_attached(&name, ifindex, how, None);
        }
        for name in &removed {
            match self.detach(name) {
                Ok(()) => println!("detached from {name} (no longer in the config)"),
                Err(e) => tracing::error!(
                    iface = name,
                    error = format!("{e:#}"),
                    "detaching an interface no longer in the config"
                ),
            }
        }
        if let Some(refresher) = new.refresher {
            self.service_sets = service_sets;
            let interval = new.settings.sources.refresh_interval;
            if self
                .to_service
                .send(ServiceCmd::Replace(refresher, interval))
                .is_err()
            {
                tracing::error!(
                    "the web-service task is gone; the new service settings wait for a restart"
                );
            }
        }
        if let Some(watcher) = watcher {
            self.resolved = resolved;
            if self
                .to_resolver
                .send(ResolverCmd::Replace(watcher))
                .is_err()
            {
                tracing::error!(
                    "the resolver task is gone; the new [dns] settings wait for a restart"
                );
            }
        }
        if let Some(poller) = new.tags_poller {
            self.tags_problem = None;
            if self
                .to_tags
                .send(TagsCmd::Replace(poller.map(Box::new)))
                .is_err()
            {
                tracing::error!(
                    "the service tags task is gone; the new service_tags settings wait for a restart"
                );
            }
        }
        self.settings = new.settings;
        self.builder = new.builder;
        self.follow_names(&effective);
        self.remember(&effective);
        // The added interfaces that are not there yet are waited for.
        if let Err(e) = self.follow_links(None) {
            tracing::error!(error = format!("{e:#}"), "following the interfaces");
        }
        Ok(())
    }

    /// The last counters, then the filter stays (or goes, with `detach_on_stop`).
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.print_counters();
        let attached: Vec<String> = self.attached().into_iter().map(|(n, _)| n).collect();
        let names: Vec<&str> = attached.iter().map(String::as_str).collect();
        let Owner {
            recorder,
            settings,
            pins,
            ..
        } = self;
        recorder.finish();
        if names.is_empty() {
            println!("stopped; no interface was attached");
            if settings.daemon.detach_on_stop {
                pins.remove_all()
                    .with_context(|| format!("removing the pins under {}", pins.dir().display()))?;
            }
        } else if settings.daemon.detach_on_stop {
            pins.remove_all()
                .with_context(|| format!("removing the pins under {}", pins.dir().display()))?;
            println!("detached from {}", names.join(", "));
        } else {
            println!(
                "stopped; the filter stays attached to {} (`intune-ctl detach` removes it)",
                names.join(", ")
            );
        }
        Ok(())
    }
}

/// Whether two rule sets hold the same rules (a resolver round that changed nothing the
/// rules see is not applied).
fn same_rules(a: &RuleSet, b: &RuleSet) -> bool {
    a.rules.len() == b.rules.len()
        && a.rules.iter().all(|r| {
            b.rule_by_target(&r.target)
                .is_some_and(|o| o.rule_ref() == r.rule_ref() && o.effective == r.effective)
        })
}

/// What `status` shows of the kernel: its version, how the capture attaches, what it lacks.
fn kernel_status() -> KernelStatus {
    let k = Kernel::current();
    KernelStatus {
        version: k.version.to_string(),
        dns_capture: k.capture_hook().name().to_string(),
        degraded: k.degraded().iter().map(ToString::to_string).collect(),
    }
}

/// What `status` shows of the learner: counts, addresses held and the capture-to-map times.
fn learning_status(v: &View) -> LearningStatus {
    let mut times: Vec<Duration> = v.latencies.iter().copied().collect();
    times.sort_unstable();
    let pct = |q: f64| {
        times
            .get(((times.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .map(|d| d.as_secs_f64() * 1e3)
    };
    LearningStatus {
        addresses: v.held,
        max_addresses: v.cap,
        counts: v.counts.clone(),
        latency_ms: Latency {
            samples: times.len(),
            p50: pct(0.5),
            p99: pct(0.99),
            max: pct(1.0),
        },
    }
}
