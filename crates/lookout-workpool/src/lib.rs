//! Persistent helper threads for a query's parallel loops (the tsdb read path's decoding,
//! the PromQL engine's per-series and per-step work).
//!
//! A query used to spawn scoped threads for each parallel step; a new thread often starts
//! on the caller's (busy) core and waits milliseconds for the scheduler to move it, so the
//! caller did most of the work alone. Here `cores - 1` helpers sleep on a condition variable
//! and join a loop the moment it is posted. One loop runs at a time; a caller that finds the
//! pool busy (two queries at once) falls back to scoped threads. Each user has a pool of its
//! own (a `static` [`WorkPool`]), so the engine's loop and the storage's decoding inside it
//! do not queue behind each other.

use std::any::Any;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};

/// A posted loop body, its lifetime erased (see [`run`] for why that is sound).
type Task = &'static (dyn Fn() + Sync);

#[derive(Default)]
struct State {
    task: Option<Task>,
    /// Helpers that may still join the posted task.
    wanted: usize,
    /// Helpers inside the task.
    running: usize,
    panic: Option<Box<dyn Any + Send>>,
}

struct Pool {
    helpers: usize,
    busy: Mutex<()>,
    state: Mutex<State>,
    work: Condvar,
    done: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Pool {
    fn helper(&'static self) {
        let mut st = lock(&self.state);
        loop {
            match st.task {
                Some(task) if st.wanted > 0 => {
                    st.wanted -= 1;
                    st.running += 1;
                    drop(st);
                    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(task));
                    st = lock(&self.state);
                    if let Err(p) = res {
                        st.panic.get_or_insert(p);
                    }
                    st.running -= 1;
                    if st.running == 0 {
                        self.done.notify_all();
                    }
                }
                _ => st = self.work.wait(st).unwrap_or_else(|e| e.into_inner()),
            }
        }
    }
}

/// Never more helpers than this, however many cores there are.
const MAX_HELPERS: usize = 7;

/// A lazily started set of helper threads; declare one as a `static` per user.
pub struct WorkPool {
    name: &'static str,
    pool: OnceLock<Option<&'static Pool>>,
}

impl WorkPool {
    /// Helpers are named `{name}-{i}` and started on first use.
    pub const fn new(name: &'static str) -> Self {
        WorkPool {
            name,
            pool: OnceLock::new(),
        }
    }

    fn pool(&self) -> Option<&'static Pool> {
        *self.pool.get_or_init(|| {
            let max_helpers = std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .saturating_sub(1)
                .min(MAX_HELPERS);
            if max_helpers == 0 {
                return None;
            }
            let p: &'static Pool = Box::leak(Box::new(Pool {
                helpers: max_helpers,
                busy: Mutex::new(()),
                state: Mutex::new(State::default()),
                work: Condvar::new(),
                done: Condvar::new(),
            }));
            for i in 0..max_helpers {
                let spawned = std::thread::Builder::new()
                    .name(format!("{}-{i}", self.name))
                    .spawn(move || p.helper());
                if let Err(e) = spawned {
                    tracing::warn!(pool = self.name, error = %e, "no helper thread; parallel loops use scoped threads");
                    return None;
                }
            }
            Some(p)
        })
    }

    /// Runs `f` on the calling thread and on up to `extra` other threads at once (each call
    /// of `f` should take work items until none are left), returning when all calls have
    /// returned. The pool has one helper per core beyond the first. A panic in any call is
    /// re-raised here.
    pub fn run(&self, extra: usize, f: &(dyn Fn() + Sync)) {
        if extra == 0 {
            return f();
        }
        let Some(p) = self.pool() else {
            return scoped(extra, f);
        };
        let Ok(_busy) = p.busy.try_lock() else {
            return scoped(extra, f);
        };
        // SAFETY: the erased reference is only called by helpers that took it from `state`
        // while `task` was set; `Finish` (run on return and on unwind) clears `task` and
        // waits until every such helper has left it, so no call outlives this borrow of `f`.
        let task: Task = unsafe { std::mem::transmute::<&(dyn Fn() + Sync), Task>(f) };
        {
            let mut st = lock(&p.state);
            st.task = Some(task);
            st.wanted = extra.min(p.helpers);
            st.panic = None;
        }
        p.work.notify_all();
        {
            let _finish = Finish(p);
            f();
        }
        if let Some(panic) = lock(&p.state).panic.take() {
            std::panic::resume_unwind(panic);
        }
    }
}

/// Clears the posted task and waits until no helper is inside it, also when the caller's
/// own share panics: only then may the borrowed closure go away.
struct Finish<'a>(&'a Pool);

impl Drop for Finish<'_> {
    fn drop(&mut self) {
        let mut st = lock(&self.0.state);
        st.task = None;
        st.wanted = 0;
        while st.running > 0 {
            st = self.0.done.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }
}

fn scoped(extra: usize, f: &(dyn Fn() + Sync)) {
    std::thread::scope(|sc| {
        let handles: Vec<_> = (0..extra).map(|_| sc.spawn(f)).collect();
        f();
        for h in handles {
            if let Err(p) = h.join() {
                std::panic::resume_unwind(p);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static POOL: WorkPool = WorkPool::new("test-pool");

    fn run(extra: usize, f: &(dyn Fn() + Sync)) {
        POOL.run(extra, f)
    }

    #[test]
    fn every_item_once_and_panics_reach_the_caller() {
        for round in 0..50 {
            let next = AtomicUsize::new(0);
            let seen: Vec<AtomicUsize> = (0..500).map(|_| AtomicUsize::new(0)).collect();
            run(2, &|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(s) = seen.get(i) else { break };
                    s.fetch_add(1, Ordering::Relaxed);
                }
            });
            assert!(
                seen.iter().all(|s| s.load(Ordering::Relaxed) == 1),
                "round {round}"
            );
        }
        let calls = AtomicUsize::new(0);
        let r = std::panic::catch_unwind(|| {
            run(2, &|| {
                if calls.fetch_add(1, Ordering::SeqCst) == 1 {
                    panic!("boom");
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            })
        });
        assert!(r.is_err() || calls.load(Ordering::SeqCst) < 2);
        // The pool still works afterwards.
        let n = AtomicUsize::new(0);
        run(2, &|| {
            n.fetch_add(1, Ordering::SeqCst);
        });
        assert!(n.load(Ordering::SeqCst) >= 1);
    }

    #[test]
    fn concurrent_callers_fall_back_and_finish() {
        std::thread::scope(|sc| {
            for _ in 0..4 {
                sc.spawn(|| {
                    for _ in 0..50 {
                        let next = AtomicUsize::new(0);
                        let total = AtomicUsize::new(0);
                        run(1, &|| {
                            while next.fetch_add(1, Ordering::Relaxed) < 100 {
                                total.fetch_add(1, Ordering::Relaxed);
                            }
                        });
                        assert_eq!(total.load(Ordering::Relaxed), 100);
                    }
                });
            }
        });
    }
}
