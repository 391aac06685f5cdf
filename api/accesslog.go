package main

import (
	"log/slog"
	"net/http"
	"time"
)

// responseRecorder notes status and size for the access log and metrics, and renews the
// connection's write deadline before every write: a stalled client is cut off after writeTimeout
// without capping how long a healthy download may take.
type responseRecorder struct {
	http.ResponseWriter
	rc           *http.ResponseController
	writeTimeout time.Duration
	renewedAt    time.Time // when the write deadline was last set; zero before the first time
	status       int
	bytes        int64
}

// renewSlack is the fraction of the write timeout by which a deadline may be renewed late.
const renewSlack = 8

// renewDeadline moves the write deadline to writeTimeout from now. Setting a deadline updates a
// runtime timer, which is not free, and a small response would set it two or three times in a
// few microseconds. So after the first time in a request it is set again only once the last
// one is writeTimeout/renewSlack old, and each deadline gets that much extra: a write is still
// cut off only after it has been blocked for at least writeTimeout (and at most an eighth
// more).
func (w *responseRecorder) renewDeadline() {
	if w.writeTimeout <= 0 {
		return
	}
	now := time.Now()
	slack := w.writeTimeout / renewSlack
	if !w.renewedAt.IsZero() && now.Sub(w.renewedAt) < slack {
		return
	}
	w.renewedAt = now
	// ErrNotSupported from test recorders is fine: there is no connection to protect.
	_ = w.rc.SetWriteDeadline(now.Add(w.writeTimeout + slack))
}

func (w *responseRecorder) WriteHeader(code int) {
	// 1xx responses are interim; the one that counts comes later.
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseRecorder) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.renewDeadline()
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// FlushError is what http.ResponseController (and so ReverseProxy) calls to flush.
func (w *responseRecorder) FlushError() error {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.renewDeadline()
	return w.rc.Flush()
}

// Unwrap lets http.ResponseController reach the connection, e.g. to hijack it for an upgrade.
func (w *responseRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// done covers the bytes http.Server still flushes after the handler returns.
func (w *responseRecorder) done() { w.renewDeadline() }

func (w *responseRecorder) statusCode() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// observe writes the access log line and the request's metrics.
func (g *Gateway) observe(r *http.Request, info reqInfo, escaped string, w *responseRecorder, d time.Duration, aborted bool) {
	status := w.statusCode()
	method := methodLabel(r.Method)
	g.metrics.requests.add(1, method, info.route, codeLabel(status))
	g.metrics.duration.observe(d.Seconds(), method, info.route)
	g.metrics.responseBytes.add(float64(w.bytes), info.route)

	attrs := []slog.Attr{
		slog.String("method", r.Method),
		slog.String("route", info.route),
		slog.String("path", escaped),
		slog.Int("status", status),
		slog.Int64("bytes", w.bytes),
		slog.Float64("duration_ms", float64(d.Microseconds())/1000),
		slog.String("request_id", info.id),
		slog.String("remote", r.RemoteAddr),
	}
	if aborted {
		attrs = append(attrs, slog.Bool("aborted", true))
	}
	g.log.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
}
