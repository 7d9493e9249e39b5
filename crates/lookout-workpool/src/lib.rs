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
//!
//! On Linux the helpers are kept off the caller's current core while a loop is posted (their
//! CPU affinity is the process's CPUs minus that one, set only when the caller's core
//! changes): right after other work (another program, a peer's query) the scheduler's load
//! figures often place a woken helper on the caller's core, where both run at half speed.

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
    #[cfg(target_os = "linux")]
    spread: Option<affinity::Spread>,
}

#[cfg(target_os = "linux")]
mod affinity {
    use std::sync::Mutex;

    /// Keeps a pool's helpers off the core of the thread posting a loop.
    pub(crate) struct Spread {
        /// The CPUs the process may use (when the pool started).
        allowed: libc::cpu_set_t,
        helpers: Mutex<Helpers>,
    }

    struct Helpers {
        /// Thread ids of the helpers that have started.
        tids: Vec<libc::pid_t>,
        /// The CPU their affinity leaves out now (-1: none yet).
        avoided: i32,
    }

    impl Spread {
        /// `None` when the process may run on fewer than two CPUs.
        pub(crate) fn new() -> Option<Spread> {
            // SAFETY: `cpu_set_t` is plain bits (all zero is the empty set); the call writes
            // at most `size_of::<cpu_set_t>()` bytes into it.
            let mut allowed: libc::cpu_set_t = unsafe { std::mem::zeroed() };
            let size = std::mem::size_of::<libc::cpu_set_t>();
            // SAFETY: see above; pid 0 is the calling thread.
            if unsafe { libc::sched_getaffinity(0, size, &mut allowed) } != 0 {
                return None;
            }
            // SAFETY: reads the set initialised above.
            if unsafe { libc::CPU_COUNT(&allowed) } < 2 {
                return None;
            }
            Some(Spread {
                allowed,
                helpers: Mutex::new(Helpers {
                    tids: Vec::new(),
                    avoided: -1,
                }),
            })
        }

        /// Called by each helper once, on its own thread: it may use every allowed CPU
        /// (not only those of the thread that spawned it) until the next loop is posted.
        pub(crate) fn register(&self) {
            // SAFETY: no preconditions.
            let tid = unsafe { libc::gettid() };
            let size = std::mem::size_of::<libc::cpu_set_t>();
            // SAFETY: `allowed` is initialised; failure leaves the inherited affinity.
            unsafe { libc::sched_setaffinity(0, size, &self.allowed) };
            let mut h = super::lock(&self.helpers);
            h.tids.push(tid);
            h.avoided = -1;
        }

        /// Sets the helpers' affinity to the allowed CPUs except the caller's current one
        /// (nothing to do when that is the CPU already left out).
        pub(crate) fn avoid_callers_cpu(&self) {
            // SAFETY: no preconditions; -1 on failure.
            let cpu = unsafe { libc::sched_getcpu() };
            if cpu < 0 {
                return;
            }
            let mut h = super::lock(&self.helpers);
            if h.avoided == cpu {
                return;
            }
            let mut set = self.allowed;
            let size = std::mem::size_of::<libc::cpu_set_t>();
            // SAFETY: `cpu` is checked against the set's capacity and `set` is an
            // initialised copy of `allowed`.
            unsafe {
                if (cpu as usize) < 8 * size && libc::CPU_ISSET(cpu as usize, &set) {
                    libc::CPU_CLR(cpu as usize, &mut set);
                }
                if libc::CPU_COUNT(&set) == 0 {
                    return;
                }
            }
            for &tid in &h.tids {
                // SAFETY: `set` is initialised; a failure (thread gone) only leaves that
                // helper's affinity as it was.
                if unsafe { libc::sched_setaffinity(tid, size, &set) } != 0 {
                    tracing::debug!(tid, cpu, "could not set a helper's CPU affinity");
                }
            }
            h.avoided = cpu;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Pool {
    fn helper(&'static self) {
        #[cfg(target_os = "linux")]
        if let Some(spread) = &self.spread {
            spread.register();
        }
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
                #[cfg(target_os = "linux")]
                spread: affinity::Spread::new(),
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
        #[cfg(target_os = "linux")]
        if let Some(spread) = &p.spread {
            spread.avoid_callers_cpu();
        }
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

    /// With two or more CPUs, a helper that joins a loop runs on another CPU than the
    /// (pinned) caller.
    #[cfg(target_os = "linux")]
    #[test]
    fn helpers_stay_off_the_callers_cpu() {
        static SPREAD_POOL: WorkPool = WorkPool::new("test-spread");
        let Some(spread) = affinity::Spread::new() else {
            eprintln!("fewer than two CPUs: nothing to check");
            return;
        };
        drop(spread);
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: plain bits; the calls read/write at most `size` bytes.
        let mut mine: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::sched_getaffinity(0, size, &mut mine) }, 0);
        let cpus: Vec<usize> = (0..8 * size)
            .filter(|&c| unsafe { libc::CPU_ISSET(c, &mine) })
            .collect();
        // Start the helpers (unpinned) and let each report once.
        let joined = std::sync::atomic::AtomicBool::new(false);
        let warm_deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        let warm_caller = std::thread::current().id();
        while !joined.load(Ordering::SeqCst) && std::time::Instant::now() < warm_deadline {
            SPREAD_POOL.run(1, &|| {
                if std::thread::current().id() != warm_caller {
                    joined.store(true, Ordering::SeqCst);
                }
            });
        }
        for &pin in cpus.iter().take(2) {
            // Pin this thread (the caller) to one CPU.
            let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
            unsafe { libc::CPU_SET(pin, &mut one) };
            assert_eq!(unsafe { libc::sched_setaffinity(0, size, &one) }, 0);
            for _ in 0..20 {
                let caller = std::thread::current().id();
                let helper_cpu = std::sync::atomic::AtomicI32::new(-1);
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
                SPREAD_POOL.run(1, &|| {
                    if std::thread::current().id() == caller {
                        // Wait (bounded) for the helper to report.
                        while helper_cpu.load(Ordering::SeqCst) < 0
                            && std::time::Instant::now() < deadline
                        {
                            std::hint::spin_loop();
                        }
                    } else {
                        helper_cpu.store(unsafe { libc::sched_getcpu() }, Ordering::SeqCst);
                    }
                });
                let got = helper_cpu.load(Ordering::SeqCst);
                assert!(got >= 0, "no helper joined within 2 s");
                assert_ne!(got as usize, pin, "helper ran on the caller's CPU");
            }
        }
        assert_eq!(unsafe { libc::sched_setaffinity(0, size, &mine) }, 0);
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
