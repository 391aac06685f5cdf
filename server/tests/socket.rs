//! jessy-core on a real socket (127.0.0.1:0) with a real HTTP client: what only a
//! connection shows (HEAD framing, streaming, header-read timeout, graceful shutdown,
//! the concurrency cap).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use jessy_server::{AppState, ServerConfig};
use jessy_storage::Store;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Running {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Signals shutdown and waits for `serve` to return.
    async fn stop(mut self) -> Duration {
        let started = Instant::now();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.server)
            .await
            .expect("serve returns after shutdown")
            .expect("serve task")
            .expect("serve result");
        started.elapsed()
    }
}

async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_millis(400)).await;
    "slow done"
}

/// jessy-core as `jessy serve` runs it (its own routes only, so requests to keys take the
/// fast path past the router).
async fn start(tweak: impl FnOnce(&mut ServerConfig)) -> Running {
    start_with(Router::new(), tweak).await
}

/// jessy-core with an extra route, `GET /slow`, that takes 400 ms to answer.
async fn start_slow(tweak: impl FnOnce(&mut ServerConfig)) -> Running {
    start_with(Router::new().route("/slow", get(slow)), tweak).await
}

async fn start_with(extra: Router<AppState>, tweak: impl FnOnce(&mut ServerConfig)) -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = common::storage_config(dir.path());
    let store = Store::open_with(dir.path(), storage.clone()).expect("open");
    let mut config = ServerConfig { storage, ..ServerConfig::default() };
    tweak(&mut config);
    let app = jessy_server::router_with(AppState::new(store, config.clone()), extra);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        jessy_server::serve(listener, app, &config, async {
            let _ = rx.await;
        })
        .await
    });
    Running { addr, stop: Some(tx), server, _dir: dir }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client")
}

#[tokio::test]
async fn round_trip_over_http() {
    let s = start(|_| {}).await;
    let c = client();
    let r = c.put(s.url("/v1/dimensions/default/keys/a/b%00")).body("value!").send().await.unwrap();
    assert_eq!(r.status(), 204);
    let etag = r.headers()["etag"].to_str().unwrap().to_string();

    let r = c.get(s.url("/v1/dimensions/default/keys/a/b%00")).header("x-request-id", "sock-1").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "sock-1");
    assert_eq!(r.headers()["etag"].to_str().unwrap(), etag);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"value!");

    let r = c.head(s.url("/v1/dimensions/default/keys/a/b%00")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "6");
    assert_eq!(r.bytes().await.unwrap().len(), 0);

    let r = c.get(s.url("/v1/dimensions/default/keys/missing")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let p: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(p["code"], "key_not_found");

    let r = c.get(s.url("/v1/snapshot")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let archive = r.bytes().await.unwrap();
    assert_eq!(&archive[..2], &[0x1f, 0x8b]);
    s.stop().await;
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    let s = start(|c| c.header_read_timeout = Duration::from_millis(300)).await;
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    conn.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").await.unwrap(); // never finished
    let started = Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the server closed the connection");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    // A well-behaved client on another connection is still served.
    assert_eq!(client().get(s.url("/health")).send().await.unwrap().status(), 200);
    s.stop().await;
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests() {
    let s = start_slow(|_| {}).await;
    let url = s.url("/slow");
    let in_flight = tokio::spawn(async move { client().get(url).send().await?.text().await });
    tokio::time::sleep(Duration::from_millis(100)).await; // the request is being handled
    let took = s.stop().await;
    let body = in_flight.await.unwrap().expect("the in-flight request was answered");
    assert_eq!(body, "slow done");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[tokio::test]
async fn shutdown_does_not_wait_forever() {
    let s = start(|c| {
        c.shutdown_grace = Duration::from_millis(100);
        c.request_timeout = Duration::from_secs(60);
    })
    .await;
    // An idle keep-alive connection must not hold shutdown up.
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    conn.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 512];
    let n = conn.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let took = s.stop().await;
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[tokio::test]
async fn the_concurrency_cap_queues_requests() {
    let s = start_slow(|c| c.max_concurrency = 1).await;
    let started = Instant::now();
    let (a, b) = tokio::join!(client().get(s.url("/slow")).send(), client().get(s.url("/slow")).send());
    assert_eq!((a.unwrap().status().as_u16(), b.unwrap().status().as_u16()), (200, 200));
    assert!(started.elapsed() >= Duration::from_millis(790), "ran one at a time: {:?}", started.elapsed());
    s.stop().await;
}

#[tokio::test]
async fn request_timeout_answers_408() {
    let s = start_slow(|c| c.request_timeout = Duration::from_millis(100)).await;
    let r = client().get(s.url("/slow")).send().await.unwrap();
    assert_eq!(r.status(), 408);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let p: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(p["code"], "request_timeout");
    s.stop().await;
}

/// A `PUT` of a key (the fast path, past the router) whose body stops coming is answered 408
/// too, and stores nothing.
#[tokio::test]
async fn a_stalled_put_body_answers_408() {
    let s = start(|c| c.request_timeout = Duration::from_millis(200)).await;
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    let head = "PUT /v1/dimensions/default/keys/stalled HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhalf";
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&answer).contains("request_timeout") {
        let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf)).await.expect("answered").unwrap();
        assert!(n > 0, "closed without an answer: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408"), "{}", String::from_utf8_lossy(&answer));
    let r = client().get(s.url("/v1/dimensions/default/keys/stalled")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    s.stop().await;
}

/// The head of the answer to `request`, sent on a fresh connection, lower-cased.
async fn raw_head(s: &Running, request: &str) -> String {
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut buf)).await.expect("answered").unwrap();
    let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    text.split("\r\n\r\n").next().unwrap_or_default().to_string()
}

/// On the wire, a 304 (to `HEAD` as to `GET`) and a 204 carry no `Content-Length`: RFC 9110
/// 8.6 forbids it on a 204, and on a 304 it could only repeat the 200's (a `HEAD`'s 304 used
/// to say `content-length: 0`).
#[tokio::test]
async fn no_content_length_on_304_and_204() {
    let s = start(|_| {}).await;
    let c = client();
    let uri = "/v1/dimensions/default/keys/big";
    let r = c.put(s.url(uri)).body(vec![1u8; 50_000]).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    for method in ["HEAD", "GET"] {
        let head = raw_head(
            &s,
            &format!("{method} {uri} HTTP/1.1\r\nhost: x\r\nif-none-match: {etag}\r\nconnection: close\r\n\r\n"),
        )
        .await;
        assert!(head.starts_with("http/1.1 304"), "{method}: {head}");
        assert!(!head.contains("content-length"), "{method}: {head}");
    }
    let head = raw_head(&s, &format!("HEAD {uri} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")).await;
    assert!(head.contains("content-length: 50000"), "{head}");
    let head =
        raw_head(&s, &format!("PUT {uri} HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\nconnection: close\r\n\r\nv"))
            .await;
    assert!(head.starts_with("http/1.1 204"), "{head}");
    assert!(!head.contains("content-length"), "{head}");
    s.stop().await;
}
