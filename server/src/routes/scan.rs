//! `GET /v1/dimensions/{dim}/scan`: ordered pages of keys and values.
//!
//! A cursor is the last key of the page it came from, plus the direction, in base64url. The
//! next page starts strictly after that key (strictly before it, in reverse), so walking
//! every page returns every key that existed throughout exactly once, in order, even while
//! writes go on: a key inserted behind the cursor is not seen, one ahead of it is.

use std::ops::Bound;

use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use jessy_storage::ValueRef;

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
        b"true" | b"1" => Ok(true),
        b"false" | b"0" => Ok(false),
        _ => Err(ApiError::malformed(format!("{name} must be true, false, 1 or 0"))),
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
            // Unknown parameters are ignored, as proxies and caches add their own; but the whole
            // query string must decode (`parse_query`), so a broken encoder is told, not ignored.
            _ => {}
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
    params(super::DimPath, ScanQuery),
    responses(
        (status = 200, description = "A page of items", body = ScanPage),
        (status = 400, description = "Bad parameter (`malformed`) or cursor (`invalid_cursor`)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such dimension (`dimension_not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A key or value is not UTF-8 (`not_utf8`); use encoding=base64", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn scan(State(state): State<AppState>, OriginalUri(uri): OriginalUri) -> Result<Response, ApiError> {
    let dim = parse_dimension_path(uri.path())?;
    let params = parse_params(uri.query())?;
    let dim = state.store.get_dimension(&dim)?;
    let mut page = Page::new(params);
    if let Some(range) = key_range(&page.params) {
        // A page reads `limit` items and one more (to know whether there are more): fetched
        // from the index in one batch rather than in batches of 16, 32, 64.
        let iter = dim.range(range).batch_size(page.params.limit.unwrap_or(DEFAULT_LIMIT).saturating_add(1));
        let mut entries = Entries { iter, reverse: page.params.reverse, keys_only: page.params.keys_only };
        // A short page (the usual one) is read right here: that costs less than the hop to
        // the blocking pool and back. An item that would take it past INLINE_BYTES, and the
        // rest, go to the blocking pool, so that large values do not hold up the other
        // connections of this thread.
        if !page.fill(&mut entries, INLINE_BYTES)? {
            page = blocking::run(move || {
                page.fill(&mut entries, usize::MAX)?;
                Ok(page)
            })
            .await?;
        }
    }
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], page.finish()).into_response())
}

/// How many bytes of keys and values a scan reads on the async worker before it moves to the
/// blocking pool.
const INLINE_BYTES: usize = 256 << 10;

/// The entries of a scan, from the end the request reads from, each key and value lent by
/// the engine's iterator (`next_ref`): no `Vec` per key, and no reference taken on the
/// memory map per value. With `keys_only` the values are not read at all (`next_key`): a
/// listing of keys costs the same whatever the size of their values.
struct Entries {
    iter: jessy_storage::Iter,
    reverse: bool,
    keys_only: bool,
}

impl Entries {
    fn next(&mut self) -> Option<jessy_storage::Result<(&[u8], Option<ValueRef<'_>>)>> {
        self.iter.next_entry_ref(self.reverse, !self.keys_only)
    }
}

/// A page being read: the request's parameters, the JSON so far, where it stands.
struct Page {
    params: Params,
    writer: PageWriter,
    /// The key of the item that filled the page (the next cursor starts after it).
    last_key: Option<Vec<u8>>,
    bytes: usize,
    more: bool,
    /// An entry read but left for the next [`Page::fill`]: it would have gone past the budget.
    held: Option<(Vec<u8>, Option<jessy_storage::Value>)>,
}

impl Page {
    fn new(params: Params) -> Page {
        let writer = PageWriter::new(params.encoding, if params.keys_only { 4 << 10 } else { 32 << 10 });
        Page { params, writer, last_key: None, bytes: 0, more: false, held: None }
    }

