//! Waiting for the signal to stop.

use std::future::Future;

/// Resolves on Ctrl-C (SIGINT) or SIGTERM (what `docker stop` and systemd send).
///
/// The handlers are installed when this is called, not when the future is first polled: the
/// server calls it before it opens the store, so a signal that comes while it starts (right
/// after the "listening" line, say) still ends in a clean close instead of killing it.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            tokio::select! {
                () = recv(interrupt, "SIGINT") => tracing::info!(signal = "SIGINT", "shutting down"),
                () = recv(terminate, "SIGTERM") => tracing::info!(signal = "SIGTERM", "shutting down"),
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
        tracing::info!(signal = "Ctrl-C", "shutting down");
    }
}

/// Waits for one signal; never resolves if its handler could not be installed.
#[cfg(unix)]
async fn recv(handler: std::io::Result<tokio::signal::unix::Signal>, name: &str) {
    match handler {
        Ok(mut signal) => {
            signal.recv().await;
        }
        Err(e) => {
            tracing::warn!(error = %e, signal = name, "cannot listen for the signal");
            std::future::pending::<()>().await;
        }
    }
}
