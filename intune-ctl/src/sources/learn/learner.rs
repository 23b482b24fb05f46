//! The learning thread: reads the captured DNS responses from the ring buffer as they arrive
//! and reads them whole. The capture program has already put the addresses of an endpoint
//! name's answer in the `LEARNED` map, provisionally; the learner confirms those of the name's
//! CNAME chain (a counter of their own, expiry at TTL plus grace), removes the others, learns
//! what the kernel cannot (inner wildcards, chains it does not follow), and records all for
//! `list`, `stats`, `status` and the metrics. A thread of its own, not a task of the daemon's
//! runtime: nothing the daemon does holds an answer up.

use std::{
    collections::{HashMap, VecDeque},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::AsRawFd as _,
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, PerCpuValues, RingBuf};
use intune_common::{
    classify::v4_mapped,
    learn::{DnsEvent, KEY_EXACT, KEY_SUFFIX, PROVISIONAL_RULE, name_key},
    maps::{Counter, RuleRef},
};
use serde::Serialize;

use super::{
    answer::{Unlearned, kernel_candidates, learn},
    patterns::Patterns,
    table::{Lesson, Table, Write},
};
use crate::{
    daemon::{
        metrics::{self, ResultLabel},
        state::{LearnedAddress, LearnedRecord, StateDir},
    },
    sources::endpoints::Ports,
};

/// How the learner works.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Resolvers whose answers are trusted; empty trusts none.
    pub trusted: Vec<IpAddr>,
    pub grace: Duration,
    /// TTLs are cut to this (an answer's 68 years are not kept).
    pub max_ttl: Duration,
    /// Learned addresses kept at most.
    pub cap: u32,
    /// The rule index of counter slot 0.
    pub rule_base: u32,
    /// The capture program's name hash key.
    pub name_hash_key: u64,
}

/// The maps the learner works on, its own descriptors of the daemon's program's maps.
pub struct Maps {
    pub events: RingBuf<MapData>,
    /// Responses the capture found no room for in `events` (`DNS_LOST`).
    pub lost: PerCpuArray<MapData, u64>,
    pub learned: BpfHashMap<MapData, [u8; 16], RuleRef>,
    /// The names the capture program learns from by itself (`LEARN_NAMES`).
    pub names: BpfHashMap<MapData, u64, u32>,
    pub rule_stats: PerCpuArray<MapData, Counter>,
    /// Where an expired address drains for its connections (when the daemon drains).
    pub drain: Option<crate::datapath::drain::DrainMap>,
}

/// What the learner counted since it started.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct LearnCounts {
    /// DNS responses captured.
    pub answers: u64,
    /// Responses from resolvers not trusted: ignored.
    pub untrusted: u64,
    /// Responses to no query a device sent through the filter: ignored.
    pub unsolicited: u64,
    /// Responses that are no DNS message, or were cut short by the capture.
    pub malformed: u64,
    /// Error responses (NXDOMAIN, SERVFAIL, ...).
    pub failed: u64,
    /// Good responses for no endpoint name.
    pub not_matched: u64,
    /// Addresses taken in (new or seen again).
    pub learned: u64,
    pub evicted: u64,
    pub expired: u64,
    /// Map writes that failed.
    pub map_errors: u64,
    /// Responses the capture had no room for in the ring (the learner was behind).
    #[serde(default)]
    pub ring_lost: u64,
}

/// What `status`, `list` and the metrics see of the learner.
#[derive(Clone, Debug, Default)]
pub struct View {
    pub counts: LearnCounts,
    pub held: usize,
    pub cap: u32,
    /// The latest capture-to-map times of answers that taught an address.
    pub latencies: VecDeque<Duration>,
}

const LATENCIES_KEPT: usize = 4096;

enum Control {
    /// A new rule set: its names, and the port set id of each name's ports.
    Patterns(Patterns, HashMap<Ports, u32>),
}

