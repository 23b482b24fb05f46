//! Work split between threads where an update waits for it: a long slice in runs (an
//! update's removed-rule counters, a call each), and how many threads may help at all (a long
//! list's prefixes, `sources::endpoints::prefix_list`). Short work stays on the calling
//! thread.

/// Threads at most: a gateway's cores are its packets' first.
const MAX_THREADS: usize = 4;

/// `work` of each run of `items` (in order), the runs at least `per_thread` long, one per
/// thread; the calling thread takes the first run. A panic in a run is raised here.
pub fn runs<T: Sync, R: Send>(
    items: &[T],
    per_thread: usize,
    work: impl Fn(&[T]) -> R + Sync,
) -> Vec<R> {
    let threads = (items.len() / per_thread.max(1))
        .min(MAX_THREADS)
        .min(cores());
    if threads <= 1 {
        return vec![work(items)];
    }
    let mut runs = items.chunks(items.len().div_ceil(threads));
    let first = runs.next().unwrap_or_default();
    let work = &work;
    std::thread::scope(|scope| {
        let others: Vec<_> = runs.map(|run| scope.spawn(move || work(run))).collect();
        std::iter::once(work(first))
            .chain(others.into_iter().map(|w| {
                w.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            }))
            .collect()
    })
}

/// Threads that may help the calling one: one fewer than the cores it may use, at most
/// [`MAX_THREADS`] in all.
pub fn helpers() -> usize {
    cores().min(MAX_THREADS) - 1
}

/// The cores this process may use, asked once: the answer reads cgroup files (tens of
/// microseconds).
fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_cover_the_items_in_order() {
        let items: Vec<u32> = (0..10_000).collect();
        for per_thread in [1, 100, 2_500, 10_000, 20_000] {
            let runs = runs(&items, per_thread, <[u32]>::to_vec);
            assert_eq!(runs.concat(), items, "{per_thread} a thread");
            let most = std::thread::available_parallelism().map_or(1, usize::from);
            let expected = (10_000 / per_thread).clamp(1, MAX_THREADS.min(most));
            assert_eq!(runs.len(), expected, "{per_thread} a thread");
        }
        assert_eq!(runs(&[] as &[u32], 10, <[u32]>::len), vec![0]);
    }

    #[test]
    #[should_panic(expected = "run with 7")]
    fn a_panic_in_a_run_reaches_the_caller() {
        let items: Vec<u32> = (0..100).collect();
        runs(&items, 10, |run| assert!(!run.contains(&7), "run with 7"));
    }
}
