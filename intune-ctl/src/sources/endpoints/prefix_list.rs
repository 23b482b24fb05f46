//! A set's prefixes read from their texts: in order, each once, or the first that does not
//! read. A list of 100,000 is read by several threads, each a run of it (reading is most of a
//! large list's parse, and an update waits for it); the runs' sorted keys are merged.

use std::borrow::Cow;

use ipnet::IpNet;

use super::{order::PrefixKeys, schema::parse_prefix};

/// Prefixes a thread reads at least: fewer are not worth a thread's start (tens of
/// microseconds, the time of a few thousand prefixes).
const PER_THREAD: usize = 16_384;

/// The prefixes of `texts`, sorted (the order of [`super::order`]) and each once; or what the
/// first text that is not a prefix is.
pub fn read(texts: &[Cow<'_, str>]) -> Result<Vec<IpNet>, String> {
    let runs = crate::parallel::runs(texts, PER_THREAD, keys_of);
    // The runs are in the texts' order: the first error among them is the list's first.
    let runs: Vec<PrefixKeys> = runs.into_iter().collect::<Result<_, _>>()?;
    Ok(PrefixKeys::merged(runs).nets())
}

/// The sorted keys of one run of texts, or its first that is not a prefix.
fn keys_of(texts: &[Cow<'_, str>]) -> Result<PrefixKeys, String> {
    let mut keys = PrefixKeys::with_capacity(texts.len());
    for text in texts {
        keys.push(&parse_prefix(text)?);
    }
    keys.sort();
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use rand::{Rng as _, SeedableRng as _, rngs::StdRng};

    use super::*;
    use crate::sources::endpoints::order::sorted;

    fn texts(n: usize, rng: &mut StdRng) -> Vec<String> {
        (0..n)
            .map(|i| {
                let len = rng.random_range(8..=32);
                let net = ipnet::Ipv4Net::new_assert(rng.random::<u32>().into(), len).trunc();
                // Every hundredth an IPv6 prefix.
                if i % 100 == 7 {
                    format!("2001:db8:{i:x}::/48")
                } else {
                    net.to_string()
                }
            })
            .collect()
    }

    /// Enough prefixes for several threads (where the machine has the cores): the same
    /// prefixes, sorted and once each, as one thread gives; repeats across runs kept once.
    fn cows(all: &[String]) -> Vec<Cow<'_, str>> {
        all.iter().map(|t| Cow::Borrowed(t.as_str())).collect()
    }

    #[test]
    fn a_large_list_reads_as_a_small_one_does() {
        let mut rng = StdRng::seed_from_u64(5);
        let mut all = texts(4 * PER_THREAD, &mut rng);
        let repeats: Vec<String> = all.iter().step_by(50).cloned().collect();
        all.extend(repeats);
        let cows = cows(&all);
        let nets: Vec<IpNet> = all.iter().map(|t| t.parse().unwrap()).collect();
        let read = read(&cows).unwrap();
        assert_eq!(read, sorted(&nets));
        assert!(read.len() < all.len(), "the repeats are gone");
        // One thread's reading, run by run, gives the same.
        let one = keys_of(&cows).unwrap().nets();
        assert_eq!(read, one);
    }

    /// The first text that is not a prefix is named, whichever run it is in.
    #[test]
    fn the_first_bad_prefix_is_the_one_named() {
        let mut rng = StdRng::seed_from_u64(6);
        let mut all = texts(4 * PER_THREAD, &mut rng);
        let late = all.len() - 10;
        all[late] = "192.0.2.0/33".into();

        let err = read(&cows(&all)).unwrap_err();
        assert!(err.contains("192.0.2.0/33"), "{err}");
        all[PER_THREAD + 3] = "198.51.100.0/24x".into();
        let err = read(&cows(&all)).unwrap_err();
        assert!(err.contains("198.51.100.0/24x"), "{err}");
        all[2] = "not a prefix".into();
        let err = read(&cows(&all)).unwrap_err();
        assert!(err.contains("not a prefix"), "{err}");
    }
}
