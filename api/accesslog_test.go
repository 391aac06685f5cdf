package main

import (
	"bytes"
	"context"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"
)

// TestAccessLineMatchesSlog holds the access log's own formatting to what slog.JSONHandler
// writes for the same record, for awkward strings and numbers too.
func TestAccessLineMatchesSlog(t *testing.T) {
	strs := []string{
		"", "GET", "/api/v1/dimensions/default/keys/k%2F1", `q"uote\back`, "tab\tnl\ncr\r",
		"\x00\x01\x1f\x7f", "<&>", "ünïcødé", "\u2028\u2029", "bad\xff\xfeutf8", "\xe2\x80", "日本",
		strings.Repeat("x", 5000),
	}
	floats := []float64{0, 0.001, 0.5, 1, 1.25, 123.456, 1e-7, 1e21, 3e25, 99999.999, 1e20, math.SmallestNonzeroFloat64}
	times := []time.Time{
		time.Date(2026, 11, 27, 17, 0, 0, 0, time.UTC),
		time.Date(2026, 11, 27, 17, 0, 0, 123456789, time.UTC),
		time.Date(2026, 1, 2, 3, 4, 5, 120000000, time.FixedZone("x", 5*3600+30*60)),
		time.Now(),
	}
	var n int
	check := func(l accessLine, at time.Time) {
		t.Helper()
		var want bytes.Buffer
		h := slog.NewJSONHandler(&want, &slog.HandlerOptions{Level: slog.LevelInfo})
		r := slog.NewRecord(at, slog.LevelInfo, accessMessage, 0)
		r.AddAttrs(l.attrs()...)
		if err := h.Handle(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		if got := string(l.appendJSON(nil, at)); got != want.String() {
			t.Fatalf("access line differs from slog's\n got %q\nwant %q", got, want.String())
		}
		n++
	}
	for i, s := range strs {
		for j, f := range floats {
			l := accessLine{
				method: s, route: strs[(i+1)%len(strs)], path: strs[(i+2)%len(strs)],
				status: 200 + i, bytes: int64(i * j * 1000), durationMS: f,
				requestID: strs[(i+3)%len(strs)], remote: s + ":1234", aborted: j%2 == 1,
			}
			check(l, times[(i+j)%len(times)])
		}
	}
	t.Logf("%d lines compared", n)
}

// TestAccessLogFastPathUsed checks that the gateway's own logger takes the direct path and a
// logger with attributes added does not (it must carry them).
func TestAccessLogFastPathUsed(t *testing.T) {
	var out bytes.Buffer
	lw := newLogWriter(&out)
	if h, ok := newLogger(lw, slog.LevelInfo).Handler().(flushHandler); !ok || !h.jsonLines {
		t.Fatal("newLogger's handler does not allow direct lines")
	}
	if h, ok := newLogger(lw, slog.LevelInfo).With("a", 1).Handler().(flushHandler); !ok || h.jsonLines {
		t.Fatal("a handler with attributes allows direct lines")
	}
	if h, ok := newLogger(lw, slog.LevelInfo).WithGroup("g").Handler().(flushHandler); !ok || h.jsonLines {
		t.Fatal("a handler with a group allows direct lines")
	}
}

func TestSplitSegmentsIsSplitN(t *testing.T) {
	for _, s := range []string{"", "/", "//", "a", "a/", "a/b", "dimensions/d/keys/a/b/c", "a//b", "a/b/c/d", "a/b/c/d/", "///"} {
		want := strings.SplitN(s, "/", 4)
		seg, n := splitSegments(s)
		if n != len(want) {
			t.Fatalf("%q: %d segments, want %d", s, n, len(want))
		}
		for i := range want {
			if seg[i] != want[i] {
				t.Fatalf("%q: segment %d is %q, want %q", s, i, seg[i], want[i])
			}
		}
	}
}
