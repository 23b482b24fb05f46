//! The resolver task: owns the watcher, looks the listed names up when they are due, records
//! the addresses it holds in the state directory, and sends what it holds to the datapath
//! owner whenever addresses came or went. Lookups never wait on the owner, nor it on them.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::{
    daemon::state::StateDir,
    sources::{
        endpoints::EndpointSet,
        resolve::{Snapshot, Watcher},
    },
};

pub enum ResolverCmd {
    /// The effective endpoint list changed: follow its names.
    Follow(Vec<EndpointSet>),
    /// An admin's `refresh`: every name is due now.
    AllDue,
    /// A reload changed the `[dns]` settings: this watcher (or none) from now on.
    Replace(Option<Watcher>),
}

/// What the watcher holds, and whether the rule set must change for it.
pub struct Resolved {
    pub snapshot: Option<Snapshot>,
    pub changed: bool,
}

pub struct ResolverTask {
    watcher: Option<Watcher>,
    state: Option<StateDir>,
    saved: Option<Instant>,
    /// When the owner was last sent a snapshot, and the health it said.
    sent: Option<(Instant, Vec<String>, bool)>,
    out: mpsc::Sender<Resolved>,
}

/// How stale the owner's copy of the held addresses may grow while nothing changes: it carries
/// them into a reload, where an address is kept until its expiry (minutes of grace away).
const SNAPSHOT_EVERY: Duration = Duration::from_secs(10);

impl ResolverTask {
    pub fn new(
        watcher: Option<Watcher>,
        state: Option<StateDir>,
        out: mpsc::Sender<Resolved>,
    ) -> ResolverTask {
        ResolverTask {
            watcher,
            state,
            saved: None,
            sent: None,
            out,
        }
    }

    pub async fn run(mut self, mut cmds: mpsc::UnboundedReceiver<ResolverCmd>) {
        loop {
            let wake = self.watcher.as_ref().and_then(Watcher::next_wakeup);
            tokio::select! {
                cmd = cmds.recv() => {
                    let Some(cmd) = cmd else { return };
                    let changed = self.apply(cmd);
                    if !self.send(changed).await {
                        return;
                    }
                }
                () = sleep_until_some(wake), if wake.is_some() => {
                    let Some(w) = self.watcher.as_mut() else { continue };
                    // Lookups of a dead resolver last their timeouts: new [dns] settings take
                    // over at once (the old watcher's step is dropped with it), anything else
                    // waits for the step.
                    let mut queued = Vec::new();
                    let outcome = {
                        let mut step = std::pin::pin!(w.step(Instant::now()));
                        loop {
                            tokio::select! {
                                step = &mut step => break Ok(step),
                                cmd = cmds.recv() => match cmd {
                                    None => return,
                                    Some(ResolverCmd::Replace(new)) => break Err(new),
                                    Some(cmd) => queued.push(cmd),
                                },
                            }
                        }
                    };
                    // In the order they came: those queued came before a Replace.
                    let mut changed = false;
                    for cmd in queued {
                        changed |= self.apply(cmd);
                    }
                    changed |= match outcome {
                        Ok(step) => {
                            self.save(step.changed(), step.lookups > 0);
                            step.changed()
                        }
                        Err(new) => {
                            self.replace(new);
                            true
                        }
                    };
                    if !self.send(changed).await {
                        return;
                    }
                }
            }
        }
    }

    /// Follows one command; returns whether the rule set must change for it.
    fn apply(&mut self, cmd: ResolverCmd) -> bool {
        match cmd {
            ResolverCmd::Follow(sets) => self
                .watcher
                .as_mut()
                .is_some_and(|w| w.follow(&sets, Instant::now())),
            ResolverCmd::AllDue => {
                if let Some(w) = self.watcher.as_mut() {
                    w.all_due(Instant::now());
                }
                false
            }
            ResolverCmd::Replace(w) => {
                self.replace(w);
                true
            }
        }
    }

    /// New `[dns]` settings: the addresses held so far carry over (with the new limits) until
    /// the new watcher's own answers replace them.
    fn replace(&mut self, mut new: Option<Watcher>) {
        if let (Some(new), Some(old)) = (new.as_mut(), self.watcher.as_ref()) {
            let carried = new.take_over(old, Instant::now());
            println!(
                "the new [dns] settings are in force: {carried} resolved addresses carried over"
            );
        }
        self.watcher = new;
    }

    /// Sends the owner what the watcher holds when addresses came or went, when the lookups'
    /// health moved, or when its copy is getting stale; a snapshot of thousands of addresses
    /// after every lookup would cost more than the lookups.
    async fn send(&mut self, changed: bool) -> bool {
        let health = self
            .watcher
            .as_ref()
            .map(|w| {
                (
                    w.failing().into_iter().map(str::to_owned).collect(),
                    w.resolver_down(),
                )
            })
            .unwrap_or_default();
        let due = match &self.sent {
            None => true,
            Some((at, failing, down)) => {
                at.elapsed() >= SNAPSHOT_EVERY || (failing, *down) != (&health.0, health.1)
            }
        };
        if !changed && !due {
            return true;
        }
        self.sent = Some((Instant::now(), health.0, health.1));
        let resolved = Resolved {
            snapshot: self.watcher.as_ref().map(Watcher::snapshot),
            changed,
        };
        self.out.send(resolved).await.is_ok()
    }

    /// Records the addresses held: when something came or went, else at most every half
    /// minute (expiries move with every answer; each write is an fsync).
    fn save(&mut self, changed: bool, looked_up: bool) {
        let (Some(w), Some(state)) = (&self.watcher, &self.state) else {
            return;
        };
        let stale = self
            .saved
            .is_none_or(|at| at.elapsed() > Duration::from_secs(30));
        if changed || (looked_up && stale) {
            if let Err(e) = state.save_resolved(&w.held()) {
                tracing::warn!(error = %e, "recording the resolved addresses");
            }
            self.saved = Some(Instant::now());
        }
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at.into()).await;
    }
}
