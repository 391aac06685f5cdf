package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"sync"
	"syscall"
	"time"
)

// coreTransport is the http.RoundTripper that carries requests to jessy-core over a pool of
// keep-alive HTTP/1.1 connections.
//
// http.Transport would do, but it is built for many hosts and for callers that must not block:
// every connection has a goroutine that writes requests and one that reads responses, and each
// round trip hands the request to the first and waits on a channel for the second. On this
// gateway's hot path (a small GET, two cores shared with jessy-core and the clients) those
// hand-offs, their channel operations and wake-ups, were a fifth of the CPU time per request
// (docs/BENCHMARKS.md, ## HTTP). coreTransport talks to one host only and does the work on
// the caller's goroutine: it writes the request with Request.Write, reads the response with
// http.ReadResponse, which do the HTTP/1.1 framing (Content-Length, chunked, trailers), and
// returns the connection to the pool once the body has been read to its end.
//
// A request with a body is the exception: its body is written from a second goroutine while
// the caller reads the response, as http.Transport does, so that jessy-core may answer early
// (413, 401) without waiting for a body it will not read, and so that a body of any size
// streams through. jessy-core then closes the connection, so writing the rest of the body fails;
// the answer it sent is still the response (see startBodyWriter).
type coreTransport struct {
	scheme, host string // of jessy-core's URL; requests for anything else are refused
	dial         func(ctx context.Context) (net.Conn, error)

	// responseTimeout bounds the time from the request written to the response headers read
	// (http.Transport's ResponseHeaderTimeout). Bodies have no deadline: a snapshot download
	// may take as long as it takes.
	responseTimeout time.Duration
	idleTimeout     time.Duration // pooled connections unused for longer are closed
	maxIdle         int

	mu   sync.Mutex
	idle []*coreConn // least recently used first
}

func newCoreTransport(cfg Config) *coreTransport {
	dialer := &net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}
	t := &coreTransport{
		scheme:          cfg.CoreURL.Scheme,
		host:            canonicalHost(cfg.CoreURL),
		responseTimeout: cfg.UpstreamTimeout,
		idleTimeout:     90 * time.Second,
		// Enough for every connection of a busy client pool to find one; more idle
		// connections than concurrent requests would only hold file descriptors.
		maxIdle: 64,
	}
	addr := t.host
	if t.scheme == "https" {
		// The dialer's timeout covers the TLS handshake too. HTTP/1.1 only, as before: ALPN
		// is not offered.
		td := &tls.Dialer{NetDialer: dialer, Config: &tls.Config{ServerName: cfg.CoreURL.Hostname()}}
		t.dial = func(ctx context.Context) (net.Conn, error) { return td.DialContext(ctx, "tcp", addr) }
	} else {
		t.dial = func(ctx context.Context) (net.Conn, error) { return dialer.DialContext(ctx, "tcp", addr) }
	}
	return t
}

// canonicalHost is u's host with the scheme's default port made explicit, so that
// http://core and http://core:80 name the same connections.
func canonicalHost(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	if u.Scheme == "https" {
		return net.JoinHostPort(u.Hostname(), "443")
	}
	return net.JoinHostPort(u.Hostname(), "80")
}

// coreConn is one connection to jessy-core with its buffers, which live as long as it does.
type coreConn struct {
	conn   net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt time.Time // when it went back to the pool

	// readDeadline is the connection's read deadline as last set by the round trip that
	// reads headers; zero when another one may have been set since.
	readDeadline time.Time
}

func (t *coreTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL == nil || req.URL.Scheme != t.scheme || canonicalHost(req.URL) != t.host {
		closeRequestBody(req)
		return nil, fmt.Errorf("jessy-api transport: refusing a request for %s://%s, not jessy-core", req.URL.Scheme, req.URL.Host)
	}
	hasBody := req.Body != nil && req.Body != http.NoBody
	// A pooled connection may have been closed by jessy-core while it sat idle (a restart, an
	// idle timeout); the request then fails before any answer. Like http.Transport, the
	// request is sent again on another connection when that cannot do harm: it has no body to
	// replay and its method is idempotent. Other requests only go out on a pooled connection
	// that is seen to be still open.
	retryable := !hasBody && isIdempotent(req)
	for {
		cc, reused, err := t.getConn(req.Context(), !retryable)
		if err != nil {
			closeRequestBody(req)
			return nil, err
		}
		resp, err := t.roundTrip(cc, req, hasBody)
		if err == nil {
			return resp, nil
		}
		var stale *staleConnError
		if !reused || !retryable || !errors.As(err, &stale) || req.Context().Err() != nil {
			return nil, err
		}
		// Each retry takes another pooled connection or dials a new one, which is not
		// retried: the loop ends.
	}
}

