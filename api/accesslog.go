package main

import (
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// responseRecorder notes status and size for the access log and metrics, and renews the
// connection's write deadline before every write: a stalled client is cut off after writeTimeout
// without capping how long a healthy download may take.
type responseRecorder struct {
	http.ResponseWriter
	rc           http.ResponseController // a value: one allocation less per request
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
// end is when the request ended, and d how long it took.
func (g *Gateway) observe(r *http.Request, info reqInfo, escaped string, w *responseRecorder, end time.Time, d time.Duration, aborted bool) {
	status := w.statusCode()
	method := methodLabel(r.Method)
	g.metrics.requests.add(1, method, info.route, codeLabel(status))
	g.metrics.duration.observe(d.Seconds(), method, info.route)
	g.metrics.responseBytes.add(float64(w.bytes), info.route)

	line := accessLine{
		method: r.Method, route: info.route, path: escaped, status: status, bytes: w.bytes,
		durationMS: float64(d.Microseconds()) / 1000, requestID: info.id, remote: r.RemoteAddr,
		aborted: aborted,
	}
	ctx := r.Context()
	if h, ok := g.log.Handler().(flushHandler); ok && h.jsonLines {
		// The gateway's own logger (newLogger): the line is formatted here, byte for byte as
		// slog.JSONHandler would, for a fraction of the cost (docs/BENCHMARKS.md, ## HTTP).
		if h.Enabled(ctx, slog.LevelInfo) {
			bp := lineBuffers.Get().(*[]byte)
			*bp = line.appendJSON((*bp)[:0], end)
			_, _ = h.w.Write(*bp)
			if cap(*bp) <= 4<<10 {
				lineBuffers.Put(bp)
			}
		}
		return
	}
	g.log.LogAttrs(ctx, slog.LevelInfo, accessMessage, line.attrs()...)
}

// accessMessage is the access log line's msg.
const accessMessage = "request"

// accessLine is what the access log says about a request.
type accessLine struct {
	method, route, path string
	status              int
	bytes               int64
	durationMS          float64
	requestID, remote   string
	aborted             bool
}

// attrs are the line's fields for any slog.Handler.
func (l *accessLine) attrs() []slog.Attr {
	attrs := []slog.Attr{
		slog.String("method", l.method),
		slog.String("route", l.route),
		slog.String("path", l.path),
		slog.Int("status", l.status),
		slog.Int64("bytes", l.bytes),
		slog.Float64("duration_ms", l.durationMS),
		slog.String("request_id", l.requestID),
		slog.String("remote", l.remote),
	}
	if l.aborted {
		attrs = append(attrs, slog.Bool("aborted", true))
	}
	return attrs
}

// appendJSON appends the line as slog.JSONHandler (no options but the level) writes it for an
// Info record at time t with l.attrs(); TestAccessLineMatchesSlog holds it to that.
func (l *accessLine) appendJSON(b []byte, t time.Time) []byte {
	b = append(b, `{"time":"`...)
	b = t.Round(0).AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","level":"INFO","msg":"`+accessMessage+`","method":`...)
	b = appendJSONString(b, l.method)
	b = append(b, `,"route":`...)
	b = appendJSONString(b, l.route)
	b = append(b, `,"path":`...)
	b = appendJSONString(b, l.path)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(l.status), 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, l.bytes, 10)
	b = append(b, `,"duration_ms":`...)
	b = appendJSONFloat(b, l.durationMS)
	b = append(b, `,"request_id":`...)
	b = appendJSONString(b, l.requestID)
	b = append(b, `,"remote":`...)
	b = appendJSONString(b, l.remote)
	if l.aborted {
		b = append(b, `,"aborted":true`...)
	}
	return append(b, "}\n"...)
}

// lineBuffers holds the buffers access log lines are formatted in.
var lineBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// appendJSONFloat formats f as encoding/json does, which is what slog uses for floats: 'f'
// notation, or 'e' for very small and very large magnitudes, with a two-digit exponent where
// one digit would need a leading zero. NaN and infinities, which JSON cannot hold, do not occur
// here.
func appendJSONFloat(b []byte, f float64) []byte {
	format := byte('f')
	if a := math.Abs(f); a != 0 && (a < 1e-6 || a >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// e-09 to e-9
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// appendJSONString appends s quoted as slog's JSON handler quotes it: \", \\, \n, \r, \t, \u00XX
// for other control characters, \ufffd for each invalid UTF-8 byte, and U+2028 and U+2029
// escaped; everything else, '<', '>' and '&' included, as is.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
