//! When each name is resolved next and how long each address it gave stays: pure bookkeeping
//! over a clock the caller passes in, so every rule here is tested without waiting.
//!
//! - A name is re-resolved when its answer expires: its TTL clamped to `[min_ttl, max_ttl]`,
//!   plus up to a tenth more (fixed per name) so names that shared a TTL drift apart.
//! - New names are paced at `max_per_second`, so hundreds of names never go out in one burst.
//! - An address stays until TTL + grace after the last answer that held it.
//! - A failed name is retried with backoff (min TTL doubling up to max backoff); its addresses stay
//!   until their grace runs out.
//! - While the resolver gives no good answer at all (every recent lookup, over more than one
//!   name, failed), nothing expires: a resolver that is down never empties the map.

use std::{
    collections::{BTreeMap, BTreeSet},
    hash::{Hash, Hasher},
    net::IpAddr,
    time::{Duration, Instant},
};

use super::lookup::{Answer, LookupError};

/// Names due this close together go out in one batch: a few wakeups a second, however many
/// names, rather than one per name.
pub const BATCH: Duration = Duration::from_millis(250);

#[derive(Clone, Debug)]
pub struct ScheduleConfig {
    pub min_ttl: Duration,
    pub max_ttl: Duration,
    /// How long an address outlives the TTL of the last answer that held it.
    pub grace: Duration,
    /// Lookups started per second at most.
    pub max_per_second: u32,
    /// Longest wait before retrying a failed name: a resolver back after an outage is asked
    /// again soon, whatever the TTLs.
    pub max_backoff: Duration,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            min_ttl: Duration::from_secs(30),
            max_ttl: Duration::from_secs(3600),
            grace: Duration::from_secs(600),
            max_per_second: 50,
            max_backoff: Duration::from_secs(300),
        }
    }
}

/// One name's state.
#[derive(Clone, Debug)]
pub struct NameState {
    /// Ids of the endpoint sets that list the name.
    pub sets: Vec<u32>,
    /// When the name is looked up next; `None` while a lookup is out.
    pub due: Option<Instant>,
    /// Addresses and the instant each may leave.
    pub addrs: BTreeMap<IpAddr, Instant>,
    /// The CNAME chain of the last answer.
    pub chain: Vec<String>,
    /// The TTL of the last answer, as given.
    pub ttl: Option<Duration>,
    /// The last failure, cleared by an answer.
    pub error: Option<LookupError>,
    /// Failures in a row.
    pub failures: u32,
}

/// What a recorded result did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    /// Addresses the name had not held.
    pub added: Vec<IpAddr>,
    /// When the name is looked up again.
    pub retry_in: Duration,
}

pub struct Schedule {
    config: ScheduleConfig,
    names: BTreeMap<String, NameState>,
    /// Pacing: the instant the next lookup may start.
    next_start: Option<Instant>,
    /// Names that failed since the last good answer (any name's).
    failing_since_good: BTreeSet<String>,
}

impl Schedule {
    pub fn new(config: ScheduleConfig) -> Schedule {
        Schedule {
            config,
            names: BTreeMap::new(),
            next_start: None,
            failing_since_good: BTreeSet::new(),
        }
    }

    pub fn config(&self) -> &ScheduleConfig {
        &self.config
    }

    pub fn names(&self) -> &BTreeMap<String, NameState> {
        &self.names
    }

    /// Follows the list: new names are due now (paced), gone names leave with their
    /// addresses. Returns whether any address left.
    pub fn set_names(&mut self, names: &BTreeMap<String, Vec<u32>>, now: Instant) -> bool {
        let before = self.names.len();
        let mut dropped_addrs = false;
        self.names.retain(|name, state| {
            let keep = names.contains_key(name);
            dropped_addrs |= !keep && !state.addrs.is_empty();
            keep
        });
        self.failing_since_good.retain(|n| names.contains_key(n));
        for (name, sets) in names {
            let state = self.names.entry(name.clone()).or_insert_with(|| NameState {
                sets: Vec::new(),
                due: Some(now),
                addrs: BTreeMap::new(),
                chain: Vec::new(),
                ttl: None,
                error: None,
                failures: 0,
            });
            state.sets.clone_from(sets);
        }
        tracing::debug!(before, after = self.names.len(), "names to resolve");
        dropped_addrs
    }

