//! The context of the request being handled on this thread: its id, method, path and matched
//! route, for the access log and for every other log line written while handling it.
//!
//! The request-context middleware keeps a [`RequestCtx`] in its future and makes it current
//! (a thread-local pointer) for the duration of each poll, the way `tracing`'s `Instrumented`
//! enters a span. When jessy-core's own subscriber is installed ([`crate::init_logging`]), the
//! JSON formatter writes the request's `"span"` object from it, byte for byte as a `tracing` span
//! `request{method, path, request_id, route}` would be written, without the cost of a `tracing`
//! span per request (creating it, formatting and storing its fields, entering and leaving it on
//! every poll, closing it). Under any other subscriber a real span is created as before.

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::MatchedPath;

/// What the logs and metrics need to know about one request.
pub(crate) struct RequestCtx {
    pub(crate) request_id: String,
    pub(crate) started: Instant,
    /// The route template, set by the per-route layer once the router has matched one (or by
    /// the fast path for keys, which does not use the router).
    route: OnceLock<RouteName>,
    /// `{"method":..,"path":..,"request_id":..` (no closing brace): the start of the span
    /// object, when log lines are to carry it; empty otherwise.
    span_head: String,
    /// The `tracing` span, when one is used instead (another subscriber than ours); else none.
    pub(crate) span: tracing::Span,
}

/// A matched route template.
enum RouteName {
    Matched(MatchedPath),
    Static(&'static str),
}

thread_local! {
    static CURRENT: Cell<*const RequestCtx> = const { Cell::new(std::ptr::null()) };
}

impl RequestCtx {
    /// `span_fields`: whether log lines written while handling this request carry the
    /// request's span object (ours, not a `tracing` span).
    pub(crate) fn new(
        method: &'static str,
        path: &str,
        request_id: String,
        started: Instant,
        span_fields: bool,
        span: tracing::Span,
    ) -> RequestCtx {
        let mut span_head = String::new();
        if span_fields {
            let mut head = Vec::with_capacity(64 + path.len() + request_id.len());
            head.extend_from_slice(b"{\"method\":");
            crate::json::push_str(&mut head, method);
            head.extend_from_slice(b",\"path\":");
            crate::json::push_str(&mut head, path);
            head.extend_from_slice(b",\"request_id\":");
            crate::json::push_str(&mut head, &request_id);
            // Only JSON text was written, from `&str`s: valid UTF-8.
            span_head = String::from_utf8(head).unwrap_or_default();
        }
        RequestCtx { request_id, started, route: OnceLock::new(), span_head, span }
    }

    /// Records the matched route (the per-route layer calls this before the handler runs).
    pub(crate) fn set_route(&self, route: MatchedPath) {
        self.span.record("route", route.as_str());
        let _ = self.route.set(RouteName::Matched(route));
    }

    /// Records a route template known without the router.
    pub(crate) fn set_static_route(&self, route: &'static str) {
        self.span.record("route", route);
        let _ = self.route.set(RouteName::Static(route));
    }

    /// Records `unmatched` in the `tracing` span if no route was matched.
    pub(crate) fn record_unmatched(&self) {
        if self.route.get().is_none() {
            self.span.record("route", "unmatched");
        }
    }

    /// The matched route template, or `unmatched`.
    pub(crate) fn with_route<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        f(match self.route.get() {
            Some(RouteName::Matched(route)) => route.as_str(),
            Some(RouteName::Static(route)) => route,
            None => "unmatched",
        })
    }

    /// Makes this the current request of this thread until the guard is dropped (also when
    /// unwinding), and enters its `tracing` span if it has one.
    pub(crate) fn enter(&self) -> Entered<'_> {
        let previous = CURRENT.with(|c| c.replace(self as *const RequestCtx));
        Entered { previous, _span: self.span.enter() }
    }

    /// Appends the request's span object, as the JSON formatter writes a span:
    /// `{"method":..,"path":..,"request_id":..,"route":..,"name":"request"}`. False (nothing
    /// written) when this request's lines carry no span object.
    pub(crate) fn write_span(&self, out: &mut Vec<u8>) -> bool {
        if self.span_head.is_empty() {
            return false;
        }
        out.extend_from_slice(self.span_head.as_bytes());
        out.extend_from_slice(b",\"route\":");
        self.with_route(|route| crate::json::push_str(out, route));
        out.extend_from_slice(b",\"name\":\"request\"}");
        true
    }
}

/// While it lives, a [`RequestCtx`] is the current request of this thread.
pub(crate) struct Entered<'a> {
    previous: *const RequestCtx,
    _span: tracing::span::Entered<'a>,
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.previous));
    }
}

/// Runs `f` with the current request of this thread, if any.
pub(crate) fn with_current<R>(f: impl FnOnce(Option<&RequestCtx>) -> R) -> R {
    let ptr = CURRENT.with(Cell::get);
    // SAFETY: `CURRENT` only ever holds null or a pointer set by `RequestCtx::enter`, whose
    // guard borrows that `RequestCtx` and puts the previous value back when it is dropped
    // (including on unwind). So a non-null pointer refers to a live `RequestCtx` borrowed by an
    // `Entered` guard further up this thread's stack, and it is only read here, shared.
    let current = unsafe { ptr.as_ref() };
    f(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(span_fields: bool) -> RequestCtx {
        RequestCtx::new("GET", "/v1/a\"b", "id-1".into(), Instant::now(), span_fields, tracing::Span::none())
    }

    #[test]
    fn current_is_scoped_and_nests() {
        assert!(with_current(|c| c.is_none()));
        let (a, b) = (ctx(true), ctx(false));
        {
            let _a = a.enter();
            assert!(with_current(|c| std::ptr::eq(c.unwrap(), &a)));
            {
                let _b = b.enter();
                assert!(with_current(|c| std::ptr::eq(c.unwrap(), &b)));
            }
            assert!(with_current(|c| std::ptr::eq(c.unwrap(), &a)));
        }
        assert!(with_current(|c| c.is_none()));
        // Unwinding out of a scope restores the previous request too.
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _a = a.enter();
            panic!("boom");
        }));
        assert!(caught.is_err());
        assert!(with_current(|c| c.is_none()));
    }

    #[test]
    fn span_object_is_what_the_json_formatter_writes() {
        let c = ctx(true);
        let mut out = Vec::new();
        assert!(c.write_span(&mut out));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"method":"GET","path":"/v1/a\"b","request_id":"id-1","route":"unmatched","name":"request"}"#
        );
        assert!(!ctx(false).write_span(&mut Vec::new()));
    }
}
