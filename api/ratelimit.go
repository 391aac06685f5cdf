package main

import (
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// sweepEvery bounds how long idle clients' buckets stay in memory.
const sweepEvery = time.Minute

// rateLimiter is a token bucket per client IP. IPv6 clients are grouped by /64, since one host
// usually owns a whole /64 and could otherwise rotate through addresses to dodge the limit.
type rateLimiter struct {
	rate  float64 // tokens per second
	burst float64
	now   func() time.Time

	mu        sync.Mutex
	buckets   map[netip.Addr]*bucket
	lastSweep time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

// newRateLimiter returns nil when rate is 0: the limiter is off.
func newRateLimiter(rate, burst float64, now func() time.Time) *rateLimiter {
	if rate <= 0 {
		return nil
	}
	return &rateLimiter{rate: rate, burst: burst, now: now, buckets: map[netip.Addr]*bucket{}, lastSweep: now()}
}

// allow takes a token for client, or says how long until one is there.
func (l *rateLimiter) allow(client netip.Addr) (bool, time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) >= sweepEvery {
		l.sweep(now)
	}
	b, ok := l.buckets[client]
	if !ok {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[client] = b
	}
	if elapsed := now.Sub(b.last).Seconds(); elapsed > 0 {
		b.tokens = math.Min(l.burst, b.tokens+elapsed*l.rate)
	}
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
}

// sweep drops buckets that have refilled: forgetting them changes nothing for their clients.
func (l *rateLimiter) sweep(now time.Time) {
	full := time.Duration(l.burst / l.rate * float64(time.Second))
	for k, b := range l.buckets {
		if now.Sub(b.last) >= full {
			delete(l.buckets, k)
		}
	}
	l.lastSweep = now
}

// check answers 429 and returns false when r's client is over its rate.
func (l *rateLimiter) check(w http.ResponseWriter, r *http.Request) bool {
	if l == nil {
		return true
	}
	ok, wait := l.allow(clientKey(r.RemoteAddr))
	if ok {
		return true
	}
	secs := max(1, int(math.Ceil(wait.Seconds())))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	writeProblem(w, r, http.StatusTooManyRequests, codeRateLimited,
		"Too many requests from this client; retry after "+strconv.Itoa(secs)+"s.")
	return false
}

// clientKey is the remote IP of the TCP connection. X-Forwarded-For is ignored on purpose: any
// client can write it, so trusting it would let everyone pick their own bucket.
func clientKey(remoteAddr string) netip.Addr {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		host, _, splitErr := net.SplitHostPort(remoteAddr)
		if splitErr != nil {
			host = remoteAddr
		}
		addr, err := netip.ParseAddr(host)
		if err != nil {
			return netip.Addr{} // every unparsable peer shares one bucket
		}
		ap = netip.AddrPortFrom(addr, 0)
	}
	addr := ap.Addr().Unmap().WithZone("")
	if addr.Is6() {
		p, _ := addr.Prefix(64)
		return p.Addr()
	}
	return addr
}
