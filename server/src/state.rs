//! What every handler shares: the store, the settings, the metrics registry.

use std::sync::Arc;
use std::time::Instant;

use jessy_storage::Store;

use crate::metrics::Metrics;
use crate::ServerConfig;

/// The router's shared state. Cheap to clone: everything is behind `Arc`s (a
/// [`Store`] is itself a shared handle).
#[derive(Clone)]
pub struct AppState {
    pub(crate) store: Store,
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) started: Instant,
}

impl AppState {
    /// State over an open store. Only `config`'s token and limits are used here; the store
    /// was opened by the caller.
    pub fn new(store: Store, config: ServerConfig) -> AppState {
        AppState { store, config: Arc::new(config), metrics: Arc::new(Metrics::new()), started: Instant::now() }
    }

    /// The store this state serves.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The settings this state was built with.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }
}
