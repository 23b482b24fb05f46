//! Prometheus metrics: the kernel's counters read from the pinned maps on each scrape (per
//! outcome, per endpoint set, rules per source), and what the daemon did (refreshes, lookups,
//! map updates), served in the text format on `[metrics] listen`.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    path::PathBuf,
    sync::{Arc, OnceLock},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use http_body_util::Full;
use hyper::{Request, Response, body::Bytes, service::service_fn};
use intune_common::{maps::Counter as KernelCounter, proto::l4_name};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::{ConstGauge, Gauge},
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

use crate::{
    daemon::state::StateDir,
    datapath::{
        counters::{PinnedCounters, PortHits},
        pins::Pins,
    },
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IfaceLabel {
    pub iface: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IfaceStateLabel {
    pub iface: String,
    pub state: &'static str,
}

/// What the daemon records as it works; one per process.
#[derive(Debug)]
pub struct DaemonMetrics {
    pub refreshes: Family<ResultLabel, Counter>,
    pub refresh_last_success: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub lookups: Family<ResultLabel, Counter>,
    pub resolver_last_success: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub map_update_seconds: Histogram,
    /// Captured DNS answers by what came of them.
    pub learn_answers: Family<ResultLabel, Counter>,
    pub learned_addresses: Gauge,
    pub learn_evicted: Counter,
    pub learn_seconds: Histogram,
    pub learn_ring_lost: Counter,
    /// Names whose last lookup failed.
    pub resolver_failing_names: Gauge,
    /// Each configured interface's state: 1 on the state it is in, 0 on the others.
    pub interface_state: Family<IfaceStateLabel, Gauge>,
    /// Attaches of the filter, per interface (the first and each one after it came back).
    pub interface_attaches: Family<IfaceLabel, Counter>,
}

/// The process's daemon metrics.
pub fn daemon() -> &'static DaemonMetrics {
    static METRICS: OnceLock<DaemonMetrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let m = DaemonMetrics {
            refreshes: Family::default(),
            refresh_last_success: Gauge::default(),
            lookups: Family::default(),
            resolver_last_success: Gauge::default(),
            // 100 µs .. ~3 s.
            map_update_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            learn_answers: Family::default(),
            learned_addresses: Gauge::default(),
            learn_evicted: Counter::default(),
            // 10 µs .. ~80 ms.
            learn_seconds: Histogram::new(exponential_buckets(0.00001, 2.0, 14)),
            learn_ring_lost: Counter::default(),
            resolver_failing_names: Gauge::default(),
            interface_state: Family::default(),
            interface_attaches: Family::default(),
        };
        // Every result's series from the start, at 0: `increase()` sees the first one too,
        // and alerts and dashboards find the series before anything happened.
        for result in ["success", "failure"] {
            let _ = m.refreshes.get_or_create(&ResultLabel { result });
            let _ = m.lookups.get_or_create(&ResultLabel { result });
        }
        for result in LEARN_RESULTS {
            let _ = m.learn_answers.get_or_create(&ResultLabel { result });
        }
        m
    })
}

/// What can come of a captured answer (`intune_xdp_learn_answers`' `result`).
pub const LEARN_RESULTS: [&str; 6] = [
    "learned",
    "not_matched",
    "untrusted",
    "unsolicited",
    "failed",
    "malformed",
];

fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

impl DaemonMetrics {
    pub fn refreshed(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.refreshes.get_or_create(&ResultLabel { result }).inc();
        if ok {
            self.refresh_last_success.set(now_seconds());
        }
    }

    pub fn looked_up(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.lookups.get_or_create(&ResultLabel { result }).inc();
        if ok {
            self.resolver_last_success.set(now_seconds());
        }
    }

    /// `iface` is in `state` now.
    pub fn interface_state(&self, iface: &str, state: &'static str) {
        for s in crate::daemon::interfaces::IfaceState::NAMES {
            let label = IfaceStateLabel {
                iface: iface.to_owned(),
                state: s,
            };
            self.interface_state
                .get_or_create(&label)
                .set(i64::from(s == state));
        }
    }

    /// The filter was attached to `iface`.
    pub fn attached(&self, iface: &str) {
        self.interface_attaches
            .get_or_create(&IfaceLabel {
                iface: iface.to_owned(),
            })
            .inc();
    }

