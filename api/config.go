package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/url"
	"strings"
	"time"
)

// maxHeaderBytes bounds request line plus headers. A key may be 4 KiB, three times that once
// percent-encoded, so 64 KiB leaves room while staying far below Go's 1 MiB default.
const maxHeaderBytes = 64 << 10

// Config is everything jessy-api can be told at start-up.
type Config struct {
	Addr              string
	CoreURL           *url.URL
	Token             string
	MaxBodyBytes      int64
	RateLimit         float64 // requests per second per client; 0 turns the limiter off
	RateBurst         int     // 0 means ceil(RateLimit)
	DialTimeout       time.Duration
	UpstreamTimeout   time.Duration
	HealthTimeout     time.Duration
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	ShutdownTimeout   time.Duration
	LogLevel          slog.Level
}

// option ties a flag to the variable that supplies its value when the flag is absent.
type option struct {
	flag, env string
}

// parseConfig reads flags from args and, for every flag not given, its environment variable.
// It returns flag.ErrHelp after printing the usage for -h.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	var (
		cfg     Config
		coreURL string
		opts    []option
	)
	fs := flag.NewFlagSet("jessy-api", flag.ContinueOnError)
	env := func(name, variable, usage string) string {
		opts = append(opts, option{flag: name, env: variable})
		return usage + " (env " + variable + ")"
	}
	fs.StringVar(&cfg.Addr, "addr", "127.0.0.1:3000",
		env("addr", "JESSY_API_ADDR", "listen address"))
	fs.StringVar(&coreURL, "core-url", "http://127.0.0.1:8080",
		env("core-url", "JESSY_CORE_URL", "base URL of jessy-core"))
	fs.StringVar(&cfg.Token, "token", "",
		env("token", "JESSY_API_TOKEN", "when set, /api/v1 needs the header \"Authorization: Bearer <token>\"; prefer the variable, flags show up in ps"))
	fs.Int64Var(&cfg.MaxBodyBytes, "max-body-bytes", 16<<20,
		env("max-body-bytes", "JESSY_API_MAX_BODY_BYTES", "largest request body in bytes (413 beyond)"))
	fs.Float64Var(&cfg.RateLimit, "rate-limit", 0,
		env("rate-limit", "JESSY_API_RATE_LIMIT", "requests per second per client IP on /api/v1; 0 turns it off"))
	fs.IntVar(&cfg.RateBurst, "rate-burst", 0,
		env("rate-burst", "JESSY_API_RATE_BURST", "requests a client may make at once; 0 means the rate limit rounded up"))
	fs.DurationVar(&cfg.DialTimeout, "dial-timeout", 2*time.Second,
		env("dial-timeout", "JESSY_API_DIAL_TIMEOUT", "time to connect to jessy-core"))
	fs.DurationVar(&cfg.UpstreamTimeout, "upstream-timeout", 30*time.Second,
		env("upstream-timeout", "JESSY_API_UPSTREAM_TIMEOUT", "time jessy-core has to send response headers (504 beyond)"))
	fs.DurationVar(&cfg.HealthTimeout, "health-timeout", 2*time.Second,
		env("health-timeout", "JESSY_API_HEALTH_TIMEOUT", "time jessy-core's /health has to answer"))
	fs.DurationVar(&cfg.ReadHeaderTimeout, "read-header-timeout", 5*time.Second,
		env("read-header-timeout", "JESSY_API_READ_HEADER_TIMEOUT", "time a client has to send request headers"))
	fs.DurationVar(&cfg.ReadTimeout, "read-timeout", 60*time.Second,
		env("read-timeout", "JESSY_API_READ_TIMEOUT", "time a client has to send the whole request, body included; 0 means none"))
	fs.DurationVar(&cfg.WriteTimeout, "write-timeout", 60*time.Second,
		env("write-timeout", "JESSY_API_WRITE_TIMEOUT", "longest a response write may stall (renewed on every write, so long downloads pass); 0 means none"))
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", 120*time.Second,
		env("idle-timeout", "JESSY_API_IDLE_TIMEOUT", "how long an idle keep-alive connection stays open"))
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", 10*time.Second,
		env("shutdown-timeout", "JESSY_API_SHUTDOWN_TIMEOUT", "grace period for in-flight requests on SIGTERM/SIGINT"))
	fs.TextVar(&cfg.LogLevel, "log-level", slog.LevelInfo,
		env("log-level", "JESSY_API_LOG_LEVEL", "log `level`: debug, info, warn or error"))
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: jessy-api [flags]\n\n"+
			"jessy-api is the HTTP gateway in front of jessy-core: /api/v1/... is forwarded to\n"+
			"jessy-core's /v1/...; /api/health and /api/metrics are its own.\n"+
			"Every flag falls back to the environment variable named with it.\n\n")
		fs.PrintDefaults()
	}

	// The flag package would print the whole usage for one bad value; a one-line error that
	// points at -h reads better, so it prints nothing itself and -h is handled here.
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stderr)
			fs.Usage()
			return Config{}, err
		}
		return Config{}, fmt.Errorf("%v (see -h)", err)
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q (jessy-api takes flags only; see -h)", fs.Arg(0))
	}

	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for _, o := range opts {
		v := getenv(o.env)
		if given[o.flag] || v == "" {
			continue
		}
		if err := fs.Set(o.flag, v); err != nil {
			kind, _ := flag.UnquoteUsage(fs.Lookup(o.flag))
			return Config{}, fmt.Errorf("invalid %s=%q: %v (want a %s)", o.env, redact(o, v), err, kind)
		}
	}

	u, urlErr := parseCoreURL(coreURL)
	cfg.CoreURL = u
	if err := errors.Join(urlErr, cfg.validate()); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// redact keeps the token out of error messages and logs.
