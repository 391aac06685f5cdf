//! The routes, and what is applied around them.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use tower::{Layer, Service};

use crate::request_id::{App, EMPTY_KEY_ROUTE, KEY_ROUTE};
use crate::routes::{batch, dimensions, health, keys, scan, snapshot};
use crate::{auth, context, openapi, ApiError, AppState};

/// jessy-core's router over `state`: every endpoint of `docs/HTTP.md`, with request ids,
/// problem+json errors, metrics, logging, auth, body and time limits, and panic recovery.
pub fn router(state: AppState) -> Router {
    router_with(state, Router::new())
}

/// Like [`router`], with `extra` routes served under the same layers (request id, problem
/// errors, metrics, panic recovery, body limit, timeout; not the `/v1` token check). For embedding
/// jessy-core in a larger service, and for tests.
pub fn router_with(state: AppState, extra: Router<AppState>) -> Router {
    Router::new().fallback_service(app(state, extra))
}

/// The service [`router_with`] wraps: what `run` serves directly.
pub(crate) fn app(state: AppState, extra: Router<AppState>) -> App {
    let config = state.config.clone();
    // Extra routes could shadow a key route, which the fast path for keys assumes not.
    let fast_keys = !extra.has_routes();
    let token: Option<Arc<str>> = config.api_token.as_deref().map(Arc::from);
    let timeout = Some(config.request_timeout);
    let v1_layer = RouteLayer { token: token.clone(), timeout };
    let open_layer = RouteLayer { token: None, timeout };
    // A snapshot streams for as long as the store takes to copy: no request timeout.
    let snapshot_layer = RouteLayer { token, timeout: None };

    let key_routes = get(keys::get).head(keys::head).put(keys::put).delete(keys::delete);
    let v1 = Router::new()
        .route("/v1/dimensions", get(dimensions::list))
        .route("/v1/dimensions/{dim}", put(dimensions::create).delete(dimensions::drop))
        // The empty key gets its own route so it is answered `empty_key`, not 404.
        .route(EMPTY_KEY_ROUTE, key_routes.clone())
        .route(KEY_ROUTE, key_routes)
        .route("/v1/dimensions/{dim}/scan", get(scan::scan))
        .route("/v1/dimensions/{dim}/batch", post(batch::batch))
        .route("/v1/dimensions/{dim}/compact", post(dimensions::compact))
        .layer(v1_layer);
    let snapshot =
        Router::new().route("/v1/snapshot", get(snapshot::snapshot).head(snapshot::head)).layer(snapshot_layer);

    let open = Router::new()
        .route("/health", get(health::health))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(openapi::serve))
        .merge(extra)
        .layer(open_layer);

    let routes = Router::new().merge(open).merge(v1).merge(snapshot).fallback(not_found).with_state(state.clone());
    App::new(state, routes, fast_keys)
}

/// Paths no route matches: 404, except that under `/v1`, where every request needs the token
/// when one is configured, a request without the right one is 401 first, as on a known path.
/// So whether a `/v1` path exists is only told to those who hold the token.
async fn not_found(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    if let Some(token) = state.config.api_token.as_deref() {
        let path = uri.path();
        if path == "/v1" || path.starts_with("/v1/") {
            if let Some(rejection) = auth::reject(token, &headers) {
                return rejection;
            }
        }
    }
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint; see GET /openapi.json").into_response()
}

/// The one layer inside the router, around each route: it tells the request's context which
/// route matched (for the metrics and logs), checks the bearer token (`/v1` routes, when one is
/// configured), and answers 408 when the request takes longer than the request timeout.
///
/// The timer is only armed if the handler does not answer on its first poll (a `GET` of a key
/// usually does), so most requests never touch the timer wheel.
#[derive(Clone)]
pub(crate) struct RouteLayer {
    token: Option<Arc<str>>,
    timeout: Option<Duration>,
}

impl<S> Layer<S> for RouteLayer {
    type Service = RouteService<S>;

    fn layer(&self, inner: S) -> RouteService<S> {
        RouteService { inner, token: self.token.clone(), timeout: self.timeout }
    }
}

#[derive(Clone)]
pub(crate) struct RouteService<S> {
    inner: S,
    token: Option<Arc<str>>,
    timeout: Option<Duration>,
}

impl<S> Service<Request> for RouteService<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Unpin,
{
    type Response = Response;
    type Error = Infallible;
    type Future = RouteFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let route = req.extensions().get::<MatchedPath>().cloned();
        let started = context::with_current(|ctx| {
            let ctx = ctx?;
            if let Some(route) = route {
                ctx.set_route(route);
            }
            Some(ctx.started)
        });
        if let Some(token) = &self.token {
            if let Some(rejection) = auth::reject(token, req.headers()) {
                return RouteFuture::Answered(Some(rejection));
            }
        }
        let deadline = self.timeout.map(|timeout| started.unwrap_or_else(Instant::now) + timeout);
        RouteFuture::Running { inner: self.inner.call(req), deadline, sleep: None }
    }
}

/// The answer of a [`RouteService`].
pub(crate) enum RouteFuture<F> {
    Answered(Option<Response>),
    Running { inner: F, deadline: Option<Instant>, sleep: Option<Pin<Box<tokio::time::Sleep>>> },
}

impl<F> Future for RouteFuture<F>
where
    F: Future<Output = Result<Response, Infallible>> + Unpin,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            RouteFuture::Answered(response) => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => panic!("RouteFuture polled after it answered"),
            },
            RouteFuture::Running { inner, deadline, sleep } => {
                if let Poll::Ready(response) = Pin::new(inner).poll(cx) {
                    return Poll::Ready(response);
                }
                if let Some(deadline) = *deadline {
                    let sleep = sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())));
                    if sleep.as_mut().poll(cx).is_ready() {
                        // As tower-http's timeout layer answers; the request context turns
                        // it into a `request_timeout` problem.
                        return Poll::Ready(Ok(StatusCode::REQUEST_TIMEOUT.into_response()));
                    }
                }
                Poll::Pending
            }
        }
    }
}
