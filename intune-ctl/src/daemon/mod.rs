//! The daemon: start-up (config, rules into the maps, attach, READY), then one loop over the
//! counter ticker, the web-service check, the resolver, the watchdog and the signals. SIGHUP
//! re-reads the config and applies it whole or not at all.

pub mod control;
pub mod local_addrs;
pub mod metrics;
pub mod state;
pub mod updater;

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use sd_notify::NotifyState;
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    ruleset::changes,
    cli::{run::RunArgs, settings::Given},
    datapath::{Capacity, Datapath, V4Lookup, bpffs, kernel::Kernel, load::Attached, pins::Pins},
    sources::endpoints::EndpointSet,
    sources::learn::{
        learner::{Learner, Settings, View},
        patterns::Patterns,
    },
    ruleset::policy::Policy,
    sources::refresh::Refresher,
    sources::resolve::Watcher,
    ruleset::rules::{Rule, RuleSet, Target},
    daemon::state::{InstalledRule, StateDir},
};

/// Everything a running daemon holds.
struct Daemon {
    args: RunArgs,
    dp: Datapath,
    pins: Pins,
    state: StateDir,
    refresher: Option<Refresher>,
    watcher: Option<Watcher>,
    next_poll: tokio::time::Instant,
    started: Instant,
    /// How each interface was attached.
    attached: Vec<(String, String)>,
    /// When the web service was last checked, and what came of it.
    last_refresh: Option<(Instant, String, String)>,
    /// When the resolved addresses were last recorded for `list`.
    resolved_saved: Option<Instant>,
    /// Learning from DNS answers, when configured.
    learner: Option<Learner>,
}

pub async fn run(base: &RunArgs, given: &Given<'_>) -> anyhow::Result<()> {
    // Before anything is attached: a signal during start-up must stop cleanly too.
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let args = base.with_config(&base.read_config()?, given);
    // Settled before the socket is bound: a bad interface touches nothing.
    let policy = policy_of(&args)?;
    let control_path = args.control_socket.clone();
    let control = crate::daemon::control::bind(&control_path).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
            " (are you root?)"
        } else {
            ""
        };
        anyhow::anyhow!(
            "binding the control socket {}{hint}: {e}",
            control_path.display()
        )
    })?;
    // Bound before anything is attached: a taken port is a start-up error.
    let metrics = match args.metrics_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening for metrics on {addr}"))?,
        ),
        None => None,
    };
    // The gateway's own addresses are known before the attach: its SSH session must not
    // see one dropped packet in enforce mode. Followed from then on.
    let local = crate::daemon::local_addrs::current()
        .await
        .context("reading the gateway's own addresses from netlink")?;
    let mut d = Daemon::start(args, policy, &local)?;
    let (local_tx, mut local_rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(crate::daemon::local_addrs::follow(local_tx));
    if let Some(log) =
        d.dp.kernel_log()
            .context("reading the kernel program's log")?
    {
        tokio::spawn(log.forward());
    }
    if let Some(listener) = metrics {
        let registry = crate::daemon::metrics::registry(d.pins.clone(), d.args.service.state_dir.clone());
        tokio::spawn(async move {
            if let Err(e) = crate::daemon::metrics::serve(listener, registry).await {
                tracing::error!(error = %e, "the metrics endpoint stopped");
            }
        });
    }
    notify(&[NotifyState::Ready, NotifyState::Status(&d.status())]);
    // The watchdog is fed from a task of its own: a web-service check may legitimately take
    // minutes of retries, and systemd must not kill a gateway's filter for that. It still
    // catches a daemon whose runtime has died or hung.
    if let Some(period) = sd_notify::watchdog_enabled() {
        let period = (period / 2).max(Duration::from_millis(100));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                notify(&[NotifyState::Watchdog]);
            }
        });
    }
    let mut ticker = tokio::time::interval(Duration::from_secs(d.args.interval));
    ticker.tick().await;
    // Draining entries are looked at every second: one leaves within a second of its idle
    // timeout.
    let mut drain_ticker = tokio::time::interval(Duration::from_secs(1));
    loop {
        let resolve_at = d.watcher.as_ref().and_then(Watcher::next_wakeup);
        tokio::select! {
            _ = ticker.tick() => print_counters(&d.dp, d.watcher.as_ref())?,
            _ = tokio::time::sleep_until(d.next_poll), if d.refresher.is_some() => {
                d.refresh().await;
                notify(&[NotifyState::Status(&d.status())]);
            }
            _ = sleep_until_some(resolve_at), if resolve_at.is_some() => d.resolve().await,
            Some(local) = local_rx.recv() => d.set_local_addresses(&local),
            _ = drain_ticker.tick() => d.sweep_drain(),
            accepted = control.accept() => {
                if let Ok((mut stream, _)) = accepted {
                    let answer = match crate::daemon::control::read_request(&mut stream).await {
                        Ok(crate::daemon::control::Request::Status) => d.status_json(),
                        Ok(crate::daemon::control::Request::Refresh) => d.refresh_now().await,
                        Err(e) => serde_json::json!({"error": format!("{e:#}")}),
                    };
                    if let Err(e) = crate::daemon::control::write_answer(&mut stream, &answer).await {
                        tracing::debug!(error = %e, "answering on the control socket");
                    }
                }
            }
            _ = hup.recv() => {
                notify(&[NotifyState::Reloading]);
                let reloaded = base
                    .read_config()
                    .map(|c| base.with_config(&c, given))
                    .and_then(|new| d.reload(new));
                match reloaded {
                    Ok(()) => println!("reloaded the config: {}", d.status()),
                    Err(e) => {
                        tracing::error!(error = format!("{e:#}"), "the new config is rejected; the old one keeps running");
                        println!("the new config is rejected; the old one keeps running: {e:#}");
                    }
                }
                notify(&[NotifyState::Ready, NotifyState::Status(&d.status())]);
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    notify(&[NotifyState::Stopping]);
    let _ = std::fs::remove_file(&control_path);
    d.stop()
}

fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "notifying systemd");
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at.into()).await;
    }
}

