//! Helper threads that take a job off the caller's path (a key index, a seal's file steps,
//! closing a layer file), and what happens when no thread can be started: the caller does
//! the job itself. `std::thread::Builder::spawn` drops its closure when it fails, so the job
//! is not moved into it: the thread receives it once it is running.

use std::sync::mpsc::{sync_channel, SendError};
use std::thread::JoinHandle;

/// A job running on a thread of its own; `join` gives its result.
pub(crate) struct Helper<T>(JoinHandle<Option<T>>);

impl<T> Helper<T> {
    /// Waits for the job; `None` if its thread panicked.
    pub fn join(self) -> Option<T> {
        self.0.join().ok().flatten()
    }
}

/// Runs `job` on a new thread named `name` (`Ok`), or here if no thread can be started
/// (`Err` with what it returned).
pub(crate) fn spawn_or_run<T, F>(name: String, job: F) -> Result<Helper<T>, T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (give, take) = sync_channel::<F>(1);
    match std::thread::Builder::new().name(name).spawn(move || take.recv().ok().map(|job| job())) {
        Ok(handle) => match give.send(job) {
            Ok(()) => Ok(Helper(handle)),
            // The thread is gone before taking it (it cannot be, short of a panic): do it here.
            Err(SendError(job)) => Err(job()),
        },
        Err(_) => Err(job()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_runs_once_and_its_result_comes_back() {
        let helper = spawn_or_run("jessy-test".into(), || 41 + 1).unwrap_or_else(|_| panic!("no thread"));
        assert_eq!(helper.join(), Some(42));
        let panicked = spawn_or_run("jessy-test".into(), || -> u32 { panic!("on purpose") });
        assert_eq!(panicked.map(|h| h.join()).ok().flatten(), None);
    }
}
