//! The subcommands, one file each; `main.rs` parses and dispatches.

pub mod classify;
pub mod common;
pub mod run;
