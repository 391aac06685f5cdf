//! What every handler shares: the store, the settings, the metrics registry.

use std::sync::Arc;
use std::time::Instant;

use jessy_storage::Store;

use crate::metrics::Metrics;
use crate::ServerConfig;

/// The router's shared state. Cheap to clone: one reference count. Every request clones it
/// a few times (each middleware and the `State` extractor take their own copy), so it is a
/// single `Arc` rather than several: each clone and drop is an atomic operation on a cache
/// line that both cores share.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// What an [`AppState`] points at (its fields are private to this crate).
pub struct Shared {
    pub(crate) store: Store,
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) started: Instant,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// State over an open store. Only `config`'s token and limits are used here; the store
    /// was opened by the caller.
    pub fn new(store: Store, config: ServerConfig) -> AppState {
        AppState(Arc::new(Shared {
            store,
            config: Arc::new(config),
            metrics: Arc::new(Metrics::new()),
            started: Instant::now(),
        }))
    }

    /// The store this state serves.
    pub fn store(&self) -> &Store {
        &self.0.store
    }

    /// The settings this state was built with.
    pub fn config(&self) -> &ServerConfig {
        &self.0.config
    }
}

impl Shared {
    /// Whether the store syncs every write before acknowledging it
    /// (`JESSY_DURABILITY=immediate`): single-key writes then go to the committer's inbox.
    pub(crate) fn immediate(&self) -> bool {
        self.store.config().durability_mode() == jessy_storage::Durability::Immediate
    }
}
