//! Opening the store, accepting connections, and stopping cleanly.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::Request;
use axum::response::Response;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use jessy_storage::Store;
use tokio::net::TcpListener;

use crate::{shutdown_signal, AppState, ServerConfig};

/// Runs jessy-core: opens the store (failing with the holder's pid if another process has
/// it), listens on `config.addr`, serves until SIGTERM or Ctrl-C, lets in-flight requests
/// finish (up to `config.shutdown_grace`), then syncs and closes the store, releasing its lock.
pub async fn run(config: ServerConfig) -> anyhow::Result<()> {
    // However this returns, the log lines still queued are written out first.
    struct FinishLogs;
    impl Drop for FinishLogs {
        fn drop(&mut self) {
            crate::logging::finish_logs();
        }
    }
    let _finish_logs = FinishLogs;
    config.check_token()?;
    let storage = config.storage.clone();
    let data = storage.base_path_ref().display().to_string();
    let durability = storage.durability_mode();
    // A data directory without `consciousness/` holds no store: opening creates an empty one
    // (a fresh Docker volume starts that way). Said loudly, since a mistyped MMAP_BASE_PATH
    // looks the same.
    let existed = has_store(storage.base_path_ref());
    // Before anything that takes time: a signal from here on ends in a clean close.
    let shutdown = shutdown_signal();
    // Opening recovers the store (reads manifests, checks tails): blocking work.
    let store = tokio::task::spawn_blocking(move || Store::open_config(storage))
        .await
        .context("the task opening the store died")?
        .with_context(|| format!("cannot open the store in {data} (--data or MMAP_BASE_PATH)"))?;
    if !existed {
        tracing::warn!(
            data = %data,
            "created a new, empty store at {data}: there was none (no consciousness/ directory); if you meant an \
             existing store, stop the server and check --data or MMAP_BASE_PATH"
        );
    }

    let listener = match TcpListener::bind(&config.addr).await {
        Ok(listener) => listener,
        Err(e) => {
            close_store(store).await;
            return Err(e).with_context(|| format!("cannot listen on {} (--addr or JESSY_ADDR)", config.addr));
        }
    };
    let addr = listener.local_addr().context("reading the listening address")?;
    tracing::info!(
        addr = %addr,
        data = %data,
        durability = %durability,
        auth = config.api_token.is_some(),
        version = env!("CARGO_PKG_VERSION"),
        "listening"
    );

    // The service itself, not wrapped in an axum `Router` as `router()` returns it.
    let app = crate::router::app(AppState::new(store.clone(), config.clone()), axum::Router::new());
    let served = serve_service(listener, app, &config, shutdown).await;
    // Whatever happened while serving, sync and release the lock before returning.
    close_store(store).await;
    tracing::info!("stopped");
    served.context("serving HTTP")
}

/// True when `base` holds a store: its `consciousness/` directory (as `jessy init` decides).
fn has_store(base: &std::path::Path) -> bool {
    base.join("consciousness").is_dir()
}

async fn close_store(store: Store) {
    let closed = tokio::task::spawn_blocking(move || {
        store.sync()?;
        store.close()
    })
    .await;
    match closed {
        Ok(Ok(())) => tracing::info!("store synced and closed"),
        Ok(Err(e)) => tracing::error!(error = %e, code = e.code(), "closing the store failed"),
        Err(e) => tracing::error!(error = %e, "the task closing the store died"),
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting and waits up
/// to `config.shutdown_grace` for in-flight requests. HTTP/1.1 and HTTP/2 (prior knowledge)
/// are both spoken; a client gets `config.header_read_timeout` to send a request's headers.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: &ServerConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    serve_service(listener, app, config, shutdown).await
}

async fn serve_service<S>(
    listener: TcpListener,
    app: S,
    config: &ServerConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()>
where
    S: tower::Service<Request<Incoming>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(config.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);

    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }

    drop(listener);
    tracing::info!("stopped accepting; finishing in-flight requests");
    if tokio::time::timeout(config.shutdown_grace, graceful.shutdown()).await.is_err() {
        tracing::warn!(grace = ?config.shutdown_grace, "in-flight requests did not finish in time; closing their connections");
    }
    Ok(())
}
