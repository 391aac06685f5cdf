//! The smallest axum service: every GET under `/v1/dimensions/default/keys/` answers the same
//! 150-byte body from memory. It is the ceiling for jessy-core's GET in `benches/http/run.sh`:
//! the same HTTP stack (axum, hyper, tokio on all cores), the same request line (the load
//! script is shared), the same response size, and no storage, logging, metrics or middleware.
//!
//! Usage: `jessy-http-baseline [ADDR]` (default `127.0.0.1:8090`).

use axum::http::header;
use axum::routing::get;
use axum::serve::ListenerExt as _;
use axum::Router;

static VALUE: [u8; 150] = [b'v'; 150];

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8090".to_string());
    let app = Router::new().route(
        "/v1/dimensions/default/keys/{*key}",
        get(|| async { ([(header::CONTENT_TYPE, "application/octet-stream")], &VALUE[..]) }),
    );
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("baseline listening on {}", listener.local_addr()?);
    // Like jessy-core: small responses leave at once instead of waiting for Nagle.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await
}
