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
		{"zero body limit", []string{"-max-body-bytes=0"}, nil, "invalid body limit 0"},
		{"negative rate", nil, map[string]string{"JESSY_API_RATE_LIMIT": "-1"}, "invalid rate limit -1"},
		{"infinite rate", nil, map[string]string{"JESSY_API_RATE_LIMIT": "+Inf"}, "invalid rate limit"},
		{"negative burst", []string{"-rate-burst=-2"}, nil, "invalid rate burst -2"},
		{"zero upstream timeout", []string{"-upstream-timeout=0s"}, nil, "invalid upstream timeout"},
		{"zero header timeout", []string{"-read-header-timeout=0s"}, nil, "invalid read header timeout"},
		{"negative write timeout", []string{"-write-timeout=-1s"}, nil, "invalid write timeout"},
		{"bad address", nil, map[string]string{"JESSY_API_ADDR": "localhost"}, `invalid listen address "localhost"`},
		{"core URL scheme", nil, map[string]string{"JESSY_CORE_URL": "core:8080"}, `invalid core URL "core:8080"`},
		{"core URL query", nil, map[string]string{"JESSY_CORE_URL": "http://core:8080/?x=1"}, "no query"},
		{"token with space", nil, map[string]string{"JESSY_API_TOKEN": "two words"}, "invalid token"},
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
			[]string{"jessy-api: invalid core URL", "jessy-api: invalid listen address"}},
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
