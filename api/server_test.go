package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestSlowHeadersCutOff: a client dribbling its headers a byte at a time is dropped at
// ReadHeaderTimeout while another client is served normally.
func TestSlowHeadersCutOff(t *testing.T) {
	core := startFakeCore(t, nil)
	cfg := testConfig(t, core.URL)
	cfg.ReadHeaderTimeout = 300 * time.Millisecond
	gw := startGateway(t, cfg)

	conn, err := net.Dial("tcp", strings.TrimPrefix(gw.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	var sent atomic.Int64
	go func() {
		// At 50ms a byte this would take over 3s to finish.
		for _, b := range []byte("GET /api/health HTTP/1.1\r\nHost: gateway\r\nX-Slow: 1\r\nUser-Agent: loris\r\n\r\n") {
			if _, err := conn.Write([]byte{b}); err != nil {
				return
			}
			sent.Add(1)
			time.Sleep(50 * time.Millisecond)
		}
	}()

	// The slow client does not hold up anyone else.
	resp, _ := do(t, "GET", gw.URL+"/api/health", nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("concurrent request: status %d", resp.StatusCode)
	}

	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(conn)
	took := time.Since(start)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("connection still open after %v", took)
	}
	if strings.Contains(string(got), "200 OK") {
		t.Fatalf("slow client was served: %q", got)
	}
	// The server's clock starts at accept, a little before ours.
	if took < cfg.ReadHeaderTimeout-100*time.Millisecond || took > 2*time.Second {
		t.Errorf("cut off after %v, want about %v", took, cfg.ReadHeaderTimeout)
	}
	if n := sent.Load(); n >= 70 {
		t.Errorf("client got to send %d bytes: the headers were complete", n)
	}
}

// TestWriteTimeoutIsPerWrite: a download that keeps moving may take longer than the write
// timeout; a client that stops reading is cut off, and jessy-core's side is released too.
func TestWriteTimeoutIsPerWrite(t *testing.T) {
	coreWriteFailed := make(chan struct{}, 1)
	core := startFakeCore(t, func(w http.ResponseWriter, r *http.Request) {
		size := int64(4 << 20)
		if r.URL.Query().Get("huge") != "" {
			size = 1 << 30
		}
		if _, err := io.CopyN(w, &pattern{}, size); err != nil {
			coreWriteFailed <- struct{}{}
		}
	})
	cfg := testConfig(t, core.URL)
	cfg.WriteTimeout = time.Second
	gw := startGateway(t, cfg)

	t.Run("slow but steady reader finishes", func(t *testing.T) {
		resp, err := http.Get(gw.URL + "/api/v1/snapshot")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		start := time.Now()
		// 256 KiB every 150ms: 4 MiB take about 2.4s, over twice the write timeout, while no
		// single write waits for more than about 150ms.
		var n int64
		buf := make([]byte, 256<<10)
		for {
			m, err := io.ReadFull(resp.Body, buf)
			n += int64(m)
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				break
			}
			if err != nil {
				t.Fatalf("after %d bytes: %v", n, err)
			}
			time.Sleep(150 * time.Millisecond)
		}
		if n != 4<<20 {
			t.Errorf("got %d bytes", n)
		}
		if took := time.Since(start); took < cfg.WriteTimeout {
			t.Logf("download took only %v; the test proves less than it should", took)
		}
	})

	t.Run("stalled reader is cut off", func(t *testing.T) {
		resp, err := http.Get(gw.URL + "/api/v1/snapshot?huge=1")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		// Read nothing: buffers fill, the gateway's writes stall, the deadline fires.
		select {
		case <-coreWriteFailed:
		case <-time.After(10 * time.Second):
			t.Fatal("jessy-core's stream was not released 10s after the client stopped reading")
		}
	})
}

// TestShutdownDrains: on stop, an in-flight request finishes, new connections are refused and
// serve returns cleanly.
func TestShutdownDrains(t *testing.T) {
	inCore := make(chan struct{})
	core := startFakeCore(t, func(w http.ResponseWriter, r *http.Request) {
		close(inCore)
		time.Sleep(500 * time.Millisecond)
		io.WriteString(w, "finished")
	})
	cfg := testConfig(t, core.URL)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	logs := &syncBuffer{}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- serve(ctx, cfg, slog.New(slog.NewJSONHandler(logs, nil)), ln) }()

	type result struct {
		status int
		body   string
		err    error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := http.Get(url + "/api/v1/dimensions/default/keys/slow")
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		done <- result{resp.StatusCode, string(b), err}
	}()
	<-inCore
	stop()

	r := <-done
	if r.err != nil || r.status != http.StatusOK || r.body != "finished" {
		t.Errorf("in-flight request: %d %q %v; want 200 finished", r.status, r.body, r.err)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("serve did not return")
	}
	if _, err := http.Get(url + "/api/health"); err == nil {
		t.Error("still accepting connections after shutdown")
	}
	if !strings.Contains(logs.String(), `"msg":"jessy-api stopped"`) {
		t.Errorf("no stop message in the log:\n%s", logs.String())
	}
}