    /// Adds items from `entries` until the page is full (true), or until the next item would
    /// take the keys and values written by this call past `budget` bytes (false: that item is
    /// held, call again with the same entries).
    fn fill(&mut self, entries: &mut Entries, budget: usize) -> Result<bool, ApiError> {
        let mut spent = 0usize;
        if let Some((key, value)) = self.held.take() {
            match self.add(&key, value.as_deref(), budget, &mut spent)? {
                Some(false) => self.held = Some((key, value)),
                Some(true) => return Ok(true),
                None => {}
            }
        }
        while self.held.is_none() {
            let Some(entry) = entries.next() else { return Ok(true) };
            let (key, value) = entry?;
            match self.add(key, value.as_deref(), budget, &mut spent)? {
                // Kept as a `Value` of its own: the iterator lends it only until its next call.
                Some(false) => self.held = Some((key.to_vec(), value.map(|v| v.to_value()))),
                Some(true) => return Ok(true),
                None => {}
            }
        }
        Ok(false)
    }

    /// Adds one entry (`value` is `None` with `keys_only`); `Some(full)` when `fill` must
    /// stop (see there): `Some(false)` when the entry did not fit in `budget` and was not
    /// added, for `fill` to hold.
    fn add(
        &mut self,
        key: &[u8],
        value: Option<&[u8]>,
        budget: usize,
        spent: &mut usize,
    ) -> Result<Option<bool>, ApiError> {
        if self.full() {
            self.more = true;
            // The entry read past the end is dropped: the cursor starts after `last_key`.
            return Ok(Some(true));
        }
        let size = key.len() + value.map_or(0, <[u8]>::len);
        if size > budget - *spent {
            return Ok(Some(false));
        }
        *spent += size;
        self.bytes += size;
        self.writer.item(key, value)?;
        // Only the key that fills the page is kept (copied now: the iterator lends it only
        // until its next call), not a copy of every item's key.
        if self.full() {
            self.last_key = Some(key.to_vec());
        }
        Ok(None)
    }

    /// Whether the page holds its limit of items, or its limit of bytes.
    fn full(&self) -> bool {
        let limit = self.params.limit.unwrap_or(DEFAULT_LIMIT);
        self.writer.items == limit || (self.bytes >= MAX_PAGE_BYTES && self.writer.items > 0)
    }

    fn finish(self) -> Bytes {
        let next_cursor = match (self.more, self.last_key) {
            (true, Some(key)) => Some(Cursor { reverse: self.params.reverse, key }.encode()),
            _ => None,
        };
        self.writer.finish(next_cursor)
    }
}

/// Writes a [`ScanPage`] as JSON straight from the engine's bytes, exactly as
/// `serde_json::to_vec(&page)` would: no `String` per key and value, and a string that needs no
/// escaping (the usual case) is copied as it is.
struct PageWriter {
    out: Vec<u8>,
    encoding: Encoding,
    items: usize,
}

impl PageWriter {
    fn new(encoding: Encoding, capacity: usize) -> PageWriter {
        let mut out = Vec::with_capacity(capacity);
        out.extend_from_slice(b"{\"items\":[");
        PageWriter { out, encoding, items: 0 }
    }

    /// Appends `{"key":..,"value":..}`; a key or value that is not UTF-8 is the same 422 as
    /// [`Encoding::encode`] gives.
    fn item(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), ApiError> {
        if self.items > 0 {
            self.out.push(b',');
        }
        self.out.extend_from_slice(b"{\"key\":");
        self.string(key, "key")?;
        if let Some(value) = value {
            self.out.extend_from_slice(b",\"value\":");
            self.string(value, "value")?;
        }
        self.out.push(b'}');
        self.items += 1;
        Ok(())
    }

