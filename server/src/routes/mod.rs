//! The handlers, one file per concept. Each is annotated with `#[utoipa::path]`, which is
//! what `GET /openapi.json` is generated from.

pub(crate) mod batch;
pub(crate) mod dimensions;
pub(crate) mod health;
pub(crate) mod keys;
pub(crate) mod scan;
pub(crate) mod snapshot;

use axum::http::HeaderValue;
use base64::Engine as _;
use jessy_storage::Version;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::ApiError;

/// The `{dim}` of every path that names a dimension, as the OpenAPI document describes it
/// (the handlers parse the raw path themselves: `crate::keys::parse_dimension_path`). The
/// pattern admits names and dirs (`D07`); what it cannot say, that a new name must not be
/// `D` and digits, the 400 `invalid_dimension_name` does.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
pub(crate) struct DimPath {
    /// The dimension's name or dir (`D07`): 1 to 64 of A-Za-z0-9_.-, not starting with `.`
    #[param(example = "default", min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$")]
    dim: String,
}

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

/// The `ETag` of a version, `"<version>"`: of a key's answers, and of a 412's current version.
/// Written into a buffer on the stack: `format!` and then a copy into the header value made two
/// allocations of every answer to a key.
pub(crate) fn etag(version: Version) -> HeaderValue {
    // Quotes around up to 20 digits; the digits are written from the right.
    let mut text = [b'"'; 22];
    let mut start = text.len() - 1;
    let mut n = version.0;
    loop {
        start -= 1;
        text[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Digits and quotes only: always a valid header value.
    HeaderValue::from_bytes(&text[start - 1..]).unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use utoipa::openapi::{schema::Schema, RefOr};

    use super::*;

    /// The pattern the document gives `{dim}`, as a regular expression.
    fn documented_pattern() -> regex::Regex {
        let params = DimPath::into_params(|| None);
        let pattern = match params.first().and_then(|p| p.schema.as_ref()) {
            Some(RefOr::T(Schema::Object(object))) => object.pattern.clone(),
            _ => None,
        };
        regex::Regex::new(&pattern.expect("DimPath documents a pattern")).unwrap()
    }

    proptest! {
        /// A client that checks `{dim}` against the document refuses nothing the server
        /// accepts, and lets through only the `D` + digits names, which name dirs.
        #[test]
        fn the_documented_dimension_pattern_is_the_engines_rule(name in "[A-Za-z0-9_.D/ é%-]{0,70}") {
            let re = documented_pattern();
            let dir = name.len() > 1 && name.starts_with('D') && name[1..].bytes().all(|b| b.is_ascii_digit());
            let accepted = jessy_storage::validate_dimension_name(&name).is_ok();
            prop_assert_eq!(re.is_match(&name), accepted || dir, "{:?}", name);
        }
    }

    #[test]
    fn the_documented_dimension_pattern_on_edges() {
        let re = documented_pattern();
        for name in ["default", "a", "D07", "D", "a.b", "_x", "-", &"x".repeat(64)] {
            assert!(re.is_match(name), "{name:?}");
        }
        for name in ["", ".hidden", "a/b", "é", &"x".repeat(65), "a b"] {
            assert!(!re.is_match(name), "{name:?}");
        }
    }
}
