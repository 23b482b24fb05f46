//! The contract between the intune-xdp kernel program and its userspace: map names and layouts,
//! outcomes and counters, and a pure-Rust reference of the kernel's decision.
#![no_std]

pub mod classify;
pub mod learn;
pub mod maps;
pub mod outcome;
pub mod proto;
pub mod table;
