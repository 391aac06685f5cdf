//! Running engine calls off the async executor.
//!
//! Engine calls may block (an `fdatasync`, a page fault on the map, a compaction), so
//! handlers run them with [`run`] on tokio's blocking pool instead of stalling the worker
//! threads that serve other connections. Two exceptions, measured in docs/BENCHMARKS.md
//! (`## HTTP`): a single-key read, and the first 256 KiB of a scan page, run on the worker,
//! since they never wait for a lock held across I/O and the hop costs more than they do.

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
