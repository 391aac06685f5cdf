//! `POST /v1/dimensions/{dim}/batch`: several writes, all or nothing.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{OriginalUri, State};
use axum::Json;
use jessy_storage::WriteBatch;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::keys::body_error;
use super::{check_key, Encoding};
use crate::keys::parse_dimension_path;
use crate::{blocking, ApiError, AppState, Problem};

/// One write of a batch.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
pub enum BatchOp {
    /// Store `value` under `key`.
    Put {
        /// The key, in the batch's encoding: 1 to 4096 bytes once decoded.
        #[schema(min_length = 1)]
        key: String,
        /// The value, in the batch's encoding.
        value: String,
    },
    /// Remove `key` (removing an absent key is not an error).
    Delete {
        /// The key, in the batch's encoding: 1 to 4096 bytes once decoded.
        #[schema(min_length = 1)]
        key: String,
    },
}

/// The body of a batch.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// The writes, applied in order (a later write to the same key wins).
    pub ops: Vec<BatchOp>,
    /// How keys and values are written: `utf8` (default) or `base64`.
    #[serde(default)]
    pub encoding: Encoding,
}

/// The answer to a batch.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct BatchResult {
    /// How many writes were applied (all of them).
    pub applied: usize,
}

/// Applies writes atomically: either every op is applied or none is.
#[utoipa::path(
    post,
    path = "/v1/dimensions/{dim}/batch",
    tag = "keys",
    params(super::DimPath),
    request_body(content = BatchRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Every op was applied", body = BatchResult),
        (status = 400, description = "Not JSON, unknown op or field, empty key (`malformed`, `empty_key`); nothing applied", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such dimension (`dimension_not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The batch does not fit in a region (`value_too_large`); nothing applied", body = Problem, content_type = "application/problem+json"),
        (status = 414, description = "A key is longer than 4096 bytes (`key_too_large`); nothing applied", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A key or value is not valid base64 (`invalid_encoding`); nothing applied", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is read-only (`read_only`)", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "Disk full (`disk_full`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn batch(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<BatchResult>, ApiError> {
    let dim = parse_dimension_path(uri.path())?;
    let body = body.map_err(|rejection| body_error(rejection, &state))?;
    let request: BatchRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::malformed(format!(
            "the batch is not valid: {e}; expected {{\"ops\":[{{\"op\":\"put\",\"key\":..,\"value\":..}},{{\"op\":\"delete\",\"key\":..}}],\"encoding\":\"utf8\"|\"base64\"}}"
        ))
    })?;
    // Decode and check everything before touching the store: a bad op applies nothing.
    let mut batch = WriteBatch::new();
    for (i, op) in request.ops.iter().enumerate() {
        match op {
            BatchOp::Put { key, value } => {
                let key = request.encoding.decode(key, &format!("ops[{i}].key"))?;
                let value = request.encoding.decode(value, &format!("ops[{i}].value"))?;
                check_key(&key).map_err(|e| at_op(e, i))?;
                batch.push_put(key, value);
            }
            BatchOp::Delete { key } => {
                let key = request.encoding.decode(key, &format!("ops[{i}].key"))?;
                check_key(&key).map_err(|e| at_op(e, i))?;
                batch.push_delete(key);
            }
        }
    }
    let applied = batch.len();
    let store = state.store.clone();
    let ticket = blocking::run(move || Ok(store.get_dimension(&dim)?.submit(batch)?)).await?;
    blocking::durable(ticket).await?;
    Ok(Json(BatchResult { applied }))
}

fn at_op(mut e: ApiError, i: usize) -> ApiError {
    e.detail = format!("ops[{i}]: {}", e.detail);
    e
}
