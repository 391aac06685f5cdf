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
        ServerConfig::from_lookup(|name| std::env::var(name).ok(), storage)
    }

    /// Like [`ServerConfig::from_env`] for the server's own variables, reading them through
    /// `lookup`, with an already built store configuration. An empty `JESSY_API_TOKEN` counts
    /// as unset; one that could not be sent in a bearer header is an error (see
    /// [`ServerConfig::check_token`]).
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
        storage: jessy_storage::Config,
    ) -> anyhow::Result<ServerConfig> {
        let mut config = ServerConfig { storage, ..ServerConfig::default() };
        if let Some(addr) = lookup("JESSY_ADDR").map(|a| a.trim().to_string()).filter(|a| !a.is_empty()) {
            config.addr = addr;
        }
        // An empty token would let `Authorization: Bearer ` through; treat it as unset.
        config.api_token = lookup("JESSY_API_TOKEN").filter(|t| !t.is_empty());
        config.check_token()?;
        Ok(config)
    }

    /// Refuses an `api_token` that no client could send: it must be visible ASCII without
    /// spaces (`!` to `~`, which covers RFC 6750's token68), as the gateway requires too
    /// (api/config.go). A client's header is read as ASCII and trimmed, so a token with a
    /// space, a tab, a stray `\r` from a Windows file or a non-ASCII letter would answer every
    /// request 401. The error names `JESSY_API_TOKEN` and does not repeat the token.
    pub fn check_token(&self) -> anyhow::Result<()> {
        let Some(token) = &self.api_token else { return Ok(()) };
        if token.is_empty() {
            anyhow::bail!("invalid JESSY_API_TOKEN: it is empty; unset it to turn authentication off");
        }
        if let Some((at, c)) = token.char_indices().find(|&(_, c)| !c.is_ascii_graphic()) {
            let what = match c {
                ' ' => "a space".to_string(),
                c if c.is_ascii_control() => format!("a control character ({:?})", c),
                _ => "a non-ASCII character".to_string(),
            };
            anyhow::bail!(
                "invalid JESSY_API_TOKEN: it has {what} at byte {at} of {}; a bearer token is visible ASCII without spaces (check for a trailing newline, \\r or space)",
                token.len()
            );
        }
        Ok(())
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
        let c = ServerConfig::from_lookup(env, jessy_storage::Config::default()).unwrap();
        assert_eq!(c.addr, "0.0.0.0:9000");
        assert_eq!(c.api_token.as_deref(), Some("s3cret"));
    }

    #[test]
    fn empty_values_keep_defaults() {
        let env = |_: &str| Some(String::new());
        let c = ServerConfig::from_lookup(env, jessy_storage::Config::default()).unwrap();
        assert_eq!(c.addr, "127.0.0.1:8080");
        assert_eq!(c.api_token, None);
    }

    #[test]
    fn a_token_that_cannot_travel_in_a_bearer_header_is_refused() {
        let with = |token: &'static str| {
            let env = move |k: &str| (k == "JESSY_API_TOKEN").then(|| token.to_string());
            ServerConfig::from_lookup(env, jessy_storage::Config::default())
        };
        for bad in
            ["s3cret ", " s3cret", "s3cret\r", "s3cret\n", "s3\tcret", "s3 cret", "  ", "s3cr\u{e9}t", "s3\x7fcret"]
        {
            let message = format!("{:#}", with(bad).unwrap_err());
            assert!(message.contains("JESSY_API_TOKEN"), "{bad:?}: {message}");
            assert!(!message.contains("s3"), "the token is not echoed: {message}");
        }
        for good in ["s3cret", "abc-._~+/=", "eyJhbGciOi.x_y-z", "!#$%&'()*,:;<>?@[]^`{|}\"\\"] {
            assert_eq!(with(good).unwrap().api_token.as_deref(), Some(good));
        }
        // Empty is unset, as documented.
        assert_eq!(with("").unwrap().api_token, None);
    }

    #[test]
    fn body_limit_covers_a_base64_region() {
        let c = ServerConfig { storage: jessy_storage::Config::default().max_size(3 << 20), ..ServerConfig::default() };
        assert!(c.body_limit() >= (4 << 20));
    }
}
