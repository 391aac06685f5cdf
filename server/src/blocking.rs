//! Running engine calls off the async executor.
//!
//! Engine calls may block (an `fdatasync`, a page fault on the map, a compaction), so
//! handlers run them with [`run`] on tokio's blocking pool instead of stalling the worker
//! threads that serve other connections. Two exceptions, measured in docs/BENCHMARKS.md
//! (`## HTTP`): a single-key read, and the first 256 KiB of a scan page, run on the worker,
//! since they never wait for a lock held across I/O and the hop costs more than they do.
//!
//! Single-key writes under `immediate` durability go to the dimension's committer thread
//! (`Dimension::enqueue_put`), which appends and syncs them with the others waiting: the
//! workers never wait for the writer lock. Under the other durabilities they append with
//! `try_submit_*` on the worker, which declines (writing nothing) rather than wait for the
//! writer lock, a region to grow or a seal; only then do they go to the blocking pool. Either
//! way the answer is awaited with [`answered`], which holds no thread at all.

use jessy_storage::{Ticket, Version};

use crate::ApiError;

/// Runs `f` on the blocking pool. A panic inside `f` is re-raised here, in the handler's task,
/// so the panic layer answers it with a 500 problem like any other handler panic.
pub(crate) async fn run<T, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
        Err(join) => Err(ApiError::internal(format!("a storage task was cancelled: {join}"))),
    }
}

/// Waits for a write's [`Ticket`] without holding a thread: the dimension's committer thread
/// syncs once for every write waiting and calls back (`storage/src/ticket.rs`). Parking a
/// blocking-pool thread per write instead made every group sync wake every waiting thread;
/// docs/BENCHMARKS.md (`## HTTP`) has the before and after.
pub(crate) async fn durable(ticket: Ticket) -> Result<Version, ApiError> {
    answered(|reply| ticket.on_durable(reply)).await
}

/// A write's answer from the storage engine: `register` hands `reply` to a call that runs it
/// once the write is durable (`Ticket::on_durable`, `Dimension::enqueue_put`), on the
/// committer thread or right away; it only passes the result on, as those calls require.
pub(crate) async fn answered(register: impl FnOnce(Reply)) -> Result<Version, ApiError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    register(Box::new(move |result| {
        let _ = tx.send(result);
    }));
    match rx.await {
        Ok(result) => Ok(result?),
        Err(_) => Err(ApiError::internal("the store dropped a write without answering it")),
    }
}

/// What [`answered`] hands to the engine.
pub(crate) type Reply = Box<dyn FnOnce(jessy_storage::Result<Version>) + Send>;
