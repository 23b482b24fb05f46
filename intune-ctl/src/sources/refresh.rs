//! Keeping the web service's list current: ask for the version, fetch the list only when it
//! changed, validate it against the one in force, keep it as the last-known-good cache.
//! Nothing here touches a map: the caller turns an accepted list into a rule set.

use std::sync::Arc;

use crate::{
    daemon::state::{CachedResponse, StateDir, StateError, now_rfc3339},
    sources::endpoints::{
        EndpointSet, Source,
        order::PrefixKeys,
        parse_endpoint_sets,
        service::{ServiceClient, ServiceError},
    },
};

/// A list of the service's that passed validation.
#[derive(Clone, Debug)]
pub struct Accepted {
    pub version: String,
    /// Shared with whoever builds rules of it (the daemon's datapath owner): held once.
    pub sets: Arc<Vec<EndpointSet>>,
}

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("rejected version {version}: {reason}; the list in force stays")]
    Rejected { version: String, reason: Rejection },
    #[error("saving the last-known-good cache: {0}")]
    State(#[from] StateError),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Rejection {
    #[error("the list holds no endpoint set")]
    Empty,
    #[error(
        "it would remove {removed} of the {previous} prefixes in force, more than the {limit_percent}% allowed"
    )]
    Shrinks {
        removed: usize,
        previous: usize,
        limit_percent: u32,
    },
    #[error(
        "it would add {added} prefixes to the {previous} in force, more than {limit_factor} times as many"
    )]
    Grows {
        added: usize,
        previous: usize,
        limit_factor: u32,
    },
}

/// A new list may add at most this many times the prefixes in force (Intune's list grew by
/// about a third in its largest change): more is a compromised or broken service.
pub const MAX_GROWTH_FACTOR: u32 = 4;
/// A first list (nothing in force to compare with) may hold at most this many prefixes.
pub const MAX_FIRST_PREFIXES: usize = 20_000;

/// Checks a new list against the one in force, given by its [`census`]: not empty, not
/// removing more than `max_shrink` (a share, 0 to 1) of the previous list's prefixes, not
/// adding more than [`MAX_GROWTH_FACTOR`] times them. The new list's census, to keep with it
/// for the next check.
pub fn validate(
    new: &[EndpointSet],
    previous: Option<&PrefixKeys>,
    max_shrink: f64,
) -> Result<PrefixKeys, Rejection> {
    if new.is_empty() {
        return Err(Rejection::Empty);
    }
    // A list may hold 100,000 prefixes and this runs on every one fetched: each list's
    // prefixes in order as integers (a set's are sorted when it is read), then one walk of
    // both; the list in force was counted when it came.
    let is = census(new);
    if let Some(was) = previous {
        let kept = was.common(&is);
        let (before, added) = (was.len(), is.len() - kept);
        let removed = before - kept;
        if before != 0 && removed as f64 > max_shrink * before as f64 {
            return Err(Rejection::Shrinks {
                removed,
                previous: before,
                limit_percent: (max_shrink * 100.0).round() as u32,
            });
        }
        // A small list in force (a test, a narrow selection) may still grow to a first list's
        // size.
        let limit = (before * MAX_GROWTH_FACTOR as usize).max(MAX_FIRST_PREFIXES);
        if added > limit {
            return Err(Rejection::Grows {
                added,
                previous: before,
                limit_factor: MAX_GROWTH_FACTOR,
            });
        }
    } else {
        let added = is.len();
        if added > MAX_FIRST_PREFIXES {
            return Err(Rejection::Grows {
                added,
                previous: 0,
                limit_factor: MAX_GROWTH_FACTOR,
            });
        }
    }
    Ok(is)
}

/// The distinct prefixes of a list, sorted: what [`validate`] compares.
pub fn census(sets: &[EndpointSet]) -> PrefixKeys {
    // Room for all at once: a list of 100,000 grown step by step copies itself a dozen times.
    let mut keys = PrefixKeys::with_capacity(sets.iter().map(|s| s.ips.len()).sum());
    keys.extend(sets.iter().flat_map(|s| &s.ips));
    keys.sort();
    keys
}

