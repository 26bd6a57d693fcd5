//! Wakes a worker thread's connections with one signal per publish.
//!
//! The log writer publishes from its own thread. Waking a connection task
//! that lives on an actix worker from there costs a system call (the
//! worker's event loop is signalled through its eventfd) for every
//! connection, every event: about 7% of the server's CPU at 1,000
//! subscribers (see BENCHMARKS.md). Instead, each worker thread gets one
//! relay task. The publisher hands it the wakers of that thread's
//! connections and signals it once; the relay, running on the worker, wakes
//! them there, where a wake is a push onto the local run queue.
//!
//! A relay only exists on threads that run a single-threaded runtime (the
//! server's workers: actix-server gives each its own); on a multi-threaded
//! runtime, where a task may run on any thread, wakes go straight to the task.

use std::{cell::RefCell, sync::Arc, task::Waker};

use parking_lot::Mutex;
use tokio::sync::Notify;

pub(super) struct Relay {
    pending: Mutex<Pending>,
    /// Signals the relay task that `pending` went from empty to not.
    signal: Notify,
}

struct Pending {
    /// Cleared when the relay task is gone (its runtime stopped): wakes go
    /// straight to their tasks from then on.
    alive: bool,
    wakers: Vec<Waker>,
}

thread_local! {
    static HOME: RefCell<Option<Arc<Relay>>> = const { RefCell::new(None) };
}

impl Relay {
    /// The relay of the calling thread, started on first use; `None` unless
    /// the thread runs a single-threaded runtime.
    pub(super) fn for_this_thread() -> Option<Arc<Relay>> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        if runtime.runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread {
            return None;
        }
        HOME.with(|home| {
            let mut home = home.borrow_mut();
            if let Some(relay) = home.as_ref().filter(|relay| relay.pending.lock().alive) {
                return Some(relay.clone());
            }
            let relay = Arc::new(Relay {
                pending: Mutex::new(Pending {
                    alive: true,
                    wakers: Vec::new(),
                }),
                signal: Notify::new(),
            });
            runtime.spawn(run(relay.clone()));
            *home = Some(relay.clone());
            Some(relay)
        })
    }

    /// Wakes `waker` from the relay's thread (or right here, if the relay
    /// has stopped).
    pub(super) fn wake(&self, waker: Waker) {
        let mut pending = self.pending.lock();
        if !pending.alive {
            drop(pending);
            waker.wake();
            return;
        }
        let first = pending.wakers.is_empty();
        pending.wakers.push(waker);
        drop(pending);
        if first {
            self.signal.notify_one();
        }
    }
}

/// The relay task: wakes what it was handed, on its own thread.
async fn run(relay: Arc<Relay>) {
    // Wakes whatever is still pending when the task is dropped with its
    // runtime, and sends later wakes straight to their tasks.
    struct Stopped(Arc<Relay>);
    impl Drop for Stopped {
        fn drop(&mut self) {
            let wakers = {
                let mut pending = self.0.pending.lock();
                pending.alive = false;
                std::mem::take(&mut pending.wakers)
            };
            wakers.into_iter().for_each(Waker::wake);
        }
    }
    let stopped = Stopped(relay);
    let mut batch = Vec::new();
    loop {
        stopped.0.signal.notified().await;
        // Swapped, so both vectors keep their capacity.
        std::mem::swap(&mut batch, &mut stopped.0.pending.lock().wakers);
        batch.drain(..).for_each(Waker::wake);
    }
}
