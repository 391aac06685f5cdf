//! The contract's jessy-core table, row by row, in process (`tower::ServiceExt::oneshot` on the
//! router over a store in a temporary directory).

mod common;

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::routing::get;
use axum::Router;
use base64::Engine as _;
use common::{app, app_full, app_with, enc, App, REGION};
use jessy_storage::Durability;
use serde_json::json;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

// ---- operations -------------------------------------------------------------------------

#[tokio::test]
async fn health_is_ok_with_a_request_id() {
    let app = app();
    let r = app.get("/health").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["status"], "ok");
    assert!(r.header("x-request-id").is_some_and(|id| id.len() >= 16));
}

#[tokio::test]
async fn openapi_describes_every_endpoint() {
    let app = app();
    let r = app.get("/openapi.json").await;
    assert_eq!(r.status, StatusCode::OK);
    let doc = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/health", &["get"][..]),
        ("/metrics", &["get"]),
        ("/openapi.json", &["get"]),
        ("/v1/dimensions", &["get"]),
        ("/v1/dimensions/{dim}", &["put", "delete"]),
        ("/v1/dimensions/{dim}/keys/{key}", &["get", "head", "put", "delete"]),
        ("/v1/dimensions/{dim}/scan", &["get"]),
        ("/v1/dimensions/{dim}/batch", &["post"]),
        ("/v1/dimensions/{dim}/compact", &["post"]),
        ("/v1/snapshot", &["get"]),
    ] {
        for m in methods {
            assert!(paths.get(path).and_then(|p| p.get(*m)).is_some(), "{m} {path} is not described");
        }
    }
    assert!(doc["components"]["schemas"]["Problem"].is_object());
}

