package main

import (
	"net/http"
	"strings"
	"testing"
)

func TestValidRequestID(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"abc", true},
		{"A-Z_a.z-0.9", true},
		{"00-4bf92f3577b34da6:00f067aa0ba902b7", true},
		{"0123456789abcdef0123456789abcdef", true},
		{strings.Repeat("x", 128), true},
		{strings.Repeat("x", 129), false},
		{"", false},
		{"has space", false},
		{"a/b", false},
		{"quote\"", false},
		{"tab\t", false},
		{"é", false},
		{"{json}", false},
	}
	for _, tt := range tests {
		if got := validRequestID(tt.id); got != tt.want {
			t.Errorf("validRequestID(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
}

func TestRequestIDEndToEnd(t *testing.T) {
	core := startFakeCore(t, nil)
	gw := startGateway(t, testConfig(t, core.URL))

	tests := []struct {
		name     string
		incoming []string
		keep     bool
	}{
		{"accepted", []string{"client-trace.42_x"}, true},
		{"accepted with colons", []string{"span:1:2"}, true},
		{"missing", nil, false},
		{"too long", []string{strings.Repeat("a", 129)}, false},
		{"bad characters", []string{"id with spaces"}, false},
		{"non-ASCII", []string{"ïd"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, path := range []string{"/api/v1/dimensions", "/api/health", "/no/such/route"} {
				before := len(core.requests())
				hdr := http.Header{}
				if tt.incoming != nil {
					hdr[requestIDHeader] = tt.incoming
				}
				resp, _ := do(t, "GET", gw.URL+path, nil, hdr)
				got := resp.Header.Values(requestIDHeader)
				if len(got) != 1 {
					t.Fatalf("%s: X-Request-Id values %q, want one", path, got)
				}
				id := got[0]
				if tt.keep && id != tt.incoming[0] {
					t.Errorf("%s: id %q, want the incoming %q", path, id, tt.incoming[0])
				}
				if !tt.keep && (len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "") {
					t.Errorf("%s: generated id %q is not 32 hex digits", path, id)
				}
				// Health checks carry the ID to jessy-core too; a 404 never reaches it.
				seen := core.requests()
				if len(seen) > before && seen[len(seen)-1].Header.Get(requestIDHeader) != id {
					t.Errorf("%s: core saw id %q, client got %q", path, seen[len(seen)-1].Header.Get(requestIDHeader), id)
				}
				gw.accessLogLine(t, id)
			}
		})
	}
}

func TestNewRequestIDUnique(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := newRequestID()
		if !validRequestID(id) || len(id) != 32 || seen[id] {
			t.Fatalf("bad or repeated id %q", id)
		}
		seen[id] = true
	}
}

func FuzzRequestID(f *testing.F) {
	for _, s := range []string{"", "abc", "client-trace.42_x", strings.Repeat("a", 128), strings.Repeat("a", 129),
		"a b", "a\nb", "\x00", "é", "../../etc/passwd", `{"json":1}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		id := requestIDFor(in)
		if !validRequestID(id) {
			t.Fatalf("requestIDFor(%q) = %q, which is not valid", in, id)
		}
		if validRequestID(in) != (id == in) {
			t.Fatalf("requestIDFor(%q) = %q: kept an invalid id or replaced a valid one", in, id)
		}
		if len(id) > maxRequestIDLen || strings.ContainsAny(id, " \r\n\t\"\\/") {
			t.Fatalf("unsafe id %q", id)
		}
	})
}