/// The resolvers whose answers teach: `learn_trusted`, else the policy's `dns_resolvers`.
/// With neither, any server a device asks could open any address to every device: learning
/// is refused.
pub fn trusted_resolvers(args: &RunArgs) -> anyhow::Result<Vec<std::net::IpAddr>> {
    let trusted = if args.dns.learn_trusted.is_empty() {
        &args.policy.dns_resolvers
    } else {
        &args.dns.learn_trusted
    };
    if trusted.is_empty() {
        bail!(
            "learning from DNS needs the resolvers it may trust: set [dns] learn_trusted \
             (--learn-trusted) or [policy] dns_resolvers (--dns-resolver); an answer from any \
             other server could open any address to every device"
        );
    }
    Ok(trusted.clone())
}

/// The policy of `args`, with per-interface directions by ifindex.
fn policy_of(args: &RunArgs) -> anyhow::Result<Policy> {
    if args.dns.learn_from_dns {
        trusted_resolvers(args)?;
    }
    let mut policy = args.policy.policy();
    if args.ifaces.is_empty() {
        bail!("no interface to attach to: give --iface IF or an [[interface]] in the config");
    }
    for iface in &args.ifaces {
        let ifindex = ifindex(&iface.name);
        if ifindex == 0 {
            bail!("interface {} does not exist", iface.name);
        }
        if let Some(dir) = iface.direction {
            policy.iface_directions.push((ifindex, dir));
        }
    }
    Ok(policy)
}

fn ifindex(iface: &str) -> u32 {
    match std::ffi::CString::new(iface) {
        // SAFETY: a valid C string.
        Ok(c) => unsafe { libc::if_nametoindex(c.as_ptr()) },
        Err(_) => 0,
    }
}