/// The running learner; stops when dropped.
pub struct Learner {
    tx: mpsc::Sender<Control>,
    view: Arc<Mutex<View>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Learner {
    pub fn start(
        maps: Maps,
        settings: Settings,
        state: Option<StateDir>,
    ) -> std::io::Result<Learner> {
        let (tx, rx) = mpsc::channel();
        let view = Arc::new(Mutex::new(View {
            cap: settings.cap,
            ..View::default()
        }));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // A previous daemon's addresses come back once the names (and their port sets) are
        // known: with the first rule set.
        let restore = state
            .as_ref()
            .and_then(|s| s.load_learned().ok())
            .unwrap_or_default();
        let mut work = Work {
            restore,
            table: Table::new(settings.cap),
            settings,
            maps,
            patterns: Patterns::default(),
            port_ids: HashMap::new(),
            counts: LearnCounts::default(),
            latencies: VecDeque::new(),
            view: Arc::clone(&view),
            state,
            dirty: false,
            saved: None,
            cpus: aya::util::nr_cpus().map_or(1, |n| n.max(1)),
            kernel_names: HashMap::new(),
            stale: std::collections::HashSet::default(),
            swept: Instant::now(),
            // `LEARNED` is new with each program: nothing in it is unconfirmed yet.
            missed: false,
            published: None,
        };
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("intune-learn".into())
            .spawn(move || work.run(&rx, &stopping))?;
        Ok(Learner {
            tx,
            view,
            stop,
            thread: Some(thread),
        })
    }

    /// Matches answers against the names of `patterns` from now on; `port_set_of` gives the
    /// port set id the rule set holds for a name's ports.
    pub fn follow(&self, patterns: Patterns, port_set_of: impl Fn(&Ports) -> Option<u32>) {
        let ids = patterns
            .all()
            .iter()
            .filter_map(|p| port_set_of(&p.ports).map(|id| (p.ports, id)))
            .collect();
        let _ = self.tx.send(Control::Patterns(patterns, ids));
    }

    pub fn view(&self) -> View {
        self.view.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl Drop for Learner {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Work {
    /// Addresses a previous daemon recorded, not yet taken back.
    restore: Vec<LearnedAddress>,
    table: Table,
    settings: Settings,
    maps: Maps,
    patterns: Patterns,
    port_ids: HashMap<Ports, u32>,
    counts: LearnCounts,
    latencies: VecDeque<Duration>,
    view: Arc<Mutex<View>>,
    state: Option<StateDir>,
    /// The table changed since the state file was written.
    dirty: bool,
    saved: Option<Instant>,
    cpus: usize,
    /// What `LEARN_NAMES` holds.
    kernel_names: HashMap<u64, u32>,
    /// Provisional entries the last sweep found.
    stale: std::collections::HashSet<[u8; 16]>,
    swept: Instant,
    /// Since the last sweep, an answer may have left a provisional entry nobody confirms: the
    /// ring had no room for one, or one matched a name but was unreadable here.
    missed: bool,
    /// When the view was last handed the counts.
    published: Option<Instant>,
}

/// How often unconfirmed provisional entries are looked for.
const SWEEP: Duration = Duration::from_secs(10);

/// Asks for a real-time priority, so answers are confirmed within a fraction of a millisecond
/// even on a busy gateway. Without the privilege (CAP_SYS_NICE) it runs at normal priority.
fn realtime() {
    // Zeroed first: musl's sched_param has fields glibc's lacks. pthread_setschedparam, not
    // sched_setscheduler, which musl leaves unimplemented.
    // SAFETY: an all-zero sched_param is valid.
    let mut param: libc::sched_param = unsafe { std::mem::zeroed() };
    param.sched_priority = 10;
    // SAFETY: sets this thread's own policy with a valid parameter.
    let err = unsafe {
        libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &raw const param)
    };
    if err != 0 {
        tracing::info!(
            error = %std::io::Error::from_raw_os_error(err),
            "the learner runs at normal priority"
        );
    }
}

/// Longest wait for an answer: how late a stop, a new rule set or an expiry is seen.
const TICK: Duration = Duration::from_millis(200);

impl Work {
    fn run(&mut self, rx: &mpsc::Receiver<Control>, stop: &std::sync::atomic::AtomicBool) {
        realtime();
        // The first rule set's names come right after the start: take them (and the addresses
        // to restore) before the long zeroing of the counters.
        if let Ok(Control::Patterns(patterns, ids)) = rx.recv_timeout(Duration::from_secs(1)) {
            self.follow(patterns, ids);
        }
        self.zero_all();
        let fd = self.maps.events.as_raw_fd();
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            while let Ok(Control::Patterns(patterns, ids)) = rx.try_recv() {
                self.follow(patterns, ids);
            }
            let now = Instant::now();
            let wait = self
                .table
                .next_expiry()
                .map_or(TICK, |at| at.saturating_duration_since(now).min(TICK));
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd for the ring buffer's descriptor, which `self` owns.
            unsafe { libc::poll(&raw mut pfd, 1, wait.as_millis().max(1) as i32) };
            while let Some(ev) = self.next_event() {
                self.answer(&ev);
            }
            // Only when an answer could have gone unconfirmed: the walk of a full table costs
            // two syscalls an entry, which at the cap would hold up the answers behind it.
            if self.swept.elapsed() >= SWEEP && (self.missed || !self.stale.is_empty()) {
                self.sweep();
            }
            let expired = self.table.expire(Instant::now());
            if !expired.is_empty() {
                self.counts.expired += expired.len() as u64;
                self.drain_expired(&expired);
                self.write(&expired);
            }
            self.publish();
        }
        self.save();
    }

    /// The next captured response, copied out of the ring (which frees its room).
    fn next_event(&mut self) -> Option<DnsEvent> {
        loop {
            let item = self.maps.events.next()?;
            if item.len() >= size_of::<DnsEvent>() {
                // SAFETY: a record the capture wrote whole (size checked); any bytes are a
                // valid DnsEvent.
                return Some(unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) });
            }
        }
    }