// TestShutdownDrainDelay: for the drain delay after the stop, /api/health answers 503
// shutting_down while everything else is still served, so a load balancer polling it has time to
// stop sending new work; then the gateway stops as usual.
func TestShutdownDrainDelay(t *testing.T) {
	core := startFakeCore(t, nil)
	cfg := testConfig(t, core.URL)
	cfg.DrainDelay = 500 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- serve(ctx, cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)), ln) }()
	waitAnswering(t, url)

	start := time.Now()
	stop()
	// The gateway drains as soon as the stop arrives; a moment for serve to see it.
	eventually(t, func() error {
		resp, err := http.Get(url + "/api/health")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var h healthBody
		if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
			return err
		}
		if resp.StatusCode != http.StatusServiceUnavailable || h.Status != "shutting_down" {
			return fmt.Errorf("health %d %+v, want 503 shutting_down", resp.StatusCode, h)
		}
		return nil
	})
	if resp, body := do(t, "GET", url+"/api/v1/dimensions", nil, nil); resp.StatusCode != http.StatusOK || string(body) != "ok" {
		t.Errorf("during the drain delay: %d %q, want 200 ok", resp.StatusCode, body)
	}
	select {
	case err := <-served:
		took := time.Since(start)
		if err != nil {
			t.Errorf("serve: %v", err)
		}
		if took < cfg.DrainDelay || took > cfg.DrainDelay+2*time.Second {
			t.Errorf("stopped %v after the stop, want just after the %v drain delay", took, cfg.DrainDelay)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("serve did not return")
	}
}

// TestShutdownGraceRunsOut: a request longer than the grace period is cut off, and serve still
// returns without error.
func TestShutdownGraceRunsOut(t *testing.T) {
	inCore := make(chan struct{})
	core := startFakeCore(t, func(w http.ResponseWriter, r *http.Request) {
		close(inCore)
		select {
		case <-time.After(10 * time.Second):
		case <-r.Context().Done():
		}
	})
	cfg := testConfig(t, core.URL)
	cfg.ShutdownTimeout = 200 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- serve(ctx, cfg, slog.New(slog.NewJSONHandler(io.Discard, nil)), ln) }()
	go http.Get("http://" + ln.Addr().String() + "/api/v1/dimensions")
	<-inCore
	start := time.Now()
	stop()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("shutdown took %v with a %v grace period", took, cfg.ShutdownTimeout)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("serve did not return after the grace period")
	}
}

func TestAccessLog(t *testing.T) {
	core := startFakeCore(t, nil)
	gw := startGateway(t, testConfig(t, core.URL))
	do(t, "GET", gw.URL+"/api/v1/dimensions/default/keys/a%2Fb", nil, http.Header{requestIDHeader: {"log-me"}})

	line := gw.accessLogLine(t, "log-me")
	want := map[string]any{
		"level":  "INFO",
		"method": "GET",
		"route":  "/api/v1/dimensions/{dim}/keys/{key}",
		"path":   "/api/v1/dimensions/default/keys/a%2Fb",
		"status": float64(200),
		"bytes":  float64(2),
	}
	for k, v := range want {
		if line[k] != v {
			t.Errorf("%s = %v, want %v", k, line[k], v)
		}
	}
	if _, ok := line["duration_ms"].(float64); !ok {
		t.Errorf("duration_ms missing: %v", line)
	}
	if r, _ := line["remote"].(string); !strings.HasPrefix(r, "127.0.0.1:") {
		t.Errorf("remote = %v", line["remote"])
	}
}

// TestHeadersTooLarge: MaxHeaderBytes is enforced by http.Server with a 431.
func TestHeadersTooLarge(t *testing.T) {
	gw := startGateway(t, testConfig(t, "http://127.0.0.1:1"))
	conn, err := net.Dial("tcp", strings.TrimPrefix(gw.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	go func() {
		io.WriteString(conn, "GET /api/health HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 2*maxHeaderBytes)+"\r\n\r\n")
	}()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	status, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || !strings.Contains(status, "431") {
		t.Errorf("status line %q, %v; want 431", status, err)
	}
}

// TestSlowBody: a body that stops arriving is answered 408 at the read timeout, and jessy-core
// never sees a complete request.
func TestSlowBody(t *testing.T) {
	core := startFakeCore(t, nil)
	cfg := testConfig(t, core.URL)
	cfg.ReadTimeout = 300 * time.Millisecond
	gw := startGateway(t, cfg)

	conn, err := net.Dial("tcp", strings.TrimPrefix(gw.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "PUT /api/v1/dimensions/default/keys/k HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\npartial")
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("status %d, want 408 (body %q)", resp.StatusCode, body)
	}
	if p := decodeProblem(t, resp, body); p.Code != codeRequestTimeout {
		t.Errorf("code %q", p.Code)
	}
	if n := len(core.requests()); n != 0 {
		t.Errorf("core completed %d requests", n)
	}
}

// TestClientGoneFirst: a client that gives up is logged and counted as 499, not blamed on
// jessy-core.
func TestClientGoneFirst(t *testing.T) {
	inCore := make(chan struct{}, 1)
	core := startFakeCore(t, func(w http.ResponseWriter, r *http.Request) {
		inCore <- struct{}{}
		<-r.Context().Done()
	})
	gw := startGateway(t, testConfig(t, core.URL))
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", gw.URL+"/api/v1/dimensions", nil)
	req.Header.Set(requestIDHeader, "gone")
	go func() {
		<-inCore
		cancel()
	}()
	if _, err := http.DefaultClient.Do(req); err == nil {
		t.Fatal("request was not canceled")
	}
	if line := gw.accessLogLine(t, "gone"); line["status"] != float64(statusClientClosed) {
		t.Errorf("logged status %v, want 499", line["status"])
	}
	eventually(t, func() error {
		if m := scrape(t, gw.URL); !strings.Contains(m, `jessy_api_upstream_errors_total{code="client_closed_request"} 1`) {
			return fmt.Errorf("no client_closed_request in metrics:\n%s", m)
		}
		return nil
	})
}
