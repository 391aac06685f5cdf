//! Single keys: `GET`/`HEAD`/`PUT`/`DELETE /v1/dimensions/{dim}/keys/{key...}`.
//!
//! Values travel as raw bytes. Each stored value has a version, sent as `ETag: "<version>"`;
//! `If-Match`/`If-None-Match` turn a write into a compare-and-set.

use std::borrow::Cow;

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{OriginalUri, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use jessy_storage::{Dimension, Expect, Version};

use super::{check_key, etag};
use crate::keys::{parse_key_path, KeyPath};
use crate::{blocking, ApiError, AppState, Problem};

const OCTET_STREAM: &str = "application/octet-stream";

/// A raw value (documentation only: bodies are any bytes).
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct RawValue(#[allow(dead_code)] Vec<u8>);

/// `"123"` to version 123; anything else (weak tags, lists, garbage) is not one of ours.
fn parse_etag(s: &str) -> Option<Version> {
    s.trim().strip_prefix('"')?.strip_suffix('"')?.parse().ok()
}

/// The elements of a list of entity tags (`"1", W/"2"`), trimmed. It is split at the commas
/// between tags, not at one inside a tag's quotes: RFC 9110 (8.8.3) allows commas there, and
/// a tag cannot hold a quote, so every quote opens or closes one.
fn entity_tags(text: &str) -> impl Iterator<Item = &str> {
    let mut quoted = false;
    text.split(move |c| {
        if c == '"' {
            quoted = !quoted;
        }
        c == ',' && !quoted
    })
    .map(str::trim)
}

/// The value of a header that a client may send as several field lines (`If-Match`,
/// `If-None-Match`): the lines joined with `", "`, which RFC 9110 (5.3) makes the same list as
/// one line holding them all. `Ok(None)` when it is absent; `Err(())` when a line is not
/// visible ASCII. One line (the usual case) is borrowed, not copied.
fn field_list<'h>(headers: &'h HeaderMap, name: &header::HeaderName) -> Result<Option<Cow<'h, str>>, ()> {
    let mut lines = headers.get_all(name).iter();
    let Some(first) = lines.next() else { return Ok(None) };
    let first = first.to_str().map_err(|_| ())?;
    let mut joined: Option<String> = None;
    for line in lines {
        let text = joined.get_or_insert_with(|| first.to_string());
        text.push_str(", ");
        text.push_str(line.to_str().map_err(|_| ())?);
    }
    Ok(Some(joined.map_or(Cow::Borrowed(first), Cow::Owned)))
}

/// A write's `If-None-Match`, parsed.
enum NoneMatch {
    /// `*`: only if the key has no value.
    Any,
    /// Only if the current version is none of these (weak tags name versions too).
    Versions(Vec<Version>),
}

/// The condition a write carries, from `If-Match` / `If-None-Match`, each read from all of
/// its field lines. Both are parsed before either is evaluated, so a malformed one is 400
/// whatever the other says.
///
/// `If-Match` may list several ETags, and holds when the current version is any of them (RFC
/// 9110 13.1.1). The engine's condition names one version, so for a list this reads the key's
/// current version and names it if it is listed. A write between that read and the append
/// makes a new version, which no client can have been given yet: the append then fails, as the
/// list would have.
///
/// With both headers, `If-Match` is evaluated first and then `If-None-Match` (RFC 9110
/// 13.2.2), against one read of the current version; the write needs both to hold, and is
/// made conditional on that version.
fn write_condition(headers: &HeaderMap, dim: &Dimension, key: &[u8]) -> Result<Option<Expect>, ApiError> {
    let if_match = field_list(headers, &header::IF_MATCH).map_err(|_| ApiError::malformed("If-Match is not ASCII"))?;
    let if_none_match =
        field_list(headers, &header::IF_NONE_MATCH).map_err(|_| ApiError::malformed("If-None-Match is not ASCII"))?;
    let if_none_match = match &if_none_match {
        Some(text) => Some((text.trim(), parse_none_match(text.trim())?)),
        None => None,
    };
    match (if_match, if_none_match) {
        (None, None) => Ok(None),
        (Some(if_match), None) => match_condition(if_match.trim(), dim, key),
        (None, Some((_, NoneMatch::Any))) => Ok(Some(Expect::Absent)),
        (None, Some((text, NoneMatch::Versions(listed)))) => none_match_condition(text, &listed, dim, key),
        (Some(if_match), Some((none_text, none_match))) => {
            let if_match = if_match.trim();
            let current = dim.version(key)?;
            let version = match current {
                Some(version) if if_match == "*" || strong_versions(if_match).contains(&version) => version,
                _ => return Err(if_match_failed(if_match, current)),
            };
            let listed = match &none_match {
                NoneMatch::Any => true,
                NoneMatch::Versions(listed) => listed.contains(&version),
            };
            if listed {
                return Err(condition_failed(
                    format!(
                        "If-Match {if_match} holds, but If-None-Match {none_text} names the current version \"{version}\"; a write needs both to hold"
                    ),
                    current,
                ));
            }
            Ok(Some(Expect::Version(version)))
        }
    }
}

