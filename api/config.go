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
	"strconv"
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
	DrainDelay        time.Duration // between /api/health turning 503 and the listener closing
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
	fs.DurationVar(&cfg.DrainDelay, "drain-delay", 0,
		env("drain-delay", "JESSY_API_DRAIN_DELAY", "on SIGTERM/SIGINT, how long /api/health answers 503 while requests are still served, before the listener closes; 0 closes it at once"))
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

	// An invalid value is reported by the name it was given under: the flag if it was on the
	// command line, the variable otherwise (defaults are all valid).
	setting := func(flagName string) string {
		f := fs.Lookup(flagName)
		for _, o := range opts {
			if o.flag != flagName {
				continue
			}
			if given[flagName] {
				return "-" + flagName + "=" + redact(o, f.Value.String())
			}
			return o.env + "=" + strconv.Quote(redact(o, getenv(o.env)))
		}
		return "-" + flagName
	}
	u, urlErr := parseCoreURL(coreURL)
	if urlErr != nil {
		urlErr = fmt.Errorf("invalid %s: %v", setting("core-url"), urlErr)
	}
	cfg.CoreURL = u
	if err := errors.Join(urlErr, cfg.validate(setting)); err != nil {
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

// parseCoreURL checks jessy-core's base URL; its errors say what is wrong, not which setting
// held it.
func parseCoreURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("%v; want http://host:port or https://host:port", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("want http://host:port or https://host:port")
	}
	if strings.HasPrefix(u.EscapedPath(), "//") {
		// The forwarded request line would read as an absolute URL naming another host.
		return nil, errors.New("the path must not start with //")
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, errors.New("no query, fragment or user info allowed")
	}
	return u, nil
}

// validate checks the values parsing alone lets through. setting names a flag's value as the
// user gave it: "-max-body-bytes=0" or `JESSY_API_MAX_BODY_BYTES="0"`.
func (c Config) validate(setting func(flagName string) string) error {
	var errs []error
	invalid := func(flagName, want string) {
		errs = append(errs, fmt.Errorf("invalid %s: %s", setting(flagName), want))
	}
	if _, port, err := net.SplitHostPort(c.Addr); err != nil {
		invalid("addr", "want host:port, such as 127.0.0.1:3000, 0.0.0.0:3000 or :3000")
	} else if _, err := net.LookupPort("tcp", port); err != nil {
		// Caught here rather than by net.Listen, whose failure means exit status 1 (a port
		// taken, an address not on this host) where a value that can never work means 2.
		invalid("addr", "the port must be a number from 0 to 65535")
	}
	// A token with spaces or control characters cannot travel in a Bearer header unchanged, so
	// it would lock every client out; say so now rather than answer 401 forever.
	if strings.IndexFunc(c.Token, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
		invalid("token", "it must not contain spaces or control characters")
	}
	if c.MaxBodyBytes <= 0 {
		invalid("max-body-bytes", "want the largest request body in bytes, at least 1 (default 16777216)")
	}
	if c.RateLimit < 0 || math.IsNaN(c.RateLimit) || math.IsInf(c.RateLimit, 0) {
		invalid("rate-limit", "want requests per second per client, 0 or more (0 turns the limit off)")
	}
	if c.RateBurst < 0 {
		invalid("rate-burst", "want 0 or more (0 means the rate limit rounded up)")
	}
	positive := []struct {
		flag string
		d    time.Duration
	}{
		{"dial-timeout", c.DialTimeout},
		{"upstream-timeout", c.UpstreamTimeout},
		{"health-timeout", c.HealthTimeout},
		{"read-header-timeout", c.ReadHeaderTimeout},
	}
	for _, p := range positive {
		if p.d <= 0 {
			invalid(p.flag, "want a duration above 0, such as 2s or 500ms")
		}
	}
	nonNegative := []struct {
		flag string
		d    time.Duration
	}{
		{"read-timeout", c.ReadTimeout},
		{"write-timeout", c.WriteTimeout},
		{"idle-timeout", c.IdleTimeout},
		{"shutdown-timeout", c.ShutdownTimeout},
		{"drain-delay", c.DrainDelay},
	}
	for _, p := range nonNegative {
		if p.d < 0 {
			invalid(p.flag, "want a duration of 0 or more, such as 30s")
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
