//! The outermost layer: request id, log context, problem rendering, request metrics.
//!
//! Every response leaves through here, so this is where the guarantees that hold for *all*
//! responses are kept: it carries `X-Request-Id`; an error is `application/problem+json`
//! with that id in it; it is counted in the metrics under its matched route; it is logged
//! once, as a JSON line inside the request's span.

use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, OriginalUri, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::future::RouteFuture;
use axum::Router;
use tokio::sync::Semaphore;
use tower::Service;

use crate::context::RequestCtx;
use crate::error::{code_for_status, PROBLEM_JSON};
use crate::routes::keys;
use crate::{ApiError, AppState};

/// The request id header, answered on every response.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the request being handled, in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// An incoming id is kept when it is 1 to 128 of `A-Za-z0-9._:-` (enough for UUIDs, ULIDs
/// and trace ids, and safe to log and echo); anything else is replaced by a fresh UUID.
pub(crate) fn accept_or_generate(incoming: Option<&HeaderValue>) -> String {
    incoming
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
        })
        .map(str::to_string)
        .unwrap_or_else(fresh_id)
}

/// A new random (version 4) UUID, from a per-thread SplitMix64 generator seeded once from the
/// operating system. `Uuid::new_v4` asks the kernel for every id (a `getrandom` system call
/// per request); a request id has to be unique, not secret.
fn fresh_id() -> String {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(uuid::Uuid::new_v4().as_u64_pair().0);
    }
    fn next(state: &Cell<u64>) -> u64 {
        let s = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        state.set(s);
        let z = (s ^ (s >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    let (hi, lo) = STATE.with(|s| (next(s), next(s)));
    let bytes = ((u128::from(hi) << 64) | u128::from(lo)).to_be_bytes();
    let id = uuid::Builder::from_random_bytes(bytes).into_uuid();
    id.hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer()).to_string()
}

/// jessy-core as one service: this middleware around the router. It answers every request.
///
/// The request id, the request's log context, the concurrency limit, panic recovery, the body
/// limit, problem rendering, metrics and the access log are applied here once per request,
/// around the router, instead of as `Router::layer`s: axum wraps every route in each such
/// layer, and every request then clones and boxes the whole nested stack. Inside the router one
/// thin layer per route ([`RouteLayer`](crate::router::RouteLayer)) records the matched route
/// and applies the token check and the request timeout.
#[derive(Clone)]
pub(crate) struct App(Arc<AppInner>);

struct AppInner {
    state: AppState,
    routes: Router,
    limit: Arc<Semaphore>,
    body_limit: DefaultBodyLimit,
    token: Option<Arc<str>>,
    /// Whether `GET`, `PUT` and `DELETE` of a key may skip the router (see [`key_route`]).
    fast_keys: bool,
}

impl App {
    /// `fast_keys`: the router has no routes besides jessy-core's own, so that requests to a
    /// key may be answered without it.
    pub(crate) fn new(state: AppState, routes: Router, fast_keys: bool) -> App {
        let limit = Arc::new(Semaphore::new(state.config.max_concurrency.max(1)));
        let body_limit = DefaultBodyLimit::max(state.config.body_limit());
        let token = state.config.api_token.as_deref().map(Arc::from);
        App(Arc::new(AppInner { state, routes, limit, body_limit, token, fast_keys }))
    }
}

/// The routes of keys, as in the router.
pub(crate) const KEY_ROUTE: &str = "/v1/dimensions/{dim}/keys/{*key}";
pub(crate) const EMPTY_KEY_ROUTE: &str = "/v1/dimensions/{dim}/keys/";

/// The route the router would match for `path` when it is one of a key, else `None`. The fast
/// path uses it for the hot requests, `GET`, `PUT` and `DELETE` of a key, which it answers by
/// calling the handlers directly: no routing (and its percent-decoded path parameters, which
/// the key handlers do not use), no extractors but the body, no boxed handler service. It agrees
/// with the router: `{dim}` is one non-empty segment, and no other route of jessy-core's has a
/// static segment there; the test `fast_keys_answer_as_the_router_does` compares the two.
fn key_route(path: &str) -> Option<&'static str> {
    let rest = path.strip_prefix("/v1/dimensions/")?;
    let (dim, rest) = rest.split_once('/')?;
    let key = rest.strip_prefix("keys/")?;
    match (dim.is_empty(), key.is_empty()) {
        (true, _) => None,
        (false, true) => Some(EMPTY_KEY_ROUTE),
        (false, false) => Some(KEY_ROUTE),
    }
}

