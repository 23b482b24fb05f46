//! The kernel side as userspace sees it: load and attach the program, fill its maps, read its
//! counters, run frames through it.

pub mod batch;
pub mod bpffs;
pub mod counters;
pub mod drain;
pub mod grow;
pub mod kernel;
pub mod kernel_log;
pub mod learning;
pub mod link_ifindex;
pub mod load;
pub mod mmap;
pub mod pins;
pub mod policy_maps;
pub mod ports;
pub mod probe;
pub mod sync;
pub mod tail;
pub mod take;
pub mod testrun;

pub use load::{Capacity, Datapath, DatapathError, Lookup, XdpChoice};