    fn answer(&mut self, ev: &DnsEvent) {
        self.counts.answers += 1;
        let resolver = if ev.is_v6 != 0 {
            IpAddr::V6(Ipv6Addr::from(ev.src))
        } else {
            IpAddr::V4(Ipv4Addr::new(ev.src[0], ev.src[1], ev.src[2], ev.src[3]))
        };
        let message = &ev.data[..usize::from(ev.len).min(ev.data.len())];
        let rejected = if !self.settings.trusted.contains(&resolver) {
            self.counts.untrusted += 1;
            Some("untrusted")
        } else if ev.solicited == 0 {
            self.counts.unsolicited += 1;
            Some("unsolicited")
        } else {
            None
        };
        if let Some(result) = rejected {
            self.reject(message, result);
            return;
        }
        // Hostile input must never take the learner down: a panic in the parser counts as a
        // malformed answer.
        let lessons = std::panic::catch_unwind(|| {
            learn(message, &self.patterns).map(|reading| {
                let lessons = reading
                    .learned
                    .into_iter()
                    .filter_map(|l| {
                        Some(Lesson {
                            address: l.address,
                            asked: l.asked,
                            pattern: l.pattern.name.clone(),
                            sets: l.pattern.sets.clone(),
                            port_set: *self.port_ids.get(&l.pattern.ports)?,
                            keep: Duration::from_secs(u64::from(l.ttl)).min(self.settings.max_ttl)
                                + self.settings.grace,
                        })
                    })
                    .collect::<Vec<_>>();
                (lessons, reading.others)
            })
        });
        let (lessons, result) = match lessons {
            Ok(Ok((l, others))) => {
                self.forget_provisional(&others);
                (l, "learned")
            }
            // The capture hands over every answer of a trusted resolver, most of them for
            // other names: it learned nothing from one no endpoint name matches here (its
            // names are these), so that is no reason to walk the map.
            Ok(Err(Unlearned::NoMatch)) => {
                self.counts.not_matched += 1;
                (Vec::new(), "not_matched")
            }
            Ok(Err(Unlearned::Failed(_))) => {
                self.counts.failed += 1;
                self.missed = true;
                (Vec::new(), "failed")
            }
            Ok(Err(_)) | Err(_) => {
                self.counts.malformed += 1;
                self.missed = true;
                (Vec::new(), "malformed")
            }
        };
        if lessons.is_empty() {
            self.reject(message, result);
            return;
        }
        metrics::daemon()
            .learn_answers
            .get_or_create(&ResultLabel { result })
            .inc();
        let now = Instant::now();
        for lesson in lessons {
            self.counts.learned += 1;
            let writes = self.table.learn(lesson, now);
            self.write(&writes);
        }
        let m = metrics::daemon();
        m.learn_evicted
            .inc_by(self.table.evicted - self.counts.evicted);
        self.counts.evicted = self.table.evicted;
        if let Some(took) = since_capture(ev.ktime_ns) {
            m.learn_seconds.observe(took.as_secs_f64());
            if self.latencies.len() == LATENCIES_KEPT {
                self.latencies.pop_front();
            }
            self.latencies.push_back(took);
        }
    }