func redact(o option, v string) string {
	if o.flag == "token" {
		return "<redacted>"
	}
	return v
}

func parseCoreURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("invalid core URL %q: %v", s, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("invalid core URL %q: want http://host:port or https://host:port", s)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("invalid core URL %q: no query, fragment or user info allowed", s)
	}
	return u, nil
}

func (c Config) validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("invalid listen address %q: %v", c.Addr, err))
	}
	// A token with spaces or control characters cannot travel in a Bearer header unchanged, so
	// it would lock every client out; say so now rather than answer 401 forever.
	if strings.IndexFunc(c.Token, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
		errs = append(errs, errors.New("invalid token: it must not contain spaces or control characters"))
	}
	if c.MaxBodyBytes <= 0 {
		errs = append(errs, fmt.Errorf("invalid body limit %d: must be positive", c.MaxBodyBytes))
	}
	if c.RateLimit < 0 || math.IsNaN(c.RateLimit) || math.IsInf(c.RateLimit, 0) {
		errs = append(errs, fmt.Errorf("invalid rate limit %v: want requests per second >= 0", c.RateLimit))
	}
	if c.RateBurst < 0 {
		errs = append(errs, fmt.Errorf("invalid rate burst %d: must be >= 0", c.RateBurst))
	}
	positive := []struct {
		name string
		d    time.Duration
	}{
		{"dial timeout", c.DialTimeout},
		{"upstream timeout", c.UpstreamTimeout},
		{"health timeout", c.HealthTimeout},
		{"read header timeout", c.ReadHeaderTimeout},
	}
	for _, p := range positive {
		if p.d <= 0 {
			errs = append(errs, fmt.Errorf("invalid %s %v: must be positive", p.name, p.d))
		}
	}
	nonNegative := []struct {
		name string
		d    time.Duration
	}{
		{"read timeout", c.ReadTimeout},
		{"write timeout", c.WriteTimeout},
		{"idle timeout", c.IdleTimeout},
		{"shutdown timeout", c.ShutdownTimeout},
	}
	for _, p := range nonNegative {
		if p.d < 0 {
			errs = append(errs, fmt.Errorf("invalid %s %v: must not be negative", p.name, p.d))
		}
	}
	return errors.Join(errs...)
}

// burst is the bucket size the rate limiter uses.
func (c Config) burst() float64 {
	if c.RateBurst > 0 {
		return float64(c.RateBurst)
	}
	return max(1, math.Ceil(c.RateLimit))
}
