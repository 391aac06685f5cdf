package main

import (
	"net/http"
	"testing"
)

func TestAuth(t *testing.T) {
	core := startFakeCore(t, nil)
	const key = "/api/v1/dimensions/default/keys/k"

	tests := []struct {
		name          string
		token         string
		path          string
		authorization string
		want          int
		challenge     string
	}{
		{"no token configured", "", key, "", 200, ""},
		{"no token configured, header passed on", "", key, "Bearer anything", 200, ""},
		{"missing", "s3cret", key, "", 401, `Bearer realm="jessy"`},
		{"wrong", "s3cret", key, "Bearer nope", 401, `Bearer realm="jessy", error="invalid_token"`},
		{"prefix of the token", "s3cret", key, "Bearer s3cre", 401, `Bearer realm="jessy", error="invalid_token"`},
		{"longer than the token", "s3cret", key, "Bearer s3crets", 401, `Bearer realm="jessy", error="invalid_token"`},
		{"wrong scheme", "s3cret", key, "Basic czNjcmV0", 401, `Bearer realm="jessy"`},
		{"scheme only", "s3cret", key, "Bearer", 401, `Bearer realm="jessy"`},
		{"right", "s3cret", key, "Bearer s3cret", 200, ""},
		{"scheme is case-insensitive", "s3cret", key, "bearer s3cret", 200, ""},
		{"health stays open", "s3cret", "/api/health", "", 200, ""},
		{"metrics stay open", "s3cret", "/api/metrics", "", 200, ""},
		{"404 needs no token", "s3cret", "/elsewhere", "", 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, core.URL)
			cfg.Token = tt.token
			gw := startGateway(t, cfg)
			before := len(core.requests())
			hdr := http.Header{}
			if tt.authorization != "" {
				hdr.Set("Authorization", tt.authorization)
			}
			resp, body := do(t, "GET", gw.URL+tt.path, nil, hdr)
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d (body %q)", resp.StatusCode, tt.want, body)
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != tt.challenge {
				t.Errorf("WWW-Authenticate %q, want %q", got, tt.challenge)
			}
			if tt.want == http.StatusUnauthorized {
				if p := decodeProblem(t, resp, body); p.Code != codeUnauthorized {
					t.Errorf("code %q", p.Code)
				}
				if len(core.requests()) != before {
					t.Error("an unauthorized request reached jessy-core")
				}
			}
			if tt.path == key && tt.want == http.StatusOK {
				// jessy-core checks the token too, so it must get the header unchanged.
				seen := core.requests()
				if got := seen[len(seen)-1].Header.Get("Authorization"); got != tt.authorization {
					t.Errorf("core saw Authorization %q, want %q", got, tt.authorization)
				}
			}
		})
	}
}
