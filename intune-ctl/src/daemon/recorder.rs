//! Writes to the state directory on a thread of its own, in the order they were asked for:
//! each is an fsync, and the datapath owner must not wait on a disk.

use std::sync::mpsc;

use super::state::{ChangeRecord, InstalledRule, StateDir};
use crate::ruleset::listing::Listing;

pub enum Record {
    /// The installed rules (for a restart, `stats` and `lookup`) and their listing (`list`).
    Installed(Vec<InstalledRule>, Box<Listing>),
    Change(ChangeRecord),
}

/// The writer; [`Recorder::finish`] waits for what was asked to be written.
pub struct Recorder {
    tx: mpsc::Sender<Record>,
    thread: std::thread::JoinHandle<()>,
}

impl Recorder {
    pub fn start(state: StateDir) -> std::io::Result<Recorder> {
        let (tx, rx) = mpsc::channel::<Record>();
        let thread = std::thread::Builder::new()
            .name("state-writer".into())
            .spawn(move || {
                for record in rx {
                    write(&state, record);
                }
            })?;
        Ok(Recorder { tx, thread })
    }

    pub fn record(&self, record: Record) {
        if self.tx.send(record).is_err() {
            tracing::warn!("the state writer has stopped; a record is lost");
        }
    }

    /// Writes what is still queued, then ends the thread: a daemon that stops loses no record.
    pub fn finish(self) {
        drop(self.tx);
        if self.thread.join().is_err() {
            tracing::warn!("the state writer panicked; the last records may be lost");
        }
    }
}

/// Writes one record where the caller runs (start-up writes before the attach).
pub fn write(state: &StateDir, record: Record) {
    match record {
        Record::Installed(rules, listing) => {
            if let Err(e) = state.save_rules(&rules) {
                tracing::warn!(error = %e, "recording the installed rules");
            }
            if let Err(e) = state.save_listing(&listing) {
                tracing::warn!(error = %e, "recording the listing of the installed rules");
            }
        }
        Record::Change(change) => {
            if let Err(e) = state.record_change(change) {
                tracing::warn!(error = %e, "recording the change");
            }
        }
    }
}
