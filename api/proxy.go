package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

const apiPrefix = "/api/v1"

// rewritePath maps the gateway's path /api/v1/..., as the client sent it (see requestPath), to
// jessy-core's /v1/.... It works on the raw form so that a key's %2F stays one key and bytes
// such as %00 or %FF reach jessy-core exactly as the client encoded them. It returns false for
// anything outside /api/v1.
func rewritePath(raw string) (string, bool) {
	if raw != apiPrefix && !strings.HasPrefix(raw, apiPrefix+"/") {
		return "", false
	}
	return strings.TrimPrefix(raw, "/api"), true
}

// requestPath is the path of u exactly as the client sent it, before the '?'.
//
// Not u.EscapedPath: that returns RawPath only when url.URL considers it a valid encoding, and
// otherwise re-encodes the decoded Path. A path holding a byte url.URL wants escaped ('{', '|',
// '"', raw UTF-8 ...) would then come back with every %2F decoded into a separator: the key
// "a/b{" would turn into segments. url.URL keeps RawPath, verbatim, whenever the default
// encoding of Path differs from what was received, and leaves it empty only when that encoding
// is exactly what was received. Unlike r.RequestURI, this also holds for a request in absolute
// form (GET http://host/path).
func requestPath(u *url.URL) string {
	if u.RawPath != "" {
		return u.RawPath
	}
	return u.EscapedPath()
}

// timedTransport records how long jessy-core takes to answer each forwarded request.
type timedTransport struct {
	next    http.RoundTripper
	metrics *metrics
}

func (t timedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.next.RoundTrip(req)
	t.metrics.upstream.observe(time.Since(start).Seconds(), reqInfoFrom(req.Context()).route)
	return resp, err
}

func (g *Gateway) newProxy() *httputil.ReverseProxy {
	target := g.cfg.CoreURL
	// The path of JESSY_CORE_URL, put in front of every forwarded path.
	base := strings.TrimSuffix(target.EscapedPath(), "/")
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			// serveAPI only forwards paths rewritePath accepts.
			rest, _ := rewritePath(requestPath(pr.In.URL))
			pr.SetURL(target)
			// The request line goes out as the client wrote it, past the /api. Path and RawPath
			// cannot carry that: url.URL re-encodes a RawPath it finds invalid (see
			// requestPath). Opaque is written to the request line as it is, and Request.Write
			// uses it instead of them. parseCoreURL makes sure base does not start with "//",
			// which Opaque would take for a host.
			pr.Out.URL.Opaque = base + rest
			// ReverseProxy drops query parameters it cannot parse (a ';', a bad '%' escape)
			// before Rewrite runs, so prefix=a;b would turn into an unfiltered scan. The
			// gateway does not read the query; jessy-core judges it (400 for prefix=%zz).
			pr.Out.URL.RawQuery = pr.In.URL.RawQuery
			pr.SetXForwarded()
			pr.Out.Header.Set(requestIDHeader, reqInfoFrom(pr.In.Context()).id)
			// The gateway's own server already answers "Expect: 100-continue" when the body is
			// first read, which is when the transport starts sending it. Passed on, it would
			// make jessy-core send a second 100 Continue, which ReverseProxy relays.
			pr.Out.Header.Del("Expect")
		},
		// Not http.Transport: coreTransport does the round trip on this goroutine (see
		// transport.go).
		Transport: timedTransport{next: g.transport, metrics: g.metrics},
		// Bodies stream instead of piling up here. A body of unknown length (a snapshot, any
		// chunked response) is flushed after every write: ReverseProxy does that by itself
		// whatever FlushInterval says. A body with a Content-Length (a value) passes through
		// the connection's 4 KiB write buffer as it arrives, and a small one leaves with the
		// headers in one write. With -1 here, every response would also start a timer
		// goroutine that flushes the headers on their own first: three writes and a goroutine
		// for a 150-byte value (docs/BENCHMARKS.md, ## HTTP).
		FlushInterval: 0,
		// Without a pool every response allocates a fresh 32 KiB copy buffer, which for small
		// values is most of what the gateway allocates and so most of its garbage collection
		// (see docs/BENCHMARKS.md, ## HTTP).
		BufferPool: copyBuffers,
		ModifyResponse: func(resp *http.Response) error {
			// The gateway already set X-Request-Id on the response; jessy-core echoes the same ID,
			// and a copy would make the header appear twice.
			resp.Header.Del(requestIDHeader)
			if loc, ok := resp.Header["Location"]; ok && len(loc) == 1 {
				loc[0] = gatewayLocation(loc[0], base)
			}
			return nil
		},
		ErrorHandler: g.proxyError,
		ErrorLog:     slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
	}
}

