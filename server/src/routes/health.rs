//! `GET /health` and `GET /metrics`: for load balancers, orchestrators and Prometheus.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::metrics::PROMETHEUS_TEXT;
use crate::{blocking, ApiError, AppState, Problem};

/// The answer of a healthy server.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` in a 200 answer.
    #[schema(example = "ok")]
    pub status: &'static str,
    /// The server's version.
    pub version: &'static str,
    /// How many dimensions the store has.
    pub dimensions: usize,
    /// The store's durability mode: `immediate`, `periodic:<ms>` or `none` (as `JESSY_DURABILITY`).
    pub durability: String,
    /// Seconds since the server started.
    pub uptime_seconds: f64,
}

/// Is the store able to serve? 503 when it is not (read-only after a failed sync).
#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    responses(
        (status = 200, description = "The store serves reads and writes", body = Health),
        (status = 503, description = "The store cannot serve (code `read_only`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn health(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    let store = state.store.clone();
    let stats = blocking::run(move || Ok(store.stats())).await?;
    if let Some(reason) = stats.read_only {
        return Err(jessy_storage::Error::ReadOnly(reason).into());
    }
    Ok(Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        dimensions: stats.dimensions.len(),
        durability: state.config.storage.durability_mode().to_string(),
        uptime_seconds: state.started.elapsed().as_secs_f64(),
    }))
}

/// Prometheus metrics, in the text exposition format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Request counters and latency histograms by route and status; per-dimension gauges (keys, live_bytes, disk_bytes, layers); compactions, syncs, recovery time", body = String, content_type = "text/plain"),
    )
)]
pub(crate) async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let store = state.store.clone();
    let stats = blocking::run(move || Ok(store.stats())).await?;
    let text = state
        .metrics
        .render(&stats, state.started.elapsed())
        .map_err(|e| ApiError::internal(format!("rendering metrics failed: {e}")))?;
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, HeaderValue::from_static(PROMETHEUS_TEXT))], text).into_response())
}
