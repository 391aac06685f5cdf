package main

import (
	"encoding/json"
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

// buildGateway compiles the jessy-api binary into a temporary directory.
func buildGateway(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary; skipped with -short")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool on PATH")
	}
	bin := filepath.Join(t.TempDir(), "jessy-api")
	out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestSIGTERM runs the real binary: SIGTERM lets the in-flight request finish and exits 0.
func TestSIGTERM(t *testing.T) {
	bin := buildGateway(t)
	inCore := make(chan struct{}, 1)
	core := startFakeCore(t, func(w http.ResponseWriter, r *http.Request) {
		inCore <- struct{}{}
		time.Sleep(700 * time.Millisecond)
		io.WriteString(w, "finished")
	})
	addr := freeAddr(t)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "JESSY_API_ADDR="+addr, "JESSY_CORE_URL="+core.URL, "JESSY_API_TOKEN=")
	stdout := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = stdout, stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("jessy-api output:\n%s", stdout.String())
		}
	})

	url := "http://" + addr
	waitAnswering(t, url)

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
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if r := <-done; r.err != nil || r.status != http.StatusOK || r.body != "finished" {
		t.Errorf("in-flight request: %d %q %v; want 200 finished", r.status, r.body, r.err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit: %v, want status 0", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("jessy-api did not exit after SIGTERM")
	}

	var msgs []string
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		var m struct{ Msg string }
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("output line is not JSON: %q", line)
		}
		msgs = append(msgs, m.Msg)
	}
	want := []string{"jessy-api listening", "request", "shutting down", "request", "jessy-api stopped"}
	if strings.Join(msgs, ",") != strings.Join(want, ",") {
		t.Errorf("log messages %q, want %q", msgs, want)
	}
}
