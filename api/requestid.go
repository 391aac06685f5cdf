package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
)

const (
	requestIDHeader = "X-Request-Id"
	maxRequestIDLen = 128
)

// validRequestID accepts only IDs that are safe to echo in headers and logs: 1 to 128 of
// [A-Za-z0-9._:-]. Anything else could smuggle text into log lines. It is jessy-core's rule too,
// so an ID either survives both hops or is replaced at the first.
func validRequestID(s string) bool {
	if len(s) == 0 || len(s) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-', c == ':':
		default:
			return false
		}
	}
	return true
}

// newRequestID returns 16 random bytes in hex: unique enough to find one request in the logs of
// both services.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails since Go 1.24
	var h [32]byte
	hex.Encode(h[:], b[:])
	return string(h[:]) // one allocation, where hex.EncodeToString makes two
}

// requestIDFor keeps a caller's well-formed ID so a trace started upstream of the gateway goes
// on through it; otherwise it makes a new one.
func requestIDFor(incoming string) string {
	if validRequestID(incoming) {
		return incoming
	}
	return newRequestID()
}

// reqInfo is what the gateway knows about a request before it is routed, kept in its context so
// the proxy's hooks, which only see the request, can reach it.
type reqInfo struct {
	id    string
	route string
}

type reqInfoKey struct{}

// withReqInfo stores a pointer: a reqInfo stored by value would be copied to the heap. The
// caller must not change *info afterwards.
func withReqInfo(ctx context.Context, info *reqInfo) context.Context {
	return context.WithValue(ctx, reqInfoKey{}, info)
}

func reqInfoFrom(ctx context.Context) reqInfo {
	if info, _ := ctx.Value(reqInfoKey{}).(*reqInfo); info != nil {
		return *info
	}
	return reqInfo{}
}
