//! Turns what the refresher accepted into the maps: rebuild the rule set with the one in force
//! as its previous (indices stay), apply it hitlessly, log and record the change. A list that
//! fails anywhere on the way leaves the rule set in force untouched.

use std::time::Duration;

use crate::{
    changes,
    datapath::Datapath,
    endpoints::EndpointSet,
    refresh::{Poll, RefreshError, Refresher},
    rules::RuleSet,
    state::{ChangeRecord, StateDir},
};

/// Builds the effective rule set from the service's sets (and whatever else is configured).
pub type Build<'a> = dyn Fn(&[EndpointSet], Option<&RuleSet>) -> anyhow::Result<RuleSet> + 'a;

/// One version check; applies an accepted list. Returns how long the service asked to wait
/// before the next check (zero when it asked nothing).
pub async fn refresh(
    r: &mut Refresher,
    build: &Build<'_>,
    dp: &mut Datapath,
    state: Option<&StateDir>,
) -> Duration {
    match r.poll().await {
        Ok(Poll::Unchanged(version)) => {
            tracing::info!(%version, "the endpoint list is unchanged");
            Duration::ZERO
        }
        Ok(Poll::Updated(accepted)) => {
            let cause = format!("service version {}", accepted.version);
            let rules = match build(&accepted.sets, dp.installed()) {
                Ok(rules) => rules,
                Err(e) => {
                    tracing::error!(
                        error = format!("{e:#}"),
                        "the new endpoint list does not make a rule set; keeping the one in force"
                    );
                    return Duration::ZERO;
                }
            };
            let change = changes::summarize(dp.installed(), &rules, &cause);
            match dp.apply(rules) {
                Ok(report) => {
                    for (target, c) in &report.removed {
                        tracing::info!(prefix = %target, packets = c.packets, bytes = c.bytes, "rule removed");
                    }
                    tracing::info!(version = %accepted.version, "applied the endpoint list: {}", changes::describe(&change));
                    if let Some(state) = state {
                        record(state, change);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "applying the new endpoint list failed; the maps still allow what they allowed")
                }
            }
            Duration::ZERO
        }
        Err(e) => {
            let wait = match &e {
                RefreshError::Service(s) => s.wait().unwrap_or(Duration::ZERO),
                _ => Duration::ZERO,
            };
            tracing::warn!(error = %e, "endpoint web service check failed; the list in force stays");
            wait
        }
    }
}

pub fn record(state: &StateDir, change: ChangeRecord) {
    if let Err(e) = state.record_change(change) {
        tracing::warn!(error = %e, "recording the change");
    }
}
