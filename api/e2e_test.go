package main

// The end-to-end test drives the gateway in front of the real jessy-core. It runs only when
// JESSY_BIN names a built jessy binary (absolute, or relative to api/ or to the repository root):
//
//	JESSY_BIN=$PWD/target/release/jessy make test-go

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// jessyBin returns the jessy binary to test against, or skips.
func jessyBin(t *testing.T) string {
	t.Helper()
	p := os.Getenv("JESSY_BIN")
	if p == "" {
		t.Skip("JESSY_BIN is not set: skipping the end-to-end test against jessy-core")
	}
	candidates := []string{p}
	if !filepath.IsAbs(p) {
		candidates = append(candidates, filepath.Join("..", p))
	}
	for _, c := range candidates {
		if fi, err := os.Stat(c); err == nil && !fi.IsDir() {
			abs, err := filepath.Abs(c)
			if err != nil {
				t.Fatal(err)
			}
			return abs
		}
	}
	// Set but wrong is a broken setup, not a reason to pass quietly.
	t.Fatalf("JESSY_BIN=%q: no such file (looked at %q)", p, candidates)
	return ""
}

// coreProcess is a running `jessy serve`.
type coreProcess struct {
	cmd    *exec.Cmd
	out    *syncBuffer
	exited chan struct{}
}

