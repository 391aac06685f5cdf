//! Writes that return before they are durable: a [`Ticket`] to wait on or to be called
//! back by.
//!
//! A blocking commit holds its thread until the group `fdatasync` that covers it. A
//! server with many writes in flight then parks a thread per write, and each sync wakes
//! them all. [`Dimension::submit`](crate::Dimension::submit) instead returns once the frame
//! is in the log; [`Ticket::on_durable`] parks only a callback, and one committer thread
//! per dimension syncs for every waiting callback at once and runs them. The write stays
//! invisible to readers until then, exactly as with a blocking commit.
//!
//! # The inbox
//!
//! A `submit` still appends on the caller's thread, under the writer lock. With several
//! threads writing, they meet on that lock, and on a small machine waiting for it costs
//! more than the append (`sched_yield`s and futex sleeps, each a context switch).
//! [`Dimension::enqueue_put`] and [`Dimension::enqueue_delete`] only push the write into
//! the dimension's inbox and wake the committer, which appends everything in the inbox,
//! syncs once for it and calls back: one thread takes the writer lock, as Redis's one thread
//! both applies and syncs. docs/BENCHMARKS.md (`## HTTP`) has the numbers.

use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::dimension::DimInner;
use crate::record::Kind;
use crate::{Dimension, Durability, Expect, Result, Version};

/// What [`Ticket::on_durable`] runs once the write is durable (or can no longer become so).
pub(crate) type Callback = Box<dyn FnOnce(Result<Version>) + Send>;

/// A write that is in the log; see the module docs. Dropping it without [`wait`](Self::wait)
/// or [`on_durable`](Self::on_durable) still has the write synced (under `Immediate`, by the
/// committer thread) and then shown to readers; only the answer is not waited for.
#[must_use = "a write is acknowledged only once its ticket says it is durable"]
pub struct Ticket {
    pub(crate) dim: Arc<DimInner>,
    pub(crate) seq: u64,
    /// Set by `wait` and `on_durable`; a ticket dropped without either still has its write
    /// made durable (see `Drop`).
    asked: bool,
}

/// A ticket dropped without `wait` or `on_durable`: its write is in the log but under
/// `Immediate` nothing would sync it until some other write does, and until then readers
/// do not see it while conditions already count it (a compare-and-set on its key would
/// fail over and over). So the committer is asked to sync it, as for a callback that does
/// nothing with the answer.
impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.asked {
            self.asked = true;
            register(&self.dim, self.seq, Box::new(|_| {}), true);
        }
    }
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket").field("dimension", &self.dim.name).field("version", &self.seq).finish()
    }
}

impl Ticket {
    pub(crate) fn new(dim: Arc<DimInner>, seq: u64) -> Ticket {
        Ticket { dim, seq, asked: false }
    }

    /// The version the write will have.
    pub fn version(&self) -> Version {
        Version(self.seq)
    }

    /// Blocks until the write is as durable as the store's [`Durability`] promises (under
    /// `Immediate`: synced), like the blocking calls do.
    pub fn wait(mut self) -> Result<Version> {
        self.asked = true;
        if self.dim.shared.config.durability == Durability::Immediate {
            self.dim.wait_durable(self.seq)?;
        }
        Ok(Version(self.seq))
    }

    /// Calls `f` once the write is as durable as the store's [`Durability`] promises, or
    /// with the error that stopped it (a failed sync makes the store read-only; a dropped
    /// dimension). It may run right here, or on the dimension's committer thread while the
    /// writer lock is held: `f` must only hand the result on (a channel send, waking a
    /// task), never block or call into the store.
    pub fn on_durable(self, f: impl FnOnce(Result<Version>) + Send + 'static) {
        self.register(Box::new(f), true)
    }

    /// [`on_durable`](Self::on_durable); `wake` false for the committer itself, which
    /// syncs for the new callback in the round it is in.
    fn register(mut self, f: Callback, wake: bool) {
        self.asked = true;
        register(&self.dim, self.seq, f, wake)
    }
}

fn register(dim: &Arc<DimInner>, seq: u64, f: Callback, wake: bool) {
    if dim.shared.config.durability != Durability::Immediate {
        return call(f, Ok(Version(seq)));
    }
    let mut w = dim.writer.lock();
    if let Some(e) = w.lost(seq) {
        drop(w);
        return call(f, Err(e));
    }
    if w.synced_seq() >= seq {
        drop(w);
        return call(f, Ok(Version(seq)));
    }
    if let Err(e) = dim.check_live().and_then(|()| dim.shared.check_writable()) {
        drop(w);
        return call(f, Err(e));
    }
    w.add_callback(seq, f);
    drop(w);
    if wake && !dim.committer.wake(dim) {
        // No thread could be started: sync here instead (this call blocks, but the
        // callback is still answered).
        dim.sync_for_callbacks();
    }
}

/// A write waiting in a dimension's inbox for the committer to append it.
pub(crate) struct Queued {
    kind: Kind,
    key: Vec<u8>,
    value: Box<dyn AsRef<[u8]> + Send>,
    expect: Option<Expect>,
    f: Callback,
}

