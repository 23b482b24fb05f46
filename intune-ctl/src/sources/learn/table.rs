//! The learned addresses: each with its name, sets, port set, counter slot and expiry, at most
//! `cap` of them, the least recently seen evicted first. Pure bookkeeping: it says which map
//! writes keep the kernel's `LEARNED` map equal to it.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

/// One learned address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub address: IpAddr,
    /// Counter slot: the rule index is the learned base plus this.
    pub slot: u32,
    /// The name the device asked for, and the endpoint name it matched.
    pub asked: String,
    pub pattern: Arc<str>,
    pub sets: Arc<[u32]>,
    pub port_set: u32,
    pub expires: Instant,
    /// When an answer last gave it (the order of eviction).
    seen: u64,
}

/// What an answer taught about one address.
#[derive(Clone, Debug)]
pub struct Lesson {
    pub address: IpAddr,
    pub asked: String,
    pub pattern: Arc<str>,
    pub sets: Arc<[u32]>,
    pub port_set: u32,
    /// TTL plus grace, from now.
    pub keep: Duration,
}

/// A write to the kernel map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// Insert or update.
    Put {
        address: IpAddr,
        slot: u32,
        port_set: u32,
    },
    /// Remove; the slot's counter is free for the next address.
    Delete { address: IpAddr, slot: u32 },
}

#[derive(Debug)]
pub struct Table {
    cap: usize,
    /// The entries by slot (dense: slots are reused), and each address's slot: a map of
    /// small values grows by doubling, which for 65,536 entries of their full size would
    /// hold room for 131,072.
    slots: Vec<Option<Entry>>,
    by_address: HashMap<IpAddr, u32>,
    by_seen: BTreeMap<u64, IpAddr>,
    /// The entries by expiry: the next to expire is the first, found without a walk.
    by_expiry: BTreeSet<(Instant, IpAddr)>,
    free: Vec<u32>,
    next_slot: u32,
    clock: u64,
    pub evicted: u64,
}

