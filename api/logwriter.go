package main

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// logFlushInterval is the longest a log line waits in logWriter's buffer.
const logFlushInterval = 100 * time.Millisecond

// logBufferSize is how many bytes of lines logWriter holds before it writes them out early.
const logBufferSize = 64 << 10

// logWriter collects log lines and writes them out in batches: when logBufferSize bytes have
// gathered, logFlushInterval after the first line of a batch, on Flush and on Close.
//
// Writing each access-log line with its own system call cost the gateway a few percent of its
// CPU time per small request, one of its three writes (docs/BENCHMARKS.md, ## HTTP); in a
// batch the call is shared by many lines. The price: if the process dies without Close (SIGKILL, a crash in the runtime),
// the last logFlushInterval of lines is lost. Warnings and errors are not batched (see
// flushHandler), and a stop by SIGTERM or SIGINT flushes everything.
type logWriter struct {
	mu     sync.Mutex
	out    io.Writer
	buf    []byte
	timer  *time.Timer // runs Flush; armed while buf holds lines
	armed  bool
	closed bool
}

func newLogWriter(out io.Writer) *logWriter {
	w := &logWriter{out: out, buf: make([]byte, 0, logBufferSize)}
	w.timer = time.AfterFunc(time.Hour, func() { _ = w.Flush() })
	w.timer.Stop()
	return w
}

// Write takes one log line; slog handlers write each record with a single call.
func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return w.out.Write(p)
	}
	if len(w.buf)+len(p) > cap(w.buf) {
		if err := w.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) > cap(w.buf) {
			return w.out.Write(p)
		}
	}
	w.buf = append(w.buf, p...)
	if !w.armed {
		w.armed = true
		w.timer.Reset(logFlushInterval)
	}
	return len(p), nil
}

// Flush writes out what the buffer holds.
func (w *logWriter) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.flushLocked()
}

func (w *logWriter) flushLocked() error {
	if w.armed {
		w.armed = false
		w.timer.Stop()
	}
	if len(w.buf) == 0 {
		return nil
	}
	// Written with w.mu held, which keeps the lines in order.
	_, err := w.out.Write(w.buf)
	w.buf = w.buf[:0]
	return err
}

// Close flushes the buffer; later lines are written out one by one.
func (w *logWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	return w.flushLocked()
}

// flushHandler writes records at or above level out at once: a warning or an error must not
// wait in logWriter's buffer, nor be lost with it.
type flushHandler struct {
	slog.Handler
	w     *logWriter
	level slog.Level
	// jsonLines: Handler is a slog.JSONHandler writing to w, with no options but the level and
	// no attributes or groups added, so a line in its format may be written to w directly
	// (the access log does, see observe).
	jsonLines bool
}

func (h flushHandler) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if r.Level >= h.level {
		if ferr := h.w.Flush(); err == nil {
			err = ferr
		}
	}
	return err
}

func (h flushHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return flushHandler{Handler: h.Handler.WithAttrs(attrs), w: h.w, level: h.level}
}

func (h flushHandler) WithGroup(name string) slog.Handler {
	return flushHandler{Handler: h.Handler.WithGroup(name), w: h.w, level: h.level}
}