/// The rules a previous daemon recorded, as a rule set that keeps their indices.
fn recorded_rules(state: &StateDir) -> Option<RuleSet> {
    match state.load_rules() {
        Ok(Some(installed)) => Some(RuleSet::from_indices(
            installed
                .iter()
                .filter_map(|r| r.target().map(|t| (t, r.index))),
        )),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "ignoring the recorded rules; counters start over");
            None
        }
    }
}

impl Daemon {
    fn start(args: RunArgs, policy: Policy, local: &[ipnet::IpNet]) -> anyhow::Result<Daemon> {
        // Read every source before touching the kernel: bad input stops here.
        let refresher = args.service.refresher()?;
        let service = service_sets(refresher.as_ref());
        let state = StateDir::open(&args.service.state_dir)?;
        // The rules a previous daemon installed keep their indices: their counters carry on.
        let previous = recorded_rules(&state);
        let (sets, mut rules) = args.rules.build(service, previous.as_ref())?;
        let mut watcher = args.dns.watcher()?;
        if let Some(w) = watcher.as_mut() {
            w.follow(&sets, Instant::now());
            // The addresses the previous daemon resolved are back before the attach: a name
            // outside the listed prefixes must not be blocked until it is looked up again
            // (for the whole outage, if the resolver is down).
            let restored = match state.load_resolved() {
                Ok(held) => w.restore(&held, Instant::now()),
                Err(e) => {
                    tracing::warn!(error = %e, "the recorded resolved addresses; starting without them");
                    0
                }
            };
            if restored > 0 {
                rules = args
                    .rules
                    .build_resolved(service, Some(w), previous.as_ref())?
                    .1;
                tracing::info!(
                    restored,
                    "took back the addresses resolved before the restart"
                );
            }
        }
        bpffs::ensure_dir(&args.bpffs_dir).with_context(|| {
            format!(
                "making the pin directory {} on bpffs (are you root?)",
                args.bpffs_dir.display()
            )
        })?;
        let pins = Pins::new(&args.bpffs_dir);
        // Room for a few addresses per name beside the listed prefixes; beyond it IPv4 falls
        // back to the trie, slower but whole.
        let exact_names = watcher.as_ref().map_or(0, |w| w.names().exact.len());
        let capacity = Capacity {
            learned: if args.dns.learn_from_dns {
                args.dns.learn_max
            } else {
                0
            },
            ..Capacity::for_prefixes(rules.index_bound() + exact_names * 4)
        };
        for warning in policy.warnings() {
            tracing::warn!("{warning}");
        }
        let kernel = Kernel::current();
        let degraded = kernel.degraded();
        if !degraded.is_empty() {
            tracing::warn!("Linux {}: {}", kernel.version, degraded.join("; "));
        }
        let mut dp = Datapath::load_pinned(capacity, &pins).context("loading the XDP program")?;
        dp.set_drain(args.policy.drain_idle())
            .context("turning draining on")?;
        let started = Instant::now();
        dp.install(&rules, &policy, false)
            .context("filling the program's maps")?;
        dp.set_local_addresses(local)
            .context("writing the gateway's own addresses")?;
        crate::daemon::metrics::daemon().map_update(started.elapsed());
        if let Some(previous) = &previous {
            forget_left_rules(&mut dp, previous, &rules)?;
        }
        let wildcards = watcher.as_ref().map_or(0, |w| w.names().wildcard.len());
        println!(
            "loaded {} endpoint sets: {} prefixes in {} rules, {} port sets, IPv4 lookup by {}; {} names to resolve, {} wildcard names",
            sets.len(),
            rules.prefix_count(),
            rules.rules.len(),
            rules.port_sets.len(),
            match dp.v4_lookup() {
                V4Lookup::Table => "table",
                V4Lookup::Trie => "trie",
            },
            exact_names,
            wildcards
        );
        let mut d = Daemon {
            args,
            dp,
            pins,
            state,
            refresher,
            watcher,
            // The first check comes at once; the next after the interval, or what a 429 asks.
            next_poll: tokio::time::Instant::now(),
            started: Instant::now(),
            attached: Vec::new(),
            last_refresh: None,
            resolved_saved: None,
            learner: None,
        };
        // Recorded and pinned before the attach: once a filter is on an interface, `stats`
        // can name its counters and `lookup` can ask its maps.
        d.remember();
        d.dp.pin_program_at(&d.pins)
            .context("pinning the program")?;
        d.dp.pin_lookup_maps(&d.pins)
            .context("pinning the lookup maps")?;
        if d.args.dns.learn_from_dns {
            d.start_learning(&sets)?;
        }
        let ifaces = d.args.ifaces.clone();
        for iface in &ifaces {
            d.attach(iface, &policy)?;
        }
        for stale in d.pins.linked_ifaces() {
            if !d.args.ifaces.iter().any(|i| i.name == stale) {
                tracing::warn!(
                    iface = stale,
                    "still filtered by an earlier run's program; `intune-ctl detach --iface {stale}` removes it"
                );
            }
        }
        release_freed_memory();
        if let Some(r) = &d.refresher {
            let cause = match r.accepted() {
                Some(a) => format!("start (cached service version {})", a.version),
                None => "start".to_string(),
            };
            updater::record(&d.state, changes::summarize(None, &rules, &cause));
        }
        Ok(d)
    }