    /// Expired addresses drain (before they leave `LEARNED`): a connection that still uses
    /// one is not cut.
    fn drain_expired(&mut self, expired: &[Write]) {
        let Some(drain) = self.maps.drain.as_mut() else {
            return;
        };
        for w in expired {
            let Write::Delete { address, .. } = *w else {
                continue;
            };
            let Ok(v) = self.maps.learned.get(&key(address), 0) else {
                continue;
            };
            let Some(ports) = self
                .port_ids
                .iter()
                .find_map(|(ports, id)| (*id == v.port_set).then_some(ports))
            else {
                continue;
            };
            if let Err(e) =
                crate::datapath::drain::start_draining(drain, &ipnet::IpNet::from(address), ports)
            {
                tracing::warn!(%address, error = %e, "cannot keep an expired learned address for its connections");
            }
        }
    }

    /// An answer that teaches nothing: whatever the capture program took in from it leaves at
    /// once (unless another answer taught it).
    fn reject(&mut self, message: &[u8], result: &'static str) {
        metrics::daemon()
            .learn_answers
            .get_or_create(&ResultLabel { result })
            .inc();
        self.forget_provisional(&kernel_candidates(message));
    }

    fn follow(&mut self, patterns: Patterns, ids: HashMap<Ports, u32>) {
        self.patterns = patterns;
        self.port_ids = ids;
        self.retarget();
        self.write_kernel_names();
        self.restore();
    }

    /// Takes back the addresses a previous daemon recorded that have not expired and whose
    /// endpoint name is still listed (their counters start over).
    fn restore(&mut self) {
        let now = std::time::SystemTime::now();
        let mut restored = 0;
        for r in std::mem::take(&mut self.restore) {
            // No longer than a fresh answer could be kept: a file edited, or written under an
            // older, laxer limit, does not keep an address for years.
            let Some(keep) = humantime::parse_rfc3339(&r.expires_at)
                .ok()
                .and_then(|at| at.duration_since(now).ok())
                .map(|keep| keep.min(self.settings.max_ttl + self.settings.grace))
            else {
                continue;
            };
            let Some(p) = self.patterns.named(&r.pattern) else {
                continue;
            };
            let Some(&port_set) = self.port_ids.get(&p.ports) else {
                continue;
            };
            let lesson = Lesson {
                address: r.address,
                asked: r.asked,
                pattern: p.name.clone(),
                sets: p.sets.clone(),
                port_set,
                keep,
            };
            let writes = self.table.learn(lesson, Instant::now());
            self.write(&writes);
            restored += 1;
        }
        if restored > 0 {
            tracing::info!(
                restored,
                "took back the addresses learned before the restart"
            );
        }
    }