/// The versions an `If-Match` list names: entity tags this server never issued (weak ones,
/// words) name none, as they can never match (strong comparison, RFC 9110 13.1.1).
fn strong_versions(text: &str) -> Vec<Version> {
    entity_tags(text).filter_map(parse_etag).collect()
}

/// The condition of an `If-Match` alone: `*`, one version (left to the engine), or a list.
fn match_condition(text: &str, dim: &Dimension, key: &[u8]) -> Result<Option<Expect>, ApiError> {
    if text == "*" {
        return Ok(Some(Expect::Present));
    }
    let listed = strong_versions(text);
    match listed[..] {
        // Nothing this server issued: it can never hold. The 412 still tells the current ETag.
        [] => Err(condition_failed(
            format!("If-Match {text} names no version of this key; send the ETag of a GET, like \"42\""),
            dim.version(key)?,
        )),
        [version] => Ok(Some(Expect::Version(version))),
        _ => {
            let current = dim.version(key)?;
            match current {
                Some(version) if listed.contains(&version) => Ok(Some(Expect::Version(version))),
                _ => Err(if_match_failed(text, current)),
            }
        }
    }
}

/// A write's `If-None-Match`: `*` or a list of entity tags, else 400 `malformed` (a client
/// must hear about it rather than have its write made unconditional).
fn parse_none_match(text: &str) -> Result<NoneMatch, ApiError> {
    if text == "*" {
        return Ok(NoneMatch::Any);
    }
    listed_versions(text).map(NoneMatch::Versions).ok_or_else(|| {
        ApiError::malformed(format!(
            "If-None-Match {text} is neither * nor a list of ETags; send * (write only if the key has no value) or ETags like \"42\""
        ))
    })
}

/// The condition of an `If-None-Match` list of ETags on a write: fails (412) if the current
/// version is listed, weak tags included (RFC 9110 13.1.2). Listed versions older than the
/// current one can never be current again, so they need nothing more; one newer than it
/// could only become the key's version through a write landing between this read and the
/// append, so then the write is made conditional on the state read (and such a write in
/// between fails it).
fn none_match_condition(
    text: &str,
    listed: &[Version],
    dim: &Dimension,
    key: &[u8],
) -> Result<Option<Expect>, ApiError> {
    if listed.is_empty() {
        return Ok(None); // only tags this server never issued: none can match
    }
    let current = dim.version(key)?;
    if let Some(version) = current.filter(|v| listed.contains(v)) {
        return Err(condition_failed(format!("If-None-Match {text} names the current version"), Some(version)));
    }
    let newer = listed.iter().any(|&v| Some(v) > current);
    Ok(newer.then(|| current.map_or(Expect::Absent, Expect::Version)))
}

/// The versions a list of entity tags names, weak ones too; tags of other servers name none.
/// `None` if an element is not an entity tag at all (`42` without quotes, say), which a
/// client must hear about rather than have its write made unconditional.
fn listed_versions(text: &str) -> Option<Vec<Version>> {
    let mut versions = Vec::new();
    for tag in entity_tags(text) {
        let opaque = tag.strip_prefix("W/").unwrap_or(tag);
        // `"` then anything but a quote, then `"`.
        let inner = opaque.strip_prefix('"').and_then(|rest| rest.strip_suffix('"'))?;
        if inner.contains('"') {
            return None;
        }
        versions.extend(inner.parse::<Version>().ok());
    }
    Some(versions)
}

