//! intune-ctl: loads the intune-xdp kernel program, fills its maps from the Intune endpoint
//! list, runs frames through it and reads its counters.
//!
//! Data flows one way: `sources` (built-in list, web service, files, names resolved, names
//! learned) → `ruleset` (rules with their effective ports, changes, the lookup tables) →
//! `datapath` (the kernel program and its maps). `daemon` runs that flow as tasks around the
//! one owner of the datapath; `cli` is the command line, which nothing else imports.

pub mod capture;
pub mod check;
pub mod cli;
pub mod daemon;
pub mod datapath;
pub mod parallel;
pub mod reference;
pub mod repeated;
pub mod ruleset;
pub mod settings;
pub mod sources;
