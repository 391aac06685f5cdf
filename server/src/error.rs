//! Errors as `application/problem+json` (RFC 9457).
//!
//! Handlers return [`ApiError`]. Its response carries the error in an extension and no body
//! yet: the request-id middleware (the outermost layer) renders the [`Problem`] body, because
//! only it knows the request id. The same middleware turns every other error response (an
//! extractor's plain-text rejection, a 404 from the router, a 405, a timeout, a caught panic)
//! into a problem too, so clients see one error format.

use std::borrow::Cow;

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error body (RFC 9457 problem details, with Jessy's `code` and `request_id`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct Problem {
    /// A URI naming the kind of error: `urn:jessy:error:<code>`.
    #[serde(rename = "type")]
    pub type_: String,
    /// A short summary of the kind of error (the same for every occurrence).
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What happened and, where possible, what to do about it.
    pub detail: String,
    /// A stable snake_case name for the error, e.g. `key_not_found`, `value_too_large`.
    pub code: String,
    /// The request's id, as in the `X-Request-Id` header; quote it when reporting a problem.
    pub request_id: String,
}

/// An error a handler answers with: a status, a stable code and a detail.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The stable snake_case code.
    pub code: Cow<'static, str>,
    /// What happened and what to do.
    pub detail: String,
    /// Headers to add to the response (`WWW-Authenticate`, the current `ETag` on a 412...).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    /// An error with this status, code and detail.
    pub fn new(status: StatusCode, code: impl Into<Cow<'static, str>>, detail: impl Into<String>) -> ApiError {
        ApiError { status, code: code.into(), detail: detail.into(), headers: Vec::new() }
    }

    /// 400 `malformed`: the request cannot be understood as sent.
    pub fn malformed(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "malformed", detail)
    }

    /// 404 `key_not_found`.
    pub fn key_not_found() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "key_not_found", "no value is stored under this key")
    }

    /// 422 `not_utf8`: a key or value cannot be shown as text.
    pub fn not_utf8(what: &str) -> ApiError {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_utf8",
            format!("a {what} is not valid UTF-8; ask again with encoding=base64"),
        )
    }

    /// 500 `internal`: a bug (a panic, a task that died).
    pub fn internal(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail)
    }

    /// Adds a header to the response.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> ApiError {
        self.headers.push((name, value));
        self
    }

    /// The problem body for this error.
    pub fn to_problem(&self, request_id: &str) -> Problem {
        Problem {
            type_: format!("urn:jessy:error:{}", self.code),
            title: title(&self.code, self.status).to_string(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            code: self.code.to_string(),
            request_id: request_id.to_string(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.detail)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        for (name, value) in &self.headers {
            response.headers_mut().insert(name.clone(), value.clone());
        }
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        // The body is rendered by the request-id middleware, which knows the request id.
        response.extensions_mut().insert(self);
        response
    }
}

impl From<jessy_storage::Error> for ApiError {
    fn from(err: jessy_storage::Error) -> ApiError {
        let code = err.code();
        let status = status_for_code(code);
        let detail = match &err {
            // The engine's text rounds both sizes to a tenth of a MiB, which can make them read
            // the same ("10 MiB is larger than ... (10.0 MiB per record)"): exact bytes here,
            // in its words otherwise (as `jessy` does for the same case).
            jessy_storage::Error::ValueTooLarge { what, len, max } => format!(
                "{what} of {len} bytes is larger than MMAP_MAX_SIZE allows ({max} bytes per record); send less, or raise MMAP_MAX_SIZE"
            ),
            _ => err.to_string(),
        };
        let mut api = ApiError::new(status, code, detail);
        if let jessy_storage::Error::ConditionFailed { current: Some(version), .. } = &err {
            api = api.with_header(header::ETAG, crate::routes::etag(*version));
        }
        if status.is_server_error() {
            tracing::error!(code, error = %err, "engine error");
        }
        api
    }
}

/// The HTTP status for an error code, engine's or the server's own.
pub fn status_for_code(code: &str) -> StatusCode {
    match code {
        "dimension_not_found" | "key_not_found" | "not_found" => StatusCode::NOT_FOUND,
        "empty_key" | "invalid_dimension_name" | "malformed" | "invalid_cursor" => StatusCode::BAD_REQUEST,
        "unauthorized" => StatusCode::UNAUTHORIZED,
        "method_not_allowed" => StatusCode::METHOD_NOT_ALLOWED,
        "request_timeout" => StatusCode::REQUEST_TIMEOUT,
        "cannot_drop_default" | "dimension_exists" | "dimension_busy" => StatusCode::CONFLICT,
        "condition_failed" => StatusCode::PRECONDITION_FAILED,
        "value_too_large" | "payload_too_large" => StatusCode::PAYLOAD_TOO_LARGE,
        "key_too_large" => StatusCode::URI_TOO_LONG,
        "unsupported_media_type" => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "not_utf8" | "invalid_encoding" => StatusCode::UNPROCESSABLE_ENTITY,
        "disk_full" => StatusCode::INSUFFICIENT_STORAGE,
        "read_only" | "store_locked" | "store_closed" | "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The error code for a bare status (an error response that did not come from an [`ApiError`]).
pub(crate) fn code_for_status(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "malformed",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::URI_TOO_LONG => "key_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_encoding",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        _ if status.is_client_error() => "client_error",
        _ => "internal",
    }
}

fn title(code: &str, status: StatusCode) -> &'static str {
    match code {
        "dimension_not_found" => "Dimension not found",
        "key_not_found" => "Key not found",
        "not_found" => "Not found",
        "empty_key" => "Empty key",
        "invalid_dimension_name" => "Invalid dimension name",
        "malformed" => "Malformed request",
        "invalid_cursor" => "Invalid cursor",
        "unauthorized" => "Unauthorized",
        "method_not_allowed" => "Method not allowed",
        "request_timeout" => "Request timeout",
        "cannot_drop_default" => "Cannot drop the default dimension",
        "dimension_exists" => "Dimension exists",
        "dimension_busy" => "Dimension busy",
        "condition_failed" => "Condition failed",
        "value_too_large" => "Value too large",
        "payload_too_large" => "Request body too large",
        "key_too_large" => "Key too large",
        "unsupported_media_type" => "Unsupported media type",
        "not_utf8" => "Not UTF-8",
        "invalid_encoding" => "Invalid encoding",
        "disk_full" => "Disk full",
        "read_only" => "Store is read-only",
        "store_locked" => "Store locked",
        "store_closed" => "Store closed",
        "unavailable" => "Service unavailable",
        "corruption" => "Data corruption",
        "missing_files" => "Missing data files",
        "io_error" => "I/O error",
        "invalid_config" => "Invalid configuration",
        _ => status.canonical_reason().unwrap_or("Error"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_engine_code_has_a_deliberate_status() {
        let expected = [
            ("io_error", 500),
            ("disk_full", 507),
            ("corruption", 500),
            ("missing_files", 500),
            ("store_locked", 503),
            ("empty_key", 400),
            ("key_too_large", 414),
            ("value_too_large", 413),
            ("invalid_dimension_name", 400),
            ("dimension_not_found", 404),
            ("cannot_drop_default", 409),
            ("dimension_exists", 409),
            ("dimension_busy", 409),
            ("condition_failed", 412),
            ("read_only", 503),
            ("invalid_config", 500),
            ("store_closed", 503),
        ];
        for (code, status) in expected {
            assert_eq!(status_for_code(code).as_u16(), status, "{code}");
            assert_ne!(title(code, status_for_code(code)), "Error", "{code} has a title");
        }
    }

    #[test]
    fn engine_errors_keep_their_message() {
        let e: ApiError = jessy_storage::Error::DimensionNotFound("users".into()).into();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        assert_eq!(e.code, "dimension_not_found");
        assert!(e.detail.contains("users"));
        let p = e.to_problem("abc");
        assert_eq!(p.type_, "urn:jessy:error:dimension_not_found");
        assert_eq!(p.request_id, "abc");
    }
}