// staleConnError is a failure before a single byte of the response arrived, other than a
// timeout: on a pooled connection, the sign that jessy-core had closed it.
type staleConnError struct{ err error }

func (e *staleConnError) Error() string { return e.err.Error() }
func (e *staleConnError) Unwrap() error { return e.err }

func isIdempotent(req *http.Request) bool {
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

func closeRequestBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

// aLongTimeAgo is a deadline that has passed: setting it makes blocked reads and writes on a
// connection return at once.
var aLongTimeAgo = time.Unix(1, 0)

func (t *coreTransport) roundTrip(cc *coreConn, req *http.Request, hasBody bool) (*http.Response, error) {
	ctx := req.Context()
	// When the client goes away, jessy-core must not go on working for nobody: the connection
	// is unblocked (and then closed instead of pooled).
	var stop func() bool
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, func() { _ = cc.conn.SetDeadline(aLongTimeAgo) })
	}
	fail := func(err error) (*http.Response, error) {
		if stop != nil {
			stop()
		}
		_ = cc.conn.Close()
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, err
	}

	var w *bodyWriter
	if hasBody {
		w = startBodyWriter(ctx, cc, req, t.responseTimeout)
	} else {
		err := req.Write(cc.bw)
		if err == nil {
			err = cc.bw.Flush()
		}
		if err != nil {
			return fail(&staleConnError{err})
		}
		if err := cc.armResponseTimeout(ctx, t.responseTimeout); err != nil {
			return fail(err)
		}
	}

	resp, err := readResponse(cc.br, req)
	if err != nil {
		if w != nil {
			// The writer's failure (a client body that broke off, too large or too slow) may
			// explain the read's, which only saw the connection close or the request's context
			// end (http.Server cancels it when reading the body fails). The writer is given a
			// moment to finish, as in http.Transport, so that the body's error is on record
			// for proxyError; closing the connection unblocks it if it is writing.
			w.headersRead()
			_ = cc.conn.Close()
			w.wait(writeWait)
			if werr := w.err(); werr != nil {
				err = werr
			}
		}
		return fail(err)
	}
	reusable := !resp.Close && !req.Close
	if w != nil {
		w.headersRead()
	}

	if resp.StatusCode == http.StatusSwitchingProtocols {
		cc.readDeadline = time.Time{}
		// The connection now belongs to the protocol switched to: ReverseProxy copies both ways
		// through a body that can be written to, and closing the body closes the connection.
		_ = cc.setDeadline(ctx, time.Time{})
		resp.Body = &upgradedConn{Reader: cc.br, conn: cc.conn, stop: stop}
		return resp, nil
	}

	b := &coreBody{t: t, cc: cc, body: resp.Body, stop: stop, w: w, reusable: reusable}
	if resp.Body == http.NoBody {
		// HEAD, 204, 304, Content-Length: 0: the response is complete already.
		b.release(true)
		return resp, nil
	}
	// A small body with a Content-Length is usually in the read buffer with the headers. The
	// body is then read without touching the connection, so the deadline can stay (the next
	// request sets its own), and a system call is saved.
	if w != nil || resp.ContentLength < 0 || int64(cc.br.Buffered()) < resp.ContentLength {
		cc.readDeadline = time.Time{}
		if err := cc.setReadDeadline(ctx, time.Time{}); err != nil {
			_ = resp.Body.Close()
			return fail(err)
		}
	}
	resp.Body = b
	return resp, nil
}

// armResponseTimeout makes reading the response headers fail once they have not come within
// timeout. Setting a deadline updates a runtime timer, which is not free, so the deadline
// that a previous response on the connection left in place is kept while it is at least
// timeout away. A new one is set timeout plus an eighth from now: the response gets at least
// timeout, and at most an eighth more.
func (cc *coreConn) armResponseTimeout(ctx context.Context, timeout time.Duration) error {
	now := time.Now()
	if !cc.readDeadline.IsZero() && cc.readDeadline.Sub(now) >= timeout {
		return nil
	}
	cc.readDeadline = now.Add(timeout + timeout/8)
	return cc.setReadDeadline(ctx, cc.readDeadline)
}