// gatewayLocation maps a Location from jessy-core to the gateway's path for the same resource.
// jessy-core names its own path (201 on PUT /v1/dimensions/x says /v1/dimensions/x), which the
// gateway answers 404; the gateway's is /api/v1/dimensions/x. base is the path of
// JESSY_CORE_URL, in case whatever serves jessy-core there puts it in front. Anything else, an
// absolute URL included, is left as it is.
func gatewayLocation(loc, base string) string {
	for _, prefix := range [2]string{base + "/v1", "/v1"} {
		rest, ok := strings.CutPrefix(loc, prefix)
		if ok && (rest == "" || rest[0] == '/' || rest[0] == '?') {
			return apiPrefix + rest
		}
	}
	return loc
}

// copyBufferSize is what ReverseProxy allocates for itself when it has no pool.
const copyBufferSize = 32 << 10

// bufferPool lends ReverseProxy its copy buffers. It pools pointers to arrays, which a slice
// converts back to without allocating: a pool of *[]byte would allocate the pointer on every
// Put.
type bufferPool struct{ pool sync.Pool }

func (p *bufferPool) Get() []byte {
	if b, ok := p.pool.Get().(*[copyBufferSize]byte); ok {
		return b[:]
	}
	return make([]byte, copyBufferSize)
}

func (p *bufferPool) Put(b []byte) {
	if cap(b) < copyBufferSize {
		return
	}
	p.pool.Put((*[copyBufferSize]byte)(b[:copyBufferSize]))
}

// copyBuffers is shared by every gateway in the process: buffers hold no request state.
var copyBuffers = &bufferPool{}

// proxyError answers when jessy-core gave no response. It tells apart the client's own fault
// (body too large or too slow, or gone) from jessy-core's (down: 502, too slow: 504).
func (g *Gateway) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	var (
		status int
		code   string
		detail string
		tooBig *http.MaxBytesError
	)
	bodyErr := bodyError(r)
	switch {
	case errors.As(err, &tooBig) || errors.As(bodyErr, &tooBig):
		status, code = http.StatusRequestEntityTooLarge, codePayloadTooLarge
		detail = "The request body is larger than this gateway accepts (" + formatBytes(g.cfg.MaxBodyBytes) + ")."
	case bodyErr != nil && isTimeout(bodyErr):
		// Checked before the context: http.Server cancels it on any read error, this one too.
		status, code = http.StatusRequestTimeout, codeRequestTimeout
		detail = "The request body did not arrive within the read timeout."
	case r.Context().Err() != nil:
		status, code = statusClientClosed, codeClientClosed
		detail = "The client closed the request before jessy-core answered."
	case bodyErr != nil:
		status, code = http.StatusBadRequest, codeBadRequest
		detail = "The request body could not be read."
	case isTimeout(err):
		status, code = http.StatusGatewayTimeout, codeGatewayTimeout
		detail = "jessy-core did not answer in time; retry later."
	default:
		status, code = http.StatusBadGateway, codeBadGateway
		detail = "jessy-core is unreachable; retry later."
		// Pooled connections to a core that went away are worthless; starting afresh means the
		// first request after it is back already succeeds.
		g.transport.CloseIdleConnections()
	}
	// Only jessy-core's failures are warnings; the client's own are routine.
	level := slog.LevelInfo
	if status >= 500 {
		level = slog.LevelWarn
	}
	if status >= 500 || status == statusClientClosed {
		g.metrics.upstreamErrors.add(1, code)
	}
	g.log.LogAttrs(r.Context(), level, "upstream request failed",
		slog.String("request_id", reqInfoFrom(r.Context()).id),
		slog.Int("status", status),
		slog.String("code", code),
		slog.Any("error", err))
	writeProblem(w, r, status, code, detail)
}

// trackedBody remembers why reading the client's body failed, which the transport reports only
// as a failed round trip.
type trackedBody struct {
	io.ReadCloser
	mu  sync.Mutex
	err error
}

func (b *trackedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		b.mu.Lock()
		b.err = err
		b.mu.Unlock()
	}
	return n, err
}

type trackedBodyKey struct{}

// bodyError returns the error reading r's body hit, if any.
func bodyError(r *http.Request) error {
	b, _ := r.Context().Value(trackedBodyKey{}).(*trackedBody)
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// limitBody caps r's body and tracks read errors; it returns the request to forward.
func limitBody(w http.ResponseWriter, r *http.Request, limit int64) *http.Request {
	if r.Body == nil || r.Body == http.NoBody {
		return r
	}
	tb := &trackedBody{ReadCloser: http.MaxBytesReader(w, r.Body, limit)}
	r = r.WithContext(context.WithValue(r.Context(), trackedBodyKey{}, tb))
	r.Body = tb
	return r
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + " MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + " KiB"
	}
	return strconv.FormatInt(n, 10) + " bytes"
}
