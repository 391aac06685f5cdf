//! Logs: JSON lines on standard output, filtered by `RUST_LOG` (default `info`).
//!
//! The lines are those of `tracing_subscriber`'s JSON formatter (`fmt().json()`, current span
//! on, span list off), byte for byte. Only the formatting of an event is done here, by
//! [`FastJson`], because the stock formatter re-parses the current span's fields from JSON
//! text into a map for every line and writes through a UTF-8-checking adaptor; with one
//! access-log line per request that was a tenth of jessy-core's CPU time per `GET`
//! (docs/BENCHMARKS.md, `## HTTP`). A span's fields are written once, by [`FastJsonFields`],
//! as the JSON object text the stock field formatter makes, and spliced into each line.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

use serde::ser::{SerializeMap, Serializer as _};
use tracing::field::{Field, Visit};
use tracing::span::Record;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use crate::context::RequestCtx;
use crate::log_writer::LogWriter;

/// Installs the JSON-lines subscriber. Each line carries the fields of the spans it happened
/// in, so a request's lines carry its `request_id`. Calling it twice does nothing the second
/// time (the first subscriber stays).
///
/// Lines are written to standard output by a writer thread, in batches (see [`flush_logs`]).
pub fn init_logging() {
    let directives = std::env::var(EnvFilter::DEFAULT_ENV).ok();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let writer = WRITER.get_or_init(LogWriter::stdout).clone();
    let writer_for_requests = writer.clone();
    let installed = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(true)
        .with_writer(writer)
        .map_event_format(|stock| FastJson { stock, timer: SystemTime })
        .fmt_fields(FastJsonFields)
        .try_init()
        .is_ok();
    // Span directives (`[request]=debug`, `[{route=..}]`) filter by the `tracing` span of each
    // request, so with them requests keep a real span.
    let span_filters = directives.is_some_and(|d| d.contains('['));
    if installed && !span_filters {
        let _ = OWN_WRITER.set(writer_for_requests);
    }
}

/// Waits until every log line written so far is on standard output. Lines go out through a
/// writer thread, in batches; `run` flushes them on its way out, but a program that embeds
/// jessy-core with [`init_logging`] and exits another way should call this first. Lines still
/// queued when the process is killed or crashes are lost.
pub fn flush_logs() {
    if let Some(writer) = WRITER.get() {
        writer.flush();
    }
}

/// Flushes the log lines and writes any later ones directly, without the writer thread. For
/// the end of [`run`](crate::run).
pub(crate) fn finish_logs() {
    if let Some(writer) = WRITER.get() {
        writer.stop();
    }
}

static WRITER: OnceLock<LogWriter> = OnceLock::new();
/// Set when the subscriber is [`init_logging`]'s, with no span filters: its writer.
static OWN_WRITER: OnceLock<LogWriter> = OnceLock::new();

thread_local! {
    /// Tests of the request context's lines set this instead of installing a global subscriber.
    static OWN_WRITER_HERE: std::cell::RefCell<Option<LogWriter>> = const { std::cell::RefCell::new(None) };
}

/// True when the subscriber is [`init_logging`]'s, with no span filters: then requests need no
/// `tracing` span, their [`RequestCtx`] is written in its place.
pub(crate) fn own_subscriber() -> bool {
    OWN_WRITER.get().is_some() || OWN_WRITER_HERE.with(|w| w.borrow().is_some())
}

/// For tests: on this thread, while `f` runs, the subscriber counts as [`init_logging`]'s, with
/// `writer` as its writer.
#[cfg(test)]
pub(crate) fn as_own_subscriber<R>(writer: LogWriter, f: impl FnOnce() -> R) -> R {
    OWN_WRITER_HERE.with(|w| *w.borrow_mut() = Some(writer));
    let result = f();
    OWN_WRITER_HERE.with(|w| *w.borrow_mut() = None);
    result
}

/// The target of the access log lines, and of the request spans.
pub(crate) const ACCESS_TARGET: &str = "jessy_server::request_id";

