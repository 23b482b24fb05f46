//! The control protocol: one JSON request a line, one JSON answer a line, as these types, which
//! the daemon and the CLI share. `status --json` prints [`StatusReport`] as it came.

use std::{collections::BTreeMap, net::IpAddr};

use serde::{Deserialize, Serialize};

use crate::{
    ruleset::policy::{Direction, Mode},
    sources::learn::learner::LearnCounts,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "lowercase")]
pub enum Request {
    Status,
    Refresh,
}

/// What the daemon answers a request with.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Answer {
    Error { error: String },
    Refreshed(Refreshed),
    Status(Box<StatusReport>),
}

/// The answer to `refresh`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Refreshed {
    /// What came of the web-service check ("off", "not checked: ...", the outcome).
    pub service: String,
    /// Names looked up again.
    pub names: usize,
    /// The daemon's one-line status after it.
    pub status: String,
}

/// The daemon's state, as `intune-ctl status` shows it; when no daemon answers, the CLI fills
/// what bpffs and the state directory tell (`daemon: "not running"`, interfaces, rules).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StatusReport {
    /// "running" or "not running".
    pub daemon: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_seconds: Option<u64>,
    pub interfaces: Vec<InterfaceStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    #[serde(default)]
    pub dns_resolvers: Vec<IpAddr>,
    #[serde(default)]
    pub dhcp_servers: Vec<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_local: Option<bool>,
    #[serde(default)]
    pub local_addresses: Vec<String>,
    #[serde(default)]
    pub draining: Vec<DrainingStatus>,
    #[serde(default)]
    pub warnings: Vec<String>,
    pub rules: usize,
    #[serde(default)]
    pub rules_by_source: BTreeMap<String, usize>,
    #[serde(default)]
    pub service: Option<ServiceStatus>,
    #[serde(default)]
    pub resolver: Option<ResolverStatus>,
    #[serde(default)]
    pub wildcards: Vec<String>,
    #[serde(default)]
    pub learning: Option<LearningStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<KernelStatus>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InterfaceStatus {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// How it was attached ("native XDP", "pinned" when only the pins tell), or null.
    pub attached: Option<String>,
    /// attached, waiting (not there yet), gone (deleted or renamed away since), failed;
    /// "severed" for a pinned link whose interface was deleted (no daemon running).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifindex: Option<u32>,
    /// From the link event that showed the interface to the attach, when it appeared while
    /// the daemon ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attach_ms: Option<f64>,
    /// Why the attach failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl InterfaceStatus {
    /// `name` with nothing known of it yet.
    pub fn named(name: String) -> InterfaceStatus {
        InterfaceStatus {
            name,
            direction: None,
            attached: None,
            state: None,
            ifindex: None,
            attach_ms: None,
            error: None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DrainingStatus {
    pub prefix: String,
    pub idle_seconds: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub url: String,
    /// The version of the list in force.
    pub version: Option<String>,
    pub last_check: Option<LastCheck>,
    pub next_check_in_seconds: u64,
    /// Whether a check is under way now.
    #[serde(default)]
    pub checking: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LastCheck {
    /// RFC 3339.
    pub at: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ResolverStatus {
    pub names: usize,
    pub resolved_addresses: usize,
    pub failing: Vec<String>,
    pub down: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LearningStatus {
    pub addresses: usize,
    pub max_addresses: u32,
    pub counts: LearnCounts,
    pub latency_ms: Latency,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Latency {
    pub samples: usize,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KernelStatus {
    pub version: String,
    pub dns_capture: String,
    pub degraded: Vec<String>,
}
