package main

import (
	"bytes"
	"context"
	"flag"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParseConfigDefaults(t *testing.T) {
	cfg, err := parseConfig(nil, envMap(nil), &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != "127.0.0.1:3000" || cfg.CoreURL.String() != "http://127.0.0.1:8080" || cfg.Token != "" {
		t.Errorf("defaults: %+v", cfg)
	}
	if cfg.MaxBodyBytes != 16<<20 || cfg.RateLimit != 0 || cfg.ReadHeaderTimeout != 5*time.Second ||
		cfg.ShutdownTimeout != 10*time.Second || cfg.LogLevel != slog.LevelInfo {
		t.Errorf("defaults: %+v", cfg)
	}
}

func TestParseConfig(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(Config) bool
	}{
		{"env sets", nil, map[string]string{"JESSY_API_ADDR": "0.0.0.0:3001", "JESSY_CORE_URL": "http://core:9"},
			func(c Config) bool { return c.Addr == "0.0.0.0:3001" && c.CoreURL.Host == "core:9" }},
		{"flag beats env", []string{"-addr", "127.0.0.1:4000"}, map[string]string{"JESSY_API_ADDR": "0.0.0.0:3001"},
			func(c Config) bool { return c.Addr == "127.0.0.1:4000" }},
		{"token from env", nil, map[string]string{"JESSY_API_TOKEN": "s3cret"},
			func(c Config) bool { return c.Token == "s3cret" }},
		{"rate limit and burst", []string{"-rate-limit=2.5"}, map[string]string{"JESSY_API_RATE_BURST": "7"},
			func(c Config) bool { return c.RateLimit == 2.5 && c.burst() == 7 }},
		{"burst defaults to the rate rounded up", []string{"-rate-limit=2.5"}, nil,
			func(c Config) bool { return c.burst() == 3 }},
		{"durations", nil, map[string]string{"JESSY_API_UPSTREAM_TIMEOUT": "1500ms", "JESSY_API_WRITE_TIMEOUT": "0"},
			func(c Config) bool { return c.UpstreamTimeout == 1500*time.Millisecond && c.WriteTimeout == 0 }},
		{"body limit", nil, map[string]string{"JESSY_API_MAX_BODY_BYTES": "1048576"},
			func(c Config) bool { return c.MaxBodyBytes == 1<<20 }},
		{"log level", nil, map[string]string{"JESSY_API_LOG_LEVEL": "debug"},
			func(c Config) bool { return c.LogLevel == slog.LevelDebug }},
		{"core URL with a base path", nil, map[string]string{"JESSY_CORE_URL": "https://core.internal/jessy"},
			func(c Config) bool { return c.CoreURL.Path == "/jessy" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseConfig(tt.args, envMap(tt.env), &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(cfg) {
				t.Errorf("unexpected config %+v", cfg)
			}
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"bad flag value", []string{"-rate-limit", "fast"}, nil, `invalid value "fast" for flag -rate-limit`},
		{"unknown flag", []string{"-nope"}, nil, "flag provided but not defined: -nope"},
		{"positional argument", []string{"serve"}, nil, `unexpected argument "serve"`},
		{"bad env duration", nil, map[string]string{"JESSY_API_READ_TIMEOUT": "soon"}, `invalid JESSY_API_READ_TIMEOUT="soon"`},
		{"bad env number", nil, map[string]string{"JESSY_API_MAX_BODY_BYTES": "16MiB"}, `invalid JESSY_API_MAX_BODY_BYTES="16MiB"`},
		{"zero body limit", []string{"-max-body-bytes=0"}, nil, "invalid -max-body-bytes=0: want the largest request body in bytes"},
		{"negative rate", nil, map[string]string{"JESSY_API_RATE_LIMIT": "-1"}, `invalid JESSY_API_RATE_LIMIT="-1": want requests per second`},
		{"infinite rate", nil, map[string]string{"JESSY_API_RATE_LIMIT": "+Inf"}, `invalid JESSY_API_RATE_LIMIT="+Inf"`},
		{"negative burst", []string{"-rate-burst=-2"}, nil, "invalid -rate-burst=-2: want 0 or more"},
		{"zero upstream timeout", []string{"-upstream-timeout=0s"}, nil, "invalid -upstream-timeout=0s: want a duration above 0"},
		{"zero header timeout", []string{"-read-header-timeout=0s"}, nil, "invalid -read-header-timeout=0s"},
		{"negative write timeout", []string{"-write-timeout=-1s"}, nil, "invalid -write-timeout=-1s: want a duration of 0 or more"},
		{"bad address", nil, map[string]string{"JESSY_API_ADDR": "localhost"}, `invalid JESSY_API_ADDR="localhost": want host:port`},
		{"core URL scheme", nil, map[string]string{"JESSY_CORE_URL": "core:8080"}, `invalid JESSY_CORE_URL="core:8080": want http://host:port`},
		{"core URL query", nil, map[string]string{"JESSY_CORE_URL": "http://core:8080/?x=1"}, "no query"},
		{"core URL path starting with //", nil, map[string]string{"JESSY_CORE_URL": "http://core:8080//x"}, "must not start with //"},
		{"token with space", nil, map[string]string{"JESSY_API_TOKEN": "two words"}, `invalid JESSY_API_TOKEN="<redacted>": it must not contain spaces`},
		{"bad log level", nil, map[string]string{"JESSY_API_LOG_LEVEL": "loud"}, `invalid JESSY_API_LOG_LEVEL="loud"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseConfig(tt.args, envMap(tt.env), &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// TestInvalidValuesNameTheirSetting: every value the checks after parsing refuse is reported
// by the name the user gave it under, flag or variable, with what to give instead, and makes
// run exit with status 2.
func TestInvalidValuesNameTheirSetting(t *testing.T) {
	tests := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{nil, map[string]string{"JESSY_API_MAX_BODY_BYTES": "0"}, `invalid JESSY_API_MAX_BODY_BYTES="0": want the largest request body in bytes, at least 1`},
		{[]string{"-max-body-bytes", "-5"}, map[string]string{"JESSY_API_MAX_BODY_BYTES": "7"}, `invalid -max-body-bytes=-5: want`},
		{nil, map[string]string{"JESSY_API_DIAL_TIMEOUT": "0"}, `invalid JESSY_API_DIAL_TIMEOUT="0": want a duration above 0`},
		{[]string{"-dial-timeout=0s"}, nil, `invalid -dial-timeout=0s: want a duration above 0`},
		{nil, map[string]string{"JESSY_API_HEALTH_TIMEOUT": "-1s"}, `invalid JESSY_API_HEALTH_TIMEOUT="-1s"`},
		{nil, map[string]string{"JESSY_API_IDLE_TIMEOUT": "-1s"}, `invalid JESSY_API_IDLE_TIMEOUT="-1s": want a duration of 0 or more`},
		{nil, map[string]string{"JESSY_API_RATE_LIMIT": "-1"}, `invalid JESSY_API_RATE_LIMIT="-1": want requests per second per client, 0 or more`},
		{nil, map[string]string{"JESSY_API_RATE_BURST": "-1"}, `invalid JESSY_API_RATE_BURST="-1": want 0 or more`},
		{nil, map[string]string{"JESSY_API_ADDR": "nonsense"}, `invalid JESSY_API_ADDR="nonsense": want host:port`},
		{[]string{"-addr", "nonsense"}, nil, `invalid -addr=nonsense: want host:port`},
		{nil, map[string]string{"JESSY_API_ADDR": "127.0.0.1:99999"}, `invalid JESSY_API_ADDR="127.0.0.1:99999": the port must be a number from 0 to 65535`},
		{nil, map[string]string{"JESSY_API_ADDR": ":-1"}, `invalid JESSY_API_ADDR=":-1": the port`},
		{nil, map[string]string{"JESSY_CORE_URL": "ftp://x"}, `invalid JESSY_CORE_URL="ftp://x": want http://host:port or https://host:port`},
		{[]string{"-core-url=ftp://x"}, nil, `invalid -core-url=ftp://x: want http://host:port`},
		{nil, map[string]string{"JESSY_API_TOKEN": "a b"}, `invalid JESSY_API_TOKEN="<redacted>": it must not contain spaces or control characters`},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tt.args, envMap(tt.env), &stdout, &stderr)
			if code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			if want := "jessy-api: " + tt.want; !strings.HasPrefix(stderr.String(), want) {
				t.Errorf("stderr %q, want it to start with %q", stderr.String(), want)
			}
			if n := strings.Count(stderr.String(), "\n"); n != 1 {
				t.Errorf("%d lines on stderr, want 1: %q", n, stderr.String())
			}
		})
	}
}

func TestParseConfigKeepsTokenOutOfErrors(t *testing.T) {
	_, err := parseConfig(nil, envMap(map[string]string{"JESSY_API_TOKEN": "top secret"}), &bytes.Buffer{})
	if err == nil || strings.Contains(err.Error(), "top secret") {
		t.Errorf("error %v", err)
	}
}

func TestRunExitCodes(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		env        map[string]string
		code       int
		wantStderr []string
	}{
		{"help", []string{"-h"}, nil, 0, []string{"Usage: jessy-api", "JESSY_API_ADDR", "JESSY_CORE_URL",
			"JESSY_API_TOKEN", "JESSY_API_MAX_BODY_BYTES", "JESSY_API_RATE_LIMIT", "JESSY_API_UPSTREAM_TIMEOUT"}},
		{"invalid flag", []string{"-max-body-bytes=x"}, nil, 2, []string{"jessy-api: invalid value", "see -h"}},
		{"invalid env", nil, map[string]string{"JESSY_API_RATE_LIMIT": "lots"}, 2, []string{"jessy-api: invalid JESSY_API_RATE_LIMIT"}},
		{"two errors, two lines", nil, map[string]string{"JESSY_API_ADDR": "x", "JESSY_CORE_URL": "ftp://c"}, 2,
			[]string{`jessy-api: invalid JESSY_CORE_URL="ftp://c"`, `jessy-api: invalid JESSY_API_ADDR="x"`}},
		{"cannot listen", nil, map[string]string{"JESSY_API_ADDR": "256.0.0.1:1"}, 1, []string{"jessy-api: listen tcp"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tt.args, envMap(tt.env), &stdout, &stderr)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.code, stderr.String())
			}
			for _, w := range tt.wantStderr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
				}
			}
		})
	}
}

func TestHelpIsNotAnError(t *testing.T) {
	_, err := parseConfig([]string{"-help"}, envMap(nil), &bytes.Buffer{})
	if err != flag.ErrHelp {
		t.Errorf("err %v, want flag.ErrHelp", err)
	}
}
