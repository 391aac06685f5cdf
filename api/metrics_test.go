package main

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

func scrape(t *testing.T, gatewayURL string) string {
	t.Helper()
	resp, body := do(t, "GET", gatewayURL+"/api/metrics", nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/metrics: status %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type %q", ct)
	}
	return string(body)
}

// sampleLine is one sample of the Prometheus text format.
var sampleLine = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? ([-+]?[0-9.eE+-]+|\+Inf|NaN)$`)

func TestMetrics(t *testing.T) {
	core := startFakeCore(t, nil)
	gw := startGateway(t, testConfig(t, core.URL))
	for _, p := range []string{
		"/api/v1/dimensions/default/keys/secret-key-1",
		"/api/v1/dimensions/default/keys/secret-key-2",
		"/api/v1/dimensions/default/scan?prefix=x",
		"/nowhere/secret-path",
	} {
		do(t, "GET", gw.URL+p, nil, nil)
	}
	do(t, "PUT", gw.URL+"/api/v1/dimensions/default/keys/secret-key-3", strings.NewReader("v"), nil)
	do(t, "BREW", gw.URL+"/api/v1/dimensions/default/keys/secret-key-4", nil, nil)
	var text string
	eventually(t, func() error {
		text = scrape(t, gw.URL)
		for _, want := range wantLines {
			if !strings.Contains(text, want) {
				return fmt.Errorf("metrics lack %s in:\n%s", want, text)
			}
		}
		return nil
	})
	if strings.Contains(text, "secret") {
		t.Error("a raw path leaked into the metrics")
	}
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		if !strings.HasPrefix(line, "#") && !sampleLine.MatchString(line) {
			t.Errorf("not a Prometheus sample line: %q", line)
		}
	}
}

var wantLines = []string{
	`jessy_api_requests_total{method="GET",route="/api/v1/dimensions/{dim}/keys/{key}",code="200"} 2`,
	`jessy_api_requests_total{method="PUT",route="/api/v1/dimensions/{dim}/keys/{key}",code="200"} 1`,
	`jessy_api_requests_total{method="OTHER",route="/api/v1/dimensions/{dim}/keys/{key}",code="200"} 1`,
	`jessy_api_requests_total{method="GET",route="/api/v1/dimensions/{dim}/scan",code="200"} 1`,
	`jessy_api_requests_total{method="GET",route="unmatched",code="404"} 1`,
	`# TYPE jessy_api_request_duration_seconds histogram`,
	`jessy_api_request_duration_seconds_bucket{method="GET",route="/api/v1/dimensions/{dim}/keys/{key}",le="+Inf"} 2`,
	`jessy_api_request_duration_seconds_count{method="GET",route="/api/v1/dimensions/{dim}/keys/{key}"} 2`,
	`jessy_api_upstream_duration_seconds_count{route="/api/v1/dimensions/{dim}/keys/{key}"} 4`,
	`jessy_api_response_bytes_total{route="/api/v1/dimensions/{dim}/keys/{key}"} 8`,
	// The scrape itself is in flight while it is written.
	"jessy_api_requests_in_flight 1",
	"# TYPE jessy_api_upstream_errors_total counter",
}

func TestHistogramBuckets(t *testing.T) {
	v := newVec("h", "histogram", "help", []float64{0.1, 1}, "l")
	for _, x := range []float64{0.05, 0.1, 0.5, 2} {
		v.observe(x, "a")
	}
	var b strings.Builder
	v.write(&b)
	want := `# HELP h help
# TYPE h histogram
h_bucket{l="a",le="0.1"} 2
h_bucket{l="a",le="1"} 3
h_bucket{l="a",le="+Inf"} 4
h_sum{l="a"} 2.65
h_count{l="a"} 4
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestEscapeLabel(t *testing.T) {
	if got := escapeLabel("a\"b\\c\nd"); got != `a\"b\\c\nd` {
		t.Errorf("escapeLabel = %q", got)
	}
}