    fn pace(&self) -> Duration {
        Duration::from_secs(1) / self.config.max_per_second.max(1)
    }

    /// The names whose lookup is due (or falls due within [`BATCH`]), as many as pacing
    /// allows; they count as out until [`Schedule::record`]. Earliest first.
    pub fn take_due(&mut self, now: Instant) -> Vec<String> {
        let pace = self.pace();
        let horizon = now + BATCH;
        // No credit piles up while idle: at most one lookup of catching up.
        let floor = now.checked_sub(pace).unwrap_or(now);
        let mut start = self.next_start.unwrap_or(now).max(floor);
        let mut due: Vec<(Instant, &String)> = self
            .names
            .iter()
            .filter_map(|(n, s)| s.due.filter(|d| *d <= horizon).map(|d| (d, n)))
            .collect();
        due.sort();
        let mut taken = Vec::new();
        for (_, name) in due {
            if start > horizon {
                break;
            }
            taken.push(name.clone());
            start += pace;
        }
        for name in &taken {
            if let Some(s) = self.names.get_mut(name) {
                s.due = None;
            }
        }
        if !taken.is_empty() {
            self.next_start = Some(start);
        }
        taken
    }

    /// Every name not out is due now (an admin's `refresh`); pacing still applies.
    pub fn all_due(&mut self, now: Instant) {
        for state in self.names.values_mut() {
            if state.due.is_some() {
                state.due = Some(now);
            }
        }
    }

    /// Records a lookup's result for `name`.
    pub fn record(
        &mut self,
        name: &str,
        result: Result<Answer, LookupError>,
        now: Instant,
    ) -> Recorded {
        let config = self.config.clone();
        let Some(state) = self.names.get_mut(name) else {
            // The list dropped the name while its lookup was out.
            return Recorded::default();
        };
        let mut recorded = Recorded::default();
        let good = match &result {
            Ok(_) | Err(LookupError::NxDomain) => true,
            Err(_) => false,
        };
        match result {
            Ok(answer) => {
                let ttl = answer.ttl.clamp(config.min_ttl, config.max_ttl);
                let keep_until = now + ttl + config.grace;
                for addr in answer.addrs {
                    if state.addrs.insert(addr, keep_until).is_none() {
                        recorded.added.push(addr);
                    }
                }
                state.chain = answer.chain;
                state.ttl = Some(answer.ttl);
                state.error = None;
                state.failures = 0;
                recorded.retry_in = ttl + spread(name, ttl);
            }
            Err(error) => {
                state.failures += 1;
                let backoff = config
                    .min_ttl
                    .saturating_mul(1 << (state.failures - 1).min(16))
                    .min(config.max_backoff.max(config.min_ttl));
                state.error = Some(error);
                recorded.retry_in = backoff + spread(name, backoff);
            }
        }
        state.due = Some(now + recorded.retry_in);
        if good {
            self.failing_since_good.clear();
        } else {
            self.failing_since_good.insert(name.to_string());
        }
        recorded
    }

    /// Takes back an address `name` held before a restart or a reload, for `remaining` (cut to
    /// what a fresh answer could give: `max_ttl` plus grace). Only a name followed now; an
    /// address it holds already keeps its own expiry. Returns whether it was taken.
    pub fn restore(&mut self, name: &str, addr: IpAddr, remaining: Duration, now: Instant) -> bool {
        let limit = self.config.max_ttl + self.config.grace;
        let Some(state) = self.names.get_mut(name) else {
            return false;
        };
        if state.addrs.contains_key(&addr) || remaining.is_zero() {
            return false;
        }
        state.addrs.insert(addr, now + remaining.min(limit));
        true
    }

