package main

import (
	"log/slog"
	"net/http"
	"net/http/httputil"
	"strconv"
	"sync/atomic"
	"time"
)

// Gateway is the jessy-api HTTP handler: its own /api/health and /api/metrics, and /api/v1/...
// forwarded to jessy-core.
type Gateway struct {
	cfg       Config
	log       *slog.Logger
	metrics   *metrics
	transport *coreTransport
	proxy     *httputil.ReverseProxy
	health    *healthChecker
	auth      *bearerAuth
	limiter   *rateLimiter
	draining  atomic.Bool
}

func New(cfg Config, log *slog.Logger) *Gateway {
	g := &Gateway{
		cfg:       cfg,
		log:       log,
		metrics:   newMetrics(),
		transport: newCoreTransport(cfg),
		auth:      newBearerAuth(cfg.Token),
		limiter:   newRateLimiter(cfg.RateLimit, cfg.burst(), time.Now),
	}
	g.proxy = g.newProxy()
	g.health = newHealthChecker(cfg.CoreURL, g.transport, cfg, log)
	return g
}

// NewServer wraps g in an http.Server with the configured timeouts.
//
// WriteTimeout stays 0 on purpose: http.Server's is a deadline for the whole response, which
// would cut off every snapshot download that takes longer. The gateway instead renews a write
// deadline before each write (see responseRecorder), so only a client that stops reading for
// cfg.WriteTimeout is cut off.
func (g *Gateway) NewServer() *http.Server {
	return &http.Server{
		Handler:           g,
		ReadHeaderTimeout: g.cfg.ReadHeaderTimeout,
		ReadTimeout:       g.cfg.ReadTimeout,
		WriteTimeout:      0,
		IdleTimeout:       g.cfg.IdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
	}
}

// Drain turns /api/health to 503 ahead of shutdown.
func (g *Gateway) Drain() { g.draining.Store(true) }

// Close drops pooled connections to jessy-core.
func (g *Gateway) Close() { g.transport.CloseIdleConnections() }

func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	g.metrics.inFlight.Add(1)
	defer g.metrics.inFlight.Add(-1)

	// Routing, logging and forwarding all use the path as the client sent it.
	escaped := requestPath(r.URL)
	route, kind := routeFor(escaped)
	// One allocation for what the request needs to carry.
	st := &requestState{
		info: reqInfo{id: requestIDFor(r.Header.Get(requestIDHeader)), route: route},
		rec:  responseRecorder{ResponseWriter: w, rc: *http.NewResponseController(w), writeTimeout: g.cfg.WriteTimeout},
	}
	info, rec := st.info, &st.rec
	r = r.WithContext(withReqInfo(r.Context(), &st.info))
	w.Header().Set(requestIDHeader, info.id)

	// finished stays false when the handler panics, as ReverseProxy does to abort a response
	// whose body broke off; the deferred log still runs and the panic goes on to http.Server.
	finished := false
	defer func() {
		rec.done()
		end := time.Now()
		g.observe(r, info, escaped, rec, end, end.Sub(start), !finished)
	}()

	switch kind {
	case routeHealth:
		if allowRead(rec, r) {
			g.serveHealth(rec, r)
		}
	case routeMetrics:
		if allowRead(rec, r) {
			g.metrics.ServeHTTP(rec, r)
		}
	case routeAPI:
		g.serveAPI(rec, r)
	default:
		writeProblem(rec, r, http.StatusNotFound, codeNotFound,
			"No such route on jessy-api: it serves /api/health, /api/metrics and /api/v1/....")
	}
	finished = true
}

// requestState is the gateway's per-request bookkeeping.
type requestState struct {
	info reqInfo
	rec  responseRecorder
}

// allowRead answers 405 unless r is a GET or HEAD.
func allowRead(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	writeProblem(w, r, http.StatusMethodNotAllowed, codeMethodNotAllowed,
		"Only GET and HEAD are allowed here.")
	return false
}

func (g *Gateway) serveAPI(w *responseRecorder, r *http.Request) {
	// Rate limiting comes before the token check so that guessing tokens is throttled too.
	if !g.limiter.check(w, r) || !g.auth.check(w, r) {
		return
	}
	if r.ContentLength > g.cfg.MaxBodyBytes {
		// Refused before jessy-core sees a byte of it.
		writeProblem(w, r, http.StatusRequestEntityTooLarge, codePayloadTooLarge,
			"The request body is "+strconv.FormatInt(r.ContentLength, 10)+
				" bytes; this gateway accepts at most "+formatBytes(g.cfg.MaxBodyBytes)+".")
		return
	}
	// The limit is set on the server's own ResponseWriter, which is the one that can tell
	// http.Server to close the connection instead of reading on.
	r = limitBody(w.ResponseWriter, r, g.cfg.MaxBodyBytes)
	g.proxy.ServeHTTP(w, r)
}
