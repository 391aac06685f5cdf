//! What jessy-core reads from its environment, and the limits it enforces.

use std::time::Duration;

use anyhow::Context as _;

/// jessy-core's settings: where to listen, the API token, the store's configuration and the
/// protective limits. [`ServerConfig::from_env`] reads the contract's variables; the limits
/// have defaults that suit the 10 MiB regions of a default store, and library users may
/// change the public fields before calling [`run`](crate::run).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The listen address (`JESSY_ADDR`, default `127.0.0.1:8080`); a host name is resolved.
    pub addr: String,
    /// When set (`JESSY_API_TOKEN`), every `/v1` request needs `Authorization: Bearer <token>`.
    pub api_token: Option<String>,
    /// The store: `MMAP_BASE_PATH`, `MMAP_INITIAL_SIZE`, `MMAP_MAX_SIZE`, `JESSY_DURABILITY`.
    pub storage: jessy_storage::Config,
    /// A whole request (except `GET /v1/snapshot`, which streams) must be answered within this.
    pub request_timeout: Duration,
    /// A client must send a request's headers within this, so idle half-open connections
    /// cannot pile up (slowloris).
    pub header_read_timeout: Duration,
    /// At most this many requests are handled at once; further ones wait for a slot.
    pub max_concurrency: usize,
    /// On shutdown, in-flight requests get this long to finish before their connections close.
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            addr: "127.0.0.1:8080".to_string(),
            api_token: None,
            storage: jessy_storage::Config::default(),
            request_timeout: Duration::from_secs(60),
            header_read_timeout: Duration::from_secs(10),
            max_concurrency: 256,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

impl ServerConfig {
    /// Reads `JESSY_ADDR`, `JESSY_API_TOKEN` and the store's variables
    /// ([`jessy_storage::Config::from_env`]). Unset or empty variables keep their defaults; a
    /// malformed one is an error that names it.
    pub fn from_env() -> anyhow::Result<ServerConfig> {
        let storage = jessy_storage::Config::from_env().context("reading the store's configuration")?;
        Ok(ServerConfig::from_lookup(|name| std::env::var(name).ok(), storage))
    }

    /// Like [`ServerConfig::from_env`] for the server's own variables, reading them through
    /// `lookup`, with an already built store configuration.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>, storage: jessy_storage::Config) -> ServerConfig {
        let mut config = ServerConfig { storage, ..ServerConfig::default() };
        if let Some(addr) = lookup("JESSY_ADDR").map(|a| a.trim().to_string()).filter(|a| !a.is_empty()) {
            config.addr = addr;
        }
        // An empty token would let `Authorization: Bearer ` through; treat it as unset.
        config.api_token = lookup("JESSY_API_TOKEN").filter(|t| !t.trim().is_empty());
        config
    }

    /// The largest request body accepted: a region (`MMAP_MAX_SIZE`, the largest value that
    /// can be stored) as base64 in a JSON batch, plus room for the JSON around it. Larger
    /// bodies are answered 413 before they are read in full.
    pub fn body_limit(&self) -> usize {
        let region = self.storage.max_size_bytes();
        let limit = region.saturating_add(region / 3).saturating_add(64 * 1024);
        usize::try_from(limit).unwrap_or(usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_address_and_token() {
        let env = |k: &str| match k {
            "JESSY_ADDR" => Some("0.0.0.0:9000".to_string()),
            "JESSY_API_TOKEN" => Some("s3cret".to_string()),
            _ => None,
        };
        let c = ServerConfig::from_lookup(env, jessy_storage::Config::default());
        assert_eq!(c.addr, "0.0.0.0:9000");
        assert_eq!(c.api_token.as_deref(), Some("s3cret"));
    }

    #[test]
    fn empty_values_keep_defaults() {
        let env = |_: &str| Some(String::new());
        let c = ServerConfig::from_lookup(env, jessy_storage::Config::default());
        assert_eq!(c.addr, "127.0.0.1:8080");
        assert_eq!(c.api_token, None);
    }

    #[test]
    fn body_limit_covers_a_base64_region() {
        let c = ServerConfig { storage: jessy_storage::Config::default().max_size(3 << 20), ..ServerConfig::default() };
        assert!(c.body_limit() >= (4 << 20));
    }
}