    /// Keeps the capture program's names equal to the patterns it can match by itself: exact
    /// names and leading wildcards, each with its port set.
    fn write_kernel_names(&mut self) {
        let mut wanted: HashMap<u64, u32> = HashMap::new();
        for p in self.patterns.all() {
            let Some(&port_set) = self.port_ids.get(&p.ports) else {
                continue;
            };
            let key = match p.name.strip_prefix("*.") {
                None if !p.name.contains('*') => {
                    name_key(&p.name, KEY_EXACT, self.settings.name_hash_key)
                }
                Some(rest) if !rest.contains('*') => {
                    name_key(rest, KEY_SUFFIX, self.settings.name_hash_key)
                }
                _ => continue,
            };
            wanted.insert(key, port_set);
        }
        for (&key, &port_set) in &wanted {
            if self.kernel_names.get(&key) != Some(&port_set)
                && let Err(e) = self.maps.names.insert(key, port_set, 0)
            {
                self.counts.map_errors += 1;
                tracing::warn!(error = %e, "writing the capture program's names");
            }
        }
        for key in self.kernel_names.keys() {
            if !wanted.contains_key(key) {
                let _ = self.maps.names.remove(key);
            }
        }
        self.kernel_names = wanted;
    }

    /// Removes what the capture program took in from an answer but is no address of the
    /// name's chain (unless an answer of its own holds it).
    fn forget_provisional(&mut self, others: &[IpAddr]) {
        for &address in others {
            if !self.table.holds(address) {
                self.remove_provisional(address);
            }
        }
    }

    fn remove_provisional(&mut self, address: IpAddr) {
        let k = key(address);
        if let Ok(v) = self.maps.learned.get(&k, 0)
            && v.rule == PROVISIONAL_RULE
        {
            let _ = self.maps.learned.remove(&k);
        }
    }

