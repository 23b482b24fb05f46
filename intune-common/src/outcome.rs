//! What the program concluded about a frame, and what it did with it.

/// One frame, one outcome: the outcome counters partition the traffic.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "user", derive(serde::Serialize))]
#[cfg_attr(feature = "user", serde(rename_all = "snake_case"))]
pub enum Outcome {
    /// Matched an Intune rule (address and port, or a port-only rule).
    Intune = 0,
    /// Traffic a network needs, each kind only where it belongs: DNS to and from the resolvers,
    /// DHCP to broadcast or its servers, ICMP errors about allowed traffic, link-scope ND and MLD.
    Infrastructure = 1,
    /// Neither, passed because the policy is `monitor`.
    UnmatchedPassed = 2,
    /// Neither, dropped because the policy is `enforce`.
    Dropped = 3,
    /// Not IPv4 or IPv6 (ARP, LLDP, ...): always passed.
    NotIp = 4,
    /// Truncated or inconsistent headers: passed in `monitor`, dropped in `enforce`.
    Malformed = 5,
    /// The gateway's own traffic (to its addresses), link-local multicast and broadcast, and
    /// `[[policy.allow]]` services: not the filter's business, always passed.
    Local = 6,
}

pub const OUTCOME_COUNT: u32 = 7;

impl Outcome {
    pub const ALL: [Outcome; OUTCOME_COUNT as usize] = [
        Outcome::Intune,
        Outcome::Infrastructure,
        Outcome::UnmatchedPassed,
        Outcome::Dropped,
        Outcome::NotIp,
        Outcome::Malformed,
        Outcome::Local,
    ];

    pub fn from_u32(v: u32) -> Option<Outcome> {
        Self::ALL.get(v as usize).copied()
    }

    /// The counter's name.
    pub const fn counter_name(self) -> &'static str {
        match self {
            Outcome::Intune => "intune",
            Outcome::Infrastructure => "infrastructure",
            Outcome::UnmatchedPassed => "unmatched_passed",
            Outcome::Dropped => "dropped",
            Outcome::NotIp => "not_ip",
            Outcome::Malformed => "malformed",
            Outcome::Local => "local",
        }
    }

    /// The class of traffic, whatever the verdict: what `classify` prints.
    pub const fn class(self) -> &'static str {
        match self {
            Outcome::Intune => "intune",
            Outcome::Infrastructure => "infrastructure",
            Outcome::UnmatchedPassed | Outcome::Dropped => "unmatched",
            Outcome::NotIp => "not-ip",
            Outcome::Malformed => "malformed",
            Outcome::Local => "local",
        }
    }
}

/// XDP return codes the program uses.
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;

/// The verdict for an outcome under a policy mode.
#[inline(always)]
pub fn verdict(outcome: Outcome, mode: u32) -> u32 {
    match outcome {
        Outcome::Dropped => XDP_DROP,
        Outcome::Malformed if mode == crate::maps::MODE_ENFORCE => XDP_DROP,
        _ => XDP_PASS,
    }
}