func startCore(t *testing.T, bin, addr, dataDir, token string) *coreProcess {
	t.Helper()
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(os.Environ(),
		"JESSY_ADDR="+addr,
		"MMAP_BASE_PATH="+dataDir,
		"JESSY_API_TOKEN="+token,
	)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s serve: %v", bin, err)
	}
	c := &coreProcess{cmd: cmd, out: out, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() {
		c.kill()
		if t.Failed() {
			t.Logf("jessy-core output:\n%s", out.String())
		}
	})

	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-c.exited:
			t.Fatalf("jessy serve exited during start-up: %v\n%s", cmd.ProcessState, out.String())
		default:
		}
		resp, err := http.Get("http://" + addr + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return c
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("jessy-core not healthy on %s after 30s (last error %v)\n%s", addr, err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *coreProcess) kill() {
	select {
	case <-c.exited:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.exited
}

func TestEndToEnd(t *testing.T) {
	bin := jessyBin(t)
	const token = "e2e-token"
	addr := freeAddr(t)
	dataDir := t.TempDir()
	core := startCore(t, bin, addr, dataDir, token)

	cfg := testConfig(t, "http://"+addr)
	cfg.Token = token
	gw := startGateway(t, cfg)
	auth := http.Header{"Authorization": {"Bearer " + token}}
	keys := gw.URL + "/api/v1/dimensions/default/keys/"

	call := func(method, url string, body []byte, hdr http.Header) (*http.Response, []byte) {
		t.Helper()
		h := http.Header{}
		for k, v := range auth {
			h[k] = v
		}
		for k, v := range hdr {
			h[k] = v
		}
		var r io.Reader
		if body != nil {
			r = bytes.NewReader(body)
		}
		return do(t, method, url, r, h)
	}
	expect := func(what string, resp *http.Response, body []byte, status int) {
		t.Helper()
		if resp.StatusCode != status {
			t.Fatalf("%s: status %d, want %d (body %q)", what, resp.StatusCode, status, body)
		}
	}

	t.Run("token", func(t *testing.T) {
		resp, body := do(t, "GET", keys+"anything", nil, nil)
		expect("no token", resp, body, http.StatusUnauthorized)
		decodeProblem(t, resp, body)
		resp, body = do(t, "GET", keys+"anything", nil, http.Header{"Authorization": {"Bearer wrong"}})
		expect("wrong token", resp, body, http.StatusUnauthorized)

		// A gateway without the token passes the request on; jessy-core refuses it itself.
		open := startGateway(t, testConfig(t, "http://"+addr))
		resp, body = do(t, "GET", open.URL+"/api/v1/dimensions/default/keys/anything", nil, nil)
		expect("no token, core checks", resp, body, http.StatusUnauthorized)
	})

	t.Run("put get delete", func(t *testing.T) {
		resp, body := call("PUT", keys+"e2e/hello", []byte("world"), nil)
		expect("PUT", resp, body, http.StatusNoContent)
		if resp.Header.Get("ETag") == "" {
			t.Error("PUT: no ETag")
		}
		resp, body = call("GET", keys+"e2e/hello", nil, nil)
		expect("GET", resp, body, http.StatusOK)
		if string(body) != "world" || resp.Header.Get("ETag") == "" {
			t.Errorf("GET: body %q, ETag %q", body, resp.Header.Get("ETag"))
		}
		resp, body = call("DELETE", keys+"e2e/hello", nil, nil)
		expect("DELETE", resp, body, http.StatusNoContent)

		resp, body = call("GET", keys+"e2e/hello", nil, http.Header{requestIDHeader: {"e2e-missing"}})
		expect("GET after DELETE", resp, body, http.StatusNotFound)
		// jessy-core's own problem passes through, carrying the gateway's request ID.
		if p := decodeProblem(t, resp, body); p.RequestID != "e2e-missing" {
			t.Errorf("request_id %q, want e2e-missing", p.RequestID)
		}
	})

	t.Run("encoded and binary keys", func(t *testing.T) {
		value := []byte{0, 1, 2, 0xff, '\n'}
		for _, key := range []string{"a%2Fb", "bin%00%FF", "sp%20ace"} {
			resp, body := call("PUT", keys+key, value, nil)
			expect("PUT "+key, resp, body, http.StatusNoContent)
			resp, body = call("GET", keys+key, nil, nil)
			expect("GET "+key, resp, body, http.StatusOK)
			if !bytes.Equal(body, value) {
				t.Errorf("GET %s: %q, want %q", key, body, value)
			}
		}
		// a%2Fb is the one-segment key "a/b": the same as the raw path a/b.
		resp, body := call("GET", keys+"a/b", nil, nil)
		expect("GET a/b", resp, body, http.StatusOK)
	})

	t.Run("large value", func(t *testing.T) {
		value := bytes.Repeat([]byte("0123456789abcdef"), (4<<20)/16)
		resp, body := call("PUT", keys+"big", value, nil)
		expect("PUT 4 MiB", resp, body, http.StatusNoContent)
		resp, body = call("GET", keys+"big", nil, nil)
		expect("GET 4 MiB", resp, body, http.StatusOK)
		if !bytes.Equal(body, value) {
			t.Errorf("got %d bytes back, want the same %d", len(body), len(value))
		}
	})

	t.Run("scan", func(t *testing.T) {
		for _, k := range []string{"scan/1", "scan/2", "other"} {
			resp, body := call("PUT", keys+k, []byte("v-"+k), nil)
			expect("PUT "+k, resp, body, http.StatusNoContent)
		}
		resp, body := call("GET", gw.URL+"/api/v1/dimensions/default/scan?prefix=scan%2F", nil, nil)
		expect("scan", resp, body, http.StatusOK)
		var page struct {
			Items []struct {
				Key   string `json:"key"`
				Value string `json:"value"`
			} `json:"items"`
			NextCursor *string `json:"next_cursor"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			t.Fatalf("scan body %q: %v", body, err)
		}
		var fields map[string]json.RawMessage
		json.Unmarshal(body, &fields)
		if _, ok := fields["next_cursor"]; !ok {
			t.Errorf("scan: no next_cursor in %s", body)
		}
		got := fmt.Sprint(page.Items)
		if got != "[{scan/1 v-scan/1} {scan/2 v-scan/2}]" {
			t.Errorf("scan items %s", got)
		}
	})

	t.Run("query and path as sent", func(t *testing.T) {
		for _, k := range []string{"semi;1", "semi2"} {
			resp, body := call("PUT", keys+k, []byte("v"), nil)
			expect("PUT "+k, resp, body, http.StatusNoContent)
		}
		// jessy-core reads prefix=semi; literally; a gateway that dropped the parameter would
		// list the whole dimension.
		resp, body := call("GET", gw.URL+"/api/v1/dimensions/default/scan?prefix=semi;&keys_only=true", nil, nil)
		expect("scan prefix=semi;", resp, body, http.StatusOK)
		if !strings.Contains(string(body), `"semi;1"`) || strings.Contains(string(body), `"semi2"`) {
			t.Errorf("scan prefix=semi;: %s", body)
		}
		resp, body = call("GET", gw.URL+"/api/v1/dimensions/default/scan?prefix=%zz", nil, nil)
		expect("scan prefix=%zz", resp, body, http.StatusBadRequest)

		// '{' sent raw next to %2F: the one key "zz/{" in default, not "zz{" in a dimension
		// "default/keys".
		host := strings.TrimPrefix(gw.URL, "http://")
		resp, body = rawExchange(t, host, "PUT /api/v1/dimensions/default/keys/zz%2F{ HTTP/1.1\r\nHost: "+host+
			"\r\nAuthorization: Bearer "+token+"\r\nContent-Length: 5\r\nConnection: close\r\n\r\nbrace")
		expect("PUT zz%2F{ raw", resp, body, http.StatusNoContent)
		resp, body = call("GET", keys+"zz%2F%7B", nil, nil)
		expect("GET zz%2F%7B", resp, body, http.StatusOK)
		if string(body) != "brace" {
			t.Errorf("GET zz%%2F%%7B: %q", body)
		}
	})

	t.Run("new dimension's Location", func(t *testing.T) {
		resp, body := call("PUT", gw.URL+"/api/v1/dimensions/e2enew", nil, nil)
		expect("PUT dimension", resp, body, http.StatusCreated)
		if loc := resp.Header.Get("Location"); loc != "/api/v1/dimensions/e2enew" {
			t.Errorf("Location %q, want /api/v1/dimensions/e2enew", loc)
		}
	})

	t.Run("large body refused early", func(t *testing.T) {
		// Over jessy-core's value limit (MMAP_MAX_SIZE, 10 MiB) and under the gateway's: jessy-core
		// answers before reading it all. A few rounds, as writing the rest used to lose a race.
		value := make([]byte, 12<<20)
		for i := range 3 {
			resp, body := call("PUT", keys+"too-big", value, nil)
			if resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Fatalf("round %d: status %d, want jessy-core's 413 (body %q)", i, resp.StatusCode, body)
			}
		}
	})

	t.Run("batch", func(t *testing.T) {
		resp, body := call("PUT", keys+"b", []byte("doomed"), nil)
		expect("PUT b", resp, body, http.StatusNoContent)
		ops := []byte(`{"ops":[{"op":"put","key":"a","value":"1"},{"op":"delete","key":"b"}]}`)
		resp, body = call("POST", gw.URL+"/api/v1/dimensions/default/batch", ops, http.Header{"Content-Type": {"application/json"}})
		expect("batch", resp, body, http.StatusOK)
		var res struct{ Applied int }
		if err := json.Unmarshal(body, &res); err != nil || res.Applied != 2 {
			t.Errorf("batch answer %q", body)
		}
		resp, body = call("GET", keys+"a", nil, nil)
		expect("GET a", resp, body, http.StatusOK)
		resp, body = call("GET", keys+"b", nil, nil)
		expect("GET b", resp, body, http.StatusNotFound)
	})

	t.Run("conditional put", func(t *testing.T) {
		create := http.Header{"If-None-Match": {"*"}}
		resp, body := call("PUT", keys+"cond", []byte("first"), create)
		expect("first If-None-Match", resp, body, http.StatusNoContent)
		resp, body = call("PUT", keys+"cond", []byte("second"), create)
		expect("second If-None-Match", resp, body, http.StatusPreconditionFailed)
		resp, body = call("GET", keys+"cond", nil, nil)
		if string(body) != "first" {
			t.Errorf("value %q after a failed conditional PUT", body)
		}
	})

	t.Run("snapshot", func(t *testing.T) {
		resp, body := call("GET", gw.URL+"/api/v1/snapshot", nil, nil)
		expect("snapshot", resp, body, http.StatusOK)
		if len(body) < 2 || body[0] != 0x1f || body[1] != 0x8b {
			t.Errorf("snapshot does not start with the gzip magic: % x", body[:min(len(body), 8)])
		}
	})

	t.Run("core killed and restarted", func(t *testing.T) {
		core.kill()
		start := time.Now()
		resp, body := call("GET", keys+"a", nil, nil)
		expect("core down", resp, body, http.StatusBadGateway)
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("502 took %v", took)
		}
		decodeProblem(t, resp, body)
		resp, body = do(t, "GET", gw.URL+"/api/health", nil, nil)
		expect("health, core down", resp, body, http.StatusServiceUnavailable)

		startCore(t, bin, addr, dataDir, token)
		resp, body = do(t, "GET", gw.URL+"/api/health", nil, nil)
		expect("health, core back", resp, body, http.StatusOK)
		resp, body = call("GET", keys+"a", nil, nil)
		expect("GET a after restart", resp, body, http.StatusOK)
		if string(body) != "1" {
			t.Errorf("a = %q after restart, want 1", body)
		}
		resp, body = call("GET", keys+"cond", nil, nil)
		if resp.StatusCode != http.StatusOK || string(body) != "first" {
			t.Errorf("cond after restart: %d %q", resp.StatusCode, body)
		}
	})

	// Keys never show up in the gateway's metrics, even after a real session.
	eventually(t, func() error {
		if m := scrape(t, gw.URL); strings.Contains(m, "e2e/hello") || !strings.Contains(m, labelKey) {
			return fmt.Errorf("unexpected metrics:\n%s", m)
		}
		return nil
	})
}
