//! The DNS-learning path on arbitrary bytes: reading a captured response against the built-in
//! list's names must return, never panic, and learn only addresses the answer section holds.
//! `cargo +nightly fuzz run dns_answer` (seeds: `fuzz/corpus/dns_answer`).
#![no_main]

use std::sync::OnceLock;

use intune_ctl::{
    sources::endpoints::builtin::builtin,
    sources::learn::{answer::learn, patterns::Patterns},
};
use libfuzzer_sys::fuzz_target;

fn patterns() -> &'static Patterns {
    static PATTERNS: OnceLock<Patterns> = OnceLock::new();
    PATTERNS.get_or_init(|| Patterns::of(&builtin().expect("the built-in list parses")))
}

fuzz_target!(|data: &[u8]| {
    if let Ok(reading) = learn(data, patterns()) {
        for l in &reading.learned {
            assert!(!reading.others.contains(&l.address));
        }
    }
});
