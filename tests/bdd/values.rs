//! Steps that write and read single keys, and check the answers.

use cucumber::{then, when};
use reqwest::Method;

use super::world::{hex, parse_hex, JessyWorld};

fn all_bytes() -> Vec<u8> {
    (0..=255).collect()
}

async fn put(w: &mut JessyWorld, key: &[u8], value: &[u8]) {
    let url = w.key_url("default", key);
    w.send(Method::PUT, url, Some(value.to_vec())).await;
    w.note_write("default", key, Some(value));
}

async fn get(w: &mut JessyWorld, key: &[u8]) {
    let url = w.key_url("default", key);
    w.send(Method::GET, url, None).await;
}

#[when(expr = "I put {string} under the key {string}")]
async fn i_put(w: &mut JessyWorld, value: String, key: String) {
    put(w, key.as_bytes(), value.as_bytes()).await;
}

#[when(expr = "I put the bytes {string} under the key {string}")]
async fn i_put_bytes(w: &mut JessyWorld, value: String, key: String) {
    put(w, key.as_bytes(), &parse_hex(&value)).await;
}

#[when(expr = "I put every byte value from 00 to ff under the key with the bytes {string}")]
async fn i_put_all_bytes_under_a_binary_key(w: &mut JessyWorld, key: String) {
    put(w, &parse_hex(&key), &all_bytes()).await;
}

#[when(expr = "I get the key {string}")]
async fn i_get(w: &mut JessyWorld, key: String) {
    get(w, key.as_bytes()).await;
}

#[when(expr = "I get the key with the bytes {string}")]
async fn i_get_binary(w: &mut JessyWorld, key: String) {
    get(w, &parse_hex(&key)).await;
}

#[when(expr = "I get the key {string} from jessy-core directly")]
async fn i_get_from_core(w: &mut JessyWorld, key: String) {
    let url = w.core_url(&format!("/v1/dimensions/default/keys/{}", super::world::encode_key(key.as_bytes())));
    w.send(Method::GET, url, None).await;
}

#[when(expr = "I delete the key {string}")]
async fn i_delete(w: &mut JessyWorld, key: String) {
    let url = w.key_url("default", key.as_bytes());
    w.send(Method::DELETE, url, None).await;
    w.note_write("default", key.as_bytes(), None);
}

#[when("I ask the gateway for its health")]
async fn i_ask_for_health(w: &mut JessyWorld) {
    let url = w.gateway_url("/api/health");
    w.send(Method::GET, url, None).await;
}

#[then(expr = "the answer is {int}")]
async fn the_answer_is(w: &mut JessyWorld, status: u16) {
    let reply = w.last();
    assert_eq!(reply.status, status, "expected {status}, got:\n{reply}");
}

#[then(expr = "the answer is {int} with an ETag")]
async fn the_answer_has_an_etag(w: &mut JessyWorld, status: u16) {
    let reply = w.last();
    assert_eq!(reply.status, status, "expected {status}, got:\n{reply}");
    let etag = reply.header("etag").unwrap_or_else(|| panic!("no ETag in the answer:\n{reply}"));
    assert!(
        etag.len() > 2 && etag.starts_with('"') && etag.ends_with('"'),
        "the ETag is not a strong \"<version>\" tag: {etag:?}"
    );
}

/// RFC 9457 problem details, with the fields both services promise.
#[then(expr = "the answer is {int} with the problem code {string}")]
async fn the_answer_is_a_problem(w: &mut JessyWorld, status: u16, code: String) {
    let reply = w.last();
    assert_eq!(reply.status, status, "expected {status} {code}, got:\n{reply}");
    let content_type = reply.header("content-type").unwrap_or_default();
    assert!(content_type.starts_with("application/problem+json"), "not a problem+json answer:\n{reply}");
    let problem = reply.json();
    assert_eq!(problem["code"], code.as_str(), "problem code:\n{reply}");
    assert_eq!(problem["status"], status, "problem status:\n{reply}");
    assert_eq!(problem["type"], format!("urn:jessy:error:{code}").as_str(), "problem type:\n{reply}");
    for field in ["title", "detail"] {
        assert!(problem[field].as_str().is_some_and(|s| !s.is_empty()), "problem without a {field}:\n{reply}");
    }
    let request_id = reply.header("x-request-id").unwrap_or_else(|| panic!("no X-Request-Id:\n{reply}"));
    assert_eq!(problem["request_id"], request_id, "the problem's request_id is not the X-Request-Id:\n{reply}");
}

