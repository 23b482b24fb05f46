//! What the endpoint sets make: rules with their effective ports, the policy around them, the
//! changes between two rule sets and the lookup tables' compiler.

pub mod build;
pub mod changes;
pub mod listing;
pub mod paired;
pub mod policy;
pub mod regions;
pub mod rules;
pub mod table;
