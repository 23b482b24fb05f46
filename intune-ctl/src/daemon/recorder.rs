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

/// The writer; dropping it lets the thread finish what was asked and end.
#[derive(Clone)]
pub struct Recorder(mpsc::Sender<Record>);

impl Recorder {
    pub fn start(state: StateDir) -> std::io::Result<Recorder> {
        let (tx, rx) = mpsc::channel::<Record>();
        std::thread::Builder::new()
            .name("state-writer".into())
            .spawn(move || {
                for record in rx {
                    write(&state, record);
                }
            })?;
        Ok(Recorder(tx))
    }

    pub fn record(&self, record: Record) {
        if self.0.send(record).is_err() {
            tracing::warn!("the state writer has stopped; a record is lost");
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
