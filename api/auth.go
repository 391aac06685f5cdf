package main

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// bearerAuth checks the static token from JESSY_API_TOKEN. The gateway passes Authorization on
// unchanged, so jessy-core checks it again: this check only keeps unauthenticated traffic off it.
type bearerAuth struct {
	want [sha256.Size]byte
}

// newBearerAuth returns nil when no token is configured: every request passes.
func newBearerAuth(token string) *bearerAuth {
	if token == "" {
		return nil
	}
	return &bearerAuth{want: sha256.Sum256([]byte(token))}
}

// check answers 401 and returns false unless r carries the token.
func (a *bearerAuth) check(w http.ResponseWriter, r *http.Request) bool {
	if a == nil {
		return true
	}
	scheme, cred, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(cred) == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="jessy"`)
		writeProblem(w, r, http.StatusUnauthorized, codeUnauthorized,
			"This gateway requires a token: send the header \"Authorization: Bearer <token>\".")
		return false
	}
	// Comparing digests keeps the comparison constant-time in the token's length too, which
	// ConstantTimeCompare alone gives away.
	got := sha256.Sum256([]byte(strings.TrimSpace(cred)))
	if subtle.ConstantTimeCompare(got[:], a.want[:]) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="jessy", error="invalid_token"`)
		writeProblem(w, r, http.StatusUnauthorized, codeUnauthorized,
			"The bearer token is not valid for this gateway.")
		return false
	}
	return true
}
