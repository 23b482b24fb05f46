//! Moves the maps to a new rule set hitlessly, with the change logged and timed.

use crate::{
    daemon::state::ChangeRecord,
    datapath::Datapath,
    ruleset::{changes, rules::RuleSet},
    sources::endpoints::EndpointSet,
};

/// A new service list in force: the outcome, the change and the effective list it made.
pub struct Taken {
    pub outcome: String,
    pub change: ChangeRecord,
    pub effective: Vec<EndpointSet>,
}

/// Applies what a validated service list built (the effective list and its rules, built with
/// the rule set in force as their previous); the error is the outcome when it was not taken,
/// and the rule set in force stays.
pub fn take_list(
    dp: &mut Datapath,
    built: anyhow::Result<(Vec<EndpointSet>, RuleSet)>,
    version: &str,
) -> Result<Taken, String> {
    let cause = format!("service version {version}");
    let (effective, rules) = match built {
        Ok(built) => built,
        Err(e) => {
            tracing::error!(
                error = format!("{e:#}"),
                "the new endpoint list does not make a rule set; keeping the one in force"
            );
            return Err(format!(
                "{cause} not applied (asked for again at the next check): {e:#}"
            ));
        }
    };
    match apply(dp, rules, &cause) {
        Some(change) => Ok(Taken {
            outcome: format!("{cause} applied: {}", changes::describe(&change)),
            change,
            effective,
        }),
        None => Err(format!(
            "{cause} not applied: the map update failed; the maps still allow what they allowed"
        )),
    }
}

/// Moves the maps to `rules` hitlessly and logs what changed; `None` when it failed (the maps
/// still allow what they allowed).
pub fn apply(dp: &mut Datapath, rules: RuleSet, cause: &str) -> Option<ChangeRecord> {
    let started = std::time::Instant::now();
    let applied = dp.apply(rules);
    crate::daemon::metrics::daemon().map_update(started.elapsed());
    match applied {
        Ok(report) => {
            let change = changes::of_update(&report, cause);
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
