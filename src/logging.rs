//! What the engine logs while a command (other than `serve`) runs: its warnings (a torn tail
//! cut, a key index or index.json rebuilt, ...) as plain lines on standard error, so an
//! operator sees every repair. Standard output stays the command's own (values, scans,
//! dumps, JSON). `jessy serve` logs JSON lines on standard output instead (jessy-server).

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// Installs the subscriber: `RUST_LOG` when it is set and valid, else `warn`. Lines look like
/// `jessy: warning: key index unreadable; rebuilding it from the layer error=...`.
pub fn init() {
    let filter = match std::env::var(EnvFilter::DEFAULT_ENV) {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::try_new(&directives).unwrap_or_else(|e| {
            eprintln!("jessy: warning: ignoring RUST_LOG={directives:?} ({e}); logging warnings and errors");
            EnvFilter::new("warn")
        }),
        _ => EnvFilter::new("warn"),
    };
    // A second subscriber (there is none) would be the only way this fails; nothing to do then.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .event_format(Plain)
        .try_init();
}

/// `jessy: <level>: <message> <field>=<value> ...`, one line per event.
struct Plain;

impl<S, N> FormatEvent<S, N> for Plain
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let level = match *event.metadata().level() {
            Level::ERROR => "error",
            Level::WARN => "warning",
            Level::INFO => "info",
            Level::DEBUG => "debug",
            Level::TRACE => "trace",
        };
        write!(writer, "jessy: {level}: ")?;
        ctx.format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}
