//! A dedicated thread for the scrape loops.
//!
//! Scrape loops wake a few times per target per interval, do a little parsing and
//! appending, and sleep again. On a multi-threaded runtime every such wake-up may also wake
//! an idle worker to steal the task. In the 80k-series race (`bench/scrape_side_by_side.sh`)
//! running the loops on one current-thread runtime took 3–8 % less CPU in 150-second A/B runs
//! (within noise over 10 minutes) and 4–10 MiB less memory. Scrape work is small per sample
//! (~0.3 µs), so one thread carries millions of samples per second; the price is that a huge
//! body delays the other targets while it is parsed.

use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;

/// A thread driving a current-thread Tokio runtime until this value is dropped. Pass
/// [`handle`](Self::handle) as [`ScrapeOptions::runtime`](crate::ScrapeOptions::runtime).
/// Drop it only after [`ScrapeManager::stop`](crate::ScrapeManager::stop) has returned:
/// tasks still on the thread are cancelled.
pub struct ScrapeThread {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
}

impl ScrapeThread {
    pub fn start() -> std::io::Result<Self> {
        let rt = Builder::new_current_thread().enable_all().build()?;
        let handle = rt.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("lookout-scrape".into())
            .spawn(move || {
                // Either a stop message or the sender dropped ends the thread.
                rt.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        Ok(ScrapeThread {
            handle,
            stop: Some(stop),
        })
    }

    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }
}

impl Drop for ScrapeThread {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_run_on_the_thread_until_it_is_dropped() {
        let t = ScrapeThread::start().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        t.handle().spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            let _ = tx.send(std::thread::current().name().map(str::to_string));
        });
        let name = rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        assert_eq!(name.as_deref(), Some("lookout-scrape"));
        let h = t.handle();
        drop(t);
        // The runtime shuts down with its thread; spawning afterwards runs nothing.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        std::thread::sleep(std::time::Duration::from_millis(50));
        drop(h.spawn(async move {
            let _ = tx.send(());
        }));
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(200))
                .is_err()
        );
    }
}
