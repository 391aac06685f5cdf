//! Log lines go to standard output through a writer thread, in batches.
//!
//! With one access-log line per request, a `write` system call per line was a large part of
//! jessy-core's CPU time per `GET` (docs/BENCHMARKS.md, `## HTTP`). Here a line is appended to
//! a shared buffer, and a writer thread writes whatever has accumulated with one `write`: while
//! lines keep coming it looks again every [`LINGER`], otherwise it sleeps until the next line.
//!
//! The price: lines still queued when the process dies abruptly (SIGKILL, abort, a crash) are
//! lost, at most about [`LINGER`] worth. [`LogWriter::flush`] (through
//! [`crate::flush_logs`]) waits until everything queued has been written; `run` calls it on
//! its way out, after which lines are written directly, so nothing logged later waits either.
//! When the queue holds [`MAX_QUEUED`] bytes (standard output is not keeping up), loggers wait
//! for room, as they would have waited in `write`: lines are never dropped.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long the writer thread waits for more lines after writing a batch.
pub(crate) const LINGER: Duration = Duration::from_millis(1);
/// Bytes queued beyond which loggers wait for the writer.
pub(crate) const MAX_QUEUED: usize = 4 << 20;

/// Where the lines end up: standard output, or (in tests) anything else.
type Sink = Box<dyn Write + Send>;

/// A handle on the queue; cheap to clone. Used as the subscriber's [`MakeWriter`].
#[derive(Clone)]
pub(crate) struct LogWriter(Arc<Shared>);

struct Shared {
    state: Mutex<State>,
    /// The writer thread waits here for lines (or a flush, or the end).
    wake_writer: Condvar,
    /// Loggers wait here for room, and flushers for their lines to be written.
    progress: Condvar,
    /// Taken by whoever writes to the sink (the writer thread, or loggers in direct mode).
    sink: Mutex<Sink>,
}

struct State {
    queue: Vec<u8>,
    /// Bytes ever queued, and bytes ever written (or given up on: a failed write is dropped).
    queued: u64,
    written: u64,
    /// The writer thread is asleep until told (it is not just lingering).
    writer_idle: bool,
    /// How many wait in `flush`: while any do, the writer thread does not linger.
    flushing: usize,
    /// How many wait on `progress` (for room, or in `flush`). `Condvar::notify_all` makes a
    /// system call even when nobody waits; the writer thread skips it then, which is nearly
    /// always: it saved two of the three `futex` calls of every batch.
    waiting: usize,
    /// No writer thread (it could not be started, or it was stopped): write directly.
    direct: bool,
}

impl LogWriter {
    /// A queue in front of standard output, with its writer thread.
    pub(crate) fn stdout() -> LogWriter {
        LogWriter::new(Box::new(std::io::stdout()))
    }

    pub(crate) fn new(sink: Sink) -> LogWriter {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: Vec::with_capacity(64 << 10),
                queued: 0,
                written: 0,
                writer_idle: false,
                flushing: 0,
                waiting: 0,
                direct: false,
            }),
            wake_writer: Condvar::new(),
            progress: Condvar::new(),
            sink: Mutex::new(sink),
        });
        let writer = LogWriter(shared);
        let thread = writer.clone();
        let spawned = std::thread::Builder::new().name("jessy-log".to_string()).spawn(move || thread.run_writer());
        if spawned.is_err() {
            writer.lock().direct = true;
        }
        writer
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `line` (or, in direct mode, writes it).
    pub(crate) fn write_line(&self, line: &[u8]) {
        let mut state = self.lock();
        while !state.direct && state.queue.len() >= MAX_QUEUED {
            state = self.wait_for_progress(state);
        }
        if state.direct {
            // Keep the order: everything queued before is written first (stop drains it).
            let mut sink = self.0.sink.lock().unwrap_or_else(PoisonError::into_inner);
            drop(state);
            let _ = sink.write_all(line).and_then(|()| sink.flush());
            return;
        }
        state.queue.extend_from_slice(line);
        state.queued += line.len() as u64;
        if state.writer_idle {
            state.writer_idle = false;
            self.0.wake_writer.notify_one();
        }
    }

    /// Waits until every line queued before the call has been written.
    pub(crate) fn flush(&self) {
        let mut state = self.lock();
        let target = state.queued;
        state.flushing += 1;
        self.0.wake_writer.notify_one();
        while !state.direct && state.written < target {
            state = self.wait_for_progress(state);
        }
        state.flushing -= 1;
    }

    /// Writes out everything queued, stops the writer thread, and from then on writes each line
    /// directly. For the end of the process: nothing logged afterwards can be lost either.
    pub(crate) fn stop(&self) {
        self.flush();
        let mut state = self.lock();
        if !state.direct {
            // The sink lock orders this after any batch the writer thread is writing.
            let mut sink = self.0.sink.lock().unwrap_or_else(PoisonError::into_inner);
            let rest = std::mem::take(&mut state.queue);
            state.written = state.queued;
            state.direct = true;
            drop(state);
            let _ = sink.write_all(&rest).and_then(|()| sink.flush());
            self.0.wake_writer.notify_one();
            self.0.progress.notify_all();
        }
    }

    /// Waits on `progress` (counted in `waiting`) until the writer thread wakes it.
    fn wait_for_progress<'a>(&self, mut state: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        state.waiting += 1;
        let mut state = self.0.progress.wait(state).unwrap_or_else(PoisonError::into_inner);
        state.waiting -= 1;
        state
    }

    /// Wakes whoever waits for progress; `state` is held, so nobody can start waiting unseen.
    fn notify_progress(&self, state: &State) {
        if state.waiting > 0 {
            self.0.progress.notify_all();
        }
    }

    fn run_writer(&self) {
        let mut spare = Vec::with_capacity(64 << 10);
        let mut state = self.lock();
        loop {
            if state.direct {
                return;
            }
            if state.queue.is_empty() {
                state.writer_idle = true;
                state = self.0.wake_writer.wait(state).unwrap_or_else(PoisonError::into_inner);
                state.writer_idle = false;
                continue;
            }
            std::mem::swap(&mut state.queue, &mut spare);
            let end = state.queued;
            // Loggers waiting for room can go on.
            self.notify_progress(&state);
            let mut sink = self.0.sink.lock().unwrap_or_else(PoisonError::into_inner);
            drop(state);
            let _ = sink.write_all(&spare).and_then(|()| sink.flush());
            drop(sink);
            spare.clear();
            if spare.capacity() > MAX_QUEUED {
                spare.shrink_to(64 << 10);
            }
            state = self.lock();
            state.written = state.written.max(end);
            self.notify_progress(&state);
            if state.flushing == 0 && !state.direct {
                // Let a burst gather: one write per LINGER at most while lines keep coming.
                let (s, _) = self.0.wake_writer.wait_timeout(state, LINGER).unwrap_or_else(PoisonError::into_inner);
                state = s;
            }
        }
    }
}