/// Writes a request's access line under our own subscriber ([`own_subscriber`]): the bytes the
/// formatter writes for `info!(target: ACCESS_TARGET, status, latency_ms, "request")` (`error!`
/// and `"request failed"` for a 5xx) inside the request, without going through `tracing`'s
/// dispatch, visitors and the formatter's intermediate buffers. False when the line is to be
/// logged the usual way (not our subscriber).
pub(crate) fn write_access_line(ctx: &RequestCtx, status: u16, latency_ms: f64) -> bool {
    let failed = status >= 500;
    let write = |writer: &LogWriter| {
        let enabled = if failed {
            tracing::event_enabled!(target: ACCESS_TARGET, Level::ERROR)
        } else {
            tracing::event_enabled!(target: ACCESS_TARGET, Level::INFO)
        };
        if !enabled {
            return;
        }
        LINE.with(|line| {
            let mut own = Vec::new();
            let mut borrowed = line.try_borrow_mut();
            let line = match &mut borrowed {
                Ok(line) => &mut **line,
                Err(_) => &mut own,
            };
            line.clear();
            line.extend_from_slice(b"{\"timestamp\":");
            if !crate::timestamp::push_json(line, std::time::SystemTime::now()) {
                let mut timestamp = String::with_capacity(32);
                if SystemTime.format_time(&mut Writer::new(&mut timestamp)).is_err() {
                    timestamp.clear();
                }
                crate::json::push_str(line, &timestamp);
            }
            line.extend_from_slice(if failed {
                &b",\"level\":\"ERROR\",\"fields\":{\"message\":\"request failed\",\"status\":"[..]
            } else {
                &b",\"level\":\"INFO\",\"fields\":{\"message\":\"request\",\"status\":"[..]
            });
            let _ = serde_json::to_writer(&mut *line, &status);
            line.extend_from_slice(b",\"latency_ms\":");
            // As the formatter writes an f64 field (NaN and the infinities as null).
            let _ = serde_json::to_writer(&mut *line, &latency_ms);
            line.extend_from_slice(b"},\"target\":\"");
            line.extend_from_slice(ACCESS_TARGET.as_bytes());
            line.push(b'"');
            let mark = line.len();
            line.extend_from_slice(b",\"span\":");
            if !ctx.write_span(line) {
                line.truncate(mark);
            }
            line.extend_from_slice(b"}\n");
            writer.write_line(line);
        });
    };
    if let Some(writer) = OWN_WRITER.get() {
        write(writer);
        return true;
    }
    OWN_WRITER_HERE.with(|w| match &*w.borrow() {
        Some(writer) => {
            write(writer);
            true
        }
        None => false,
    })
}

/// Formats a span's fields as `JsonFields` does, `{"name":value,...}` sorted by name (the
/// last of repeated names wins), without its map of `serde_json::Value`s: each value is
/// written once into one buffer and the entries are sorted by name.
pub(crate) struct FastJsonFields;

/// One field: its name and where its JSON value sits in [`FieldsVisitor::values`].
type Entry = (&'static str, std::ops::Range<usize>);

/// Collects fields as `JsonVisitor` records them.
#[derive(Default)]
struct FieldsVisitor {
    entries: Vec<Entry>,
    values: Vec<u8>,
}

impl FieldsVisitor {
    fn push(&mut self, name: &'static str, value: &impl serde::Serialize) {
        let start = self.values.len();
        if serde_json::to_writer(&mut self.values, value).is_ok() {
            self.entries.push((name, start..self.values.len()));
        } else {
            self.values.truncate(start);
        }
    }

    fn write(mut self, writer: &mut Writer<'_>) -> fmt::Result {
        // Stable: among equal names the last recorded stays last, and is the one kept.
        self.entries.sort_by(|a, b| a.0.cmp(b.0));
        let mut out = Vec::with_capacity(self.values.len() + 16 * self.entries.len() + 2);
        out.push(b'{');
        for (i, (name, range)) in self.entries.iter().enumerate() {
            if self.entries.get(i + 1).is_some_and(|next| next.0 == *name) {
                continue;
            }
            if out.len() > 1 {
                out.push(b',');
            }
            serde_json::to_writer(&mut out, name).map_err(|_| fmt::Error)?;
            out.push(b':');
            out.extend_from_slice(&self.values[range.clone()]);
        }
        out.push(b'}');
        writer.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

impl Visit for FieldsVisitor {
    fn record_f64(&mut self, field: &Field, value: f64) {
        // As `serde_json::Value::from(f64)`: NaN and the infinities are `null`.
        self.push(field.name(), &value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field.name(), &value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field.name(), &value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field.name(), &value);
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field.name(), &value);
    }

    fn record_bytes(&mut self, field: &Field, value: &[u8]) {
        // An array of numbers, as `serde_json::Value::from(&[u8])`.
        self.push(field.name(), &value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            // `log` metadata, which the formatter has already used.
            name if name.starts_with("log.") => {}
            name => {
                let name = name.strip_prefix("r#").unwrap_or(name);
                self.push(name, &format!("{value:?}"));
            }
        }
    }
}

impl<'w> FormatFields<'w> for FastJsonFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut visitor = FieldsVisitor::default();
        fields.record(&mut visitor);
        visitor.write(&mut writer)
    }

    /// Fields recorded on a span after it was created (`span.record`): rare, so merged as
    /// `JsonFields` merges them, through a map of values.
    fn add_fields(&self, current: &'w mut FormattedFields<Self>, fields: &Record<'_>) -> fmt::Result {
        if current.fields.is_empty() {
            return self.format_fields(current.as_writer(), fields);
        }
        let mut merged: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(&current.fields).map_err(|_| fmt::Error)?;
        let mut visitor = FieldsVisitor::default();
        fields.record(&mut visitor);
        for (name, range) in visitor.entries {
            let value = serde_json::from_slice(&visitor.values[range]).map_err(|_| fmt::Error)?;
            merged.insert(name.to_string(), value);
        }
        current.fields = serde_json::to_string(&merged).map_err(|_| fmt::Error)?;
        Ok(())
    }
}

