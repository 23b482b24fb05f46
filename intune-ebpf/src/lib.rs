//! Empty: the program is in the binaries. This target lets intune-ctl name the crate as a
//! build-dependency, so cargo rebuilds intune-ctl when the program changes.
#![no_std]
