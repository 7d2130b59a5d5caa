//! One shutdown for the process: a signal every part can watch, and the
//! background threads that serve until it reaches them, stopped in the
//! reverse order they were started.
//!
//! `run` starts the dashboard, the ops endpoints and the dispatcher on
//! threads of their own (each with its own small Tokio runtime) and drives
//! the Kafka service on the main thread. SIGINT or SIGTERM triggers the
//! root signal: the Kafka service checkpoints, commits and returns; then
//! [`Threads::stop`] stops the dispatcher (the last decisions are in the
//! outbox, calls in flight finish), then the ops endpoints and the
//! dashboard. The order matters, so it is written once, here, instead of
//! one flag per thread in the wiring.
//!
//! Taken from mini-redis's `shutdown.rs` (a small, explained struct), with
//! a flag beside the notification because the Kafka poll loop is not async.
//!
//! Architecture Invariant: nothing here knows what a thread does; edges
//! hand in a future that ends when its [`Shutdown`] triggers.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use tokio::sync::Notify;

/// A stop signal: cheap to clone, watched by blocking loops
/// ([`Shutdown::is_triggered`]) and by async code ([`Shutdown::triggered`]).
#[derive(Clone, Default)]
pub struct Shutdown(Arc<Inner>);

#[derive(Default)]
struct Inner {
    set: AtomicBool,
    notify: Notify,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Ask everything that watches this signal to stop. Idempotent.
    pub fn trigger(&self) {
        self.0.set.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    pub fn is_triggered(&self) -> bool {
        self.0.set.load(Ordering::SeqCst)
    }

    /// Resolves once the signal is triggered (at once if it already was).
    pub async fn triggered(&self) {
        loop {
            // Register before checking, so a trigger between the check and
            // the wait is not missed.
            let notified = self.0.notify.notified();
            if self.is_triggered() {
                return;
            }
            notified.await;
        }
    }

    /// Trigger this signal on SIGINT / SIGTERM (once per process).
    pub fn on_ctrl_c(&self) -> Result<(), ctrlc::Error> {
        let s = self.clone();
        ctrlc::set_handler(move || s.trigger())
    }
}

/// The background threads of one process. Each has its own [`Shutdown`],
/// triggered by [`Threads::stop`] last-started first, so a part never
/// outlives what it depends on being stopped before it.
#[derive(Default)]
pub struct Threads {
    running: Vec<(Shutdown, JoinHandle<()>)>,
}

impl Threads {
    pub fn new() -> Self {
        Self::default()
    }

    /// Start `serve` on a thread named `name` with its own Tokio runtime
    /// (`workers` 0: a current-thread runtime). `serve` is called on that
    /// thread with the thread's stop signal, and its future must end soon
    /// after the signal triggers.
    pub fn spawn<F, Fut>(&mut self, name: &str, workers: usize, serve: F) -> std::io::Result<()>
    where
        F: FnOnce(Shutdown) -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let stop = Shutdown::new();
        let signal = stop.clone();
        let label = name.to_string();
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let rt = if workers == 0 {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                } else {
                    tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(workers)
                        .enable_all()
                        .build()
                };
                match rt {
                    Ok(rt) => rt.block_on(serve(signal)),
                    Err(e) => tracing::error!(thread = %label, error = %e, "cannot start runtime"),
                }
            })?;
        self.running.push((stop, handle));
        Ok(())
    }

    /// Stop every thread, last-started first, each joined before the next
    /// is told.
    pub fn stop(mut self) {
        while let Some((stop, handle)) = self.running.pop() {
            stop.trigger();
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn threads_stop_in_reverse_start_order() {
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Threads::new();
        for (name, workers) in [("first", 0), ("second", 1), ("third", 0)] {
            let order = order.clone();
            threads
                .spawn(name, workers, move |stop| async move {
                    stop.triggered().await;
                    order.lock().unwrap().push(name);
                })
                .unwrap();
        }
        threads.stop();
        assert_eq!(*order.lock().unwrap(), ["third", "second", "first"]);
    }

    #[test]
    fn a_trigger_before_the_wait_is_not_lost() {
        let s = Shutdown::new();
        s.trigger();
        assert!(s.is_triggered());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(5), s.triggered())
                .await
                .expect("already triggered");
        });
    }

    #[test]
    fn clones_share_one_signal() {
        let s = Shutdown::new();
        let c = s.clone();
        assert!(!c.is_triggered());
        s.trigger();
        assert!(c.is_triggered());
    }
}
