//! The handlers, one file per concept. Each is annotated with `#[utoipa::path]`, which is
//! what `GET /openapi.json` is generated from.

pub(crate) mod batch;
pub(crate) mod dimensions;
pub(crate) mod health;
pub(crate) mod keys;
pub(crate) mod scan;
pub(crate) mod snapshot;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ApiError;

/// How keys and values are written inside JSON (scans and batches).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// As JSON strings (the default); a key or value that is not UTF-8 is answered 422.
    #[default]
    Utf8,
    /// Standard base64 with padding (RFC 4648 section 4), for arbitrary bytes.
    Base64,
}

impl Encoding {
    pub(crate) fn parse(s: &[u8]) -> Result<Encoding, ApiError> {
        match s {
            b"utf8" | b"utf-8" => Ok(Encoding::Utf8),
            b"base64" => Ok(Encoding::Base64),
            _ => Err(ApiError::malformed("encoding must be utf8 or base64")),
        }
    }

    /// Bytes to a JSON string; `what` names the field in the 422 answer. (Scan pages are
    /// written by `scan::PageWriter` directly; this is what its tests compare with.)
    #[cfg(test)]
    pub(crate) fn encode(self, bytes: &[u8], what: &str) -> Result<String, ApiError> {
        match self {
            Encoding::Utf8 => std::str::from_utf8(bytes).map(str::to_string).map_err(|_| ApiError::not_utf8(what)),
            Encoding::Base64 => Ok(base64::engine::general_purpose::STANDARD.encode(bytes)),
        }
    }

    /// A JSON string back to bytes; `what` names the field in the 422 answer.
    pub(crate) fn decode(self, text: &str, what: &str) -> Result<Vec<u8>, ApiError> {
        match self {
            Encoding::Utf8 => Ok(text.as_bytes().to_vec()),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD.decode(text).map_err(|e| {
                ApiError::new(
                    axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_encoding",
                    format!("{what} is not valid base64 ({e})"),
                )
            }),
        }
    }
}

/// Refuses empty and over-long keys up front, with the engine's own errors and wording.
pub(crate) fn check_key(key: &[u8]) -> Result<(), ApiError> {
    Ok(jessy_storage::validate_key(key)?)
}