    /// Provisional entries userspace never confirmed (their answer was lost from the ring, or
    /// unreadable to the full parser) leave at the second sweep that finds them. The map is
    /// walked only when something may have been missed; what the last walk found is looked up
    /// one by one (at 1,000 answers a second a few are always in flight, and a walk of a full
    /// table takes a fifth of a second).
    fn sweep(&mut self) {
        self.swept = Instant::now();
        let provisional =
            |v: Result<RuleRef, _>| v.is_ok_and(|v: RuleRef| v.rule == PROVISIONAL_RULE);
        for k in std::mem::take(&mut self.stale) {
            if provisional(self.maps.learned.get(&k, 0)) {
                let _ = self.maps.learned.remove(&k);
            }
        }
        if !std::mem::take(&mut self.missed) {
            return;
        }
        self.stale = self
            .maps
            .learned
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, v)| v.rule == PROVISIONAL_RULE)
            .map(|(k, _)| k)
            .collect();
    }

    fn retarget(&mut self) {
        let (patterns, ids) = (&self.patterns, &self.port_ids);
        let writes = self.table.retarget(|name| {
            let p = patterns.named(name)?;
            Some((p.sets.clone(), *ids.get(&p.ports)?))
        });
        self.write(&writes);
    }

    fn write(&mut self, writes: &[Write]) {
        for w in writes {
            let result = match *w {
                // The slot's counter is zero already: zeroed when its last address left (or
                // at start), so nothing but the map write stands between answer and SYN.
                Write::Put {
                    address,
                    slot,
                    port_set,
                } => {
                    let rule = self.settings.rule_base + slot;
                    self.maps
                        .learned
                        .insert(key(address), RuleRef { rule, port_set }, 0)
                }
                Write::Delete { address, slot } => match self.maps.learned.remove(&key(address)) {
                    Err(aya::maps::MapError::KeyNotFound) => Ok(()),
                    other => other,
                }
                .and_then(|()| self.zero(self.settings.rule_base + slot)),
            };
            if let Err(e) = result {
                self.counts.map_errors += 1;
                tracing::warn!(error = %e, "writing a learned address to the kernel map");
            }
        }
        self.dirty |= !writes.is_empty();
    }

    fn zero(&mut self, rule: u32) -> Result<(), aya::maps::MapError> {
        let zeros = PerCpuValues::try_from(vec![Counter::default(); self.cpus])
            .map_err(aya::maps::MapError::IoError)?;
        self.maps.rule_stats.set(rule, zeros, 0)
    }

    /// Zeroes every learned counter: a previous daemon's slots mean nothing now (addresses
    /// taken back start counting over).
    fn zero_all(&mut self) {
        for slot in 0..self.settings.cap {
            if let Err(e) = self.zero(self.settings.rule_base + slot) {
                tracing::warn!(error = %e, "zeroing the learned addresses' counters");
                return;
            }
        }
    }

    /// Hands the counts to the view; writes the state file at most once a second.
    fn publish(&mut self) {
        if let Ok(per_cpu) = self.maps.lost.get(&0, 0) {
            let lost: u64 = per_cpu.iter().sum();
            if lost > self.counts.ring_lost {
                self.missed = true;
                metrics::daemon()
                    .learn_ring_lost
                    .inc_by(lost - self.counts.ring_lost);
                self.counts.ring_lost = lost;
            }
        }
        // Ten times a second at most: the view's copy of the latencies is 4,096 of them.
        if self
            .published
            .is_some_and(|at| at.elapsed() < Duration::from_millis(100))
        {
            return;
        }
        self.published = Some(Instant::now());
        if let Ok(mut v) = self.view.lock() {
            v.counts = self.counts.clone();
            v.held = self.table.len();
            metrics::daemon()
                .learned_addresses
                .set(self.table.len() as i64);
            v.latencies.clone_from(&self.latencies);
        }
        if self.dirty
            && self
                .saved
                .is_none_or(|at| at.elapsed() >= save_interval(self.table.len()))
        {
            self.save();
        }
    }

    fn save(&mut self) {
        let Some(state) = &self.state else {
            return;
        };
        let now = Instant::now();
        let base = self.settings.rule_base;
        let records = self.table.entries().map(|e| LearnedRecord {
            address: e.address,
            index: base + e.slot,
            asked: &e.asked,
            pattern: &e.pattern,
            endpoint_sets: &e.sets,
            expires_at: crate::daemon::state::rfc3339_in(e.expires.saturating_duration_since(now)),
        });
        if let Err(e) = state.save_learned_from(records) {
            tracing::warn!(error = %e, "recording the learned addresses");
        }
        self.dirty = false;
        self.saved = Some(now);
    }
}

/// How often a changing table is recorded: every second while small, less often as it grows
/// (a second for every 1,000 addresses, a minute at most), so that writing it costs the
/// learner about a millisecond a second whatever its size. A stop records it whole.
fn save_interval(addresses: usize) -> Duration {
    Duration::from_secs((addresses as u64 / 1000).clamp(1, 60))
}

/// The map key of an address: IPv6, or IPv4 mapped.
pub fn key(address: IpAddr) -> [u8; 16] {
    match address {
        IpAddr::V6(a) => a.octets(),
        IpAddr::V4(a) => {
            let mut k = [0u8; 16];
            k[..4].copy_from_slice(&a.octets());
            v4_mapped(&k)
        }
    }
}

/// Time since `ktime_ns` (CLOCK_MONOTONIC, as `bpf_ktime_get_ns` reads it).
fn since_capture(ktime_ns: u64) -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) } != 0 {
        return None;
    }
    let now = (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64;
    now.checked_sub(ktime_ns).map(Duration::from_nanos)
}