/// One log line, handed over in one `write_all` by the formatter.
pub(crate) struct LineWriter<'a>(&'a LogWriter);

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write_line(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> LineWriter<'a> {
        LineWriter(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            // Slow, so that lines pile up behind it.
            std::thread::sleep(Duration::from_micros(50));
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn expected(threads: usize, lines: usize) -> Vec<String> {
        let mut all: Vec<String> =
            (0..threads).flat_map(|t| (0..lines).map(move |i| format!("line {t} {i}\n"))).collect();
        all.sort();
        all
    }

    fn written(capture: &Capture) -> Vec<String> {
        let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
        lines.sort();
        lines
    }

    #[test]
    fn flush_writes_everything_queued_before_it() {
        let capture = Capture::default();
        let log = LogWriter::new(Box::new(capture.clone()));
        std::thread::scope(|s| {
            for t in 0..4 {
                let log = &log;
                s.spawn(move || {
                    for i in 0..500 {
                        log.write_line(format!("line {t} {i}\n").as_bytes());
                    }
                });
            }
        });
        log.flush();
        assert_eq!(written(&capture), expected(4, 500));
        // Lines keep their order within a thread, and are whole.
        let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        let of_thread_0: Vec<&str> = text.lines().filter(|l| l.starts_with("line 0 ")).collect();
        let in_order: Vec<String> = (0..500).map(|i| format!("line 0 {i}")).collect();
        assert_eq!(of_thread_0, in_order);
    }

    #[test]
    fn stop_drains_and_then_writes_directly() {
        let capture = Capture::default();
        let log = LogWriter::new(Box::new(capture.clone()));
        for i in 0..300 {
            log.write_line(format!("line 0 {i}\n").as_bytes());
        }
        log.stop();
        assert_eq!(written(&capture), expected(1, 300));
        log.write_line(b"after\n");
        assert!(capture.0.lock().unwrap().ends_with(b"after\n"), "written at once, in order");
        log.flush();
        log.stop();
    }

    #[test]
    fn a_full_queue_makes_loggers_wait_instead_of_dropping() {
        let capture = Capture::default();
        let log = LogWriter::new(Box::new(capture.clone()));
        let line = vec![b'x'; MAX_QUEUED / 3];
        let mut line = line;
        line.push(b'\n');
        for _ in 0..10 {
            log.write_line(&line);
        }
        log.flush();
        assert_eq!(capture.0.lock().unwrap().len(), 10 * line.len());
    }

    #[test]
    fn idle_lines_are_written_without_a_flush() {
        let capture = Capture::default();
        let log = LogWriter::new(Box::new(capture.clone()));
        log.write_line(b"one\n");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while capture.0.lock().unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "the writer thread never wrote the line");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(&*capture.0.lock().unwrap(), b"one\n");
    }
}