    /// No good answer since more than one name failed (or the only name did): the resolver,
    /// not a name, is the trouble.
    pub fn resolver_down(&self) -> bool {
        let needed = self.names.len().clamp(1, 2);
        self.failing_since_good.len() >= needed
    }

    /// Drops addresses whose grace has run out, unless the resolver is down. Returns them.
    pub fn expire(&mut self, now: Instant) -> Vec<(String, IpAddr)> {
        if self.resolver_down() {
            return Vec::new();
        }
        let mut gone = Vec::new();
        for (name, state) in &mut self.names {
            state.addrs.retain(|addr, until| {
                let keep = *until > now;
                if !keep {
                    gone.push((name.clone(), *addr));
                }
                keep
            });
        }
        gone
    }

    /// When something is next to do: a lookup due (not before pacing allows) or an address
    /// to expire.
    pub fn next_wakeup(&self) -> Option<Instant> {
        let due = self.names.values().filter_map(|s| s.due).min();
        let due = match (due, self.next_start) {
            (Some(d), Some(start)) => Some(d.max(start)),
            (d, _) => d,
        };
        let expiry = if self.resolver_down() {
            None
        } else {
            self.names
                .values()
                .flat_map(|s| s.addrs.values().copied())
                .min()
        };
        match (due, expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Every address held, with the names that gave it.
    pub fn addresses(&self) -> BTreeMap<IpAddr, Vec<&str>> {
        let mut out: BTreeMap<IpAddr, Vec<&str>> = BTreeMap::new();
        for (name, state) in &self.names {
            for addr in state.addrs.keys() {
                out.entry(*addr).or_default().push(name);
            }
        }
        out
    }
}

/// Up to a tenth of `base`, fixed per name: names that share a TTL drift apart instead of
/// going out together forever.
fn spread(name: &str, base: Duration) -> Duration {
    let mut h = rustc_hash::FxHasher::default();
    name.hash(&mut h);
    base / 10 * (h.finish() % 1000) as u32 / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn config() -> ScheduleConfig {
        ScheduleConfig {
            min_ttl: 30 * S,
            max_ttl: 3600 * S,
            grace: 600 * S,
            max_per_second: 10,
            max_backoff: 300 * S,
        }
    }

    fn names(list: &[&str]) -> BTreeMap<String, Vec<u32>> {
        list.iter().map(|n| (n.to_string(), vec![1])).collect()
    }

    #[expect(clippy::unnecessary_wraps, reason = "what a lookup returns, to record")]
    fn answer(addrs: &[&str], ttl: u64) -> Result<Answer, LookupError> {
        Ok(Answer {
            addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            ttl: Duration::from_secs(ttl),
            chain: vec![],
        })
    }

    #[test]
    fn restored_addresses_keep_what_was_left_at_most_max_ttl_plus_grace() {
        let t0 = Instant::now();
        let mut s = Schedule::new(config());
        s.set_names(&names(&["a.test", "b.test"]), t0);
        let addr = |a: &str| a.parse::<IpAddr>().unwrap();
        assert!(s.restore("a.test", addr("192.0.2.1"), 100 * S, t0));
        // 68 years recorded: cut to an hour and ten minutes.
        assert!(s.restore("b.test", addr("192.0.2.2"), 2_147_483_647 * S, t0));
        assert!(
            !s.restore("c.test", addr("192.0.2.3"), 100 * S, t0),
            "not followed"
        );
        assert!(
            !s.restore("a.test", addr("192.0.2.4"), Duration::ZERO, t0),
            "expired"
        );
        assert_eq!(s.names()["a.test"].addrs[&addr("192.0.2.1")], t0 + 100 * S);
        assert_eq!(s.names()["b.test"].addrs[&addr("192.0.2.2")], t0 + 4200 * S);
        // An answer's own expiry is kept over a recorded one.
        s.record("a.test", answer(&["192.0.2.5"], 60), t0);
        assert!(!s.restore("a.test", addr("192.0.2.5"), 10 * S, t0));
        assert_eq!(s.names()["a.test"].addrs[&addr("192.0.2.5")], t0 + 660 * S);
        // Still looked up at once.
        assert!(s.take_due(t0).contains(&"b.test".to_string()));
        assert!(
            s.expire(t0 + 101 * S)
                .contains(&("a.test".to_string(), addr("192.0.2.1")))
        );
    }

    #[test]
    fn new_names_are_paced() {
        let t0 = Instant::now();
        let mut s = Schedule::new(config());
        let list: Vec<String> = (0..100).map(|i| format!("n{i}.example")).collect();
        let refs: Vec<&str> = list.iter().map(String::as_str).collect();
        s.set_names(&names(&refs), t0);
        let first = s.take_due(t0);
        assert!(first.len() <= 4, "a burst of {}", first.len());
        let mut taken = first.len();
        let mut t = t0;
        for _ in 0..200 {
            t += Duration::from_millis(100);
            taken += s.take_due(t).len();
        }
        assert_eq!(taken, 100, "all names go out in the end");
        // 10 a second: 100 names take about ten seconds, never much less.
        let mut s = Schedule::new(config());
        s.set_names(&names(&refs), t0);
        let in_5s: usize = (0..=50)
            .map(|i| s.take_due(t0 + Duration::from_millis(100) * i).len())
            .sum();
        assert!((45..=56).contains(&in_5s), "{in_5s} in 5 s");
    }

    #[test]
    fn ttl_drives_the_next_lookup_clamped() {
        let t0 = Instant::now();
        let mut s = Schedule::new(config());
        s.set_names(&names(&["a.example", "b.example", "c.example"]), t0);
        let due: usize = (0..10)
            .map(|i| {
                s.take_due(t0 + 10 * S + Duration::from_millis(100) * i)
                    .len()
            })
            .sum();
        assert_eq!(due, 3);
        let a = s.record("a.example", answer(&["192.0.2.1"], 300), t0);
        assert!(
            a.retry_in >= 300 * S && a.retry_in <= 330 * S,
            "{:?}",
            a.retry_in
        );
        let b = s.record("b.example", answer(&["192.0.2.2"], 1), t0);
        assert!(
            b.retry_in >= 30 * S && b.retry_in <= 33 * S,
            "clamped up: {:?}",
            b.retry_in
        );
        let c = s.record("c.example", answer(&["192.0.2.3"], 86400), t0);
        assert!(
            c.retry_in >= 3600 * S && c.retry_in <= 3960 * S,
            "clamped down"
        );
        assert!(s.take_due(t0 + 29 * S).is_empty());
        assert_eq!(s.take_due(t0 + 34 * S), ["b.example"]);
    }

    #[test]
    fn a_rotated_address_stays_until_ttl_and_grace() {
        let t0 = Instant::now();
        let mut s = Schedule::new(config());
        s.set_names(&names(&["cdn.example", "other.example"]), t0);
        s.take_due(t0 + S);
        s.record("other.example", answer(&["192.0.2.9"], 3600), t0);
        let r = s.record("cdn.example", answer(&["192.0.2.1"], 60), t0);
        assert_eq!(r.added, ["192.0.2.1".parse::<IpAddr>().unwrap()]);
        // At 70 s the name answers with another address.
        let r = s.record("cdn.example", answer(&["192.0.2.2"], 60), t0 + 70 * S);
        assert_eq!(r.added, ["192.0.2.2".parse::<IpAddr>().unwrap()]);
        assert!(s.expire(t0 + 659 * S).is_empty(), "grace: 60 + 600 s");
        assert_eq!(s.addresses().len(), 3);
        assert_eq!(
            s.expire(t0 + 661 * S),
            [("cdn.example".to_string(), "192.0.2.1".parse().unwrap())]
        );
        assert!(s.addresses().contains_key(&"192.0.2.2".parse().unwrap()));
    }

    #[test]
    fn failures_back_off_and_keep_addresses_until_grace() {
        let t0 = Instant::now();
        let mut s = Schedule::new(config());
        s.set_names(&names(&["bad.example", "good.example"]), t0);
        s.take_due(t0 + S);
        s.record("bad.example", answer(&["192.0.2.1"], 60), t0);
        s.record("good.example", answer(&["192.0.2.2"], 3600), t0);
        let retries: Vec<Duration> = (1..=4)
            .map(|i| {
                let t = t0 + 60 * S * i;
                s.record("bad.example", Err(LookupError::ServFail), t)
                    .retry_in
            })
            .collect();
        for (i, r) in retries.iter().enumerate() {
            let base = 30 * S * (1 << i);
            assert!(*r >= base && *r <= base + base / 10, "{i}: {r:?}");
        }
        let capped = s.record("bad.example", Err(LookupError::ServFail), t0 + 290 * S);
        assert!(
            capped.retry_in >= 300 * S && capped.retry_in <= 330 * S,
            "max backoff"
        );
        // good.example answered since: the resolver works, so bad.example's address goes.
        s.record("good.example", answer(&["192.0.2.2"], 3600), t0 + 300 * S);
        assert!(!s.resolver_down());
        assert_eq!(s.expire(t0 + 661 * S).len(), 1);
        assert_eq!(s.names()["bad.example"].error, Some(LookupError::ServFail));
    }

    #[test]
    fn a_resolver_that_is_down_never_empties_the_map() {
        let t0 = Instant::now();
        let mut s = Schedule::new(config());
        s.set_names(&names(&["a.example", "b.example"]), t0);
        s.take_due(t0 + S);
        s.record("a.example", answer(&["192.0.2.1"], 60), t0);
        s.record("b.example", answer(&["192.0.2.2"], 60), t0);
        s.record("a.example", Err(LookupError::Timeout), t0 + 60 * S);
        assert!(!s.resolver_down(), "one name failing is the name's trouble");
        s.record("b.example", Err(LookupError::Timeout), t0 + 61 * S);
        assert!(s.resolver_down());
        assert!(s.expire(t0 + 10_000 * S).is_empty());
        assert_eq!(s.addresses().len(), 2);
        // It answers again: the addresses it still gives are renewed, the rest expire.
        s.record("a.example", answer(&["192.0.2.1"], 60), t0 + 10_000 * S);
        assert!(!s.resolver_down());
        assert_eq!(
            s.expire(t0 + 10_001 * S),
            [("b.example".to_string(), "192.0.2.2".parse().unwrap())]
        );
    }

    #[test]
    fn nxdomain_is_an_answer_the_name_addresses_expire() {
        let t0 = Instant::now();
        let mut s = Schedule::new(config());
        s.set_names(&names(&["gone.example"]), t0);
        s.take_due(t0 + S);
        s.record("gone.example", answer(&["192.0.2.1"], 60), t0);
        s.record("gone.example", Err(LookupError::NxDomain), t0 + 60 * S);
        assert!(!s.resolver_down());
        assert_eq!(s.expire(t0 + 661 * S).len(), 1);
    }

    #[test]
    fn names_leaving_the_list_take_their_addresses() {
        let t0 = Instant::now();
        let mut s = Schedule::new(config());
        s.set_names(&names(&["a.example", "b.example"]), t0);
        s.take_due(t0 + S);
        s.record("a.example", answer(&["192.0.2.1"], 60), t0);
        assert!(s.set_names(&names(&["b.example"]), t0 + S));
        assert!(s.addresses().is_empty());
        // A late answer for a dropped name changes nothing.
        assert_eq!(
            s.record("a.example", answer(&["192.0.2.1"], 60), t0 + S),
            Recorded::default()
        );
    }
}