impl<B> Service<Request<B>> for App
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let app = self.0.clone();
        Box::pin(async move { Ok(handle(&app, req.map(Body::new)).await) })
    }
}

/// The target of the access log lines and of the request span (this module's path).
const TARGET: &str = crate::logging::ACCESS_TARGET;

async fn handle(app: &AppInner, mut req: Request) -> Response {
    let started = Instant::now();
    let id = accept_or_generate(req.headers().get(&X_REQUEST_ID));
    req.extensions_mut().insert(RequestId(id.clone()));
    app.body_limit.apply(&mut req);
    let method = metric_method(req.method());
    let ctx = if crate::logging::own_subscriber() {
        // Our formatter writes the request's fields from `ctx` into its lines: no span needed.
        let fields = tracing::span_enabled!(target: TARGET, tracing::Level::INFO);
        RequestCtx::new(method, req.uri().path(), id, started, fields, tracing::Span::none())
    } else {
        let span = tracing::info_span!(target: TARGET, "request", request_id = %id, method, route = tracing::field::Empty, path = %req.uri().path());
        RequestCtx::new(method, "", id, started, false, span)
    };

    // At most `max_concurrency` requests are handled at once; the rest wait here.
    let permit = match app.limit.clone().try_acquire_owned() {
        Ok(permit) => Some(permit),
        Err(_) => app.limit.clone().acquire_owned().await.ok(),
    };
    let response = Handled { ctx: &ctx, app, req: Some(req), fut: None }.await;
    drop(permit);

    let mut response = finish(response, &ctx.request_id).await;
    // axum gives every empty body `Content-Length: 0`. RFC 9110 (8.6) forbids it on a 204; on
    // a 304 it could only repeat the 200's. hyper drops it from a 204 and a `GET`'s 304, but
    // sends it on a `HEAD`'s 304, claiming a length of 0 for a value of megabytes. Removed
    // here, for every server the router is given to.
    if matches!(response.status(), StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED) {
        response.headers_mut().remove(header::CONTENT_LENGTH);
    }
    if let Ok(value) = HeaderValue::from_str(&ctx.request_id) {
        response.headers_mut().insert(X_REQUEST_ID, value);
    }
    let status = response.status();
    let elapsed = started.elapsed();
    ctx.with_route(|route| app.state.metrics.observe_request(method, route, status, elapsed));
    ctx.record_unmatched();
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    if crate::logging::write_access_line(&ctx, status.as_u16(), latency_ms) {
        return response;
    }
    let _entered = ctx.enter();
    if status.is_server_error() {
        tracing::error!(target: TARGET, status = status.as_u16(), latency_ms, "request failed");
    } else {
        tracing::info!(target: TARGET, status = status.as_u16(), latency_ms, "request");
    }
    response
}

/// The answer to a request (the router's, or a key handler's on the fast path), with `ctx`
/// current while the router and the handler run (so that their log lines carry it), and a
/// handler panic answered as a 500 problem.
struct Handled<'a> {
    ctx: &'a RequestCtx,
    app: &'a AppInner,
    req: Option<Request>,
    fut: Option<Routed>,
}

/// Who answers a request: the router, or the key handlers directly (the fast path).
enum Routed {
    Router(RouteFuture<Infallible>),
    Key(crate::router::RouteFuture<KeyFuture>),
}

type KeyFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl Handled<'_> {
    /// Who answers `req`: for a `GET`, `PUT` or `DELETE` of a key, the key's handler without
    /// the router, with what its route would apply (the route, the token, the request
    /// timeout); for anything else, the router.
    fn route(&self, mut req: Request) -> Routed {
        let route = match *req.method() {
            Method::GET | Method::PUT | Method::DELETE if self.app.fast_keys => key_route(req.uri().path()),
            _ => None,
        };
        let Some(route) = route else { return Routed::Router(self.app.routes.clone().call(req)) };
        self.ctx.set_static_route(route);
        if let Some(token) = &self.app.token {
            if let Some(rejection) = crate::auth::reject(token, req.headers()) {
                return Routed::Key(crate::router::RouteFuture::Answered(Some(rejection)));
            }
        }
        if req.method() == Method::GET {
            // A read never waits: answered here, without a future or a timer.
            let response = keys::get_now(&self.app.state, req.uri().path(), req.headers()).into_response();
            return Routed::Key(crate::router::RouteFuture::Answered(Some(with_content_length(response))));
        }
        let state = self.app.state.clone();
        let inner: KeyFuture = if req.method() == Method::PUT {
            Box::pin(async move {
                let (uri, headers, body) = take_parts(req).await;
                Ok(with_content_length(keys::put(State(state), OriginalUri(uri), headers, body).await.into_response()))
            })
        } else {
            // A `DELETE` has no body to wait for.
            let (uri, headers) = (req.uri().clone(), std::mem::take(req.headers_mut()));
            Box::pin(async move {
                Ok(with_content_length(keys::delete(State(state), OriginalUri(uri), headers).await.into_response()))
            })
        };
        let deadline = Some(self.ctx.started + self.app.state.config.request_timeout);
        Routed::Key(crate::router::RouteFuture::Running { inner, deadline, sleep: None })
    }
}

/// What `keys::put` extracts from a request: its URI, its headers, its body read whole
/// (within the body limit, as axum's `Bytes` extractor reads it, which this calls).
async fn take_parts(mut req: Request) -> (Uri, HeaderMap, Result<Bytes, BytesRejection>) {
    let uri = req.uri().clone();
    let headers = std::mem::take(req.headers_mut());
    (uri, headers, Bytes::from_request(req, &()).await)
}

/// As axum's route future does: a body of known size gets its `Content-Length`.
fn with_content_length(mut response: Response) -> Response {
    if !response.headers().contains_key(header::CONTENT_LENGTH) {
        if let Some(size) = HttpBody::size_hint(response.body()).exact() {
            response.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(size));
        }
    }
    response
}

impl Future for Handled<'_> {
    type Output = Response;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response> {
        let this = self.get_mut();
        let _entered = this.ctx.enter();
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| {
            if let Some(req) = this.req.take() {
                this.fut = Some(this.route(req));
            }
            match &mut this.fut {
                Some(Routed::Router(fut)) => Pin::new(fut).poll(cx),
                Some(Routed::Key(fut)) => Pin::new(fut).poll(cx),
                None => Poll::Ready(Ok(panic_response(Box::new("polled after completion")))),
            }
        }));
        match polled {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(Ok(response))) => {
                this.fut = None;
                Poll::Ready(response)
            }
            Ok(Poll::Ready(Err(never))) => match never {},
            Err(panic) => {
                this.fut = None;
                Poll::Ready(panic_response(panic))
            }
        }
    }
}

/// The method as a metric label: the standard ones, or `OTHER`, so that made-up methods cannot
/// create new series.
fn metric_method(method: &Method) -> &'static str {
    const KNOWN: [(Method, &str); 9] = [
        (Method::GET, "GET"),
        (Method::HEAD, "HEAD"),
        (Method::PUT, "PUT"),
        (Method::POST, "POST"),
        (Method::DELETE, "DELETE"),
        (Method::PATCH, "PATCH"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::CONNECT, "CONNECT"),
        (Method::TRACE, "TRACE"),
    ];
    KNOWN.iter().find(|(m, _)| m == method).map_or("OTHER", |(_, name)| name)
}

/// Renders an [`ApiError`]'s problem body, or turns any other error response into a problem.
async fn finish(response: Response, request_id: &str) -> Response {
    if let Some(error) = response.extensions().get::<ApiError>().cloned() {
        let (mut parts, _) = response.into_parts();
        parts.extensions.remove::<ApiError>();
        return with_problem_body(parts, &error, request_id);
    }
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_problem(&response) {
        return response;
    }
    // Someone else's error response (an extractor rejection, the router's 404/405, the
    // timeout layer's 408): keep its status, use its short text as the detail.
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let detail = if text.is_empty() { default_detail(status) } else { text };
    let error = ApiError::new(status, code_for_status(status), detail);
    with_problem_body(parts, &error, request_id)
}

