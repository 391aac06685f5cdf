package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// scriptedCore is a jessy-core that speaks raw HTTP/1.1, so a test controls every byte of the
// framing. serve handles one connection; conns counts those accepted.
type scriptedCore struct {
	url   string
	conns atomic.Int64
}

func startScriptedCore(t *testing.T, serve func(c net.Conn, br *bufio.Reader)) *scriptedCore {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sc := &scriptedCore{url: "http://" + ln.Addr().String()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			sc.conns.Add(1)
			go func() {
				defer c.Close()
				serve(c, bufio.NewReader(c))
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return sc
}

// answerEach reads requests (bodies included) and writes resp to each.
func answerEach(resp string) func(net.Conn, *bufio.Reader) {
	return func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			if _, err := io.WriteString(c, resp); err != nil {
				return
			}
		}
	}
}

// answerOnce answers one request, then closes the connection without saying so, as a server
// does with an idle keep-alive connection.
func answerOnce(resp string) func(net.Conn, *bufio.Reader) {
	return func(c net.Conn, br *bufio.Reader) {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		io.WriteString(c, resp)
	}
}

func newTestTransport(t *testing.T, core string) *coreTransport {
	t.Helper()
	cfg := testConfig(t, core)
	cfg.UpstreamTimeout = 300 * time.Millisecond
	tr := newCoreTransport(cfg)
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// send makes one round trip and reads the whole body.
func send(t *testing.T, tr *coreTransport, method, url string, body io.Reader) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, url, err)
	}
	return resp, string(b)
}

