package main

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

func TestHealth(t *testing.T) {
	healthy := startFakeCore(t, nil)
	sick := startFakeCore(t, nil)
	sick.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"status":"degraded"}`, http.StatusServiceUnavailable)
	})
	slow := startFakeCore(t, nil)
	slow.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	})

	tests := []struct {
		name     string
		core     string
		token    string
		drain    bool
		status   int
		wantBody healthBody
	}{
		{"core ok", healthy.URL, "", false, 200, healthBody{"ok", "ok"}},
		{"open with a token set", healthy.URL, "s3cret", false, 200, healthBody{"ok", "ok"}},
		{"core unhealthy", sick.URL, "", false, 503, healthBody{"degraded", "unhealthy (status 503)"}},
		{"core down", "http://" + freeAddr(t), "", false, 503, healthBody{"degraded", "unreachable"}},
		{"core slow", slow.URL, "", false, 503, healthBody{"degraded", "timeout"}},
		{"shutting down", healthy.URL, "", true, 503, healthBody{"shutting_down", "unknown"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, tt.core)
			cfg.HealthTimeout = 200 * time.Millisecond
			cfg.Token = tt.token
			gw := startGateway(t, cfg)
			if tt.drain {
				gw.Drain()
			}
			start := time.Now()
			resp, body := do(t, "GET", gw.URL+"/api/health", nil, nil)
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("health took %v", took)
			}
			if resp.StatusCode != tt.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			var got healthBody
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("body %q: %v", body, err)
			}
			if got != tt.wantBody {
				t.Errorf("body %+v, want %+v", got, tt.wantBody)
			}
			if resp.Header.Get(requestIDHeader) == "" {
				t.Error("no X-Request-Id")
			}
		})
	}
}
