//! The routes and the layers around them.

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post, put};
use axum::Router;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;

use crate::request_id::{panic_response, request_context};
use crate::routes::{batch, dimensions, health, keys, scan, snapshot};
use crate::{auth, openapi, ApiError, AppState};

/// jessy-core's router over `state`: every endpoint of `docs/HTTP.md`, with request ids,
/// problem+json errors, metrics, logging, auth, body and time limits, and panic recovery.
pub fn router(state: AppState) -> Router {
    router_with(state, Router::new())
}

/// Like [`router`], with `extra` routes served under the same layers (request id, problem
/// errors, metrics, panic recovery, body limit, timeout; not the `/v1` token check). For embedding
/// jessy-core in a larger service, and for tests.
pub fn router_with(state: AppState, extra: Router<AppState>) -> Router {
    let config = state.config.clone();
    let timeout = TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, config.request_timeout);

    let key_routes = get(keys::get).head(keys::head).put(keys::put).delete(keys::delete);
    let v1 = Router::new()
        .route("/v1/dimensions", get(dimensions::list))
        .route("/v1/dimensions/{dim}", put(dimensions::create).delete(dimensions::drop))
        // The empty key gets its own route so it is answered `empty_key`, not 404.
        .route("/v1/dimensions/{dim}/keys/", key_routes.clone())
        .route("/v1/dimensions/{dim}/keys/{*key}", key_routes)
        .route("/v1/dimensions/{dim}/scan", get(scan::scan))
        .route("/v1/dimensions/{dim}/batch", post(batch::batch))
        .route("/v1/dimensions/{dim}/compact", post(dimensions::compact))
        .layer(timeout)
        // Added after the timeout: a snapshot streams for as long as the store takes to copy.
        .route("/v1/snapshot", get(snapshot::snapshot))
        .route_layer(from_fn_with_state(state.clone(), auth::require_token));

    let open = Router::new()
        .route("/health", get(health::health))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(openapi::serve))
        .merge(extra)
        .layer(timeout);

    Router::new()
        .merge(open)
        .merge(v1)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(config.body_limit()))
        .layer(
            // Outermost first. `Router::layer` runs after routing, so `request_context`
            // sees the matched route for its metrics.
            ServiceBuilder::new()
                .layer(from_fn_with_state(state.clone(), request_context))
                .layer(CatchPanicLayer::custom(panic_response))
                .layer(GlobalConcurrencyLimitLayer::new(config.max_concurrency.max(1))),
        )
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint; see GET /openapi.json")
}