    /// `iface` left the config: its series go.
    pub fn interface_forgotten(&self, iface: &str) {
        for state in crate::daemon::interfaces::IfaceState::NAMES {
            self.interface_state.remove(&IfaceStateLabel {
                iface: iface.to_owned(),
                state,
            });
        }
        self.interface_attaches.remove(&IfaceLabel {
            iface: iface.to_owned(),
        });
    }

    pub fn map_update(&self, took: Duration) {
        self.map_update_seconds.observe(took.as_secs_f64());
    }
}

/// The kernel's counters and the rule set, read at scrape time.
#[derive(Debug)]
struct MapCollector {
    pins: Pins,
    state_dir: PathBuf,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SetLabel {
    set: u32,
}

/// A port, or proto "other" and port 0 for the ports without a counter of their own.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PortLabel {
    proto: &'static str,
    port: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: String,
}

impl MapCollector {
    fn family<L: EncodeLabelSet, M: EncodeMetric>(
        encoder: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        rows: impl IntoIterator<Item = (L, M)>,
        metric_type: prometheus_client::metrics::MetricType,
    ) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(name, help, None, metric_type)?;
        for (labels, metric) in rows {
            metric.encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

impl MapCollector {
    /// `{name}_packets` and `{name}_bytes`: frames and bytes `what`.
    fn traffic<L: EncodeLabelSet + Clone>(
        encoder: &mut DescriptorEncoder,
        name: &str,
        what: &str,
        rows: impl Iterator<Item = (L, KernelCounter)> + Clone,
    ) -> Result<(), std::fmt::Error> {
        let counter = prometheus_client::metrics::MetricType::Counter;
        let packets = rows.clone().map(|(l, c)| (l, ConstCounter::new(c.packets)));
        let help = format!("Frames {what}.");
        Self::family(encoder, &format!("{name}_packets"), &help, packets, counter)?;
        let bytes = rows.map(|(l, c)| (l, ConstCounter::new(c.bytes)));
        let help = format!("Bytes {what}.");
        Self::family(encoder, &format!("{name}_bytes"), &help, bytes, counter)
    }
}

impl Collector for MapCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Ok(counters) = PinnedCounters::open(&self.pins) else {
            return Ok(());
        };
        let gauge = prometheus_client::metrics::MetricType::Gauge;
        if let Ok(outcomes) = counters.outcomes() {
            let rows = outcomes.iter().map(|(o, c)| {
                let outcome = o.counter_name();
                (OutcomeLabel { outcome }, *c)
            });
            Self::traffic(&mut encoder, "intune_xdp_outcome", "per outcome", rows)?;
        }
        if let Ok(ports) = counters.ports() {
            let what = "of Intune traffic per port it matched on";
            Self::traffic(&mut encoder, "intune_xdp_port", what, port_rows(&ports))?;
        }
        if let Ok(ports) = counters.dropped_ports() {
            let what = "no rule matched (dropped; in monitor mode passed), per port sent to";
            let rows = port_rows(&ports);
            Self::traffic(&mut encoder, "intune_xdp_unmatched_port", what, rows)?;
        }
        let rules = StateDir::open(&self.state_dir)
            .ok()
            .and_then(|s| s.load_rules().ok().flatten())
            .unwrap_or_default();
        let Ok(hits) = counters.rules_of(rules.iter().map(|r| r.index)) else {
            return Ok(());
        };
        let mut sets: BTreeMap<u32, KernelCounter> = BTreeMap::new();
        let mut sources: BTreeMap<String, i64> = BTreeMap::new();
        for (rule, c) in rules.iter().zip(hits) {
            for id in &rule.endpoint_sets {
                let e = sets.entry(*id).or_default();
                e.packets += c.packets;
                e.bytes += c.bytes;
            }
            for source in &rule.sources {
                *sources.entry(source.clone()).or_default() += 1;
            }
        }
        let rows = sets.iter().map(|(set, c)| (SetLabel { set: *set }, *c));
        let what = "credited to rules of each endpoint set";
        Self::traffic(&mut encoder, "intune_xdp_set", what, rows)?;
        Self::family(
            &mut encoder,
            "intune_xdp_rules",
            "Rules in force per source (a rule from several sources counts for each).",
            sources
                .into_iter()
                .map(|(source, n)| (SourceLabel { source }, ConstGauge::new(n))),
            gauge,
        )?;
        Ok(())
    }
}

