package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// testConfig is the default configuration pointed at core, with timeouts short enough for tests.
func testConfig(t testing.TB, core string) Config {
	t.Helper()
	cfg, err := parseConfig(nil, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatalf("default config: %v", err)
	}
	if core != "" {
		u, err := url.Parse(core)
		if err != nil {
			t.Fatal(err)
		}
		cfg.CoreURL = u
	}
	cfg.DialTimeout = time.Second
	cfg.UpstreamTimeout = 5 * time.Second
	cfg.HealthTimeout = time.Second
	cfg.ShutdownTimeout = 5 * time.Second
	return cfg
}

// syncBuffer collects log output written from server goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// logLines parses the JSON log lines written so far.
func (b *syncBuffer) logLines(t *testing.T) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line is not JSON: %q: %v", l, err)
		}
		lines = append(lines, m)
	}
	return lines
}

// testGateway runs a gateway for cfg behind a real http.Server configured by NewServer, so the
// timeouts under test are the production ones.
type testGateway struct {
	*Gateway
	URL string
	log *syncBuffer
	srv *httptest.Server
}

func startGateway(t *testing.T, cfg Config) *testGateway {
	t.Helper()
	logs := &syncBuffer{}
	g := New(cfg, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	srv := httptest.NewUnstartedServer(g)
	srv.Config = g.NewServer()
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		g.Close()
		if t.Failed() {
			t.Logf("gateway log:\n%s", logs.String())
		}
	})
	return &testGateway{Gateway: g, URL: srv.URL, log: logs, srv: srv}
}

// seenRequest is what the fake core saw.
type seenRequest struct {
	Method     string
	RequestURI string
	Header     http.Header
	Body       []byte
}

// fakeCore stands in for jessy-core: it reads and records every request, answers /health with
// 200, and everything else with handler (or 200 "ok" when handler is nil). Tests that need the
// body unread use a plain httptest.Server.
type fakeCore struct {
	*httptest.Server
	mu   sync.Mutex
	seen []seenRequest
}

func startFakeCore(t *testing.T, handler http.HandlerFunc) *fakeCore {
	t.Helper()
	fc := &fakeCore{}
	fc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return // a body cut off on the way is not a request jessy-core would act on
		}
		fc.record(r, body)
		switch {
		case r.URL.Path == "/health":
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"status":"ok"}`)
		case handler != nil:
			handler(w, r)
		default:
			io.WriteString(w, "ok")
		}
	}))
	t.Cleanup(fc.Close)
	return fc
}

func (fc *fakeCore) record(r *http.Request, body []byte) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	fc.seen = append(fc.seen, seenRequest{Method: r.Method, RequestURI: r.RequestURI, Header: r.Header.Clone(), Body: body})
}

func (fc *fakeCore) requests() []seenRequest {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return append([]seenRequest(nil), fc.seen...)
}

// do sends a request and returns the response with its body read.
func do(t *testing.T, method, url string, body io.Reader, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return resp, b
}

// decodeProblem checks that resp is an RFC 9457 problem with exactly the contract's fields.
func decodeProblem(t *testing.T, resp *http.Response, body []byte) problem {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type = %q, want application/problem+json (body %q)", ct, body)
	}
	var fields map[string]any
	if err := json.Unmarshal(body, &fields); err != nil {
		t.Fatalf("problem body is not JSON: %q", body)
	}
	for _, k := range []string{"type", "title", "status", "detail", "code", "request_id"} {
		if _, ok := fields[k]; !ok {
			t.Errorf("problem lacks %q: %s", k, body)
		}
	}
	if len(fields) != 6 {
		t.Errorf("problem has %d fields, want 6: %s", len(fields), body)
	}
	var p problem
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatal(err)
	}
	if p.Status != resp.StatusCode {
		t.Errorf("problem status %d, response status %d", p.Status, resp.StatusCode)
	}
	if p.Type != problemTypeBase+p.Code {
		t.Errorf("problem type %q does not match code %q", p.Type, p.Code)
	}
	if got := resp.Header.Get(requestIDHeader); p.RequestID != got || got == "" {
		t.Errorf("problem request_id %q, header %q", p.RequestID, got)
	}
	return p
}

// freeAddr returns a loopback address nothing listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// eventually retries check until it passes or 3s have gone by. The gateway logs and counts a
// request after the client already has the response, so tests wait for those effects.
func eventually(t *testing.T, check func() error) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitAnswering waits until the gateway at url answers /api/health (with any status).
func waitAnswering(t *testing.T, url string) {
	t.Helper()
	eventually(t, func() error {
		resp, err := http.Get(url + "/api/health")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
}

// accessLogLine waits for the access log line of the request with id.
func (gw *testGateway) accessLogLine(t *testing.T, id string) map[string]any {
	t.Helper()
	var line map[string]any
	eventually(t, func() error {
		for _, l := range gw.log.logLines(t) {
			if l["msg"] == "request" && l["request_id"] == id {
				line = l
				return nil
			}
		}
		return fmt.Errorf("no access log line for request %q in:\n%s", id, gw.log.String())
	})
	return line
}