/// The 412 of an `If-Match` (`*` or a list) that does not hold for the current version.
fn if_match_failed(if_match: &str, current: Option<Version>) -> ApiError {
    let now = match current {
        Some(version) => format!("the current version is \"{version}\""),
        None => "the key has no value".to_string(),
    };
    let what = if if_match == "*" { "needs a value" } else { "does not name the current version" };
    condition_failed(format!("If-Match {if_match} {what}: {now}"), current)
}

/// A 412 `condition_failed`; like the engine's, it carries the current `ETag` when the key
/// has a value.
fn condition_failed(detail: String, current: Option<Version>) -> ApiError {
    let error = ApiError::new(StatusCode::PRECONDITION_FAILED, "condition_failed", detail);
    match current {
        Some(version) => error.with_header(header::ETAG, etag(version)),
        None => error,
    }
}

/// `If-None-Match` on a read (all its field lines): does the client already have this version?
/// A header that is not ASCII names nothing: the value is sent.
fn not_modified(headers: &HeaderMap, version: Version) -> bool {
    let Ok(Some(text)) = field_list(headers, &header::IF_NONE_MATCH) else {
        return false;
    };
    let matched =
        entity_tags(&text).any(|tag| tag == "*" || parse_etag(tag.strip_prefix("W/").unwrap_or(tag)) == Some(version));
    matched
}

/// What a read of a key answers with.
enum Read {
    /// The client's copy is current (`If-None-Match` names this version): 304.
    Current(Version),
    Value(jessy_storage::Value),
}

/// Reads a key on the worker thread itself, not on the blocking pool: a read takes a read
/// lock, looks the key up in memory and checksums the value in the memory map; it never
/// waits for a writer's `fdatasync` nor for a compaction. Only a page fault on a cold map
/// may touch the disk, which costs about what the hop to the blocking pool costs anyway
/// (two thread wake-ups per request; measured in docs/BENCHMARKS.md, `## HTTP`).
///
/// A request with `If-None-Match` first looks up the key's version in the index alone
/// (`Dimension::version`): a cache revalidating its copy then costs no value read, however
/// large the value. So a value damaged on disk is not reported to a client whose copy (read
/// while it was whole) is current; any read that would send it reports the damage.
fn read(state: &AppState, raw_path: &str, headers: &HeaderMap) -> Result<Read, ApiError> {
    let KeyPath { dim, key } = parse_key_path(raw_path)?;
    check_key(&key)?;
    let dim = state.store.get_dimension(&dim)?;
    if headers.contains_key(header::IF_NONE_MATCH) {
        if let Some(version) = dim.version(&key)? {
            if not_modified(headers, version) {
                return Ok(Read::Current(version));
            }
        }
    }
    let value = dim.get(&key)?.ok_or_else(ApiError::key_not_found)?;
    // A write between the two lookups may have stored a version the client has (`*`).
    if not_modified(headers, value.version()) {
        return Ok(Read::Current(value.version()));
    }
    Ok(Read::Value(value))
}

fn not_modified_response(version: Version) -> Response {
    (StatusCode::NOT_MODIFIED, [(header::ETAG, etag(version))]).into_response()
}

fn value_head(value: &jessy_storage::Value) -> [(header::HeaderName, HeaderValue); 3] {
    [
        (header::CONTENT_TYPE, HeaderValue::from_static(OCTET_STREAM)),
        (header::ETAG, etag(value.version())),
        (header::CONTENT_LENGTH, HeaderValue::from(value.len())),
    ]
}

