//! A warning that may come every round (a resolver down, a counter read failing) said once,
//! then how many times it repeated (at most hourly), and one info line when it clears: the
//! journal gets lines an admin can read, not one per name per round.

use std::time::{Duration, Instant};

/// How often a warning that goes on is said again, with its count.
const REMIND_EVERY: Duration = Duration::from_secs(3600);

#[derive(Debug)]
pub struct Repeated {
    what: &'static str,
    /// The cause being repeated, and its last message.
    current: Option<(String, String)>,
    repeats: u64,
    said: Option<Instant>,
}

impl Repeated {
    pub const fn new(what: &'static str) -> Repeated {
        Repeated {
            what,
            current: None,
            repeats: 0,
            said: None,
        }
    }

    /// The warning `message` happened again; `cause` says whether it is the same one.
    pub fn warn(&mut self, cause: &str, message: &str) {
        let what = self.what;
        match &self.current {
            Some((c, _)) if c == cause => {
                self.repeats += 1;
                if self.said.is_none_or(|at| at.elapsed() >= REMIND_EVERY) {
                    tracing::warn!(
                        repeated = self.repeats,
                        "{what}: {message} (still; repeated {} times)",
                        self.repeats
                    );
                    self.said = Some(Instant::now());
                }
            }
            _ => {
                if self.repeats > 0 {
                    tracing::info!(
                        "{what}: the previous warning repeated {} times",
                        self.repeats
                    );
                }
                tracing::warn!("{what}: {message}");
                self.current = Some((cause.to_string(), message.to_string()));
                self.repeats = 0;
                self.said = Some(Instant::now());
            }
        }
    }

    /// What was warned about is over.
    pub fn clear(&mut self) {
        if let Some((cause, _)) = self.current.take() {
            let what = self.what;
            tracing::info!(
                repeated = self.repeats,
                "{what}: works again (no more {cause}, after {} repeats)",
                self.repeats
            );
            self.repeats = 0;
            self.said = None;
        }
    }

    /// Whether a warning is current.
    pub fn active(&self) -> bool {
        self.current.is_some()
    }
}