    fn attach(
        &mut self,
        iface: &crate::cli::run::IfaceSpec,
        policy: &Policy,
    ) -> anyhow::Result<()> {
        let choice = iface.xdp_mode.unwrap_or(self.args.xdp_mode);
        let how = match self.dp.attach_pinned(&iface.name, choice, &self.pins)? {
            Attached::New(mode) => format!("{mode} XDP"),
            Attached::Replaced => "replaced the running program, no gap".to_string(),
        };
        let dir = iface.direction.unwrap_or(policy.direction);
        println!(
            "attached to {} ({how}), mode {:?}, direction {dir:?}",
            iface.name, policy.mode
        );
        self.attached.retain(|(name, _)| *name != iface.name);
        self.attached.push((iface.name.clone(), how));
        Ok(())
    }

    /// Removes what drained for the idle timeout with no packet.
    fn sweep_drain(&mut self) {
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
    fn set_local_addresses(&mut self, local: &[ipnet::IpNet]) {
        if self.dp.local_addresses() == local {
            return;
        }
        match self.dp.set_local_addresses(local) {
            Ok(()) => tracing::info!(
                addresses = %local.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(" "),
                "the gateway's own addresses"
            ),
            Err(e) => tracing::error!(error = %e, "writing the gateway's own addresses"),
        }
    }

    /// One line for systemd's STATUS.
    fn status(&self) -> String {
        let rules = self.dp.installed().map_or(0, |r| r.rules.len());
        let version = self
            .refresher
            .as_ref()
            .and_then(|r| r.accepted())
            .map_or("none".to_string(), |a| a.version.clone());
        let resolved = self.watcher.as_ref().map_or(0, |w| w.addresses().len());
        format!(
            "{} interfaces, {rules} rules, service version {version}, {resolved} resolved addresses",
            self.args.ifaces.len()
        )
    }

    async fn refresh(&mut self) {
        let Some(r) = self.refresher.as_mut() else {
            return;
        };
        let (rules, watcher) = (&self.args.rules, self.watcher.as_ref());
        let build = |service: &[EndpointSet], previous: Option<&RuleSet>| {
            rules
                .build_resolved(service, watcher, previous)
                .map(|(_, rules)| rules)
        };
        let done = updater::refresh(r, &build, &mut self.dp, Some(&self.state)).await;
        self.remember();
        self.next_poll = tokio::time::Instant::now() + done.wait.max(self.args.service.interval());
        self.last_refresh = Some((Instant::now(), crate::daemon::state::now_rfc3339(), done.outcome));
        // The new list may name other hosts: follow them.
        let service = service_sets(self.refresher.as_ref());
        match self.args.rules.effective(service) {
            Ok(sets) => {
                if let Some(w) = self.watcher.as_mut() {
                    w.follow(&sets, Instant::now());
                }
                self.learn_names(&sets);
            }
            Err(e) => tracing::warn!(error = format!("{e:#}"), "the names to follow"),
        }
    }

    async fn resolve(&mut self) {
        let Some(w) = self.watcher.as_mut() else {
            return;
        };
        let service = service_sets(self.refresher.as_ref());
        let rules = &self.args.rules;
        let rebuild = |w: &Watcher, previous: Option<&RuleSet>| {
            rules
                .build_resolved(service, Some(w), previous)
                .map(|(_, rules)| rules)
        };
        let step = updater::resolve(w, &rebuild, &mut self.dp).await;
        if step.changed() {
            self.remember();
        }
        // Expiries move with every answer: recorded when something came or went, else at
        // most every half minute (each write is an fsync).
        let stale = self
            .resolved_saved
            .is_none_or(|at| at.elapsed() > Duration::from_secs(30));
        if step.changed() || (step.lookups > 0 && stale) {
            if let Some(Err(e)) = self
                .watcher
                .as_ref()
                .map(|w| self.state.save_resolved(&w.held()))
            {
                tracing::warn!(error = %e, "recording the resolved addresses");
            }
            self.resolved_saved = Some(Instant::now());
        }
    }

    /// An admin's `refresh`: the web service now (unless the documented hourly limit forbids
    /// it), and every name looked up again.
    async fn refresh_now(&mut self) -> serde_json::Value {
        if let Some(w) = self.watcher.as_mut() {
            w.all_due(Instant::now());
        }
        let service = match &self.refresher {
            None => "off".to_string(),
            Some(r) => {
                let limited = r.client().config().is_default_url()
                    && self.last_refresh.as_ref().is_some_and(|(at, _, _)| {
                        at.elapsed() < crate::sources::endpoints::service::MIN_INTERVAL
                    });
                if limited {
                    "not checked: the endpoint web service allows one check an hour".to_string()
                } else {
                    self.refresh().await;
                    self.last_refresh
                        .as_ref()
                        .map_or(String::new(), |(_, _, o)| o.clone())
                }
            }
        };
        serde_json::json!({
            "service": service,
            "names": self.watcher.as_ref().map_or(0, |w| w.names().exact.len()),
            "status": self.status(),
        })
    }

    /// What `intune-ctl status` shows.
    fn status_json(&self) -> serde_json::Value {
        let mut by_source: std::collections::BTreeMap<String, usize> = Default::default();
        for rule in self.dp.installed().map_or(&[][..], |r| &r.rules) {
            for s in rule.sources() {
                *by_source.entry(s).or_default() += 1;
            }
        }
        let interfaces: Vec<serde_json::Value> = self
            .args
            .ifaces
            .iter()
            .map(|i| {
                serde_json::json!({
                    "name": i.name,
                    "direction": i.direction.unwrap_or(self.args.policy.direction),
                    "attached": self.attached.iter().find(|(n, _)| *n == i.name).map(|(_, how)| how),
                })
            })
            .collect();
        let service = self.refresher.as_ref().map(|r| {
            serde_json::json!({
                "url": r.client().config().base_url,
                "version": r.accepted().map(|a| a.version.clone()),
                "last_check": self.last_refresh.as_ref().map(|(_, at, outcome)| serde_json::json!({"at": at, "outcome": outcome})),
                "next_check_in_seconds": self.next_poll.saturating_duration_since(tokio::time::Instant::now()).as_secs(),
            })
        });
        let resolver = self.watcher.as_ref().map(|w| {
            serde_json::json!({
                "names": w.names().exact.len(),
                "resolved_addresses": w.addresses().len(),
                "failing": w.failing(),
                "down": w.resolver_down(),
            })
        });
        let wildcards: Vec<&String> = self
            .watcher
            .as_ref()
            .map(|w| w.names().wildcard.keys().collect())
            .unwrap_or_default();
        serde_json::json!({
            "daemon": "running",
            "pid": std::process::id(),
            "uptime_seconds": self.started.elapsed().as_secs(),
            "interfaces": interfaces,
            "mode": self.args.policy.mode,
            "dns_resolvers": self.args.policy.dns_resolvers,
            "dhcp_servers": self.args.policy.dhcp_servers,
            "allow_local": !self.args.policy.no_local,
            "local_addresses": self.dp.local_addresses().iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            "draining": self.dp.draining().unwrap_or_default().iter().map(|d| serde_json::json!({
                "prefix": d.prefix.to_string(),
                "idle_seconds": d.idle.as_secs(),
            })).collect::<Vec<_>>(),
            "warnings": self.dp.policy().warnings(),
            "rules": self.dp.installed().map_or(0, |r| r.rules.len()),
            "rules_by_source": by_source,
            "service": service,
            "resolver": resolver,
            "wildcards": wildcards,
            "learning": self.learner.as_ref().map(|l| learning_json(&l.view())),
            "kernel": kernel_json(),
        })
    }

    /// Applies a new config whole, or nothing of it: everything that can fail is checked
    /// (interfaces, sources, the rule set) before anything changes.
    fn reload(&mut self, new: RunArgs) -> anyhow::Result<()> {
        if new.bpffs_dir != self.args.bpffs_dir {
            bail!("paths.bpffs_dir cannot change while the daemon runs; restart it");
        }
        let (a, b) = (&new.dns, &self.args.dns);
        if (a.learn_from_dns, a.learn_max, &a.learn_trusted)
            != (b.learn_from_dns, b.learn_max, &b.learn_trusted)
        {
            bail!(
                "dns.learn_from_dns, learn_max and learn_trusted cannot change while the daemon runs; restart it"
            );
        }
        let policy = policy_of(&new)?;
        let refresher = if new.service != self.args.service {
            new.service.refresher()?
        } else {
            self.refresher.take()
        };
        let service = service_sets(refresher.as_ref());
        let watcher = if new.dns != self.args.dns {
            // New resolver settings: the addresses held so far carry over (with the new
            // limits) until the new watcher's own answers replace them.
            let mut fresh = new.dns.watcher()?;
            if let (Some(w), Some(old), Ok(sets)) = (
                fresh.as_mut(),
                self.watcher.as_ref(),
                new.rules.effective(service),
            ) {
                w.follow(&sets, Instant::now());
                w.restore(&old.held(), Instant::now());
            }
            fresh
        } else {
            self.watcher.take()
        };
        let built = new.rules.effective(service).and_then(|sets| {
            new.rules
                .build_resolved(service, watcher.as_ref(), self.dp.installed())
                .map(|(_, rules)| (sets, rules))
        });
        let (sets, rules) = match built {
            Ok(built) => built,
            Err(e) => {
                // Put back what was taken: the old config keeps running.
                if new.service == self.args.service {
                    self.refresher = refresher;
                }
                if new.dns == self.args.dns {
                    self.watcher = watcher;
                }
                return Err(e);
            }
        };
        // From here on: apply.
        let service_changed = new.service != self.args.service;
        self.refresher = refresher;
        self.watcher = watcher;
        for iface in &new.ifaces {
            if !self.args.ifaces.iter().any(|i| i.name == iface.name) {
                self.attach(iface, &policy)?;
                // The filter is on by now: a capture that fails is said, not a failed reload.
                if self.learner.is_some() {
                    match self.dp.capture_on(&iface.name) {
                        Ok(hook) => println!(
                            "learning from DNS answers on {} ({})",
                            iface.name,
                            hook.name()
                        ),
                        Err(e) => tracing::error!(
                            iface = iface.name,
                            error = %e,
                            "no learning from DNS answers on this interface"
                        ),
                    }
                }
            }
        }
        self.dp.set_policy(&policy)?;
        self.dp.set_drain(new.policy.drain_idle())?;
        updater::apply(&mut self.dp, rules, "config reload");
        for old in &self.args.ifaces {
            if !new.ifaces.iter().any(|i| i.name == old.name) {
                self.dp.capture_off(&old.name)?;
                self.pins.remove_link(&old.name)?;
                println!("detached from {} (no longer in the config)", old.name);
            }
        }
        if let Some(w) = self.watcher.as_mut() {
            w.follow(&sets, Instant::now());
        }
        self.learn_names(&sets);
        if service_changed {
            self.next_poll = tokio::time::Instant::now();
        }
        self.args = new;
        self.remember();
        tracing::info!("reloaded the config: {}", self.status());
        Ok(())
    }

    fn stop(self) -> anyhow::Result<()> {
        print_counters(&self.dp, self.watcher.as_ref())?;
        let names: Vec<&str> = self.args.ifaces.iter().map(|i| i.name.as_str()).collect();
        if self.args.detach_on_stop {
            self.pins.remove_all().with_context(|| {
                format!("removing the pins under {}", self.pins.dir().display())
            })?;
            println!("detached from {}", names.join(", "));
        } else {
            println!(
                "stopped; the filter stays attached to {} (`intune-ctl detach` removes it)",
                names.join(", ")
            );
        }
        Ok(())
    }

    /// Records the installed rules in the state directory (for a restart and for `stats`).
    fn remember(&self) {
        if let Some(Err(e)) = self
            .dp
            .installed()
            .map(|rules| self.state.save_rules(&InstalledRule::of(rules)))
        {
            tracing::warn!(error = %e, "recording the installed rules");
        }
    }

    /// Has the learner follow the names of `sets` (the effective endpoint list), with the port
    /// sets the installed rule set holds for them. Only a new list changes them: resolved
    /// addresses add no names.
    fn learn_names(&self, sets: &[EndpointSet]) {
        if let (Some(learner), Some(rules)) = (&self.learner, self.dp.installed()) {
            learner.follow(Patterns::of(sets), |p| rules.port_set_of(p));
        }
    }

    /// The DNS capture on every interface, and the learner reading it.
    fn start_learning(&mut self, sets: &[EndpointSet]) -> anyhow::Result<()> {
        let names: Vec<String> = self.args.ifaces.iter().map(|i| i.name.clone()).collect();
        let trusted = trusted_resolvers(&self.args)?;
        let maps = self
            .dp
            .start_learning(&names, &trusted, &self.pins)
            .context("starting the DNS capture")?;
        let settings = Settings {
            trusted: trusted.clone(),
            grace: self.args.dns.dns_grace,
            max_ttl: self.args.dns.dns_max_ttl,
            cap: self.args.dns.learn_max,
            rule_base: self.dp.learned_rule_base(),
            name_hash_key: self.dp.name_hash_key(),
        };
        let state = StateDir::open(self.state.path())?;
        self.learner =
            Some(Learner::start(maps, settings, Some(state)).context("starting the learner")?);
        println!(
            "learning addresses from DNS answers on {} (from {}, to the queries devices send)",
            names.join(", "),
            trusted
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        self.learn_names(sets);
        Ok(())
    }
}

/// What `status` shows of the kernel: its version, how the capture attaches, what it lacks.
fn kernel_json() -> serde_json::Value {
    let k = Kernel::current();
    serde_json::json!({
        "version": k.version.to_string(),
        "dns_capture": k.capture_hook().name(),
        "degraded": k.degraded(),
    })
}

/// What `status` shows of the learner: counts, addresses held and the capture-to-map times.
fn learning_json(v: &View) -> serde_json::Value {
    let mut times: Vec<Duration> = v.latencies.iter().copied().collect();
    times.sort_unstable();
    let pct = |q: f64| {
        times
            .get(((times.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .map(|d| d.as_secs_f64() * 1e3)
    };
    serde_json::json!({
        "addresses": v.held,
        "max_addresses": v.cap,
        "counts": v.counts,
        "latency_ms": {"samples": times.len(), "p50": pct(0.5), "p99": pct(0.99), "max": pct(1.0)},
    })
}

/// Hands the heap the start-up freed (parsed lists, the first fill's writes) back to the
/// system: glibc keeps it otherwise, and a gateway's daemon should stay small.
fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory of the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Rules a previous daemon had that this one does not: their hits are logged once and their
/// counters zeroed, so a new rule given the index later starts from nothing.
fn forget_left_rules(dp: &mut Datapath, previous: &RuleSet, rules: &RuleSet) -> anyhow::Result<()> {
    let left: Vec<&Rule> = previous
        .rules
        .iter()
        .filter(|r| rules.rule_by_target(&r.target).is_none())
        .collect();
    let counters = dp.rule_counters_of(left.iter().map(|r| r.index))?;
    for (rule, c) in left.iter().zip(counters) {
        if c.packets > 0 {
            tracing::info!(prefix = %rule.target, packets = c.packets, bytes = c.bytes, "rule removed since the last run");
        }
    }
    dp.zero_rule_counters(left.iter().map(|r| r.index))?;
    Ok(())
}

/// The service's sets in force (the accepted list), or none.
fn service_sets(refresher: Option<&Refresher>) -> &[EndpointSet] {
    refresher
        .and_then(|r| r.accepted())
        .map_or(&[], |a| &a.sets)
}

/// The outcome counters, then the rules with hits, most hits first, with the names that
/// resolved to each address.
pub fn print_counters(dp: &Datapath, watcher: Option<&Watcher>) -> anyhow::Result<()> {
    let empty = RuleSet::default();
    let rules = dp.installed().unwrap_or(&empty);
    let mut table = Table::new();
    table
        .load_preset(UTF8_BORDERS_ONLY)
        .set_header(["outcome", "packets", "bytes"]);
    for (outcome, c) in dp.outcome_counters()? {
        table.add_row([
            outcome.counter_name().to_string(),
            c.packets.to_string(),
            c.bytes.to_string(),
        ]);
    }
    println!("{table}");
    let counters = dp.rule_counters_of(rules.rules.iter().map(|r| r.index))?;
    let mut hits: Vec<(&Rule, _)> = rules
        .rules
        .iter()
        .zip(counters)
        .filter(|(_, c)| c.packets > 0)
        .collect();
    hits.sort_by_key(|(_, c)| std::cmp::Reverse(c.packets));
    if hits.is_empty() {
        println!("no rule hits yet");
        return Ok(());
    }
    let mut table = Table::new();
    table.load_preset(UTF8_BORDERS_ONLY).set_header([
        "prefix",
        "names",
        "endpoint sets",
        "ports",
        "packets",
        "bytes",
    ]);
    let addresses = watcher.map(Watcher::addresses).unwrap_or_default();
    for (rule, c) in hits {
        let sets: Vec<String> = rule.sets.iter().map(|s| s.id.to_string()).collect();
        let names = match rule.target {
            Target::Prefix(net) if net.prefix_len() == net.max_prefix_len() => addresses
                .get(&net.addr())
                .map(|n| n.join(","))
                .unwrap_or_default(),
            _ => String::new(),
        };
        table.add_row([
            rule.target.to_string(),
            names,
            sets.join(","),
            rule.effective.to_string(),
            c.packets.to_string(),
            c.bytes.to_string(),
        ]);
    }
    println!("{table}");
    Ok(())
}