// setReadDeadline and setDeadline change the connection's deadlines during a round trip
// for ctx. When ctx ends, its AfterFunc (roundTrip) sets aLongTimeAgo to unblock the
// connection; a deadline set just after that would undo it, and the round trip would wait
// for jessy-core's answer, or the response timeout, for a client that is gone (seen: a
// canceled request held for the whole 5.6 s timeout). ctx.Err is set before AfterFunc
// functions run, so checking it after setting the deadline leaves aLongTimeAgo in place
// whatever the order.
func (cc *coreConn) setReadDeadline(ctx context.Context, t time.Time) error {
	return cc.keepCanceled(ctx, cc.conn.SetReadDeadline(t))
}

func (cc *coreConn) setDeadline(ctx context.Context, t time.Time) error {
	return cc.keepCanceled(ctx, cc.conn.SetDeadline(t))
}

// keepCanceled puts aLongTimeAgo back if ctx has ended, after a deadline was just set; it
// passes on that setter's error.
func (cc *coreConn) keepCanceled(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		_ = cc.conn.SetDeadline(aLongTimeAgo)
	}
	return err
}

// readResponse reads the response to req, skipping interim 1xx responses after passing them
// to the request's httptrace.ClientTrace, through which ReverseProxy forwards them.
func readResponse(br *bufio.Reader, req *http.Request) (*http.Response, error) {
	if _, err := br.Peek(1); err != nil {
		if isTimeout(err) {
			return nil, err
		}
		return nil, &staleConnError{err}
	}
	trace := httptrace.ContextClientTrace(req.Context())
	for {
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			return nil, err
		}
		code := resp.StatusCode
		if code >= 200 || code == http.StatusSwitchingProtocols {
			return resp, nil
		}
		if trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(code, textproto.MIMEHeader(resp.Header)); err != nil {
				return nil, err
			}
		}
	}
}

// coreBody is a response body; at its end it gives the connection back to the pool. A body
// closed before its end, or that failed, takes the connection with it: what is left of the
// response would otherwise be read as the next one. Read and Close must not be called
// concurrently (ReverseProxy and http.Client do not).
type coreBody struct {
	t        *coreTransport
	cc       *coreConn
	body     io.ReadCloser
	stop     func() bool
	w        *bodyWriter
	reusable bool
	done     bool
	err      error // what Read returns once done
}

var errBodyClosed = errors.New("jessy-api transport: read on closed response body")

func (b *coreBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, b.err
	}
	n, err := b.body.Read(p)
	switch {
	case err == io.EOF:
		b.err = io.EOF
		b.release(true)
	case err != nil:
		b.err = err
		b.release(false)
	}
	return n, err
}

func (b *coreBody) Close() error {
	if !b.done {
		b.err = errBodyClosed
		b.release(false)
	}
	return nil
}

// release ends the round trip: the connection goes back to the pool if the response was read
// to its end and nothing else claims the connection, and is closed otherwise.
func (b *coreBody) release(complete bool) {
	b.done = true
	reuse := complete && b.reusable
	if b.stop != nil && !b.stop() {
		reuse = false // the request was cancelled: the connection's deadline is spent
	}
	if b.cc.br.Buffered() > 0 {
		reuse = false // bytes after the response: the connection is out of step
	}
	if reuse && b.w != nil && !b.w.wait(writeWait) {
		// jessy-core answered before it had the whole request body. Closing the connection
		// also unblocks the writer.
		reuse = false
	}
	if reuse {
		b.t.putConn(b.cc)
	} else {
		_ = b.cc.conn.Close()
	}
}

// upgradedConn is the body of a 101 Switching Protocols response: the raw connection.
type upgradedConn struct {
	io.Reader
	conn net.Conn
	stop func() bool
}

func (u *upgradedConn) Write(p []byte) (int, error) { return u.conn.Write(p) }

func (u *upgradedConn) Close() error {
	if u.stop != nil {
		u.stop()
	}
	return u.conn.Close()
}

// bodyWriter writes a request that has a body on its own goroutine.
type bodyWriter struct {
	done chan struct{} // closed when the write ended
	werr error         // valid once done is closed

	mu          sync.Mutex
	headersDone bool
}

// readTracker remembers whether reading the request body failed, which Request.Write does not
// tell apart from failing to write to the connection.
type readTracker struct {
	io.ReadCloser
	err error // set and read on the writer's goroutine only
}

func (b *readTracker) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