impl Table {
    pub fn new(cap: u32) -> Table {
        Table {
            cap: cap as usize,
            slots: Vec::new(),
            by_address: HashMap::new(),
            by_seen: BTreeMap::new(),
            by_expiry: BTreeSet::new(),
            free: Vec::new(),
            next_slot: 0,
            clock: 0,
            evicted: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.by_address.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_address.is_empty()
    }

    pub fn holds(&self, address: IpAddr) -> bool {
        self.by_address.contains_key(&address)
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.slots.iter().flatten()
    }

    fn entry_mut(&mut self, address: IpAddr) -> Option<&mut Entry> {
        let slot = *self.by_address.get(&address)?;
        self.slots.get_mut(slot as usize)?.as_mut()
    }

    /// Takes in a lesson at `now`: a new address (evicting the least recently seen when full),
    /// or a known one seen again (its expiry only moves later).
    pub fn learn(&mut self, lesson: Lesson, now: Instant) -> Vec<Write> {
        let mut writes = Vec::new();
        if self.cap == 0 {
            return writes;
        }
        self.clock += 1;
        let expires = now + lesson.keep;
        let (by_seen, by_expiry, clock) = (&mut self.by_seen, &mut self.by_expiry, self.clock);
        if let Some(slot) = self.by_address.get(&lesson.address)
            && let Some(Some(e)) = self.slots.get_mut(*slot as usize)
        {
            by_seen.remove(&e.seen);
            e.seen = clock;
            by_seen.insert(e.seen, lesson.address);
            if expires > e.expires {
                by_expiry.remove(&(e.expires, e.address));
                e.expires = expires;
                by_expiry.insert((e.expires, e.address));
            }
            e.asked = lesson.asked;
            if e.port_set != lesson.port_set || e.pattern != lesson.pattern {
                e.port_set = lesson.port_set;
                e.pattern = lesson.pattern;
                e.sets = lesson.sets;
                writes.push(Write::Put {
                    address: e.address,
                    slot: e.slot,
                    port_set: e.port_set,
                });
            }
            return writes;
        }
        if self.by_address.len() >= self.cap
            && let Some((_, oldest)) = self.by_seen.pop_first()
        {
            self.evicted += 1;
            writes.extend(self.remove(oldest));
        }
        let slot = self.free.pop().unwrap_or_else(|| {
            self.next_slot += 1;
            self.next_slot - 1
        });
        writes.push(Write::Put {
            address: lesson.address,
            slot,
            port_set: lesson.port_set,
        });
        self.by_seen.insert(self.clock, lesson.address);
        self.by_expiry.insert((expires, lesson.address));
        self.by_address.insert(lesson.address, slot);
        let at = slot as usize;
        if self.slots.len() <= at {
            self.slots.resize_with(at + 1, || None);
        }
        self.slots[at] = Some(Entry {
            address: lesson.address,
            slot,
            asked: lesson.asked,
            pattern: lesson.pattern,
            sets: lesson.sets,
            port_set: lesson.port_set,
            expires,
            seen: self.clock,
        });
        writes
    }

    fn remove(&mut self, address: IpAddr) -> Option<Write> {
        let slot = self.by_address.remove(&address)?;
        let e = self.slots.get_mut(slot as usize)?.take()?;
        self.by_seen.remove(&e.seen);
        self.by_expiry.remove(&(e.expires, address));
        self.free.push(e.slot);
        Some(Write::Delete {
            address,
            slot: e.slot,
        })
    }

    /// Removes what expired by `now`.
    pub fn expire(&mut self, now: Instant) -> Vec<Write> {
        let mut writes = Vec::new();
        while let Some(&(at, address)) = self.by_expiry.first()
            && at <= now
        {
            writes.extend(self.remove(address));
        }
        writes
    }

    pub fn next_expiry(&self) -> Option<Instant> {
        self.by_expiry.first().map(|&(at, _)| at)
    }

    /// Follows a new rule set: entries whose endpoint name left are removed; the others take
    /// the name's new sets and port set (`of` answers both for a name, `None` when it left).
    pub fn retarget(&mut self, of: impl Fn(&str) -> Option<(Arc<[u32]>, u32)>) -> Vec<Write> {
        let mut writes = Vec::new();
        let addresses: Vec<IpAddr> = self.by_address.keys().copied().collect();
        for address in addresses {
            let Some(e) = self.entry_mut(address) else {
                continue;
            };
            match of(&e.pattern) {
                None => writes.extend(self.remove(address)),
                Some((sets, port_set)) => {
                    e.sets = sets;
                    if e.port_set != port_set {
                        e.port_set = port_set;
                        writes.push(Write::Put {
                            address,
                            slot: e.slot,
                            port_set,
                        });
                    }
                }
            }
        }
        writes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lesson(addr: &str, keep: u64) -> Lesson {
        Lesson {
            address: addr.parse().unwrap(),
            asked: "x.manage.microsoft.com".into(),
            pattern: "*.manage.microsoft.com".into(),
            sets: vec![1].into(),
            port_set: 3,
            keep: Duration::from_secs(keep),
        }
    }

    fn put(addr: &str, slot: u32) -> Write {
        Write::Put {
            address: addr.parse().unwrap(),
            slot,
            port_set: 3,
        }
    }

    #[test]
    fn new_addresses_get_slots_and_seen_again_only_extends() {
        let now = Instant::now();
        let mut t = Table::new(10);
        assert_eq!(t.learn(lesson("192.0.2.1", 60), now), [put("192.0.2.1", 0)]);
        assert_eq!(t.learn(lesson("192.0.2.2", 60), now), [put("192.0.2.2", 1)]);
        assert_eq!(t.learn(lesson("192.0.2.1", 10), now), []);
        assert_eq!(t.next_expiry(), Some(now + Duration::from_secs(60)));
        assert_eq!(t.expire(now + Duration::from_secs(59)), []);
        let gone = t.expire(now + Duration::from_secs(60));
        assert_eq!(gone.len(), 2);
        assert!(t.is_empty());
        // Freed slots are handed out again.
        let again = t.learn(lesson("192.0.2.3", 60), now);
        assert!(matches!(again[..], [Write::Put { slot: 0 | 1, .. }]));
    }

    #[test]
    fn an_extended_address_expires_at_its_new_time_and_an_evicted_one_never() {
        let now = Instant::now();
        let secs = Duration::from_secs;
        let mut t = Table::new(2);
        t.learn(lesson("192.0.2.1", 10), now);
        t.learn(lesson("192.0.2.2", 20), now);
        // Seen again with a longer TTL: 192.0.2.2 is next to expire now.
        t.learn(lesson("192.0.2.1", 30), now);
        assert_eq!(t.next_expiry(), Some(now + secs(20)));
        // A third evicts the least recently seen (192.0.2.2), whose expiry goes with it.
        t.learn(lesson("192.0.2.3", 5), now);
        assert_eq!(t.next_expiry(), Some(now + secs(5)));
        let gone = t.expire(now + secs(25));
        assert_eq!(gone.len(), 1, "{gone:?}");
        assert!(t.holds("192.0.2.1".parse().unwrap()));
        assert_eq!(t.next_expiry(), Some(now + secs(30)));
        assert_eq!(t.expire(now + secs(30)).len(), 1);
        assert_eq!(t.next_expiry(), None);
    }

    #[test]
    fn a_full_table_evicts_the_least_recently_seen() {
        let now = Instant::now();
        let mut t = Table::new(2);
        t.learn(lesson("192.0.2.1", 60), now);
        t.learn(lesson("192.0.2.2", 60), now);
        t.learn(lesson("192.0.2.1", 60), now);
        let w = t.learn(lesson("192.0.2.3", 60), now);
        assert_eq!(
            w,
            [
                Write::Delete {
                    address: "192.0.2.2".parse().unwrap(),
                    slot: 1
                },
                put("192.0.2.3", 1)
            ]
        );
        assert_eq!((t.len(), t.evicted), (2, 1));
    }

    #[test]
    fn a_new_rule_set_drops_names_that_left_and_moves_port_sets() {
        let now = Instant::now();
        let mut t = Table::new(10);
        t.learn(lesson("192.0.2.1", 60), now);
        let moved = t.retarget(|_| Some((vec![1, 2].into(), 5)));
        assert!(matches!(moved[..], [Write::Put { port_set: 5, .. }]));
        assert_eq!(
            t.retarget(|_| None),
            [Write::Delete {
                address: "192.0.2.1".parse().unwrap(),
                slot: 0
            }]
        );
    }
}
