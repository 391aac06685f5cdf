//! Turning request paths and query strings into byte strings.
//!
//! Keys are arbitrary bytes, so they are taken from the *raw* request path and
//! percent-decoded by hand: `a/b/c` is one key, `%00%FF` is two bytes, and nothing is
//! decoded as UTF-8 (axum's `Path` extractor would, and would reject such keys). The same
//! goes for query parameters (`prefix`, `start`, `end`), where `+` means a space as in HTML
//! forms, so clients' usual query encoders work.

use crate::ApiError;

/// The parts of `/v1/dimensions/{dim}/keys/{key...}`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct KeyPath {
    /// The dimension's name or directory, decoded.
    pub dim: String,
    /// The key, decoded to bytes (may be empty: the engine answers `empty_key`).
    pub key: Vec<u8>,
}

const DIMENSIONS: &str = "/v1/dimensions/";

/// Splits a raw request path of a key route into dimension and key.
pub(crate) fn parse_key_path(raw_path: &str) -> Result<KeyPath, ApiError> {
    let rest = raw_path
        .strip_prefix(DIMENSIONS)
        .ok_or_else(|| ApiError::malformed("a key path looks like /v1/dimensions/{dim}/keys/{key}"))?;
    let (dim, key) = rest
        .split_once("/keys/")
        .ok_or_else(|| ApiError::malformed("a key path looks like /v1/dimensions/{dim}/keys/{key}"))?;
    Ok(KeyPath { dim: decode_dimension(dim)?, key: percent_decode(key, false)? })
}

/// The `{dim}` segment of a raw request path starting with `/v1/dimensions/`.
pub(crate) fn parse_dimension_path(raw_path: &str) -> Result<String, ApiError> {
    let rest = raw_path
        .strip_prefix(DIMENSIONS)
        .ok_or_else(|| ApiError::malformed("a dimension path looks like /v1/dimensions/{dim}"))?;
    let segment = rest.split('/').next().unwrap_or_default();
    decode_dimension(segment)
}

fn decode_dimension(segment: &str) -> Result<String, ApiError> {
    let bytes = percent_decode(segment, false)?;
    String::from_utf8(bytes).map_err(|_| {
        ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "invalid_dimension_name",
            "a dimension name is 1 to 64 of A-Za-z0-9_.- and cannot be invalid UTF-8",
        )
    })
}

/// Percent-decodes `s` to bytes. A `%` must be followed by two hex digits (else 400
/// `malformed`); with `plus_is_space`, `+` decodes to a space (query strings).
pub(crate) fn percent_decode(s: &str, plus_is_space: bool) -> Result<Vec<u8>, ApiError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| Some((hex_value(h[0])?, hex_value(h[1])?)));
                let (hi, lo) = hex.ok_or_else(|| {
                    ApiError::malformed(format!(
                        "bad percent-encoding at byte {i}: `%` must be followed by two hex digits (write a literal % as %25)"
                    ))
                })?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(out)
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// A query string's parameters, decoded to bytes, in order (a repeated name keeps every value).
pub(crate) fn parse_query(query: Option<&str>) -> Result<Vec<(String, Vec<u8>)>, ApiError> {
    let mut params = Vec::new();
    for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = String::from_utf8(percent_decode(name, true)?)
            .map_err(|_| ApiError::malformed("a query parameter's name is not UTF-8"))?;
        params.push((name, percent_decode(value, true)?));
    }
    Ok(params)
}

/// Percent-encodes a key for use in a path (unreserved characters and `/` stay as they are).
#[cfg(test)]
pub(crate) fn encode_key(key: &[u8]) -> String {
    let mut out = String::with_capacity(key.len());
    for &b in key {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slashes_stay_in_the_key() {
        let p = parse_key_path("/v1/dimensions/users/keys/a/b/c").unwrap();
        assert_eq!(p, KeyPath { dim: "users".into(), key: b"a/b/c".to_vec() });
    }

    #[test]
    fn keys_decode_to_arbitrary_bytes() {
        let p = parse_key_path("/v1/dimensions/D07/keys/%00%FF%2Fx+y").unwrap();
        assert_eq!(p.dim, "D07");
        assert_eq!(p.key, vec![0x00, 0xFF, b'/', b'x', b'+', b'y']);
    }

    #[test]
    fn a_key_may_contain_keys() {
        let p = parse_key_path("/v1/dimensions/d/keys/x/keys/y").unwrap();
        assert_eq!((p.dim.as_str(), p.key.as_slice()), ("d", &b"x/keys/y"[..]));
    }

    #[test]
    fn empty_key_is_left_to_the_engine() {
        assert_eq!(parse_key_path("/v1/dimensions/d/keys/").unwrap().key, b"");
    }

    #[test]
    fn bad_percent_encoding_is_malformed() {
        for bad in ["%", "%4", "%zz", "a%g0"] {
            let e = percent_decode(bad, false).unwrap_err();
            assert_eq!(e.code, "malformed", "{bad}");
        }
    }

    #[test]
    fn query_decodes_plus_and_bytes() {
        let q = parse_query(Some("prefix=a+b%FF&limit=10&flag&&x=")).unwrap();
        assert_eq!(
            q,
            vec![
                ("prefix".to_string(), b"a b\xFF".to_vec()),
                ("limit".to_string(), b"10".to_vec()),
                ("flag".to_string(), b"".to_vec()),
                ("x".to_string(), b"".to_vec()),
            ]
        );
    }

    #[test]
    fn encode_then_decode_round_trips() {
        let key: Vec<u8> = (0..=255u8).collect();
        assert_eq!(percent_decode(&encode_key(&key), false).unwrap(), key);
    }

    #[test]
    fn dimension_segment() {
        assert_eq!(parse_dimension_path("/v1/dimensions/users/scan").unwrap(), "users");
        assert_eq!(parse_dimension_path("/v1/dimensions/us%65rs").unwrap(), "users");
        assert_eq!(parse_dimension_path("/v1/dimensions/%FF").unwrap_err().code, "invalid_dimension_name");
    }
}
