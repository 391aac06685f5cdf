//! The outermost middleware: request id, log span, problem rendering, request metrics.
//!
//! Every response leaves through here, so this is where the guarantees that hold for *all*
//! responses are kept: it carries `X-Request-Id`; an error is `application/problem+json`
//! with that id in it; it is counted in the metrics under its matched route; it is logged
//! once, as a JSON line inside the request's span.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument as _;

use crate::error::{code_for_status, PROBLEM_JSON};
use crate::{ApiError, AppState};

/// The request id header, answered on every response.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the request being handled, in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// An incoming id is kept when it is 1 to 128 of `A-Za-z0-9._:-` (enough for UUIDs, ULIDs
/// and trace ids, and safe to log and echo); anything else is replaced by a fresh UUID.
pub(crate) fn accept_or_generate(incoming: Option<&HeaderValue>) -> String {
    incoming
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
        })
        .map(str::to_string)
        .unwrap_or_else(fresh_id)
}

/// A new random (version 4) UUID, from a per-thread SplitMix64 generator seeded once from the
/// operating system. `Uuid::new_v4` asks the kernel for every id (a `getrandom` system call
/// per request); a request id has to be unique, not secret.
fn fresh_id() -> String {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(uuid::Uuid::new_v4().as_u64_pair().0);
    }
    fn next(state: &Cell<u64>) -> u64 {
        let s = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        state.set(s);
        let z = (s ^ (s >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    let (hi, lo) = STATE.with(|s| (next(s), next(s)));
    let bytes = ((u128::from(hi) << 64) | u128::from(lo)).to_be_bytes();
    let id = uuid::Builder::from_random_bytes(bytes).into_uuid();
    id.hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer()).to_string()
}

/// The middleware itself (installed by [`router`](crate::router) around everything else).
pub(crate) async fn request_context(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = accept_or_generate(req.headers().get(&X_REQUEST_ID));
    req.extensions_mut().insert(RequestId(id.clone()));
    // Label by the route template, not the raw path: keys must not explode the label space.
    let route =
        req.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = metric_method(req.method());

    let span = tracing::info_span!("request", request_id = %id, method, route = %route, path = %req.uri().path());
    let response = next.run(req).instrument(span.clone()).await;
    let mut response = finish(response, &id).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(X_REQUEST_ID, value);
    }

    let status = response.status();
    let elapsed = started.elapsed();
    state.metrics.observe_request(method, &route, status, elapsed);
    span.in_scope(|| {
        let latency_ms = elapsed.as_secs_f64() * 1000.0;
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), latency_ms, "request failed");
        } else {
            tracing::info!(status = status.as_u16(), latency_ms, "request");
        }
    });
    response
}

/// The method as a metric label: the standard ones, or `OTHER`, so that made-up methods cannot
/// create new series.
fn metric_method(method: &Method) -> &'static str {
    const KNOWN: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::HEAD, "HEAD"),
        (Method::PUT, "PUT"),
        (Method::POST, "POST"),
        (Method::DELETE, "DELETE"),
        (Method::PATCH, "PATCH"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::CONNECT, "CONNECT"),
        (Method::TRACE, "TRACE"),
    ];
    KNOWN.iter().find(|(m, _)| m == method).map_or("OTHER", |(_, name)| name)
}

/// Renders an [`ApiError`]'s problem body, or turns any other error response into a problem.
async fn finish(response: Response, request_id: &str) -> Response {
    if let Some(error) = response.extensions().get::<ApiError>().cloned() {
        let (mut parts, _) = response.into_parts();
        parts.extensions.remove::<ApiError>();
        return with_problem_body(parts, &error, request_id);
    }
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_problem(&response) {
        return response;
    }
    // Someone else's error response (an extractor rejection, the router's 404/405, the
    // timeout layer's 408): keep its status, use its short text as the detail.
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let detail = if text.is_empty() { default_detail(status) } else { text };
    let error = ApiError::new(status, code_for_status(status), detail);
    with_problem_body(parts, &error, request_id)
}

fn with_problem_body(mut parts: axum::http::response::Parts, error: &ApiError, request_id: &str) -> Response {
    let problem = error.to_problem(request_id);
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    Response::from_parts(parts, Body::from(body))
}

fn is_problem(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(PROBLEM_JSON))
}

fn default_detail(status: StatusCode) -> String {
    match status {
        StatusCode::NOT_FOUND => "no such endpoint; see GET /openapi.json".to_string(),
        StatusCode::METHOD_NOT_ALLOWED => "this endpoint does not take this method; see GET /openapi.json".to_string(),
        StatusCode::REQUEST_TIMEOUT => "the request took too long and was abandoned; try again".to_string(),
        StatusCode::PAYLOAD_TOO_LARGE => "the request body is larger than the server accepts".to_string(),
        other => other.canonical_reason().unwrap_or("error").to_string(),
    }
}

/// Answers a handler panic (via tower-http's `CatchPanicLayer`) with a 500 problem.
pub(crate) fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = what, "handler panicked");
    ApiError::internal(
        "the server hit a bug while handling this request; it was logged, please report it with the request id",
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_methods_share_one_label() {
        assert_eq!(metric_method(&Method::PUT), "PUT");
        assert_eq!(metric_method(&Method::from_bytes(b"BREW").unwrap()), "OTHER");
    }

    #[test]
    fn keeps_well_formed_ids() {
        let v = HeaderValue::from_static("abc-123_x.y:z");
        assert_eq!(accept_or_generate(Some(&v)), "abc-123_x.y:z");
    }

    #[test]
    fn replaces_bad_ids() {
        for bad in ["", "has space", "quote\"", &"x".repeat(129)] {
            let v = HeaderValue::from_str(bad).unwrap();
            let id = accept_or_generate(Some(&v));
            assert_ne!(id, bad);
            assert_eq!(id.len(), 36, "a uuid");
        }
        assert_eq!(accept_or_generate(None).len(), 36);
    }

    #[test]
    fn generated_ids_are_v4_uuids_and_differ() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| accept_or_generate(None)).collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            let uuid = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(uuid.get_version(), Some(uuid::Version::Random), "{id}");
            assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122, "{id}");
        }
        let other = std::thread::spawn(|| accept_or_generate(None)).join().unwrap();
        assert!(!ids.contains(&other));
    }
}
