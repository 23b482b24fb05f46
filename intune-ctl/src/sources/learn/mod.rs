//! Learning the addresses of endpoint names from the DNS answers that cross the gateway.

pub mod answer;
pub mod learner;
pub mod patterns;
pub mod table;