func startBodyWriter(ctx context.Context, cc *coreConn, req *http.Request, responseTimeout time.Duration) *bodyWriter {
	w := &bodyWriter{done: make(chan struct{})}
	// A pooled connection may carry the deadline of its previous response, and the response
	// may take as long as the body takes to send: until the body is written, no deadline.
	cc.readDeadline = time.Time{}
	_ = cc.setReadDeadline(ctx, time.Time{})
	body := &readTracker{ReadCloser: req.Body}
	out := *req // a shallow copy, so the caller's request keeps its own body
	out.Body = body
	go func() {
		err := out.Write(cc.bw)
		if err == nil {
			err = cc.bw.Flush()
		}
		w.werr = err
		close(w.done)
		if body.err != nil {
			// The request body broke off (too large, too slow, client gone): jessy-core must
			// not wait for the rest, and the reader must stop waiting for an answer to a
			// request that never arrived whole.
			_ = cc.conn.Close()
			return
		}
		// Written in full, or writing to jessy-core failed (a broken pipe, a reset) because it
		// closed the connection, typically right after answering early: a 413, 405 or 401 for
		// a body it would not read. That answer is in the connection's receive buffer, and the
		// reader must get it rather than a connection closed under it, which would turn
		// jessy-core's 4xx into a 502. So the connection stays open either way (after a failed
		// write it is never reused: coreBody.release sees the error), and the reader waits as
		// after a complete write, though a connection jessy-core closed ends that wait at once.
		//
		// The response timeout runs from the end of the request, as in http.Transport.
		w.mu.Lock()
		if !w.headersDone {
			_ = cc.setReadDeadline(ctx, time.Now().Add(responseTimeout))
		}
		w.mu.Unlock()
	}()
	return w
}

// headersRead tells the writer not to set a read deadline any more: the body that follows the
// headers has none.
func (w *bodyWriter) headersRead() {
	w.mu.Lock()
	w.headersDone = true
	w.mu.Unlock()
}

// writeWait is how long a finished response waits for its request's writer to finish too
// before giving up the connection; http.Transport waits as long. Usually the writer is done
// long before: jessy-core reads the whole request before it answers.
const writeWait = 50 * time.Millisecond

// wait reports whether the request was written in full, waiting up to d for the writer.
func (w *bodyWriter) wait(d time.Duration) bool {
	select {
	case <-w.done:
		return w.werr == nil
	default:
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-w.done:
		return w.werr == nil
	case <-t.C:
		return false
	}
}

// err returns the write's error if the write has ended.
func (w *bodyWriter) err() error {
	select {
	case <-w.done:
		return w.werr
	default:
		return nil
	}
}

// getConn takes the most recently used pooled connection, or dials a new one. With check set,
// a pooled connection is used only if it is still open.
func (t *coreTransport) getConn(ctx context.Context, check bool) (cc *coreConn, reused bool, err error) {
	for {
		t.mu.Lock()
		n := len(t.idle)
		if n == 0 {
			t.mu.Unlock()
			break
		}
		cc = t.idle[n-1]
		t.idle[n-1] = nil
		t.idle = t.idle[:n-1]
		t.mu.Unlock()
		if time.Since(cc.idleAt) < t.idleTimeout && (!check || stillOpen(cc.conn)) {
			return cc, true, nil
		}
		_ = cc.conn.Close()
	}
	conn, err := t.dial(ctx)
	if err != nil {
		return nil, false, err
	}
	return &coreConn{conn: conn, br: bufio.NewReaderSize(conn, 4<<10), bw: bufio.NewWriterSize(conn, 4<<10)}, false, nil
}

func (t *coreTransport) putConn(cc *coreConn) {
	now := time.Now()
	cc.idleAt = now
	var drop *coreConn
	t.mu.Lock()
	if len(t.idle) >= t.maxIdle || (len(t.idle) > 0 && now.Sub(t.idle[0].idleAt) >= t.idleTimeout) {
		// Full, or the least recently used connection has been idle too long: it goes, which
		// also keeps a pool that is always busy at the top from holding dead ones at the bottom.
		drop = t.idle[0]
		copy(t.idle, t.idle[1:])
		t.idle[len(t.idle)-1] = nil
		t.idle = t.idle[:len(t.idle)-1]
	}
	t.idle = append(t.idle, cc)
	t.mu.Unlock()
	if drop != nil {
		_ = drop.conn.Close()
	}
}

// CloseIdleConnections closes every pooled connection; those in use are closed when their
// round trip ends.
func (t *coreTransport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.mu.Unlock()
	for _, cc := range idle {
		_ = cc.conn.Close()
	}
}

// stillOpen reports whether nothing has arrived on an idle connection, not even the end of
// the stream that jessy-core sends when it closes it. It peeks without blocking.
func stillOpen(c net.Conn) bool {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	open := true
	err = rc.Read(func(fd uintptr) bool {
		open = peekOpen(fd)
		return true // never wait for readiness: an idle connection is not expected to be readable
	})
	return err == nil && open
}