fn with_problem_body(mut parts: axum::http::response::Parts, error: &ApiError, request_id: &str) -> Response {
    let problem = error.to_problem(request_id);
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    Response::from_parts(parts, Body::from(body))
}

fn is_problem(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(PROBLEM_JSON))
}

fn default_detail(status: StatusCode) -> String {
    match status {
        StatusCode::NOT_FOUND => "no such endpoint; see GET /openapi.json".to_string(),
        StatusCode::METHOD_NOT_ALLOWED => "this endpoint does not take this method; see GET /openapi.json".to_string(),
        StatusCode::REQUEST_TIMEOUT => "the request took too long and was abandoned; try again".to_string(),
        StatusCode::PAYLOAD_TOO_LARGE => "the request body is larger than the server accepts".to_string(),
        other => other.canonical_reason().unwrap_or("error").to_string(),
    }
}

/// Answers a handler panic (caught by `catch_unwind` in `Handled::poll`) with a 500 problem.
pub(crate) fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = what, "handler panicked");
    ApiError::internal(
        "the server hit a bug while handling this request; it was logged, please report it with the request id",
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_methods_share_one_label() {
        assert_eq!(metric_method(&Method::PUT), "PUT");
        assert_eq!(metric_method(&Method::from_bytes(b"BREW").unwrap()), "OTHER");
    }

    #[test]
    fn keeps_well_formed_ids() {
        let v = HeaderValue::from_static("abc-123_x.y:z");
        assert_eq!(accept_or_generate(Some(&v)), "abc-123_x.y:z");
    }

    #[test]
    fn replaces_bad_ids() {
        for bad in ["", "has space", "quote\"", &"x".repeat(129)] {
            let v = HeaderValue::from_str(bad).unwrap();
            let id = accept_or_generate(Some(&v));
            assert_ne!(id, bad);
            assert_eq!(id.len(), 36, "a uuid");
        }
        assert_eq!(accept_or_generate(None).len(), 36);
    }

    #[test]
    fn generated_ids_are_v4_uuids_and_differ() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| accept_or_generate(None)).collect();
        assert_eq!(ids.len(), 1000);
        for id in &ids {
            let uuid = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(uuid.get_version(), Some(uuid::Version::Random), "{id}");
            assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122, "{id}");
        }
        let other = std::thread::spawn(|| accept_or_generate(None)).join().unwrap();
        assert!(!ids.contains(&other));
    }

    /// The fast path for keys answers exactly as the router does, and counts each request
    /// under the same route: the same requests go to two stores that start alike, one served
    /// with the fast path and one without (an extra route turns it off), under both write
    /// paths (`immediate` sends single writes to the committer's inbox).
    #[test]
    fn fast_keys_answer_as_the_router_does() {
        use axum::routing::get;
        use jessy_storage::Durability;
        use tower::ServiceExt as _;

        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let long = format!("/v1/dimensions/default/keys/{}", "k".repeat(5000));
        let paths = [
            "/v1/dimensions/default/keys/k1",
            "/v1/dimensions/default/keys/k1?x=1",
            "/v1/dimensions/default/keys/",
            "/v1/dimensions/default/keys/missing",
            "/v1/dimensions/default/keys/a/keys/b",
            "/v1/dimensions/default/keys/%00%FF",
            "/v1/dimensions/default/keys/%zz",
            "/v1/dimensions/default/keys//k1",
            "/v1/dimensions/D00/keys/k1",
            "/v1/dimensions/nodim/keys/k1",
            "/v1/dimensions/bad%20name/keys/k1",
            "/v1/dimensions/%FF/keys/k1",
            "/v1/dimensions//keys/k1",
            "/v1/dimensions/default/keys",
            "/v1/dimensions/default/keysx/k1",
            "/v1/dimensions/default/scan",
            "/v1/dimensions/keys/k1",
            long.as_str(),
        ];
        let methods = [Method::GET, Method::PUT, Method::DELETE, Method::HEAD, Method::POST];
        let conditions =
            [None, Some(("if-none-match", "\"1\"")), Some(("if-none-match", "*")), Some(("if-match", "\"2\""))];
        // 16 KiB regions: a body limit of about 85 KiB; a 40 KiB value is read and refused by
        // the store, a 100 KiB body by the limit.
        let bodies = [Bytes::from_static(b"v"), Bytes::from(vec![b'x'; 40 << 10]), Bytes::from(vec![b'y'; 100 << 10])];
        for durability in [Durability::None, Durability::Immediate] {
            for token in [None, Some("s3cret")] {
                let open = |dir: &std::path::Path| {
                    let storage = jessy_storage::Config::default()
                        .base_path(dir)
                        .initial_size(16 << 10)
                        .max_size(16 << 10)
                        .durability(durability);
                    let store = jessy_storage::Store::open_config(storage.clone()).unwrap();
                    let dim = store.get_dimension("default").unwrap();
                    dim.put("k1", "v1").unwrap();
                    dim.put("a/keys/b", "v2").unwrap();
                    dim.put(b"\x00\xff", "v3").unwrap();
                    let config = crate::ServerConfig {
                        api_token: token.map(str::to_string),
                        storage,
                        ..crate::ServerConfig::default()
                    };
                    AppState::new(store, config)
                };
                let (fast_dir, slow_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
                let (fast, slow) = (open(fast_dir.path()), open(slow_dir.path()));
                let fast_app = crate::router_with(fast.clone(), axum::Router::new());
                let unrelated = axum::Router::new().route("/unrelated", get(|| async { "" }));
                let slow_app = crate::router_with(slow.clone(), unrelated);
                let mut compared = 0;
                for path in paths {
                    for method in &methods {
                        for auth in [None, Some("Bearer s3cret"), Some("Bearer wrong")] {
                            for condition in conditions {
                                for body in &bodies {
                                    if body.len() > 1 && (*method != Method::PUT || path != paths[0]) {
                                        continue; // large bodies: only where they reach the store
                                    }
                                    let request = || {
                                        let mut req =
                                            Request::builder().method(method).uri(path).header("x-request-id", "same");
                                        if let Some(auth) = auth {
                                            req = req.header("authorization", auth);
                                        }
                                        if let Some((name, value)) = condition {
                                            req = req.header(name, value);
                                        }
                                        req.body(Body::from(body.clone())).unwrap()
                                    };
                                    let answer = |app: &Router| {
                                        let response = runtime.block_on(app.clone().oneshot(request())).unwrap();
                                        let (parts, body) = response.into_parts();
                                        let body = runtime.block_on(axum::body::to_bytes(body, usize::MAX)).unwrap();
                                        (parts.status, parts.headers, body)
                                    };
                                    let (fast_answer, slow_answer) = (answer(&fast_app), answer(&slow_app));
                                    assert_eq!(
                                        fast_answer,
                                        slow_answer,
                                        "{durability:?} {method} {path} {auth:?} {condition:?} {} bytes",
                                        body.len()
                                    );
                                    compared += 1;
                                }
                            }
                        }
                    }
                }
                let counts = |state: &AppState| {
                    let stats = state.store.stats();
                    let text = state.metrics.render(&stats, std::time::Duration::ZERO).unwrap();
                    text.lines()
                        .filter(|l| l.starts_with("jessy_http_requests_total{"))
                        .map(str::to_string)
                        .collect::<Vec<_>>()
                };
                let (fast_counts, slow_counts) = (counts(&fast), counts(&slow));
                for (method, status) in
                    [("GET", "200"), ("PUT", "204"), ("PUT", "412"), ("PUT", "413"), ("DELETE", "204")]
                {
                    let wanted = format!("method=\"{method}\"");
                    assert!(
                        fast_counts.iter().any(|l| l.contains(KEY_ROUTE)
                            && l.contains(&wanted)
                            && l.contains(&format!("status=\"{status}\""))),
                        "no {method} {status} in {fast_counts:?}"
                    );
                }
                assert_eq!(fast_counts, slow_counts);
                assert!(compared > 1000, "{compared}");
            }
        }
    }
}
