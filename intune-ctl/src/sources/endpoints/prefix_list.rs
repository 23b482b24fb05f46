//! A set's prefixes read from their texts: in order, each once, or the first that does not
//! read. A long list is read while the JSON parser is still finding its texts: each batch the
//! parser fills goes to a helper thread (reading the texts is more than half of a large
//! list's parse, and an update waits for it), and the batches' sorted keys are merged.

use std::{
    borrow::Cow,
    collections::VecDeque,
    sync::{Condvar, Mutex, PoisonError},
};

use ipnet::IpNet;

use super::{order::PrefixKeys, schema::parse_prefix};

/// Texts a batch holds: a list shorter than one is read on the parser's thread alone (a
/// thread's start costs the time of a few thousand prefixes).
const BATCH: usize = 4096;

/// The prefixes of the texts `next` gives (`None` after the last), sorted (the order of
/// [`super::order`]) and each once; or what the first text that is not a prefix is. An error
/// of `next` ends the reading and is returned as it is.
pub fn read<'de, E>(
    mut next: impl FnMut() -> Result<Option<Cow<'de, str>>, E>,
) -> Result<Result<Vec<IpNet>, String>, E> {
    let mut first = Vec::new();
    while first.len() < BATCH {
        match next()? {
            Some(text) => first.push(text),
            None => return Ok(keys_of(&first).map(|k| k.nets())),
        }
    }
    let helpers = crate::parallel::helpers();
    if helpers == 0 {
        while let Some(text) = next()? {
            first.push(text);
        }
        return Ok(keys_of(&first).map(|k| k.nets()));
    }
    let queue = Queue::default();
    let read = Mutex::new(Vec::new());
    // Reads batches until none is left; a helper waits for more until the parser is done.
    let help = |wait: bool| {
        while let Some((at, texts)) = queue.take(wait) {
            let keys = keys_of(&texts);
            lock(&read).push((at, keys));
        }
    };
    std::thread::scope(|scope| {
        for _ in 0..helpers {
            scope.spawn(|| help(true));
        }
        // Whatever way this ends (an error of `next` too), the helpers are let go.
        let closing = queue.closer();
        queue.put(0, first);
        let mut at = 1;
        let mut batch = Vec::with_capacity(BATCH);
        while let Some(text) = next()? {
            batch.push(text);
            if batch.len() == BATCH {
                queue.put(at, std::mem::replace(&mut batch, Vec::with_capacity(BATCH)));
                at += 1;
            }
        }
        queue.put(at, batch);
        drop(closing);
        // The parser is done: this thread reads what is left beside the helpers, never
        // waiting for one of them (a helper the scheduler keeps off a core holds nothing).
        help(false);
        Ok(())
    })?;
    let mut runs = read.into_inner().unwrap_or_else(PoisonError::into_inner);
    // The first error in the texts' order is the list's first.
    runs.sort_unstable_by_key(|(at, _)| *at);
    Ok(runs
        .into_iter()
        .map(|(_, keys)| keys)
        .collect::<Result<Vec<_>, _>>()
        .map(|runs| PrefixKeys::merged(runs).nets()))
}

/// A batch of texts with its place in the list.
type Batch<'de> = (usize, Vec<Cow<'de, str>>);

/// Batches waiting for a thread to read them, and whether the parser is done.
#[derive(Default)]
struct Queue<'de> {
    state: Mutex<(VecDeque<Batch<'de>>, bool)>,
    more: Condvar,
}

impl<'de> Queue<'de> {
    fn put(&self, at: usize, texts: Vec<Cow<'de, str>>) {
        lock(&self.state).0.push_back((at, texts));
        self.more.notify_one();
    }

