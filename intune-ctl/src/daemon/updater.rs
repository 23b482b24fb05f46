//! Turns what the refresher accepted into the maps: rebuild the rule set with the one in force
//! as its previous (indices stay), apply it hitlessly, log and record the change. A list that
//! fails anywhere on the way leaves the rule set in force untouched. Names resolve the same
//! way: the addresses that came and went rebuild the rule set, applied hitlessly too.

use std::time::Duration;

use crate::{
    ruleset::changes,
    datapath::Datapath,
    sources::endpoints::EndpointSet,
    sources::refresh::{Poll, RefreshError, Refresher},
    sources::resolve::{Step, Watcher},
    ruleset::rules::RuleSet,
    daemon::state::{ChangeRecord, StateDir},
};

/// Builds the effective rule set from the service's sets (and whatever else is configured).
pub type Build<'a> = dyn Fn(&[EndpointSet], Option<&RuleSet>) -> anyhow::Result<RuleSet> + 'a;

/// What one check did.
#[derive(Clone, Debug)]
pub struct Refreshed {
    /// How long the service asked to wait before the next check (zero when it asked nothing).
    pub wait: Duration,
    /// One line: unchanged, applied, or why not.
    pub outcome: String,
}

/// One version check; applies an accepted list.
pub async fn refresh(
    r: &mut Refresher,
    build: &Build<'_>,
    dp: &mut Datapath,
    state: Option<&StateDir>,
) -> Refreshed {
    let polled = r.poll().await;
    crate::daemon::metrics::daemon().refreshed(polled.is_ok());
    let done = |outcome: String| Refreshed {
        wait: Duration::ZERO,
        outcome,
    };
    match polled {
        Ok(Poll::Unchanged(version)) => {
            tracing::info!(%version, "the endpoint list is unchanged");
            done(format!("version {version} unchanged"))
        }
        Ok(Poll::Candidate(candidate)) => {
            let cause = format!("service version {}", candidate.version);
            let rules = match build(&candidate.sets, dp.installed()) {
                Ok(rules) => rules,
                Err(e) => {
                    tracing::error!(
                        error = format!("{e:#}"),
                        "the new endpoint list does not make a rule set; keeping the one in force"
                    );
                    return done(format!(
                        "{cause} not applied (asked for again at the next check): {e:#}"
                    ));
                }
            };
            match apply(dp, rules, &cause) {
                Some(change) => {
                    let outcome = format!("{cause} applied: {}", changes::describe(&change));
                    if let Err(e) = r.accept(candidate) {
                        tracing::warn!(error = %e, "the new list is in force but not cached");
                    }
                    if let Some(state) = state {
                        record(state, change);
                    }
                    done(outcome)
                }
                None => done(format!("{cause} not applied: the map update failed")),
            }
        }
        Err(e) => {
            let wait = match &e {
                RefreshError::Service(s) => s.wait().unwrap_or(Duration::ZERO),
                _ => Duration::ZERO,
            };
            tracing::warn!(error = %e, "endpoint web service check failed; the list in force stays");
            Refreshed {
                wait,
                outcome: format!("failed: {e}"),
            }
        }
    }
}

/// Moves the maps to `rules` hitlessly and logs what changed; `None` when it failed (the maps
/// still allow what they allowed).
pub fn apply(dp: &mut Datapath, rules: RuleSet, cause: &str) -> Option<ChangeRecord> {
    let change = changes::summarize(dp.installed(), &rules, cause);
    let started = std::time::Instant::now();
    let applied = dp.apply(rules);
    crate::daemon::metrics::daemon().map_update(started.elapsed());
    match applied {
        Ok(report) => {
            for (target, c) in &report.removed {
                tracing::info!(prefix = %target, packets = c.packets, bytes = c.bytes, "rule removed");
            }
            tracing::info!(
                cause,
                "applied the endpoint list: {}",
                changes::describe(&change)
            );
            Some(change)
        }
        Err(e) => {
            tracing::error!(cause, error = %e, "applying the new rule set failed; the maps still allow what they allowed");
            None
        }
    }
}

/// Rebuilds the rule set with the watcher's addresses, given the rule set in force.
pub type Rebuild<'a> = dyn Fn(&Watcher, Option<&RuleSet>) -> anyhow::Result<RuleSet> + 'a;

/// One round of the names that are due; applies the addresses that came and went.
pub async fn resolve(w: &mut Watcher, rebuild: &Rebuild<'_>, dp: &mut Datapath) -> Step {
    let step = w.step(std::time::Instant::now()).await;
    if step.changed() {
        match rebuild(w, dp.installed()) {
            Ok(rules) => {
                apply(dp, rules, "DNS answers");
            }
            Err(e) => tracing::error!(
                error = format!("{e:#}"),
                "the resolved addresses do not make a rule set; keeping the one in force"
            ),
        }
    }
    step
}

pub fn record(state: &StateDir, change: ChangeRecord) {
    if let Err(e) = state.record_change(change) {
        tracing::warn!(error = %e, "recording the change");
    }
}
