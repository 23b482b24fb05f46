//! The configured interfaces as they come and go. The owner keeps each one's state and, on
//! every link table the netlink follower sends, brings the kernel in line: the direction map
//! first (by the interface's ifindex now), then the filter and the DNS capture on an
//! interface that appeared (before it is up: no frame crosses it unfiltered), and off one that
//! went. The filter follows the configured *names*: an interface renamed to one is attached,
//! one renamed away is left (its link unpinned), as if it had been deleted.

use std::time::Instant;

use anyhow::Context as _;

use super::{links::LinkTable, metrics, owner::Owner};
use crate::{
    datapath::{DatapathError, load::Attached},
    ruleset::policy::Direction,
    settings::Interface,
};

/// Where a configured interface stands.
#[derive(Clone, Debug, PartialEq)]
pub enum IfaceState {
    /// Not there (yet): attached the moment it appears.
    Waiting,
    Attached {
        ifindex: u32,
        how: String,
        /// From the link event that showed it to the attach, when it came while we ran.
        took_ms: Option<f64>,
    },
    /// Was attached, then deleted or renamed away: attached again when it is back.
    Gone,
    /// There, but the attach failed: tried again when it comes back under a new ifindex.
    Failed { ifindex: u32, error: String },
}

impl IfaceState {
    pub const NAMES: [&'static str; 4] = ["attached", "waiting", "gone", "failed"];

    pub fn name(&self) -> &'static str {
        match self {
            IfaceState::Attached { .. } => "attached",
            IfaceState::Waiting => "waiting",
            IfaceState::Gone => "gone",
            IfaceState::Failed { .. } => "failed",
        }
    }
}

/// The directions of the configured interfaces by their ifindex now (the missing ones have
/// none: nothing points at an ifindex that is gone or belongs to another interface).
pub fn directions(interfaces: &[Interface], links: &LinkTable) -> Vec<(u32, Direction)> {
    interfaces
        .iter()
        .filter_map(|i| Some((*links.get(&i.name)?, i.direction?)))
        .collect()
}

impl Owner {
    /// The link table changed (or came first): every configured interface follows it.
    pub fn take_links(&mut self, links: LinkTable, seen_at: Instant) {
        self.links = links;
        if let Err(e) = self.follow_links(Some(seen_at)) {
            tracing::error!(error = format!("{e:#}"), "following the interfaces");
        }
    }

