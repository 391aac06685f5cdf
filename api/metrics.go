package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// The gateway's metrics are written in the Prometheus text format by hand: the handful of series
// here do not justify client_golang and its dependency tree. Every label value comes from a
// closed set (route templates, methods, status codes), so series cannot grow without bound.

// durationBuckets reach 5 minutes because a snapshot download is one request.
var durationBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}

type metrics struct {
	requests       *vec
	duration       *vec
	responseBytes  *vec
	upstream       *vec
	upstreamErrors *vec
	inFlight       atomic.Int64
}

func newMetrics() *metrics {
	return &metrics{
		requests: newVec("jessy_api_requests_total", "counter",
			"Requests answered by the gateway, by method, route template and status code.",
			nil, "method", "route", "code"),
		duration: newVec("jessy_api_request_duration_seconds", "histogram",
			"Time from request received to response finished, by method and route template.",
			durationBuckets, "method", "route"),
		responseBytes: newVec("jessy_api_response_bytes_total", "counter",
			"Response body bytes sent to clients, by route template.",
			nil, "route"),
		upstream: newVec("jessy_api_upstream_duration_seconds", "histogram",
			"Time jessy-core took to send response headers (or to fail), by route template.",
			durationBuckets, "route"),
		upstreamErrors: newVec("jessy_api_upstream_errors_total", "counter",
			"Forwarded requests that got no response from jessy-core, by the error code answered.",
			nil, "code"),
	}
}

// codeLabels holds the label of every valid status code, so that counting a response does
// not format one.
var codeLabels = func() []string {
	l := make([]string, 1000)
	for i := 100; i < len(l); i++ {
		l[i] = strconv.Itoa(i)
	}
	return l
}()

func codeLabel(code int) string {
	if code >= 100 && code < len(codeLabels) {
		return codeLabels[code]
	}
	return strconv.Itoa(code)
}

// methodLabel folds arbitrary methods into a fixed set so a client cannot mint series.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodPost, http.MethodDelete,
		http.MethodPatch, http.MethodOptions:
		return m
	}
	return "OTHER"
}

func (m *metrics) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	bw := bufio.NewWriter(w)
	m.requests.write(bw)
	m.duration.write(bw)
	m.responseBytes.write(bw)
	m.upstream.write(bw)
	m.upstreamErrors.write(bw)
	fmt.Fprintf(bw, "# HELP jessy_api_requests_in_flight Requests being served right now.\n"+
		"# TYPE jessy_api_requests_in_flight gauge\njessy_api_requests_in_flight %d\n", m.inFlight.Load())
	fmt.Fprintf(bw, "# HELP jessy_api_goroutines Goroutines in the gateway process.\n"+
		"# TYPE jessy_api_goroutines gauge\njessy_api_goroutines %d\n", runtime.NumGoroutine())
	fmt.Fprintf(bw, "# HELP jessy_api_build_info The Go version that built the gateway.\n"+
		"# TYPE jessy_api_build_info gauge\njessy_api_build_info{go_version=\"%s\"} 1\n",
		escapeLabel(runtime.Version()))
	_ = bw.Flush()
}

// vec is a family of counters or histograms sharing label names.
type vec struct {
	name, kind, help string
	labels           []string
	buckets          []float64

	mu     sync.Mutex
	series map[seriesKey]*series
}

// seriesKey holds a series' label values. An array, unlike the values joined into a string,
// is a map key that costs no allocation per lookup; no vec has more than three labels.
type seriesKey [3]string

type series struct {
	values []string
	value  float64  // counter
	counts []uint64 // histogram, per bucket, not cumulative
	sum    float64
	count  uint64
}

func newVec(name, kind, help string, buckets []float64, labels ...string) *vec {
	if len(labels) > len(seriesKey{}) {
		panic("metrics: too many labels for " + name)
	}
	return &vec{name: name, kind: kind, help: help, labels: labels, buckets: buckets, series: map[seriesKey]*series{}}
}

// get returns the series for values; v.mu must be held.
func (v *vec) get(values []string) *series {
	var key seriesKey
	copy(key[:], values)
	s, ok := v.series[key]
	if !ok {
		s = &series{values: slices.Clone(values)}
		if v.buckets != nil {
			s.counts = make([]uint64, len(v.buckets))
		}
		v.series[key] = s
	}
	return s
}

func (v *vec) add(delta float64, values ...string) {
	v.mu.Lock()
	v.get(values).value += delta
	v.mu.Unlock()
}

func (v *vec) observe(x float64, values ...string) {
	v.mu.Lock()
	s := v.get(values)
	if i, _ := slices.BinarySearch(v.buckets, x); i < len(s.counts) {
		s.counts[i]++
	}
	s.sum += x
	s.count++
	v.mu.Unlock()
}

func (v *vec) write(w io.Writer) {
	v.mu.Lock()
	defer v.mu.Unlock()
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", v.name, v.help, v.name, v.kind)
	keys := make([]seriesKey, 0, len(v.series))
	for k := range v.series {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b seriesKey) int { return slices.Compare(a[:], b[:]) })
	for _, k := range keys {
		s := v.series[k]
		labels := v.labelPairs(s.values)
		if v.kind != "histogram" {
			fmt.Fprintf(w, "%s{%s} %s\n", v.name, labels, formatFloat(s.value))
			continue
		}
		var cum uint64
		for i, le := range v.buckets {
			cum += s.counts[i]
			fmt.Fprintf(w, "%s_bucket{%s,le=\"%s\"} %d\n", v.name, labels, formatFloat(le), cum)
		}
		fmt.Fprintf(w, "%s_bucket{%s,le=\"+Inf\"} %d\n", v.name, labels, s.count)
		fmt.Fprintf(w, "%s_sum{%s} %s\n", v.name, labels, formatFloat(s.sum))
		fmt.Fprintf(w, "%s_count{%s} %d\n", v.name, labels, s.count)
	}
}

func (v *vec) labelPairs(values []string) string {
	var b strings.Builder
	for i, name := range v.labels {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(name)
		b.WriteString(`="`)
		b.WriteString(escapeLabel(values[i]))
		b.WriteByte('"')
	}
	return b.String()
}

func escapeLabel(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

func formatFloat(f float64) string {
	return strconv.FormatFloat(f, 'g', -1, 64)
}