func TestCoreTransport(t *testing.T) {
	const okHello = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
	tests := []struct {
		name      string
		serve     func(net.Conn, *bufio.Reader)
		run       func(t *testing.T, tr *coreTransport, url string)
		wantConns int64
	}{{
		name:  "content-length, connection reused",
		serve: answerEach(okHello),
		run: func(t *testing.T, tr *coreTransport, url string) {
			for range 3 {
				if _, body := send(t, tr, "GET", url+"/v1/a", nil); body != "hello" {
					t.Errorf("body %q", body)
				}
			}
		},
		wantConns: 1,
	}, {
		name: "chunked with trailer, connection reused",
		serve: answerEach("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n" +
			"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n"),
		run: func(t *testing.T, tr *coreTransport, url string) {
			for range 2 {
				resp, body := send(t, tr, "GET", url+"/v1/a", nil)
				if body != "hello world" || resp.Trailer.Get("X-Sum") != "42" {
					t.Errorf("body %q, trailer %v", body, resp.Trailer)
				}
			}
		},
		wantConns: 1,
	}, {
		name:  "request bodies, fixed and chunked, connection reused",
		serve: answerEach(okHello),
		run: func(t *testing.T, tr *coreTransport, url string) {
			send(t, tr, "PUT", url+"/v1/a", strings.NewReader("value"))
			send(t, tr, "PUT", url+"/v1/a", io.LimitReader(zeros{}, 100<<10)) // no length: chunked
			send(t, tr, "GET", url+"/v1/a", nil)
		},
		wantConns: 1,
	}, {
		name:  "HEAD: a Content-Length but no body",
		serve: answerEach("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"),
		run: func(t *testing.T, tr *coreTransport, url string) {
			for range 2 {
				if resp, body := send(t, tr, "HEAD", url+"/v1/a", nil); resp.ContentLength != 5 || body != "" {
					t.Errorf("length %d, body %q", resp.ContentLength, body)
				}
			}
		},
		wantConns: 1,
	}, {
		name:  "body not read to its end: connection not reused",
		serve: answerEach(okHello),
		run: func(t *testing.T, tr *coreTransport, url string) {
			req, _ := http.NewRequest("GET", url+"/v1/a", nil)
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			// Closed before its end, the body takes the connection with it.
			if _, err := resp.Body.Read(make([]byte, 1)); err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if _, err := resp.Body.Read(make([]byte, 1)); err == nil {
				t.Error("read after Close succeeded")
			}
			if _, body := send(t, tr, "GET", url+"/v1/a", nil); body != "hello" {
				t.Errorf("body %q", body)
			}
		},
		wantConns: 2,
	}, {
		name:  "core says Connection: close",
		serve: answerOnce("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello"),
		run: func(t *testing.T, tr *coreTransport, url string) {
			for range 2 {
				if _, body := send(t, tr, "GET", url+"/v1/a", nil); body != "hello" {
					t.Errorf("body %q", body)
				}
			}
		},
		wantConns: 2,
	}, {
		name:  "pooled connection closed by core: a GET is sent again",
		serve: answerOnce(okHello),
		run: func(t *testing.T, tr *coreTransport, url string) {
			send(t, tr, "GET", url+"/v1/a", nil)
			if _, body := send(t, tr, "GET", url+"/v1/a", nil); body != "hello" {
				t.Errorf("body %q", body)
			}
		},
		wantConns: 2,
	}, {
		name:  "pooled connection closed by core: a PUT is not sent on it",
		serve: answerOnce(okHello),
		run: func(t *testing.T, tr *coreTransport, url string) {
			send(t, tr, "GET", url+"/v1/a", nil)
			time.Sleep(50 * time.Millisecond) // for core's FIN to arrive
			if _, body := send(t, tr, "PUT", url+"/v1/a", strings.NewReader("v")); body != "hello" {
				t.Errorf("body %q", body)
			}
		},
		wantConns: 2,
	}, {
		name:  "interim 1xx responses go to the trace",
		serve: answerEach("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + okHello),
		run: func(t *testing.T, tr *coreTransport, url string) {
			var got []int
			trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
				got = append(got, code)
				return nil
			}}
			req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "PUT", url+"/v1/a", strings.NewReader("v"))
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != "hello" || len(got) != 2 || got[0] != 100 || got[1] != 103 {
				t.Errorf("status %d, body %q, interim %v", resp.StatusCode, b, got)
			}
		},
		wantConns: 1,
	}, {
		name: "core answers before it has read the body",
		serve: func(c net.Conn, br *bufio.Reader) {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbig")
			time.Sleep(100 * time.Millisecond)
		},
		run: func(t *testing.T, tr *coreTransport, url string) {
			req, _ := http.NewRequest("PUT", url+"/v1/a", io.LimitReader(zeros{}, 64<<20))
			req.ContentLength = 64 << 20
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 413 || string(b) != "big" {
				t.Errorf("status %d, body %q", resp.StatusCode, b)
			}
		},
		wantConns: 1,
	}, {
		name: "no response headers within the timeout",
		serve: func(c net.Conn, br *bufio.Reader) {
			http.ReadRequest(br)
			io.Copy(io.Discard, br) // until the transport gives up and closes
		},
		run: func(t *testing.T, tr *coreTransport, url string) {
			start := time.Now()
			req, _ := http.NewRequest("GET", url+"/v1/a", nil)
			_, err := tr.RoundTrip(req)
			if !isTimeout(err) {
				t.Fatalf("err %v, want a timeout", err)
			}
			if took := time.Since(start); took < tr.responseTimeout || took > 2*time.Second {
				t.Errorf("timed out after %v, want about %v", took, tr.responseTimeout)
			}
		},
		wantConns: 1,
	}, {
		name: "request cancelled while waiting",
		serve: func(c net.Conn, br *bufio.Reader) {
			http.ReadRequest(br)
			io.Copy(io.Discard, br)
		},
		run: func(t *testing.T, tr *coreTransport, url string) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(50*time.Millisecond, cancel)
			req, _ := http.NewRequestWithContext(ctx, "GET", url+"/v1/a", nil)
			if _, err := tr.RoundTrip(req); !errors.Is(err, context.Canceled) {
				t.Errorf("err %v, want context.Canceled", err)
			}
			tr.mu.Lock()
			n := len(tr.idle)
			tr.mu.Unlock()
			if n != 0 {
				t.Errorf("%d connections pooled after a cancelled request", n)
			}
		},
		wantConns: 1,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			core := startScriptedCore(t, tt.serve)
			tt.run(t, newTestTransport(t, core.url), core.url)
			if got := core.conns.Load(); got != tt.wantConns {
				t.Errorf("core accepted %d connections, want %d", got, tt.wantConns)
			}
		})
	}
}

// TestDeadlineAfterCancel: once the request's context has ended and its AfterFunc has set
// aLongTimeAgo, a deadline the round trip sets afterwards must not undo it. It did, in a race
// that TestClientGoneFirst lost about one run in forty: the gateway then held a canceled
// request for the whole response timeout.
func TestDeadlineAfterCancel(t *testing.T) {
	tests := []struct {
		name string
		set  func(ctx context.Context, cc *coreConn) error
	}{
		{"response timeout", func(ctx context.Context, cc *coreConn) error { return cc.armResponseTimeout(ctx, time.Hour) }},
		{"read deadline cleared", func(ctx context.Context, cc *coreConn) error { return cc.setReadDeadline(ctx, time.Time{}) }},
		{"deadline cleared", func(ctx context.Context, cc *coreConn) error { return cc.setDeadline(ctx, time.Time{}) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, server := net.Pipe()
			defer server.Close()
			defer client.Close()
			cc := &coreConn{conn: client, br: bufio.NewReader(client), bw: bufio.NewWriter(client)}
			ctx, cancel := context.WithCancel(context.Background())
			fired := make(chan struct{})
			context.AfterFunc(ctx, func() { _ = cc.conn.SetDeadline(aLongTimeAgo); close(fired) })
			cancel()
			<-fired
			if err := tt.set(ctx, cc); err != nil {
				t.Fatal(err)
			}
			read := make(chan error, 1)
			go func() {
				_, err := client.Read(make([]byte, 1))
				read <- err
			}()
			select {
			case err := <-read:
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("read: %v, want a deadline error", err)
				}
			case <-time.After(30 * time.Second): // a hang guard: the read should return at once
				t.Fatal("the read blocked: the deadline set after the cancel undid aLongTimeAgo")
			}
		})
	}
}

