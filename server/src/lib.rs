//! # jessy-server
//!
//! jessy-core, Jessy's HTTP service, as a library: the [`router`] over a shared [`AppState`],
//! its [`ServerConfig`], and [`run`], which opens the store, serves until SIGTERM or Ctrl-C,
//! then finishes in-flight requests, syncs and closes the store.
//!
//! The endpoints, status codes and error format are described in `docs/HTTP.md`; the
//! machine-readable description is served at `GET /openapi.json` (see [`openapi`]).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! jessy_server::init_logging();
//! let config = jessy_server::ServerConfig::from_env()?;
//! jessy_server::run(config).await
//! # }
//! ```
//!
//! For tests and embedding, build the router over a store you opened yourself:
//!
//! ```no_run
//! # fn demo(store: jessy_storage::Store) {
//! let state = jessy_server::AppState::new(store, jessy_server::ServerConfig::default());
//! let app: axum::Router = jessy_server::router(state);
//! # }
//! ```

#![deny(missing_docs)]

mod auth;
mod blocking;
mod config;
mod context;
mod error;
mod json;
mod keys;
mod log_writer;
mod logging;
mod metrics;
pub mod openapi;
mod request_id;
mod router;
mod routes;
mod server;
mod shutdown;
mod state;
mod timestamp;

pub use config::ServerConfig;
pub use error::{ApiError, Problem};
pub use logging::{flush_logs, init_logging};
pub use request_id::RequestId;
pub use router::{router, router_with};
pub use server::{run, serve};
pub use shutdown::shutdown_signal;
pub use state::AppState;
