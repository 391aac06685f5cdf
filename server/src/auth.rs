//! `JESSY_API_TOKEN`: bearer-token authentication for `/v1`.
//!
//! `/health`, `/metrics` and `/openapi.json` stay open so probes and scrapers need no secret.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::ApiError;

/// The 401 answer for a request that does not carry `token`, or `None` to let it through.
/// Applied to every `/v1` route by [`RouteLayer`](crate::router::RouteLayer) when
/// `JESSY_API_TOKEN` is set.
pub(crate) fn reject(token: &str, headers: &HeaderMap) -> Option<Response> {
    match bearer(headers.get(header::AUTHORIZATION)) {
        Some(given) if same_token(given, token) => None,
        Some(_) => Some(unauthorized("the bearer token is not the one configured in JESSY_API_TOKEN", "invalid_token")),
        None => Some(unauthorized("this server requires `Authorization: Bearer <token>` (JESSY_API_TOKEN)", "")),
    }
}

/// Compares SHA-256 digests in constant time, so response timing reveals neither how much of
/// a guess was right nor the token's length (the gateway does the same).
fn same_token(given: &str, token: &str) -> bool {
    let given = Sha256::digest(given.as_bytes());
    let token = Sha256::digest(token.as_bytes());
    bool::from(given.as_slice().ct_eq(token.as_slice()))
}

fn bearer(value: Option<&HeaderValue>) -> Option<&str> {
    let value = value?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn unauthorized(detail: &str, oauth_error: &str) -> Response {
    let challenge = if oauth_error.is_empty() {
        HeaderValue::from_static("Bearer realm=\"jessy\"")
    } else {
        HeaderValue::from_static("Bearer realm=\"jessy\", error=\"invalid_token\"")
    };
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
        .with_header(header::WWW_AUTHENTICATE, challenge)
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer() {
        let v = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(bearer(Some(&v("Bearer abc"))), Some("abc"));
        assert_eq!(bearer(Some(&v("bearer  abc "))), Some("abc"));
        assert_eq!(bearer(Some(&v("Basic abc"))), None);
        assert_eq!(bearer(Some(&v("Bearer"))), None);
        assert_eq!(bearer(None), None);
    }

    #[test]
    fn compares_tokens() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "abcd"));
        assert!(!same_token("", "abc"));
    }
}