impl Refresher {
    /// The refresher `[sources]` asks for (its last accepted list from the cache in
    /// `state_dir`), or `None` with the service off.
    pub fn of(
        s: &crate::settings::SourcesSettings,
        state_dir: &std::path::Path,
    ) -> Result<Option<Refresher>, RefreshError> {
        if !s.service {
            return Ok(None);
        }
        let state = StateDir::open(state_dir)?;
        let client = ServiceClient::new(
            crate::sources::endpoints::service::ServiceConfig::of(s),
            state.client_request_id()?,
        )?;
        Ok(Some(Refresher::new(client, state, s.max_shrink)))
    }

    /// The service's last accepted list from the cache in `state_dir`, without a request;
    /// nothing when the service is off or nothing is cached.
    pub fn cached_sets(
        s: &crate::settings::SourcesSettings,
        state_dir: &std::path::Path,
    ) -> Vec<EndpointSet> {
        match Refresher::of(s, state_dir) {
            Ok(Some(r)) => r.accepted().map(|a| a.sets.to_vec()).unwrap_or_default(),
            _ => Vec::new(),
        }
    }
}

/// What a poll found.
#[derive(Debug)]
pub enum Poll {
    /// The version is the one in force.
    Unchanged(String),
    /// A new list that passed validation; it becomes the list in force (and the cache) only
    /// through [`Refresher::accept`], once its rule set is built and applied.
    Candidate(Candidate),
}

/// A validated list not yet in force.
#[derive(Debug)]
pub struct Candidate {
    pub version: String,
    pub sets: Arc<Vec<EndpointSet>>,
    body: serde_json::Value,
    census: PrefixKeys,
}

pub struct Refresher {
    client: ServiceClient,
    state: StateDir,
    max_shrink: f64,
    accepted: Option<Accepted>,
    /// The accepted list's census, counted when it came (or at the first check after a
    /// start from the cache).
    census: Option<PrefixKeys>,
}

impl Refresher {
    /// Starts from the last-known-good cache when there is a readable one for this instance;
    /// a corrupt cache is reported and ignored.
    pub fn new(client: ServiceClient, state: StateDir, max_shrink: f64) -> Refresher {
        let instance = client.config().instance.as_str();
        let accepted = match state.load_cache() {
            Ok(Some(cache)) if cache.instance == instance => {
                let text = cache.endpoints.to_string();
                match parse_endpoint_sets(&text, Source::Service) {
                    Ok(sets) => {
                        let sets: Vec<EndpointSet> = sets
                            .into_iter()
                            .filter(|s| client.config().keeps(s))
                            .collect();
                        tracing::info!(version = %cache.version, fetched_at = %cache.fetched_at, sets = sets.len(), "using the cached endpoint list");
                        Some(Accepted {
                            version: cache.version,
                            sets: Arc::new(sets),
                        })
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the cached endpoint list does not parse; ignoring it");
                        None
                    }
                }
            }
            Ok(Some(cache)) => {
                tracing::info!(cached = %cache.instance, instance, "the cache is for another instance; ignoring it");
                None
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring the last-known-good cache");
                None
            }
        };
        Refresher {
            client,
            state,
            max_shrink,
            accepted,
            census: None,
        }
    }

    /// The list in force.
    pub fn client(&self) -> &ServiceClient {
        &self.client
    }

    pub fn accepted(&self) -> Option<&Accepted> {
        self.accepted.as_ref()
    }

    /// Asks for the version; fetches and validates the list when it changed. Nothing is kept
    /// until [`Refresher::accept`]: a list that cannot be built or applied is asked for again
    /// at the next check.
    pub async fn poll(&mut self) -> Result<Poll, RefreshError> {
        let version = self.client.version().await?;
        if self.accepted.as_ref().is_some_and(|a| a.version == version) {
            return Ok(Poll::Unchanged(version));
        }
        let list = self.client.endpoints().await?;
        if self.census.is_none()
            && let Some(accepted) = &self.accepted
        {
            self.census = Some(census(&accepted.sets));
        }
        let counted =
            validate(&list.sets, self.census.as_ref(), self.max_shrink).map_err(|reason| {
                RefreshError::Rejected {
                    version: version.clone(),
                    reason,
                }
            })?;
        Ok(Poll::Candidate(Candidate {
            version,
            sets: Arc::new(list.sets),
            body: list.body,
            census: counted,
        }))
    }