#[then(expr = "the value is {string}")]
async fn the_value_is(w: &mut JessyWorld, value: String) {
    check_value(w, value.as_bytes());
}

#[then(expr = "the value is the bytes {string}")]
async fn the_value_is_bytes(w: &mut JessyWorld, value: String) {
    check_value(w, &parse_hex(&value));
}

#[then("the value is every byte value from 00 to ff")]
async fn the_value_is_all_bytes(w: &mut JessyWorld) {
    check_value(w, &all_bytes());
}

fn check_value(w: &JessyWorld, expected: &[u8]) {
    let reply = w.last();
    assert_eq!(reply.status, 200, "expected the value, got:\n{reply}");
    assert_eq!(reply.header("content-type"), Some("application/octet-stream"), "content type:\n{reply}");
    assert!(
        reply.body == expected,
        "the value differs\n  expected: {}\n  got:      {}",
        hex(expected),
        hex(&reply.body)
    );
}

#[then("the ETag is the one my put returned")]
async fn the_etag_is_the_put_one(w: &mut JessyWorld) {
    let put = w.put_etags.last().expect("no put has returned an ETag in this scenario");
    let reply = w.last();
    assert_eq!(reply.header("etag"), Some(put.as_str()), "the GET's ETag is not the put's:\n{reply}");
}

#[then("each put returned a different ETag")]
async fn each_put_a_new_etag(w: &mut JessyWorld) {
    let etags = &w.put_etags;
    assert!(etags.len() >= 2, "fewer than two puts returned an ETag: {etags:?}");
    let distinct: std::collections::BTreeSet<_> = etags.iter().collect();
    assert_eq!(distinct.len(), etags.len(), "an ETag came twice: {etags:?}");
}

#[then("the gateway says it is healthy")]
async fn the_gateway_is_healthy(w: &mut JessyWorld) {
    let reply = w.last();
    let json = reply.json();
    assert!(json["status"] == "ok" && json["core"] == "ok", "not healthy:\n{reply}");
}

#[then("the answer asks for a bearer token")]
async fn asks_for_a_bearer_token(w: &mut JessyWorld) {
    let reply = w.last();
    let challenge = reply.header("www-authenticate").unwrap_or_else(|| panic!("no WWW-Authenticate:\n{reply}"));
    assert_eq!(challenge, r#"Bearer realm="jessy""#, "challenge:\n{reply}");
}

#[then("the answer says the token is invalid")]
async fn says_the_token_is_invalid(w: &mut JessyWorld) {
    let reply = w.last();
    let challenge = reply.header("www-authenticate").unwrap_or_else(|| panic!("no WWW-Authenticate:\n{reply}"));
    assert!(challenge.starts_with("Bearer ") && challenge.contains(r#"error="invalid_token""#), "challenge:\n{reply}");
}

/// jessy-core logs every request it handles with its request id. A refused request's id must
/// not be there. To be sure jessy-core's log has caught up, an allowed request with a known id
/// goes through the gateway first and is waited for.
#[then("the refusal came from the gateway, not from jessy-core")]
async fn refused_by_the_gateway(w: &mut JessyWorld) {
    let refused = w.last().header("x-request-id").expect("the refusal has an X-Request-Id").to_string();
    static MARKERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = MARKERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let marker = format!("bdd-marker-{}-{n}", std::process::id());
    let url = w.gateway_url("/api/v1/dimensions");
    let reply = w.request(Method::GET, url, None, w.token.as_deref(), &[("X-Request-Id", &marker)]).await;
    assert_eq!(reply.status, 200, "the request with the token was not served:\n{reply}");
    let core = w.core.as_ref().expect("jessy-core is running");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !core.log.contains(&marker) {
        assert!(std::time::Instant::now() < deadline, "jessy-core never logged the request {marker}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(
        !core.log.contains(&refused),
        "jessy-core handled the refused request {refused}; its log:\n{}",
        core.log.tail(20)
    );
}
