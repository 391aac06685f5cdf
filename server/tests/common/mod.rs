//! Shared helpers: a router over a store in a temporary directory.

#![allow(dead_code)]

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use jessy_server::{AppState, ServerConfig};
use jessy_storage::{Config, Durability, Store};
use tower::ServiceExt as _;

/// Region size for tests: small, so "value too large" is cheap to provoke.
pub const REGION: u64 = 64 * 1024;

pub struct App {
    pub router: Router,
    pub store: Store,
    pub config: ServerConfig,
    _dir: tempfile::TempDir,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts an RFC 9457 problem with this status and code, and returns it.
    #[track_caller]
    pub fn problem(&self, status: u16, code: &str) -> serde_json::Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", String::from_utf8_lossy(&self.body));
        assert_eq!(self.header("content-type"), Some("application/problem+json"));
        let p = self.json();
        assert_eq!(p["code"], code, "{p}");
        assert_eq!(p["status"], status, "{p}");
        for field in ["type", "title", "detail", "request_id"] {
            assert!(p[field].as_str().is_some_and(|s| !s.is_empty()), "problem lacks {field}: {p}");
        }
        assert_eq!(p["request_id"].as_str(), self.header("x-request-id"), "request_id matches the header");
        p
    }
}

pub fn storage_config(dir: &std::path::Path) -> Config {
    Config::default().base_path(dir).durability(Durability::None).initial_size(16 * 1024).max_size(REGION)
}

pub fn app() -> App {
    app_with(|_| {}, Router::new())
}

pub fn app_with(tweak: impl FnOnce(&mut ServerConfig), extra: Router<AppState>) -> App {
    app_full(|c| c, tweak, extra)
}

/// An app whose store configuration is adjusted by `storage` (e.g. a fault-injecting backend).
pub fn app_full(
    storage: impl FnOnce(Config) -> Config,
    tweak: impl FnOnce(&mut ServerConfig),
    extra: Router<AppState>,
) -> App {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = storage(storage_config(dir.path()));
    let store = Store::open_with(dir.path(), storage.clone()).expect("open store");
    let mut config = ServerConfig { storage, ..ServerConfig::default() };
    tweak(&mut config);
    let router = jessy_server::router_with(AppState::new(store.clone(), config.clone()), extra);
    App { router, store, config, _dir: dir }
}

impl App {
    /// The store's data directory (`MMAP_BASE_PATH`).
    pub fn data_dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    pub async fn send(&self, req: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(req).await.expect("infallible");
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await.expect("body");
        Reply { status: parts.status, headers: parts.headers, body }
    }

    pub async fn call(&self, method: Method, uri: &str, body: impl Into<Body>) -> Reply {
        self.send(Request::builder().method(method).uri(uri).body(body.into()).expect("request")).await
    }

    pub async fn get(&self, uri: &str) -> Reply {
        self.call(Method::GET, uri, Body::empty()).await
    }

    pub async fn put(&self, uri: &str, body: impl Into<Body>) -> Reply {
        self.call(Method::PUT, uri, body).await
    }

    pub async fn delete(&self, uri: &str) -> Reply {
        self.call(Method::DELETE, uri, Body::empty()).await
    }

    pub async fn post_json(&self, uri: &str, json: serde_json::Value) -> Reply {
        let req = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header("content-type", "application/json")
            .body(Body::from(json.to_string()))
            .expect("request");
        self.send(req).await
    }
}

/// Percent-encodes every byte that is not unreserved (keeps `/`).
pub fn enc(key: &[u8]) -> String {
    key.iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
