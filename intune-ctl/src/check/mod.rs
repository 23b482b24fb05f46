//! Would a device behind this gateway reach every endpoint of the rule set, right now? Each
//! endpoint set's names are resolved now (the daemon's resolver code), its wildcards are tried
//! through the names learned under them and the article's examples, its prefixes through their
//! first and last address, and every address on every port of its set goes through the real
//! program on the pinned maps (`datapath::probe`). `intune-ctl check` prints the answer.

pub mod ask;
pub mod connect;
pub mod plan;
pub mod resolve;

use std::net::IpAddr;

use serde::Serialize;

pub use self::plan::{Kind, Plan};

/// The transport protocol of a checked packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

/// One checked packet (or one name that could not be resolved), with what came of it.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub set: u32,
    pub required: bool,
    /// The name checked; `None` for a listed prefix's address.
    pub name: Option<String>,
    #[serde(flatten)]
    pub kind: Kind,
    pub address: Option<IpAddr>,
    pub port: Option<u16>,
    pub proto: Option<Proto>,
    #[serde(flatten)]
    pub result: Outcome,
    /// With `--connect`: what a TCP connection from the gateway to this address on 443 did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect: Option<String>,
}

/// What came of one checked packet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum Outcome {
    /// The filter passes it (in monitor mode: enforce mode would).
    Passes {
        /// The counter it is counted under (`intune`, `infrastructure`, `local`).
        outcome: String,
        /// The rule it is credited to.
        rule: Option<String>,
    },
    /// The filter drops it (in monitor mode: enforce mode would).
    Blocked {
        #[serde(flatten)]
        why: Why,
        outcome: String,
    },
    /// Not listed yet, but learning is on: a device's own DNS answer for this name under a
    /// listed wildcard teaches its address before the answer reaches the device.
    Learnable,
    /// The name got no address.
    Unresolved { error: String },
    /// A wildcard with no name to try under it.
    Untried,
}

/// Why a packet is blocked, from the rules the daemon installed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Why {
    /// No listed prefix holds the address.
    NotListed,
    /// The most specific listed prefix holding it allows other ports.
    PortNotAllowed { prefix: String, ports: String },
    /// The address lies in an excluded prefix.
    Excluded { prefix: String },
    /// Listed and on an allowed port, yet dropped: the outcome says more.
    Other,
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Why::NotListed => f.write_str("not listed"),
            Why::PortNotAllowed { prefix, ports } => {
                write!(f, "port not allowed ({prefix} allows {ports})")
            }
            Why::Excluded { prefix } => write!(f, "excluded ({prefix})"),
            Why::Other => f.write_str("dropped"),
        }
    }
}

impl Finding {
    pub fn blocked(&self) -> bool {
        matches!(self.result, Outcome::Blocked { .. })
    }
}

/// The counts at the end of the report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub passes: usize,
    pub blocked: usize,
    /// Of `blocked`, those of required sets: exit code 1 when any.
    pub blocked_required: usize,
    pub learnable: usize,
    pub unresolved: usize,
    pub untried: usize,
}

impl Totals {
    pub fn of(findings: &[Finding]) -> Totals {
        let mut t = Totals::default();
        for f in findings {
            match f.result {
                Outcome::Passes { .. } => t.passes += 1,
                Outcome::Blocked { .. } => {
                    t.blocked += 1;
                    t.blocked_required += usize::from(f.required);
                }
                Outcome::Learnable => t.learnable += 1,
                Outcome::Unresolved { .. } => t.unresolved += 1,
                Outcome::Untried => t.untried += 1,
            }
        }
        t
    }
}
