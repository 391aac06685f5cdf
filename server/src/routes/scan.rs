//! `GET /v1/dimensions/{dim}/scan`: ordered pages of keys and values.
//!
//! A cursor is the last key of the page it came from, plus the direction, in base64url. The
//! next page starts strictly after that key (strictly before it, in reverse), so walking
//! every page returns every key that existed throughout exactly once, in order, even while
//! writes go on: a key inserted behind the cursor is not seen, one ahead of it is.

use std::ops::Bound;

use axum::extract::{OriginalUri, State};
use axum::Json;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::Encoding;
use crate::keys::{parse_dimension_path, parse_query};
use crate::{blocking, ApiError, AppState, Problem};

/// `limit` when none is given.
pub const DEFAULT_LIMIT: usize = 100;
/// The largest `limit` accepted.
pub const MAX_LIMIT: usize = 1000;
/// A page stops early once its keys and values add up to this many bytes (at least one item
/// is always returned), so one page of large values cannot exhaust the server's memory.
pub const MAX_PAGE_BYTES: usize = 16 << 20;

/// One key of a scan page.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ScanItem {
    /// The key, in the page's encoding.
    pub key: String,
    /// The value, in the page's encoding; absent with `keys_only=true`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub value: Option<String>,
}

/// A page of a scan.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScanPage {
    /// Up to `limit` items, ordered by key bytes (descending with `reverse=true`).
    pub items: Vec<ScanItem>,
    /// Pass as `cursor` (with the same other parameters) for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// The query parameters (documentation; they are parsed from the raw query so that
/// `prefix`, `start` and `end` may hold any bytes, percent-encoded).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ScanQuery {
    /// Only keys starting with these bytes (percent-encoded).
    prefix: Option<String>,
    /// Only keys >= this (percent-encoded).
    start: Option<String>,
    /// Only keys < this (percent-encoded; exclusive).
    end: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Descending key order.
    reverse: Option<bool>,
    /// Items without values.
    keys_only: Option<bool>,
    /// `utf8` (default; 422 if a key or value is not UTF-8) or `base64`.
    #[param(inline)]
    encoding: Option<Encoding>,
}

#[derive(Debug, Default)]
struct Params {
    prefix: Option<Vec<u8>>,
    start: Option<Vec<u8>>,
    end: Option<Vec<u8>>,
    limit: Option<usize>,
    cursor: Option<Cursor>,
    reverse: bool,
    keys_only: bool,
    encoding: Encoding,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Cursor {
    reverse: bool,
    key: Vec<u8>,
}

const CURSOR_VERSION: u8 = 1;

impl Cursor {
    fn encode(&self) -> String {
        let mut raw = Vec::with_capacity(self.key.len() + 2);
        raw.push(CURSOR_VERSION);
        raw.push(if self.reverse { b'r' } else { b'f' });
        raw.extend_from_slice(&self.key);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    }

    fn decode(text: &[u8]) -> Result<Cursor, ApiError> {
        let bad = || {
            ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "invalid_cursor",
                "cursor is not a next_cursor this server returned",
            )
        };
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).map_err(|_| bad())?;
        match raw.as_slice() {
            [CURSOR_VERSION, b'f', key @ ..] => Ok(Cursor { reverse: false, key: key.to_vec() }),
            [CURSOR_VERSION, b'r', key @ ..] => Ok(Cursor { reverse: true, key: key.to_vec() }),
            _ => Err(bad()),
        }
    }
}

fn parse_bool(name: &str, value: &[u8]) -> Result<bool, ApiError> {
    match value {
        b"true" | b"1" | b"" => Ok(true),
        b"false" | b"0" => Ok(false),
        _ => Err(ApiError::malformed(format!("{name} must be true or false"))),
    }
}

fn parse_params(query: Option<&str>) -> Result<Params, ApiError> {
    let mut p = Params::default();
    for (name, value) in parse_query(query)? {
        match name.as_str() {
            "prefix" => p.prefix = Some(value),
            "start" => p.start = Some(value),
            "end" => p.end = Some(value),
            "limit" => {
                let n = std::str::from_utf8(&value).ok().and_then(|s| s.parse::<usize>().ok());
                match n {
                    Some(n @ 1..=MAX_LIMIT) => p.limit = Some(n),
                    _ => {
                        return Err(ApiError::malformed(format!("limit must be a whole number from 1 to {MAX_LIMIT}")))
                    }
                }
            }
            "cursor" => p.cursor = Some(Cursor::decode(&value)?),
            "reverse" => p.reverse = parse_bool("reverse", &value)?,
            "keys_only" => p.keys_only = parse_bool("keys_only", &value)?,
            "encoding" => p.encoding = Encoding::parse(&value)?,
            _ => {} // unknown parameters are ignored, as proxies and caches add their own
        }
    }
    if let Some(cursor) = &p.cursor {
        if cursor.reverse != p.reverse {
            return Err(ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "invalid_cursor",
                "this cursor belongs to a scan in the other direction; repeat the first page's parameters with it",
            ));
        }
    }
    Ok(p)
}

/// The smallest key greater than every key starting with `prefix`, if there is one.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// A lower bound: the key and whether it is excluded.
type Lower = Option<(Vec<u8>, bool)>;
/// An upper bound (always exclusive).
type Upper = Option<Vec<u8>>;

fn tighter_lower(a: Lower, b: Lower) -> Lower {
    match (a, b) {
        (None, x) | (x, None) => x,
        (Some(a), Some(b)) => Some(match a.0.cmp(&b.0) {
            std::cmp::Ordering::Greater => a,
            std::cmp::Ordering::Less => b,
            std::cmp::Ordering::Equal => (a.0, a.1 || b.1),
        }),
    }
}