/// Formats an event as `fmt().json().with_current_span(true).with_span_list(false)` does:
/// `{"timestamp","level","fields":{...},"target","span":{<fields>,"name"}}`. Events bridged
/// from the `log` crate, and spans whose fields are not a JSON object, go to `stock`.
pub(crate) struct FastJson<E, T> {
    pub(crate) stock: E,
    pub(crate) timer: T,
}

thread_local! {
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
}

impl<S, N, E, T> FormatEvent<S, N> for FastJson<E, T>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
    E: FormatEvent<S, N>,
    T: FormatTime,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let meta = event.metadata();
        if meta.fields().field("log.target").is_some() {
            // A `log` record: the stock formatter swaps in the record's own metadata.
            return self.stock.format_event(ctx, writer, event);
        }
        let span = event.parent().and_then(|id| ctx.span(id)).or_else(|| ctx.lookup_current());
        let extensions = span.as_ref().map(|span| span.extensions());
        let span_fields = match &extensions {
            None => None,
            Some(ext) => match ext.get::<FormattedFields<N>>() {
                Some(f) if f.fields.starts_with('{') && f.fields.ends_with('}') => Some(f.fields.as_str()),
                _ => {
                    drop(extensions);
                    return self.stock.format_event(ctx, writer, event);
                }
            },
        };

        let mut timestamp = String::new();
        self.timer.format_time(&mut Writer::new(&mut timestamp))?;

        let mut write = |line: &mut Vec<u8>| -> fmt::Result {
            line.clear();
            {
                // The map is not ended: after these entries it is closed by hand below.
                let mut ser = serde_json::Serializer::new(&mut *line);
                let mut map = ser.serialize_map(None).map_err(|_| fmt::Error)?;
                map.serialize_entry("timestamp", &timestamp).map_err(|_| fmt::Error)?;
                map.serialize_entry("level", level_name(meta.level())).map_err(|_| fmt::Error)?;
                map.serialize_entry("fields", &EventFields(event)).map_err(|_| fmt::Error)?;
                map.serialize_entry("target", meta.target()).map_err(|_| fmt::Error)?;
            }
            if let (Some(span), Some(fields)) = (&span, span_fields) {
                // `fields` is a JSON object made by the stock field formatter; the stock event
                // formatter parses it and writes its entries back in the same order, then `name`.
                line.extend_from_slice(b",\"span\":");
                line.extend_from_slice(&fields.as_bytes()[..fields.len() - 1]);
                if fields.len() > 2 {
                    line.push(b',');
                }
                line.extend_from_slice(b"\"name\":");
                serde_json::to_writer(&mut *line, span.metadata().name()).map_err(|_| fmt::Error)?;
                line.push(b'}');
            } else if span.is_none() {
                // No `tracing` span: the request being handled on this thread, if any, in its place.
                let mark = line.len();
                line.extend_from_slice(b",\"span\":");
                if !crate::context::with_current(|ctx| ctx.is_some_and(|ctx| ctx.write_span(line))) {
                    line.truncate(mark);
                }
            }
            line.push(b'}');
            writer.write_str(std::str::from_utf8(line).map_err(|_| fmt::Error)?)?;
            writeln!(writer)
        };
        // A `Debug` impl that logs would re-enter here: it gets a buffer of its own.
        LINE.with(|line| match line.try_borrow_mut() {
            Ok(mut line) => write(&mut line),
            Err(_) => write(&mut Vec::new()),
        })
    }
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARN",
        Level::INFO => "INFO",
        Level::DEBUG => "DEBUG",
        _ => "TRACE",
    }
}

/// An event's fields as a JSON object, as `tracing_serde`'s `SerializeFieldMap` writes them.
struct EventFields<'a, 'b>(&'a Event<'b>);