    /// Makes a candidate whose rule set is in force the accepted list, and the last-known-good
    /// cache. A cache that cannot be written is an error, but the list is in force.
    pub fn accept(&mut self, candidate: Candidate) -> Result<&Accepted, RefreshError> {
        let saved = self.state.save_cache(&CachedResponse {
            instance: self.client.config().instance.as_str().into(),
            version: candidate.version.clone(),
            fetched_at: now_rfc3339(),
            endpoints: candidate.body,
        });
        self.census = Some(candidate.census);
        let accepted = self.accepted.insert(Accepted {
            version: candidate.version,
            sets: candidate.sets,
        });
        saved?;
        Ok(accepted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `validate` against the list `before` (its census counted here).
    fn check(
        new: &[EndpointSet],
        before: Option<&[EndpointSet]>,
        max_shrink: f64,
    ) -> Result<(), Rejection> {
        validate(new, before.map(census).as_ref(), max_shrink).map(|_| ())
    }

    fn sets(ips: &[&str]) -> Vec<EndpointSet> {
        let json = serde_json::json!([{"id": 1, "serviceArea": "MEM", "category": "Default", "tcpPorts": "443", "ips": ips}]);
        parse_endpoint_sets(&json.to_string(), Source::Service).unwrap()
    }

    #[test]
    fn a_prefix_listed_twice_counts_once() {
        let (a, b, c, d) = (
            "192.0.2.0/26",
            "192.0.2.64/26",
            "192.0.2.128/26",
            "192.0.2.192/26",
        );
        let before = [sets(&[a, b, c]), sets(&[a, d])].concat();
        // b, c and d left (3 of 4 distinct), one new prefix (twice).
        let new = [sets(&[a, "198.51.100.0/24"]), sets(&["198.51.100.0/24", a])].concat();
        assert_eq!(
            check(&new, Some(&before), 0.5),
            Err(Rejection::Shrinks {
                removed: 3,
                previous: 4,
                limit_percent: 50
            })
        );
        assert_eq!(check(&new, Some(&before), 0.75), Ok(()));
    }

    #[test]
    fn both_families_are_counted_each_by_its_own() {
        // The same bits as an IPv4 and an IPv6 prefix are two prefixes.
        let before = sets(&[
            "192.0.2.0/24",
            "::c000:200/120",
            "2001:db8::/32",
            "2001:db8::/48",
        ]);
        let new = sets(&["::c000:200/120", "2001:db8::/48", "2001:db8:1::/48"]);
        // 192.0.2.0/24 and 2001:db8::/32 left: 2 of 4, at the limit of a half.
        assert_eq!(check(&new, Some(&before), 0.5), Ok(()));
        assert_eq!(
            check(&new, Some(&before), 0.49),
            Err(Rejection::Shrinks {
                removed: 2,
                previous: 4,
                limit_percent: 49
            })
        );
    }

    #[test]
    fn empty_lists_and_big_shrinks_are_rejected() {
        assert_eq!(check(&[], None, 0.5), Err(Rejection::Empty));
        let before = sets(&[
            "192.0.2.0/26",
            "192.0.2.64/26",
            "192.0.2.128/26",
            "192.0.2.192/26",
        ]);
        assert_eq!(
            check(
                &sets(&["192.0.2.0/26", "192.0.2.64/26"]),
                Some(&before),
                0.5
            ),
            Ok(())
        );
        assert_eq!(
            check(&sets(&["192.0.2.0/26"]), Some(&before), 0.5),
            Err(Rejection::Shrinks {
                removed: 3,
                previous: 4,
                limit_percent: 50
            })
        );
        assert_eq!(check(&sets(&["192.0.2.0/26"]), None, 0.5), Ok(()));
    }
}