fn tighter_upper(a: Upper, b: Upper) -> Upper {
    match (a, b) {
        (None, x) | (x, None) => x,
        (Some(a), Some(b)) => Some(a.min(b)),
    }
}

/// A range of keys as the engine takes it.
type KeyRange = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// The key range a request asks for, or `None` when it is empty.
fn key_range(p: &Params) -> Option<KeyRange> {
    let mut lower: Lower = p.start.clone().map(|s| (s, false));
    let mut upper: Upper = p.end.clone();
    if let Some(prefix) = &p.prefix {
        lower = tighter_lower(lower, Some((prefix.clone(), false)));
        upper = tighter_upper(upper, prefix_end(prefix));
    }
    if let Some(cursor) = &p.cursor {
        if cursor.reverse {
            upper = tighter_upper(upper, Some(cursor.key.clone()));
        } else {
            lower = tighter_lower(lower, Some((cursor.key.clone(), true)));
        }
    }
    if let (Some((lo, _)), Some(hi)) = (&lower, &upper) {
        // Ordered maps panic on inverted ranges; an empty one is simply no keys.
        if lo >= hi {
            return None;
        }
    }
    let lo = match lower {
        None => Bound::Unbounded,
        Some((k, true)) => Bound::Excluded(k),
        Some((k, false)) => Bound::Included(k),
    };
    let hi = upper.map_or(Bound::Unbounded, Bound::Excluded);
    Some((lo, hi))
}

/// Lists keys (and values) in key order, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/dimensions/{dim}/scan",
    tag = "keys",
    params(("dim" = String, Path, example = "default", description = "The dimension's name or dir (`D07`)"), ScanQuery),
    responses(
        (status = 200, description = "A page of items", body = ScanPage),
        (status = 400, description = "Bad parameter (`malformed`) or cursor (`invalid_cursor`)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such dimension (`dimension_not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A key or value is not UTF-8 (`not_utf8`); use encoding=base64", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn scan(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
) -> Result<Json<ScanPage>, ApiError> {
    let dim = parse_dimension_path(uri.path())?;
    let params = parse_params(uri.query())?;
    let store = state.store.clone();
    let page = blocking::run(move || {
        let dim = store.get_dimension(&dim)?;
        let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
        let Some(range) = key_range(&params) else {
            return Ok(ScanPage { items: Vec::new(), next_cursor: None });
        };
        let iter = dim.range(range);
        let mut iter: Box<dyn Iterator<Item = _>> = if params.reverse { Box::new(iter.rev()) } else { Box::new(iter) };
        let mut items = Vec::new();
        let mut last_key = None;
        let mut bytes = 0usize;
        let mut more = false;
        for entry in iter.by_ref() {
            let (key, value) = entry?;
            if items.len() == limit || (bytes >= MAX_PAGE_BYTES && !items.is_empty()) {
                more = true;
                break;
            }
            bytes += key.len() + if params.keys_only { 0 } else { value.len() };
            let item = ScanItem {
                key: params.encoding.encode(&key, "key")?,
                value: if params.keys_only { None } else { Some(params.encoding.encode(&value, "value")?) },
            };
            items.push(item);
            last_key = Some(key);
        }
        let next_cursor = match (more, last_key) {
            (true, Some(key)) => Some(Cursor { reverse: params.reverse, key }.encode()),
            _ => None,
        };
        Ok(ScanPage { items, next_cursor })
    })
    .await?;
    Ok(Json(page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips() {
        for c in [Cursor { reverse: false, key: vec![0, 255, b'a'] }, Cursor { reverse: true, key: b"k".to_vec() }] {
            assert_eq!(Cursor::decode(c.encode().as_bytes()).unwrap(), c);
        }
        assert_eq!(Cursor::decode(b"!!").unwrap_err().code, "invalid_cursor");
        assert_eq!(Cursor::decode(b"").unwrap_err().code, "invalid_cursor");
    }

    #[test]
    fn prefix_end_increments() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xFF"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xFF\xFF"), None);
        assert_eq!(prefix_end(b""), None);
    }

    #[test]
    fn ranges_combine_and_empty_ones_are_none() {
        let p = parse_params(Some("prefix=b&start=a&end=bz")).unwrap();
        assert_eq!(key_range(&p), Some((Bound::Included(b"b".to_vec()), Bound::Excluded(b"bz".to_vec()))));
        let p = parse_params(Some("start=z&end=a")).unwrap();
        assert_eq!(key_range(&p), None);
        let p = parse_params(Some("start=a&end=a")).unwrap();
        assert_eq!(key_range(&p), None);
        let c = Cursor { reverse: false, key: b"m".to_vec() }.encode();
        let p = parse_params(Some(&format!("start=m&cursor={c}"))).unwrap();
        assert_eq!(key_range(&p), Some((Bound::Excluded(b"m".to_vec()), Bound::Unbounded)));
    }

    #[test]
    fn bad_parameters() {
        for q in ["limit=0", "limit=1001", "limit=x", "reverse=maybe", "encoding=hex", "cursor=%%"] {
            assert!(parse_params(Some(q)).is_err(), "{q}");
        }
        let c = Cursor { reverse: true, key: b"m".to_vec() }.encode();
        assert_eq!(parse_params(Some(&format!("cursor={c}"))).unwrap_err().code, "invalid_cursor");
    }
}