#[tokio::test]
async fn metrics_count_by_matched_route_and_show_engine_gauges() {
    let app = app();
    app.put("/v1/dimensions/default/keys/secret-key-1", "v").await;
    app.get("/v1/dimensions/default/keys/secret-key-1").await;
    app.get("/v1/dimensions/default/keys/secret-key-2").await;
    let r = app.get("/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let text = String::from_utf8(r.body.to_vec()).unwrap();
    let route = r#"route="/v1/dimensions/{dim}/keys/{*key}""#;
    assert!(text.contains(&format!(r#"jessy_http_requests_total{{method="GET",{route},status="200"}} 1"#)), "{text}");
    assert!(text.contains(&format!(r#"jessy_http_requests_total{{method="GET",{route},status="404"}} 1"#)), "{text}");
    assert!(
        text.contains(&format!(r#"jessy_http_request_duration_seconds_bucket{{method="PUT",{route},status="204","#)),
        "{text}"
    );
    assert!(!text.contains("secret-key"), "raw paths must not become labels");
    assert!(text.contains(r#"jessy_dimension_keys{dimension="default",dir="D01"} 1"#), "{text}");
    for name in [
        "jessy_dimension_live_bytes",
        "jessy_dimension_disk_bytes",
        "jessy_dimension_layers",
        "jessy_compactions_total",
        "jessy_syncs_total",
        "jessy_recovery_time_seconds",
    ] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
}

#[tokio::test]
async fn snapshot_streams_a_gzip_archive() {
    let app = app();
    app.put("/v1/dimensions/default/keys/k", "v").await;
    let r = app.get("/v1/snapshot").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("application/gzip"));
    assert!(r.header("content-disposition").unwrap().contains(".tar.gz"));
    assert_eq!(&r.body[..2], &[0x1f, 0x8b], "gzip magic");
}

// ---- dimensions -------------------------------------------------------------------------

#[tokio::test]
async fn dimensions_are_created_listed_and_dropped() {
    let app = app();
    let r = app.get("/v1/dimensions").await;
    assert_eq!(r.status, StatusCode::OK);
    let dims = r.json()["dimensions"].as_array().unwrap().clone();
    assert_eq!(dims.len(), 1);
    for field in ["id", "dir", "name", "keys", "live_bytes", "disk_bytes", "layers"] {
        assert!(dims[0].get(field).is_some(), "{field}");
    }
    assert_eq!(dims[0]["name"], "default");
    assert_eq!(dims[0]["dir"], "D01");

    let r = app.put("/v1/dimensions/users", Body::empty()).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.header("location"), Some("/v1/dimensions/users"));
    let dir = r.json()["dir"].as_str().unwrap().to_string();
    assert_eq!(app.put("/v1/dimensions/users", Body::empty()).await.status, StatusCode::OK);
    // ...and by its dir.
    assert_eq!(app.put(&format!("/v1/dimensions/{dir}"), Body::empty()).await.status, StatusCode::OK);
    let names: Vec<_> = app.get("/v1/dimensions").await.json()["dimensions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["default", "users"]);

    assert_eq!(app.put("/v1/dimensions/users/keys/k", "v").await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.delete("/v1/dimensions/users").await.status, StatusCode::NO_CONTENT);
    app.delete("/v1/dimensions/users").await.problem(404, "dimension_not_found");
    app.get("/v1/dimensions/users/keys/k").await.problem(404, "dimension_not_found");
    app.delete("/v1/dimensions/default").await.problem(409, "cannot_drop_default");
    app.delete("/v1/dimensions/D01").await.problem(409, "cannot_drop_default");
}

#[tokio::test]
async fn invalid_dimension_names_are_400() {
    let app = app();
    for bad in [".hidden", "has%20space", "a/b", &"x".repeat(65), "%FF"] {
        let r = app.put(&format!("/v1/dimensions/{bad}"), Body::empty()).await;
        if bad == "a/b" {
            r.problem(404, "not_found"); // no such route: a name has no slash
        } else {
            r.problem(400, "invalid_dimension_name");
        }
    }
    // `D` + digits addresses a dimension by its dir; it cannot be a new name.
    app.put("/v1/dimensions/D42", Body::empty()).await.problem(404, "dimension_not_found");
}

#[tokio::test]
async fn creating_a_dimension_by_a_directory_name_says_to_give_a_name() {
    let app = app();
    for dir in ["D09", "D42", "D100"] {
        let p = app.put(&format!("/v1/dimensions/{dir}"), Body::empty()).await.problem(404, "dimension_not_found");
        let detail = p["detail"].as_str().unwrap();
        // Not "create it first" on a create request: say what D09 is and what to do instead.
        assert!(!detail.contains("create it first"), "{detail}");
        assert!(detail.contains(&format!("{dir:?}")) && detail.contains("directory"), "{detail}");
        assert!(detail.contains("existing dimension") && detail.contains("give it a name"), "{detail}");
    }
    // An existing dimension's directory still answers 200, and writes to a missing one keep
    // the engine's advice.
    assert_eq!(app.put("/v1/dimensions/D01", Body::empty()).await.status, StatusCode::OK);
    let p = app.put("/v1/dimensions/D09/keys/k", "v").await.problem(404, "dimension_not_found");
    assert!(p["detail"].as_str().unwrap().contains("D09"), "{p}");
}

#[tokio::test]
async fn compact_answers_what_it_reclaimed() {
    let app = app();
    for i in 0..50 {
        app.put(&format!("/v1/dimensions/default/keys/k{i}"), vec![b'x'; 1000]).await;
    }
    let r = app.call(Method::POST, "/v1/dimensions/default/compact", Body::empty()).await;
    assert_eq!(r.status, StatusCode::OK);
    let j = r.json();
    assert!(j["bytes_reclaimed"].is_u64() && j["layers_compacted"].is_u64(), "{j}");
    app.call(Method::POST, "/v1/dimensions/nope/compact", Body::empty()).await.problem(404, "dimension_not_found");
}

// ---- keys -------------------------------------------------------------------------------

#[tokio::test]
async fn put_get_head_delete_a_key() {
    let app = app();
    let r = app.put("/v1/dimensions/default/keys/user/42", "hello").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let etag = r.header("etag").unwrap().to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");

    let r = app.get("/v1/dimensions/default/keys/user/42").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(&r.body[..], b"hello");
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(r.header("etag"), Some(etag.as_str()));

    let r = app.call(Method::HEAD, "/v1/dimensions/default/keys/user/42", Body::empty()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.is_empty());
    assert_eq!(r.header("content-length"), Some("5"));
    assert_eq!(r.header("etag"), Some(etag.as_str()));

    // "user/42" is one key, not a path.
    app.get("/v1/dimensions/default/keys/user").await.problem(404, "key_not_found");

    assert_eq!(app.delete("/v1/dimensions/default/keys/user/42").await.status, StatusCode::NO_CONTENT);
    app.get("/v1/dimensions/default/keys/user/42").await.problem(404, "key_not_found");
    let r = app.call(Method::HEAD, "/v1/dimensions/default/keys/user/42", Body::empty()).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Deleting again is still 204.
    assert_eq!(app.delete("/v1/dimensions/default/keys/user/42").await.status, StatusCode::NO_CONTENT);
    app.get("/v1/dimensions/nope/keys/k").await.problem(404, "dimension_not_found");
    app.put("/v1/dimensions/nope/keys/k", "v").await.problem(404, "dimension_not_found");
}

#[tokio::test]
async fn keys_and_values_are_bytes() {
    let app = app();
    let key: Vec<u8> = vec![0x00, 0xFF, b'/', b' ', b'%', b'?', b'#', 0x80];
    let value: Vec<u8> = (0..=255u8).collect();
    let uri = format!("/v1/dimensions/default/keys/{}", enc(&key));
    assert_eq!(app.put(&uri, value.clone()).await.status, StatusCode::NO_CONTENT);
    let r = app.get(&uri).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body.to_vec(), value);
    let r = app.get("/v1/dimensions/default/scan?encoding=base64").await;
    assert_eq!(r.json()["items"][0]["key"], b64(&key));
    assert_eq!(app.put("/v1/dimensions/default/keys/empty-value", Body::empty()).await.status, StatusCode::NO_CONTENT);
    let r = app.get("/v1/dimensions/default/keys/empty-value").await;
    assert_eq!((r.status, r.body.len()), (StatusCode::OK, 0));
}

/// Under `immediate` single-key writes go through the committer's inbox
/// (`Dimension::enqueue_*`), under `none` they append on the event loop: both must answer
/// alike.
fn both_write_paths() -> [App; 2] {
    [app(), app_full(|c| c.durability(Durability::Immediate), |_| {}, Router::new())]
}

/// A read with `If-None-Match` naming the current version is answered from the index: 304
/// without reading the value, which a damaged value shows (any read that sends it reports
/// the damage).
#[tokio::test]
async fn a_read_revalidated_by_its_etag_does_not_read_the_value() {
    let app = app();
    let uri = "/v1/dimensions/default/keys/cached";
    let old = app.put(uri, "first").await.header("etag").unwrap().to_string();
    let current = app.put(uri, "DAMAGE-ME").await.header("etag").unwrap().to_string();
    let region = app.data_dir().join("consciousness/D01/region.mmap");
    let mut bytes = std::fs::read(&region).unwrap();
    let at = bytes.windows(9).position(|w| w == b"DAMAGE-ME").unwrap();
    bytes[at] ^= 0x20;
    std::fs::write(&region, &bytes).unwrap();

    let with = |method: Method, tags: &str| {
        Request::builder().method(method).uri(uri).header("if-none-match", tags).body(Body::empty()).unwrap()
    };
    for method in [Method::GET, Method::HEAD] {
        for tags in [current.clone(), format!("{old}, W/{current}"), "*".to_string()] {
            let r = app.send(with(method.clone(), &tags)).await;
            assert_eq!(r.status, StatusCode::NOT_MODIFIED, "{method} {tags}");
            assert_eq!(r.header("etag"), Some(current.as_str()), "{method} {tags}");
        }
        // Any read that would send the value reports the damage.
        let r = app.send(with(method.clone(), &old)).await;
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{method} with an old tag");
        let r = app.call(method.clone(), uri, Body::empty()).await;
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{method} without a tag");
    }
    app.get(uri).await.problem(500, "corruption");
    // An absent key is 404 whatever the tags.
    let r = app
        .send(
            Request::builder()
                .uri("/v1/dimensions/default/keys/none")
                .header("if-none-match", "*")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    r.problem(404, "key_not_found");
}

#[tokio::test]
async fn conditional_writes() {
    for app in both_write_paths() {
        conditional_writes_on(app).await;
    }
}

async fn conditional_writes_on(app: App) {
    let uri = "/v1/dimensions/default/keys/cas";
    let put_with = |header: &'static str, value: String, body: &'static str| {
        Request::builder().method(Method::PUT).uri(uri).header(header, value).body(Body::from(body)).unwrap()
    };
    // If-None-Match: * creates only.
    let r = app.send(put_with("if-none-match", "*".into(), "v1")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let v1 = r.header("etag").unwrap().to_string();
    let r = app.send(put_with("if-none-match", "*".into(), "again")).await;
    r.problem(412, "condition_failed");
    assert_eq!(r.header("etag"), Some(v1.as_str()), "a 412 tells the current version");

    // If-Match: the current version wins, a stale one fails.
    let r = app.send(put_with("if-match", v1.clone(), "v2")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let v2 = r.header("etag").unwrap().to_string();
    assert_ne!(v1, v2);
    app.send(put_with("if-match", v1.clone(), "v3")).await.problem(412, "condition_failed");
    app.send(put_with("if-match", "\"not-a-version\"".into(), "v3")).await.problem(412, "condition_failed");
    // If-None-Match with ETags: fails when the current version is listed (weak ones too).
    let r = app.send(put_with("if-none-match", format!("{v1}, W/{v2}"), "v3")).await;
    r.problem(412, "condition_failed");
    assert_eq!(r.header("etag"), Some(v2.as_str()));
    app.send(put_with("if-none-match", "42".into(), "v3")).await.problem(400, "malformed");
    assert_eq!(&app.get(uri).await.body[..], b"v2");
    // Only old versions listed: the write goes through, and its new version then fails it.
    let r = app.send(put_with("if-none-match", format!("{v1}, \"x\""), "v2b")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let v2 = r.header("etag").unwrap().to_string();
    app.send(put_with("if-none-match", v2.clone(), "v3")).await.problem(412, "condition_failed");
    assert_eq!(&app.get(uri).await.body[..], b"v2b");

    // GET with the current ETag: 304.
    let req = Request::builder().uri(uri).header("if-none-match", v2.clone()).body(Body::empty()).unwrap();
    let r = app.send(req).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    assert!(r.body.is_empty());

    // Conditional delete.
    let del = |v: String| {
        Request::builder().method(Method::DELETE).uri(uri).header("if-match", v).body(Body::empty()).unwrap()
    };
    app.send(del(v1.clone())).await.problem(412, "condition_failed");
    assert_eq!(app.send(del(v2)).await.status, StatusCode::NO_CONTENT);
    app.get(uri).await.problem(404, "key_not_found");
    // If-Match on an absent key fails.
    app.send(put_with("if-match", "*".into(), "x")).await.problem(412, "condition_failed");

    // An If-Match list holds when it names the current version (RFC 9110 13.1.1).
    let r = app.send(put_with("if-none-match", "*".into(), "v4")).await;
    let v4 = r.header("etag").unwrap().to_string();
    let r = app.send(put_with("if-match", format!("\"1\", {v1}"), "x")).await;
    r.problem(412, "condition_failed");
    assert_eq!(r.header("etag"), Some(v4.as_str()));
    let r = app.send(put_with("if-match", format!("W/{v4}, \"1\", {v4}"), "listed")).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(&app.get(uri).await.body[..], b"listed");

    // A condition is evaluated only for a write that could otherwise succeed: a bad or
    // unknown dimension, or a value too large, is answered as it would be without one.
    let conditional = |method: Method, uri: &str, body: Vec<u8>| {
        Request::builder().method(method).uri(uri).header("if-match", "not-an-etag").body(Body::from(body)).unwrap()
    };
    for method in [Method::PUT, Method::DELETE] {
        for (dim, status, code) in [("%C3%97", 400, "invalid_dimension_name"), ("nope", 404, "dimension_not_found")] {
            let uri = format!("/v1/dimensions/{dim}/keys/cas");
            app.send(conditional(method.clone(), &uri, b"x".to_vec())).await.problem(status, code);
        }
    }
    let huge = vec![0u8; app.config.body_limit() + 1];
    app.send(conditional(Method::PUT, uri, huge)).await.problem(413, "value_too_large");
}

#[tokio::test]
async fn key_and_value_limits() {
    for app in both_write_paths() {
        key_and_value_limits_on(app).await;
    }
}

async fn key_and_value_limits_on(app: App) {
    let long = "k".repeat(jessy_storage::MAX_KEY_LEN + 1);
    app.put(&format!("/v1/dimensions/default/keys/{long}"), "v").await.problem(414, "key_too_large");
    app.get(&format!("/v1/dimensions/default/keys/{long}")).await.problem(414, "key_too_large");
    let longest = "k".repeat(jessy_storage::MAX_KEY_LEN);
    assert_eq!(app.put(&format!("/v1/dimensions/default/keys/{longest}"), "v").await.status, StatusCode::NO_CONTENT);

    app.put("/v1/dimensions/default/keys/", "v").await.problem(400, "empty_key");
    app.get("/v1/dimensions/default/keys/").await.problem(400, "empty_key");
    app.put("/v1/dimensions/default/keys/bad%zz", "v").await.problem(400, "malformed");

    // Larger than a region, within the body limit: the engine refuses it.
    app.put("/v1/dimensions/default/keys/big", vec![0u8; REGION as usize + 1]).await.problem(413, "value_too_large");
    // Larger than the body limit: refused before it is read in full.
    let huge = vec![0u8; app.config.body_limit() + 1];
    app.put("/v1/dimensions/default/keys/huge", huge).await.problem(413, "value_too_large");
    app.get("/v1/dimensions/default/keys/big").await.problem(404, "key_not_found");
}

// ---- scan -------------------------------------------------------------------------------

async fn fill(app: &common::App, keys: impl IntoIterator<Item = String>) {
    let ops: Vec<_> = keys.into_iter().map(|k| json!({"op": "put", "key": k, "value": format!("v-{k}")})).collect();
    let r = app.post_json("/v1/dimensions/default/batch", json!({ "ops": ops })).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
}

fn keys_of(page: &serde_json::Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|i| i["key"].as_str().unwrap().to_string()).collect()
}

/// Walks every page; returns the keys in order.
async fn walk(app: &common::App, query: &str, mut between: impl FnMut(usize) -> Vec<String>) -> Vec<String> {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for page_no in 0.. {
        let uri = match &cursor {
            Some(c) => format!("/v1/dimensions/default/scan?{query}&cursor={c}"),
            None => format!("/v1/dimensions/default/scan?{query}"),
        };
        let r = app.get(&uri).await;
        assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
        let page = r.json();
        seen.extend(keys_of(&page));
        cursor = page["next_cursor"].as_str().map(str::to_string);
        if cursor.is_none() {
            break;
        }
        let writes = between(page_no);
        if !writes.is_empty() {
            fill(app, writes).await;
        }
        assert!(page_no < 1000, "runaway pagination");
    }
    seen
}

#[tokio::test]
async fn scan_by_prefix_range_limit_reverse_and_keys_only() {
    let app = app();
    fill(&app, ["a1", "a2", "a3", "b1", "b2", "c1"].map(String::from)).await;

    let r = app.get("/v1/dimensions/default/scan").await;
    let page = r.json();
    assert_eq!(keys_of(&page), ["a1", "a2", "a3", "b1", "b2", "c1"]);
    assert_eq!(page["items"][0]["value"], "v-a1");
    assert!(page["next_cursor"].is_null());

    assert_eq!(keys_of(&app.get("/v1/dimensions/default/scan?prefix=b").await.json()), ["b1", "b2"]);
    assert_eq!(keys_of(&app.get("/v1/dimensions/default/scan?start=a2&end=b2").await.json()), ["a2", "a3", "b1"]);
    assert_eq!(keys_of(&app.get("/v1/dimensions/default/scan?start=b").await.json()), ["b1", "b2", "c1"]);
    assert_eq!(keys_of(&app.get("/v1/dimensions/default/scan?end=a3").await.json()), ["a1", "a2"]);
    assert_eq!(keys_of(&app.get("/v1/dimensions/default/scan?start=z&end=a").await.json()), Vec::<String>::new());
    assert_eq!(keys_of(&app.get("/v1/dimensions/default/scan?reverse=true&prefix=a").await.json()), ["a3", "a2", "a1"]);

    let page = app.get("/v1/dimensions/default/scan?limit=2").await.json();
    assert_eq!(keys_of(&page), ["a1", "a2"]);
    assert!(page["next_cursor"].is_string());

    let page = app.get("/v1/dimensions/default/scan?keys_only=true&limit=1").await.json();
    assert_eq!(page["items"][0], json!({"key": "a1"}));

    let page = app.get("/v1/dimensions/default/scan?encoding=base64&prefix=c").await.json();
    assert_eq!(page["items"][0], json!({"key": b64(b"c1"), "value": b64(b"v-c1")}));

    let all = walk(&app, "limit=4&reverse=true", |_| vec![]).await;
    assert_eq!(all, ["c1", "b2", "b1", "a3", "a2", "a1"]);
    let all = walk(&app, "limit=1&prefix=a", |_| vec![]).await;
    assert_eq!(all, ["a1", "a2", "a3"]);
}

#[tokio::test]
async fn scan_errors() {
    let app = app();
    for q in ["limit=0", "limit=1001", "limit=ten", "reverse=perhaps", "encoding=hex", "prefix=%zz"] {
        app.get(&format!("/v1/dimensions/default/scan?{q}")).await.problem(400, "malformed");
    }
    app.get("/v1/dimensions/default/scan?cursor=not*a*cursor").await.problem(400, "invalid_cursor");
    app.get("/v1/dimensions/nope/scan").await.problem(404, "dimension_not_found");
    assert_eq!(app.get("/v1/dimensions/default/scan?limit=1000").await.status, StatusCode::OK);

    // Not UTF-8: 422 with utf8, fine with base64.
    app.put("/v1/dimensions/default/keys/%FF", "v").await;
    app.get("/v1/dimensions/default/scan").await.problem(422, "not_utf8");
    assert_eq!(app.get("/v1/dimensions/default/scan?encoding=base64").await.status, StatusCode::OK);
    assert_eq!(app.get("/v1/dimensions/default/scan?keys_only=true&encoding=base64").await.status, StatusCode::OK);
}

#[tokio::test]
async fn pagination_returns_every_key_exactly_once_while_writes_go_on() {
    for reverse in [false, true] {
        let app = app();
        // Even numbers exist from the start; odd ones are written between pages, on both
        // sides of the cursor.
        let initial: Vec<String> = (0..200).step_by(2).map(|i| format!("k{i:04}")).collect();
        fill(&app, initial.clone()).await;
        let query = if reverse { "limit=7&reverse=true" } else { "limit=7" };
        let seen =
            walk(&app, query, |page| (0..3).map(|j| format!("k{:04}", ((page * 37 + j * 61) % 200) | 1)).collect())
                .await;

        let unique: BTreeSet<_> = seen.iter().cloned().collect();
        assert_eq!(unique.len(), seen.len(), "a key came twice: {seen:?}");
        let mut ordered = seen.clone();
        ordered.sort();
        if reverse {
            ordered.reverse();
        }
        assert_eq!(seen, ordered, "pages are in order");
        for k in &initial {
            assert!(unique.contains(k), "{k} was never returned (reverse={reverse})");
        }
    }
}

// ---- batch ------------------------------------------------------------------------------

#[tokio::test]
async fn batch_applies_everything() {
    let app = app();
    app.put("/v1/dimensions/default/keys/gone", "x").await;
    let r = app
        .post_json(
            "/v1/dimensions/default/batch",
            json!({"ops": [
                {"op": "put", "key": "a", "value": "1"},
                {"op": "put", "key": "b", "value": "2"},
                {"op": "delete", "key": "gone"},
            ]}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({"applied": 3}));
    assert_eq!(&app.get("/v1/dimensions/default/keys/b").await.body[..], b"2");
    app.get("/v1/dimensions/default/keys/gone").await.problem(404, "key_not_found");

    let r = app
        .post_json(
            "/v1/dimensions/default/batch",
            json!({"encoding": "base64", "ops": [{"op": "put", "key": b64(&[0xFF, 0]), "value": b64(&[1, 2, 3])}]}),
        )
        .await;
    assert_eq!(r.json(), json!({"applied": 1}));
    assert_eq!(&app.get("/v1/dimensions/default/keys/%FF%00").await.body[..], &[1, 2, 3]);
    let r = app.post_json("/v1/dimensions/default/batch", json!({"ops": []})).await;
    assert_eq!(r.json(), json!({"applied": 0}));
}

#[tokio::test]
async fn a_bad_batch_applies_nothing() {
    let app = app();
    let first = json!({"op": "put", "key": "first", "value": "1"});
    let long_key = "k".repeat(jessy_storage::MAX_KEY_LEN + 1);
    for (body, status, code) in [
        (json!({"ops": [first, {"op": "frobnicate", "key": "x"}]}), 400, "malformed"),
        (json!({"ops": [first, {"op": "put", "key": "x"}]}), 400, "malformed"),
        (json!({"ops": [first], "encoding": "rot13"}), 400, "malformed"),
        (json!({"ops": [first], "extra": true}), 400, "malformed"),
        (json!({"ops": [first, {"op": "put", "key": "", "value": "v"}]}), 400, "empty_key"),
        (json!({"ops": [first, {"op": "delete", "key": long_key}]}), 414, "key_too_large"),
        (
            json!({"encoding": "base64", "ops": [{"op": "put", "key": "Zmlyc3Q=", "value": "!!!"}]}),
            422,
            "invalid_encoding",
        ),
        (
            json!({"ops": [first, {"op": "put", "key": "big", "value": "x".repeat(REGION as usize)}]}),
            413,
            "value_too_large",
        ),
    ] {
        let r = app.post_json("/v1/dimensions/default/batch", body.clone()).await;
        r.problem(status, code);
        app.get("/v1/dimensions/default/keys/first").await.problem(404, "key_not_found");
    }
    let r = app.call(Method::POST, "/v1/dimensions/default/batch", "{not json").await;
    r.problem(400, "malformed");
    app.post_json("/v1/dimensions/nope/batch", json!({"ops": []})).await.problem(404, "dimension_not_found");
}

// ---- a failing disk -------------------------------------------------------------------

#[tokio::test]
async fn disk_full_is_507_and_a_failed_sync_makes_the_store_read_only() {
    use jessy_storage::io::{FaultOp, FaultyIo, Io};
    let faults = FaultyIo::new();
    let io: std::sync::Arc<dyn Io> = std::sync::Arc::new(faults.clone());
    let app = app_full(|c| c.durability(Durability::Immediate).io(io), |_| {}, Router::new());
    assert_eq!(app.put("/v1/dimensions/default/keys/before", "v").await.status, StatusCode::NO_CONTENT);

    faults.fail_nth(FaultOp::Write, 1, libc::ENOSPC, false);
    app.put("/v1/dimensions/default/keys/k", "v").await.problem(507, "disk_full");
    faults.clear_faults();
    assert_eq!(app.put("/v1/dimensions/default/keys/k", "v").await.status, StatusCode::NO_CONTENT, "space is back");

    faults.fail_nth(FaultOp::Sync, 1, libc::EIO, true);
    let r = app.put("/v1/dimensions/default/keys/k2", "v").await;
    assert!(r.status.is_server_error(), "{}", r.status);
    faults.clear_faults();
    app.put("/v1/dimensions/default/keys/k3", "v").await.problem(503, "read_only");
    app.get("/health").await.problem(503, "read_only");
    // Reads still work.
    assert_eq!(&app.get("/v1/dimensions/default/keys/before").await.body[..], b"v");
    let metrics = String::from_utf8(app.get("/metrics").await.body.to_vec()).unwrap();
    assert!(metrics.contains("jessy_store_read_only 1"), "{metrics}");
}

// ---- cross-cutting ----------------------------------------------------------------------

#[tokio::test]
async fn token_guards_v1_only() {
    let app = app_with(|c| c.api_token = Some("s3cret".into()), Router::new());
    let r = app.get("/v1/dimensions").await;
    r.problem(401, "unauthorized");
    assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
    let with =
        |auth: &str, uri: &str| Request::builder().uri(uri).header("authorization", auth).body(Body::empty()).unwrap();
    app.send(with("Bearer wrong", "/v1/dimensions")).await.problem(401, "unauthorized");
    app.send(with("Bearer s3cret-and-more", "/v1/dimensions")).await.problem(401, "unauthorized");
    app.send(with("Basic czNjcmV0", "/v1/dimensions")).await.problem(401, "unauthorized");
    assert_eq!(app.send(with("Bearer s3cret", "/v1/dimensions")).await.status, StatusCode::OK);
    app.get("/v1/snapshot").await.problem(401, "unauthorized");
    app.put("/v1/dimensions/default/keys/k", "v").await.problem(401, "unauthorized");
    for open in ["/health", "/metrics", "/openapi.json"] {
        assert_eq!(app.get(open).await.status, StatusCode::OK, "{open}");
    }
    // Without a token configured, /v1 is open.
    assert_eq!(app_with(|_| {}, Router::new()).get("/v1/dimensions").await.status, StatusCode::OK);
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let app = app();
    let req = Request::builder()
        .uri("/v1/dimensions/default/keys/none")
        .header("x-request-id", "trace-123.abc")
        .body(Body::empty())
        .unwrap();
    let r = app.send(req).await;
    assert_eq!(r.header("x-request-id"), Some("trace-123.abc"));
    assert_eq!(r.problem(404, "key_not_found")["request_id"], "trace-123.abc");

    let req =
        Request::builder().uri("/health").header("x-request-id", "bad id with spaces").body(Body::empty()).unwrap();
    let r = app.send(req).await;
    let id = r.header("x-request-id").unwrap();
    assert_ne!(id, "bad id with spaces");
    assert_eq!(id.len(), 36);
    let a = app.get("/health").await;
    let b = app.get("/health").await;
    assert_ne!(a.header("x-request-id"), b.header("x-request-id"));
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let app = app();
    app.get("/nope").await.problem(404, "not_found");
    app.get("/v1/dimensions/default/unknown").await.problem(404, "not_found");
    app.call(Method::POST, "/health", Body::empty()).await.problem(405, "method_not_allowed");
    app.call(Method::PATCH, "/v1/dimensions/default/keys/k", Body::empty()).await.problem(405, "method_not_allowed");
}

#[tokio::test]
async fn a_panicking_handler_is_a_500_problem_not_a_dead_server() {
    async fn boom() -> &'static str {
        panic!("deliberate test panic")
    }
    let extra = Router::new().route("/boom", get(boom));
    let app = app_with(|_| {}, extra);
    let r = app.get("/boom").await;
    let p = r.problem(500, "internal");
    assert!(!p["detail"].as_str().unwrap().contains("deliberate"), "panic text is logged, not sent");
    assert_eq!(app.get("/health").await.status, StatusCode::OK);
    let metrics = String::from_utf8(app.get("/metrics").await.body.to_vec()).unwrap();
    assert!(metrics.contains(r#"route="/boom",status="500""#), "{metrics}");
}

#[tokio::test]
async fn no_error_is_a_200() {
    // A sample of bad requests: each answers 4xx with a problem body, none 2xx or 5xx.
    let app = app();
    for (method, uri) in [
        (Method::GET, "/v1/dimensions/%FF/keys/k"),
        (Method::GET, "/v1/dimensions/default/keys/%"),
        (Method::PUT, "/v1/dimensions/..."),
        (Method::GET, "/v1/dimensions/default/scan?limit=-1"),
        (Method::POST, "/v1/dimensions/default/batch"),
        (Method::DELETE, "/v1/dimensions/D99"),
    ] {
        let r = app.call(method.clone(), uri, Body::empty()).await;
        assert!(r.status.is_client_error(), "{method} {uri}: {}", r.status);
        assert_eq!(r.header("content-type"), Some("application/problem+json"), "{method} {uri}");
    }
}

// ---- conditions: repeated lines, both headers, order against the size limit -------------

/// A request with each `(name, value)` as its own header line, in order.
fn with_lines(method: Method, uri: &str, lines: &[(&str, String)], body: impl Into<Body>) -> Request<Body> {
    let mut req = Request::builder().method(method).uri(uri);
    for (name, value) in lines {
        req = req.header(*name, value.as_str());
    }
    req.body(body.into()).unwrap()
}

/// Writes `v` to `uri` three times (the versions of a fresh store start at 1, so that `"1"`
/// and `"2"` are old ones), and returns the last `ETag`.
async fn put_thrice(app: &App, uri: &str) -> String {
    let mut etag = String::new();
    for _ in 0..3 {
        etag = app.put(uri, "v").await.header("etag").unwrap().to_string();
    }
    assert!(etag.trim_matches('"').parse::<u64>().unwrap() >= 3, "{etag}");
    etag
}

/// Repeated `If-Match` / `If-None-Match` lines are one comma-separated list (RFC 9110 5.3):
/// they answer as the same list on one line would.
#[tokio::test]
async fn repeated_condition_lines_are_one_list() {
    for app in both_write_paths() {
        let uri = "/v1/dimensions/default/keys/lines";
        let cur = put_thrice(&app, uri).await; // so that "1" is an old version
        let lines =
            |name: &'static str, values: [&str; 2]| [(name, values[0].to_string()), (name, values[1].to_string())];

        // If-None-Match naming the current version on the second line: 412, nothing written.
        let r = app.send(with_lines(Method::PUT, uri, &lines("if-none-match", ["\"1\"", &cur]), "x")).await;
        r.problem(412, "condition_failed");
        assert_eq!(r.header("etag"), Some(cur.as_str()));
        let r = app.send(with_lines(Method::DELETE, uri, &lines("if-none-match", ["\"1\"", &cur]), "")).await;
        r.problem(412, "condition_failed");
        assert_eq!(&app.get(uri).await.body[..], b"v");

        // If-Match naming the current version on the second line: the write happens.
        let r = app.send(with_lines(Method::PUT, uri, &lines("if-match", ["\"1\"", &cur]), "y")).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", String::from_utf8_lossy(&r.body));
        let cur = r.header("etag").unwrap().to_string();
        assert_eq!(&app.get(uri).await.body[..], b"y");
        // `*` on one line and a tag on another is `*` inside a list: 400, as on one line.
        app.send(with_lines(Method::PUT, uri, &lines("if-none-match", ["*", "\"1\""]), "z"))
            .await
            .problem(400, "malformed");

        // Reads: 304 when any line names the current version.
        for method in [Method::GET, Method::HEAD] {
            let r = app.send(with_lines(method.clone(), uri, &lines("if-none-match", ["\"1\"", &cur]), "")).await;
            assert_eq!(r.status, StatusCode::NOT_MODIFIED, "{method}");
            assert_eq!(r.header("etag"), Some(cur.as_str()), "{method}");
        }
        let r = app.send(with_lines(Method::DELETE, uri, &lines("if-match", ["\"1\"", &cur]), "")).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        app.get(uri).await.problem(404, "key_not_found");
    }
}

/// Both headers on a write: `If-Match` is evaluated first and, if it holds, `If-None-Match`
/// (RFC 9110 13.2.2); the write happens only if both hold.
#[tokio::test]
async fn a_write_with_both_conditions_needs_both() {
    for app in both_write_paths() {
        let uri = "/v1/dimensions/default/keys/both";
        let cur = put_thrice(&app, uri).await;
        let both = |if_match: &str, if_none_match: &str| {
            [("if-match", if_match.to_string()), ("if-none-match", if_none_match.to_string())]
        };
        for (if_match, if_none_match) in [
            (cur.as_str(), cur.as_str()),
            ("*", "*"),
            ("*", cur.as_str()),
            (cur.as_str(), "*"),
            ("\"1\", W/\"2\"", "\"3\""), // If-Match fails first
        ] {
            for method in [Method::PUT, Method::DELETE] {
                let r = app.send(with_lines(method.clone(), uri, &both(if_match, if_none_match), "x")).await;
                r.problem(412, "condition_failed");
                assert_eq!(r.header("etag"), Some(cur.as_str()), "{method} {if_match} / {if_none_match}");
            }
        }
        assert_eq!(&app.get(uri).await.body[..], b"v", "nothing was written");
        // A malformed If-None-Match is 400 even next to an If-Match that holds.
        app.send(with_lines(Method::PUT, uri, &both(&cur, "42"), "x")).await.problem(400, "malformed");

        // Both hold: the write happens.
        let mut cur = cur;
        for round in 0..3 {
            let newer = format!("\"{}\"", cur.trim_matches('"').parse::<u64>().unwrap() + 1);
            let (if_match, if_none_match) = match round {
                0 => (cur.clone(), format!("\"1\", W/{newer}")),
                1 => ("*".to_string(), "W/\"1\"".to_string()),
                _ => (format!("\"1\", {cur}"), "\"1\"".to_string()),
            };
            let r = app.send(with_lines(Method::PUT, uri, &both(&if_match, &if_none_match), "w")).await;
            let body = String::from_utf8_lossy(&r.body);
            assert_eq!(r.status, StatusCode::NO_CONTENT, "{if_match} / {if_none_match}: {body}");
            cur = r.header("etag").unwrap().to_string();
        }
        // If-Match on an absent key fails before If-None-Match: * is looked at.
        let r = app.send(with_lines(Method::PUT, "/v1/dimensions/default/keys/none", &both("*", "*"), "x")).await;
        r.problem(412, "condition_failed");
        app.get("/v1/dimensions/default/keys/none").await.problem(404, "key_not_found");
    }
}

/// A value too large for a region is 413 whatever condition comes with it: the condition is
/// only evaluated for a write that could otherwise succeed (RFC 9110 13.2.1). Both just
/// over the region size and just over what a record may hold (a few bytes less).
#[tokio::test]
async fn a_value_too_large_is_413_whatever_the_condition() {
    for app in both_write_paths() {
        let uri = "/v1/dimensions/default/keys/big";
        let cur = app.put(uri, "v").await.header("etag").unwrap().to_string();
        let conditions: Vec<Vec<(&str, String)>> = vec![
            vec![("if-match", "\"1\", \"2\"".into())],
            vec![("if-match", "W/\"1\"".into())],
            vec![("if-match", format!("W/{cur}"))],
            vec![("if-match", "\"1\"".into())],
            vec![("if-match", "*".into())],
            vec![("if-match", format!("\"1\", {cur}"))],
            vec![("if-none-match", cur.clone())],
            vec![("if-none-match", format!("\"1\", W/{cur}"))],
            vec![("if-none-match", "*".into())],
            vec![("if-none-match", "\"1\"".into())],
            vec![("if-match", cur.clone()), ("if-none-match", cur.clone())],
            vec![("if-match", "*".into()), ("if-none-match", "*".into())],
            vec![("if-none-match", "\"1\"".into()), ("if-none-match", cur.clone())],
        ];
        for size in [REGION as usize + 1000, REGION as usize - 8] {
            assert!(size < app.config.body_limit());
            for lines in &conditions {
                let r = app.send(with_lines(Method::PUT, uri, lines, vec![b'x'; size])).await;
                let p = r.problem(413, "value_too_large");
                assert!(p["detail"].as_str().unwrap().contains(&format!("{size} bytes")), "{size} {lines:?}: {p}");
            }
        }
        assert_eq!(&app.get(uri).await.body[..], b"v");
    }
}

/// The size error gives exact byte counts: rounded to a tenth of a MiB, the value and the
/// limit read the same.
#[tokio::test]
async fn the_size_error_gives_exact_bytes() {
    let app = app_full(|c| c.max_size(10 << 20), |_| {}, Router::new());
    let r = app.put("/v1/dimensions/default/keys/ten", vec![0u8; 10 << 20]).await;
    let p = r.problem(413, "value_too_large");
    let detail = p["detail"].as_str().unwrap();
    assert!(detail.contains("10485760 bytes"), "{detail}");
    assert!(!detail.contains("10.0 MiB"), "{detail}");
    assert!(detail.contains("MMAP_MAX_SIZE"), "{detail}");
}

// ---- auth on unknown paths, 304 framing, HEAD, OpenAPI ------------------------------------

/// Every `/v1` request needs the token, known path or not: without it an unknown `/v1` path
/// is 401 like a known one, so a client without the token cannot map the API; with it, 404.
#[tokio::test]
async fn unknown_v1_paths_need_the_token() {
    let app = app_with(|c| c.api_token = Some("s3cret".into()), Router::new());
    let with = |auth: Option<&str>, method: Method, uri: &str| {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        req.body(Body::empty()).unwrap()
    };
    for uri in ["/v1", "/v1/", "/v1/nothing", "/v1/dimensions/default/unknown", "/v1/snapshot/x", "/v1/dimensions/"] {
        for auth in [None, Some("Bearer wrong")] {
            let r = app.send(with(auth, Method::GET, uri)).await;
            r.problem(401, "unauthorized");
            assert!(r.header("www-authenticate").is_some_and(|v| v.starts_with("Bearer")), "{uri}");
        }
        app.send(with(Some("Bearer s3cret"), Method::GET, uri)).await.problem(404, "not_found");
    }
    // A known /v1 path with a method it does not take: 401 without the token, 405 with it.
    for uri in ["/v1/dimensions/default/keys/k", "/v1/dimensions", "/v1/snapshot"] {
        app.send(with(None, Method::PATCH, uri)).await.problem(401, "unauthorized");
        app.send(with(Some("Bearer s3cret"), Method::PATCH, uri)).await.problem(405, "method_not_allowed");
    }
    // Outside /v1 nothing changes.
    for uri in ["/v1x", "/nothing", "/v2/dimensions"] {
        app.send(with(None, Method::GET, uri)).await.problem(404, "not_found");
    }
    // Without a token configured, unknown /v1 paths are plain 404s.
    app_with(|_| {}, Router::new()).get("/v1/nothing").await.problem(404, "not_found");
}

/// A 304 carries no `Content-Length` (RFC 9110 8.6: it could only repeat the 200's), on
/// `HEAD` as on `GET`.
#[tokio::test]
async fn a_304_has_no_content_length() {
    let app = app();
    let uri = "/v1/dimensions/default/keys/k";
    let etag = app.put(uri, vec![7u8; 5000]).await.header("etag").unwrap().to_string();
    for method in [Method::GET, Method::HEAD] {
        let r = app.send(with_lines(method.clone(), uri, &[("if-none-match", etag.clone())], "")).await;
        assert_eq!(r.status, StatusCode::NOT_MODIFIED, "{method}");
        assert_eq!(r.header("content-length"), None, "{method}: {:?}", r.headers);
        assert_eq!(r.header("etag"), Some(etag.as_str()));
        assert!(r.body.is_empty());
    }
    let r = app.call(Method::HEAD, uri, Body::empty()).await;
    assert_eq!(r.header("content-length"), Some("5000"));
}

/// `If-Match` that can never hold (weak tags only) fails with the current `ETag`, as every
/// other 412 on a key that has a value does.
#[tokio::test]
async fn every_412_on_a_key_with_a_value_carries_its_etag() {
    for app in both_write_paths() {
        let uri = "/v1/dimensions/default/keys/tagged";
        let cur = app.put(uri, "v").await.header("etag").unwrap().to_string();
        for if_match in [format!("W/{cur}"), "\"x\"".to_string(), "W/\"1\", W/\"2\"".to_string()] {
            for method in [Method::PUT, Method::DELETE] {
                let r = app.send(with_lines(method.clone(), uri, &[("if-match", if_match.clone())], "x")).await;
                r.problem(412, "condition_failed");
                assert_eq!(r.header("etag"), Some(cur.as_str()), "{method} If-Match: {if_match}");
            }
        }
        // On a key without a value there is no ETag to send.
        let r = app
            .send(with_lines(Method::PUT, "/v1/dimensions/default/keys/none", &[("if-match", "W/\"1\"".into())], "x"))
            .await;
        r.problem(412, "condition_failed");
        assert_eq!(r.header("etag"), None);
    }
}

/// `HEAD /v1/snapshot` answers the headers a `GET` would, without taking a backup: with the
/// disk failing, it is still 200, and the fault is left for the `GET` that meets it.
#[tokio::test]
async fn head_snapshot_does_not_take_a_backup() {
    use jessy_storage::io::{FaultOp, FaultyIo, Io};
    let faults = FaultyIo::new();
    let io: std::sync::Arc<dyn Io> = std::sync::Arc::new(faults.clone());
    let app = app_full(|c| c.io(io), |_| {}, Router::new());
    app.put("/v1/dimensions/default/keys/k", "v").await;
    faults.fail_nth(FaultOp::Other, 1, libc::ENOSPC, false);
    let r = app.call(Method::HEAD, "/v1/snapshot", Body::empty()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("application/gzip"));
    assert!(r.header("content-disposition").unwrap().contains(".tar.gz"));
    assert_eq!(r.header("content-length"), None, "the GET streams: its length is not known");
    assert!(r.body.is_empty());
    app.get("/v1/snapshot").await.problem(507, "disk_full");
    faults.clear_faults();
    assert_eq!(app.get("/v1/snapshot").await.status, StatusCode::OK);
    // Guarded like the GET.
    let guarded = app_with(|c| c.api_token = Some("s3cret".into()), Router::new());
    guarded.call(Method::HEAD, "/v1/snapshot", Body::empty()).await.problem(401, "unauthorized");
}

/// The document describes what the handlers do: `If-None-Match` on `HEAD` of a key,
/// `HEAD /v1/snapshot`.
#[tokio::test]
async fn openapi_describes_head_requests() {
    let doc = app().get("/openapi.json").await.json();
    let key = &doc["paths"]["/v1/dimensions/{dim}/keys/{key}"];
    for method in ["get", "head"] {
        let params = key[method]["parameters"].as_array().unwrap();
        assert!(params.iter().any(|p| p["name"] == "If-None-Match" && p["in"] == "header"), "{method}: {params:?}");
        assert!(key[method]["responses"]["304"].is_object(), "{method}");
    }
    let head = &doc["paths"]["/v1/snapshot"]["head"];
    assert!(head["responses"]["200"].is_object(), "{head}");
    // Every 412 names the ETag header it carries.
    for method in ["put", "delete"] {
        let failed = &key[method]["responses"]["412"];
        assert!(failed["headers"]["ETag"].is_object(), "{method}: {failed}");
    }
}

/// `reverse` and `keys_only` take true/false/1/0; anything else, the empty value too, is 400.
/// The query string must be well encoded even where unknown parameters are: a bad `%` is
/// 400, while a well-formed unknown parameter is ignored.
#[tokio::test]
async fn scan_flags_and_unknown_parameters() {
    let app = app();
    app.put("/v1/dimensions/default/keys/a", "1").await;
    for q in ["reverse=", "keys_only=", "reverse", "keys_only", "reverse=yes", "%zz=1", "x=%zz", "x=%4"] {
        app.get(&format!("/v1/dimensions/default/scan?{q}")).await.problem(400, "malformed");
    }
    for q in ["reverse=1", "reverse=0", "keys_only=true", "keys_only=false", "unknown=1", "unknown", "utm_source=x%20y"]
    {
        assert_eq!(app.get(&format!("/v1/dimensions/default/scan?{q}")).await.status, StatusCode::OK, "{q}");
    }
}