func TestCoreTransportRefusesOtherHosts(t *testing.T) {
	tr := newTestTransport(t, "http://127.0.0.1:1")
	for _, u := range []string{"http://127.0.0.1:2/v1", "https://127.0.0.1:1/v1", "http://example.com:1/v1"} {
		req, _ := http.NewRequest("GET", u, nil)
		if _, err := tr.RoundTrip(req); err == nil {
			t.Errorf("%s: sent", u)
		}
	}
}

func TestCoreTransportCoreDown(t *testing.T) {
	tr := newTestTransport(t, "http://"+freeAddr(t))
	req, _ := http.NewRequest("GET", "http://"+tr.host+"/v1/a", nil)
	_, err := tr.RoundTrip(req)
	if err == nil || isTimeout(err) {
		t.Errorf("err %v, want a refusal", err)
	}
}

func TestCanonicalHost(t *testing.T) {
	tests := []struct{ in, want string }{
		{"http://core:8080", "core:8080"},
		{"http://core", "core:80"},
		{"https://core", "core:443"},
		{"http://[::1]", "[::1]:80"},
	}
	for _, tt := range tests {
		u, _ := parseCoreURL(tt.in)
		if got := canonicalHost(u); got != tt.want {
			t.Errorf("canonicalHost(%s) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// lateReader holds back the first read of a connection until a write on it has failed (or a
// few seconds have passed): the order of events in which a core that answers early used to
// turn into a 502.
type lateReader struct {
	net.Conn
	once   sync.Once
	failed chan struct{}
}

func (c *lateReader) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err != nil {
		c.once.Do(func() { close(c.failed) })
	}
	return n, err
}

func (c *lateReader) Read(p []byte) (int, error) {
	select {
	case <-c.failed:
	case <-time.After(5 * time.Second):
	}
	return c.Conn.Read(p)
}

// answerEarlyAndClose answers resp as soon as it has the request headers and closes the
// connection without reading the body, as jessy-core does for a body it refuses (405, 413,
// 401). The unread body makes the close a reset.
func answerEarlyAndClose(resp string) func(net.Conn, *bufio.Reader) {
	return func(c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, resp)
	}
}

// TestCoreAnswersEarlyThenWriteFails: jessy-core answers before it has read the body and
// closes the connection; writing the rest of the body then fails. The answer is still the
// response, and the connection is not used again. The read is held back until the write has
// failed, so the test does not depend on who wins the race.
func TestCoreAnswersEarlyThenWriteFails(t *testing.T) {
	const tooLarge = "HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbig"
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			core := startScriptedCore(t, answerEarlyAndClose(tooLarge))
			tr := newTestTransport(t, core.url)
			dial := tr.dial
			tr.dial = func(ctx context.Context) (net.Conn, error) {
				c, err := dial(ctx)
				if err != nil {
					return nil, err
				}
				return &lateReader{Conn: c, failed: make(chan struct{})}, nil
			}
			req, _ := http.NewRequest("PUT", core.url+"/v1/dimensions/d/keys/k", io.LimitReader(zeros{}, 64<<20))
			if !chunked {
				req.ContentLength = 64 << 20
			}
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatalf("round trip: %v, want jessy-core's 413", err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 413 || string(b) != "big" || err != nil {
				t.Errorf("status %d, body %q, err %v", resp.StatusCode, b, err)
			}
			tr.mu.Lock()
			n := len(tr.idle)
			tr.mu.Unlock()
			if n != 0 {
				t.Errorf("%d connections pooled after a failed write", n)
			}
		})
	}
}

// TestCoreAnswersEarlyNoResponse: when the write fails and no response can be read either,
// the round trip fails (502 in the gateway) rather than waiting.
func TestCoreAnswersEarlyNoResponse(t *testing.T) {
	core := startScriptedCore(t, func(c net.Conn, br *bufio.Reader) {
		http.ReadRequest(br) // and close, having answered nothing
	})
	tr := newTestTransport(t, core.url)
	req, _ := http.NewRequest("PUT", core.url+"/v1/dimensions/d/keys/k", io.LimitReader(zeros{}, 64<<20))
	req.ContentLength = 64 << 20
	start := time.Now()
	resp, err := tr.RoundTrip(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("status %d, want an error", resp.StatusCode)
	}
	if isTimeout(err) || time.Since(start) > 2*time.Second {
		t.Errorf("err %v after %v, want a prompt connection error", err, time.Since(start))
	}
}
