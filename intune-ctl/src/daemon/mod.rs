//! The daemon: start-up (settings, rules into the maps, attach, READY), then tasks around the
//! one owner of the datapath. The web-service task, the resolver task, the learner's thread,
//! the netlink follower and the control socket's clients send what they found to the owner's
//! loop, which also takes the signals and the tickers; nothing slow runs in it. SIGHUP re-reads
//! the settings (off the loop) and applies them whole or not at all.

pub mod control;
pub mod counters_table;
pub mod interfaces;
pub mod links;
pub mod local_addrs;
pub mod metrics;
pub mod netlink_follow;
pub mod owner;
pub mod protocol;
pub mod recorder;
pub mod resolver_task;
pub mod service_task;
pub mod state;
pub mod tags_task;
pub mod updater;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use sd_notify::NotifyState;
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};

use self::{
    control::Asked,
    owner::{Owner, Prepared, policy_of},
    protocol::{Answer, Refreshed, Request},
    recorder::{Record, Recorder},
    resolver_task::{ResolverCmd, ResolverTask},
    service_task::{ServiceCmd, ServiceEvent, ServiceTask},
    state::{InstalledRule, StateDir},
    tags_task::{TagsCmd, TagsTask},
};
use crate::{
    datapath::{Capacity, Datapath, bpffs, kernel::Kernel, pins::Pins},
    repeated::Repeated,
    ruleset::{build::RuleBuilder, changes, listing::Listing, rules::RuleSet},
    settings::Settings,
    sources::{
        endpoints::EndpointSet,
        learn::learner::{self, Learner},
        refresh::Refresher,
        resolve::Watcher,
        tags_file::TagsPoller,
    },
};

/// Reads the settings again (the config file, the command line's flags over it): the daemon
/// calls it at start and on every SIGHUP.
pub type Loader = Arc<dyn Fn() -> anyhow::Result<Settings> + Send + Sync>;