/// Port counters labelled by protocol and port ("other", 0 for the ports without a slot).
fn port_rows(ports: &[PortHits]) -> impl Iterator<Item = (PortLabel, KernelCounter)> + Clone {
    ports.iter().map(|p| {
        let (proto, port) = p
            .port
            .map_or(("other", 0), |(l4, port)| (l4_name(l4), port));
        (PortLabel { proto, port }, p.counter)
    })
}

/// The registry a daemon serves.
pub fn registry(pins: Pins, state_dir: PathBuf) -> Registry {
    let mut registry = Registry::default();
    let d = daemon();
    registry.register(
        "intune_xdp_refreshes",
        "Endpoint web service checks, by result.",
        d.refreshes.clone(),
    );
    registry.register(
        "intune_xdp_refresh_last_success_timestamp_seconds",
        "When a web service check last succeeded.",
        d.refresh_last_success.clone(),
    );
    registry.register(
        "intune_xdp_resolver_lookups",
        "Name lookups, by result.",
        d.lookups.clone(),
    );
    registry.register(
        "intune_xdp_resolver_last_success_timestamp_seconds",
        "When a name lookup last got an answer.",
        d.resolver_last_success.clone(),
    );
    registry.register(
        "intune_xdp_map_update_duration_seconds",
        "Time to move the kernel maps to a new rule set.",
        d.map_update_seconds.clone(),
    );
    registry.register(
        "intune_xdp_learn_answers",
        "Captured DNS answers, by what came of them.",
        d.learn_answers.clone(),
    );
    registry.register(
        "intune_xdp_learned_addresses",
        "Addresses learned from DNS answers, held now.",
        d.learned_addresses.clone(),
    );
    registry.register(
        "intune_xdp_learn_evicted",
        "Learned addresses evicted to make room (least recently seen first).",
        d.learn_evicted.clone(),
    );
    registry.register(
        "intune_xdp_learn_duration_seconds",
        "From an answer's capture to its addresses in the map.",
        d.learn_seconds.clone(),
    );
    registry.register(
        "intune_xdp_learn_ring_lost",
        "Captured DNS answers the ring buffer had no room for (the learner was behind).",
        d.learn_ring_lost.clone(),
    );
    registry.register(
        "intune_xdp_resolver_failing_names",
        "Listed names whose last lookup failed.",
        d.resolver_failing_names.clone(),
    );
    registry.register(
        "intune_xdp_interface_state",
        "Each configured interface's state (attached, waiting, gone, failed): 1 on the one it is in.",
        d.interface_state.clone(),
    );
    registry.register(
        "intune_xdp_interface_attaches",
        "Attaches of the filter per interface: the first, and one each time the interface came back.",
        d.interface_attaches.clone(),
    );
    registry.register_collector(Box::new(MapCollector { pins, state_dir }));
    registry
}

/// Serves `registry` at `/metrics` on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, registry: Registry) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving metrics at /metrics");
    }
    let registry = Arc::new(registry);
    loop {
        let (stream, _) = listener.accept().await?;
        let registry = Arc::clone(&registry);
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let registry = Arc::clone(&registry);
                async move { Ok::<_, Infallible>(answer(&req, &registry)) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await
            {
                tracing::debug!(error = %e, "metrics connection");
            }
        });
    }
}

fn answer(req: &Request<hyper::body::Incoming>, registry: &Registry) -> Response<Full<Bytes>> {
    let reply = |status: u16, content_type: &str, body: String| {
        Response::builder()
            .status(status)
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_default()
    };
    if req.method() != hyper::Method::GET || req.uri().path() != "/metrics" {
        return reply(404, "text/plain", "only GET /metrics is served\n".into());
    }
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, registry) {
        Ok(()) => reply(
            200,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            text,
        ),
        Err(_) => reply(500, "text/plain", "encoding the metrics failed\n".into()),
    }
}
