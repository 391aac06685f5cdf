//! Steps that start, stop and restart the services, choose credentials, and put data in place.

use cucumber::{given, then, when};

use super::world::{key_range, Credentials, JessyWorld};

#[given("a running Jessy with the gateway in front")]
async fn a_running_jessy(w: &mut JessyWorld) {
    w.start_core().await;
    w.start_gateway().await;
}

#[given(expr = "a running Jessy with the gateway in front, both requiring the token {string}")]
async fn a_running_jessy_with_a_token(w: &mut JessyWorld, token: String) {
    w.token = Some(token);
    w.start_core().await;
    w.start_gateway().await;
}

#[when("I stop Jessy")]
async fn i_stop_jessy(w: &mut JessyWorld) {
    w.stop_core().await;
}

#[when("I start Jessy again")]
async fn i_start_jessy_again(w: &mut JessyWorld) {
    w.start_core().await;
}

#[given("I send no token")]
async fn i_send_no_token(w: &mut JessyWorld) {
    w.credentials = Credentials::Nothing;
}

#[given(expr = "I send the token {string}")]
async fn i_send_the_token(w: &mut JessyWorld, token: String) {
    w.credentials = Credentials::Token(token);
}

#[given(expr = "the key {string} holds {string}")]
async fn the_key_holds(w: &mut JessyWorld, key: String, value: String) {
    w.store("default", key.as_bytes(), value.as_bytes()).await;
}

#[given(expr = "the keys {string} to {string} are stored")]
async fn the_keys_are_stored(w: &mut JessyWorld, first: String, last: String) {
    for key in key_range(&first, &last) {
        let value = format!("value of {key}");
        w.store("default", key.as_bytes(), value.as_bytes()).await;
    }
}

#[given(expr = "a dimension {string} with the keys {string} to {string}")]
async fn a_dimension_with_keys(w: &mut JessyWorld, dim: String, first: String, last: String) {
    w.create_dimension(&dim).await;
    for key in key_range(&first, &last) {
        let value = format!("{dim}: value of {key}");
        w.store(&dim, key.as_bytes(), value.as_bytes()).await;
    }
}

/// Polls `/api/health` (no token needed) until jessy-core's state is `state`, for up to 10 s:
/// the gateway checks jessy-core on every call, so this follows a stop or a start at once.
#[then(expr = "the gateway reports jessy-core as {string}")]
async fn the_gateway_reports(w: &mut JessyWorld, state: String) {
    let (status, overall) = if state == "ok" { (200, "ok") } else { (503, "degraded") };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let reply = w.request(reqwest::Method::GET, w.gateway_url("/api/health"), None, None, &[]).await;
        let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap_or_default();
        let done = reply.status == status && json["status"] == overall && json["core"] == state.as_str();
        let expired = std::time::Instant::now() > deadline;
        if done || expired {
            w.last = Some(reply);
            assert!(
                done,
                "expected /api/health to be {status} with status {overall:?} and core {state:?} within 10 s; \
                 the last answer:\n{}",
                w.last()
            );
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
