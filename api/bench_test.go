package main

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"net"
	"strconv"
	"testing"
)

// BenchmarkGatewayGet sends GETs of a key through the whole gateway (http.Server, handler,
// ReverseProxy, coreTransport, access log to a discarding logWriter, metrics) over loopback,
// as in the HTTP benchmark (docs/BENCHMARKS.md, ## HTTP). The client and the stand-in for
// jessy-core are raw sockets with canned bytes, so that what -benchmem and -cpuprofile report
// is the gateway's own work:
//
//	cd api && go test -run '^$' -bench GatewayGet -benchmem -cpuprofile cpu.out -memprofile mem.out
func BenchmarkGatewayGet(b *testing.B) {
	value := bytes.Repeat([]byte{'v'}, 150)
	coreLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer coreLn.Close()
	resp := []byte("HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\netag: \"7\"\r\n" +
		"x-request-id: x\r\ncontent-length: " + strconv.Itoa(len(value)) + "\r\ndate: Fri, 27 Nov 2026 17:00:00 GMT\r\n\r\n" +
		string(value))
	go func() {
		for {
			c, err := coreLn.Accept()
			if err != nil {
				return
			}
			go cannedServer(c, resp)
		}
	}()

	cfg := testConfig(b, "http://"+coreLn.Addr().String())
	lw := newLogWriter(io.Discard)
	defer lw.Close()
	g := New(cfg, newLogger(lw, slog.LevelInfo))
	defer g.Close()
	gwLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := g.NewServer()
	go func() { _ = srv.Serve(gwLn) }()
	defer srv.Close()

	c, err := net.Dial("tcp", gwLn.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	req := []byte("GET /api/v1/dimensions/default/keys/k012345 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	br := bufio.NewReaderSize(c, 4<<10)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		if err := readCanned(br); err != nil {
			b.Fatal(err)
		}
	}
}

// cannedServer answers every request on c (headers only, no bodies) with resp.
func cannedServer(c net.Conn, resp []byte) {
	defer c.Close()
	br := bufio.NewReaderSize(c, 4<<10)
	for {
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				return
			}
			if len(line) <= 2 {
				break
			}
		}
		if _, err := c.Write(resp); err != nil {
			return
		}
	}
}

// readCanned reads one response with a Content-Length.
func readCanned(br *bufio.Reader) error {
	n := -1
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		if k, v, ok := bytes.Cut(bytes.TrimSpace(line), []byte(":")); ok && bytes.EqualFold(k, []byte("content-length")) {
			n, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
	if n < 0 {
		return io.ErrUnexpectedEOF
	}
	_, err := br.Discard(n)
	return err
}
