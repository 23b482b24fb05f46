//! intune-ctl: loads the intune-xdp kernel program, fills its maps from the Intune endpoint
//! list, runs frames through it and reads its counters.

pub mod capture;
pub mod changes;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod datapath;
pub mod endpoints;
pub mod learn;
pub mod local_addrs;
pub mod metrics;
pub mod policy;
pub mod reference;
pub mod refresh;
pub mod resolve;
pub mod rules;
pub mod state;
pub mod updater;
pub mod v4table;
