//! The web-service task: owns the refresher, checks on its schedule (or when an admin asks),
//! and hands each new list to the datapath owner, which builds and applies it and answers
//! whether it took it. Only then is the list cached. A check that hangs on the network delays
//! nothing but the next check.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::{mpsc, oneshot};

use super::protocol::{LastCheck, ServiceStatus};
use crate::sources::{
    endpoints::{EndpointSet, service::MIN_INTERVAL},
    refresh::{Poll, RefreshError, Refresher},
};

/// What one check came to.
pub struct Checked {
    /// One line: unchanged, applied, or why not.
    pub outcome: String,
    /// How long the service asked to wait before the next check (zero when it asked nothing).
    pub wait: Duration,
}

/// One version check of `r`; a new list goes to `take`, which answers whether it is in force
/// (`None`: nobody is there to take it, and the check ends). Only a list in force is cached.
pub async fn check(
    r: &mut Refresher,
    take: impl AsyncFnOnce(String, Arc<Vec<EndpointSet>>) -> Option<Result<String, String>>,
) -> Option<Checked> {
    let polled = r.poll().await;
    crate::daemon::metrics::daemon().refreshed(polled.is_ok());
    let mut wait = Duration::ZERO;
    let outcome = match polled {
        Ok(Poll::Unchanged(version)) => {
            tracing::info!(%version, "the endpoint list is unchanged");
            format!("version {version} unchanged")
        }
        Ok(Poll::Candidate(candidate)) => {
            match take(candidate.version.clone(), candidate.sets.clone()).await? {
                Ok(outcome) => {
                    if let Err(e) = r.accept(candidate) {
                        tracing::warn!(error = %e, "the new list is in force but not cached");
                    }
                    outcome
                }
                Err(outcome) => outcome,
            }
        }
        Err(e) => {
            if let RefreshError::Service(s) = &e {
                wait = s.wait().unwrap_or(Duration::ZERO);
            }
            tracing::warn!(error = %e, "endpoint web service check failed; the list in force stays");
            format!("failed: {e}")
        }
    };
    Some(Checked { outcome, wait })
}

/// What the task is asked.
#[expect(clippy::large_enum_variant, reason = "a few messages an hour")]
pub enum ServiceCmd {
    /// An admin's `refresh`: check now unless the documented hourly limit forbids it; the
    /// answer is what came of it.
    CheckNow(oneshot::Sender<String>),
    /// A reload changed the service settings: this refresher (or none), checking at once.
    Replace(Option<Refresher>, Duration),
}

/// What the task tells the owner.
pub enum ServiceEvent {
    /// A list that passed validation; the owner answers the outcome, `Ok` when it is in force.
    Candidate {
        version: String,
        sets: Arc<Vec<EndpointSet>>,
        reply: oneshot::Sender<Result<String, String>>,
    },
    /// How the service stands now (after a check, or when one starts), and when it is
    /// checked next; `None` with the service off.
    Status(Option<(ServiceStatus, tokio::time::Instant)>),
}

pub struct ServiceTask {
    refresher: Option<Refresher>,
    interval: Duration,
    next: tokio::time::Instant,
    last: Option<(Instant, LastCheck)>,
    events: mpsc::Sender<ServiceEvent>,
}

impl ServiceTask {
    pub fn new(
        refresher: Option<Refresher>,
        interval: Duration,
        events: mpsc::Sender<ServiceEvent>,
    ) -> ServiceTask {
        ServiceTask {
            refresher,
            interval,
            // The first check comes at once; the next after the interval, or what a 429 asks.
            next: tokio::time::Instant::now(),
            last: None,
            events,
        }
    }

    pub async fn run(mut self, mut cmds: mpsc::UnboundedReceiver<ServiceCmd>) {
        self.report(false).await;
        loop {
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    None => return,
                    Some(ServiceCmd::CheckNow(reply)) => {
                        let outcome = self.check_now().await;
                        let _ = reply.send(outcome);
                    }
                    Some(ServiceCmd::Replace(refresher, interval)) => {
                        self.refresher = refresher;
                        self.interval = interval;
                        self.next = tokio::time::Instant::now();
                        self.report(false).await;
                    }
                },
                () = tokio::time::sleep_until(self.next), if self.refresher.is_some() => {
                    if !self.check().await {
                        return;
                    }
                }
            }
        }
    }

    async fn check_now(&mut self) -> String {
        let Some(r) = &self.refresher else {
            return "off".to_string();
        };
        let limited = r.client().config().is_default_url()
            && self
                .last
                .as_ref()
                .is_some_and(|(at, _)| at.elapsed() < MIN_INTERVAL);
        if limited {
            return "not checked: the endpoint web service allows one check an hour".to_string();
        }
        self.check().await;
        self.last
            .as_ref()
            .map_or(String::new(), |(_, c)| c.outcome.clone())
    }

    /// One check; `false` when the owner is gone.
    async fn check(&mut self) -> bool {
        if self.refresher.is_none() {
            return true;
        }
        self.report(true).await;
        let Some(r) = self.refresher.as_mut() else {
            return true;
        };
        let events = self.events.clone();
        let take = async |version: String, sets: Arc<Vec<EndpointSet>>| {
            let (reply, answer) = oneshot::channel();
            let sent = events.send(ServiceEvent::Candidate {
                version,
                sets,
                reply,
            });
            sent.await.ok()?;
            answer.await.ok()
        };
        let Some(Checked { outcome, wait }) = check(r, take).await else {
            return false;
        };
        self.next = tokio::time::Instant::now() + wait.max(self.interval);
        self.last = Some((
            Instant::now(),
            LastCheck {
                at: crate::daemon::state::now_rfc3339(),
                outcome,
            },
        ));
        self.report(false).await
    }

    /// Tells the owner how the service stands; `false` when it is gone.
    async fn report(&self, checking: bool) -> bool {
        let status = self.refresher.as_ref().map(|r| ServiceStatus {
            url: r.client().config().base_url.clone(),
            version: r.accepted().map(|a| a.version.clone()),
            last_check: self.last.as_ref().map(|(_, c)| c.clone()),
            next_check_in_seconds: self
                .next
                .saturating_duration_since(tokio::time::Instant::now())
                .as_secs(),
            checking,
        });
        let status = status.map(|s| (s, self.next));
        self.events.send(ServiceEvent::Status(status)).await.is_ok()
    }
}