/// Reads a value: the raw bytes, with its version as `ETag`.
#[utoipa::path(
    get,
    path = "/v1/dimensions/{dim}/keys/{key}",
    tag = "keys",
    params(
        super::DimPath,
        ("key" = String, Path, example = "user:42", description = "The key: the rest of the path, percent-decoded to bytes (`a/b/c` is one key, `%00%FF` two bytes); 1 to 4096 bytes"),
        ("If-None-Match" = Option<String>, Header, description = "ETags the client has (a list, weak ones too, or `*`); answered 304 if one is current"),
    ),
    responses(
        (status = 200, description = "The value", body = RawValue, content_type = "application/octet-stream", headers(("ETag" = String, description = "The value's version, quoted"))),
        (status = 304, description = "Not modified (If-None-Match matched); no body", headers(("ETag" = String, description = "The current version"))),
        (status = 400, description = "Empty key, bad percent-encoding, invalid dimension name", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`key_not_found` or `dimension_not_found`", body = Problem, content_type = "application/problem+json"),
        (status = 414, description = "Key longer than 4096 bytes (`key_too_large`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    get_now(&state, uri.path(), &headers)
}

/// The whole of `GET`, which never waits: also called directly, without the router, by the
/// fast path for keys (`request_id.rs`), as `put` and `delete` are.
pub(crate) fn get_now(state: &AppState, raw_path: &str, headers: &HeaderMap) -> Result<Response, ApiError> {
    let value = match read(state, raw_path, headers)? {
        Read::Current(version) => return Ok(not_modified_response(version)),
        Read::Value(value) => value,
    };
    let head = value_head(&value);
    // Zero-copy: the body borrows the memory map through the value.
    Ok((StatusCode::OK, head, Body::from(Bytes::from_owner(value))).into_response())
}

/// Like `GET`, without the body: does the key exist, how long is it, which version.
#[utoipa::path(
    head,
    path = "/v1/dimensions/{dim}/keys/{key}",
    tag = "keys",
    params(
        super::DimPath,
        ("key" = String, Path, example = "user:42", description = "The key, percent-encoded"),
        ("If-None-Match" = Option<String>, Header, description = "ETags the client has (a list, weak ones too, or `*`); answered 304 if one is current"),
    ),
    responses(
        (status = 200, description = "The key has a value", headers(("ETag" = String, description = "The value's version"), ("Content-Length" = u64, description = "The value's length"))),
        (status = 304, description = "Not modified (If-None-Match matched); no body, no Content-Length", headers(("ETag" = String, description = "The current version"))),
        (status = 400, description = "Malformed key or dimension name"),
        (status = 401, description = "Missing or wrong bearer token"),
        (status = 404, description = "`key_not_found` or `dimension_not_found`"),
        (status = 414, description = "Key longer than 4096 bytes"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn head(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    match read(&state, uri.path(), &headers)? {
        Read::Current(version) => Ok(not_modified_response(version)),
        Read::Value(value) => Ok((StatusCode::OK, value_head(&value)).into_response()),
    }
}

/// Stores a value (the raw request body). `If-Match: "<version>"` (or a list of them) writes
/// only over that version, `If-None-Match: *` only if the key has no value, `If-None-Match`
/// with ETags only if the current version is none of them; with both, both must hold (If-Match
/// is evaluated first); 412 otherwise, once the write could otherwise succeed.
#[utoipa::path(
    put,
    path = "/v1/dimensions/{dim}/keys/{key}",
    tag = "keys",
    params(
        super::DimPath,
        ("key" = String, Path, example = "user:42", description = "The key, percent-encoded; 1 to 4096 bytes"),
        ("If-Match" = Option<String>, Header, description = "Write only if the current version is this ETag (`\"42\"`) or one of a list of them (`\"41\", \"42\"`), or `*`: only if the key has a value. Evaluated before If-None-Match; with both, both must hold"),
        ("If-None-Match" = Option<String>, Header, description = "`*`: write only if the key has no value; a list of ETags (weak ones match too): write only if the current version is none of them"),
    ),
    request_body(content = Option<RawValue>, content_type = "application/octet-stream", description = "The value, any bytes, up to the region size (MMAP_MAX_SIZE); no body stores the empty value"),
    responses(
        (status = 204, description = "Stored", headers(("ETag" = String, description = "The new version, quoted"))),
        (status = 400, description = "Empty key, bad percent-encoding, invalid dimension name, bad If-None-Match", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such dimension (`dimension_not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The condition failed (`condition_failed`); the current ETag is sent when the key has a value", body = Problem, content_type = "application/problem+json", headers(("ETag" = String, description = "The current version, when the key has a value"))),
        (status = 413, description = "The value does not fit in a region (`value_too_large`)", body = Problem, content_type = "application/problem+json"),
        (status = 414, description = "Key longer than 4096 bytes (`key_too_large`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is read-only (`read_only`)", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "Disk full (`disk_full`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn put(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let KeyPath { dim, key } = parse_key_path(uri.path())?;
    check_key(&key)?;
    // What the request would get without its conditions comes first: a condition is only
    // evaluated for a request that could otherwise succeed (RFC 9110 13.2.1).
    let dim = state.store.get_dimension(&dim)?;
    let value = body.map_err(|rejection| body_error(rejection, &state))?;
    let condition = match write_condition(&headers, &dim, &key) {
        Ok(condition) => condition,
        // The engine checks a value's size before its condition; a condition this server
        // found failing itself must not be answered 412 before the size is checked either.
        Err(failed) if failed.status == StatusCode::PRECONDITION_FAILED => {
            return Err(check_fits(&dim, &key, &value).err().unwrap_or(failed))
        }
        Err(e) => return Err(e),
    };
    let version = if state.immediate() {
        // The committer appends and syncs it with the other writes waiting (blocking.rs).
        blocking::answered(|reply| dim.enqueue_put(&key, value, condition, reply)).await?
    } else {
        // Appending is a short `pwrite` unless the writer is busy or the region must grow or
        // be sealed: then it runs on the blocking pool.
        let ticket = match dim.try_submit_put(&key, &value, condition)? {
            Some(ticket) => ticket,
            None => blocking::run(move || Ok(dim.submit_put(&key, &value, condition)?)).await?,
        };
        blocking::durable(ticket).await?
    };
    Ok((StatusCode::NO_CONTENT, [(header::ETAG, etag(version))]).into_response())
}

/// `Ok` if the engine would take `value` under `key` as far as its size goes; else its 413
/// `value_too_large`, as it would answer the same write without a condition.
fn check_fits(dim: &Dimension, key: &[u8], value: &[u8]) -> Result<(), ApiError> {
    let (len, max) = (value.len() as u64, dim.max_value_len(key));
    if len > max {
        return Err(jessy_storage::Error::ValueTooLarge { what: "value", len, max }.into());
    }
    Ok(())
}

/// Deletes a key: 204 whether or not it had a value. `If-Match` makes it conditional.
#[utoipa::path(
    delete,
    path = "/v1/dimensions/{dim}/keys/{key}",
    tag = "keys",
    params(
        super::DimPath,
        ("key" = String, Path, example = "user:42", description = "The key, percent-encoded; 1 to 4096 bytes"),
        ("If-Match" = Option<String>, Header, description = "Delete only if the current version is this ETag or one of a list of them, or `*`: only if the key has a value"),
        ("If-None-Match" = Option<String>, Header, description = "A list of ETags (weak ones match too): delete only if the current version is none of them"),
    ),
    responses(
        (status = 204, description = "Deleted (or was not there)"),
        (status = 400, description = "Empty key, bad percent-encoding, invalid dimension name, bad If-None-Match", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such dimension (`dimension_not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The condition failed (`condition_failed`); the current ETag is sent when the key has a value", body = Problem, content_type = "application/problem+json", headers(("ETag" = String, description = "The current version, when the key has a value"))),
        (status = 414, description = "Key longer than 4096 bytes (`key_too_large`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is read-only (`read_only`)", body = Problem, content_type = "application/problem+json"),
        (status = 507, description = "Disk full (`disk_full`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let KeyPath { dim, key } = parse_key_path(uri.path())?;
    check_key(&key)?;
    let dim = state.store.get_dimension(&dim)?; // before the condition, as in `put`
    let condition = write_condition(&headers, &dim, &key)?;
    if state.immediate() {
        blocking::answered(|reply| dim.enqueue_delete(&key, condition, reply)).await?;
    } else {
        let ticket = match dim.try_submit_delete(&key, condition)? {
            Some(ticket) => ticket,
            None => blocking::run(move || Ok(dim.submit_delete(&key, condition)?)).await?,
        };
        blocking::durable(ticket).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A body that could not be read: too large (413) or broken off (400).
pub(crate) fn body_error(rejection: BytesRejection, state: &AppState) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "value_too_large",
            format!(
                "the request body is larger than this server accepts ({} bytes: the region size MMAP_MAX_SIZE={} plus room for encoding); raise MMAP_MAX_SIZE",
                state.config.body_limit(),
                state.config.storage.max_size_bytes()
            ),
        )
    } else {
        ApiError::malformed(format!("the request body could not be read: {}", rejection.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_round_trip() {
        for v in [0, 1, 9, 10, 42, 1_000_000, u64::MAX - 1, u64::MAX] {
            assert_eq!(etag(Version(v)).to_str().unwrap(), format!("\"{v}\""));
            assert_eq!(parse_etag(etag(Version(v)).to_str().unwrap()), Some(Version(v)));
        }
        assert_eq!(parse_etag("W/\"42\""), None);
        assert_eq!(parse_etag("42"), None);
        assert_eq!(parse_etag("\"x\""), None);
    }

    #[test]
    fn conditions_from_headers() {
        let dir = tempfile::tempdir().unwrap();
        let config = jessy_storage::Config::default().base_path(dir.path()).durability(jessy_storage::Durability::None);
        let store = jessy_storage::Store::open_config(config).unwrap();
        let dim = store.get_dimension("default").unwrap();
        let current = dim.put("k", "v").unwrap();
        let condition = |if_match: Option<String>, if_none_match: Option<String>, key: &[u8]| {
            let mut h = HeaderMap::new();
            if let Some(v) = if_match {
                h.insert(header::IF_MATCH, HeaderValue::from_str(&v).unwrap());
            }
            if let Some(v) = if_none_match {
                h.insert(header::IF_NONE_MATCH, HeaderValue::from_str(&v).unwrap());
            }
            write_condition(&h, &dim, key)
        };
        let failed = |result: Result<Option<Expect>, ApiError>| result.unwrap_err().status;

        assert_eq!(condition(None, None, b"k").unwrap(), None);
        assert_eq!(condition(None, Some("*".into()), b"k").unwrap(), Some(Expect::Absent));
        // Both: If-Match first, then If-None-Match (RFC 9110 13.2.2); the write needs both.
        assert_eq!(failed(condition(Some("\"7\"".into()), Some("*".into()), b"k")), StatusCode::PRECONDITION_FAILED);
        assert_eq!(
            failed(condition(Some(format!("\"{current}\"")), Some("*".into()), b"k")),
            StatusCode::PRECONDITION_FAILED
        );
        assert_eq!(failed(condition(Some("*".into()), Some("*".into()), b"k")), StatusCode::PRECONDITION_FAILED);
        assert_eq!(failed(condition(Some("*".into()), Some("*".into()), b"absent")), StatusCode::PRECONDITION_FAILED);
        let cur = format!("\"{current}\"");
        assert_eq!(
            failed(condition(Some(cur.clone()), Some(format!("W/{cur}")), b"k")),
            StatusCode::PRECONDITION_FAILED
        );
        let other = format!("\"{}\"", current.0 + 5);
        assert_eq!(condition(Some(cur.clone()), Some(other), b"k").unwrap(), Some(Expect::Version(current)));
        assert_eq!(condition(Some("*".into()), Some("W/\"x\"".into()), b"k").unwrap(), Some(Expect::Version(current)));
        // A malformed If-None-Match is 400 next to any If-Match.
        assert_eq!(failed(condition(Some(cur), Some("42".into()), b"k")), StatusCode::BAD_REQUEST);
        assert_eq!(condition(Some("*".into()), None, b"k").unwrap(), Some(Expect::Present));
        for never in ["W/\"7\"", "7", "\"x\"", "W/\"1\", W/\"2\""] {
            assert_eq!(failed(condition(Some(never.into()), None, b"k")), StatusCode::PRECONDITION_FAILED, "{never}");
        }

        // A list holds when it names the current version, weak and foreign tags aside.
        let list = format!("\"1\", W/\"{current}\", \"{current}\",\"x\"");
        assert_eq!(condition(Some(list), None, b"k").unwrap(), Some(Expect::Version(current)));
        let stale = format!("\"{}\", W/\"{current}\", \"{}\"", current.0 + 1, current.0 + 2);
        let e = condition(Some(stale), None, b"k").unwrap_err();
        assert_eq!(e.status, StatusCode::PRECONDITION_FAILED);
        assert_eq!(e.code, "condition_failed");
        assert!(e.headers.iter().any(|(n, v)| n == header::ETAG && *v == etag(current)), "{:?}", e.headers);
        // On a key without a value no list holds, and there is no ETag to send.
        let e = condition(Some(format!("\"{current}\", \"1\"")), None, b"absent").unwrap_err();
        assert_eq!(e.status, StatusCode::PRECONDITION_FAILED);
        assert!(e.headers.is_empty());

        // If-None-Match with ETags: 412 when the current version is listed, weak or strong.
        let none_match = |text: String, key: &[u8]| condition(None, Some(text), key);
        for listed in [format!("\"{current}\""), format!("\"1\", W/\"{current}\""), format!("\"x\",\"{current}\"")] {
            let e = none_match(listed.clone(), b"k").unwrap_err();
            assert_eq!(e.status, StatusCode::PRECONDITION_FAILED, "{listed}");
            assert_eq!(e.code, "condition_failed");
            assert!(e.headers.iter().any(|(n, v)| n == header::ETAG && *v == etag(current)), "{listed}");
        }
        // Older versions and foreign tags can never be current: no condition is needed.
        assert_eq!(none_match(format!("\"{}\", \"x\", W/\"y\"", current.0 - 1), b"k").unwrap(), None);
        assert_eq!(none_match("\"x\"".into(), b"absent").unwrap(), None);
        // A newer one could only come from a write in between: the write waits on the state read.
        let newer = format!("\"{}\"", current.0 + 1);
        assert_eq!(none_match(newer.clone(), b"k").unwrap(), Some(Expect::Version(current)));
        assert_eq!(none_match(newer, b"absent").unwrap(), Some(Expect::Absent));
        // A comma inside a tag is part of it (RFC 9110 8.8.3): one foreign tag, no condition.
        assert_eq!(none_match("\"a,b\"".into(), b"k").unwrap(), None);
        let e = none_match(format!("W/\"a, b\", \"{current}\""), b"k").unwrap_err();
        assert_eq!(e.status, StatusCode::PRECONDITION_FAILED);
        assert_eq!(
            condition(Some(format!("\"x,{current}\", \"{current}\"")), None, b"k").unwrap(),
            Some(Expect::Version(current))
        );
        assert_eq!(failed(condition(Some(format!("\"1,{current}\"")), None, b"k")), StatusCode::PRECONDITION_FAILED);
        // Not entity tags at all: 400, not an unconditional write.
        for bad in ["7", "\"7\", 8", "\"7", "*, \"7\"", "", "\"7\" \"8\""] {
            assert_eq!(failed(none_match(bad.into(), b"k")), StatusCode::BAD_REQUEST, "{bad:?}");
        }
    }

    #[test]
    fn repeated_lines_are_one_list() {
        let mut h = HeaderMap::new();
        assert_eq!(field_list(&h, &header::IF_MATCH), Ok(None));
        h.append(header::IF_MATCH, HeaderValue::from_static("\"1\""));
        assert_eq!(field_list(&h, &header::IF_MATCH), Ok(Some(Cow::Borrowed("\"1\""))));
        h.append(header::IF_MATCH, HeaderValue::from_static("W/\"2\", \"3\""));
        assert_eq!(field_list(&h, &header::IF_MATCH).unwrap().as_deref(), Some("\"1\", W/\"2\", \"3\""));
        h.append(header::IF_MATCH, HeaderValue::from_bytes(b"\"\xff\"").unwrap());
        assert_eq!(field_list(&h, &header::IF_MATCH), Err(()));

        let mut h = HeaderMap::new();
        h.append(header::IF_NONE_MATCH, HeaderValue::from_static("\"1\""));
        h.append(header::IF_NONE_MATCH, HeaderValue::from_static("\"5\""));
        assert!(not_modified(&h, Version(5)));
        assert!(not_modified(&h, Version(1)));
        assert!(!not_modified(&h, Version(3)));
    }

    #[test]
    fn not_modified_matches_lists_and_weak_tags() {
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"1\", W/\"5\""));
        assert!(not_modified(&h, Version(5)));
        assert!(!not_modified(&h, Version(6)));
        // A comma inside a tag does not split it.
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"5,6\""));
        assert!(!not_modified(&h, Version(5)));
        assert!(!not_modified(&h, Version(6)));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("W/\"x,y\" , \"6\""));
        assert!(not_modified(&h, Version(6)));
    }
}