impl serde::Serialize for EventFields<'_, '_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let map = serializer.serialize_map(Some(self.0.fields().count()))?;
        let mut visitor = MapVisitor { map, state: Ok(()) };
        self.0.record(&mut visitor);
        visitor.state?;
        visitor.map.end()
    }
}

/// `tracing_serde::SerdeMapVisitor`: the same types recorded the same way (everything else
/// goes through `record_debug`, as `Visit`'s defaults do).
struct MapVisitor<M: SerializeMap> {
    map: M,
    state: Result<(), M::Error>,
}

impl<M: SerializeMap> Visit for MapVisitor<M> {
    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.state.is_ok() {
            self.state = self.map.serialize_entry(field.name(), &value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.state.is_ok() {
            self.state = self.map.serialize_entry(field.name(), &format_args!("{value:?}"));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.state.is_ok() {
            self.state = self.map.serialize_entry(field.name(), &value);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.state.is_ok() {
            self.state = self.map.serialize_entry(field.name(), &value);
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if self.state.is_ok() {
            self.state = self.map.serialize_entry(field.name(), &value);
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if self.state.is_ok() {
            self.state = self.map.serialize_entry(field.name(), &value);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[derive(Clone, Default)]
    pub(super) struct Capture(pub(super) Arc<Mutex<Vec<u8>>>);

    impl io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Capture {
            self.clone()
        }
    }

    pub(super) struct FixedTime;

    impl FormatTime for FixedTime {
        fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
            w.write_str("2026-11-27T12:10:50.029523Z")
        }
    }

    #[derive(Debug)]
    struct Oops;

    impl fmt::Display for Oops {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("disk \"full\"\n")
        }
    }

    impl std::error::Error for Oops {}

    fn events() {
        tracing::info!("listening");
        tracing::warn!(addr = "127.0.0.1:0", port = 8080u16, delta = -3i64, ok = true, "bound {}", 1);
        tracing::error!(error = &Oops as &dyn std::error::Error, ratio = 0.71, nan = f64::NAN, big = 1e300, "failed");
        tracing::info!(r#type = "x", big = u128::MAX, bytes = ?b"\x00\xff", text = "quote \" back \\ tab \t é \u{1}");
        let span =
            tracing::info_span!("request", request_id = "abc", method = "GET", route = "/v1/{x}", path = "/v1/a%20b");
        span.in_scope(|| {
            tracing::info!(status = 200u16, latency_ms = 0.25, "request");
            let inner = tracing::debug_span!("inner", n = 1, late = tracing::field::Empty);
            inner.record("late", "set later");
            inner.in_scope(|| tracing::warn!("nested"));
            tracing::error!(parent: &inner, "explicit parent");
        });
        tracing::info_span!("empty").in_scope(|| tracing::info!(x = 1, "no span fields"));
        let kinds = tracing::info_span!(
            "kinds",
            z = 1.5,
            nan = f64::NAN,
            neg = -7i64,
            flag = false,
            r#type = "t",
            dbg = ?Some("x\"y"),
            err = &Oops as &dyn std::error::Error,
            wide = 1u128 << 100,
            a = "first",
            a = "second",
            late = tracing::field::Empty,
            later = tracing::field::Empty,
        );
        kinds.in_scope(|| tracing::info!("kinds"));
        kinds.record("late", 3u64);
        kinds.record("a", "third");
        kinds.record("later", tracing::field::display("shown"));
        kinds.in_scope(|| tracing::info!("kinds after record"));
        let fresh = tracing::info_span!("fresh", late = tracing::field::Empty);
        fresh.record("late", "only");
        fresh.in_scope(|| tracing::info!("recorded into empty"));
        tracing::info_span!("quoted\"name", field = "v").in_scope(|| tracing::info!("odd span name"));
        tracing::debug!(target: "custom::target", "custom target");
    }

    fn capture(fast: bool) -> String {
        let out = Capture::default();
        let builder = tracing_subscriber::fmt()
            .json()
            .with_env_filter(EnvFilter::new("trace"))
            .with_current_span(true)
            .with_span_list(false)
            .with_target(true)
            .with_timer(FixedTime)
            .with_writer(out.clone());
        if fast {
            let subscriber = builder
                .map_event_format(|stock| FastJson { stock, timer: FixedTime })
                .fmt_fields(FastJsonFields)
                .finish();
            tracing::subscriber::with_default(subscriber, events);
        } else {
            tracing::subscriber::with_default(builder.finish(), events);
        }
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text
    }

    #[test]
    fn lines_are_those_of_the_stock_json_formatter() {
        let (stock, fast) = (capture(false), capture(true));
        assert_eq!(stock.lines().count(), 13, "{stock}");
        for (s, f) in stock.lines().zip(fast.lines()) {
            assert_eq!(f, s);
            serde_json::from_str::<serde_json::Value>(f).unwrap();
        }
        assert_eq!(fast, stock);
    }
}

#[cfg(test)]
mod request_tests {
    use axum::body::Body;
    use axum::http::Request;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt as _;

    use super::tests::Capture;
    use super::*;
    use crate::{AppState, ServerConfig};

    /// The lines of a few requests through the router, with `own` (no `tracing` span per
    /// request: the formatter writes the request context) or with a span per request.
    fn request_lines(own: bool) -> String {
        let out = Capture::default();
        let writer = LogWriter::new(Box::new(out.clone()));
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_env_filter(EnvFilter::new("trace"))
            .with_current_span(true)
            .with_span_list(false)
            .with_target(true)
            .with_writer(writer.clone())
            .map_event_format(|stock| FastJson { stock, timer: SystemTime })
            .fmt_fields(FastJsonFields)
            .finish();
        let dir = tempfile::tempdir().unwrap();
        let config = jessy_storage::Config::default().base_path(dir.path()).durability(jessy_storage::Durability::None);
        let store = jessy_storage::Store::open_config(config).unwrap();
        let extra = Router::new()
            .route(
                "/logs",
                get(|| async {
                    tracing::warn!(n = 1, "inside \"the\" handler");
                    "ok"
                }),
            )
            .route("/boom", get(|| async { panic!("kaboom") as &str }));
        let app = crate::router_with(AppState::new(store, ServerConfig::default()), extra);
        let requests = async {
            for (method, uri, id) in [
                ("PUT", "/v1/dimensions/default/keys/a%22b", "id-1"),
                ("GET", "/v1/dimensions/default/keys/a%22b", "id-2"),
                ("GET", "/v1/dimensions/default/keys/missing", "id-3"),
                ("GET", "/nope", "id-4"),
                ("POST", "/v1/dimensions", "id-5"),
                ("GET", "/logs", "id-6"),
                ("GET", "/boom", "id-7"),
                ("GET", "/v1/dimensions/default/scan?prefix=a", "id-8"),
            ] {
                let req = Request::builder().method(method).uri(uri).header("x-request-id", id);
                app.clone().oneshot(req.body(Body::from("v")).unwrap()).await.unwrap();
            }
        };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        tracing::subscriber::with_default(subscriber, || {
            if own {
                as_own_subscriber(writer.clone(), || runtime.block_on(requests));
            } else {
                runtime.block_on(requests);
            }
        });
        writer.flush();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        // Latencies and times differ from run to run (the time is real here: the access line
        // written by hand uses the same clock and format as the formatter).
        let mut normalized = String::new();
        for line in text.lines() {
            let line = match line.split_once("{\"timestamp\":\"") {
                Some(("", rest)) => {
                    let (time, rest) = rest.split_once('"').unwrap();
                    assert!(time.len() == 27 && time.ends_with('Z'), "{time}");
                    format!("{{\"timestamp\":\"T\"{rest}")
                }
                _ => line.to_string(),
            };
            let line = line.as_str();
            match line.split_once("\"latency_ms\":") {
                Some((head, tail)) => {
                    let rest = tail.trim_start_matches(|c: char| c.is_ascii_digit() || "+-.e".contains(c));
                    normalized.push_str(&format!("{head}\"latency_ms\":0{rest}\n"));
                }
                None => normalized.push_str(&format!("{line}\n")),
            }
        }
        normalized
    }

    #[test]
    fn request_lines_from_the_context_are_those_of_a_span() {
        let (with_span, own) = (request_lines(false), request_lines(true));
        assert_eq!(own, with_span);
        assert_eq!(own.lines().filter(|l| l.contains(r#""message":"request"#)).count(), 8, "{own}");
        for line in own.lines() {
            serde_json::from_str::<serde_json::Value>(line).unwrap();
        }
        let inside = own.lines().find(|l| l.contains("inside")).expect(&own);
        assert!(
            inside.contains(
                r#""span":{"method":"GET","path":"/logs","request_id":"id-6","route":"/logs","name":"request"}"#
            ),
            "{inside}"
        );
        let panicked = own.lines().find(|l| l.contains("handler panicked")).expect(&own);
        assert!(panicked.contains(r#""request_id":"id-7""#), "{panicked}");
        let unmatched = own.lines().find(|l| l.contains("id-4")).expect(&own);
        assert!(unmatched.contains(r#""route":"unmatched""#), "{unmatched}");
    }
}
