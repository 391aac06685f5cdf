// Command jessy-http-baseline-go is the smallest net/http service: every GET under
// /v1/dimensions/default/keys/ answers the same 150-byte body from memory. It is the ceiling for
// any process built on Go's net/http server on the machine it runs on, the gateway jessy-api
// included (benches/http/run.sh, row baseline-go-get): the same request line (the load script is
// shared) and response size as the axum baseline, and no proxying, logging, metrics or
// middleware. Standard library only; GOMAXPROCS and GOGC apply as for any Go program.
//
// Usage: jessy-http-baseline-go [ADDR] (default 127.0.0.1:8091).
package main

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
)

var value = bytes.Repeat([]byte{'v'}, 150)

func main() {
	addr := "127.0.0.1:8091"
	if len(os.Args) > 1 {
		addr = os.Args[1]
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "baseline-go listening on %s\n", ln.Addr())
	// Go sets TCP_NODELAY on accepted connections by default, as jessy-core and the axum
	// baseline do.
	contentType := []string{"application/octet-stream"}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || !strings.HasPrefix(r.URL.Path, "/v1/dimensions/default/keys/") {
			http.NotFound(w, r)
			return
		}
		w.Header()["Content-Type"] = contentType
		_, _ = w.Write(value)
	})
	fmt.Fprintln(os.Stderr, http.Serve(ln, h))
	os.Exit(1)
}
