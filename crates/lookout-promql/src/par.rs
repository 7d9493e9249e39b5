//! Splitting per-series work across the machine's cores (the caller's thread and the
//! persistent helpers of [`crate::pool`]).
//!
//! Work is cut into contiguous parts of roughly equal weight (samples), so concatenating the
//! parts' results keeps the serial order and the output is identical to a one-thread run.

use std::sync::OnceLock;

/// Never more workers than this, however many cores there are.
const MAX_WORKERS: usize = 8;

/// Helper threads for the engine's parallel loops.
static POOL: lookout_workpool::WorkPool = lookout_workpool::WorkPool::new("promql");
/// Below this much weight per extra worker a thread costs more than it saves.
pub(crate) const MIN_WEIGHT_PER_WORKER: usize = 64 * 1024;

/// Cores available to this process (cached: the lookup reads cgroup files).
pub(crate) fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, MAX_WORKERS)
    })
}

/// Boundaries (`items.len() + 1` at most) cutting `items` into `parts` contiguous ranges of
/// similar total weight.
fn split_points<T>(items: &[T], weight: &impl Fn(&T) -> usize, parts: usize) -> Vec<usize> {
    let total: usize = items.iter().map(weight).sum();
    let mut cuts = vec![0];
    let mut acc = 0usize;
    let mut next = 1usize;
    for (i, it) in items.iter().enumerate() {
        acc += weight(it);
        // Cut after item i once the running weight reaches next/parts of the total.
        if next < parts && acc.saturating_mul(parts) >= total.saturating_mul(next) {
            cuts.push(i + 1);
            next += 1;
        }
    }
    if cuts.last() != Some(&items.len()) {
        cuts.push(items.len());
    }
    cuts
}

/// Runs `f` over contiguous parts of `items` on up to [`cores`] threads (the caller's and the
/// [`crate::pool`] helpers, each taking the next part) and returns the parts' results in order. Runs on the calling thread
/// alone when the total weight is small.
pub(crate) fn map_parts<T, R>(
    items: &[T],
    weight: impl Fn(&T) -> usize,
    f: impl Fn(&[T]) -> R + Sync,
) -> Vec<R>
where
    T: Sync,
    R: Send,
{
    let total: usize = items.iter().map(&weight).sum();
    let workers = cores()
        .min(total / MIN_WEIGHT_PER_WORKER)
        .min(items.len())
        .max(1);
    if workers == 1 {
        return vec![f(items)];
    }
    let cuts = split_points(items, &weight, workers);
    let parts: Vec<&[T]> = cuts.windows(2).map(|w| &items[w[0]..w[1]]).collect();
    map_dynamic(&parts, usize::MAX, |p| f(p))
}

/// `f` over every item on up to [`cores`] threads (the caller's and the persistent
/// [`crate::pool`] helpers) that take the next item whenever they are done, so a thread the scheduler starts late leaves its
/// share to the others; results in item order. One thread when `weight` (total work) is
/// small.
pub(crate) fn map_dynamic<T, R>(items: &[T], weight: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R>
where
    T: Sync,
    R: Send,
{
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let workers = cores()
        .min(weight / MIN_WEIGHT_PER_WORKER)
        .min(items.len())
        .max(1);
    if workers == 1 {
        return items.iter().map(f).collect();
    }
    let slots: Vec<Mutex<Option<R>>> = items.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let work = || {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(i) else { break };
            let r = f(item);
            *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
        }
    };
    POOL.run(workers - 1, &work);
    slots
        .into_iter()
        .filter_map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_everything_in_order() {
        for n in [0usize, 1, 2, 3, 10, 101] {
            for parts in 1..5 {
                let items: Vec<usize> = (0..n).map(|i| i % 7 + 1).collect();
                let cuts = split_points(&items, &|x: &usize| *x, parts);
                assert_eq!(cuts[0], 0);
                assert_eq!(*cuts.last().unwrap(), n);
                assert!(cuts.windows(2).all(|w| w[0] <= w[1]), "{cuts:?}");
                assert!(cuts.len() <= parts + 1);
            }
        }
    }

    #[test]
    fn dynamic_map_keeps_order() {
        let items: Vec<u64> = (0..1000).collect();
        let big = map_dynamic(&items, usize::MAX / 2, |x| x * 3);
        assert_eq!(big, items.iter().map(|x| x * 3).collect::<Vec<_>>());
        let small = map_dynamic(&items, 1, |x| x + 1);
        assert_eq!(small, items.iter().map(|x| x + 1).collect::<Vec<_>>());
    }

    #[test]
    fn big_inputs_are_split_and_results_keep_order() {
        let items: Vec<u64> = (0..10_000).collect();
        let parts = map_parts(&items, |_| MIN_WEIGHT_PER_WORKER, |p| p.to_vec());
        assert_eq!(parts.len(), cores().min(items.len()));
        let joined: Vec<u64> = parts.concat();
        assert_eq!(joined, items);
        // Small inputs stay on one thread.
        assert_eq!(map_parts(&items, |_| 1, |p| p.len()), vec![10_000]);
    }
}
