//! The plan's names looked up now, with the daemon's own watcher and `[dns]` resolvers
//! (whether or not the daemon resolves names itself).

use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::{Kind, Plan};
use crate::{
    settings::DnsSettings,
    sources::{
        endpoints::EndpointSet,
        resolve::{NameReport, Watcher},
    },
};

/// The lookups, at the resolver's pace, take at most this long; a resolver that does not
/// answer at all ends them sooner.
pub const RESOLVE_WITHIN: Duration = Duration::from_secs(30);

/// Every name of `plan` that needs a lookup, looked up once; a name left without an answer
/// or an error says why (no resolver answers, or the time ran out).
pub async fn names_of(
    plan: &Plan,
    sets: &[EndpointSet],
    dns: &DnsSettings,
) -> anyhow::Result<Vec<NameReport>> {
    let mut dns = dns.clone();
    dns.enabled = true;
    let mut watcher = Watcher::of(&dns)?.context("no resolver to ask")?;
    let give_up = Instant::now() + RESOLVE_WITHIN;
    let mut reports = watcher
        .resolve_all(&to_resolve(sets, plan), Some(give_up))
        .await;
    let why = if watcher.resolver_down() {
        "no resolver answers".to_owned()
    } else {
        format!("not looked up within {} s", RESOLVE_WITHIN.as_secs())
    };
    for r in reports
        .iter_mut()
        .filter(|r| r.addrs.is_empty() && r.error.is_none())
    {
        r.error = Some(why.clone());
    }
    Ok(reports)
}

/// The names to look up, as endpoint sets the resolver reads (each set with those names).
fn to_resolve(sets: &[EndpointSet], plan: &Plan) -> Vec<EndpointSet> {
    let mut out: Vec<EndpointSet> = Vec::new();
    for n in plan
        .names
        .iter()
        .filter(|n| n.known.is_empty() && n.kind != Kind::Wildcard)
    {
        if let Some(pos) = out.iter().position(|s| s.id == n.set) {
            out[pos].urls.push(n.name.clone());
        } else if let Some(set) = sets.iter().find(|s| s.id == n.set) {
            let mut set = set.clone();
            set.urls = vec![n.name.clone()];
            set.ips.clear();
            out.push(set);
        }
    }
    out
}