pub async fn run(load: Loader) -> anyhow::Result<()> {
    // Before anything is attached: a signal during start-up must stop cleanly too.
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let settings = load()?;
    // The interfaces there now (a configured one that is not is waited for), followed from
    // then on. Settled before the socket is bound: a bad policy touches nothing.
    let links = links::current()
        .await
        .context("reading the gateway's interfaces from netlink")?;
    let policy = policy_of(&settings, &links)?;
    let control_path = settings.paths.control_socket.clone();
    let listener = control::bind(&control_path).map_err(|e| {
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
    let metrics = match settings.metrics.listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening for metrics on {addr}"))?,
        ),
        None => None,
    };
    // The gateway's own addresses are known before the attach: its SSH session must not
    // see one dropped packet in enforce mode. Followed from then on.
    let local = local_addrs::current()
        .await
        .context("reading the gateway's own addresses from netlink")?;
    let (service_tx, service_cmds) = mpsc::unbounded_channel();
    let (resolver_tx, resolver_cmds) = mpsc::unbounded_channel();
    let (tags_tx, tags_cmds) = mpsc::unbounded_channel();
    let started = start(
        settings,
        policy,
        links,
        &local,
        Channels {
            service: service_tx,
            resolver: resolver_tx,
            tags: tags_tx,
        },
    )?;
    let Started {
        mut owner,
        refresher,
        watcher,
        tags_poller,
    } = started;

    let (service_events_tx, mut service_events) = mpsc::channel(4);
    tokio::spawn(
        ServiceTask::new(
            refresher,
            owner.settings.sources.refresh_interval,
            service_events_tx,
        )
        .run(service_cmds),
    );
    let (resolved_tx, mut resolved_rx) = mpsc::channel(4);
    let resolver_state = StateDir::open(&owner.settings.paths.state_dir).ok();
    tokio::spawn(ResolverTask::new(watcher, resolver_state, resolved_tx).run(resolver_cmds));
    let (tags_events_tx, mut tags_events) = mpsc::channel(4);
    tokio::spawn(TagsTask::new(tags_poller, tags_events_tx).run(tags_cmds));
    let (local_tx, mut local_rx) = mpsc::channel(4);
    tokio::spawn(local_addrs::follow(local_tx));
    let (links_tx, mut links_rx) = mpsc::channel(4);
    tokio::spawn(links::follow(links_tx));
    let (asked_tx, mut asked_rx) = mpsc::channel::<Asked>(16);
    tokio::spawn(control::serve(listener, asked_tx));
    if let Some(log) = owner
        .dp
        .kernel_log()
        .context("reading the kernel program's log")?
    {
        tokio::spawn(log.forward());
    }
    if let Some(listener) = metrics {
        let registry =
            metrics::registry(owner.pins.clone(), owner.settings.paths.state_dir.clone());
        tokio::spawn(async move {
            if let Err(e) = metrics::serve(listener, registry).await {
                tracing::error!(error = %e, "the metrics endpoint stopped");
            }
        });
    }
    notify(&[
        NotifyState::Ready,
        NotifyState::Status(&owner.status_line()),
    ]);
    // The watchdog is fed from a task of its own: it catches a daemon whose runtime has died
    // or hung, and nothing the owner does legitimately takes long.
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
    let mut ticker = tokio::time::interval(
        owner
            .settings
            .daemon
            .counters_interval
            .max(Duration::from_secs(1)),
    );
    ticker.tick().await;
    // Draining entries are looked at every second: one leaves within a second of its idle
    // timeout.
    let mut drain_ticker = tokio::time::interval(Duration::from_secs(1));
    let (reload_tx, mut reload_rx) = mpsc::channel::<anyhow::Result<Prepared>>(1);
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = ticker.tick() => owner.print_counters(),
            _ = drain_ticker.tick() => owner.sweep_drain(),
            Some(event) = service_events.recv() => match event {
                ServiceEvent::Candidate { version, sets, reply } => {
                    let outcome = owner.take_service_list(&version, sets);
                    let _ = reply.send(outcome);
                    notify(&[NotifyState::Status(&owner.status_line())]);
                }
                ServiceEvent::Status(status) => owner.service = status,
            },
            Some(resolved) = resolved_rx.recv() => owner.take_resolved(resolved.snapshot, resolved.changed),
            Some(event) = tags_events.recv() => owner.take_service_tags(event),
            Some(local) = local_rx.recv() => owner.set_local_addresses(&local.value),
            Some(links) = links_rx.recv() => {
                owner.take_links(links.value, links.at);
                notify(&[NotifyState::Status(&owner.status_line())]);
            }
            Some((request, reply)) = asked_rx.recv() => match request {
                Request::Status => {
                    let _ = reply.send(Answer::Status(Box::new(owner.status())));
                }
                Request::Refresh => {
                    // Answered by a task of its own: the check may take minutes.
                    let names = owner.resolved.as_ref().map_or(0, |r| r.names);
                    let _ = owner.to_resolver.send(ResolverCmd::AllDue);
                    let _ = owner.to_tags.send(TagsCmd::Now);
                    let to_service = owner.to_service.clone();
                    let line = owner.status_line();
                    tokio::spawn(async move {
                        let (tx, rx) = tokio::sync::oneshot::channel();
                        let service = if to_service.send(ServiceCmd::CheckNow(tx)).is_ok() {
                            rx.await.unwrap_or_else(|_| "the web-service task stopped".into())
                        } else {
                            "the web-service task stopped".into()
                        };
                        let _ = reply.send(Answer::Refreshed(Refreshed { service, names, status: line }));
                    });
                }
            },
            _ = hup.recv() => {
                notify(&[NotifyState::Reloading]);
                // The config and endpoint files are read off the loop.
                let (load, running, tx) = (Arc::clone(&load), owner.settings.clone(), reload_tx.clone());
                tokio::task::spawn_blocking(move || {
                    let prepared = load().and_then(|s| Prepared::new(s, &running));
                    let _ = tx.blocking_send(prepared);
                });
            }
            Some(prepared) = reload_rx.recv() => {
                match prepared.and_then(|p| owner.reload(p)) {
                    Ok(()) => {
                        tracing::info!("reloaded the config: {}", owner.status_line());
                        println!("reloaded the config: {}", owner.status_line());
                    }
                    Err(e) => {
                        tracing::error!(error = format!("{e:#}"), "the new config is rejected; the old one keeps running");
                        println!("the new config is rejected; the old one keeps running: {e:#}");
                    }
                }
                notify(&[NotifyState::Ready, NotifyState::Status(&owner.status_line())]);
            }
        }
    }
    notify(&[NotifyState::Stopping]);
    let _ = std::fs::remove_file(&control_path);
    owner.stop()
}

fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "notifying systemd");
    }
}

/// Where the owner sends the tasks its commands.
struct Channels {
    service: mpsc::UnboundedSender<ServiceCmd>,
    resolver: mpsc::UnboundedSender<ResolverCmd>,
    tags: mpsc::UnboundedSender<TagsCmd>,
}

/// The owner, and the parts the tasks take.
struct Started {
    owner: Owner,
    refresher: Option<Refresher>,
    watcher: Option<Watcher>,
    tags_poller: Option<TagsPoller>,
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

/// Everything up to the attach: sources read, the program loaded and filled, pinned,
/// attached.
fn start(
    settings: Settings,
    policy: crate::ruleset::policy::Policy,
    links: links::LinkTable,
    local: &[ipnet::IpNet],
    channels: Channels,
) -> anyhow::Result<Started> {
    let Channels {
        service: to_service,
        resolver: to_resolver,
        tags: to_tags,
    } = channels;
    // Read every source before touching the kernel: bad input stops here.
    let builder = RuleBuilder::for_daemon(&settings)?;
    if let Some(why) = &builder.service_tags().rejected {
        tracing::warn!("{why}");
    }
    let refresher = Refresher::of(&settings.sources, &settings.paths.state_dir)?;
    let tags_poller = TagsPoller::of(&settings.sources, &settings.paths.state_dir)?;
    let service_sets: Arc<Vec<EndpointSet>> = refresher
        .as_ref()
        .and_then(Refresher::accepted)
        .map(|a| Arc::clone(&a.sets))
        .unwrap_or_default();
    let state = StateDir::open(&settings.paths.state_dir)?;
    // The rules a previous daemon installed keep their indices: their counters carry on.
    let previous = recorded_rules(&state);
    let sets = builder.effective(&service_sets);
    let mut watcher = Watcher::of(&settings.dns)?;
    if let Some(w) = watcher.as_mut() {
        w.follow(&sets, Instant::now());
        // The addresses the previous daemon resolved are back before the attach: a name
        // outside the listed prefixes must not be blocked until it is looked up again (for
        // the whole outage, if the resolver is down).
        let restored = match state.load_resolved() {
            Ok(held) => w.restore(&held, Instant::now()),
            Err(e) => {
                tracing::warn!(error = %e, "the recorded resolved addresses; starting without them");
                0
            }
        };
        if restored > 0 {
            tracing::info!(
                restored,
                "took back the addresses resolved before the restart"
            );
        }
    }
    let resolved = watcher.as_ref().map(Watcher::snapshot);
    let resolved_sets = resolved
        .as_ref()
        .map(|r| r.resolved_sets(&sets))
        .unwrap_or_default();
    let (sets, rules) = builder.build(&service_sets, &resolved_sets, previous.as_ref())?;
    let bpffs_dir = &settings.paths.bpffs_dir;
    bpffs::ensure_dir(bpffs_dir).with_context(|| {
        format!(
            "making the pin directory {} on bpffs (are you root?)",
            bpffs_dir.display()
        )
    })?;
    let pins = Pins::new(bpffs_dir);
    // Room for a few addresses per name beside the listed prefixes; beyond it IPv4 falls
    // back to the trie, slower but whole.
    let exact_names = resolved.as_ref().map_or(0, |r| r.names);
    let capacity = Capacity {
        learned: if settings.dns.learn_from_dns {
            settings.dns.learn_max
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
    dp.set_drain(settings.policy.drain_idle())
        .context("turning draining on")?;
    let filled = Instant::now();
    dp.install(&rules, &policy, false)
        .context("filling the program's maps")?;
    dp.set_local_addresses(local)
        .context("writing the gateway's own addresses")?;
    metrics::daemon().map_update(filled.elapsed());
    if let Some(previous) = &previous {
        forget_left_rules(&mut dp, previous, &rules)?;
    }
    let wildcards = crate::sources::resolve::Names::of(&sets).wildcard.len();
    println!(
        "loaded {} endpoint sets: {} prefixes in {} rules, {} port sets, IPv4 lookup by {}, IPv6 by {}; {} names to resolve, {} wildcard names",
        sets.len(),
        rules.prefix_count(),
        rules.rules.len(),
        rules.port_sets.len(),
        dp.v4_lookup().name(),
        dp.v6_lookup().name(),
        exact_names,
        wildcards
    );
    // Recorded and pinned before the attach: once a filter is on an interface, `stats` can
    // name its counters and `lookup` can ask its maps.
    recorder::write(
        &state,
        Record::Installed(
            InstalledRule::of(&rules),
            Box::new(Listing::of(&sets, &rules)),
        ),
    );
    dp.pin_program_at(&pins).context("pinning the program")?;
    dp.pin_lookup_maps(&pins)
        .context("pinning the lookup maps")?;
    let cause = match refresher.as_ref().and_then(Refresher::accepted) {
        Some(a) => format!("start (cached service version {})", a.version),
        None => "start".to_string(),
    };
    recorder::write(&state, Record::Change(changes::of_first(&rules, &cause)));
    let recorder = Recorder::start(StateDir::open(&settings.paths.state_dir)?)
        .context("starting the state writer")?;
    let mut owner = Owner {
        builder,
        dp,
        pins,
        recorder,
        policy,
        service_sets,
        service: None,
        resolved,
        learner: None,
        started: Instant::now(),
        ifaces: std::collections::BTreeMap::new(),
        links,
        to_service,
        to_resolver,
        to_tags,
        tags_problem: None,
        counter_reads: Repeated::new("reading the hit counters"),
        settings,
    };
    if owner.settings.dns.learn_from_dns {
        owner.learner = Some(start_learning(&mut owner, state)?);
        owner.learn_names(&sets);
    }
    // A missing interface is waited for; one there that cannot be attached stops the start.
    owner.follow_links(None)?;
    for stale in owner.pins.linked_ifaces() {
        if !owner.settings.interfaces.iter().any(|i| i.name == stale) {
            tracing::warn!(
                iface = stale,
                "still filtered by an earlier run's program; `intune-ctl detach --iface {stale}` removes it"
            );
        }
    }
    release_freed_memory();
    Ok(Started {
        owner,
        refresher,
        watcher,
        tags_poller,
    })
}

/// The DNS capture on every interface, and the learner reading it.
pub(crate) fn start_learning(owner: &mut Owner, state: StateDir) -> anyhow::Result<Learner> {
    // The interfaces there now; the others get their capture when they appear.
    let names: Vec<String> = owner
        .settings
        .interfaces
        .iter()
        .filter(|i| owner.links.contains_key(&i.name))
        .map(|i| i.name.clone())
        .collect();
    let trusted = owner
        .settings
        .trusted_resolvers()
        .map_err(anyhow::Error::msg)?;
    let maps = owner
        .dp
        .start_learning(&names, &trusted, &owner.pins)
        .context("starting the DNS capture")?;
    let dns = &owner.settings.dns;
    let settings = learner::Settings {
        trusted: trusted.clone(),
        grace: dns.grace,
        max_ttl: dns.max_ttl,
        cap: dns.learn_max,
        rule_base: owner.dp.learned_rule_base(),
        name_hash_key: owner.dp.name_hash_key(),
    };
    let learner = Learner::start(maps, settings, Some(state)).context("starting the learner")?;
    println!(
        "learning addresses from DNS answers on {} (from {}, to the queries devices send)",
        names.join(", "),
        trusted
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(learner)
}

/// Hands the heap what start-up or a rebuild freed (parsed lists, the old rule set, the fill's
/// writes) back to the system: glibc keeps it otherwise, and a gateway's daemon should stay
/// small.
pub(crate) fn release_freed_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory of the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Rules a previous daemon had that this one does not: their hits are logged once and their
/// counters zeroed, so a new rule given the index later starts from nothing.
fn forget_left_rules(dp: &mut Datapath, previous: &RuleSet, rules: &RuleSet) -> anyhow::Result<()> {
    let left: Vec<&crate::ruleset::rules::Rule> = previous
        .rules
        .iter()
        .filter(|r| rules.rule_by_target(&r.target).is_none())
        .collect();
    let indices: Vec<u32> = left.iter().map(|r| r.index).collect();
    for (rule, c) in left.iter().zip(dp.take_rule_counters(&indices)?) {
        if c.packets > 0 {
            tracing::info!(prefix = %rule.target, packets = c.packets, bytes = c.bytes, "rule removed since the last run");
        }
    }
    Ok(())
}