impl Dimension {
    /// Stores `value` under `key` (only if the key's state matches `expect`, when given)
    /// without waiting for the writer lock: the dimension's committer thread appends it with
    /// the other writes waiting and calls `f` once it is durable, as
    /// [`Ticket::on_durable`] does, or with the error that refused or stopped it (a failed
    /// condition, a bad key, a value too large, a read-only store). See the module docs,
    /// "The inbox"; `f` has the same limits as there.
    ///
    /// Only under [`Durability::Immediate`]: with the other durabilities the write is
    /// appended on this thread, as by [`put`](Self::put), and `f` runs before this returns.
    ///
    /// The write takes its place among the others (its version, the state its condition is
    /// checked against) when the committer appends it, not when this is called: writes
    /// through the inbox keep their order, but a later `put` or `submit_put` of the same key
    /// from this thread may land before it. Wait for `f` first where that order matters.
    ///
    /// The inbox has no bound: each write waits there, value and all, until the committer
    /// takes it, so a caller that can produce writes faster than the disk syncs them should
    /// bound how many it has in flight (jessy-core's cap on concurrent requests does).
    pub fn enqueue_put(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]> + Send + 'static,
        expect: Option<Expect>,
        f: impl FnOnce(Result<Version>) + Send + 'static,
    ) {
        let (key, value, f) = (key.as_ref().to_vec(), Box::new(value), Box::new(f));
        enqueue(&self.inner, Queued { kind: Kind::Put, key, value, expect, f });
    }

    /// Removes `key` (only if its state matches `expect`, when given) as
    /// [`enqueue_put`](Self::enqueue_put) stores one.
    pub fn enqueue_delete(
        &self,
        key: impl AsRef<[u8]>,
        expect: Option<Expect>,
        f: impl FnOnce(Result<Version>) + Send + 'static,
    ) {
        let (key, value, f) = (key.as_ref().to_vec(), Box::new([]), Box::new(f));
        enqueue(&self.inner, Queued { kind: Kind::Delete, key, value, expect, f });
    }
}

fn enqueue(dim: &Arc<DimInner>, q: Queued) {
    if dim.shared.config.durability != Durability::Immediate {
        return append_queued(dim, q, true);
    }
    dim.inbox.lock().push(q);
    if !dim.committer.wake(dim) {
        // No committer (it could not be started, or the store is closing): this thread
        // does its round (which starts by draining the inbox), as `on_durable` does.
        dim.sync_for_callbacks();
    }
}

/// Appends every write in the inbox and registers its callback, for the committer's next
/// sync. Called by the committer, and by whoever stops it, so that no write is left
/// unanswered.
pub(crate) fn drain_inbox(dim: &Arc<DimInner>) {
    let queued = std::mem::take(&mut *dim.inbox.lock());
    for q in queued {
        append_queued(dim, q, false);
    }
}

fn append_queued(dim: &Arc<DimInner>, q: Queued, wake: bool) {
    let key = q.key.as_slice();
    match dim.append(&[(q.kind, key, (*q.value).as_ref())], q.expect.map(|e| (key, e))) {
        Ok(seq) => Ticket::new(dim.clone(), seq).register(q.f, wake),
        Err(e) => call(q.f, Err(e)),
    }
}

/// Stops a dimension's committer thread (closing the store, dropping the dimension) and
/// appends what is left in its inbox: the sync that follows, or the error that the
/// appends meet, answers those writes.
pub(crate) fn stop_committer(dim: &Arc<DimInner>) {
    dim.committer.stop();
    drain_inbox(dim);
}

/// Runs a callback; a panic in it must not unwind through the engine's locks.
pub(crate) fn call(f: Callback, result: Result<Version>) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || f(result))).is_err() {
        tracing::error!("a write callback panicked; the write itself is unaffected");
    }
}

/// The committer thread of a dimension: started on the first callback or inbox write, it
/// sleeps until woken, then appends what is in the inbox and syncs for every waiting
/// callback. It holds the dimension only while
/// working; closing the store stops it and waits for it, so the store's lock is free once
/// `close` returns.
#[derive(Default)]
pub(crate) struct Committer {
    signal: Arc<Signal>,
    thread: Mutex<Thread>,
}

#[derive(Default)]
enum Thread {
    #[default]
    NotStarted,
    Running(JoinHandle<()>),
    Stopped,
}

#[derive(Default)]
struct Signal {
    state: Mutex<Wake>,
    cv: Condvar,
}

#[derive(Default)]
struct Wake {
    work: bool,
    stop: bool,
}

impl Committer {
    /// Wakes the thread, starting it if needed; false if there is none (it could not be
    /// started, or the store closed), and the caller must sync itself.
    pub fn wake(&self, dim: &Arc<DimInner>) -> bool {
        {
            let mut thread = self.thread.lock();
            match &*thread {
                Thread::Running(_) => {}
                Thread::Stopped => return false,
                Thread::NotStarted => {
                    let weak = Arc::downgrade(dim);
                    let signal = self.signal.clone();
                    let name = format!("jessy-commit-{}", crate::layout::dir_name(dim.id));
                    match std::thread::Builder::new().name(name).spawn(move || run(weak, signal)) {
                        Ok(handle) => *thread = Thread::Running(handle),
                        Err(_) => return false,
                    }
                }
            }
        }
        self.signal.state.lock().work = true;
        self.signal.cv.notify_one();
        true
    }

    /// Stops the thread and waits for its round to end. Callbacks still waiting are
    /// answered by the sync that closing does.
    pub fn stop(&self) {
        let previous = std::mem::replace(&mut *self.thread.lock(), Thread::Stopped);
        self.signal.state.lock().stop = true;
        self.signal.cv.notify_one();
        if let Thread::Running(handle) = previous {
            if handle.thread().id() != std::thread::current().id() {
                let _ = handle.join();
            }
        }
    }
}

fn run(dim: Weak<DimInner>, signal: Arc<Signal>) {
    loop {
        {
            let mut wake = signal.state.lock();
            if !wake.work && !wake.stop {
                // The timeout only notices a dimension that went away.
                signal.cv.wait_for(&mut wake, Duration::from_secs(1));
            }
            if wake.stop {
                return;
            }
            wake.work = false;
        }
        match dim.upgrade() {
            Some(dim) => dim.sync_for_callbacks(),
            None => return,
        }
    }
}