    fn string(&mut self, bytes: &[u8], what: &str) -> Result<(), ApiError> {
        match self.encoding {
            // One pass decides both that the bytes are UTF-8 and that they need no escaping
            // (the usual case); then they are copied as they are.
            Encoding::Utf8 => crate::json::push_utf8(&mut self.out, bytes).map_err(|_| ApiError::not_utf8(what)),
            Encoding::Base64 => {
                // Encoded straight into the page; the base64 alphabet needs no escaping.
                let start = self.out.len();
                let len = base64::encoded_len(bytes.len(), true).unwrap_or(0);
                self.out.resize(start + len + 2, b'"');
                let written = base64::engine::general_purpose::STANDARD
                    .encode_slice(bytes, &mut self.out[start + 1..start + 1 + len])
                    .map_err(|e| ApiError::internal(format!("base64 encoding failed: {e}")))?;
                debug_assert_eq!(written, len);
                Ok(())
            }
        }
    }

    fn finish(mut self, next_cursor: Option<String>) -> Bytes {
        self.out.extend_from_slice(b"],\"next_cursor\":");
        match next_cursor {
            // base64url: nothing to escape.
            Some(cursor) => {
                self.out.push(b'"');
                self.out.extend_from_slice(cursor.as_bytes());
                self.out.push(b'"');
            }
            None => self.out.extend_from_slice(b"null"),
        }
        self.out.push(b'}');
        Bytes::from(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_written_as_serde_writes_them() {
        let items: Vec<(&[u8], &[u8])> = vec![
            (b"k1", b"plain value"),
            (b"quote\"back\\slash", b"tab\tnewline\ncontrol\x01del\x7f"),
            ("\u{e9}t\u{e9}/\u{1F600}".as_bytes(), b"</script>"),
            (b"", b""),
        ];
        for encoding in [Encoding::Utf8, Encoding::Base64] {
            for keys_only in [false, true] {
                for cursor in [None, Some("AWZrMQ".to_string())] {
                    let mut page = PageWriter::new(encoding, 16);
                    let mut expected = ScanPage { items: Vec::new(), next_cursor: cursor.clone() };
                    for (k, v) in &items {
                        page.item(k, (!keys_only).then_some(*v)).unwrap();
                        expected.items.push(ScanItem {
                            key: encoding.encode(k, "key").unwrap(),
                            value: (!keys_only).then(|| encoding.encode(v, "value").unwrap()),
                        });
                    }
                    assert_eq!(page.finish(cursor).as_ref(), serde_json::to_vec(&expected).unwrap());
                }
            }
        }
        let empty = ScanPage { items: Vec::new(), next_cursor: None };
        assert_eq!(PageWriter::new(Encoding::Utf8, 0).finish(None).as_ref(), serde_json::to_vec(&empty).unwrap());
        let err = PageWriter::new(Encoding::Utf8, 0).item(b"k", Some(b"\xff")).unwrap_err();
        assert_eq!((&*err.code, err.status.as_u16()), ("not_utf8", 422));
        assert!(err.detail.contains("value"), "{}", err.detail);
    }

    /// A store in a temporary directory, with regions of `max_size` bytes and no syncs.
    fn store(max_size: u64) -> (tempfile::TempDir, jessy_storage::Store) {
        let dir = tempfile::tempdir().unwrap();
        let config = jessy_storage::Config::default()
            .base_path(dir.path())
            .durability(jessy_storage::Durability::None)
            .max_size(max_size);
        let store = jessy_storage::Store::open_config(config).unwrap();
        (dir, store)
    }

    #[test]
    fn a_page_past_the_inline_budget_goes_on_where_it_stopped() {
        let (_dir, store) = store(4 << 20);
        let dim = store.get_dimension("default").unwrap();
        let value = "v".repeat(10 << 10);
        for i in 0..60 {
            dim.put(format!("k{i:03}"), &value).unwrap();
        }
        for (limit, items, cursor) in [(None, 60, false), (Some(45), 45, true)] {
            let params = || Params { limit: limit.or(Some(1000)), ..Params::default() };
            let mut whole = Page::new(params());
            let mut all = Entries { iter: dim.range::<&[u8], _>(..), reverse: false, keys_only: false };
            assert!(whole.fill(&mut all, usize::MAX).unwrap());
            // As the handler does: up to INLINE_BYTES, then the rest with the same iterator.
            let mut split = Page::new(params());
            let mut entries = Entries { iter: dim.range::<&[u8], _>(..), reverse: false, keys_only: false };
            assert!(!split.fill(&mut entries, INLINE_BYTES).unwrap());
            assert!(split.writer.items < 30, "{}", split.writer.items);
            assert!(split.fill(&mut entries, usize::MAX).unwrap());
            let (whole, split) = (whole.finish(), split.finish());
            assert_eq!(split, whole);
            let page: ScanPage = serde_json::from_slice(&split).unwrap();
            assert_eq!(page.items.len(), items);
            assert_eq!(page.items[items - 1].key, format!("k{:03}", items - 1));
            assert_eq!(page.next_cursor.is_some(), cursor);
        }
        // One value larger than the budget: nothing is written inline, all of it after.
        dim.put("k000", "w".repeat(INLINE_BYTES + 1)).unwrap();
        let mut split = Page::new(Params { limit: Some(2), ..Params::default() });
        let mut entries = Entries { iter: dim.range::<&[u8], _>(..), reverse: false, keys_only: false };
        assert!(!split.fill(&mut entries, INLINE_BYTES).unwrap());
        assert_eq!(split.writer.items, 0);
        assert!(split.fill(&mut entries, usize::MAX).unwrap());
        let page: ScanPage = serde_json::from_slice(&split.finish()).unwrap();
        assert_eq!(page.items.len(), 2);
        assert_eq!(page.items[0].value.as_ref().map(String::len), Some(INLINE_BYTES + 1));
        assert!(page.next_cursor.is_some());
    }

    #[test]
    fn a_page_ends_at_its_byte_limit_with_a_cursor_after_the_last_item() {
        let (_dir, store) = store(32 << 20);
        let dim = store.get_dimension("default").unwrap();
        // Two values reach MAX_PAGE_BYTES; the third goes to the next page.
        let value = "v".repeat(MAX_PAGE_BYTES / 2);
        for key in ["a", "b", "c"] {
            dim.put(key, &value).unwrap();
        }
        let mut page = Page::new(Params { limit: Some(10), ..Params::default() });
        let mut entries = Entries { iter: dim.range::<&[u8], _>(..), reverse: false, keys_only: false };
        assert!(page.fill(&mut entries, usize::MAX).unwrap());
        let page: ScanPage = serde_json::from_slice(&page.finish()).unwrap();
        assert_eq!(page.items.iter().map(|i| i.key.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        let cursor = Cursor::decode(page.next_cursor.unwrap().as_bytes()).unwrap();
        assert_eq!(cursor, Cursor { reverse: false, key: b"b".to_vec() });
    }

    #[test]
    fn a_keys_only_page_does_not_read_the_values() {
        let (dir, store) = store(4 << 20);
        let dim = store.get_dimension("default").unwrap();
        for key in ["a", "b", "c"] {
            dim.put(key, format!("value of {key}")).unwrap();
        }
        // Damage b's value in the log: only a page that reads it meets the damage.
        let region = dir.path().join("consciousness/D01/region.mmap");
        let mut bytes = std::fs::read(&region).unwrap();
        let at = bytes.windows(10).position(|w| w == b"value of b").unwrap();
        bytes[at] ^= 0x20;
        std::fs::write(&region, &bytes).unwrap();
        let page = |keys_only| {
            let mut page = Page::new(Params { keys_only, ..Params::default() });
            let mut entries = Entries { iter: dim.range::<&[u8], _>(..), reverse: false, keys_only };
            page.fill(&mut entries, usize::MAX).map(|_| page.finish())
        };
        let listed: ScanPage = serde_json::from_slice(&page(true).unwrap()).unwrap();
        assert_eq!(listed.items.iter().map(|i| i.key.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
        assert!(listed.items.iter().all(|i| i.value.is_none()));
        assert_eq!(page(false).unwrap_err().code, "corruption");
    }

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
