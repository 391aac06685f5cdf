package main

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestLogWriter(t *testing.T) {
	big := strings.Repeat("x", logBufferSize+1) + "\n"
	tests := []struct {
		name string
		// log writes lines through a logger on w; out is what must have been written out
		// right after, before any flush by time.
		log  func(l *slog.Logger, w *logWriter)
		want []string
	}{
		{"info waits", func(l *slog.Logger, w *logWriter) { l.Info("a") }, nil},
		{"warn goes out at once, with what was waiting", func(l *slog.Logger, w *logWriter) {
			l.Info("a")
			l.Warn("b")
		}, []string{"a", "b"}},
		{"error through a derived logger", func(l *slog.Logger, w *logWriter) {
			l.With("k", "v").WithGroup("g").Error("c")
		}, []string{"c"}},
		{"flush", func(l *slog.Logger, w *logWriter) {
			l.Info("a")
			w.Flush()
		}, []string{"a"}},
		{"close, then lines go out one by one", func(l *slog.Logger, w *logWriter) {
			l.Info("a")
			w.Close()
			l.Info("b")
		}, []string{"a", "b"}},
		{"a full buffer goes out, in order", func(l *slog.Logger, w *logWriter) {
			l.Info("a")
			l.Info(big[:len(big)-1])
		}, []string{"a", big[:len(big)-1]}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := &syncBuffer{}
			w := newLogWriter(out)
			defer w.Close()
			tt.log(newLogger(w, slog.LevelInfo), w)
			var got []string
			for _, l := range out.logLines(t) {
				got = append(got, l["msg"].(string))
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("written out: %.40q, want %.40q", got, tt.want)
			}
		})
	}
}

func TestLogWriterFlushesInTime(t *testing.T) {
	out := &syncBuffer{}
	w := newLogWriter(out)
	defer w.Close()
	newLogger(w, slog.LevelInfo).Info("a")
	start := time.Now()
	eventually(t, func() error {
		if out.String() == "" {
			return errors.New("not written out yet")
		}
		return nil
	})
	if took := time.Since(start); took > 10*logFlushInterval {
		t.Errorf("line written out after %v, want about %v", took, logFlushInterval)
	}
}