    /// Brings each configured interface in line with the link table. Errors of one
    /// interface are its state (logged); the error returned is the first attach that failed,
    /// for start-up to stop on.
    pub fn follow_links(&mut self, seen_at: Option<Instant>) -> anyhow::Result<()> {
        self.sync_directions();
        let mut first_error = None;
        for iface in self.settings.interfaces.clone() {
            let now = self.links.get(&iface.name).copied();
            let state = self
                .ifaces
                .get(&iface.name)
                .cloned()
                .unwrap_or(IfaceState::Waiting);
            match (&state, now) {
                (
                    IfaceState::Attached { ifindex, .. } | IfaceState::Failed { ifindex, .. },
                    Some(n),
                ) if *ifindex == n => {}
                (IfaceState::Attached { ifindex, .. }, _) => {
                    self.lost(&iface.name, *ifindex);
                    if let Some(n) = now
                        && let Err(e) = self.attach_now(&iface, n, seen_at)
                    {
                        first_error.get_or_insert(e);
                    }
                }
                (_, Some(n)) => {
                    if let Err(e) = self.attach_now(&iface, n, seen_at) {
                        first_error.get_or_insert(e);
                    }
                }
                (IfaceState::Waiting, None) if !self.ifaces.contains_key(&iface.name) => {
                    tracing::warn!(
                        iface = iface.name,
                        "no such interface (yet): the filter is attached the moment it appears"
                    );
                    println!("waiting for {}: no such interface yet", iface.name);
                    self.set_state(&iface.name, IfaceState::Waiting);
                }
                (_, None) => {}
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Writes the direction map for the interfaces' ifindexes now, when that changed.
    fn sync_directions(&mut self) {
        let want = directions(&self.settings.interfaces, &self.links);
        if want == self.policy.iface_directions {
            return;
        }
        let mut policy = self.policy.clone();
        policy.iface_directions = want;
        match self.dp.set_policy(&policy) {
            Ok(()) => self.policy = policy,
            Err(e) => tracing::error!(error = %e, "writing the interfaces' directions"),
        }
    }

    /// Attaches to `iface`, there now as `ifindex`; the state says how it went. Only an
    /// attach that failed while the interface is still there is an error.
    fn attach_now(
        &mut self,
        iface: &Interface,
        ifindex: u32,
        seen_at: Option<Instant>,
    ) -> anyhow::Result<()> {
        match self.attach(iface, ifindex) {
            Ok(how) => {
                let took_ms = seen_at.map(|at| at.elapsed().as_secs_f64() * 1e3);
                if let Some(ms) = took_ms {
                    tracing::info!(
                        iface = iface.name,
                        ifindex,
                        took_ms = format!("{ms:.2}"),
                        "the interface appeared: attached"
                    );
                }
                self.now_attached(&iface.name, ifindex, how, took_ms);
                Ok(())
            }
            Err(e) if gone_meanwhile(&e) => {
                self.set_state(&iface.name, IfaceState::Waiting);
                Ok(())
            }
            Err(e) => {
                tracing::error!(
                    iface = iface.name,
                    error = format!("{e:#}"),
                    "the filter could not be attached; tried again when the interface comes back"
                );
                self.set_state(
                    &iface.name,
                    IfaceState::Failed {
                        ifindex,
                        error: format!("{e:#}"),
                    },
                );
                Err(e)
            }
        }
    }

    /// `name` carries the filter now (as `ifindex`, attached `how`): its state, its attach
    /// counted, and the DNS capture when learning is on.
    pub fn now_attached(&mut self, name: &str, ifindex: u32, how: String, took_ms: Option<f64>) {
        self.set_state(
            name,
            IfaceState::Attached {
                ifindex,
                how,
                took_ms,
            },
        );
        metrics::daemon().attached(name);
        self.capture_on(name);
    }

    /// The DNS capture on `name`, when learning is on.
    fn capture_on(&mut self, name: &str) {
        if self.learner.is_none() {
            return;
        }
        match self.dp.capture_on(name) {
            Ok(hook) => println!("learning from DNS answers on {name} ({})", hook.name()),
            Err(e) => tracing::error!(
                iface = name,
                error = %e,
                "no learning from DNS answers on this interface"
            ),
        }
    }

    /// The interface attached as `ifindex` is not `name` any more: deleted (its link is
    /// severed) or renamed away (its link still filters it). Either way the link's pin goes,
    /// and with it the filter, and the capture.
    fn lost(&mut self, name: &str, ifindex: u32) {
        let renamed = self
            .links
            .iter()
            .find(|(_, i)| **i == ifindex)
            .map(|(n, _)| n.clone());
        if let Err(e) = self.dp.capture_off(name) {
            tracing::debug!(iface = name, error = %e, "the capture went with its interface");
        }
        if let Err(e) = self.pins.remove_link(name) {
            tracing::error!(iface = name, error = %e, "unpinning the link of a lost interface");
        }
        if let Some(to) = renamed {
            tracing::warn!(
                iface = name,
                renamed_to = to,
                "the interface was renamed away: the filter left it (it follows the configured names)"
            );
            println!("{name} was renamed to {to}: detached from it, waiting for {name}");
        } else {
            tracing::warn!(
                iface = name,
                "the interface was deleted: the filter comes back with it"
            );
            println!("{name} is gone: waiting for it to come back");
        }
        self.set_state(name, IfaceState::Gone);
    }

    pub fn set_state(&mut self, name: &str, state: IfaceState) {
        metrics::daemon().interface_state(name, state.name());
        self.ifaces.insert(name.to_owned(), state);
    }

    /// Attaches to `iface` as `ifindex` (replacing a program already there without a gap);
    /// how it was attached.
    pub fn attach(&mut self, iface: &Interface, ifindex: u32) -> anyhow::Result<String> {
        let choice = self.settings.xdp_mode_of(iface);
        let how = match self
            .dp
            .attach_pinned(&iface.name, ifindex, choice, &self.pins)
            .with_context(|| format!("attaching to {}", iface.name))?
        {
            Attached::New(mode) => format!("{mode} XDP"),
            Attached::Replaced => "replaced the running program, no gap".to_string(),
        };
        let dir = iface.direction.unwrap_or(self.policy.direction);
        println!(
            "attached to {} ({how}), mode {:?}, direction {dir:?}",
            iface.name, self.policy.mode
        );
        Ok(how)
    }

    /// Takes the filter and the capture off `name` and forgets it.
    pub fn detach(&mut self, name: &str) -> anyhow::Result<()> {
        self.ifaces.remove(name);
        metrics::daemon().interface_forgotten(name);
        self.dp.capture_off(name)?;
        self.pins.remove_link(name)?;
        Ok(())
    }

    /// The attached interfaces with their ifindex.
    pub fn attached(&self) -> Vec<(String, u32)> {
        self.ifaces
            .iter()
            .filter_map(|(n, s)| match s {
                IfaceState::Attached { ifindex, .. } => Some((n.clone(), *ifindex)),
                _ => None,
            })
            .collect()
    }
}

/// Whether an attach failed because the interface went between the link event and the
/// attach (the next event says so).
fn gone_meanwhile(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<DatapathError>(),
            Some(DatapathError::NoInterface(_))
        )
    })
}
