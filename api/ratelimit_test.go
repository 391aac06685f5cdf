package main

import (
	"net/http"
	"net/netip"
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestRateLimiterBucket(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	l := newRateLimiter(2, 3, clock.now) // 2/s, burst 3
	a := netip.MustParseAddr("192.0.2.1")
	b := netip.MustParseAddr("192.0.2.2")

	steps := []struct {
		advance  time.Duration
		client   netip.Addr
		want     bool
		wantWait time.Duration
	}{
		{0, a, true, 0},
		{0, a, true, 0},
		{0, a, true, 0},
		{0, a, false, 500 * time.Millisecond},
		{0, b, true, 0}, // clients do not share buckets
		{250 * time.Millisecond, a, false, 250 * time.Millisecond},
		{250 * time.Millisecond, a, true, 0},
		{10 * time.Second, a, true, 0}, // refills only up to the burst
		{0, a, true, 0},
		{0, a, true, 0},
		{0, a, false, 500 * time.Millisecond},
	}
	for i, s := range steps {
		clock.advance(s.advance)
		ok, wait := l.allow(s.client)
		if ok != s.want || (!ok && (wait-s.wantWait).Abs() > time.Millisecond) {
			t.Errorf("step %d: allow = %v, %v; want %v, %v", i, ok, wait, s.want, s.wantWait)
		}
	}
}

func TestRateLimiterSweep(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	l := newRateLimiter(1, 1, clock.now)
	for i := range 100 {
		l.allow(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}))
	}
	clock.advance(2 * sweepEvery)
	l.allow(netip.MustParseAddr("198.51.100.1"))
	if n := len(l.buckets); n != 1 {
		t.Errorf("%d buckets after the sweep, want 1", n)
	}
}

func TestRateLimiterOff(t *testing.T) {
	if l := newRateLimiter(0, 1, time.Now); l != nil {
		t.Fatal("a rate of 0 must turn the limiter off")
	}
	var l *rateLimiter
	if !l.check(nil, nil) {
		t.Error("a nil limiter must let everything through")
	}
}

func TestClientKey(t *testing.T) {
	tests := []struct{ remote, want string }{
		{"192.0.2.7:5555", "192.0.2.7"},
		{"[::ffff:192.0.2.7]:5555", "192.0.2.7"},
		{"[2001:db8:1:2:3:4:5:6]:80", "2001:db8:1:2::"},
		{"[2001:db8:1:2:ffff::1]:80", "2001:db8:1:2::"},
		{"[fe80::1%eth0]:80", "fe80::"},
		{"192.0.2.7", "192.0.2.7"},
		{"garbage", "invalid IP"},
	}
	for _, tt := range tests {
		if got := clientKey(tt.remote).String(); got != tt.want {
			t.Errorf("clientKey(%q) = %q, want %q", tt.remote, got, tt.want)
		}
	}
}

func TestRateLimitHTTP(t *testing.T) {
	core := startFakeCore(t, nil)
	cfg := testConfig(t, core.URL)
	cfg.RateLimit = 0.5 // one token every 2s: the test never refills by accident
	cfg.RateBurst = 2
	gw := startGateway(t, cfg)
	url := gw.URL + "/api/v1/dimensions/default/keys/k"

	for i, want := range []int{200, 200, 429, 429} {
		resp, body := do(t, "GET", url, nil, nil)
		if resp.StatusCode != want {
			t.Fatalf("request %d: status %d, want %d", i, resp.StatusCode, want)
		}
		if want == http.StatusTooManyRequests {
			if ra := resp.Header.Get("Retry-After"); ra != "1" && ra != "2" {
				t.Errorf("Retry-After %q, want 1 or 2", ra)
			}
			if p := decodeProblem(t, resp, body); p.Code != codeRateLimited {
				t.Errorf("code %q", p.Code)
			}
		}
	}
	// Probes and scrapes are never throttled.
	for _, path := range []string{"/api/health", "/api/metrics"} {
		if resp, _ := do(t, "GET", gw.URL+path, nil, nil); resp.StatusCode != http.StatusOK {
			t.Errorf("%s: status %d while the client is limited", path, resp.StatusCode)
		}
	}
}

func TestRateLimitBeforeAuth(t *testing.T) {
	core := startFakeCore(t, nil)
	cfg := testConfig(t, core.URL)
	cfg.RateLimit, cfg.RateBurst, cfg.Token = 0.5, 1, "s3cret"
	gw := startGateway(t, cfg)
	url := gw.URL + "/api/v1/dimensions"
	bad := http.Header{"Authorization": {"Bearer guess"}}
	if resp, _ := do(t, "GET", url, nil, bad); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("first guess: %d", resp.StatusCode)
	}
	if resp, _ := do(t, "GET", url, nil, bad); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("second guess: %d, want 429: token guessing must be throttled", resp.StatusCode)
	}
}
