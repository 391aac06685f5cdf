//! Dimensions: list, create, drop, compact.

use axum::extract::{OriginalUri, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::keys::parse_dimension_path;
use crate::{blocking, ApiError, AppState, Problem};

/// A dimension and its numbers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct DimensionInfo {
    /// Numeric id (the `nn` of its directory `Dnn`).
    pub id: u32,
    /// Its directory under `consciousness/`, e.g. `D01`; addresses it like its name.
    pub dir: String,
    /// Its name, e.g. `default`.
    pub name: String,
    /// Live keys.
    pub keys: u64,
    /// Bytes of the newest entry of every live key (entry headers, keys and values).
    pub live_bytes: u64,
    /// Bytes its files take on disk.
    pub disk_bytes: u64,
    /// Log files: its sealed layers plus the active region.
    pub layers: u64,
}

impl From<jessy_storage::DimensionStats> for DimensionInfo {
    fn from(s: jessy_storage::DimensionStats) -> DimensionInfo {
        DimensionInfo {
            id: s.id,
            dir: s.dir,
            name: s.name,
            keys: s.keys,
            live_bytes: s.live_bytes,
            disk_bytes: s.disk_bytes,
            layers: s.layers as u64,
        }
    }
}

/// The body of `GET /v1/dimensions`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DimensionList {
    /// Every dimension, by id.
    pub dimensions: Vec<DimensionInfo>,
}

/// What a compaction did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CompactResult {
    /// Disk space given back.
    pub bytes_reclaimed: u64,
    /// Sealed layers rewritten.
    pub layers_compacted: u64,
}

/// Lists the dimensions with their sizes.
#[utoipa::path(
    get,
    path = "/v1/dimensions",
    tag = "dimensions",
    responses(
        (status = 200, description = "Every dimension", body = DimensionList),
        (status = 401, description = "Missing or wrong bearer token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list(State(state): State<AppState>) -> Result<Json<DimensionList>, ApiError> {
    let store = state.store.clone();
    let mut dimensions: Vec<DimensionInfo> =
        blocking::run(move || Ok(store.dimensions().iter().map(|d| d.stats().into()).collect())).await?;
    dimensions.sort_by_key(|d| d.id);
    Ok(Json(DimensionList { dimensions }))
}

/// Creates a dimension by name: 201 when created, 200 when it was already there. A new name
/// must not be `D` and digits: those name dirs (`D07`).
#[utoipa::path(
    put,
    path = "/v1/dimensions/{dim}",
    tag = "dimensions",
    params(super::DimPath),
    responses(
        (status = 201, description = "Created", body = DimensionInfo, headers(("Location" = String, description = "The dimension's URL"))),
        (status = 200, description = "Already there", body = DimensionInfo),
        (status = 400, description = "Invalid name (`invalid_dimension_name`)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "A `D` + digits name of a dimension that does not exist (`dimension_not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A bulk load is creating this name right now (`dimension_busy`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is read-only (`read_only`)", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "Disk full (`disk_full`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn create(State(state): State<AppState>, OriginalUri(uri): OriginalUri) -> Result<Response, ApiError> {
    let name = parse_dimension_path(uri.path())?;
    let store = state.store.clone();
    let (info, created) = blocking::run(move || {
        // An existing dimension may be addressed by its dir ("D07"), which is not a valid new name.
        if let Ok(dim) = store.get_dimension(&name) {
            return Ok((DimensionInfo::from(dim.stats()), false));
        }
        let (dim, created) = store.create_dimension(&name).map_err(|e| match e {
            jessy_storage::Error::DimensionNotFound(_) if is_dir_name(&name) => dir_name_not_found(&name),
            e => ApiError::from(e),
        })?;
        Ok((DimensionInfo::from(dim.stats()), created))
    })
    .await?;
    if created {
        let location = HeaderValue::from_str(&format!("/v1/dimensions/{}", info.name))
            .unwrap_or_else(|_| HeaderValue::from_static("/v1/dimensions"));
        Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(info)).into_response())
    } else {
        Ok((StatusCode::OK, Json(info)).into_response())
    }
}

/// True for a dimension directory name, `D` + digits (`D07`, `D100`): it addresses an existing
/// dimension by id and is never a new dimension's name.
fn is_dir_name(name: &str) -> bool {
    name.len() > 1 && name.starts_with('D') && name[1..].bytes().all(|b| b.is_ascii_digit())
}

/// 404 for `PUT /v1/dimensions/D09` when no dimension has directory D09: the engine's "does
/// not exist; create it first" would send the client round in a circle on a create request.
fn dir_name_not_found(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "dimension_not_found",
        format!(
            "no dimension has the directory {name:?}: a name of the form D + digits (like D09) is a directory id and \
             only addresses an existing dimension (GET /v1/dimensions lists them); to create a new dimension, give \
             it a name (for example PUT /v1/dimensions/users)"
        ),
    )
}

/// Drops a dimension and all its data.
#[utoipa::path(
    delete,
    path = "/v1/dimensions/{dim}",
    tag = "dimensions",
    params(super::DimPath),
    responses(
        (status = 204, description = "Dropped"),
        (status = 400, description = "Invalid name", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such dimension (`dimension_not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`default` (D01) cannot be dropped (`cannot_drop_default`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is read-only (`read_only`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn drop(State(state): State<AppState>, OriginalUri(uri): OriginalUri) -> Result<StatusCode, ApiError> {
    let name = parse_dimension_path(uri.path())?;
    let store = state.store.clone();
    blocking::run(move || Ok(store.drop_dimension(&name)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Compacts a dimension now: rewrites its sealed layers without dead records.
#[utoipa::path(
    post,
    path = "/v1/dimensions/{dim}/compact",
    tag = "dimensions",
    params(super::DimPath),
    responses(
        (status = 200, description = "Compacted", body = CompactResult),
        (status = 400, description = "Invalid name", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such dimension (`dimension_not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is read-only (`read_only`)", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "Disk full (`disk_full`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn compact(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
) -> Result<Json<CompactResult>, ApiError> {
    let name = parse_dimension_path(uri.path())?;
    let store = state.store.clone();
    let report = blocking::run(move || Ok(store.get_dimension(&name)?.compact()?)).await?;
    Ok(Json(CompactResult {
        bytes_reclaimed: report.bytes_reclaimed,
        layers_compacted: report.layers_compacted as u64,
    }))
}