    /// The next batch; with `wait`, waits for one while the parser may still give more.
    fn take(&self, wait: bool) -> Option<Batch<'de>> {
        let mut state = lock(&self.state);
        loop {
            if let Some(batch) = state.0.pop_front() {
                return Some(batch);
            }
            if state.1 || !wait {
                return None;
            }
            state = self
                .more
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Says, when dropped, that no batch will come any more.
    fn closer(&self) -> impl Drop + '_ {
        struct Closer<'q, 'de>(&'q Queue<'de>);
        impl Drop for Closer<'_, '_> {
            fn drop(&mut self) {
                lock(&self.0.state).1 = true;
                self.0.more.notify_all();
            }
        }
        Closer(self)
    }
}

/// A lock that a panic elsewhere does not make unusable: what it guards is pushed and popped
/// whole.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The sorted keys of one batch of texts, or its first that is not a prefix.
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
    use std::convert::Infallible;

    use rand::{Rng as _, SeedableRng as _, rngs::StdRng};

    use super::*;
    use crate::sources::endpoints::order::sorted;

    /// Random prefixes, every hundredth an IPv6 one.
    fn texts(n: usize, rng: &mut StdRng) -> Vec<String> {
        (0..n)
            .map(|i| {
                if i % 100 == 7 {
                    format!("2001:db8:{i:x}::/48")
                } else {
                    let len = rng.random_range(8..=32);
                    ipnet::Ipv4Net::new_assert(rng.random::<u32>().into(), len)
                        .trunc()
                        .to_string()
                }
            })
            .collect()
    }

    fn read_all(all: &[String]) -> Result<Vec<IpNet>, String> {
        let mut texts = all.iter().map(|t| Cow::Borrowed(t.as_str()));
        read(|| Ok::<_, Infallible>(texts.next())).unwrap_or_else(|never| match never {})
    }

    /// Several batches (read by helper threads where the machine has more than one core), in
    /// random order and in order, repeats across batches among them: sorted and once each, as
    /// the prefixes themselves sort.
    #[test]
    fn a_long_list_reads_as_its_prefixes_sort() {
        let mut rng = StdRng::seed_from_u64(5);
        let mut all = texts(5 * BATCH + 17, &mut rng);
        let repeats: Vec<String> = all.iter().step_by(50).cloned().collect();
        all.extend(repeats);
        let nets: Vec<IpNet> = all.iter().map(|t| t.parse().unwrap()).collect();
        let expected = sorted(&nets);
        assert!(expected.len() < all.len(), "the input holds repeats");
        assert_eq!(read_all(&all), Ok(expected.clone()));
        let in_order: Vec<String> = expected.iter().map(ToString::to_string).collect();
        assert_eq!(read_all(&in_order), Ok(expected));
    }

    /// The first text that is not a prefix is named, whichever batch it is in.
    #[test]
    fn the_first_bad_prefix_is_the_one_named() {
        let mut rng = StdRng::seed_from_u64(6);
        let mut all = texts(4 * BATCH, &mut rng);
        let last = all.len() - 1;
        all[last] = "192.0.2.0/33".into();
        let err = read_all(&all).unwrap_err();
        assert!(err.contains("192.0.2.0/33"), "{err}");
        all[BATCH + 3] = "198.51.100.0/24x".into();
        let err = read_all(&all).unwrap_err();
        assert!(err.contains("198.51.100.0/24x"), "{err}");
        all[2] = "not a prefix".into();
        let err = read_all(&all).unwrap_err();
        assert!(err.contains("not a prefix"), "{err}");
    }

    /// The parser's own error (the JSON ends, a value is not a string) ends the reading with
    /// that error, helpers or not.
    #[test]
    fn an_error_of_the_parser_is_returned_as_it_is() {
        let mut rng = StdRng::seed_from_u64(7);
        for n in [10, 3 * BATCH + 5] {
            let all = texts(n, &mut rng);
            let mut texts = all.iter().map(|t| Cow::Borrowed(t.as_str()));
            let got = read(|| match texts.next() {
                Some(t) => Ok(Some(t)),
                None => Err("the JSON ends"),
            });
            assert_eq!(got, Err("the JSON ends"), "{n} texts");
        }
    }
}
